/// `forgetting hopfield`: the bit-pattern multiple-instance task with Hopfield layers, or DeepRC's model
/// on generated immune repertoires, with and without partial forgetting (source 003), models × units ×
/// seeds: test accuracy and forgotten attention mass per run, mean ± sd and the paired difference from
/// no unit per model.
module Forgetting.Cli.Commands.HopfieldCommand

open System
open System.IO
open Argu
open Forgetting.Mechanisms
open Forgetting.Training
open Forgetting.Analysis
open Forgetting.Experiments
open Forgetting.Cli

type HopfieldArgs =
    | Task of string
    | Layers of string list
    | Units of string list
    | Adapted of bool
    | Median_Scope of string
    | Pfu_Sigma of float
    | Detach_Threshold
    | Epochs of int
    | Seeds of int
    | Seed of int
    | Bags of int
    | Witness_Rate of float
    | Lr of float
    | Train_Limit of int
    | Test_Limit of int
    | Cache_Dir of string
    | Out of string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Task _ ->
                "the task: bit-pattern (the default), repertoire (DeepRC's model on generated immune repertoires) or vit (a small vision transformer on Fashion-MNIST from the cache)."
            | Layers _ -> "bit-pattern: layers to compare: hopfield, pooling, lookup (default: pooling)."
            | Units _ -> "partial-forgetting units to compare: none, relu, pfu (default: none relu pfu)."
            | Adapted _ ->
                "bit-pattern: the demo's adapted settings (hidden 8, 8 heads, 4 association steps, β 0.25, dropout 0.5) when true (default), hflayers' defaults when false."
            | Median_Scope _ ->
                "the PFU's median over: call (bit-pattern's default), sample (repertoire's default: one bag), head or query."
            | Pfu_Sigma _ -> "σ of the PFU's threshold noise ε = N(0, 1)·σ² in training (default 0.01)."
            | Detach_Threshold -> "cut the PFU's threshold from the gradient (default: as the reference, not cut)."
            | Epochs _ -> "epochs per run (default: bit-pattern 250, the demo's; repertoire 20)."
            | Seeds _ -> "seeds per layer and unit, 1 … n (default 3)."
            | Seed _ -> "the first seed (default 1)."
            | Bags _ ->
                "bags generated, three quarters train, the rest test (default: bit-pattern 2048, the demo's; repertoire 400)."
            | Witness_Rate _ -> "repertoire: the share of a positive bag's sequences that carry a motif (default 0.05)."
            | Lr _ -> "repertoire: Adam's learning rate (default 1e-4, DeepRC's); vit: AdamW's (default 1e-3)."
            | Train_Limit _ -> "vit: the first n training images only (default: all 60,000)."
            | Test_Limit _ -> "vit: the first n test images only (default: all 10,000)."
            | Cache_Dir _ -> "vit: the data cache holding fashion-mnist (default: $FORGETTING_DATA or the user cache)."
            | Out _ ->
                "results folder: settings.json, runs.csv, summary.csv, figures accuracy and forgotten-mass (SVG, PNG) (default: none, print only)."

/// One run's row.
type private Row =
    { Layer: string
      Unit: string
      Seed: int
      Accuracy: float
      Forgotten: float
      Seconds: float
      Result: BitPatternResult }

let run (args: ParseResults<HopfieldArgs>) =
    let task = args.GetResult(Task, "bit-pattern")

    if not (List.contains task [ "bit-pattern"; "repertoire"; "vit" ]) then
        raise (UserError($"unknown task '{task}': bit-pattern, repertoire or vit", Exit.usage))

    let repertoire = task = "repertoire"
    let vit = task = "vit"

    let parseOr (what: string) parse name =
        try
            parse name
        with :? ArgumentException as e ->
            raise (UserError($"--{what}: {e.Message}", Exit.usage))

    let layers =
        args.GetResult(Layers, [ "pooling" ])
        |> List.map (parseOr "layers" BitPatternLayer.Parse)

    let scope =
        args.TryGetResult Median_Scope
        |> Option.map (parseOr "median-scope" MedianScope.Parse)
        |> Option.defaultValue (if repertoire then PerSample else WholeCall)

    let sigma = args.GetResult(Pfu_Sigma, PfuSettings.Default.Sigma)

    if not (sigma >= 0.0) then
        raise (UserError($"--pfu-sigma must be ≥ 0, got {sigma}", Exit.usage))

    let pfu =
        { PfuSettings.Default with
            Threshold = Median scope
            Sigma = sigma
            Detach = args.Contains Detach_Threshold }

    let units =
        args.GetResult(Units, [ "none"; "relu"; "pfu" ])
        |> List.map (fun name ->
            match parseOr "units" ForgettingUnit.Parse name with
            | Pfu _ -> Pfu pfu
            | u -> u)

    let epochs =
        args.GetResult(
            Epochs,
            if repertoire then RepertoireSettings.Default.Epochs
            elif vit then 10
            else BitPatternSettings.Default.Epochs
        )

    let seeds = args.GetResult(Seeds, 3)
    let first = args.GetResult(Seed, 1)

    let bags =
        args.GetResult(
            Bags,
            if repertoire then
                RepertoireSettings.Default.Data.BagCount
            else
                BitPatternSettings.Default.Data.BagCount
        )

    let witnessRate =
        args.GetResult(Witness_Rate, RepertoireSettings.Default.Data.WitnessRate)

    let lr =
        args.GetResult(
            Lr,
            (if vit then
                 1e-3
             else
                 RepertoireSettings.Default.LearningRate)
        )

    if not (witnessRate > 0.0 && witnessRate <= 1.0) || not (lr > 0.0) then
        raise (UserError($"need --witness-rate in (0, 1] and --lr > 0, got {witnessRate}, {lr}", Exit.usage))

    if epochs < 1 || seeds < 1 || bags < 8 then
        raise (UserError($"need --epochs ≥ 1, --seeds ≥ 1 and --bags ≥ 8, got {epochs}, {seeds}, {bags}", Exit.usage))

    let adapted = args.GetResult(Adapted, true)

    let bitPattern layer unit seed =
        { BitPatternSettings.Default with
            Layer = layer
            Unit = unit
            Adapted = adapted
            Epochs = epochs
            Seed = int64 seed
            Data =
                { BitPatternSettings.Default.Data with
                    BagCount = bags
                    TrainCount = bags * 3 / 4 } }
        |> BitPatternTask.run

    let deepRc unit seed =
        { RepertoireSettings.Default with
            Unit = unit
            Epochs = epochs
            LearningRate = lr
            Seed = int64 seed
            Data =
                { RepertoireSettings.Default.Data with
                    BagCount = bags
                    TrainCount = bags * 3 / 4
                    WitnessRate = witnessRate } }
        |> RepertoireTask.run

    let vitData =
        lazy
            (let cache = Forgetting.Data.Cache.directory (args.TryGetResult Cache_Dir)
             let data = Forgetting.Data.Cache.load cache Forgetting.Data.FashionMnist

             let take limit (e: Examples) =
                 match limit with
                 | Some n -> Examples.take n e
                 | None -> e

             take (args.TryGetResult Train_Limit) (Examples.ofDataset data.Train),
             take (args.TryGetResult Test_Limit) (Examples.ofDataset data.Test))

    // The vision transformer: AdamW with timm's weight decay 0.05, batch 128.
    let vitBatch, vitWeightDecay = 128, 0.05

    let transformer unit seed progress =
        let train, test = vitData.Force()

        VisionTransformer.run
            { VisionTransformerSettings.Default with
                Unit = unit }
            epochs
            vitBatch
            lr
            vitWeightDecay
            (int64 seed)
            progress
            train
            test

    // Each compared model by name, with how to run it for a unit and a seed.
    let models =
        if repertoire then [ "deeprc", deepRc ]
        elif vit then [ "vit", transformer ]
        else layers |> List.map (fun l -> l.Name, bitPattern l)

    let out = args.TryGetResult Out |> Option.map Results.prepare

    let runs =
        [ for name, runner in models do
              for unit in units do
                  for seed in first .. first + seeds - 1 -> name, runner, unit, seed ]

    let rows =
        Progress.run "hopfield" (fun reporter ->
            runs
            |> List.mapi (fun i (name, runner, unit, seed) ->
                let label = $"{name} + {unit.Name}, seed {seed}"
                let sw = Diagnostics.Stopwatch.StartNew()

                let progress p =
                    match p with
                    | BatchDone(epoch, b, count, _) ->
                        let done' = (float (epoch - 1) + float b / float count) / float epochs
                        reporter.Update ((float i + done') / float runs.Length) $"{label}, epoch {epoch}"
                    | EpochDone m when m.Epoch % 10 = 0 || m.Epoch = epochs ->
                        reporter.Line
                            $"{label}: epoch {m.Epoch}/{epochs}, train loss {m.TrainLoss:F4}, test accuracy {m.TestAccuracy:F4}"
                    | EpochDone _ -> ()

                let r = runner unit seed progress

                reporter.Line
                    $"{label}: test accuracy {r.TestAccuracy:F4}, forgotten attention mass {r.ForgottenMass:F4} ({sw.Elapsed.TotalSeconds:F0} s)"

                { Layer = name
                  Unit = unit.Name
                  Seed = seed
                  Accuracy = r.TestAccuracy
                  Forgotten = r.ForgottenMass
                  Seconds = sw.Elapsed.TotalSeconds
                  Result = r }))

    // Per layer and unit: mean ± sd over seeds, and the paired difference from the same layer without
    // a unit on the same seeds.
    let summary =
        [ for layer, _ in models do
              for unit in units do
                  let mine = rows |> List.filter (fun r -> r.Layer = layer && r.Unit = unit.Name)

                  let acc, accSd = Statistics.meanSd (mine |> List.map (fun r -> r.Accuracy))
                  let mass, _ = Statistics.meanSd (mine |> List.map (fun r -> r.Forgotten))

                  let baseline = rows |> List.filter (fun r -> r.Layer = layer && r.Unit = "none")

                  let diff =
                      if unit = NoUnit || baseline.IsEmpty then
                          None
                      else
                          mine
                          |> List.map (fun r ->
                              r.Accuracy - (baseline |> List.find (fun b -> b.Seed = r.Seed)).Accuracy)
                          |> Statistics.meanSd
                          |> Some

                  layer, unit.Name, acc, accSd, mass, diff ]

    printfn ""

    printfn
        "test accuracy over %d seed(s), %d epochs, %s"
        seeds
        epochs
        (if repertoire then
             $"repertoires, witness rate {witnessRate}"
         elif vit then
             "Fashion-MNIST"
         elif adapted then
             "adapted settings"
         else
             "default settings")

    printfn "%-10s %-6s %-18s %-12s %s" "layer" "unit" "accuracy" "forgotten" "vs none (paired)"

    for layer, unit, acc, sd, mass, diff in summary do
        let d =
            match diff with
            | Some(m, s) -> $"""{(if m >= 0.0 then "+" else "")}{m:F4} ± {s:F4}"""
            | None -> "-"

        printfn "%-10s %-6s %-18s %-12s %s" layer unit $"{acc:F4} ± {sd:F4}" $"{mass:F4}" d

    match out with
    | None -> ()
    | Some dir ->
        let settings =
            Json.Obj
                [ "task", Json.Str task
                  "models", Json.Arr(models |> List.map (fst >> Json.Str))
                  "units", Json.Arr(units |> List.map (fun u -> Json.Str u.Name))
                  "median_scope", Json.Str scope.Name
                  "pfu_sigma", Json.Num sigma
                  "detach_threshold", Json.Bool pfu.Detach
                  "epochs", Json.Int epochs
                  yield!
                      if vit then
                          []
                      else
                          [ "bags", Json.Int bags; "train_bags", Json.Int(bags * 3 / 4) ]
                  yield!
                      if repertoire then
                          let d = RepertoireSettings.Default

                          [ "optimizer", Json.Str "adam"
                            "lr", Json.Num lr
                            "batch", Json.Int d.BatchSize
                            "kernels", Json.Int d.Kernels
                            "kernel_size", Json.Int d.KernelSize
                            "attention_hidden", Json.Int d.AttentionHidden
                            "sequences_per_bag", Json.Int d.Data.SequencesPerBag
                            "witness_rate", Json.Num witnessRate
                            "data_seed", Json.Int d.Data.Seed ]
                      elif vit then
                          let d = VisionTransformerSettings.Default
                          let train, test = vitData.Force()

                          [ "dataset", Json.Str "fashion-mnist"
                            "train_images", Json.Int train.Count
                            "test_images", Json.Int test.Count
                            "optimizer", Json.Str "adamw"
                            "lr", Json.Num lr
                            "weight_decay", Json.Num vitWeightDecay
                            "clip_norm", Json.Num 1.0
                            "batch", Json.Int vitBatch
                            "patch", Json.Int d.PatchSize
                            "width", Json.Int d.Width
                            "blocks", Json.Int d.Blocks
                            "heads", Json.Int d.Heads
                            "mlp_ratio", Json.Int d.MlpRatio ]
                      else
                          let d = BitPatternSettings.Default

                          [ "adapted", Json.Bool adapted
                            "optimizer", Json.Str "adamw"
                            "lr", Json.Num d.LearningRate
                            "weight_decay", Json.Num d.WeightDecay
                            "clip_norm", Json.Num d.ClipNorm
                            "batch", Json.Int d.BatchSize
                            "data_seed", Json.Int d.Data.Seed ]
                  "seeds", Json.Arr [ for s in first .. first + seeds - 1 -> Json.Int s ]
                  "versions", Results.versions () ]

        Results.writeAtomically (Path.Combine(dir, "settings.json")) (Json.render true settings)

        Results.writeAtomically
            (Path.Combine(dir, "runs.csv"))
            (Results.csv
                [ "layer"; "unit"; "seed"; "test_accuracy"; "forgotten_mass"; "seconds" ]
                [ for r in rows ->
                      [ r.Layer
                        r.Unit
                        string r.Seed
                        Results.num r.Accuracy
                        Results.num r.Forgotten
                        Results.num r.Seconds ] ])

        Results.writeAtomically
            (Path.Combine(dir, "summary.csv"))
            (Results.csv
                [ "layer"
                  "unit"
                  "accuracy_mean"
                  "accuracy_sd"
                  "forgotten_mass_mean"
                  "paired_diff_mean"
                  "paired_diff_sd" ]
                [ for layer, unit, acc, sd, mass, diff in summary ->
                      [ layer
                        unit
                        Results.num acc
                        Results.num sd
                        Results.num mass
                        (diff |> Option.map (fst >> Results.num) |> Option.defaultValue "")
                        (diff |> Option.map (snd >> Results.num) |> Option.defaultValue "") ] ])

        let variants =
            [ for layer, _ in models do
                  for unit in units ->
                      $"{layer} + {unit.Name}",
                      rows
                      |> List.filter (fun r -> r.Layer = layer && r.Unit = unit.Name)
                      |> List.map (fun r -> r.Result) ]

        for name, panel in List.zip [ "accuracy"; "forgotten-mass" ] (BitPatternTask.panels variants) do
            Forgetting.Reporting.Save.panel Forgetting.Reporting.Style.panelSize (Path.Combine(dir, name)) panel

        printfn "results in %s" dir
