module Forgetting.Tests.HopfieldCommandTests

open System.IO
open Expecto
open Forgetting.Tests

[<Tests>]
let tests =
    testList
        "forgetting hopfield"
        [ test "a small run prints the summary and writes recipe, runs and summary" {
              let dir = Path.Combine(Cli.tempDir (), "hopfield")

              let r =
                  Cli.run
                      [ "hopfield"
                        "--units"
                        "none"
                        "pfu"
                        "--adapted"
                        "false"
                        "--epochs"
                        "1"
                        "--seeds"
                        "2"
                        "--bags"
                        "64"
                        "--out"
                        dir ]

              Expect.equal r.ExitCode 0 $"exit code; stderr: {r.Stderr}"
              Expect.stringContains r.Stdout "test accuracy over 2 seed(s), 1 epochs, default settings" "the summary"
              Expect.stringContains r.Stdout "pooling    pfu" "a row per layer and unit"

              for f in
                  [ "recipe.json"
                    "summary.json"
                    "runs.csv"
                    "summary.csv"
                    "accuracy.svg"
                    "accuracy.png"
                    "forgotten-mass.svg"
                    "forgotten-mass.png" ] do
                  Expect.isTrue (File.Exists(Path.Combine(dir, f))) $"{f} written"

              let runs = File.ReadAllLines(Path.Combine(dir, "runs.csv"))
              Expect.equal runs.Length 5 "a header and 2 units × 2 seeds"
              let summary = File.ReadAllLines(Path.Combine(dir, "summary.csv"))
              Expect.stringContains summary[2] "pooling,pfu," "the PFU's row"
          }

          test "the repertoire task runs DeepRC's model with each unit" {
              let dir = Path.Combine(Cli.tempDir (), "repertoire")

              let r =
                  Cli.run
                      [ "hopfield"
                        "--task"
                        "repertoire"
                        "--units"
                        "none"
                        "pfu"
                        "--epochs"
                        "1"
                        "--seeds"
                        "1"
                        "--bags"
                        "16"
                        "--out"
                        dir ]

              Expect.equal r.ExitCode 0 $"exit code; stderr: {r.Stderr}"
              Expect.stringContains r.Stdout "repertoires, witness rate 0.05" "the summary's setting"
              Expect.stringContains r.Stdout "deeprc     pfu" "the PFU's row"
              let settings = File.ReadAllText(Path.Combine(dir, "recipe.json"))
              Expect.stringContains settings "\"median_scope\": \"sample\"" "the PFU's median per bag, DeepRC's scope"
              Expect.isFalse (settings.Contains "\"scenario\"") "no scenario the study does not read"
          }

          test "unknown units, layers, scopes and tasks are one line and exit 2" {
              for args, says in
                  [ [ "--units"; "gelu" ], "unknown partial-forgetting unit 'gelu'"
                    [ "--layers"; "conv" ], "unknown Hopfield layer 'conv'"
                    [ "--median-scope"; "batch" ], "unknown median scope 'batch'"
                    [ "--task"; "mnist" ], "unknown task 'mnist': bit-pattern, repertoire or vit"
                    [ "--epochs"; "0" ], "epochs must be at least 1, got 0"
                    [ "--task"; "repertoire"; "--witness-rate"; "0" ], "witness_rate must be in (0, 1], got 0"
                    [ "--task"; "vit"; "--bags"; "64" ], "hopfield has no setting 'bags'"
                    [ "--adapted"; "false"; "--heads"; "3" ], "3 heads do not divide the 8 bits of an instance"
                    [ "--task"; "vit"; "--heads"; "5" ], "5 heads do not divide the width 64"
                    [ "--task"; "vit"; "--beta"; "1" ], "hopfield has no setting 'beta'"
                    [ "--pfu-threshold"; "half" ], "pfu_threshold must be median or a number, got half"
                    [ "--dropout"; "1" ], "dropout must be in [0, 1), got 1" ] do
                  let r = Cli.run ("hopfield" :: args)
                  Expect.equal r.ExitCode 2 $"exit code of {args}"
                  Expect.stringContains r.Stderr says "the message"
                  Expect.equal (r.Stderr.Trim().Split('\n').Length) 1 "one line"
          }
          test "forgetting run <folder>/recipe.json runs a Hopfield study again to the same numbers" {
              // The PFU draws its threshold noise and the adapted layer its association dropout from the
              // seed: a re-run that missed a setting or a key would move the accuracies or the masses.
              let dir = Path.Combine(Cli.tempDir (), "hopfield-rerun")

              let first =
                  Cli.run
                      [ "hopfield"
                        "--layers"
                        "pooling"
                        "lookup"
                        "--units"
                        "none"
                        "pfu"
                        "--median-scope"
                        "query"
                        "--beta"
                        "0.5"
                        "--update-steps"
                        "2"
                        "--pfu-below"
                        "-3"
                        "--epochs"
                        "2"
                        "--seeds"
                        "2"
                        "--bags"
                        "64"
                        "--out"
                        dir ]

              Expect.equal first.ExitCode 0 $"exit code; stderr: {first.Stderr}"
              Expect.stringContains first.Stdout "own settings: 8 head(s), hidden 8, β 0.5, 2 step(s)" "the options"
              let recipe = Path.Combine(dir, "recipe.json")
              let settings = File.ReadAllText recipe
              Expect.stringContains settings "\"pfu_below\": \"-3\"" "the PFU's constant recorded"
              let again = Path.Combine(dir, "again")
              let second = Cli.run [ "run"; recipe; "--out"; again ]
              Expect.equal second.ExitCode 0 $"exit code of run; stderr: {second.Stderr}"

              // Everything but the seconds column.
              let numbers (folder: string) =
                  File.ReadAllLines(Path.Combine(folder, "runs.csv"))
                  |> Array.map (fun l -> l.Split(',')[..4] |> String.concat ",")

              Expect.equal (numbers again) (numbers dir) "the same runs, accuracies and forgotten masses"
              Expect.equal (numbers dir).Length 9 "a header and 2 layers × 2 units × 2 seeds"

              Expect.equal
                  (File.ReadAllText(Path.Combine(again, "summary.csv")))
                  (File.ReadAllText(Path.Combine(dir, "summary.csv")))
                  "the same summary"

              Expect.equal
                  (File.ReadAllText(Path.Combine(again, "recipe.json")))
                  (File.ReadAllText recipe)
                  "the same recipe"

              // An edited recipe with a value out of range is one line and exit 2.
              let bad = Path.Combine(Cli.tempDir (), "bad-recipe.json")
              File.WriteAllText(bad, File.ReadAllText(recipe).Replace("\"epochs\": 2", "\"epochs\": 0"))
              let r = Cli.run [ "run"; bad; "--out"; Path.Combine(Cli.tempDir (), "bad") ]
              Expect.equal r.ExitCode 2 "exit code of a bad recipe"
              Expect.stringContains r.Stderr "epochs must be at least 1, got 0" "the message"
              Expect.equal (r.Stderr.Trim().Split('\n').Length) 1 "one line"
          }
          test "forgetting run re-runs a repertoire study and a ViT study to the same numbers" {
              // The repertoire generator, the ViT's data (a generated set in the layout of Fashion-MNIST's
              // published files, fetched into a private cache) and every unit's draws come from the
              // recipe: a re-run that missed one of them would move the accuracies or the masses.
              let cache = Fixtures.cachedAs "fashion-mnist" 96 48
              let environment = [ "FORGETTING_DATA", cache ]

              let study (name: string) (args: string list) =
                  let dir = Path.Combine(Cli.tempDir (), name)
                  let first = Cli.runWith environment ("hopfield" :: args @ [ "--out"; dir ])
                  Expect.equal first.ExitCode 0 $"{name}: exit code; stderr: {first.Stderr}"
                  let again = Path.Combine(dir, "again")

                  let second =
                      Cli.runWith environment [ "run"; Path.Combine(dir, "recipe.json"); "--out"; again ]

                  Expect.equal second.ExitCode 0 $"{name}: exit code of run; stderr: {second.Stderr}"

                  let numbers (folder: string) =
                      File.ReadAllLines(Path.Combine(folder, "runs.csv"))
                      |> Array.map (fun l -> l.Split(',')[..4] |> String.concat ",")

                  Expect.equal (numbers again) (numbers dir) $"{name}: the same runs, accuracies and masses"
                  Expect.equal (numbers dir).Length 3 $"{name}: a header and two units"

              study
                  "repertoire"
                  [ "--task"
                    "repertoire"
                    "--units"
                    "none"
                    "pfu"
                    "--epochs"
                    "1"
                    "--seeds"
                    "1"
                    "--bags"
                    "16" ]

              study
                  "vit"
                  [ "--task"
                    "vit"
                    "--units"
                    "none"
                    "pfu"
                    "--epochs"
                    "1"
                    "--seeds"
                    "1"
                    "--train-limit"
                    "64"
                    "--test-limit"
                    "32" ]
          }
          test "forgetting bench --workload hopfield and vit-epoch print one JSON line each; --images 0 is refused" {
              for args, workload in
                  [ [ "--workload"; "hopfield"; "--reps"; "3" ], "hopfield"
                    [ "--workload"; "vit-epoch"; "--images"; "40"; "--batch"; "16"; "--reps"; "1" ], "vit-epoch" ] do
                  let r = Cli.run ("bench" :: args)
                  Expect.equal r.ExitCode 0 $"exit code of {args}; stderr: {r.Stderr}"
                  let lines = r.Stdout.Trim().Split('\n')
                  Expect.equal lines.Length 1 "one line"

                  let d = System.Text.Json.JsonDocument.Parse(lines[0]).RootElement
                  Expect.equal (d.GetProperty("workload").GetString()) workload "the workload"
                  Expect.isGreaterThan (d.GetProperty("ms_per_step_median").GetDouble()) 0.0 "a timing"

              let bad = Cli.run [ "bench"; "--workload"; "vit-epoch"; "--images"; "0" ]
              Expect.equal bad.ExitCode 2 "exit code"
              Expect.stringContains bad.Stderr "--images must be at least 1, got 0" "the message"
              Expect.equal (bad.Stderr.Trim().Split('\n').Length) 1 "one line"
          } ]
