/// The options `forgetting train` and `forgetting compare` share, and how they become a run's
/// configuration and data.
module Forgetting.Cli.Commands.RunArgs

open System
open Argu
open Forgetting.Data
open Forgetting.Experiments
open Forgetting.Training
open Forgetting.Cli
open Forgetting.Cli.Json

type RunArgs =
    | [<Unique>] Dataset of name: string
    | [<Unique>] Cache_Dir of path: string
    | [<Unique>] Hidden of sizes: int list
    | [<Unique>] Variant of name: string
    | [<Unique>] Variants of names: string list
    | [<Unique>] Seeds of count: int
    | [<Unique>] Rho of float
    | Term of terms: string list
    | [<Unique>] Optimizer of name: string
    | [<Unique>] Lr of float
    | [<Unique>] Momentum of float
    | [<Unique>] Epochs of int
    | [<Unique>] Batch of int
    | [<Unique>] Seed of int
    | [<Unique>] Train_Limit of count: int
    | [<Unique>] Out of dir: string
    | [<Unique>] Overwrite
    | [<Unique>] Figures of names: string list
    | [<Unique>] Draws of count: int
    | [<Unique>] Repeats of count: int
    | [<Unique>] Perturb_Layer of layer: int
    | [<Unique>] Noise of scale: float
    | [<Unique>] Tsne_Points of count: int
    | [<Unique>] Fisher_Samples of count: int
    | [<Unique>] Preset of name: string
    | [<Unique>] Gate of kind: string
    | [<Unique>] Shortcut of state: string
    | [<Unique>] Wf_Init_Sd of sd: float
    | [<Unique>] Rho_Growth of factor: float
    | [<Unique>] Readout of name: string
    | [<Unique>] Ers_Denominator of kind: string
    | [<Unique>] Lateral_On of what: string
    | [<Unique>] Weight_Decay of float
    | [<Unique>] Nesterov
    | [<Unique>] Schedule of name: string
    | [<Unique>] Model of path: string
    | [<Unique>] Ablate of what: string
    | [<Unique>] Prune_Scope of scope: string
    | [<Unique>] Boundary_Omega of omega: float

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dataset _ -> "fashion-mnist (default) or mnist, from the data cache (see 'forgetting data fetch')."
            | Cache_Dir _ -> "the data cache (default $FORGETTING_DATA, else ~/.cache/forgetting)."
            | Hidden _ -> "hidden layer sizes (default 256 256 128: the paper's 784-256-256-128-10)."
            | Variant _ ->
                $"""train: the variant (default: the preset's, lateral_inhibition for paper); one of {String.concat ", " Variant.names}. figure: the variant with forgetting layers trained where the paper's full model stands (inhibition, i_short_cut, lateral_inhibition)."""
            | Variants _ -> "compare: the variants (default sgd l1 l2 lateral_inhibition: Fig. 3a)."
            | Seeds _ -> "compare: seeds per variant (default 3)."
            | Rho _ -> "forgetting layer steepness ρ (default 1)."
            | Term _ ->
                let kinds = Catalog.terms |> List.map (fun k -> k.Name) |> String.concat ", "
                $"settings of the variants' terms, or terms to add, as kind:setting=value,… (e.g. ers:weight=0.2 irs:weight=0); kinds: {kinds}. Defaults: ers λ 0.1, irs β 1e-4, l1 1e-5, l2 5e-4, decov 1e-4."
            | Optimizer _ -> "sgd (default) or adam."
            | Lr _ -> "learning rate (default 0.01 for sgd, 0.001 for adam)."
            | Momentum _ -> "sgd momentum (default 0.9)."
            | Epochs _ -> "training epochs (default 10)."
            | Batch _ -> "batch size (default 128)."
            | Seed _ -> "the seed (default 1; compare uses seed, seed+1, …)."
            | Train_Limit _ -> "use only the first N training examples (quick runs)."
            | Out _ -> "the results directory (default results/<command>-<dataset>-…-<hash of the settings>)."
            | Overwrite -> "replace the results directory if it already holds results (default: refuse)."
            | Figures _ ->
                "figure: which (default all of the paper's): fig1e fig2 fig3b fig3c fig4a fig4b fig4c, and map (where the importance claims hold)."
            | Draws _ -> "figure fig2: random ablation orders (default 10)."
            | Repeats _ -> "figure fig4b: noise draws per fraction (default 5)."
            | Perturb_Layer _ -> "figure fig4b: the hidden layer perturbed (default 1)."
            | Noise _ -> "figure fig4b: noise sd as a multiple of the layer's weight sd (default 1)."
            | Tsne_Points _ -> "figure fig4c: test images embedded by t-SNE (default 1000)."
            | Fisher_Samples _ -> "figure fig3b: training examples for the Fisher of brain damage (default 200)."
            | Preset _ ->
                let all =
                    Presets.all |> List.map (fun p -> $"{p.Name} ({p.Doc})") |> String.concat "; "

                $"a named option set, every other option given taking precedence: {all}. Default paper."
            | Gate _ ->
                "the forgetting layer's gate: input (eq. 4, σ = sigmoid(ρ h W_f)) or static (σ = sigmoid(ρ W_f))."
            | Shortcut _ -> "the shortcut of eq. 5 (h' = h + hσ): on or off (default: as the variant has it)."
            | Wf_Init_Sd _ -> "W_f's initial sd: 0 (default: W_f = 0, every gate half open) or N(0, sd²) (MiL: 1)."
            | Rho_Growth _ -> "ρ's factor per epoch: 1 (default, ρ fixed) or e.g. 1.018 (MiL)."
            | Readout _ ->
                "neuron importance: gate-mean, activity-weighted (default for the input gate) or static (default for the static gate)."
            | Ers_Denominator _ -> "ERS (eq. 6): one denominator shared by all layers (default) or per-layer (MiL)."
            | Lateral_On _ -> "IRS: on the activations (eq. 8, default) or on the gates (MiL)."
            | Weight_Decay _ -> "L2 weight decay added to the gradient, every parameter (default 0)."
            | Nesterov -> "sgd: Nesterov momentum."
            | Schedule _ -> "the learning rate over the epochs: constant (default) or cosine (per epoch)."
            | Model _ ->
                "figure fig2/fig3b: start from the trained model of a train folder (its model.safetensors and recipe.json) instead of training."
            | Ablate _ -> "figure fig2: remove the whole unit (default, both shortcut paths) or only its gated-branch."
            | Prune_Scope _ -> "figure fig3b: keep the fraction of weights per-layer (default) or global."
            | Boundary_Omega _ ->
                "figure fig3b: the Ω of units without a forgetting layer (pixels, logits) in eq. 2 (default 0)."

let private usage message : 'a = raise (UserError(message, Exit.usage))

/// A single-task run's data: the data set, where it came from, and its training and test examples.
type SingleData =
    { Dataset: KnownDataset
      Data: TrainTest
      Manifest: Manifest option
      Train: Examples
      Test: Examples }

/// The commands an option belongs to (all three when it is not named here).
let private owners (a: RunArgs) =
    match a with
    | Variant _ -> [ "train"; "figure" ]
    | Variants _ -> [ "compare" ]
    | Seeds _ -> [ "compare"; "figure" ]
    | Figures _
    | Draws _
    | Repeats _
    | Perturb_Layer _
    | Noise _
    | Tsne_Points _
    | Fisher_Samples _
    | Model _
    | Ablate _
    | Prune_Scope _
    | Boundary_Omega _ -> [ "figure" ]
    | _ -> [ "train"; "compare"; "figure" ]

/// Refuse options that belong to another command rather than ignore them.
let only (command: string) (args: ParseResults<RunArgs>) =
    for a in args.GetAllResults() do
        if not (List.contains command (owners a)) then
            let name = args.Parser.GetArgumentCaseInfo(a).Name.Value
            let belongs = String.concat "', '" (owners a)
            usage $"{name} is not an option of '{command}' (it belongs to '{belongs}')"

/// The most epochs a run takes: far beyond any run that finishes, far below 2^31 − 1.
let maxEpochs = 100_000

let private atLeast name minimum (v: int) =
    if v < minimum then
        usage $"--{name} must be at least {minimum}, got {v}"

    v

/// The data set of a single-task recipe, loaded and verified from the cache (--cache-dir), with its
/// training and test examples (Classification.data).
let loadSingle (cacheDir: string option) (r: Recipe) =
    let name = r.Scenario.Data.Head

    match KnownDataset.tryParse name with
    | None -> usage $"unknown data set '{name}'; use fashion-mnist or mnist"
    | Some ds ->
        let data, manifest = Cache.loadWithManifest (Cache.directory cacheDir) ds
        let train, test = Classification.data (fun _ -> data) r

        { Dataset = ds
          Data = data
          Manifest = manifest
          Train = train
          Test = test }

/// The data set of the command line's recipe, from --cache-dir.
let dataset (args: ParseResults<RunArgs>) (r: Recipe) =
    loadSingle (args.TryGetResult Cache_Dir) r

/// The preset named by --preset (default paper).
let preset (args: ParseResults<RunArgs>) =
    try
        Presets.byName (args.GetResult(Preset, defaultValue = "paper"))
    with :? ArgumentException as e ->
        usage $"--preset: {e.Message}"

/// The forgetting layer's steepness ρ, checked (the preset's unless given).
let rho (args: ParseResults<RunArgs>) =
    let rho =
        args.GetResult(Rho, defaultValue = (preset args).Layer.Rho)
        |> Check.finite "rho"

    if not (rho > 0.0) then
        usage $"--rho must be positive, got {rho}"

    rho

let private oneOf (option: string) (allowed: string list) (value: string) =
    if not (List.contains value allowed) then
        usage $"""--{option} must be one of {String.concat ", " allowed}, got '{value}'"""

    value

/// The forgetting layer the options describe: the preset's, with --gate, --rho, --wf-init-sd,
/// --rho-growth and --readout over it (Core checks the values, Recipe.validate).
let layer (args: ParseResults<RunArgs>) =
    let p = (preset args).Layer

    { p with
        StaticGate =
            match args.TryGetResult Gate with
            | Some g -> oneOf "gate" [ "input"; "static" ] g = "static"
            | None -> p.StaticGate
        Rho = rho args
        WfInitSd =
            args.GetResult(Wf_Init_Sd, defaultValue = p.WfInitSd)
            |> Check.finite "wf-init-sd"
        RhoGrowth =
            args.GetResult(Rho_Growth, defaultValue = p.RhoGrowth)
            |> Check.finite "rho-growth"
        Readout =
            match args.TryGetResult Readout with
            | Some r -> oneOf "readout" Forgetting.Mechanisms.ActiveForgetting.readouts r
            | None -> p.Readout }

/// The shortcut --shortcut (or the preset) fixes, if any.
let shortcut (args: ParseResults<RunArgs>) =
    match args.TryGetResult Shortcut with
    | Some s -> Some(oneOf "shortcut" [ "on"; "off" ] s = "on")
    | None -> (preset args).Shortcut

/// The options that act on forgetting layers, as given on the command line.
let private layerOptions (args: ParseResults<RunArgs>) =
    [ if args.Contains Gate then
          "--gate"
      if args.Contains Shortcut then
          "--shortcut"
      if args.Contains Rho then
          "--rho"
      if args.Contains Wf_Init_Sd then
          "--wf-init-sd"
      if args.Contains Rho_Growth then
          "--rho-growth"
      if args.Contains Readout then
          "--readout"
      if args.Contains Ers_Denominator then
          "--ers-denominator"
      if args.Contains Lateral_On then
          "--lateral-on" ]

/// The settings given for the variants' terms (--term), each checked by its kind: they set a term the
/// variant has, or add one.
let terms (args: ParseResults<RunArgs>) =
    args.GetResult(Term, defaultValue = [])
    |> List.map (fun text ->
        try
            let o = Forgetting.Nn.TermKind.parseOverride Catalog.terms text
            Variant.checkSingleTask o
            o
        with :? ArgumentException as e ->
            usage $"--term {text}: {e.Message}")

/// The term settings of the preset and of --ers-denominator and --lateral-on: they set a term of that
/// kind where the variant has one, and add none.
let private settingFlags (args: ParseResults<RunArgs>) =
    (preset args).Terms
    @ [ match args.TryGetResult Ers_Denominator with
        | Some d ->
            { Forgetting.Nn.TermOverride.Kind = "ers"
              Given =
                [ "denominator", Forgetting.Nn.SettingValue.Choice(oneOf "ers-denominator" [ "shared"; "per-layer" ] d) ] }
        | None -> ()
        match args.TryGetResult Lateral_On with
        | Some o ->
            { Forgetting.Nn.TermOverride.Kind = "irs"
              Given = [ "on", Forgetting.Nn.SettingValue.Choice(oneOf "lateral-on" [ "activations"; "gates" ] o) ] }
        | None -> () ]

/// The term settings of a figure's study: the preset's and the flags', then --term's.
let studyTerms (args: ParseResults<RunArgs>) = settingFlags args @ terms args

/// A variant by name with the options' forgetting layer (--preset, --gate, --shortcut, --rho, …) and
/// term settings (the preset's and the flags' on the terms it has, then `overrides`, from --term; the
/// forgetting layer's terms are left out of a variant without one), or a usage error listing the names.
let variantWith (args: ParseResults<RunArgs>) (overrides: Forgetting.Nn.TermOverride list) (name: string) =
    if not (List.contains name Variant.names) then
        usage $"""unknown variant '{name}'; use one of {String.concat ", " Variant.names}"""

    let plain = Variant.ofLayer (layer args) (shortcut args) [] name

    let has kind =
        plain.Terms |> List.exists (fun t -> t.Kind = kind)

    let preset = settingFlags args |> List.filter (fun o -> has o.Kind)

    let given =
        overrides
        |> List.filter (fun o ->
            plain.Layer.IsSome
            || not (Forgetting.Mechanisms.ActiveForgetting.isLayerTerm o.Kind))

    Variant.ofLayer (layer args) (shortcut args) (preset @ given) name

/// A variant by name with the given ρ and term settings (the paper's layer otherwise).
let variant (rho: float) (overrides: Forgetting.Nn.TermOverride list) (name: string) =
    if not (List.contains name Variant.names) then
        usage $"""unknown variant '{name}'; use one of {String.concat ", " Variant.names}"""

    Variant.ofName rho overrides name

/// The variant `train` (and `figure`) trains: --variant, else the preset's.
let variantName (args: ParseResults<RunArgs>) =
    args.GetResult(Variant, defaultValue = (preset args).Variant)

/// Refuse options that no chosen variant acts on, and warn (one line on stderr) about those that some
/// of them ignore: an option is never dropped in silence.
let checkVariants (variants: Variant list) (args: ParseResults<RunArgs>) =
    let given = layerOptions args

    let refuseOrWarn (options: string list) (lacking: Variant list) (what: string) =
        if not options.IsEmpty && not lacking.IsEmpty then
            let names = lacking |> List.map (fun v -> v.Name) |> String.concat ", "
            let options = String.concat ", " options

            if lacking.Length = variants.Length then
                usage $"{options}: {names} has {what}; choose a variant with it"
            else
                eprintfn "forgetting: %s do not act on %s, which has %s" options names what

    refuseOrWarn
        (given |> List.filter (fun o -> o <> "--ers-denominator" && o <> "--lateral-on"))
        (variants |> List.filter (fun v -> v.Layer.IsNone))
        "no forgetting layer"

    let lacking kind =
        variants
        |> List.filter (fun v -> not (v.Terms |> List.exists (fun t -> t.Kind = kind)))

    refuseOrWarn
        [ if args.Contains Ers_Denominator then
              "--ers-denominator" ]
        (lacking "ers")
        "no ers term"

    refuseOrWarn
        [ if args.Contains Lateral_On then
              "--lateral-on" ]
        (lacking "irs")
        "no irs term"

/// The training settings shared by `train`, `compare` and `figure` as a single-task recipe (Recipe.single
/// for what is not given, the preset over it), with the given hidden sizes when none are on the command
/// line; Core checks every value (Classification.validate).
let baseRecipe (args: ParseResults<RunArgs>) (hidden: int list) =
    let d = Recipe.single
    let p = preset args
    let optimizer = args.GetResult(Optimizer, defaultValue = p.Optimizer.Kind)

    if optimizer = "adam" && args.Contains Momentum then
        usage "--momentum is an option of sgd; adam has no momentum of that kind (leave it out)"

    if optimizer = "adam" && args.Contains Nesterov then
        usage "--nesterov is an option of sgd; adam has no Nesterov momentum here (leave it out)"

    // The preset's optimizer settings hold for its own optimizer; another one starts from its defaults.
    let o =
        if optimizer = p.Optimizer.Kind then
            p.Optimizer
        else
            { d.Optimizer with
                Kind = optimizer
                Lr = Recipe.defaultLr optimizer
                Momentum = (if optimizer = "adam" then 0.0 else d.Optimizer.Momentum) }

    { d with
        Scenario =
            { d.Scenario with
                Data = [ args.GetResult(Dataset, defaultValue = d.Scenario.Data.Head) ]
                TrainLimit =
                    match args.TryGetResult Train_Limit with
                    | Some n -> atLeast "train-limit" 1 n
                    | None -> 0 }
        Model =
            { d.Model with
                Hidden =
                    // Two units at least: every run reports each hidden layer's sparsity, which needs two.
                    let sizes =
                        args.GetResult(Hidden, defaultValue = hidden) |> List.map (atLeast "hidden" 2)
                    // The data sets are 28×28 images of 10 classes.
                    Check.modelFits 784 sizes 10
                    sizes
                Forgetting = Some(layer args) }
        Optimizer =
            { o with
                Lr = args.GetResult(Lr, defaultValue = o.Lr) |> Check.finite "lr"
                Momentum = args.GetResult(Momentum, defaultValue = o.Momentum) |> Check.finite "momentum"
                Nesterov = args.Contains Nesterov || o.Nesterov
                WeightDecay =
                    args.GetResult(Weight_Decay, defaultValue = o.WeightDecay)
                    |> Check.finite "weight-decay"
                Schedule =
                    match args.TryGetResult Schedule with
                    | Some s -> oneOf "schedule" [ "constant"; "cosine" ] s
                    | None -> o.Schedule }
        EpochsPerTask =
            args.GetResult(Epochs, defaultValue = d.EpochsPerTask)
            |> atLeast "epochs" 1
            |> Check.atMost "epochs" maxEpochs
        BatchSize = args.GetResult(Batch, defaultValue = d.BatchSize) |> atLeast "batch" 1
        Seed = int64 (args.GetResult(Seed, defaultValue = int d.Seed)) }

/// The recipe of one variant and seed: the shared settings with the variant's layer and terms.
let recipe (args: ParseResults<RunArgs>) (v: Variant) (seed: int) =
    { Recipe.withVariant v (baseRecipe args Recipe.single.Model.Hidden) with
        Seed = int64 seed }
    |> Classification.validate Catalog.terms

let seed (args: ParseResults<RunArgs>) = args.GetResult(Seed, defaultValue = 1)

/// Where the data came from, as JSON.
let dataJson (d: SingleData) =
    let manifest = d.Manifest

    Obj
        [ "dataset", Str(KnownDataset.name d.Dataset)
          "train_examples", Int d.Train.Count
          "test_examples", Int d.Data.Test.Labels.Length
          "source",
          Str(
              manifest
              |> Option.map (fun m -> m.Source)
              |> Option.defaultValue "standard files"
          )
          "split",
          Str(
              manifest
              |> Option.bind (fun m -> m.Split)
              |> Option.defaultValue "the published train/test split"
          ) ]

/// The results directory: --out, or a default under results/ (made when the run starts, Results.start).
let outDir (args: ParseResults<RunArgs>) (fallback: string) =
    args.GetResult(Out, defaultValue = IO.Path.Combine("results", fallback))

/// Whether --overwrite lets a run replace a results directory that holds results.
let overwrite (args: ParseResults<RunArgs>) = args.Contains Overwrite
