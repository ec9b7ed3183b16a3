/// `forgetting continual --methods mas mas-local …` and `forgetting importance` as processes, on a small
/// generated data set.
module Forgetting.Tests.MasCommandTests

open System.IO
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
        "forgetting continual with MAS, and importance"
        [ test
              "MAS and local MAS run as methods; importance reads a run's model and writes its summary, values, agreement and histogram" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "mas")

              let r =
                  Cli.run (
                      [ "continual"
                        "--cache-dir"
                        cache
                        "--out"
                        out
                        "--methods"
                        "mas"
                        "mas-local"
                        "--mas-lambda"
                        "2"
                        "--mas-alpha"
                        "0.5" ]
                      @ quick
                  )

              Expect.equal r.Stderr "" "stderr"
              Expect.equal r.ExitCode 0 "exit code"
              Expect.stringContains r.Stdout "mas-local seed 1  after task 2/2" "progress per task"

              for file in [ "comparison-3.svg"; "comparison-4.svg" ] do
                  Expect.isTrue (File.Exists(Path.Combine(out, file))) $"the Ω histograms: {file}"

              let recipe = File.ReadAllText(Path.Combine(out, "mas-local-seed1", "recipe.json"))
              Expect.stringContains recipe "\"local\"" "local importance in the recipe"
              Expect.stringContains recipe "\"blend\"" "the blend in the recipe"

              let imp = Path.Combine(Cli.tempDir (), "imp")

              let i =
                  Cli.run
                      [ "importance"
                        Path.Combine(out, "mas-seed1")
                        "--cache-dir"
                        cache
                        "--out"
                        imp ]

              Expect.equal i.Stderr "" "importance stderr"
              Expect.equal i.ExitCode 0 "importance exit code"
              Expect.stringContains i.Stdout "mas against mas-local" "the agreement"
              Expect.stringContains i.Stdout "training samples" "on the training inputs by default"

              let onTest =
                  Cli.run
                      [ "importance"
                        Path.Combine(out, "mas-seed1")
                        "--cache-dir"
                        cache
                        "--on"
                        "test"
                        "--task"
                        "2"
                        "--methods"
                        "mas-local"
                        "--out"
                        Path.Combine(Cli.tempDir (), "imp2") ]

              Expect.equal onTest.ExitCode 0 $"importance on test inputs: {onTest.Stderr}"
              Expect.stringContains onTest.Stdout "test samples" "on the test inputs"

              for file in
                  [ "summary.csv"
                    "agreement.csv"
                    "values-mas.safetensors"
                    "values-mas-local.safetensors"
                    "values-ewc.safetensors"
                    "histogram.svg"
                    "histogram.png" ] do
                  Expect.isTrue (File.Exists(Path.Combine(imp, file))) file

              let summary = File.ReadAllLines(Path.Combine(imp, "summary.csv"))
              Expect.equal summary[0] "method,tensor,count,mean,median,max,zeros" "the header"
              Expect.isTrue (summary |> Array.exists (fun l -> l.StartsWith "mas-local,fc1/weight,")) "a row per tensor"
          }

          test "importance reads a train folder's saved model, checked against its recipe" {
              let cache = cachedMnist 64 32
              let run = Path.Combine(Cli.tempDir (), "train")

              let trained =
                  Cli.run
                      [ "train"
                        "--cache-dir"
                        cache
                        "--out"
                        run
                        "--dataset"
                        "mnist"
                        "--hidden"
                        "8"
                        "--epochs"
                        "1"
                        "--variant"
                        "sgd" ]

              Expect.equal trained.ExitCode 0 $"train: {trained.Stderr}"
              let i = Cli.run [ "importance"; run; "--cache-dir"; cache ]
              Expect.equal i.Stderr "" "importance stderr"
              Expect.equal i.ExitCode 0 "importance exit code"

              let summary =
                  File.ReadAllLines(Path.Combine(run, "importance-task1-after1", "summary.csv"))

              Expect.isTrue (summary |> Array.exists (fun l -> l.StartsWith "mas,fc2/weight,")) "the output layer's Ω"
              assertOneLineError 2 (Cli.run [ "importance"; run; "--cache-dir"; cache; "--task"; "2" ])
              // A model of another net than its recipe describes.
              let recipe = Path.Combine(run, "recipe.json")

              File.WriteAllText(
                  recipe,
                  File.ReadAllText(recipe).Replace("\"hidden\": [\n      8\n    ]", "\"hidden\": [\n      9\n    ]")
              )

              let other = Cli.run [ "importance"; run; "--cache-dir"; cache ]
              assertOneLineError 2 other
              Expect.stringContains other.Stderr "does not hold the model its recipe describes" "the mismatch"
          }

          test "bad MAS and importance arguments get one line and a non-zero exit" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "never")

              let run extra =
                  Cli.run ([ "continual"; "--cache-dir"; cache; "--out"; out ] @ quick @ extra)

              assertOneLineError 2 (run [ "--methods"; "mas"; "--mas-lambda"; "-1" ])
              assertOneLineError 2 (run [ "--methods"; "mas"; "--mas-alpha"; "1.5" ])
              assertOneLineError 2 (run [ "--methods"; "mas"; "--mas-batch"; "0" ])
              assertOneLineError 2 (run [ "--methods"; "mas"; "--mas-norm"; "l3" ])
              assertOneLineError 2 (run [ "--methods"; "mas"; "--mas-samples"; "0" ])
              Expect.isFalse (Directory.Exists out) "no folder"
              assertOneLineError 2 (Cli.run [ "importance"; Cli.tempDir (); "--cache-dir"; cache ])
              assertOneLineError 2 (Cli.run [ "importance"; Cli.tempDir (); "--methods"; "si" ])
              assertOneLineError 2 (Cli.run [ "importance"; Cli.tempDir (); "--on"; "validation" ])
          } ]
