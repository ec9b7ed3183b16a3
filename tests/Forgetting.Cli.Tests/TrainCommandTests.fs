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
              Expect.equal (root.GetProperty("config").GetProperty("seed").GetInt32()) 7 "config.seed"

              Expect.equal
                  (root.GetProperty("config").GetProperty("variant").GetString())
                  "lateral_inhibition"
                  "config.variant"

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
              Expect.isEmpty (Directory.GetFiles(out, "*.tmp", SearchOption.AllDirectories)) "no temporary file is left"
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
                        "8" ]
                      @ quick
                  )

              Expect.equal r.Stderr "" "stderr"
              Expect.equal r.ExitCode 0 "exit code"
              Expect.stringContains r.Stdout "fig2: Ablation of hidden units" "fig2's title"

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
