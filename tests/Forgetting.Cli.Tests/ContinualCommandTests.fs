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

          test "a binarized net with metaplastic Adam runs through continual, and its recipe says how it was tested" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "bnn")

              let r =
                  Cli.run (
                      [ "continual"
                        "--cache-dir"
                        cache
                        "--out"
                        out
                        "--methods"
                        "none"
                        "ewc"
                        "--model"
                        "binarized"
                        "--optimizer"
                        "metaplastic"
                        "--meta"
                        "1.35" ]
                      @ quick
                  )

              Expect.equal r.Stderr "" "stderr"
              Expect.equal r.ExitCode 0 "exit code"
              Expect.stringContains r.Stdout "none seed 1  after task 2/2" "progress per task"

              let recipe =
                  JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "ewc-seed1", "recipe.json"))).RootElement

              let model = recipe.GetProperty "model"
              Expect.equal (model.GetProperty("kind").GetString()) "binarized" "the model"
              Expect.equal (model.GetProperty("norm_state").GetString()) "task" "each task tested with its own γ, β"

              Expect.equal
                  (recipe.GetProperty("optimizer").GetProperty("kind").GetString())
                  "metaplastic"
                  "the optimizer"

              Expect.isTrue (recipe.GetProperty("optimizer").GetProperty("reset_per_task").GetBoolean()) "Adam per task"

              let ewc = recipe.GetProperty("terms").[0].GetProperty "settings"
              Expect.isTrue (ewc.GetProperty("binary_anchor").GetBoolean()) "EWC anchored at the binary weights"

              // The safetensors header: 8 bytes of its length, then JSON naming every tensor.
              let bytes =
                  File.ReadAllBytes(Path.Combine(out, "none-seed1", "checkpoint-task2.safetensors"))

              let length = int (System.BitConverter.ToUInt64(bytes, 0))

              let header =
                  JsonDocument.Parse(System.Text.Encoding.UTF8.GetString(bytes, 8, length)).RootElement

              let names = [ for p in header.EnumerateObject() -> p.Name ]

              Expect.contains names "task1/bn1/gamma" "task 1's γ kept"
              Expect.contains names "optimizer/m/fc1/weight" "the optimizer's buffers by name"
          }

          test "binarized and metaplastic options out of place are refused in one line" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "never")

              let run extra =
                  Cli.run (
                      [ "continual"; "--cache-dir"; cache; "--out"; out; "--methods"; "none" ]
                      @ quick
                      @ extra
                  )

              assertOneLineError 2 (run [ "--optimizer"; "metaplastic" ])
              assertOneLineError 2 (run [ "--optimizer"; "metaplastic"; "--meta"; "-1" ])
              assertOneLineError 2 (run [ "--meta"; "1" ])
              assertOneLineError 2 (run [ "--model"; "binarized"; "--norm"; "none" ])
              assertOneLineError 2 (run [ "--model"; "binarized"; "--no-affine" ])
              assertOneLineError 2 (run [ "--model"; "binarized"; "--forgetting-layer" ])
              assertOneLineError 2 (run [ "--norm-state"; "task" ])
              assertOneLineError 2 (run [ "--model"; "perceptron" ])
              assertOneLineError 2 (run [ "--reset-optimizer"; "--keep-optimizer" ])
              Expect.isFalse (Directory.Exists out) "no folder"
          }

          test "a folder holding another recipe's run is refused" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "cl")

              let args =
                  [ "continual"; "--cache-dir"; cache; "--out"; out; "--methods"; "none" ] @ quick

              Expect.equal (Cli.run args).ExitCode 0 "the first run"
              assertOneLineError 2 (Cli.run (args @ [ "--epochs"; "2" ]))
          } ]
