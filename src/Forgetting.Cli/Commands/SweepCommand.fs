/// `forgetting sweep`: a grid of runs over seeds and settings (Experiments/Sweep.fs), run here by local
/// worker processes or on a SLURM cluster as one job array, resumed where it stopped, and collected
/// into one table. Both ways run every grid point by the same command, `forgetting sweep task`.
module Forgetting.Cli.Commands.SweepCommand

open System
open System.Diagnostics
open System.IO
open System.Text.Json
open Argu
open Forgetting.Experiments
open Forgetting.Cli
open Forgetting.Cli.Json

type PlanArgs =
    | [<MainCommand; ExactlyOnce>] Sweep of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Sweep _ -> "the sweep file (JSON: base, axes, output)."

type SweepRunArgs =
    | [<MainCommand; ExactlyOnce>] Sweep of path: string
    | [<Unique>] Local
    | [<Unique>] Slurm
    | [<Unique>] Workers of count: int
    | [<Unique>] Partition of name: string
    | [<Unique>] Time of limit: string
    | [<Unique>] Mem of amount: string
    | [<Unique>] Cpus_Per_Task of count: int
    | [<Unique>] Max_Parallel of count: int
    | Sbatch_Option of option: string
    | [<Unique>] Wait
    | [<Unique>] Yes
    | [<Unique>] Cache_Dir of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Sweep _ -> "the sweep file (JSON: base, axes, output)."
            | Local -> "run the grid here, in worker processes."
            | Slurm -> "submit the grid to SLURM as one job array (sbatch)."
            | Workers _ -> "--local: parallel worker processes (default 1); threads per worker = processors / workers."
            | Partition _ -> "--slurm: the partition (sbatch --partition)."
            | Time _ -> "--slurm: the time limit per run (sbatch --time), e.g. 01:00:00."
            | Mem _ -> "--slurm: the memory per run (sbatch --mem), e.g. 4G."
            | Cpus_Per_Task _ -> "--slurm: CPUs per run (default 1); the run uses that many threads."
            | Max_Parallel _ -> "--slurm: at most this many runs at once (--array=…%K)."
            | Sbatch_Option _ -> "--slurm: an extra sbatch option, passed through, e.g. --sbatch-option=--qos=short."
            | Wait -> "--slurm: wait until the job array has finished, then print the status."
            | Yes -> "run a grid larger than the sweep's max_runs."
            | Cache_Dir _ -> "the data cache (default $FORGETTING_DATA or the per-user cache)."

type CollectArgs =
    | [<MainCommand; ExactlyOnce>] Sweep of path: string
    | [<Unique>] Mixed_Versions

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Sweep _ -> "the sweep file."
            | Mixed_Versions -> "collect runs made by different versions of the library (refused otherwise)."

type TaskArgs =
    | [<MainCommand; ExactlyOnce>] Sweep of path: string
    | [<ExactlyOnce>] Index of index: int
    | [<Unique>] Cache_Dir of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Sweep _ -> "the sweep file."
            | Index _ -> "the run's index in the grid (SLURM_ARRAY_TASK_ID)."
            | Cache_Dir _ -> "the data cache."

type SweepArgs =
    | [<CliPrefix(CliPrefix.None)>] Plan of ParseResults<PlanArgs>
    | [<CliPrefix(CliPrefix.None)>] Run of ParseResults<SweepRunArgs>
    | [<CliPrefix(CliPrefix.None)>] Status of ParseResults<PlanArgs>
    | [<CliPrefix(CliPrefix.None)>] Collect of ParseResults<CollectArgs>
    | [<CliPrefix(CliPrefix.None)>] Task of ParseResults<TaskArgs>

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Plan _ -> "print the grid's runs, their ids and folders, and its size."
            | Run _ -> "run what is not complete yet, locally (--local) or on SLURM (--slurm)."
            | Status _ -> "done / running / pending / failed per run, from the folders and the scheduler."
            | Collect _ -> "one table of the completed runs: mean ± sd over seeds per configuration, CSV and figures."
            | Task _ -> "run one grid point (what every worker and array task runs)."

let private usage message : 'a = raise (UserError(message, Exit.usage))

// ---------------------------------------------------------------------- the sweep's folders

/// Where a sweep keeps its bookkeeping: markers of started and failed runs, logs, SLURM submissions.
let private stateDir (s: SweepSpec) = Path.Combine(s.Output, "sweep")
let private logDir (s: SweepSpec) = Path.Combine(s.Output, "logs")

let private startedMarker s (r: SweepRun) =
    Path.Combine(stateDir s, $"{r.Id}.started")

let private failedMarker s (r: SweepRun) =
    Path.Combine(stateDir s, $"{r.Id}.failed")

let private jobsFile s = Path.Combine(stateDir s, "jobs.tsv")

/// The file a complete run folder holds besides its recipe: the last one its command writes.
let private summaryFile (r: Recipe) =
    if r.Scenario.Kind = "single" then
        "summary.json"
    else
        "metrics.json"

/// Whether a run's folder is complete: its recipe, the same as the grid's, and its summary. A folder
/// holding another recipe is refused: two runs must never share a folder.
let private complete (s: SweepSpec) (r: SweepRun) =
    let dir = Sweep.folder s r
    let recipe = Path.Combine(dir, "recipe.json")

    if
        File.Exists recipe
        && File.ReadAllText(recipe).TrimEnd() <> (Recipe.toText r.Recipe).TrimEnd()
    then
        raise (
            UserError(
                $"{dir} holds a run of another recipe, not run {r.Index}'s; remove it or give the sweep another output",
                Exit.input
            )
        )

    File.Exists recipe && File.Exists(Path.Combine(dir, summaryFile r.Recipe))

/// A sweep file and its grid; a point that does not resolve is a fault of the file (exit 1).
let private load (path: string) =
    let s = Forgetting.Experiments.Sweep.load path

    try
        s, Forgetting.Experiments.Sweep.expand s
    with :? ArgumentException as e ->
        raise (UserError($"{path}: {e.Message}", Exit.input))

let private describe (r: SweepRun) =
    r.Values |> List.map (fun (p, v) -> $"{p}={v}") |> String.concat ", "

// ---------------------------------------------------------------------- plan

let plan (args: ParseResults<PlanArgs>) =
    let s, runs = load (args.GetResult PlanArgs.Sweep)

    let axes =
        s.Axes
        |> List.map (fun a -> $"{a.Path} ({a.Values.Length})")
        |> String.concat " × "

    printfn "%d runs: %s, into %s" runs.Length axes s.Output

    for r in runs do
        printfn "  %4d  %s  %-14s %s" r.Index r.Id (if complete s r then "done" else "") (describe r)

    if runs.Length > s.MaxRuns then
        printfn "more than the sweep's max_runs (%d): 'sweep run' asks for --yes" s.MaxRuns

// ---------------------------------------------------------------------- one grid point

/// `forgetting sweep task <sweep> --index i`: run grid point i into its folder, unless it is complete.
/// A marker says it started (with the process and host, so that status can tell a running run from a
/// killed one); a failure leaves a marker with its message.
let task (args: ParseResults<TaskArgs>) =
    let s, runs = load (args.GetResult TaskArgs.Sweep)
    let index = args.GetResult Index

    let r =
        match runs |> List.tryFind (fun r -> r.Index = index) with
        | Some r -> r
        | None -> usage $"--index {index} is not a run of this sweep: it has runs 0 to {runs.Length - 1}"

    if complete s r then
        printfn "run %d (%s) is complete in %s" r.Index r.Id (Sweep.folder s r)
    else
        Directory.CreateDirectory(stateDir s) |> ignore
        File.Delete(failedMarker s r)

        Results.writeAtomically
            (startedMarker s r)
            $"{Environment.ProcessId} {Environment.MachineName} {DateTime.UtcNow:o}\n"

        printfn "run %d (%s): %s" r.Index r.Id (describe r)

        try
            // A folder here is this run's own, left incomplete (a diverged run's): replace it.
            ContinualCommand.runRecipe
                true
                (args.TryGetResult TaskArgs.Cache_Dir)
                (Sweep.folder s r)
                $"forgetting sweep task {args.GetResult TaskArgs.Sweep} --index {index}"
                r.Recipe
        with e ->
            let message =
                match e with
                | UserError(m, _) -> m
                | e -> e.Message

            Results.writeAtomically (failedMarker s r) (message + "\n")
            reraise ()

// ---------------------------------------------------------------------- status

type private State =
    | Done
    | Running of string
    | Pending of string
    | Failed of string
    | NotStarted

/// The SLURM jobs a sweep submitted: job id and the grid indices of its array.
let private jobs (s: SweepSpec) =
    if File.Exists(jobsFile s) then
        [ for line in File.ReadAllLines(jobsFile s) do
              match line.Split('\t') with
              | [| job; indices |] -> job, indices.Split(',') |> Array.map int |> Set.ofArray
              | _ -> () ]
    else
        []

let private onPath (program: string) =
    (Environment.GetEnvironmentVariable "PATH"
     |> Option.ofObj
     |> Option.defaultValue "")
        .Split(':')
    |> Array.exists (fun d -> d <> "" && File.Exists(Path.Combine(d, program)))

/// Run a program to its end; its exit code and standard output.
let private capture (program: string) (arguments: string list) =
    let info =
        ProcessStartInfo(program, arguments, RedirectStandardOutput = true, RedirectStandardError = true)

    use p = Process.Start info
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, out.Result, err.Result

/// Array elements the scheduler still holds, by grid index: (state, job id). `squeue -r` lists one
/// line per array element, pending ones too.
let private queued (jobIds: string list) =
    if jobIds.IsEmpty || not (onPath "squeue") then
        Map.empty
    else
        let code, out, _ =
            capture "squeue" [ "-h"; "-r"; "-j"; String.concat "," jobIds; "-o"; "%A %K %T" ]

        if code <> 0 then
            Map.empty
        else
            [ for line in out.Split('\n', StringSplitOptions.RemoveEmptyEntries) do
                  match line.Trim().Split(' ') with
                  | [| job; index; state |] ->
                      match Int32.TryParse index with
                      | true, i -> i, (state, job)
                      | _ -> ()
                  | _ -> () ]
            |> Map.ofList

/// What the scheduler remembers of finished array elements (`scontrol -o show job`, about 10 minutes
/// without a database): their state and exit code, by grid index.
let private finished (jobId: string) =
    if not (onPath "scontrol") then
        Map.empty
    else
        let code, out, _ = capture "scontrol" [ "-o"; "show"; "job"; jobId ]

        if code <> 0 then
            Map.empty
        else
            let field (name: string) (line: string) =
                line.Split(' ')
                |> Array.tryPick (fun kv ->
                    if kv.StartsWith(name + "=") then
                        Some(kv.Substring(name.Length + 1))
                    else
                        None)

            [ for line in out.Split('\n', StringSplitOptions.RemoveEmptyEntries) do
                  match field "ArrayTaskId" line, field "JobState" line, field "ExitCode" line with
                  | Some index, Some state, Some exit ->
                      match Int32.TryParse index with
                      | true, i -> i, $"{state}, exit code {exit}"
                      | _ -> ()
                  | _ -> () ]
            |> Map.ofList

let private alive (marker: string) =
    try
        match File.ReadAllText(marker).Split(' ') with
        | [| pid; host; _ |] when host = Environment.MachineName ->
            try
                not (Process.GetProcessById(int pid)).HasExited
            with :? ArgumentException ->
                false
        | _ -> false
    with :? IOException ->
        false

let private slurmLog (s: SweepSpec) (job: string) (index: int) =
    Path.Combine(logDir s, $"slurm-{job}_{index}.log")

let private localLog (s: SweepSpec) (r: SweepRun) = Path.Combine(logDir s, $"{r.Id}.log")

/// The state of every run: complete folders are done; the scheduler's queue says running or pending;
/// a run that started and is neither complete nor alive failed (its marker, the scheduler or its log
/// says how); the rest have not started.
let private states (s: SweepSpec) (runs: SweepRun list) =
    let submitted = jobs s
    let queue = queued (submitted |> List.map fst)

    let lastJob (r: SweepRun) =
        submitted
        |> List.filter (fun (_, ix) -> ix.Contains r.Index)
        |> List.tryLast
        |> Option.map fst

    let logOf (r: SweepRun) =
        match lastJob r with
        | Some job when File.Exists(slurmLog s job r.Index) -> slurmLog s job r.Index
        | _ -> localLog s r

    let finishedOf = Collections.Generic.Dictionary<string, Map<int, string>>()

    [ for r in runs ->
          let state =
              if complete s r then
                  Done
              else
                  match queue.TryFind r.Index with
                  | Some(st, job) when lastJob r = Some job && st = "RUNNING" -> Running $"SLURM job {job}_{r.Index}"
                  | Some(st, job) when lastJob r = Some job ->
                      Pending $"SLURM job {job}_{r.Index}, {st.ToLowerInvariant()}"
                  | _ when File.Exists(startedMarker s r) && alive (startedMarker s r) -> Running "a local worker"
                  | _ when File.Exists(failedMarker s r) ->
                      Failed $"{File.ReadAllText(failedMarker s r).Trim()}; log {logOf r}"
                  | _ when File.Exists(startedMarker s r) ->
                      let scheduler =
                          match lastJob r with
                          | Some job ->
                              if not (finishedOf.ContainsKey job) then
                                  finishedOf[job] <- finished job

                              finishedOf[job].TryFind r.Index |> Option.map (fun st -> $"SLURM says {st}")
                          | None -> None

                      Failed $"""{defaultArg scheduler "stopped before it finished"}; log {logOf r}"""
                  | _ -> NotStarted

          r, state ]

let private word (state: State) =
    match state with
    | Done -> "done"
    | Running _ -> "running"
    | Pending _ -> "pending"
    | Failed _ -> "failed"
    | NotStarted -> "not started"

let private printStates (states: (SweepRun * State) list) =
    for r, st in states do
        let detail =
            match st with
            | Running d
            | Pending d
            | Failed d -> $"  ({d})"
            | Done
            | NotStarted -> ""

        printfn "  %4d  %s  %-11s %s%s" r.Index r.Id (word st) (describe r) detail

    let counts =
        [ "done"; "running"; "pending"; "failed"; "not started" ]
        |> List.map (fun w -> w, states |> List.filter (fun (_, st) -> word st = w) |> List.length)
        |> List.filter (fun (_, n) -> n > 0)
        |> List.map (fun (w, n) -> $"{n} {w}")
        |> String.concat ", "

    printfn "%d runs: %s" states.Length counts

let status (args: ParseResults<PlanArgs>) =
    let s, runs = load (args.GetResult PlanArgs.Sweep)
    printStates (states s runs)

// ---------------------------------------------------------------------- run

/// The command that runs this tool again: `dotnet forgetting.dll` or the apphost.
let private self () =
    let host = Environment.ProcessPath

    if Path.GetFileNameWithoutExtension(host) = "dotnet" then
        host, [ Reflection.Assembly.GetEntryAssembly().Location ]
    else
        host, []

let private shellQuote (s: string) = "'" + s.Replace("'", "'\\''") + "'"

/// Run the given grid points here, `workers` at a time, each a `sweep task` process with its output
/// in the sweep's logs and FORGETTING_THREADS set so that the workers share the processors.
let private runLocal (sweepPath: string) (s: SweepSpec) (todo: SweepRun list) (workers: int) (cacheDir: string option) =
    let threads = max 1 (Environment.ProcessorCount / workers)
    let program, prefix = self ()
    Directory.CreateDirectory(logDir s) |> ignore
    printfn "%d runs to do, %d worker(s) of %d thread(s)" todo.Length workers threads
    let clock = Stopwatch.StartNew()
    let gate = obj ()
    let mutable failures = 0
    let mutable doneCount = 0

    let one (r: SweepRun) =
        let arguments =
            prefix
            @ [ "sweep"; "task"; sweepPath; "--index"; string r.Index ]
            @ (match cacheDir with
               | Some d -> [ "--cache-dir"; d ]
               | None -> [])

        let info =
            ProcessStartInfo(program, arguments, RedirectStandardOutput = true, RedirectStandardError = true)

        info.Environment["FORGETTING_THREADS"] <- string threads
        let started = clock.Elapsed.TotalSeconds
        use log = new StreamWriter(localLog s r)
        use p = new Process(StartInfo = info)

        let write (e: DataReceivedEventArgs) =
            if not (isNull e.Data) then
                lock log (fun () -> log.WriteLine e.Data)

        p.OutputDataReceived.Add write
        p.ErrorDataReceived.Add write
        p.Start() |> ignore
        p.BeginOutputReadLine()
        p.BeginErrorReadLine()
        p.WaitForExit()
        let seconds = clock.Elapsed.TotalSeconds - started

        lock gate (fun () ->
            doneCount <- doneCount + 1

            if p.ExitCode = 0 then
                printfn "[%d/%d] done    %4d %s  %s  (%.1f s)" doneCount todo.Length r.Index r.Id (describe r) seconds
            else
                failures <- failures + 1

                printfn
                    "[%d/%d] FAILED  %4d %s  %s  (exit %d; log %s)"
                    doneCount
                    todo.Length
                    r.Index
                    r.Id
                    (describe r)
                    p.ExitCode
                    (localLog s r))

    let queue = Collections.Concurrent.ConcurrentQueue<SweepRun>(todo)

    let worker () =
        let mutable r = Unchecked.defaultof<SweepRun>

        while queue.TryDequeue(&r) do
            one r

    [ for _ in 1..workers -> Threading.Tasks.Task.Run worker ]
    |> Array.ofList
    |> Threading.Tasks.Task.WaitAll

    if failures > 0 then
        raise (
            UserError(
                $"{failures} of {todo.Length} runs failed (logs in {logDir s}); 'forgetting sweep run' again redoes them",
                Exit.input
            )
        )

/// Submit the given grid points as one SLURM job array; the job id is printed and recorded.
let private submit (sweepPath: string) (s: SweepSpec) (todo: SweepRun list) (args: ParseResults<SweepRunArgs>) =
    if not (onPath "sbatch") then
        usage "--slurm needs sbatch on the PATH (and squeue, scontrol); run on a SLURM login node, or use --local"

    let cpus = args.GetResult(Cpus_Per_Task, defaultValue = 1)

    if cpus < 1 then
        usage $"--cpus-per-task must be at least 1, got {cpus}"

    let program, prefix = self ()
    // The output folder must exist before sbatch, or a task fails with no output file.
    Directory.CreateDirectory(logDir s) |> ignore
    Directory.CreateDirectory(stateDir s) |> ignore
    let indices = todo |> List.map (fun r -> string r.Index) |> String.concat ","

    let throttle =
        match args.TryGetResult Max_Parallel with
        | Some k when k < 1 -> usage $"--max-parallel must be at least 1, got {k}"
        | Some k -> $"%%{k}"
        | None -> ""

    let command =
        program :: prefix
        @ [ "sweep"
            "task"
            Path.GetFullPath sweepPath
            "--index"
            "$SLURM_ARRAY_TASK_ID" ]
        @ (match args.TryGetResult SweepRunArgs.Cache_Dir with
           | Some d -> [ "--cache-dir"; Path.GetFullPath d ]
           | None -> [])
        |> List.map (fun a ->
            if a = "$SLURM_ARRAY_TASK_ID" then
                "\"$SLURM_ARRAY_TASK_ID\""
            else
                shellQuote a)
        |> String.concat " "

    let options =
        [ "--job-name=forgetting-sweep"
          $"--array={indices}{throttle}"
          $"""--output={Path.Combine(logDir s, "slurm-%A_%a.log")}"""
          $"--cpus-per-task={cpus}"
          match args.TryGetResult Partition with
          | Some p -> $"--partition={p}"
          | None -> ()
          match args.TryGetResult Time with
          | Some t -> $"--time={t}"
          | None -> ()
          match args.TryGetResult Mem with
          | Some m -> $"--mem={m}"
          | None -> ()
          yield! args.GetResults Sbatch_Option ]

    let script =
        String.concat
            "\n"
            [ "#!/bin/bash"
              "# Written by 'forgetting sweep run --slurm': one array task per grid point not yet complete."
              yield! options |> List.map (fun o -> "#SBATCH " + o)
              "export FORGETTING_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\""
              $"exec {command}"
              "" ]

    let stamp = DateTime.UtcNow.ToString("yyyyMMddTHHmmssfff")
    let scriptPath = Path.Combine(stateDir s, $"submit-{stamp}.sh")
    Results.writeAtomically scriptPath script
    let code, out, err = capture "sbatch" [ "--parsable"; scriptPath ]

    if code <> 0 then
        raise (UserError($"sbatch refused the job array: {err.Trim()} (script {scriptPath})", Exit.input))

    let job = out.Trim().Split(';')[0]
    File.AppendAllText(jobsFile s, $"{job}\t{indices}\n")
    printfn "submitted job array %s: %d runs (%s), script %s" job todo.Length indices scriptPath
    job

let run (args: ParseResults<SweepRunArgs>) =
    let sweepPath = args.GetResult SweepRunArgs.Sweep

    let local, slurm = args.Contains Local, args.Contains Slurm

    if local = slurm then
        usage "say where to run: --local (worker processes here) or --slurm (a SLURM job array)"

    for a in args.GetAllResults() do
        match a with
        | Workers _ when slurm -> usage "--workers is an option of --local; SLURM runs as many as it schedules"
        | Partition _
        | Time _
        | Mem _
        | Cpus_Per_Task _
        | Max_Parallel _
        | Sbatch_Option _
        | Wait when local ->
            let name = args.Parser.GetArgumentCaseInfo(a).Name.Value
            usage $"{name} is an option of --slurm"
        | _ -> ()

    let s, runs = load sweepPath

    if runs.Length > s.MaxRuns && not (args.Contains Yes) then
        usage $"the grid has {runs.Length} runs, more than its max_runs ({s.MaxRuns}); give --yes to run them all"

    let current = states s runs

    let busy =
        current
        |> List.filter (fun (_, st) ->
            match st with
            | Running _
            | Pending _ -> true
            | _ -> false)

    let todo =
        current
        |> List.filter (fun (_, st) ->
            match st with
            | Failed _
            | NotStarted -> true
            | _ -> false)
        |> List.map fst

    let doneCount = current |> List.filter (fun (_, st) -> st = Done) |> List.length

    if not busy.IsEmpty then
        printfn "%d runs are running or queued already; they are left alone" busy.Length

    if todo.IsEmpty then
        printfn "nothing to do: %d of %d runs complete" doneCount runs.Length
    elif local then
        let workers = args.GetResult(Workers, defaultValue = 1)

        if workers < 1 then
            usage $"--workers must be at least 1, got {workers}"

        runLocal sweepPath s todo workers (args.TryGetResult SweepRunArgs.Cache_Dir)
        printfn "all %d runs complete in %s" runs.Length s.Output
    else
        let job = submit sweepPath s todo args

        if args.Contains Wait then
            // squeue forgets an array once every element has left the queue.
            let rec wait () =
                if not (queued [ job ]).IsEmpty then
                    Threading.Thread.Sleep 1000
                    wait ()

            wait ()
            let final = states s runs
            printStates final

            let failed = final |> List.filter (fun (_, st) -> word st = "failed") |> List.length

            if failed > 0 then
                raise (
                    UserError(
                        $"{failed} runs failed (logs in {logDir s}); 'forgetting sweep run --slurm' again resubmits them",
                        Exit.input
                    )
                )

// ---------------------------------------------------------------------- collect

/// A complete run's metrics, by name, and the library version that made it.
let private metricsOf (s: SweepSpec) (r: SweepRun) =
    let dir = Sweep.folder s r

    use doc =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, summaryFile r.Recipe)))

    let root = doc.RootElement
    let version = root.GetProperty("versions").GetProperty("forgetting").GetString()

    let metrics =
        if r.Recipe.Scenario.Kind = "single" then
            [ yield "test accuracy", Some(root.GetProperty("test_accuracy").GetDouble())
              yield "test loss", Some(root.GetProperty("test_loss").GetDouble())
              for l in root.GetProperty("layers").EnumerateArray() ->
                  $"""sparsity h{l.GetProperty("layer").GetInt32()}""", Some(l.GetProperty("sparsity").GetDouble()) ]
        else
            [ for m in root.GetProperty("metrics").EnumerateArray() ->
                  let v = m.GetProperty "value"

                  m.GetProperty("name").GetString(),
                  if v.ValueKind = JsonValueKind.Number then
                      Some(v.GetDouble())
                  else
                      None ]

    version, metrics

let collect (args: ParseResults<CollectArgs>) =
    let s, runs = load (args.GetResult CollectArgs.Sweep)
    let completed = runs |> List.filter (complete s)

    if completed.IsEmpty then
        raise (
            UserError(
                $"no run of the sweep is complete yet (0 of {runs.Length}); run 'forgetting sweep run' first",
                Exit.input
            )
        )

    let results = completed |> List.map (fun r -> r, metricsOf s r)
    let versions = results |> List.map (fun (_, (v, _)) -> v) |> List.distinct

    if versions.Length > 1 && not (args.Contains Mixed_Versions) then
        let listed = String.concat ", " versions

        raise (
            UserError(
                $"the runs were made by {versions.Length} versions of the library ({listed}); re-run the older ones, or give --mixed-versions",
                Exit.input
            )
        )

    let rows = Sweep.table s [ for r, (_, ms) in results -> r, ms ]
    let axes = Sweep.configurationAxes s
    let names = rows.Head.Metrics |> List.map fst
    let cell (v: string) = v.Trim('"')

    let csvText =
        Results.csv
            (axes
             @ [ "runs" ]
             @ (names |> List.collect (fun n -> [ n + " mean"; n + " sd" ])))
            [ for row in rows ->
                  [ for a in axes -> row.Values |> List.find (fun (p, _) -> p = a) |> snd |> cell ]
                  @ [ string row.Runs ]
                  @ [ for _, m in row.Metrics do
                          match m with
                          | Some(mean, sd) -> yield! [ Results.num mean; Results.num sd ]
                          | None -> yield! [ ""; "" ] ] ]

    let valueOf (row: Sweep.Row) (a: string) =
        row.Values |> List.find (fun (p, _) -> p = a) |> snd |> cell

    let axisWidth (a: string) =
        rows |> List.map (fun row -> (valueOf row a).Length) |> List.fold max a.Length

    let width = 16

    let table =
        [ yield
              String.concat
                  "  "
                  ([ for a in axes -> sprintf "%-*s" (axisWidth a) a ]
                   @ [ "runs" ]
                   @ [ for n in names -> sprintf "%*s" width n ])
          for row in rows ->
              String.concat
                  "  "
                  ([ for a in axes -> sprintf "%-*s" (axisWidth a) (valueOf row a) ]
                   @ [ sprintf "%4d" row.Runs ]
                   @ [ for _, m in row.Metrics ->
                           match m with
                           | Some(mean, sd) -> sprintf "%*s" width $"%.4f{mean} ± %.4f{sd}"
                           | None -> sprintf "%*s" width "undefined" ]) ]

    let dir = Path.Combine(s.Output, "collected")
    Results.writeAtomically (Path.Combine(dir, "table.csv")) csvText
    Results.writeAtomically (Path.Combine(dir, "table.txt")) (String.concat "\n" table + "\n")

    for k, panel in List.indexed (Sweep.panels rows) do
        Forgetting.Reporting.Save.panel
            Forgetting.Reporting.Style.panelSize
            (Path.Combine(dir, $"metric-{k + 1}"))
            panel

    if completed.Length < runs.Length then
        printfn "%d of %d runs complete; the table holds those" completed.Length runs.Length

    if versions.Length > 1 then
        printfn "runs of %d library versions mixed (--mixed-versions): %s" versions.Length (String.concat ", " versions)

    printfn "mean ± sd (n − 1) over seeds, %d configurations:" rows.Length
    table |> List.iter (printfn "%s")
    printfn "collected in %s" dir

let dispatch (args: ParseResults<SweepArgs>) =
    match args.TryGetSubCommand() with
    | Some(Plan a) -> plan a
    | Some(Run a) -> run a
    | Some(Status a) -> status a
    | Some(Collect a) -> collect a
    | Some(Task a) -> task a
    | None -> usage "name a sweep command: plan, run, status, collect (or task)"
