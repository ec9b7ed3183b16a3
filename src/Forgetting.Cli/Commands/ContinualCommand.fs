/// `forgetting continual`: methods × seeds on a task sequence, R and its metrics per run, and a
/// comparison table; `forgetting run <recipe.json>`: one run again, exactly as a results folder recorded it.
module Forgetting.Cli.Commands.ContinualCommand

open System
open System.IO
open Argu
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Data
open Forgetting.Training
open Forgetting.Analysis
open Forgetting.Experiments
open Forgetting.Cli

type ContinualArgs =
    | Scenario of string
    | Setting of string
    | Data of string list
    | Tasks of int
    | Classes_Per_Task of int
    | [<Unique>] Class_Order of classes: int list
    | Keep_First
    | Methods of string list
    | Lambda of float
    | Gamma of float
    | Gamma_In_Penalty
    | Fisher of string
    | Fisher_Samples of int
    | Si_C of float
    | Mas_Lambda of float
    | Mas_Norm of string
    | Mas_Mean_Outputs
    | Mas_Batch of int
    | Mas_Alpha of float
    | Mas_Samples of int
    | Term of string list
    | Forgetting_Layer
    | Rho of float
    | Hidden of int list
    | Model of string
    | Norm of string
    | No_Affine
    | Norm_State of string
    | Init_Scale of float
    | Epochs of int
    | Batch of int
    | Optimizer of string
    | Lr of float
    | Momentum of float
    | Weight_Decay of float
    | Meta of float list
    | Reset_Optimizer
    | Keep_Optimizer
    | Seeds of int
    | Seed of int
    | Train_Limit of int
    | Cache_Dir of string
    | Out of string
    | Overwrite

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Scenario _ -> "permuted (default), split, sequence or stream."
            | Setting _ ->
                "task (a head per task, default), domain (one head) or class (one head over the classes seen)."
            | Data _ -> "the data set(s): mnist (default) or fashion-mnist; a sequence takes several, in order."
            | Tasks _ -> "tasks of a permuted or stream scenario (default 10 permuted, 5 stream)."
            | Classes_Per_Task _ -> "classes per task of a split scenario (default 2)."
            | Class_Order _ ->
                "split: the classes in the order they are cut into tasks (default 0 1 2 …; the MAS demo: 1 2 3 4 5 6 7 8 9 0)."
            | Keep_First -> "permuted: leave the first task unpermuted (default: every task permuted)."
            | Methods _ ->
                "methods to compare: none (fine-tuning), joint, ewc, online-ewc, si, ewc_f (EWC on the net with forgetting layers), mas, mas-local (Hebbian MAS), mas_f, mas-local_f (MAS on the net with forgetting layers) (default: none ewc)."
            | Lambda _ ->
                "EWC's λ (default 1e2, for SGD; the published values, up to 1e7, were tuned with --optimizer adam)."
            | Gamma _ -> "online EWC's decay γ in [0, 1] (default 1)."
            | Gamma_In_Penalty -> "online EWC: multiply the penalty by γ once more (a reference code's variant)."
            | Fisher _ -> "EWC's Fisher: true (default), empirical or sampled."
            | Fisher_Samples _ -> "EWC: at most this many samples for the Fisher (default: the whole task)."
            | Si_C _ -> "SI's strength c (default 0.1 permuted, 1 split)."
            | Mas_Lambda _ -> "MAS's λ (default 1, the paper's)."
            | Mas_Norm _ -> "global MAS's output norm: l2 (‖F‖², default) or l1."
            | Mas_Mean_Outputs -> "global MAS: the norm's mean over the outputs instead of its sum."
            | Mas_Batch _ ->
                "global MAS in the official demo's batched form, with this batch size (default: per sample, exact)."
            | Mas_Alpha _ ->
                "MAS across tasks: Ω ← α Ω_old + (1 − α) Ω_new, α in [0, 1] (default: the sum Ω_old + Ω_new)."
            | Mas_Samples _ -> "MAS: at most this many samples per task for Ω (default: the whole task)."
            | Term _ ->
                "settings of the run's terms, or terms to add, as kind:setting=value,… (e.g. ers:weight=0.2 l2:weight=1e-4)."
            | Forgetting_Layer -> "put a forgetting layer after every hidden ReLU, with its ERS and IRS terms."
            | Rho _ -> "the forgetting layer's steepness ρ (default 1)."
            | Hidden _ -> "hidden layer sizes (default 512 256)."
            | Model _ ->
                "mlp (default) or binarized (Laborieux et al. 2021: sign weights and activations, batch norm after every layer)."
            | Norm _ ->
                "batch norm after every dense layer: none (mlp's default), batch (batch statistics at test too; binarized's default) or running."
            | No_Affine -> "batch norm without learned γ and β."
            | Norm_State _ ->
                "which batch-norm γ, β test a learned task: task (its own, saved after it; binarized's default) or domain (the current ones; mlp's default)."
            | Init_Scale _ -> "draw weight matrices from U(-a, a) (binarized default 0.05; mlp default: PyTorch's)."
            | Epochs _ -> "epochs per task (default 1)."
            | Batch _ -> "batch size (default 128)."
            | Optimizer _ ->
                "sgd (default), adam, or metaplastic (Adam whose steps toward zero shrink with |W|, Laborieux et al. 2021; needs --meta)."
            | Lr _ -> "learning rate (default 0.01 for sgd, 1e-3 for adam, 0.005 for metaplastic)."
            | Momentum _ -> "SGD momentum (default 0.9)."
            | Weight_Decay _ -> "L2 weight decay (default 0; metaplastic: 1e-7, on weight matrices only)."
            | Meta _ -> "metaplastic Adam's m: one value for every layer or one per layer (0 is plain Adam)."
            | Reset_Optimizer -> "start the optimizer's state afresh at every task (metaplastic's default)."
            | Keep_Optimizer -> "keep the optimizer's state from task to task (the default but for metaplastic)."
            | Seeds _ -> "run seeds 1 … N of every method (default 1)."
            | Seed _ -> "the first seed (default 1)."
            | Train_Limit _ -> "keep at most this many training samples per task (quick runs)."
            | Cache_Dir _ -> "the data cache (default $FORGETTING_DATA or the per-user cache)."
            | Out _ -> "results directory (default results/continual-<scenario>-<setting>-<hash of the settings>)."
            | Overwrite -> "replace the results directory if it already holds results (default: refuse)."

type RunRecipeArgs =
    | [<MainCommand; ExactlyOnce>] Recipe of path: string
    | Cache_Dir of string
    | Out of string
    | Overwrite

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Recipe _ -> "a recipe.json from a results folder."
            | Cache_Dir _ -> "the data cache (default $FORGETTING_DATA or the per-user cache)."
            | Out _ -> "results directory (default: a folder 'rerun' beside the recipe)."
            | Overwrite -> "replace the results directory if it already holds results (default: refuse)."

let private usage message : 'a = raise (UserError(message, Exit.usage))

let private finite = Check.finite

/// The recipe of one method and seed from the command line; Core checks every value.
let private recipeOf (args: ParseResults<ContinualArgs>) (method: string) (seed: int) : Recipe =
    let d = Recipe.defaults
    let kind = args.GetResult(Scenario, defaultValue = d.Scenario.Kind)
    let optimizerKind = args.GetResult(Optimizer, defaultValue = d.Optimizer.Kind)
    let modelKind = args.GetResult(Model, defaultValue = d.Model.Kind)

    if args.Contains Reset_Optimizer && args.Contains Keep_Optimizer then
        usage "--reset-optimizer and --keep-optimizer contradict each other: give one"

    let baseModel =
        if modelKind = "binarized" then
            Recipe.binarized d.Model.Hidden
        else
            { d.Model with Kind = modelKind }

    let baseOptimizer =
        if optimizerKind = "metaplastic" then
            Recipe.metaplastic []
        else
            { d.Optimizer with
                Kind = optimizerKind }

    let scenario =
        { d.Scenario with
            Kind = kind
            Setting = args.GetResult(Setting, defaultValue = d.Scenario.Setting)
            Data = args.GetResult(Data, defaultValue = Recipe.defaultData kind)
            Tasks =
                args.GetResult(Tasks, defaultValue = Recipe.defaultTasks kind)
                |> Check.atMost "tasks" 1000
            ClassesPerTask = args.GetResult(Classes_Per_Task, defaultValue = d.Scenario.ClassesPerTask)
            ClassOrder = args.GetResult(Class_Order, defaultValue = d.Scenario.ClassOrder)
            PermuteFirst = not (args.Contains Keep_First)
            TrainLimit = args.GetResult(Train_Limit, defaultValue = d.Scenario.TrainLimit) }

    let methodSettings =
        [ match args.TryGetResult Lambda with
          | Some l -> "lambda", Number(finite "lambda" l)
          | None -> ()
          match args.TryGetResult Gamma with
          | Some g -> "gamma", Number(finite "gamma" g)
          | None -> ()
          if args.Contains Gamma_In_Penalty then
              "gamma_in_penalty", Switch true
          match args.TryGetResult Fisher with
          | Some f -> "fisher", Choice f
          | None -> ()
          match args.TryGetResult Fisher_Samples with
          | Some n when n < 1 ->
              usage
                  $"--fisher-samples must be at least 1, got {n}: a Fisher needs samples (leave it out for the whole task)"
          | Some n -> "samples", Count(Check.atMost "fisher-samples" 1_000_000 n)
          | None -> ()
          match args.TryGetResult Si_C with
          | Some c -> "c", Number(finite "si-c" c)
          | None -> ()
          match args.TryGetResult Mas_Lambda with
          | Some l -> "mas_lambda", Number(finite "mas-lambda" l)
          | None -> ()
          match args.TryGetResult Mas_Norm with
          | Some n -> "mas_norm", Choice n
          | None -> ()
          if args.Contains Mas_Mean_Outputs then
              "mas_mean_outputs", Switch true
          match args.TryGetResult Mas_Batch with
          | Some b when b < 1 -> usage $"--mas-batch must be at least 1, got {b} (leave it out for per-sample MAS)"
          | Some b -> "mas_batch", Count b
          | None -> ()
          match args.TryGetResult Mas_Alpha with
          | Some a ->
              "mas_accumulate", Choice "blend"
              "mas_alpha", Number(finite "mas-alpha" a)
          | None -> ()
          match args.TryGetResult Mas_Samples with
          | Some n when n < 1 -> usage $"--mas-samples must be at least 1, got {n} (leave it out for the whole task)"
          | Some n -> "mas_samples", Count n
          | None -> () ]

    let forgetting =
        if args.Contains Forgetting_Layer then
            Some
                { ForgettingLayerConfig.Default with
                    Rho =
                        args.GetResult(Rho, defaultValue = ForgettingLayerConfig.Default.Rho)
                        |> finite "rho" }
        else
            None

    let termOverrides =
        args.GetResult(Term, defaultValue = [])
        |> List.map (fun text ->
            try
                TermKind.parseOverride Catalog.terms text
            with :? ArgumentException as e ->
                usage $"--term {text}: {e.Message}")

    let layerTerms =
        if forgetting.IsSome then
            [ for k in ActiveForgetting.kinds -> TermKind.spec Catalog.terms k.Name [] ]
        else
            []

    let sizes = args.GetResult(Hidden, defaultValue = d.Model.Hidden)

    if sizes |> List.forall (fun h -> h >= 1) then
        // The data sets are 28×28 images of 10 classes (a task head has at most 10 outputs).
        Check.modelFits 784 sizes 10

    { d with
        Scenario = scenario
        Model =
            { baseModel with
                Hidden = sizes
                Forgetting = forgetting
                Norm = args.GetResult(Norm, defaultValue = baseModel.Norm)
                Affine = baseModel.Affine && not (args.Contains No_Affine)
                NormState = args.GetResult(Norm_State, defaultValue = baseModel.NormState)
                InitScale =
                    args.GetResult(Init_Scale, defaultValue = baseModel.InitScale)
                    |> finite "init-scale" }
        Terms = layerTerms
        Optimizer =
            { baseOptimizer with
                Lr = args.GetResult(Lr, defaultValue = Recipe.defaultLr optimizerKind) |> finite "lr"
                Momentum =
                    args.GetResult(Momentum, defaultValue = baseOptimizer.Momentum)
                    |> finite "momentum"
                WeightDecay =
                    args.GetResult(Weight_Decay, defaultValue = baseOptimizer.WeightDecay)
                    |> finite "weight-decay"
                Meta = args.GetResult(Meta, defaultValue = []) |> List.map (finite "meta")
                ResetPerTask =
                    (baseOptimizer.ResetPerTask || args.Contains Reset_Optimizer)
                    && not (args.Contains Keep_Optimizer) }
        EpochsPerTask =
            args.GetResult(Epochs, defaultValue = d.EpochsPerTask)
            |> Check.atMost "epochs" RunArgs.maxEpochs
        BatchSize = args.GetResult(Batch, defaultValue = d.BatchSize)
        Seed = int64 seed }
    |> Methods.apply method methodSettings
    |> fun r ->
        { r with
            Terms = TermKind.apply Catalog.terms termOverrides r.Terms }

let private loader (cacheDir: string option) =
    let cache = Cache.directory cacheDir
    let loaded = Collections.Generic.Dictionary<KnownDataset, TrainTest>()

    fun (d: KnownDataset) ->
        match loaded.TryGetValue d with
        | true, data -> data
        | _ ->
            let data = Cache.load cache d
            loaded[d] <- data
            data

let private pct (x: float) = 100.0 * x

/// One run with a progress display: a line per task with its row of R.
let private runOne (title: string) (load: KnownDataset -> TrainTest) (folder: string) (recipe: Recipe) =
    Progress.run title (fun report ->
        let mutable tasks = 1
        let mutable current = 0

        ContinualRun.run
            Catalog.terms
            load
            (fun event ->
                match event with
                | Resumed n -> report.Line $"{title}  resumed from its checkpoint after task {n}"
                | TaskStarted(i, n, _) ->
                    tasks <- n
                    current <- i
                | Training(_, BatchDone(epoch, batch, batches, loss)) ->
                    let fraction =
                        (float current
                         + (float (epoch - 1) + float batch / float batches) / float recipe.EpochsPerTask)
                        / float tasks

                    report.Update fraction $"task {current + 1}/{tasks}, epoch {epoch}, loss {loss:F4}"
                | Training(_, EpochDone _) -> ()
                | TaskDone(i, row) ->
                    let cells = row |> Array.map (fun a -> $"{pct a:F1}") |> String.concat " "
                    report.Line $"{title}  after task {i + 1}/{tasks}: accuracy per task %% {cells}")
            (Some folder)
            recipe)

/// One run, whose folder says "diverged" (Results.markDiverged) if its training diverges.
let private runMarked (title: string) (load: KnownDataset -> TrainTest) (folder: string) (recipe: Recipe) =
    try
        runOne title load folder recipe
    with :? DivergedError as e ->
        Results.markDiverged folder e.Message
        reraise ()

let private rCsv (r: ContinualResult) =
    Results.csv
        ("after" :: [ for j in 1 .. r.TaskNames.Length -> $"task{j}" ])
        [ for i, row in Array.indexed r.R -> (if i = 0 then "init" else string i) :: [ for a in row -> Results.num a ] ]

/// A run's folder, ready for it: new, or holding a run of the same recipe (whose checkpoints it goes on
/// from: the staging folder of an interrupted run, Results.start); a folder of another recipe is
/// refused before any work.
let private runFolder (dir: string) (recipe: Recipe) =
    let path = Path.Combine(dir, "recipe.json")

    if File.Exists path && File.ReadAllText path <> Recipe.toText recipe then
        raise (
            UserError(
                $"{dir} holds a run of another recipe; give another --out, or remove the folder to start afresh",
                Exit.usage
            )
        )

    Directory.CreateDirectory dir |> ignore
    Results.writeAtomically path (Recipe.toText recipe)
    dir

/// Write one run's results beside its recipe: R, and its metrics with their definitions.
let private write (dir: string) (command: string) (r: ContinualResult) =
    Results.writeAtomically (Path.Combine(dir, "R.csv")) (rCsv r)

    for k, panel in List.indexed (ContinualRun.panels r) do
        Forgetting.Reporting.Save.panel
            Forgetting.Reporting.Style.panelSize
            (Path.Combine(dir, $"figure-{k + 1}"))
            panel

    Results.writeAtomically
        (Path.Combine(dir, "metrics.json"))
        (Json.render
            true
            (Json.Obj
                [ "command", Json.Str command
                  "versions", Results.versions ()
                  "tasks", Json.Arr [ for n in r.TaskNames -> Json.Str n ]
                  "R", Json.Arr [ for row in r.R -> Json.Arr [ for a in row -> Json.Num a ] ]
                  "metrics",
                  Json.Arr
                      [ for m in ContinualRun.metrics r ->
                            Json.Obj
                                [ "name", Json.Str m.Name
                                  "definition", Json.Str m.Definition
                                  "value",
                                  (match m.Value with
                                   | Some v -> Json.Num v
                                   | None -> Json.Str "undefined") ] ] ]))

let private command () =
    "forgetting " + String.Join(" ", Environment.GetCommandLineArgs()[1..])

/// The comparison of a continual command's runs: the table of metrics, printed, and its panels
/// written into `dir`.
let private summarise (dir: string) (scenario: ScenarioSpec) (seeds: int) (results: (string * ContinualResult) list) =
    printfn
        "%s %s-IL, %d tasks, %d seed(s): mean ± sd (n − 1) over seeds"
        scenario.Kind
        scenario.Setting
        (snd results.Head).TaskNames.Length
        seeds

    let names = ContinualRun.metrics (snd results.Head) |> List.map (fun m -> m.Name)
    let widths = names |> List.map (fun n -> max 16 (n.Length + 2))
    let cell k (text: string) = text.PadLeft widths[k]
    printfn "%-12s %s" "method" (names |> List.mapi cell |> String.concat "")

    for m, row in ContinualRun.summary results do
        let cells =
            row
            |> List.mapi (fun k (_, value) ->
                match value with
                | Some(mean, sd) -> cell k $"{pct mean:F2} ± {pct sd:F2}"
                | None -> cell k "undefined")

        printfn "%-12s %s" m (String.concat "" cells)

    let panels = ContinualRun.comparison results

    for k, panel in List.indexed panels do
        Forgetting.Reporting.Save.panel
            Forgetting.Reporting.Style.panelSize
            (Path.Combine(dir, $"comparison-{k + 1}"))
            panel

    Forgetting.Reporting.Save.figure Forgetting.Reporting.Style.panelSize (Path.Combine(dir, "comparison")) panels

    for m in ContinualRun.metrics (snd results.Head) do
        printfn "  %s: %s" m.Name m.Definition

let run (args: ParseResults<ContinualArgs>) =
    let methods = args.GetResult(Methods, defaultValue = [ "none"; "ewc" ])
    let seeds = args.GetResult(Seeds, defaultValue = 1) |> Check.atMost "seeds" 1000
    let first = args.GetResult(Seed, defaultValue = 1)

    if seeds < 1 then
        usage $"--seeds must be at least 1, got {seeds}"

    // Every recipe is built and checked before any data is loaded or any training starts.
    let runs =
        [ for m in methods do
              for s in first .. first + seeds - 1 -> m, s, ContinualRun.validate Catalog.terms (recipeOf args m s) ]

    let scenario =
        match runs.Head with
        | _, _, r -> r.Scenario

    let load = loader (args.TryGetResult ContinualArgs.Cache_Dir)

    // The data and the tasks cut from it, too, before any folder is made: a missing data set or a
    // scenario it cannot serve leaves nothing behind.
    for _, _, r in runs do
        ContinualRun.tasks load r.Scenario |> ignore

    let final =
        args.GetResult(
            ContinualArgs.Out,
            defaultValue =
                Path.Combine(
                    "results",
                    $"""continual-{scenario.Kind}-{scenario.Setting}-{Recipe.hash [ for _, _, r in runs -> r ]}"""
                )
        )

    // The folder is one unit, written in its staging folder; a run that stops there (killed, a full
    // disk) leaves its checkpoints, and the same command again goes on from them.
    Results.staged (args.Contains ContinualArgs.Overwrite) true final (fun dir ->
        let results =
            [ for m, s, recipe in runs ->
                  let folder = runFolder (Path.Combine(dir, $"{m}-seed{s}")) recipe
                  let r = runMarked $"{m} seed {s}" load folder recipe
                  write folder (command ()) r
                  m, r ]

        summarise dir scenario seeds results)

    printfn "results in %s" (Path.GetFullPath final)

/// A task-sequence recipe run into `dir`, written as a unit like `continual`'s folders: an interrupted
/// run resumes from its checkpoints in its staging folder.
let runSequence (overwrite: bool) (cacheDir: string option) (dir: string) (command: string) (recipe: Recipe) =
    let recipe = ContinualRun.validate Catalog.terms recipe
    let load = loader cacheDir
    ContinualRun.tasks load recipe.Scenario |> ignore

    let r =
        Results.staged overwrite true dir (fun staging ->
            let folder = runFolder staging recipe
            let r = runMarked recipe.Label load folder recipe
            write folder command r
            r)

    let acc = r.R[r.R.Length - 1] |> Array.average
    printfn "average accuracy after the last task: %.2f%%" (pct acc)
    printfn "results in %s" (Path.GetFullPath dir)

/// Any recipe run into `dir`, whatever made it: a study (`figure`), a single-task run (`train`,
/// `compare`) or a task sequence (`continual`); `overwrite` replaces a results folder already there.
let runRecipe (overwrite: bool) (cacheDir: string option) (dir: string) (command: string) (recipe: Recipe) =
    match recipe with
    | { Study = Some _ } -> FigureCommand.rerun overwrite cacheDir dir command recipe
    | { Scenario = { Kind = "single" } } -> TrainCommand.rerun overwrite cacheDir dir command recipe
    | _ -> runSequence overwrite cacheDir dir command recipe

/// `forgetting run <recipe.json>`: a results folder's recipe run again.
let rerun (args: ParseResults<RunRecipeArgs>) =
    let path = args.GetResult Recipe
    Files.requireContents path
    let recipe = Recipe.load Catalog.terms path

    let beside: string =
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath path), "rerun")

    let dir = args.GetResult(<@ RunRecipeArgs.Out @>, defaultValue = beside)

    runRecipe
        (args.Contains <@ RunRecipeArgs.Overwrite @>)
        (args.TryGetResult <@ RunRecipeArgs.Cache_Dir @>)
        dir
        (command ())
        recipe
