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
            | Out _ -> "the results directory (default results/<command>-<dataset>-…)."
            | Figures _ -> "figure: which (default all): fig1e fig2 fig3b fig3c fig4a fig4b fig4c."
            | Draws _ -> "figure fig2: random ablation orders (default 10)."
            | Repeats _ -> "figure fig4b: noise draws per fraction (default 5)."
            | Perturb_Layer _ -> "figure fig4b: the hidden layer perturbed (default 1)."
            | Noise _ -> "figure fig4b: noise sd as a multiple of the layer's weight sd (default 1)."
            | Tsne_Points _ -> "figure fig4c: test images embedded by t-SNE (default 1000)."
            | Fisher_Samples _ -> "figure fig3b: training examples for the Fisher of brain damage (default 200)."

let private usage message : 'a = raise (UserError(message, Exit.usage))

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

let private atLeast name minimum (v: int) =
    if v < minimum then
        usage $"--{name} must be at least {minimum}, got {v}"

    v

let private nonNegative name (v: float) =
    if not (Double.IsFinite v) || v < 0.0 then
        usage $"--{name} must be a non-negative number, got {v}"

    v

/// The data set named by --dataset, loaded and verified from the cache.
let dataset (args: ParseResults<RunArgs>) =
    let name = args.GetResult(Dataset, defaultValue = "fashion-mnist")

    match KnownDataset.tryParse name with
    | None -> usage $"unknown data set '{name}'; use fashion-mnist or mnist"
    | Some ds ->
        let cache = Cache.directory (args.TryGetResult Cache_Dir)
        let data, manifest = Cache.loadWithManifest cache ds
        ds, data, manifest

/// The forgetting layer's steepness ρ, checked.
let rho (args: ParseResults<RunArgs>) =
    let rho =
        args.GetResult(Rho, defaultValue = Forgetting.Mechanisms.ForgettingLayerConfig.Default.Rho)

    if not (Double.IsFinite rho && rho > 0.0) then
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

let optimizer (args: ParseResults<RunArgs>) =
    let lr fallback =
        let v = args.GetResult(Lr, defaultValue = fallback)

        if not (v > 0.0) then
            usage $"--lr must be positive, got {v}"

        v

    match args.GetResult(Optimizer, defaultValue = "sgd") with
    | "sgd" -> Sgd(lr 0.01, args.GetResult(Momentum, defaultValue = 0.9) |> nonNegative "momentum")
    | "adam" -> Adam(lr 0.001)
    | other -> usage $"unknown optimizer '{other}'; use sgd or adam"

/// The run configuration of one variant and seed.
let config (args: ParseResults<RunArgs>) (v: Variant) (seed: int) =
    { Variant = v
      Hidden =
        args.GetResult(Hidden, defaultValue = [ 256; 256; 128 ])
        |> List.map (atLeast "hidden" 1)
      Optimizer = optimizer args
      Epochs = args.GetResult(Epochs, defaultValue = 10) |> atLeast "epochs" 1
      BatchSize = args.GetResult(Batch, defaultValue = 128) |> atLeast "batch" 1
      Seed = int64 seed }

let seed (args: ParseResults<RunArgs>) = args.GetResult(Seed, defaultValue = 1)

/// Training and test examples, the training set cut to --train-limit.
let examples (args: ParseResults<RunArgs>) (data: TrainTest) =
    let train = Examples.ofDataset data.Train

    let train =
        match args.TryGetResult Train_Limit with
        | Some n -> Examples.take (atLeast "train-limit" 1 n) train
        | None -> train

    train, Examples.ofDataset data.Test

/// A value of a term's setting as JSON.
let private settingJson (v: Forgetting.Nn.SettingValue) =
    match v with
    | Forgetting.Nn.Number x -> Num x
    | Forgetting.Nn.Count n -> Int n
    | Forgetting.Nn.Switch b -> Bool b
    | Forgetting.Nn.Choice c -> Str c

/// Terms with every setting, as JSON.
let termsJson (terms: Forgetting.Nn.TermSpec list) =
    Arr
        [ for t in terms ->
              Obj
                  [ "kind", Str t.Kind
                    "settings", Obj [ for KeyValue(k, v) in t.Settings -> k, settingJson v ] ] ]

/// The configuration of a run as JSON.
let configJson (c: RunConfig) =
    let v = c.Variant

    Obj
        [ "variant", Str v.Name
          "hidden", Arr(c.Hidden |> List.map Int)
          "forgetting_layer",
          (match v.Layer with
           | Some l ->
               Obj
                   [ "static_gate", Bool l.StaticGate
                     "shortcut", Bool l.Shortcut
                     "rho", Num l.Rho ]
           | None -> Str "none")
          "terms", termsJson v.Terms
          "optimizer",
          (match c.Optimizer with
           | Sgd(lr, m) -> Obj [ "name", Str "sgd"; "lr", Num lr; "momentum", Num m ]
           | Adam lr -> Obj [ "name", Str "adam"; "lr", Num lr ])
          "epochs", Int c.Epochs
          "batch", Int c.BatchSize
          "seed", Int(int c.Seed) ]

/// Where the data came from, as JSON.
let dataJson (ds: KnownDataset) (data: TrainTest) (manifest: Manifest option) (train: Examples) =
    Obj
        [ "dataset", Str(KnownDataset.name ds)
          "train_examples", Int train.Count
          "test_examples", Int data.Test.Labels.Length
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

/// The results directory: --out, or a default under results/.
let outDir (args: ParseResults<RunArgs>) (fallback: string) =
    args.GetResult(Out, defaultValue = IO.Path.Combine("results", fallback))
    |> Results.prepare
