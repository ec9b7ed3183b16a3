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

/// Write a figure's files into `figDir` (the staging folder of `shown`, where it will be).
let private write (figDir: string) (shown: string) (command: string) (recipe: Recipe) (data: Value) (f: Figure) =

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
                              "readout",
                              Str(
                                  r.Layers
                                  |> List.tryPick (fun l -> if l.Readout = "" then None else Some l.Readout)
                                  |> Option.defaultValue "none"
                              )
                              "sparsity", Arr [ for l in r.Layers -> Num l.Sparsity ] ] ] ]

    Results.writeAtomically (Path.Combine(figDir, "figure.json")) (render true summary)
    printfn "%s: %s" f.Name f.Caption

    for panel in f.Panels do
        printfn "  %s" (Charts.title panel)
        describe panel |> List.iter (printfn "%s")

    printfn "  written to %s" shown

/// Draw the figure a study recipe names into `figDir` (the staging folder of `shown`), with a
/// progress display and a line per epoch; recipe.json is written first, so that a divergence leaves it
/// beside diverged.json.
let private draw (d: SingleData) (figDir: string) (shown: string) (command: string) (recipe: Recipe) =
    let epochs = recipe.EpochsPerTask
    Results.writeAtomically (Path.Combine(figDir, "recipe.json")) (Recipe.toText recipe + "\n")

    let figure =
        Progress.run recipe.Label (fun report ->
            let progress (label: string) (p: Progress) =
                match p with
                | BatchDone(epoch, b, bs, _) ->
                    report.Update ((float (epoch - 1) + float b / float bs) / float epochs) $"{label}, epoch {epoch}"
                | EpochDone m ->
                    // A line per epoch as well, so that a redirected run shows its progress too.
                    report.Line
                        $"{recipe.Label}  {label}, epoch {m.Epoch}/{epochs}: train loss {m.TrainLoss:F4}, test accuracy {100.0 * m.TestAccuracy:F2}%%"

            Figures.run recipe progress (d.Train, d.Test))

    write figDir shown command recipe (dataJson d) figure

/// Draw the figure a study recipe names into the folder `figDir`, written as a unit (Results.staged);
/// a `figDir` that holds results is refused unless `overwrite`.
let execute (overwrite: bool) (d: SingleData) (figDir: string) (command: string) (recipe: Recipe) =
    Results.staged overwrite false figDir (fun staging -> draw d staging figDir command recipe)

/// `forgetting run` of a study recipe: draw its figure again into `dir` (refused if it holds results,
/// unless `overwrite`).
let rerun (overwrite: bool) (cacheDir: string option) (dir: string) (command: string) (recipe: Recipe) =
    // Every setting is checked before the data is loaded.
    let recipe =
        Figures.recipe recipe.Study.Value.Kind (Map.toList recipe.Study.Value.Settings) recipe

    Classification.validate Catalog.terms { recipe with Study = None } |> ignore
    execute overwrite (loadSingle cacheDir recipe) dir command recipe

let run (args: ParseResults<RunArgs>) =
    only "figure" args
    let paperFigures = names |> List.filter (fun n -> n <> "map")
    let wanted = args.GetResult(Figures, defaultValue = paperFigures)

    for n in wanted do
        if not (List.contains n names) then
            usage $"""unknown figure '{n}'; use any of {String.concat ", " names}"""

    let overrides = studyTerms args

    // The figure's own settings given on the command line, by the names its kind takes.
    let given =
        [ match args.TryGetResult Draws with
          | Some n -> "draws", Count(Check.atMost "draws" 10_000 n)
          | None -> ()
          match args.TryGetResult Fisher_Samples with
          | Some n -> "fisher_samples", Count(Check.atMost "fisher-samples" 1_000_000 n)
          | None -> ()
          match args.TryGetResult Seeds with
          | Some n -> "seeds", Count(Check.atMost "seeds" 1000 n)
          | None -> ()
          match args.TryGetResult Perturb_Layer with
          | Some n -> "perturb_layer", Count n
          | None -> ()
          match args.TryGetResult Noise with
          | Some x -> "noise", Number(Check.finite "noise" x)
          | None -> ()
          match args.TryGetResult Repeats with
          | Some n -> "repeats", Count(Check.atMost "repeats" 10_000 n)
          | None -> ()
          match args.TryGetResult Tsne_Points with
          | Some n -> "tsne_points", Count(Check.atMost "tsne-points" 10_000 n)
          | None -> ()
          match args.TryGetResult Variant with
          | Some v -> "variant", Choice v
          | None -> "variant", Choice((preset args).Variant)
          match shortcut args with
          | Some true -> "shortcut", Choice "on"
          | Some false -> "shortcut", Choice "off"
          | None -> ()
          match args.TryGetResult Ablate with
          | Some a -> "ablate", Choice a
          | None -> ()
          match args.TryGetResult Prune_Scope with
          | Some sc -> "prune_scope", Choice sc
          | None -> ()
          match args.TryGetResult Boundary_Omega with
          | Some x -> "boundary_omega", Number(Check.finite "boundary-omega" x)
          | None -> ()
          match args.TryGetResult Model with
          | Some path -> "model", Choice(IO.Path.GetFullPath path)
          | None -> () ]

    // A setting that none of the chosen figures takes is refused, not dropped.
    for name, _ in given do
        let takes (n: string) =
            (Figures.kind n).Settings |> List.exists (fun s -> s.Name = name)

        if not (wanted |> List.exists takes) then
            let owners = names |> List.filter takes |> String.concat ", "

            usage $"""--{name.Replace('_', '-')} is a setting of {owners}, not of {String.concat ", " wanted}"""

    if args.Contains Model then
        match
            wanted
            |> List.filter (fun n -> not ((Figures.kind n).Settings |> List.exists (fun s -> s.Name = "model")))
        with
        | [] -> ()
        | others ->
            usage
                $"""--model: {String.concat ", " others} compare several variants and train them; choose --figures fig2 and/or fig3b"""

        let training =
            [ for a in args.GetAllResults() do
                  match a with
                  | Epochs _
                  | Lr _
                  | Momentum _
                  | Optimizer _
                  | Batch _
                  | Train_Limit _
                  | Weight_Decay _
                  | Nesterov
                  | Schedule _
                  | Gate _
                  | Shortcut _
                  | Rho _
                  | Rho_Growth _
                  | Wf_Init_Sd _
                  | Hidden _
                  | Variant _
                  | Preset _
                  | Term _ -> yield args.Parser.GetArgumentCaseInfo(a).Name.Value
                  | _ -> () ]

        if not training.IsEmpty then
            usage
                $"""{String.concat ", " training}: --model starts from a trained model, whose recipe decides how it was trained; leave them out"""

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
                      Terms =
                          [ for kind, os in List.groupBy (fun (o: TermOverride) -> o.Kind) overrides ->
                                TermKind.spec Catalog.terms kind (List.collect (fun (o: TermOverride) -> o.Given) os) ] }

              Classification.validate Catalog.terms study |> ignore
              Figures.recipe n mine study ]

    let d = dataset args recipes.Head

    // What only the data decides is checked before the first figure is computed too: fig4c embeds
    // at most the test set's images, and t-SNE's perplexity and the trustworthiness' 12 neighbours
    // need more points than that many.
    for r in recipes do
        match r.Study with
        | Some st when st.Kind = "fig4c" ->
            let asked = TermSetting.toInt st.Settings "tsne_points"
            let points = min asked d.Test.Count
            let needed = max (int Forgetting.Analysis.Tsne.defaults.Perplexity + 1) 25

            if points < needed then
                usage
                    $"--tsne-points: fig4c needs at least {needed} points (t-SNE's perplexity {Forgetting.Analysis.Tsne.defaults.Perplexity} and 12 neighbours for trustworthiness), got {points}"
        | _ -> ()

    // A folder per figure, each a unit: named by the figure under --out, and by the figure and a
    // hash of its recipe under the default, so that figures of other settings sit beside it.
    let folders =
        match args.TryGetResult Out with
        | Some out -> [ for r in recipes -> Path.Combine(out, r.Label) ]
        | None ->
            let dir = outDir args $"figures-{KnownDataset.name d.Dataset}"
            [ for r in recipes -> Path.Combine(dir, $"{r.Label}-{Recipe.hash [ r ]}") ]

    let command =
        "forgetting figure " + String.Join(" ", Environment.GetCommandLineArgs()[2..])

    // Every folder is locked and checked before the first figure is computed.
    let started = ResizeArray()

    try
        for f in folders do
            started.Add(Results.start (overwrite args) false f)
    with _ ->
        for s in started do
            Results.abandon false s

        reraise ()

    for i, (r, s) in List.indexed (List.zip recipes (List.ofSeq started)) do
        try
            Results.within false s (fun staging -> draw d staging s.Final command r)
        with _ ->
            // The later figures will not be drawn: their folders are given up, left as they were.
            for later in Seq.skip (i + 1) started do
                Results.abandon false later

            reraise ()

/// `forgetting report`: every figure directory under a results directory, as one HTML page.
type ReportArgs =
    | [<MainCommand; Unique>] Dir of path: string
    | [<Unique>] Output of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dir _ -> "a results directory written by 'forgetting figure' (default results/figures-fashion-mnist)."
            | Output _ -> "the HTML file (default <dir>/report.html)."

/// A figure folder's figure.json as a figure of the report, or why it cannot be one. A panel's files
/// must lie inside the folder `d` (a figure.json names them relative to it); anything else would
/// paste an arbitrary file into the page.
let private readFigure (d: string) (json: string) : Result<ReportFigure, string> =
    let inside = Path.GetFullPath d + string Path.DirectorySeparatorChar

    try
        use doc = Text.Json.JsonDocument.Parse(File.ReadAllText json)
        let root = doc.RootElement

        let text (e: Text.Json.JsonElement) (name: string) =
            match e.TryGetProperty name with
            | true, v when v.ValueKind = Text.Json.JsonValueKind.String -> v.GetString()
            | _ -> failwith $"no text '{name}'"

        // A directory written before PNGs were drawn has none to embed.
        let file (e: Text.Json.JsonElement) (name: string) =
            match e.TryGetProperty name with
            | true, v when v.ValueKind = Text.Json.JsonValueKind.String ->
                let path = Path.GetFullPath(Path.Combine(d, v.GetString()))

                if not (path.StartsWith(inside, StringComparison.Ordinal)) then
                    failwith $"panel file '{v.GetString()}' is outside the figure's folder"

                if not (File.Exists path) then
                    failwith $"panel file '{v.GetString()}' is missing"

                // A link inside the folder could still point anywhere.
                if not (isNull (FileInfo(path).LinkTarget)) then
                    failwith $"panel file '{v.GetString()}' is a link"

                Some path
            | true, _ -> failwith $"'{name}' is not a file name"
            | _ -> None

        let panels =
            match root.TryGetProperty "panels" with
            | true, v when v.ValueKind = Text.Json.JsonValueKind.Array -> [ for p in v.EnumerateArray() -> p ]
            | _ -> failwith "no list of 'panels'"

        let figure =
            { ReportFigure.Name = text root "figure"
              Caption = text root "caption"
              Command = text root "command"
              Panels =
                [ for panel in panels ->
                      { ReportPanel.Title = text panel "title"
                        Svg = file panel "svg"
                        Png = file panel "png" } ] }

        // Drawn on a page of its own first, so that an SVG that does not parse or a panel with no file
        // is found here, not while the page of all figures is made.
        Report.page figure.Name [ figure ] |> ignore
        Ok figure
    with e ->
        let reason =
            match e with
            | :? Text.Json.JsonException -> "not valid JSON"
            | e -> e.Message

        Error(reason.Split('\n')[0])

let report (args: ParseResults<ReportArgs>) =
    let dir =
        args.GetResult(Dir, defaultValue = Path.Combine("results", "figures-fashion-mnist"))

    if not (Directory.Exists dir) then
        raise (UserError($"no such results directory: {dir}; run 'forgetting figure' first", Exit.input))

    // A figure folder whose figure.json is malformed, truncated or incomplete, or whose panels name
    // files outside the folder or that cannot be read, is left out with one line on stderr; the
    // others still make the page.
    let figures =
        [ for d in Directory.GetDirectories dir |> Array.sort do
              let json = Path.Combine(d, "figure.json")

              if File.Exists json then
                  match readFigure d json with
                  | Ok f -> f
                  | Error reason -> eprintfn "forgetting: left out %s: %s" json reason ]

    if figures.IsEmpty then
        raise (
            UserError(
                $"{dir} holds no readable figure directories (with a figure.json); run 'forgetting figure --out {dir}'",
                Exit.input
            )
        )

    let report = figures
    let html = Report.page "Forgetting: the paper's figures, re-run" report
    let output = args.GetResult(Output, defaultValue = Path.Combine(dir, "report.html"))
    Results.writeAtomically output html
    printfn "%d figures gathered into %s" figures.Length output
