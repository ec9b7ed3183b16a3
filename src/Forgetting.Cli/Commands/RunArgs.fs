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

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dataset _ -> "fashion-mnist (default) or mnist, from the data cache (see 'forgetting data fetch')."
            | Cache_Dir _ -> "the data cache (default $FORGETTING_DATA, else ~/.cache/forgetting)."
            | Hidden _ -> "hidden layer sizes (default 256 256 128: the paper's 784-256-256-128-10)."
            | Variant _ ->
                $"""train: the variant (default lateral_inhibition); one of {String.concat ", " Variant.names}."""
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
            | Figures _ -> "figure: which (default all): fig1e fig2 fig3b fig3c fig4a fig4b fig4c."
            | Draws _ -> "figure fig2: random ablation orders (default 10)."
            | Repeats _ -> "figure fig4b: noise draws per fraction (default 5)."
            | Perturb_Layer _ -> "figure fig4b: the hidden layer perturbed (default 1)."
            | Noise _ -> "figure fig4b: noise sd as a multiple of the layer's weight sd (default 1)."
            | Tsne_Points _ -> "figure fig4c: test images embedded by t-SNE (default 1000)."
            | Fisher_Samples _ -> "figure fig3b: training examples for the Fisher of brain damage (default 200)."

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
    | Variant _ -> [ "train" ]
    | Variants _ -> [ "compare" ]
    | Seeds _ -> [ "compare"; "figure" ]
    | Figures _
    | Draws _
    | Repeats _
    | Perturb_Layer _
    | Noise _
    | Tsne_Points _
    | Fisher_Samples _ -> [ "figure" ]
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

/// The forgetting layer's steepness ρ, checked.
let rho (args: ParseResults<RunArgs>) =
    let rho =
        args.GetResult(Rho, defaultValue = Forgetting.Mechanisms.ForgettingLayerConfig.Default.Rho)
        |> Check.finite "rho"

    if not (rho > 0.0) then
        usage $"--rho must be positive, got {rho}"

    rho

/// The settings given for the variants' terms (--term), each checked by its kind.
let terms (args: ParseResults<RunArgs>) =
    args.GetResult(Term, defaultValue = [])
    |> List.map (fun text ->
        try
            let o = Forgetting.Nn.TermKind.parseOverride Catalog.terms text
            Variant.checkSingleTask o
            o
        with :? ArgumentException as e ->
            usage $"--term {text}: {e.Message}")

/// A variant by name with the given ρ and term settings, or a usage error listing the names.
let variant (rho: float) (overrides: Forgetting.Nn.TermOverride list) (name: string) =
    if not (List.contains name Variant.names) then
        usage $"""unknown variant '{name}'; use one of {String.concat ", " Variant.names}"""

    Variant.ofName rho overrides name

/// The training settings shared by `train`, `compare` and `figure` as a single-task recipe (Recipe.single
/// for what is not given), with the given hidden sizes when none are on the command line; Core checks
/// every value (Classification.validate).
let baseRecipe (args: ParseResults<RunArgs>) (hidden: int list) =
    let d = Recipe.single
    let optimizer = args.GetResult(Optimizer, defaultValue = d.Optimizer.Kind)

    if optimizer = "adam" && args.Contains Momentum then
        usage "--momentum is an option of sgd; adam has no momentum of that kind (leave it out)"

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
                Forgetting =
                    Some
                        { Forgetting.Mechanisms.ForgettingLayerConfig.Default with
                            Rho = rho args } }
        Optimizer =
            { d.Optimizer with
                Kind = optimizer
                Lr =
                    args.GetResult(Lr, defaultValue = Recipe.defaultLr optimizer)
                    |> Check.finite "lr"
                Momentum =
                    args.GetResult(Momentum, defaultValue = d.Optimizer.Momentum)
                    |> Check.finite "momentum" }
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
