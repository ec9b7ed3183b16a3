/// `forgetting sweep` as processes: grids run by local workers and by a real SLURM (started by
/// `.ci/run` with scripts/slurm-test-cluster), resumed, collected; bad sweeps refused.
module Forgetting.Tests.SweepCommandTests

open System
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes
open Expecto
open Forgetting.Tests
open Forgetting.Tests.Fixtures

/// A sweep over a small single-task base recipe (made by `forgetting train`): `axes` as JSON.
let private sweepOf (cache: string) (epochs: int) (axes: string) (extra: string) =
    let dir = Cli.tempDir ()

    let r =
        Cli.run
            [ "train"
              "--cache-dir"
              cache
              "--out"
              Path.Combine(dir, "base")
              "--dataset"
              "mnist"
              "--hidden"
              "8"
              "--epochs"
              string epochs
              "--batch"
              "16"
              "--variant"
              "sgd" ]

    Expect.equal r.ExitCode 0 $"the base run: {r.Stderr}"
    let path = Path.Combine(dir, "sweep.json")

    File.WriteAllText(path, $$"""{ "base": "base/recipe.json", "axes": {{axes}}, "output": "grid"{{extra}} }""")

    dir, path

/// A sweep over a small continual-learning base recipe (split into two tasks, made by `forgetting continual`).
let private continualSweepOf (cache: string) (axes: string) =
    let dir = Cli.tempDir ()

    let r =
        Cli.run
            [ "continual"
              "--cache-dir"
              cache
              "--out"
              Path.Combine(dir, "base")
              "--scenario"
              "split"
              "--classes-per-task"
              "5"
              "--hidden"
              "8"
              "--batch"
              "16"
              "--methods"
              "none" ]

    Expect.equal r.ExitCode 0 $"the base run: {r.Stderr}"
    let path = Path.Combine(dir, "sweep.json")

    File.WriteAllText(path, $$"""{ "base": "base/none-seed1/recipe.json", "axes": {{axes}}, "output": "grid" }""")

    dir, path

/// Run a sweep through SLURM and, into another folder, here; the two collected tables.
let private slurmAndLocal (cache: string) (dir: string) (sweep: string) =
    let slurm =
        Cli.run [ "sweep"; "run"; sweep; "--slurm"; "--wait"; "--cache-dir"; cache ]

    Expect.equal slurm.ExitCode 0 $"slurm: {slurm.Stdout} {slurm.Stderr}"
    Expect.stringContains slurm.Stdout "submitted job array" "the job id"
    Expect.stringContains slurm.Stdout "4 runs: 4 done" "every run done"
    let collected = Cli.run [ "sweep"; "collect"; sweep ]
    Expect.equal collected.ExitCode 0 $"collect: {collected.Stderr}"
    let local = Path.Combine(dir, "local.json")
    File.WriteAllText(local, File.ReadAllText(sweep).Replace("\"grid\"", "\"local\""))
    let here = Cli.run [ "sweep"; "run"; local; "--local"; "--cache-dir"; cache ]
    Expect.equal here.ExitCode 0 $"local: {here.Stderr}"
    Expect.equal (Cli.run [ "sweep"; "collect"; local ]).ExitCode 0 "collect local"

    File.ReadAllText(Path.Combine(dir, "grid", "collected", "table.csv")),
    File.ReadAllText(Path.Combine(dir, "local", "collected", "table.csv"))

let private grid = """{ "variant": ["sgd", "inhibition"], "seeds": 2 }"""

/// The lines of `plan` and `status` that show a run: its index, its id, what it is.
let private runLines (stdout: string) =
    stdout.Split('\n')
    |> Array.map (fun l -> l.Trim())
    |> Array.filter (fun l -> Text.RegularExpressions.Regex.IsMatch(l, "^[0-9]+ +[0-9a-f]{12} "))

let private slurmReady () =
    let required = Environment.GetEnvironmentVariable "FORGETTING_SLURM" = "required"

    let reason =
        try
            let p =
                Process.Start(ProcessStartInfo("sinfo", [ "-h"; "-o"; "%T" ], RedirectStandardOutput = true))

            let out = p.StandardOutput.ReadToEnd()
            p.WaitForExit()

            if p.ExitCode <> 0 then
                Some "sinfo failed: no SLURM controller answers"
            elif out.Trim() = "" then
                Some "sinfo lists no node"
            else
                None
        with e ->
            Some $"no SLURM here ({e.Message}); scripts/slurm-test-cluster start sets one up"

    match reason with
    | None -> ()
    | Some why when required -> failtest $"FORGETTING_SLURM=required, but {why}"
    | Some why -> skiptest why

let private scancel (target: string) =
    let p = Process.Start("scancel", [ target ])
    p.WaitForExit()

[<Tests>]
let tests =
    testList
        "forgetting sweep"
        [ test "plan, run --local, status and collect; a second run skips what is complete" {
              let cache = cachedMnist 48 16
              let dir, sweep = sweepOf cache 1 grid ""
              let plan = Cli.run [ "sweep"; "plan"; sweep ]
              Expect.equal plan.ExitCode 0 $"plan: {plan.Stderr}"
              Expect.stringContains plan.Stdout "4 runs: variant (2) × seed (2)" "the size"
              Expect.hasLength (runLines plan.Stdout) 4 "a line per run"

              let run =
                  Cli.run [ "sweep"; "run"; sweep; "--local"; "--workers"; "2"; "--cache-dir"; cache ]

              Expect.equal run.Stderr "" "stderr"
              Expect.equal run.ExitCode 0 "exit code"
              Expect.stringContains run.Stdout "4 runs to do, 2 worker(s) of 1 thread(s)" "the workers"
              Expect.stringContains run.Stdout "[4/4] done" "every run done"

              let ids =
                  runLines plan.Stdout
                  |> Array.map (fun l -> l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1])

              for id in ids do
                  for file in [ "recipe.json"; "summary.json"; "epochs.csv" ] do
                      Expect.isTrue (File.Exists(Path.Combine(dir, "grid", "runs", id, file))) $"{id}/{file}"

                  Expect.isTrue (File.Exists(Path.Combine(dir, "grid", "logs", $"{id}.log"))) $"{id}'s log"

              let status = Cli.run [ "sweep"; "status"; sweep ]
              Expect.stringContains status.Stdout "4 runs: 4 done" "status"
              let again = Cli.run [ "sweep"; "run"; sweep; "--local"; "--cache-dir"; cache ]
              Expect.stringContains again.Stdout "nothing to do: 4 of 4 runs complete" "skipped"

              let collect = Cli.run [ "sweep"; "collect"; sweep ]
              Expect.equal collect.ExitCode 0 $"collect: {collect.Stderr}"
              Expect.stringContains collect.Stdout "2 configurations" "a row per variant"
              let csv = File.ReadAllLines(Path.Combine(dir, "grid", "collected", "table.csv"))
              Expect.stringStarts csv[0] "variant,runs,test accuracy mean,test accuracy sd," "the header"
              Expect.hasLength csv 3 "a header and two rows"
              Expect.stringStarts csv[2] "inhibition,2," "two seeds of inhibition"

              for k in 1..3 do
                  Expect.isTrue
                      (File.Exists(Path.Combine(dir, "grid", "collected", $"metric-{k}.svg")))
                      $"the figure of metric {k}"

              // A run made by another version of the library is flagged, and mixed only when asked.
              let summary = Path.Combine(dir, "grid", "runs", ids[0], "summary.json")
              let node = JsonNode.Parse(File.ReadAllText summary)
              node["versions"]["forgetting"] <- JsonValue.Create "0.0.1+elsewhere"
              File.WriteAllText(summary, node.ToJsonString())
              let mixed = Cli.run [ "sweep"; "collect"; sweep ]
              assertOneLineError 1 mixed
              Expect.stringContains mixed.Stderr "2 versions of the library" "the versions"
              Expect.stringContains mixed.Stderr "0.0.1+elsewhere" "the other version"
              let allowed = Cli.run [ "sweep"; "collect"; sweep; "--mixed-versions" ]
              Expect.equal allowed.ExitCode 0 "collect --mixed-versions"
              Expect.stringContains allowed.Stdout "runs of 2 library versions mixed" "the note"
          }

          test "a run that was killed is redone, and only it" {
              let cache = cachedMnist 48 16
              let dir, sweep = sweepOf cache 1 grid ""
              let first = Cli.run [ "sweep"; "run"; sweep; "--local"; "--cache-dir"; cache ]
              Expect.equal first.ExitCode 0 $"the first run: {first.Stderr}"
              let line = (runLines (Cli.run [ "sweep"; "plan"; sweep ]).Stdout)[2]
              let id = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]
              // What a kill leaves: a run that started (its worker gone) and never wrote its summary.
              File.Delete(Path.Combine(dir, "grid", "runs", id, "summary.json"))

              File.WriteAllText(
                  Path.Combine(dir, "grid", "sweep", $"{id}.started"),
                  $"2147483000 {Environment.MachineName} x\n"
              )

              let status = Cli.run [ "sweep"; "status"; sweep ]
              Expect.stringContains status.Stdout "4 runs: 3 done, 1 failed" "the status"
              Expect.stringContains status.Stdout $"{id}  failed" "the killed run"
              Expect.stringContains status.Stdout "stopped before it finished; log" "why, and the log"
              let again = Cli.run [ "sweep"; "run"; sweep; "--local"; "--cache-dir"; cache ]
              Expect.equal again.ExitCode 0 $"the second run: {again.Stderr}"
              Expect.stringContains again.Stdout "1 runs to do" "only the killed run"
              Expect.stringContains again.Stdout $"[1/1] done       2 {id}" "redone"
          }

          test "a failed run is reported with its log, and the sweep exits non-zero" {
              let cache = cachedMnist 48 16
              // The cache holds MNIST only: the Fashion-MNIST run fails when it looks for its data.
              let _, sweep =
                  sweepOf cache 1 """{ "scenario.data": [["mnist"], ["fashion-mnist"]] }""" ""

              let r = Cli.run [ "sweep"; "run"; sweep; "--local"; "--cache-dir"; cache ]
              Expect.equal r.ExitCode 1 "exit code"
              Expect.stringContains r.Stdout "FAILED" "the failed run"
              Expect.stringContains r.Stderr "1 of 2 runs failed" "the summary line"
              let status = Cli.run [ "sweep"; "status"; sweep ]
              Expect.stringContains status.Stdout "forgetting data fetch fashion-mnist" "the failure's message"
              Expect.stringContains status.Stdout "1 done, 1 failed" "the counts"
          }

          test "bad sweeps are refused in one line before anything runs" {
              let cache = cachedMnist 16 8
              let dir, unknownField = sweepOf cache 1 """{ "optimizer.lrr": [0.1] }""" ""
              let r = Cli.run [ "sweep"; "plan"; unknownField ]
              assertOneLineError 1 r
              Expect.stringContains r.Stderr "sweep.json: run 0 (optimizer.lrr=0.1)" "the file and the run"
              Expect.stringContains r.Stderr "optimizer has no field 'lrr'" "the unknown field"
              Expect.isFalse (Directory.Exists(Path.Combine(dir, "grid"))) "no folder made"

              let refuse (axes: string) (extra: string) (words: string) =
                  let _, s = sweepOf cache 1 axes extra
                  let r = Cli.run [ "sweep"; "run"; s; "--local"; "--cache-dir"; cache ]
                  assertOneLineError (if words.Contains "max_runs" then 2 else 1) r
                  Expect.stringContains r.Stderr words "the reason"

              refuse """{ "seed": [] }""" "" "an empty axis makes an empty grid"
              refuse """{ "variant": ["sgd", "dropout"] }""" "" "unknown variant 'dropout'"
              refuse """{ "method": ["ewc"] }""" "" "the base is a single-task run"
              refuse """{ "seed": [1, 1] }""" "" "are the same run"
              refuse grid """, "max_runs": 3""" "more than its max_runs (3); give --yes"
              let _, ok = sweepOf cache 1 grid ""
              assertOneLineError 2 (Cli.run [ "sweep"; "run"; ok ])

              let noSbatch =
                  Cli.runWith [ "PATH", "/nonexistent" ] [ "sweep"; "run"; ok; "--slurm" ]

              assertOneLineError 2 noSbatch
              Expect.stringContains noSbatch.Stderr "--slurm needs sbatch on the PATH" "the reason"
              assertOneLineError 1 (Cli.run [ "sweep"; "plan"; "/nonexistent/sweep.json" ])
          }

          test "a forgetting-layer comparison through SLURM gives the local table bit for bit" {
              slurmReady ()
              let cache = cachedMnist 48 16
              let dir, sweep = sweepOf cache 1 grid ""
              let slurm, local = slurmAndLocal cache dir sweep
              Expect.equal local slurm "the same table"
              Expect.stringContains slurm "inhibition,2," "two seeds of inhibition"
          }

          test "a continual-learning comparison through SLURM gives the local table bit for bit" {
              slurmReady ()
              let cache = cachedMnist 64 32

              let dir, sweep =
                  continualSweepOf cache """{ "method": ["none", "ewc"], "seeds": 2 }"""

              let slurm, local = slurmAndLocal cache dir sweep
              Expect.equal local slurm "the same table"
              Expect.stringContains slurm "method,runs,ACC mean,ACC sd,BWT mean" "the metrics of R"
              Expect.stringContains slurm "ewc,2," "two seeds of EWC"
          }

          test "a cancelled array task is resubmitted alone" {
              slurmReady ()
              let cache = cachedMnist 400 16
              // Long enough runs (300 epochs) that the first is still running when it is cancelled.
              let dir, sweep = sweepOf cache 300 """{ "seeds": 3 }""" ""
              let line = (runLines (Cli.run [ "sweep"; "plan"; sweep ]).Stdout)[0]
              let first = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]

              let submit =
                  Cli.run
                      [ "sweep"
                        "run"
                        sweep
                        "--slurm"
                        "--max-parallel"
                        "1"
                        "--cache-dir"
                        cache ]

              Expect.equal submit.ExitCode 0 $"submit: {submit.Stderr}"
              let words = submit.Stdout.Split(' ')
              let job = words[3].TrimEnd(':')
              let clock = Stopwatch.StartNew()
              let started = Path.Combine(dir, "grid", "sweep", $"{first}.started")

              let rec untilRunning () =
                  if File.Exists started then
                      ()
                  elif clock.Elapsed.TotalSeconds > 60.0 then
                      failtest "run 0 never started"
                  else
                      Threading.Thread.Sleep 100
                      untilRunning ()

              untilRunning ()

              untilRunning ()
              scancel $"{job}_0"

              let rec untilIdle () =
                  let s = Cli.run [ "sweep"; "status"; sweep ]

                  if s.Stdout.Contains "running" || s.Stdout.Contains "pending" then
                      if clock.Elapsed.TotalSeconds > 110.0 then
                          failtest $"the array did not finish: {s.Stdout}"

                      Threading.Thread.Sleep 500
                      untilIdle ()
                  else
                      s

              let status = untilIdle ()
              Expect.stringContains status.Stdout "3 runs: 2 done, 1 failed" "the cancelled run failed"
              Expect.stringContains status.Stdout "CANCELLED" "what SLURM says"

              let again =
                  Cli.run [ "sweep"; "run"; sweep; "--slurm"; "--wait"; "--cache-dir"; cache ]

              Expect.equal again.ExitCode 0 $"resubmission: {again.Stdout} {again.Stderr}"
              Expect.stringContains again.Stdout ": 1 runs (0)" "only the cancelled run"
              Expect.stringContains again.Stdout "3 runs: 3 done" "all done"
              Expect.isTrue (File.Exists(Path.Combine(dir, "grid", "sweep", "jobs.tsv"))) "the submissions"
          } ]
