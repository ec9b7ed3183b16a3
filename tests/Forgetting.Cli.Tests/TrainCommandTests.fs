/// `forgetting train` and `forgetting compare` as processes, on a small generated data set.
module Forgetting.Tests.TrainCommandTests

open System.IO
open System.Text.Json
open Expecto
open Forgetting.Tests
open Forgetting.Tests.Fixtures

let private quick =
    [ "--dataset"
      "mnist"
      "--hidden"
      "16"
      "8"
      "--epochs"
      "2"
      "--batch"
      "16" ]

[<Tests>]
let tests =
    testList
        "forgetting train, compare, figure and report"
        [ test "train writes a summary with config, seed, data and versions, per-epoch and per-unit CSVs" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "run")

              let r =
                  Cli.run ([ "train"; "--cache-dir"; cache; "--out"; out; "--seed"; "7" ] @ quick)

              Expect.equal r.Stderr "" "stderr"
              Expect.equal r.ExitCode 0 "exit code"
              Expect.stringContains r.Stdout "lateral_inhibition  epoch  2/2" "the last epoch"
              Expect.stringContains r.Stdout "hidden layer 2: sparsity" "the sparsity of layer 2"

              use summary =
                  JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "summary.json")))

              let root = summary.RootElement
              Expect.equal (root.GetProperty("recipe").GetProperty("seed").GetInt32()) 7 "recipe.seed"
              Expect.equal (root.GetProperty("variant").GetString()) "lateral_inhibition" "variant"

              Expect.equal
                  (root.GetProperty("recipe").GetProperty("terms").GetArrayLength())
                  2
                  "the recipe's terms: ERS and IRS"

              use recipe = JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "recipe.json")))

              Expect.isTrue
                  (JsonElement.DeepEquals(recipe.RootElement, root.GetProperty "recipe"))
                  "recipe.json is the summary's recipe"

              Expect.equal (root.GetProperty("data").GetProperty("train_examples").GetInt32()) 64 "data.train_examples"

              Expect.stringStarts
                  (root.GetProperty("versions").GetProperty("forgetting").GetString())
                  "0.1.0"
                  "versions.forgetting"

              let accuracy = root.GetProperty("test_accuracy").GetDouble()
              Expectations.inRange accuracy 0.0 1.0 "test_accuracy"
              Expect.equal (File.ReadAllLines(Path.Combine(out, "epochs.csv")).Length) 3 "lines of epochs.csv"
              // A header and one row per hidden unit: 16 + 8.
              Expect.equal (File.ReadAllLines(Path.Combine(out, "units.csv")).Length) 25 "lines of units.csv"

              // The trained model as safetensors: an 8-byte little-endian header length, the JSON header
              // (each tensor's dtype, shape and byte range; the recipe in the metadata), then the data.
              let model = File.ReadAllBytes(Path.Combine(out, "model.safetensors"))
              let headerLength = int (System.BitConverter.ToInt64(model, 0))

              use header =
                  JsonDocument.Parse(System.Text.Encoding.UTF8.GetString(model, 8, headerLength))

              let fc1 = header.RootElement.GetProperty "fc1/weight"
              Expect.equal (fc1.GetProperty("dtype").GetString()) "F32" "float32"

              Expect.equal
                  [ for d in fc1.GetProperty("shape").EnumerateArray() -> d.GetInt32() ]
                  [ 784; 16 ]
                  "its shape"

              let metadata =
                  header.RootElement.GetProperty("__metadata__").GetProperty("recipe").GetString()

              Expect.equal metadata (File.ReadAllText(Path.Combine(out, "recipe.json")).TrimEnd()) "the recipe with it"
          }

          test "the same seed gives the same numbers" {
              let cache = cachedMnist 64 32

              let run () =
                  let out = Path.Combine(Cli.tempDir (), "run")

                  let r =
                      Cli.run ([ "train"; "--cache-dir"; cache; "--out"; out; "--variant"; "l2" ] @ quick)

                  Expect.equal r.ExitCode 0 "exit code"

                  File.ReadAllText(Path.Combine(out, "epochs.csv")).Split('\n')
                  |> Array.map (fun l -> l.Split(',') |> Array.truncate 4)

              let first = run ()
              Expect.equal (run ()) first "the second run's epochs.csv"
          }

          test "compare prints a table of accuracy and sparsity over seeds" {
              let cache = cachedMnist 48 16
              let out = Path.Combine(Cli.tempDir (), "cmp")

              let r =
                  Cli.run (
                      [ "compare"
                        "--cache-dir"
                        cache
                        "--out"
                        out
                        "--variants"
                        "sgd"
                        "inhibition"
                        "--seeds"
                        "2" ]
                      @ quick
                  )

              Expect.equal r.ExitCode 0 "exit code"

              Expect.stringContains
                  r.Stdout
                  "variant                  test accuracy %      sparsity h1      sparsity h2"
                  "the table's header"

              Expect.stringContains r.Stdout "inhibition" "a row of the table"
              Expect.equal (File.ReadAllLines(Path.Combine(out, "runs.csv")).Length) 5 "lines of runs.csv"
              Expect.isTrue (File.Exists(Path.Combine(out, "compare.json"))) "compare.json is written"

              // Every run is a train folder of its own, with the recipe that re-runs it.
              for name in [ "sgd-seed1"; "sgd-seed2"; "inhibition-seed1"; "inhibition-seed2" ] do
                  for file in [ "recipe.json"; "summary.json"; "epochs.csv"; "units.csv" ] do
                      Expect.isTrue (File.Exists(Path.Combine(out, name, file))) $"{name}/{file}"

              let runsCsv = File.ReadAllLines(Path.Combine(out, "runs.csv"))
              let again = Path.Combine(Cli.tempDir (), "again")

              let rerun =
                  Cli.run
                      [ "run"
                        Path.Combine(out, "inhibition-seed2", "recipe.json")
                        "--cache-dir"
                        cache
                        "--out"
                        again ]

              Expect.equal rerun.ExitCode 0 "exit code of run"

              use summary =
                  JsonDocument.Parse(File.ReadAllText(Path.Combine(again, "summary.json")))

              let accuracy = summary.RootElement.GetProperty("test_accuracy").GetDouble()
              let row = runsCsv |> Array.find (fun l -> l.StartsWith "inhibition,2,")
              Expect.equal (float (row.Split(',')[2])) accuracy "run gives the compared run's accuracy"
              Expect.isEmpty (Directory.GetFiles(out, "*.tmp", SearchOption.AllDirectories)) "no temporary file is left"
          }

          test "run re-runs a train folder's recipe to the same numbers" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "run")

              let r =
                  Cli.run (
                      [ "train"
                        "--cache-dir"
                        cache
                        "--out"
                        out
                        "--variant"
                        "l1"
                        "--lr"
                        "1e-7"
                        "--train-limit"
                        "48" ]
                      @ quick
                  )

              Expect.equal r.ExitCode 0 "exit code of train"
              let recipe = File.ReadAllText(Path.Combine(out, "recipe.json"))
              Expect.stringContains recipe "\"lr\": 1E-07" "the learning rate at full precision"
              Expect.stringContains recipe "\"train_limit\": 48" "the training limit"
              let again = Path.Combine(Cli.tempDir (), "again")

              let rerun =
                  Cli.run
                      [ "run"
                        Path.Combine(out, "recipe.json")
                        "--cache-dir"
                        cache
                        "--out"
                        again ]

              Expect.equal rerun.Stderr "" "stderr of run"
              Expect.equal rerun.ExitCode 0 "exit code of run"
              Expect.stringContains rerun.Stdout "l1 on mnist: test accuracy" "what run printed"
              Expect.equal (File.ReadAllText(Path.Combine(again, "recipe.json"))) recipe "the same recipe"

              let epochs (dir: string) =
                  File.ReadAllLines(Path.Combine(dir, "epochs.csv"))
                  |> Array.map (fun l -> l.Split(',') |> Array.truncate 4)

              Expect.equal (epochs again) (epochs out) "the same losses and accuracies"

              Expect.equal
                  (File.ReadAllText(Path.Combine(again, "units.csv")))
                  (File.ReadAllText(Path.Combine(out, "units.csv")))
                  "the same read-outs"
          }

          test "bad options and a missing data set are one clear line" {
              let empty = Cli.tempDir ()
              let missing = Cli.run [ "train"; "--cache-dir"; empty; "--dataset"; "mnist" ]
              assertOneLineError 1 missing
              Expect.stringContains missing.Stderr "forgetting data fetch mnist" "the hint"
              assertOneLineError 2 (Cli.run [ "train"; "--variant"; "dropout-everything" ])
              assertOneLineError 2 (Cli.run [ "train"; "--epochs"; "0" ])
              assertOneLineError 2 (Cli.run [ "train"; "--lr"; "-1" ])
              assertOneLineError 2 (Cli.run [ "train"; "--dataset"; "cifar" ])
              assertOneLineError 2 (Cli.run [ "compare"; "--variant"; "sgd" ])
              let misplaced = Cli.run [ "train"; "--draws"; "3" ]
              assertOneLineError 2 misplaced

              Expect.stringContains
                  misplaced.Stderr
                  "--draws is not an option of 'train' (it belongs to 'figure')"
                  "the misplaced option"
          }

          test "an option that the variant, the optimizer or the figure ignores is one clear line, before any work" {
              let refused (args: string list) (says: string) =
                  let r = Cli.run args
                  assertOneLineError 2 r
                  Expect.stringContains r.Stderr says (String.concat " " args)

              refused [ "train"; "--variant"; "sgd"; "--gate"; "static" ] "sgd has no forgetting layer"
              refused [ "train"; "--optimizer"; "adam"; "--nesterov" ] "--nesterov is an option of sgd"
              refused [ "train"; "--variant"; "i_short_cut"; "--lateral-on"; "gates" ] "has no irs term"
              refused [ "train"; "--gate"; "sometimes" ] "--gate must be one of input, static"
              refused [ "train"; "--preset"; "nope" ] "unknown preset 'nope'"
              refused [ "train"; "--schedule"; "step" ] "--schedule must be one of constant, cosine"
              refused [ "figure"; "--figures"; "fig3b"; "--ablate"; "gated-branch" ] "a setting of fig2, not of fig3b"
              refused [ "figure"; "--figures"; "fig2"; "--model"; "/nonexistent/run" ] "no saved model"
              refused [ "train"; "--model"; "x" ] "not an option of 'train'"
          }

          test
              "figure --model draws fig2 and fig3b from a train folder's model, and refuses a truncated one in one line" {
              let cache = cachedMnist 64 32
              let dir = Cli.tempDir ()
              let run = Path.Combine(dir, "run")

              let trained =
                  Cli.run (
                      [ "train"
                        "--cache-dir"
                        cache
                        "--out"
                        run
                        "--preset"
                        "claims"
                        "--readout"
                        "gate-mean" ]
                      @ quick
                  )

              Expect.equal trained.ExitCode 0 $"train: {trained.Stderr}"
              let header = File.ReadLines(Path.Combine(run, "units.csv")) |> Seq.head

              Expect.equal
                  header
                  "layer,unit,mean_activation,sd_activation,importance,readout,firing_rate,wf,gate_mean"
                  "units.csv"

              Expect.stringContains
                  (File.ReadAllText(Path.Combine(run, "units.csv")))
                  ",gate-mean,"
                  "the read-out named"

              let figs = Path.Combine(dir, "figs")

              let r =
                  Cli.run
                      [ "figure"
                        "--cache-dir"
                        cache
                        "--dataset"
                        "mnist"
                        "--out"
                        figs
                        "--figures"
                        "fig2"
                        "fig3b"
                        "--model"
                        run
                        "--draws"
                        "2"
                        "--fisher-samples"
                        "8" ]

              Expect.equal r.ExitCode 0 $"figure: {r.Stderr}"
              Expect.isFalse (r.Stdout.Contains "epoch") "no training"

              use fig =
                  JsonDocument.Parse(File.ReadAllText(Path.Combine(figs, "fig2", "figure.json")))

              let runJson = fig.RootElement.GetProperty("runs").[0]

              Expect.equal
                  (runJson.GetProperty("readout").GetString())
                  "gate-mean"
                  "the read-out of the saved model's recipe"

              // A truncated file is refused in one line (wrong names, shapes and dtypes: CheckpointTests,
              // Checkpoint.readParamsLike).
              let bytes = File.ReadAllBytes(Path.Combine(run, "model.safetensors"))
              File.WriteAllBytes(Path.Combine(run, "model.safetensors"), bytes[.. bytes.Length - 9])

              let bad =
                  Cli.run
                      [ "figure"
                        "--cache-dir"
                        cache
                        "--dataset"
                        "mnist"
                        "--out"
                        Path.Combine(dir, "bad")
                        "--figures"
                        "fig2"
                        "--model"
                        run ]

              assertOneLineError 1 bad
              Expect.stringContains bad.Stderr "beyond" "a truncated file"
          }

          test "figure writes JSON, CSV, SVG and PNG per panel, and report gathers them into one page" {
              let cache = cachedMnist 64 32
              let out = Path.Combine(Cli.tempDir (), "figs")

              let r =
                  Cli.run (
                      [ "figure"
                        "--cache-dir"
                        cache
                        "--out"
                        out
                        "--figures"
                        "fig1e"
                        "fig2"
                        "fig3b"
                        "--draws"
                        "2"
                        "--fisher-samples"
                        "8"
                        // ERS's λ for the variants that have forgetting layers; the plain net of fig1e has none.
                        "--term"
                        "ers:weight=0.2" ]
                      @ quick
                  )

              Expect.equal r.Stderr "" "stderr"
              Expect.equal r.ExitCode 0 "exit code"
              Expect.stringContains r.Stdout "fig2: Ablation of hidden units" "fig2's title"
              // Redirected, a figure prints a line per epoch of every run it trains.
              Expect.stringContains r.Stdout "fig2  lateral_inhibition seed 1, epoch 2/2" "a line per epoch"

              // Two hidden layers (quick): fig2 has (a), (b) per layer, (c) and (d).
              for fig, panels in [ "fig1e", 3; "fig2", 5; "fig3b", 1 ] do
                  let dir = Path.Combine(out, fig)
                  use json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "figure.json")))
                  Expect.equal (json.RootElement.GetProperty("panels").GetArrayLength()) panels $"{fig}: panels"

                  for k in 1..panels do
                      System.Xml.Linq.XDocument.Parse(File.ReadAllText(Path.Combine(dir, $"{fig}-{k}.svg")))
                      |> ignore

                      let png = File.ReadAllBytes(Path.Combine(dir, $"{fig}-{k}.png"))

                      Expect.equal
                          png[..7]
                          [| 137uy; 80uy; 78uy; 71uy; 13uy; 10uy; 26uy; 10uy |]
                          $"{fig}-{k}.png is a PNG"

                      Expect.isTrue
                          (File.ReadAllLines(Path.Combine(dir, $"{fig}-{k}.csv")).Length > 1)
                          $"{fig}-{k}.csv has rows"

                  for combined in [ $"{fig}.svg"; $"{fig}.png" ] do
                      Expect.isTrue (File.Exists(Path.Combine(dir, combined))) $"the combined figure {combined}"

              // A figure's folder holds its recipe; `run` draws the figure again, to the same numbers.
              let again = Path.Combine(Cli.tempDir (), "again")

              let rerun =
                  Cli.run
                      [ "run"
                        Path.Combine(out, "fig2", "recipe.json")
                        "--cache-dir"
                        cache
                        "--out"
                        again ]

              Expect.equal rerun.Stderr "" "stderr of run"
              Expect.equal rerun.ExitCode 0 "exit code of run"

              for k in 1..5 do
                  Expect.equal
                      (File.ReadAllText(Path.Combine(again, $"fig2-{k}.csv")))
                      (File.ReadAllText(Path.Combine(out, "fig2", $"fig2-{k}.csv")))
                      $"fig2-{k}.csv again"

              let report = Cli.run [ "report"; out ]
              Expect.equal report.ExitCode 0 "exit code of report"
              let page = Path.Combine(out, "report.html")
              Expect.equal (report.Stdout.Trim()) $"3 figures gathered into {page}" "the report's output"
              let html = File.ReadAllText page
              Expect.equal (html.Split("<svg").Length - 1) 9 "charts on the page"
              Expect.stringContains html "data:image/png;base64," "the PNGs are embedded"
              // Ids (clip paths, gradients) stay apart when the charts share one page.
              let ids =
                  System.Text.RegularExpressions.Regex.Matches(html, "\\bid=\"([^\"]+)\"")
                  |> Seq.map (fun m -> m.Groups[1].Value)
                  |> List.ofSeq

              Expect.isNonEmpty ids "the charts carry ids"
              Expect.equal (List.distinct ids).Length ids.Length "every id on the page is its own"
          }

          test "figure and report refuse bad input with one line" {
              assertOneLineError 2 (Cli.run [ "figure"; "--figures"; "fig9" ])

              let layer =
                  Cli.run
                      [ "figure"
                        "--figures"
                        "fig4b"
                        "--perturb-layer"
                        "4"
                        "--cache-dir"
                        Cli.tempDir () ]

              assertOneLineError 2 layer
              Expect.stringContains layer.Stderr "1 to 3, got 4" "refused before the data is looked for"
              assertOneLineError 2 (Cli.run [ "figure"; "--figures"; "fig2"; "--draws"; "0" ])
              assertOneLineError 1 (Cli.run [ "report"; "/nonexistent/figures" ])
              assertOneLineError 1 (Cli.run [ "report"; Cli.tempDir () ])
              // A value Core refuses (more t-SNE points than the perplexity allows) is one line too, not a trace.
              let cache = cachedMnist 16 8

              let tiny =
                  Cli.run (
                      [ "figure"; "--cache-dir"; cache; "--figures"; "fig4c"; "--tsne-points"; "3" ]
                      @ quick
                  )

              assertOneLineError 2 tiny
              Expect.stringContains tiny.Stderr "perplexity" "the reason"
          } ]
