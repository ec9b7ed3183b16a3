/// `forgetting figure`: the paper's figures (source 000, Fig. 1e-4c) re-run, each written as JSON, CSV
/// and SVG into a directory of its own; `forgetting report` gathers them into one HTML page.
module Forgetting.Cli.Commands.FigureCommand

open System
open System.IO
open System.Net
open Argu
open Forgetting.Data
open Forgetting.Experiments
open Forgetting.Reporting
open Forgetting.Training
open Forgetting.Cli
open Forgetting.Cli.Json
open Forgetting.Cli.Commands.RunArgs

let names = [ "fig1e"; "fig2"; "fig3b"; "fig3c"; "fig4a"; "fig4b"; "fig4c" ]

let private usage message : 'a = raise (UserError(message, Exit.usage))

let private positive name (v: int) =
    if v < 1 then
        usage $"--{name} must be at least 1, got {v}"

    v

/// The chart of a panel as SVG, and its data as CSV rows (panel, series, x, y, sd).
let private chart (panel: Panel) =
    match panel with
    | Lines c ->
        Svg.lineChart c,
        [ for s in c.Series do
              for i in 0 .. s.X.Length - 1 ->
                  [ c.Title
                    s.Label
                    Results.num s.X[i]
                    Results.num s.Y[i]
                    (match s.Sd with
                     | Some sd -> Results.num sd[i]
                     | None -> "") ] ]
    | Histograms h ->
        Svg.histogram h,
        [ for label, values in h.Groups do
              for i in 0 .. values.Length - 1 -> [ h.Title; label; string i; Results.num values[i]; "" ] ]
    | Points p ->
        Svg.scatter p,
        [ for label, xy in p.Groups do
              for x, y in xy -> [ p.Title; label; Results.num x; Results.num y; "" ] ]

let private title (panel: Panel) =
    match panel with
    | Lines c -> c.Title
    | Histograms h -> h.Title
    | Points p -> p.Title

/// One line per series: where it starts and ends, so the shape reads without the picture.
let private describe (panel: Panel) =
    match panel with
    | Lines c ->
        [ for s in c.Series ->
              let last = s.X.Length - 1
              $"    {s.Label}: {s.Y[0]:F3} at {s.X[0]:G3} … {s.Y[last]:F3} at {s.X[last]:G3}" ]
    | Histograms h ->
        [ for label, v in h.Groups ->
              let above = v |> Array.filter (fun x -> x > 0.5) |> Array.length
              $"    {label}: {v.Length} values, mean {Array.average v:F3}, {above} above 0.5" ]
    | Points p ->
        [ for label, xy in p.Groups ->
              if xy.Length = 0 then
                  $"    {label}: no points"
              else
                  $"    {label}: {xy.Length} points, mean ({Array.averageBy fst xy:F3}, {Array.averageBy snd xy:F3})" ]

let private write (dir: string) (command: string) (settings: Value) (data: Value) (f: Figure) =
    let figDir = Path.Combine(dir, f.Name) |> Results.prepare

    let panels =
        f.Panels
        |> List.mapi (fun k panel ->
            let svg, rows = chart panel
            let stem = $"{f.Name}-{k + 1}"
            Svg.save (Path.Combine(figDir, stem + ".svg")) svg

            Results.writeAtomically
                (Path.Combine(figDir, stem + ".csv"))
                (Results.csv [ "panel"; "series"; "x"; "y"; "sd" ] rows)

            Obj
                [ "title", Str(title panel)
                  "svg", Str(stem + ".svg")
                  "csv", Str(stem + ".csv") ])

    let summary =
        Obj
            [ "figure", Str f.Name
              "caption", Str f.Caption
              "command", Str command
              "settings", settings
              "data", data
              "versions", Results.versions ()
              "panels", Arr panels
              "runs",
              Arr
                  [ for r in f.Runs ->
                        Obj
                            [ "variant", Str r.Config.Variant.Name
                              "seed", Int(int r.Config.Seed)
                              "test_accuracy", Num r.Test.Accuracy
                              "sparsity", Arr [ for l in r.Layers -> Num l.Sparsity ] ] ] ]

    Results.writeAtomically (Path.Combine(figDir, "figure.json")) (render true summary)
    printfn "%s: %s" f.Name f.Caption

    for panel in f.Panels do
        printfn "  %s" (title panel)
        describe panel |> List.iter (printfn "%s")

    printfn "  written to %s" figDir

let run (args: ParseResults<RunArgs>) =
    only "figure" args
    let wanted = args.GetResult(Figures, defaultValue = names)

    for n in wanted do
        if not (List.contains n names) then
            usage $"""unknown figure '{n}'; use any of {String.concat ", " names}"""

    let strengths = strengths args
    let optimizer = optimizer args
    let epochs = args.GetResult(Epochs, defaultValue = 10) |> positive "epochs"
    let batch = args.GetResult(Batch, defaultValue = 128) |> positive "batch"
    let seed = int64 (seed args)

    let settings hidden =
        { Hidden = hidden
          Epochs = epochs
          BatchSize = batch
          Optimizer = optimizer
          Strengths = strengths
          Seed = seed }

    let hidden = args.TryGetResult Hidden |> Option.map (List.map (positive "hidden"))
    let ds, loaded, manifest = dataset args
    let trainSet, test = examples args loaded
    let data = trainSet, test
    let dir = outDir args $"figures-{KnownDataset.name ds}"

    let command =
        "forgetting figure " + String.Join(" ", Environment.GetCommandLineArgs()[2..])

    let provenance = dataJson ds loaded manifest trainSet

    for n in wanted do
        // Fig. 4a used the paper's smaller net, 784-64-64-10; the others its 784-256-256-128-10.
        let s =
            settings (
                hidden
                |> Option.defaultValue (if n = "fig4a" then [ 64; 64 ] else [ 256; 256; 128 ])
            )

        let settingsJson =
            Obj
                [ "hidden", Arr(s.Hidden |> List.map Int)
                  "epochs", Int s.Epochs
                  "batch", Int s.BatchSize
                  "seed", Int(int s.Seed)
                  "lambda", Num s.Strengths.Lambda
                  "beta", Num s.Strengths.Beta
                  "rho", Num s.Strengths.Rho ]

        let figure =
            Progress.run n (fun report ->
                let progress (label: string) (p: Progress) =
                    match p with
                    | BatchDone(epoch, b, bs, _) ->
                        report.Update
                            ((float (epoch - 1) + float b / float bs) / float s.Epochs)
                            $"{label}, epoch {epoch}"
                    | EpochDone m -> report.Update 1.0 $"{label}, epoch {m.Epoch}: test accuracy {m.TestAccuracy:P2}"

                match n with
                | "fig1e" -> Figures.sparsity s progress data
                | "fig2" ->
                    Figures.ablation s progress data (args.GetResult(Draws, defaultValue = 10) |> positive "draws")
                | "fig3b" ->
                    Figures.pruning
                        s
                        progress
                        data
                        (args.GetResult(Fisher_Samples, defaultValue = 200) |> positive "fisher-samples")
                | "fig3c" -> Figures.convergence s progress data
                | "fig4a" ->
                    Figures.tradeoff s progress data (args.GetResult(Seeds, defaultValue = 10) |> positive "seeds")
                | "fig4b" ->
                    let layer = args.GetResult(Perturb_Layer, defaultValue = 1)

                    if layer < 1 || layer > s.Hidden.Length then
                        usage $"--perturb-layer must be a hidden layer, 1 to {s.Hidden.Length}, got {layer}"

                    Figures.robustness
                        s
                        progress
                        data
                        layer
                        (args.GetResult(Noise, defaultValue = 1.0))
                        (args.GetResult(Repeats, defaultValue = 5) |> positive "repeats")
                | _ ->
                    Figures.tsne
                        s
                        progress
                        data
                        (args.GetResult(Tsne_Points, defaultValue = 1000) |> positive "tsne-points"))

        write dir command settingsJson provenance figure

/// `forgetting report`: every figure directory under a results directory, as one HTML page.
type ReportArgs =
    | [<MainCommand; Unique>] Dir of path: string
    | [<Unique>] Output of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dir _ -> "a results directory written by 'forgetting figure' (default results/figures-fashion-mnist)."
            | Output _ -> "the HTML file (default <dir>/report.html)."

let report (args: ParseResults<ReportArgs>) =
    let dir =
        args.GetResult(Dir, defaultValue = Path.Combine("results", "figures-fashion-mnist"))

    if not (Directory.Exists dir) then
        raise (UserError($"no such results directory: {dir}; run 'forgetting figure' first", Exit.input))

    let figures =
        Directory.GetDirectories dir
        |> Array.sort
        |> Array.choose (fun d ->
            let json = Path.Combine(d, "figure.json")

            if File.Exists json then
                Some(d, Text.Json.JsonDocument.Parse(File.ReadAllText json))
            else
                None)

    if figures.Length = 0 then
        raise (
            UserError(
                $"{dir} holds no figure directories (with a figure.json); run 'forgetting figure --out {dir}'",
                Exit.input
            )
        )

    let html = Text.StringBuilder()
    let enc (s: string) = WebUtility.HtmlEncode s

    html
        .Append("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Forgetting: figures</title>")
        .Append(
            "<style>body{font-family:sans-serif;max-width:1360px;margin:2em auto;color:#222}figure{display:inline-block;margin:0 1em 1em 0}pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}</style>"
        )
        .Append("</head><body>\n<h1>Forgetting: the paper's figures, re-run</h1>\n")
    |> ignore

    for d, doc in figures do
        use doc = doc
        let root = doc.RootElement

        let field (name: string) =
            enc (root.GetProperty(name).GetString())

        let name, caption, command = field "figure", field "caption", field "command"

        html.Append($"<h2>{name}</h2>\n<p>{caption}</p>\n<pre>{command}</pre>\n")
        |> ignore

        for panel in root.GetProperty("panels").EnumerateArray() do
            let part (name: string) = panel.GetProperty(name).GetString()
            let svg = File.ReadAllText(Path.Combine(d, part "svg"))
            // Inline SVG: the page stands alone; the XML declaration is not allowed inside HTML, and each
            // chart's clip-path id must be unique in the page.
            let body =
                if svg.StartsWith "<?xml" then
                    svg.Substring(svg.IndexOf "?>" + 2)
                else
                    svg

            let id = "plot-area-" + Path.GetFileNameWithoutExtension(part "svg")

            let body =
                body.Replace("\"plot-area\"", $"\"{id}\"").Replace("url(#plot-area)", $"url(#{id})")

            let caption = enc (part "title")

            html.Append($"<figure>{body}<figcaption>{caption}</figcaption></figure>\n")
            |> ignore

    html.Append("</body></html>\n") |> ignore
    let output = args.GetResult(Output, defaultValue = Path.Combine(dir, "report.html"))
    Results.writeAtomically output (html.ToString())
    printfn "%d figures gathered into %s" figures.Length output
