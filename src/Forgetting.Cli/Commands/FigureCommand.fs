/// `forgetting figure`: the paper's figures (source 000, Fig. 1e-4c) re-run, each written as JSON, CSV,
/// SVG and PNG into a directory of its own; `forgetting report` gathers them into one HTML page.
module Forgetting.Cli.Commands.FigureCommand

open System
open System.IO
open Argu
open Forgetting.Data
open Forgetting.Nn
open Forgetting.Experiments
open Forgetting.Reporting
open Forgetting.Training
open Forgetting.Cli
open Forgetting.Cli.Json
open Forgetting.Cli.Commands.RunArgs

let names = Figures.kinds |> List.map (fun k -> k.Name)

let private usage message : 'a = raise (UserError(message, Exit.usage))

/// The data of a panel as CSV rows (panel, series, x, y, sd): a bar chart's x is the bar's index and its sd
/// the error; a heatmap's series is the row and x the column.
let private rows (panel: Panel) =
    match panel with
    | Lines c ->
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
        [ for label, values in h.Groups do
              for i in 0 .. values.Length - 1 -> [ h.Title; label; string i; Results.num values[i]; "" ] ]
    | Points p ->
        [ for label, xy in p.Groups do
              for x, y in xy -> [ p.Title; label; Results.num x; Results.num y; "" ] ]
    | Columns b ->
        [ for i, (label, value, err) in List.indexed b.Bars ->
              [ b.Title
                label
                string i
                Results.num value
                err |> Option.map Results.num |> Option.defaultValue "" ] ]
    | Matrix m ->
        [ for r, row in List.indexed m.Rows do
              for c, column in List.indexed m.Columns -> [ m.Title; row; column; Results.num (m.Values[r][c]); "" ] ]

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
    | Columns b ->
        [ for label, value, err in b.Bars ->
              match err with
              | Some e -> $"    {label}: {value:F3} ± {e:F3}"
              | None -> $"    {label}: {value:F3}" ]
    | Matrix m ->
        [ for r, row in List.indexed m.Rows ->
              let values = m.Values[r] |> Array.map (fun v -> $"{v:F3}") |> String.concat " "
              $"    {row}: {values}" ]

let private write (figDir: string) (command: string) (recipe: Recipe) (data: Value) (f: Figure) =
    let figDir = Results.prepare figDir
    Results.writeAtomically (Path.Combine(figDir, "recipe.json")) (Recipe.toText recipe + "\n")

    let panels =
        f.Panels
        |> List.mapi (fun k panel ->
            let stem = $"{f.Name}-{k + 1}"
            Save.panel Style.panelSize (Path.Combine(figDir, stem)) panel

            Results.writeAtomically
                (Path.Combine(figDir, stem + ".csv"))
                (Results.csv [ "panel"; "series"; "x"; "y"; "sd" ] (rows panel))

            Obj
                [ "title", Str(Charts.title panel)
                  "svg", Str(stem + ".svg")
                  "png", Str(stem + ".png")
                  "csv", Str(stem + ".csv") ])

    // Every panel on one image as well, to drop into a paper or a slide.
    Save.figure Style.panelSize (Path.Combine(figDir, f.Name)) f.Panels

    let summary =
        Obj
            [ "figure", Str f.Name
              "caption", Str f.Caption
              "command", Str command
              "recipe", Raw(Recipe.toJson recipe)
              "data", data
              "versions", Results.versions ()
              "panels", Arr panels
              "combined", Obj [ "svg", Str(f.Name + ".svg"); "png", Str(f.Name + ".png") ]
              "runs",
              Arr
                  [ for r in f.Runs ->
                        Obj
                            [ "variant", Str r.Config.Label
                              "seed", Int(int r.Config.Seed)
                              "test_accuracy", Num r.Test.Accuracy
                              "sparsity", Arr [ for l in r.Layers -> Num l.Sparsity ] ] ] ]

    Results.writeAtomically (Path.Combine(figDir, "figure.json")) (render true summary)
    printfn "%s: %s" f.Name f.Caption

    for panel in f.Panels do
        printfn "  %s" (Charts.title panel)
        describe panel |> List.iter (printfn "%s")

    printfn "  written to %s" figDir

/// Draw the figure a study recipe names into `figDir`, with a progress display.
let execute (d: SingleData) (figDir: string) (command: string) (recipe: Recipe) =
    let epochs = recipe.EpochsPerTask

    let figure =
        Progress.run recipe.Label (fun report ->
            let progress (label: string) (p: Progress) =
                match p with
                | BatchDone(epoch, b, bs, _) ->
                    report.Update ((float (epoch - 1) + float b / float bs) / float epochs) $"{label}, epoch {epoch}"
                | EpochDone m -> report.Update 1.0 $"{label}, epoch {m.Epoch}: test accuracy {m.TestAccuracy:P2}"

            Figures.run recipe progress (d.Train, d.Test))

    write figDir command recipe (dataJson d) figure

/// `forgetting run` of a study recipe: draw its figure again into `dir`.
let rerun (cacheDir: string option) (dir: string) (command: string) (recipe: Recipe) =
    // Every setting is checked before the data is loaded.
    let recipe =
        Figures.recipe recipe.Study.Value.Kind (Map.toList recipe.Study.Value.Settings) recipe

    Classification.validate Catalog.terms { recipe with Study = None } |> ignore
    execute (loadSingle cacheDir recipe) dir command recipe

let run (args: ParseResults<RunArgs>) =
    only "figure" args
    let wanted = args.GetResult(Figures, defaultValue = names)

    for n in wanted do
        if not (List.contains n names) then
            usage $"""unknown figure '{n}'; use any of {String.concat ", " names}"""

    let overrides = terms args

    // The figure's own settings given on the command line, by the names its kind takes.
    let given =
        [ match args.TryGetResult Draws with
          | Some n -> "draws", Count n
          | None -> ()
          match args.TryGetResult Fisher_Samples with
          | Some n -> "fisher_samples", Count n
          | None -> ()
          match args.TryGetResult Seeds with
          | Some n -> "seeds", Count n
          | None -> ()
          match args.TryGetResult Perturb_Layer with
          | Some n -> "perturb_layer", Count n
          | None -> ()
          match args.TryGetResult Noise with
          | Some x -> "noise", Number x
          | None -> ()
          match args.TryGetResult Repeats with
          | Some n -> "repeats", Count n
          | None -> ()
          match args.TryGetResult Tsne_Points with
          | Some n -> "tsne_points", Count n
          | None -> () ]

    // Every figure's recipe is resolved and checked before any data is loaded or any training done.
    // Fig. 4a used the paper's smaller net, 784-64-64-10; the others its 784-256-256-128-10.
    let recipes =
        [ for n in wanted ->
              let k = Figures.kind n

              let mine =
                  given
                  |> List.filter (fun (name, _) -> k.Settings |> List.exists (fun s -> s.Name = name))

              let study =
                  { baseRecipe args k.Hidden with
                      Terms = [ for o in overrides -> TermKind.spec Catalog.terms o.Kind o.Given ] }

              Classification.validate Catalog.terms study |> ignore
              Figures.recipe n mine study ]

    let d = dataset args recipes.Head
    let dir = outDir args $"figures-{KnownDataset.name d.Dataset}"

    let command =
        "forgetting figure " + String.Join(" ", Environment.GetCommandLineArgs()[2..])

    for r in recipes do
        execute d (Path.Combine(dir, r.Label)) command r

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

    let report =
        [ for d, doc in figures do
              use doc = doc
              let root = doc.RootElement
              let text (e: Text.Json.JsonElement) (name: string) = e.GetProperty(name).GetString()

              // A directory written before PNGs were drawn has none to embed.
              let file (e: Text.Json.JsonElement) (name: string) =
                  match e.TryGetProperty name with
                  | true, v -> Some(Path.Combine(d, v.GetString()))
                  | _ -> None

              { ReportFigure.Name = text root "figure"
                Caption = text root "caption"
                Command = text root "command"
                Panels =
                  [ for panel in root.GetProperty("panels").EnumerateArray() ->
                        { ReportPanel.Title = text panel "title"
                          Svg = file panel "svg"
                          Png = file panel "png" } ] } ]

    let html = Report.page "Forgetting: the paper's figures, re-run" report
    let output = args.GetResult(Output, defaultValue = Path.Combine(dir, "report.html"))
    Results.writeAtomically output html
    printfn "%d figures gathered into %s" figures.Length output
