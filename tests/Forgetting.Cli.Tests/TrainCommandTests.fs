/// `forgetting train` and `forgetting compare` as processes, on a small generated data set.
module Forgetting.Tests.TrainCommandTests

open System.IO
open System.Text.Json
open Xunit
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

[<Fact>]
let ``train writes a summary with config, seed, data and versions, per-epoch and per-unit CSVs`` () =
    let cache = cachedMnist 64 32
    let out = Path.Combine(Cli.tempDir (), "run")

    let r =
        Cli.run ([ "train"; "--cache-dir"; cache; "--out"; out; "--seed"; "7" ] @ quick)

    Assert.Equal("", r.Stderr)
    Assert.Equal(0, r.ExitCode)
    Assert.Contains("lateral_inhibition  epoch  2/2", r.Stdout)
    Assert.Contains("hidden layer 2: sparsity", r.Stdout)

    use summary =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "summary.json")))

    let root = summary.RootElement
    Assert.Equal(7, root.GetProperty("config").GetProperty("seed").GetInt32())
    Assert.Equal("lateral_inhibition", root.GetProperty("config").GetProperty("variant").GetString())
    Assert.Equal(64, root.GetProperty("data").GetProperty("train_examples").GetInt32())
    Assert.StartsWith("0.1.0", root.GetProperty("versions").GetProperty("forgetting").GetString())
    let accuracy = root.GetProperty("test_accuracy").GetDouble()
    Assert.InRange(accuracy, 0.0, 1.0)
    Assert.Equal(3, File.ReadAllLines(Path.Combine(out, "epochs.csv")).Length)
    // A header and one row per hidden unit: 16 + 8.
    Assert.Equal(25, File.ReadAllLines(Path.Combine(out, "units.csv")).Length)

[<Fact>]
let ``the same seed gives the same numbers`` () =
    let cache = cachedMnist 64 32

    let run () =
        let out = Path.Combine(Cli.tempDir (), "run")

        let r =
            Cli.run ([ "train"; "--cache-dir"; cache; "--out"; out; "--variant"; "l2" ] @ quick)

        Assert.Equal(0, r.ExitCode)

        File.ReadAllText(Path.Combine(out, "epochs.csv")).Split('\n')
        |> Array.map (fun l -> l.Split(',') |> Array.truncate 4)

    Assert.Equal<string[][]>(run (), run ())

[<Fact>]
let ``compare prints a table of accuracy and sparsity over seeds`` () =
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

    Assert.Equal(0, r.ExitCode)
    Assert.Contains("variant                  test accuracy %      sparsity h1      sparsity h2", r.Stdout)
    Assert.Contains("inhibition", r.Stdout)
    Assert.Equal(5, File.ReadAllLines(Path.Combine(out, "runs.csv")).Length)
    Assert.True(File.Exists(Path.Combine(out, "compare.json")))
    Assert.Empty(Directory.GetFiles(out, "*.tmp", SearchOption.AllDirectories))

[<Fact>]
let ``bad options and a missing data set are one clear line`` () =
    let empty = Cli.tempDir ()
    let missing = Cli.run [ "train"; "--cache-dir"; empty; "--dataset"; "mnist" ]
    assertOneLineError 1 missing
    Assert.Contains("forgetting data fetch mnist", missing.Stderr)
    assertOneLineError 2 (Cli.run [ "train"; "--variant"; "dropout-everything" ])
    assertOneLineError 2 (Cli.run [ "train"; "--epochs"; "0" ])
    assertOneLineError 2 (Cli.run [ "train"; "--lr"; "-1" ])
    assertOneLineError 2 (Cli.run [ "train"; "--dataset"; "cifar" ])
    assertOneLineError 2 (Cli.run [ "compare"; "--variant"; "sgd" ])
    let misplaced = Cli.run [ "train"; "--draws"; "3" ]
    assertOneLineError 2 misplaced
    Assert.Contains("--draws is not an option of 'train' (it belongs to 'figure')", misplaced.Stderr)

[<Fact>]
let ``figure writes JSON, CSV and SVG per panel, and report gathers them into one page`` () =
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

    Assert.Equal("", r.Stderr)
    Assert.Equal(0, r.ExitCode)
    Assert.Contains("fig2: Ablation of hidden units", r.Stdout)

    // Two hidden layers (quick): fig2 has (a), (b) per layer, (c) and (d).
    for fig, panels in [ "fig1e", 3; "fig2", 5; "fig3b", 1 ] do
        let dir = Path.Combine(out, fig)
        use json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "figure.json")))
        Assert.Equal(panels, json.RootElement.GetProperty("panels").GetArrayLength())

        for k in 1..panels do
            System.Xml.Linq.XDocument.Parse(File.ReadAllText(Path.Combine(dir, $"{fig}-{k}.svg")))
            |> ignore

            Assert.True(File.ReadAllLines(Path.Combine(dir, $"{fig}-{k}.csv")).Length > 1)

    let report = Cli.run [ "report"; out ]
    Assert.Equal(0, report.ExitCode)
    let page = Path.Combine(out, "report.html")
    Assert.Equal($"3 figures gathered into {page}", report.Stdout.Trim())
    let html = File.ReadAllText page
    Assert.Equal(9, html.Split("<svg").Length - 1)
    // Clip paths stay apart when the charts share one page.
    Assert.DoesNotContain("\"plot-area\"", html)
    Assert.Contains("url(#plot-area-fig2-3)", html)

[<Fact>]
let ``figure and report refuse bad input with one line`` () =
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
    Assert.Contains("perplexity", tiny.Stderr)
