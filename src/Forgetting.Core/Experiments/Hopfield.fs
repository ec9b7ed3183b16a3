namespace Forgetting.Experiments

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Data
open Forgetting.Training

/// Which Hopfield layer classifies the bit-pattern bags, as in hflayers' bit-pattern demo.
type BitPatternLayer =
    /// `Hopfield`: the bag's instances associate with each other (state = stored = the bag), the
    /// outputs flattened into a linear read-out.
    | Association
    /// `HopfieldPooling`: one learned state pattern pools the bag, a linear read-out.
    | Pooling
    /// `HopfieldLayer`: every instance looks up learned stored patterns, one per distinct instance of
    /// the training bags; the outputs flattened into a linear read-out.
    | Lookup

    member l.Name =
        match l with
        | Association -> "hopfield"
        | Pooling -> "pooling"
        | Lookup -> "lookup"

    static member All = [ Association; Pooling; Lookup ]

    static member Parse(name: string) =
        match BitPatternLayer.All |> List.tryFind (fun l -> l.Name = name) with
        | Some l -> l
        | None -> invalidArg (nameof name) $"unknown Hopfield layer '{name}': known are hopfield, pooling, lookup"

/// One run of the bit-pattern multiple-instance task (mechanisms.md §5, hflayers' demo).
type BitPatternSettings =
    {
        Layer: BitPatternLayer
        /// The demo's adapted settings (hidden 8, 8 heads, update_steps_max 3 = 4 association steps,
        /// β = 0.25, association dropout 0.5); otherwise hflayers' defaults.
        Adapted: bool
        Unit: ForgettingUnit
        /// 250 in the demo.
        Epochs: int
        BatchSize: int
        /// AdamW's learning rate and decoupled weight decay (torch.optim.AdamW's default 0.01, which the
        /// demo keeps), gradients clipped to this global norm.
        LearningRate: float
        WeightDecay: float
        ClipNorm: float
        /// The bags; their seed is the data's, fixed across the runs' seeds (as the demo generates its
        /// data once).
        Data: BitPatternOptions
        /// Initialisation, batch order, dropout and the PFU's noise.
        Seed: int64
    }

    static member Default =
        { Layer = Pooling
          Adapted = true
          Unit = NoUnit
          Epochs = 250
          BatchSize = 32
          LearningRate = 1e-3
          WeightDecay = 0.01
          ClipNorm = 1.0
          Data = BitPatternBags.defaults
          Seed = 1L }

/// What one run gave.
type BitPatternResult =
    {
        History: EpochMetrics list
        /// Accuracy on the test bags after the last epoch.
        TestAccuracy: float
        /// The mean over the test bags' association rows of the attention mass the unit forgot,
        /// 1 − Σ_k A (0 without a unit), in evaluation.
        ForgottenMass: float
        /// That mass per association row (test bag, head, query; every layer's rows), for its distribution.
        ForgottenPerRow: float[]
    }

/// The bit-pattern task trained with a Hopfield layer, with or without partial forgetting.
[<RequireQualifiedAccess>]
module BitPatternTask =

    /// The Hopfield layer's settings: hflayers' defaults or the demo's adapted ones, with the unit.
    let layerSettings (adapted: bool) (unit: ForgettingUnit) =
        if adapted then
            { HopfieldSettings.Default with
                HiddenSize = Some 8
                Heads = 8
                UpdateSteps = 4
                Scaling = Some 0.25
                Dropout = 0.5
                Unit = unit }
        else
            { HopfieldSettings.Default with
                Unit = unit }

    /// A bag set as examples: inputs [N, instances · bits], labels 0/1.
    let examples (bags: BagSet) =
        let n = bags.Bags.Length
        let width = if n = 0 then 0 else bags.Bags[0].Count * bags.Features

        { Inputs = Tensor.ofArray [| n; width |] (bags.Bags |> Array.collect (fun b -> b.Instances))
          Labels = bags.Bags |> Array.map (fun b -> b.Label)
          Classes = 2 }

    /// The distinct instances of a bag set (the demo's `bit_samples_unique`): the lookup layer's count.
    let distinctInstances (bags: BagSet) =
        bags.Bags
        |> Array.collect (fun b -> Array.chunkBySize bags.Features b.Instances)
        |> Array.distinct
        |> Array.length

    /// The classifier: bags [B, instances · bits] → the layer → a linear read-out z → logits (0, z), so
    /// that softmax cross-entropy over the two logits is the demo's binary cross-entropy of z
    /// (softmax(0, z) = (1 − σ(z), σ(z))).
    let model (s: BitPatternSettings) (instances: int) (bits: int) (distinct: int) =
        let hs = layerSettings s.Adapted s.Unit

        let bag =
            Layer.stateless "bag" (fun x -> Tensor.reshape [| x.Shape[0]; instances; bits |] x)

        let logit =
            Layer.stateless "logit" (fun z -> Tensor.concat 1 [ Tensor.zerosLike z; z ])

        let body =
            match s.Layer with
            | Association ->
                [ "hopfield", Layer2.self (PartialForgetting.hopfield hs bits bits)
                  "flatten", Layer.flatten
                  "out", Layer.dense (instances * bits) 1 ]
            | Pooling -> [ "pooling", PartialForgetting.pooling hs bits 1; "out", Layer.dense bits 1 ]
            | Lookup ->
                [ "lookup", PartialForgetting.lookup hs bits distinct false
                  "flatten", Layer.flatten
                  "out", Layer.dense (instances * bits) 1 ]

        Layer.sequential ([ "bag", bag ] @ body @ [ "logit", logit ])

    /// AdamW with the demo's betas and ε, gradients clipped.
    let optimizer (s: BitPatternSettings) =
        Optim.adamW s.LearningRate 0.9 0.999 1e-8 s.WeightDecay
        |> Optim.clipped s.ClipNorm

    /// Train and test one run; `progress` sees every batch and epoch.
    let run (s: BitPatternSettings) (progress: Progress -> unit) : BitPatternResult =
        let data = BitPatternBags.generate s.Data
        let train, test = examples data.TrainBags, examples data.TestBags
        let instances, bits = s.Data.InstancesPerBag, s.Data.Bits
        let net = model s instances bits (distinctInstances data.TrainBags)
        let initKey, trainKey = Rng.split (Rng.create s.Seed)
        let p0 = net.Init initKey Float32

        let config =
            { Epochs = s.Epochs
              BatchSize = s.BatchSize
              Optimizer = optimizer s
              Seed = (Rng.bits trainKey 0L) |> int64 }

        let p, history, last =
            Trainer.train net Objective.taskOnly config progress p0 train test

        let _, trace = net.Forward Mode.Eval p test.Inputs

        let perRow =
            Trace.tagged PartialForgetting.AssociationTag trace
            |> List.map (fun e -> (PartialForgetting.forgottenMass e.Value).ToFloat64Array())
            |> Array.concat

        { History = history
          TestAccuracy = last.Accuracy
          ForgottenMass = Array.average perRow
          ForgottenPerRow = perRow }

    /// The comparison's figures from (variant label, its runs over seeds): test accuracy per variant
    /// (mean ± sample sd over seeds), and the distribution of the forgotten attention mass per
    /// association row over every run of a variant.
    let panels (variants: (string * BitPatternResult list) list) =
        [ Columns
              { Title = "Bit-pattern bags: test accuracy (mean ± sd over seeds)"
                YLabel = "test accuracy"
                Bars =
                  [ for label, runs in variants ->
                        let m, sd =
                            Forgetting.Analysis.Statistics.meanSd (runs |> List.map (fun r -> r.TestAccuracy))

                        label, m, Some sd ] }
          Histograms
              { Title = "Forgotten attention mass per association row (test bags)"
                XLabel = "1 − Σ_k A"
                Groups =
                  [ for label, runs in variants ->
                        label, runs |> Array.ofList |> Array.collect (fun r -> r.ForgottenPerRow) ]
                Bins = 20
                Range = Some(0.0, 1.0)
                Layout = Overlaid } ]
