/// `forgetting continual` and `forgetting run` as processes, on a small generated data set.
module Forgetting.Tests.ContinualCommandTests

open System.IO
open System.Text.Json
open Expecto
open Forgetting.Tests
open Forgetting.Tests.Fixtures

let private quick =
    [ "--scenario"
      "split"
      "--classes-per-task"
      "5"
      "--hidden"
      "8"
      "--batch"
      "16" ]

[<Tests>]
let tests =
    testList
        "forgetting continual and run"
        [ test "continual writes per method and seed the recipe, R, its metrics with definitions and figures" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "cl")

              let r =
                  Cli.run (
                      [ "continual"
                        "--cache-dir"
                        cache
                        "--out"
                        out
                        "--methods"
                        "none"
                        "joint" ]
                      @ quick
                  )

              Expect.equal r.Stderr "" "stderr"
              Expect.equal r.ExitCode 0 "exit code"
              Expect.stringContains r.Stdout "none seed 1  after task 2/2" "progress per task"
              Expect.stringContains r.Stdout "BWT: backward transfer" "each metric with its definition"
              Expect.stringContains r.Stdout "joint " "a row of the table per method"

              for run in [ "none-seed1"; "joint-seed1" ] do
                  let dir = Path.Combine(out, run)

                  for file in
                      [ "recipe.json"
                        "R.csv"
                        "metrics.json"
                        "figure-1.svg"
                        "figure-1.png"
                        "figure-2.svg" ] do
                      Expect.isTrue (File.Exists(Path.Combine(dir, file))) $"{run}/{file}"

              let rows = File.ReadAllLines(Path.Combine(out, "none-seed1", "R.csv"))
              Expect.equal rows.Length 4 "a header, the row at initialisation and one per task"
              Expect.equal rows[0] "after,task1,task2" "the header"

              use metrics =
                  JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "none-seed1", "metrics.json")))

              let names =
                  [ for m in metrics.RootElement.GetProperty("metrics").EnumerateArray() ->
                        m.GetProperty("name").GetString() ]

              Expect.containsAll names [ "ACC"; "BWT"; "FWT" ] "the metrics"

              Expect.isTrue
                  (metrics.RootElement.GetProperty("versions").GetProperty("forgetting").GetString()
                   <> "")
                  "versions"
          }

          test "run re-runs a recipe to the same R" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "cl")

              let args =
                  [ "continual"; "--cache-dir"; cache; "--out"; out; "--methods"; "none" ] @ quick

              Expect.equal (Cli.run args).ExitCode 0 "the first run"
              let folder = Path.Combine(out, "none-seed1")
              let first = File.ReadAllText(Path.Combine(folder, "R.csv"))

              let rerun = Path.Combine(Cli.tempDir (), "rerun")

              let r =
                  Cli.run
                      [ "run"
                        Path.Combine(folder, "recipe.json")
                        "--cache-dir"
                        cache
                        "--out"
                        rerun ]

              Expect.equal r.ExitCode 0 $"run: {r.Stderr}"
              Expect.equal (File.ReadAllText(Path.Combine(rerun, "R.csv"))) first "run gives the same R"
          }

          test "bad arguments and files get one line and a non-zero exit, before any folder is made" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "never")

              let run extra =
                  Cli.run ([ "continual"; "--cache-dir"; cache; "--out"; out ] @ quick @ extra)

              assertOneLineError 2 (run [ "--methods"; "replay" ])
              assertOneLineError 2 (run [ "--epochs"; "0" ])
              assertOneLineError 2 (run [ "--lr"; "nan" ])
              assertOneLineError 2 (run [ "--setting"; "instance" ])
              assertOneLineError 2 (run [ "--classes-per-task"; "20" ])
              assertOneLineError 2 (run [ "--term"; "l2:strength=1" ])
              assertOneLineError 2 (run [ "--scenario"; "sequence"; "--data"; "mnist" ])
              assertOneLineError 2 (run [ "--methods"; "ewc"; "--lambda"; "-1" ])
              assertOneLineError 2 (run [ "--methods"; "online-ewc"; "--gamma"; "1.5" ])
              assertOneLineError 2 (run [ "--methods"; "ewc"; "--fisher-samples"; "0" ])
              assertOneLineError 2 (run [ "--methods"; "ewc"; "--fisher"; "guessed" ])
              assertOneLineError 2 (run [ "--methods"; "si"; "--si-c"; "-0.5" ])
              Expect.isFalse (Directory.Exists out) "no folder"
              assertOneLineError 1 (Cli.run [ "run"; "/nonexistent/recipe.json" ])
              // A penalty that acts only after a task is refused where there is one task.
              assertOneLineError 2 (Cli.run [ "train"; "--cache-dir"; cache; "--term"; "ewc:lambda=10" ])
              let bad = Path.Combine(Cli.tempDir (), "recipe.json")
              File.WriteAllText(bad, "{ \"scenario\": 3 }")
              assertOneLineError 1 (Cli.run [ "run"; bad ])
              let empty = Cli.tempDir ()

              assertOneLineError 1 (Cli.run [ "continual"; "--cache-dir"; empty; "--out"; out; "--methods"; "none" ])

              Expect.isFalse (Directory.Exists out) "no folder when the data is missing"
          }

          test "a folder holding another recipe's run is refused" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "cl")

              let args =
                  [ "continual"; "--cache-dir"; cache; "--out"; out; "--methods"; "none" ] @ quick

              Expect.equal (Cli.run args).ExitCode 0 "the first run"
              assertOneLineError 2 (Cli.run (args @ [ "--epochs"; "2" ]))
          } ]
