// The build: `dotnet fsi build.fsx -t <Target>`. FAKE 5.20.3's Target, Process and IO modules
// (FAKE 6 and Fake.DotNet.Cli do not restore from the registry reached here), driving `dotnet`
// through Fake.Core.Process.
#r "nuget: Fake.Core.Target, 5.20.3"
#r "nuget: Fake.Core.Process, 5.20.3"
#r "nuget: Fake.IO.FileSystem, 5.20.3"

open System
open System.IO
open System.Xml.Linq
open Fake.Core
open Fake.Core.TargetOperators
open Fake.IO

let args = fsi.CommandLineArgs |> Array.skip 1 |> Array.toList

Context.FakeExecutionContext.Create false "build.fsx" args
|> Context.RuntimeContext.Fake
|> Context.setExecutionContext

let root = __SOURCE_DIRECTORY__
let configuration = "Release"
let testResults = Path.Combine(root, "artifacts", "test-results")

let cli =
    Path.Combine(root, "src", "Forgetting.Cli", "bin", configuration, "net10.0", "forgetting.dll")

/// Run a program in the repository root; fail the target on a non-zero exit.
let run (program: string) (arguments: string list) =
    let result =
        CreateProcess.fromRawCommand program arguments
        |> CreateProcess.withWorkingDirectory root
        |> Proc.run

    if result.ExitCode <> 0 then
        failwithf "'%s %s' exited with code %d" program (String.Join(" ", arguments)) result.ExitCode

let dotnet arguments = run "dotnet" arguments

/// The totals of every .trx file of the last test run: (passed, failed, skipped).
let testTotals () =
    Directory.GetFiles(testResults, "*.trx")
    |> Array.map (fun file ->
        let counters =
            XDocument.Load(file).Descendants()
            |> Seq.find (fun e -> e.Name.LocalName = "Counters")

        let count (name: string) =
            int (counters.Attribute(XName.Get name).Value)

        count "passed", count "failed" + count "error" + count "timeout", count "notExecuted")
    |> Array.fold (fun (p, f, s) (p', f', s') -> p + p', f + f', s + s') (0, 0, 0)

/// The test totals, printed last of all, as the closing line CI reads.
let mutable summary: string option = None

Target.create "Clean" (fun _ -> Shell.cleanDirs [ Path.Combine(root, "artifacts") ])

Target.create "Restore" (fun _ ->
    dotnet [ "tool"; "restore" ]
    dotnet [ "paket"; "restore" ]
    dotnet [ "restore"; "Forgetting.sln" ])

Target.create "Build" (fun _ -> dotnet [ "build"; "Forgetting.sln"; "-c"; configuration; "--no-restore" ])

Target.create "Format" (fun _ -> dotnet [ "fantomas"; "--check"; "src"; "tests"; "build.fsx" ])

Target.create "FormatFix" (fun _ -> dotnet [ "fantomas"; "src"; "tests"; "build.fsx" ])

Target.create "Test" (fun _ ->
    Shell.cleanDir testResults

    let outcome =
        try
            dotnet
                [ "test"
                  "Forgetting.sln"
                  "-c"
                  configuration
                  "--no-build"
                  "--logger"
                  "trx"
                  "--results-directory"
                  testResults ]

            None
        with e ->
            Some e

    let passed, failed, skipped = testTotals ()
    summary <- Some $"{passed} passed, {failed} failed, {skipped} skipped"

    match outcome with
    | Some e -> raise e
    | None when passed = 0 -> failwith "no test ran"
    | None -> ())

Target.create "Demo" (fun _ -> dotnet [ cli; "sparsity" ])

"Clean" ==> "Restore" ==> "Build" ==> "Test" |> ignore
"Restore" ==> "Format" ==> "Test" |> ignore
"Build" ==> "Demo" |> ignore

try
    Target.runOrDefaultWithArguments "Build"
finally
    summary |> Option.iter (printfn "%s")
