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

/// The Hopfield layer's options that hflayers' bit-pattern demo adapts; the rest stay at hflayers'
/// defaults (HopfieldSettings.Default).
type BitPatternLayerOptions =
    {
        Heads: int
        /// Each head's association space; None: the state size / heads.
        HiddenSize: int option
        /// β; None: 1/√hidden.
        Scaling: float option
        /// Association steps (hflayers' update_steps_max + 1).
        UpdateSteps: int
        /// Dropout on the association matrix, in training.
        Dropout: float
    }

    /// hflayers' defaults: one head, hidden = the state size, β = 1/√hidden, one step, no dropout.
    static member Defaults =
        { Heads = 1
          HiddenSize = None
          Scaling = None
          UpdateSteps = 1
          Dropout = 0.0 }

    /// The demo's adapted settings: hidden 8, 8 heads, update_steps_max 3 (4 association steps), β = 0.25,
    /// association dropout 0.5.
    static member Adapted =
        { Heads = 8
          HiddenSize = Some 8
          Scaling = Some 0.25
          UpdateSteps = 4
          Dropout = 0.5 }

/// One run of the bit-pattern multiple-instance task (mechanisms.md §5, hflayers' demo).
type BitPatternSettings =
    {
        Layer: BitPatternLayer
        /// The layer's options (default: the demo's adapted ones).
        Options: BitPatternLayerOptions
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
          Options = BitPatternLayerOptions.Adapted
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

    /// The Hopfield layer's settings: hflayers' defaults with the given options and the unit.
    let layerSettings (o: BitPatternLayerOptions) (unit: ForgettingUnit) =
        { HopfieldSettings.Default with
            Heads = o.Heads
            HiddenSize = o.HiddenSize
            Scaling = o.Scaling
            UpdateSteps = o.UpdateSteps
            Dropout = o.Dropout
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
        let hs = layerSettings s.Options s.Unit

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

/// One run of the immune-repertoire task in DeepRC's style (Widrich et al., NeurIPS 2020; mechanisms.md
/// §4.6) on the library's generated repertoires.
type RepertoireSettings =
    {
        Unit: ForgettingUnit
        /// DeepRC's sequence embedding: 1-D convolution kernels and their width (32 of 9).
        Kernels: int
        KernelSize: int
        /// The attention network's hidden width (two SELU layers of 32).
        AttentionHidden: int
        Epochs: int
        BatchSize: int
        /// Adam's learning rate (DeepRC: 1e-4).
        LearningRate: float
        Data: SequenceBagOptions
        Seed: int64
    }

    static member Default =
        { Unit = NoUnit
          Kernels = 32
          KernelSize = 9
          AttentionHidden = 32
          Epochs = 20
          BatchSize = 4
          LearningRate = 1e-4
          Data = SequenceBags.defaults
          Seed = 1L }

/// DeepRC's model with partial forgetting on its attention: each sequence one-hot encoded with three
/// position features, embedded by a 1-D convolution, SELU and a maximum over positions; scored by an
/// attention network; the scores s of one bag's sequences pass through the unit, A = D'(s) ⊙
/// softmax(D(s)) over the bag (the PFU's median per bag, DeepRC's scope); the embeddings pooled by A and
/// classified by a linear read-out z, logits (0, z) as in the bit-pattern task.
[<RequireQualifiedAccess>]
module RepertoireTask =

    /// 20 amino acids and 3 position features per position.
    [<Literal>]
    let Features = 23

    /// One sequence as [Features, length] (channels first), zero past its end: one-hot letters, then
    /// position features after DeepRC's: ramps 1 → 0 over the first half, 0 → 1 → 0 peaking at the
    /// centre, 0 → 1 over the second half (f0 + f1 + f2 = 1 at every position).
    let encode (length: int) (sequence: byte[]) =
        let x = Array.zeroCreate<float32>(Features * length)
        let n = sequence.Length
        let centre = float (n - 1) / 2.0

        for i in 0 .. (min n length) - 1 do
            x[int sequence[i] * length + i] <- 1.0f

            let f0, f2 =
                if centre = 0.0 then
                    0.0, 0.0
                else
                    max 0.0 (1.0 - float i / centre), max 0.0 ((float i - centre) / centre)

            x[20 * length + i] <- float32 f0
            x[21 * length + i] <- float32 (1.0 - f0 - f2)
            x[22 * length + i] <- float32 f2

        x

    /// Bags as examples: inputs [N, sequences · Features · maxLength], labels 0/1.
    let examples (o: SequenceBagOptions) (bags: SequenceBag[]) =
        { Inputs =
            Tensor.ofArray
                [| bags.Length; o.SequencesPerBag * Features * o.MaxLength |]
                (bags
                 |> Array.collect (fun b -> b.Sequences |> Array.collect (encode o.MaxLength)))
          Labels = bags |> Array.map (fun b -> b.Label)
          Classes = 2 }

    /// The tag of the attention weights A [B, 1, 1, S] in the trace (as the Hopfield layers').
    let AttentionTag = PartialForgetting.AssociationTag

    let model (s: RepertoireSettings) : Layer =
        let o = s.Data
        let sequences, length = o.SequencesPerBag, o.MaxLength

        if s.KernelSize > length then
            invalidArg (nameof s) $"a kernel of {s.KernelSize} is wider than the sequences' {length} positions"

        let h = s.AttentionHidden

        { Name = $"DeepRC {s.Kernels}×{s.KernelSize}, attention {h}, {s.Unit.Name}"
          Init =
            fun rng dtype ->
                let k = Rng.splitN 6 rng
                let fanIn = Features * s.KernelSize

                Params.ofList
                    [ "conv",
                      Params.ofTensors
                          [ "weight", Init.fanInUniform k[0] dtype [| s.Kernels; Features; 1; s.KernelSize |] fanIn
                            "bias", Init.fanInUniform k[1] dtype [| s.Kernels |] fanIn ]
                      "attention1", Init.dense k[2] dtype s.Kernels h
                      "attention2", Init.dense k[3] dtype h h
                      "attention3", Init.dense k[4] dtype h 1
                      "out", Init.dense k[5] dtype s.Kernels 1 ]
          Forward =
            fun mode p x ->
                let b = x.Shape[0]

                let dense name (t: Tensor) =
                    Tensor.linear t (Params.tensor $"{name}/weight" p) (Params.tensor $"{name}/bias" p)

                // [B·S, 23, 1, L] → conv → [B·S, K, 1, L − k + 1] → max over positions → [B·S, K].
                let emb =
                    Functional.conv2d
                        1
                        0
                        (Tensor.reshape [| b * sequences; Features; 1; length |] x)
                        (Params.tensor "conv/weight" p)
                        (Some(Params.tensor "conv/bias" p))
                    |> Functional.selu
                    |> Tensor.reshape [| b * sequences; s.Kernels; -1 |]
                    |> Tensor.maxAxis 2 false

                let scores =
                    emb
                    |> dense "attention1"
                    |> Functional.selu
                    |> dense "attention2"
                    |> Functional.selu
                    |> dense "attention3"
                    |> Tensor.reshape [| b; 1; 1; sequences |]

                let d, indicator =
                    PartialForgetting.forget s.Unit mode.Training mode.Rng None scores

                let a = Tensor.softmax -1 d

                let a =
                    match indicator with
                    | Some m -> a * m
                    | None -> a

                let pooled =
                    Tensor.matmul
                        (Tensor.reshape [| b; 1; sequences |] a)
                        (Tensor.reshape [| b; sequences; s.Kernels |] emb)
                    |> Tensor.reshape [| b; s.Kernels |]

                let z = dense "out" pooled

                Tensor.concat 1 [ Tensor.zerosLike z; z ],
                [ { Path = ""
                    Kind = Tagged AttentionTag
                    Value = a } ] }

    /// Train with Adam and test one run.
    let run (s: RepertoireSettings) (progress: Progress -> unit) : BitPatternResult =
        let data = SequenceBags.generate s.Data
        let train, test = examples s.Data data.TrainBags, examples s.Data data.TestBags
        let net = model s
        let initKey, trainKey = Rng.split (Rng.create s.Seed)

        let config =
            { Epochs = s.Epochs
              BatchSize = s.BatchSize
              Optimizer = Optim.adam s.LearningRate
              Seed = int64 (Rng.bits trainKey 0L) }

        let p, history, last =
            Trainer.train net Objective.taskOnly config progress (net.Init initKey Float32) train test

        let _, trace = net.Forward Mode.Eval p test.Inputs

        let perRow =
            Trace.tagged AttentionTag trace
            |> List.map (fun e -> (PartialForgetting.forgottenMass e.Value).ToFloat64Array())
            |> Array.concat

        { History = history
          TestAccuracy = last.Accuracy
          ForgottenMass = Array.average perRow
          ForgottenPerRow = perRow }

/// A small vision transformer (Dosovitskiy et al., ICLR 2021; timm's `VisionTransformer` in the
/// layout the LwPF code patches) with partial forgetting in every attention block (mechanisms.md §4.6).
type VisionTransformerSettings =
    {
        /// Square images of this side, one channel (Fashion-MNIST: 28).
        ImageSize: int
        /// Square patches of this side (7: 16 patches of 28×28).
        PatchSize: int
        Width: int
        Blocks: int
        Heads: int
        /// The MLP's hidden width as a multiple of the width (timm: 4).
        MlpRatio: int
        Classes: int
        Unit: ForgettingUnit
    }

    static member Default =
        { ImageSize = 28
          PatchSize = 7
          Width = 64
          Blocks = 4
          Heads = 4
          MlpRatio = 4
          Classes = 10
          Unit = NoUnit }

/// The vision transformer: patches embedded linearly, a learned class token and position embeddings
/// (N(0, 0.02)), pre-norm blocks x + attention(LN(x)), x + MLP(LN(x)) with GELU, a final LayerNorm and a
/// linear head on the class token. Linear layers take PyTorch's default initialisation (timm uses a
/// truncated N(0, 0.02)); no dropout.
[<RequireQualifiedAccess>]
module VisionTransformer =

    /// A linear map of every token: [B, T, in] → [B, T, out].
    let private tokenDense (inputs: int) (outputs: int) : Layer =
        { Name = $"token dense {inputs}→{outputs}"
          Init = fun rng dtype -> Init.dense rng dtype inputs outputs
          Forward =
            fun _ p x ->
                PartialForgetting.tokenwise x (Params.tensor "weight" p)
                + Params.tensor "bias" p,
                [] }

    /// LayerNorm over the last axis with affine γ = 1, β = 0 at the start.
    let private norm (width: int) : Layer =
        { Name = $"layer norm {width}"
          Init =
            fun _ dtype ->
                Params.ofTensors
                    [ "gamma", Tensor.ones dtype [| width |]
                      "beta", Tensor.zeros dtype [| width |] ]
          Forward = fun _ p x -> Functional.layerNorm 1e-6 (Params.tensor "gamma" p) (Params.tensor "beta" p) x, [] }

    /// x + inner(x).
    let private residual (inner: Layer) : Layer =
        { inner with
            Name = $"residual {inner.Name}"
            Forward =
                fun mode p x ->
                    let y, trace = inner.Forward mode p x
                    x + y, trace }

    let model (s: VisionTransformerSettings) : Layer =
        if s.PatchSize < 1 || s.ImageSize % s.PatchSize <> 0 then
            invalidArg (nameof s) $"patches of {s.PatchSize} do not tile images of {s.ImageSize}"

        if s.Blocks < 1 || s.MlpRatio < 1 || s.Classes < 2 then
            invalidArg (nameof s) $"need at least one block, an MLP ratio ≥ 1 and two classes"

        let patches = (s.ImageSize / s.PatchSize) * (s.ImageSize / s.PatchSize)
        let patchDim = s.PatchSize * s.PatchSize
        let w = s.Width

        let embed: Layer =
            { Name = "patch embedding"
              Init =
                fun rng dtype ->
                    let k = Rng.splitN 3 rng

                    Params.ofList
                        [ "proj", Init.dense k[0] dtype patchDim w
                          "cls", Leaf(Tensor.normal k[1] dtype [| 1; 1; w |] 0.0 0.02)
                          "pos", Leaf(Tensor.normal k[2] dtype [| 1; patches + 1; w |] 0.0 0.02) ]
              Forward =
                fun _ p x ->
                    let b = x.Shape[0]
                    let images = Tensor.reshape [| b; 1; s.ImageSize; s.ImageSize |] x
                    // [B, 49, 16] → [B, 16, 49]: one row per patch.
                    let cols =
                        Functional.im2col s.PatchSize s.PatchSize s.PatchSize 0 images
                        |> Tensor.transpose

                    let tokens =
                        PartialForgetting.tokenwise cols (Params.tensor "proj/weight" p)
                        + Params.tensor "proj/bias" p

                    let cls = Params.tensor "cls" p |> Tensor.broadcastTo [| b; 1; w |]
                    Tensor.concat 1 [ cls; tokens ] + Params.tensor "pos" p, [] }

        let block =
            Layer.sequential
                [ "attention",
                  residual (
                      Layer.sequential
                          [ "norm", norm w
                            "attention", PartialForgetting.attention s.Heads w s.Unit 0.0 None |> Layer2.self ]
                  )
                  "mlp",
                  residual (
                      Layer.sequential
                          [ "norm", norm w
                            "fc1", tokenDense w (w * s.MlpRatio)
                            "gelu", Layer.stateless "gelu" Functional.gelu
                            "fc2", tokenDense (w * s.MlpRatio) w ]
                  ) ]

        let head =
            Layer.sequential
                [ "cls", Layer.stateless "class token" (fun x -> Tensor.permute [| 1; 0; 2 |] x |> Tensor.index 0)
                  "out", Layer.dense w s.Classes ]

        Layer.sequential (
            [ "embed", embed ]
            @ [ for i in 1 .. s.Blocks -> $"block{i}", block ]
            @ [ "norm", norm w; "head", head ]
        )

    /// Train with AdamW (decoupled weight decay `weightDecay`, gradients clipped to norm 1) and test:
    /// the forgotten mass is read on the first 1,000 test images.
    let run
        (s: VisionTransformerSettings)
        (epochs: int)
        (batchSize: int)
        (lr: float)
        (weightDecay: float)
        (seed: int64)
        (progress: Progress -> unit)
        (train: Examples)
        (test: Examples)
        : BitPatternResult =
        let net = model s
        let initKey, trainKey = Rng.split (Rng.create seed)

        let config =
            { Epochs = epochs
              BatchSize = batchSize
              Optimizer = Optim.adamW lr 0.9 0.999 1e-8 weightDecay |> Optim.clipped 1.0
              Seed = int64 (Rng.bits trainKey 0L) }

        let p, history, last =
            Trainer.train net Objective.taskOnly config progress (net.Init initKey Float32) train test

        let _, trace = net.Forward Mode.Eval p (Examples.take 1000 test).Inputs

        let perRow =
            Trace.tagged PartialForgetting.AssociationTag trace
            |> List.map (fun e -> (PartialForgetting.forgottenMass e.Value).ToFloat64Array())
            |> Array.concat

        { History = history
          TestAccuracy = last.Accuracy
          ForgottenMass = Array.average perRow
          ForgottenPerRow = perRow }

/// One run of a Hopfield study: the compared model, the unit, the seed and what the run gave.
type HopfieldRun =
    { Model: string
      Unit: string
      Seed: int
      Result: BitPatternResult
      Seconds: float }

/// One row of a Hopfield study's summary: a model with a unit over the seeds.
type HopfieldSummaryRow =
    {
        Model: string
        Unit: string
        /// Test accuracy, mean and sample sd over the seeds.
        Accuracy: float
        AccuracySd: float
        /// The mean forgotten attention mass.
        Forgotten: float
        /// Accuracy minus the same model's without a unit on the same seed: mean and sample sd over the
        /// seeds (None for no unit, or when no run without a unit was made).
        PairedDifference: (float * float) option
    }

/// `forgetting hopfield`'s comparison as a study a recipe names (Recipe.Study, kind "hopfield"): the
/// three tasks of source 003 (bit-pattern bags, DeepRC's repertoires, the ViT on Fashion-MNIST), models
/// × units × seeds, every setting resolved and stored, so that `forgetting run <folder>/recipe.json`
/// runs it again to the same numbers.
[<RequireQualifiedAccess>]
module HopfieldStudy =

    [<Literal>]
    let Kind = "hopfield"

    let tasks = [ "bit-pattern"; "repertoire"; "vit" ]

    /// The message of an ArgumentException without .NET's " (Parameter '…')" tail.
    let private messageOf (e: System.ArgumentException) =
        match e.Message.IndexOf " (Parameter '" with
        | -1 -> e.Message
        | i -> e.Message.Substring(0, i)

    let private names (s: string) =
        s.Split(
            ',',
            System.StringSplitOptions.RemoveEmptyEntries
            ||| System.StringSplitOptions.TrimEntries
        )
        |> List.ofArray

    /// A comma-separated list of names, each checked by `parse` (which raises ArgumentException).
    let private listOf (name: string) (doc: string) (value: string) (parse: string -> unit) =
        { Name = name
          Doc = doc
          Default = Choice value
          Check =
            function
            | Choice s when names s |> List.isEmpty -> Some $"{name} needs at least one name"
            | Choice s ->
                try
                    names s |> List.iter parse
                    None
                with :? System.ArgumentException as e ->
                    Some(messageOf e)
            | v -> Some $"{name} must be a comma-separated list of names, got {v}" }

    let private positive name doc value =
        TermSetting.count name doc value "at least 1" (fun n -> n >= 1)

    /// A finite number written in invariant culture, or None.
    let private tryNumber (t: string) =
        match
            System.Double.TryParse(
                t,
                System.Globalization.NumberStyles.Float,
                System.Globalization.CultureInfo.InvariantCulture
            )
        with
        | true, x when System.Double.IsFinite x -> Some x
        | _ -> None

    /// A number, or a word standing for "not a number" (e.g. the PFU's median threshold).
    let private numberOr (name: string) (doc: string) (word: string) (wants: string) (valid: float -> bool) =
        { Name = name
          Doc = doc
          Default = Choice word
          Check =
            function
            | Choice w when w = word -> None
            | Choice t ->
                match tryNumber t with
                | Some x when valid x -> None
                | _ -> Some $"{name} must be {word} or {wants}, got {t}"
            | Number x when System.Double.IsFinite x && valid x -> None
            | v -> Some $"{name} must be {word} or {wants}, got {v}" }

    /// A `numberOr` setting's value: None for its word.
    let private numberOrNone (s: Settings) (name: string) =
        match s[name] with
        | Number x -> Some x
        | Choice t -> tryNumber t
        | _ -> None

    /// The settings of a study of `task`, with that task's defaults (the reference demo's and DeepRC's,
    /// mechanisms.md §5; timm's for the ViT); the bit-pattern layer's options default to the demo's
    /// adapted ones when `adapted`, else to hflayers' defaults.
    let settingsFor (task: string) (adapted: bool) : SettingSpec list =
        let bits, rep = BitPatternSettings.Default, RepertoireSettings.Default
        let vit = VisionTransformerSettings.Default

        let layer =
            if adapted then
                BitPatternLayerOptions.Adapted
            else
                BitPatternLayerOptions.Defaults

        [ TermSetting.choice "task" "bit-pattern, repertoire or vit" task tasks
          if task = "bit-pattern" then
              listOf "layers" "the Hopfield layers compared: hopfield, pooling, lookup" "pooling" (fun n ->
                  BitPatternLayer.Parse n |> ignore)

              TermSetting.switch
                  "adapted"
                  "the layer options' defaults: the demo's adapted settings (hidden 8, 8 heads, 4 association steps, β 0.25, dropout 0.5), else hflayers' defaults"
                  adapted

              positive "heads" "association heads" layer.Heads

              TermSetting.count
                  "hidden"
                  "each head's association space (0: the state size / heads)"
                  (defaultArg layer.HiddenSize 0)
                  "≥ 0"
                  (fun n -> n >= 0)

              TermSetting.number
                  "beta"
                  "β, the inverse temperature of the association (0: 1/√hidden)"
                  (defaultArg layer.Scaling 0.0)
                  "≥ 0"
                  (fun x -> x >= 0.0)

              positive "update_steps" "association steps (hflayers' update_steps_max + 1)" layer.UpdateSteps

              TermSetting.number
                  "dropout"
                  "dropout on the association matrix, in training"
                  layer.Dropout
                  "in [0, 1)"
                  (fun x -> x >= 0.0 && x < 1.0)
          if task = "vit" then
              positive "width" "the token width" vit.Width
              positive "blocks" "transformer blocks" vit.Blocks
              positive "heads" "attention heads (they divide the width)" vit.Heads
          listOf "units" "the partial-forgetting units compared: none, relu, pfu" "none,relu,pfu" (fun n ->
              ForgettingUnit.Parse n |> ignore)
          { Name = "median_scope"
            Doc = "the PFU's median over: call, sample, head or query"
            Default =
              Choice(
                  if task = "repertoire" then
                      (PerSample: MedianScope).Name
                  else
                      (WholeCall: MedianScope).Name
              )
            Check =
              function
              | Choice name ->
                  try
                      MedianScope.Parse name |> ignore
                      None
                  with :? System.ArgumentException as e ->
                      Some(messageOf e)
              | v -> Some $"median_scope must be a word, got {v}" }
          TermSetting.number
              "pfu_sigma"
              "σ of the PFU's threshold noise ε = N(0, 1)·σ² in training"
              PfuSettings.Default.Sigma
              "≥ 0"
              (fun x -> x >= 0.0)
          TermSetting.switch "detach_threshold" "cut the PFU's threshold from the gradient" PfuSettings.Default.Detach
          numberOr
              "pfu_threshold"
              "the PFU's threshold before its noise: median (over median_scope) or a fixed number"
              "median"
              "a number"
              (fun _ -> true)
          numberOr
              "pfu_below"
              "the value the PFU gives scores below its threshold: threshold (the reference's) or a fixed number"
              "threshold"
              "a number"
              (fun _ -> true)
          positive
              "epochs"
              "epochs per run"
              (match task with
               | "repertoire" -> rep.Epochs
               | "vit" -> 10
               | _ -> bits.Epochs)
          positive "seeds" "seeds per model and unit" 3
          positive "first_seed" "the first seed" 1
          positive
              "batch"
              "the batch size"
              (match task with
               | "repertoire" -> rep.BatchSize
               | "vit" -> 128
               | _ -> bits.BatchSize)
          TermSetting.number
              "lr"
              "the learning rate (AdamW; Adam for the repertoires)"
              (match task with
               | "repertoire" -> rep.LearningRate
               | "vit" -> 1e-3
               | _ -> bits.LearningRate)
              "> 0"
              (fun x -> x > 0.0)
          if task <> "repertoire" then
              // AdamW's decoupled weight decay: torch's default 0.01, which the demo keeps; timm's 0.05.
              TermSetting.number
                  "weight_decay"
                  "AdamW's decoupled weight decay"
                  (if task = "vit" then 0.05 else bits.WeightDecay)
                  "≥ 0"
                  (fun x -> x >= 0.0)
          if task <> "vit" then
              TermSetting.count
                  "bags"
                  "bags generated, three quarters train, the rest test"
                  (if task = "repertoire" then
                       rep.Data.BagCount
                   else
                       bits.Data.BagCount)
                  "at least 8"
                  (fun n -> n >= 8)
          if task = "repertoire" then
              TermSetting.number
                  "witness_rate"
                  "the share of a positive bag's sequences that carry a motif"
                  rep.Data.WitnessRate
                  "in (0, 1]"
                  (fun x -> x > 0.0 && x <= 1.0)
          if task = "vit" then
              TermSetting.count "train_limit" "the first n training images only (0: all)" 0 "≥ 0" (fun n -> n >= 0)
              TermSetting.count "test_limit" "the first n test images only (0: all)" 0 "≥ 0" (fun n -> n >= 0) ]

    /// A study's settings from the given ones: the task's defaults filled in, every value checked; an
    /// unknown task or setting, or a value out of range, raises ArgumentException with a one-line message.
    let resolve (given: (string * SettingValue) list) : Settings =
        let task =
            match given |> List.tryFindBack (fun (n, _) -> n = "task") with
            | Some(_, Choice t) when List.contains t tasks -> t
            | Some(_, v) -> invalidArg "task" $"unknown task '{v}': bit-pattern, repertoire or vit"
            | None -> "bit-pattern"

        let adapted =
            match given |> List.tryFindBack (fun (n, _) -> n = "adapted") with
            | Some(_, Switch b) -> b
            | _ -> BitPatternSettings.Default.Options = BitPatternLayerOptions.Adapted

        let s = TermSetting.resolve Kind (settingsFor task adapted) given

        if task = "bit-pattern" then
            let bits = BitPatternSettings.Default.Data.Bits

            match s["hidden"], s["heads"] with
            | Count 0, Count h when bits % h <> 0 ->
                invalidArg "heads" $"{h} heads do not divide the {bits} bits of an instance: give a hidden size"
            | _ -> ()

        if task = "vit" then
            let width, heads = s["width"], s["heads"]

            match width, heads with
            | Count w, Count h when w % h <> 0 -> invalidArg "heads" $"{h} heads do not divide the width {w}"
            | _ -> ()

        s

    /// The study as a recipe: the settings resolved, the rest of the recipe at its defaults (a Hopfield
    /// study trains its own models on its own data).
    let recipe (given: (string * SettingValue) list) : Recipe =
        { Recipe.defaults with
            Label = Kind
            Study =
                Some
                    { Kind = Kind
                      Settings = resolve given } }

    let task (s: Settings) = TermSetting.toChoice s "task"

    /// The PFU with the study's threshold options.
    let private pfu (s: Settings) =
        { PfuSettings.Default with
            Threshold =
                match numberOrNone s "pfu_threshold" with
                | Some a -> Fixed a
                | None -> Median(MedianScope.Parse(TermSetting.toChoice s "median_scope"))
            Sigma = TermSetting.toFloat s "pfu_sigma"
            Detach = TermSetting.toBool s "detach_threshold"
            Below = numberOrNone s "pfu_below" }

    let units (s: Settings) =
        names (TermSetting.toChoice s "units")
        |> List.map (fun n ->
            match ForgettingUnit.Parse n with
            | Pfu _ -> Pfu(pfu s)
            | u -> u)

    /// The bit-pattern layer's options.
    let layerOptions (s: Settings) : BitPatternLayerOptions =
        let positiveOrNone =
            function
            | 0 -> None
            | n -> Some n

        { Heads = TermSetting.toInt s "heads"
          HiddenSize = positiveOrNone (TermSetting.toInt s "hidden")
          Scaling =
            match TermSetting.toFloat s "beta" with
            | 0.0 -> None
            | b -> Some b
          UpdateSteps = TermSetting.toInt s "update_steps"
          Dropout = TermSetting.toFloat s "dropout" }

    let seeds (s: Settings) =
        let first = TermSetting.toInt s "first_seed"
        [ first .. first + TermSetting.toInt s "seeds" - 1 ]

    /// The ViT's images: the first `train_limit` and `test_limit` of the given sets (0: all).
    let vitData (s: Settings) (train: Examples, test: Examples) =
        let take name (e: Examples) =
            match TermSetting.toInt s name with
            | 0 -> e
            | n -> Examples.take n e

        take "train_limit" train, take "test_limit" test

    /// The compared models by name, each with how to run it for a unit and a seed; the ViT's task reads
    /// its Fashion-MNIST images from `vitImages` (train, test) when it runs.
    let models (s: Settings) (vitImages: unit -> Examples * Examples) =
        let epochs = TermSetting.toInt s "epochs"
        let batch = TermSetting.toInt s "batch"
        let lr = TermSetting.toFloat s "lr"

        match task s with
        | "repertoire" ->
            let d = RepertoireSettings.Default
            let bags = TermSetting.toInt s "bags"

            [ "deeprc",
              fun unit (seed: int) progress ->
                  RepertoireTask.run
                      { d with
                          Unit = unit
                          Epochs = epochs
                          BatchSize = batch
                          LearningRate = lr
                          Seed = int64 seed
                          Data =
                              { d.Data with
                                  BagCount = bags
                                  TrainCount = bags * 3 / 4
                                  WitnessRate = TermSetting.toFloat s "witness_rate" } }
                      progress ]
        | "vit" ->
            [ "vit",
              fun unit seed progress ->
                  let train, test = vitData s (vitImages ())

                  VisionTransformer.run
                      { VisionTransformerSettings.Default with
                          Width = TermSetting.toInt s "width"
                          Blocks = TermSetting.toInt s "blocks"
                          Heads = TermSetting.toInt s "heads"
                          Unit = unit }
                      epochs
                      batch
                      lr
                      (TermSetting.toFloat s "weight_decay")
                      (int64 seed)
                      progress
                      train
                      test ]
        | _ ->
            let d = BitPatternSettings.Default
            let bags = TermSetting.toInt s "bags"

            [ for name in names (TermSetting.toChoice s "layers") ->
                  let layer = BitPatternLayer.Parse name

                  layer.Name,
                  fun unit seed progress ->
                      BitPatternTask.run
                          { d with
                              Layer = layer
                              Unit = unit
                              Options = layerOptions s
                              Epochs = epochs
                              BatchSize = batch
                              LearningRate = lr
                              WeightDecay = TermSetting.toFloat s "weight_decay"
                              Seed = int64 seed
                              Data =
                                  { d.Data with
                                      BagCount = bags
                                      TrainCount = bags * 3 / 4 } }
                          progress ]

    /// Per model and unit: accuracy mean ± sd over the seeds, the mean forgotten mass, and the paired
    /// difference from the same model without a unit on the same seeds.
    let summary (models: string list) (units: ForgettingUnit list) (runs: HopfieldRun list) =
        [ for model in models do
              for unit in units do
                  let mine = runs |> List.filter (fun r -> r.Model = model && r.Unit = unit.Name)

                  let acc, sd =
                      Forgetting.Analysis.Statistics.meanSd (mine |> List.map (fun r -> r.Result.TestAccuracy))

                  let mass, _ =
                      Forgetting.Analysis.Statistics.meanSd (mine |> List.map (fun r -> r.Result.ForgottenMass))

                  let baseline = runs |> List.filter (fun r -> r.Model = model && r.Unit = "none")

                  { Model = model
                    Unit = unit.Name
                    Accuracy = acc
                    AccuracySd = sd
                    Forgotten = mass
                    PairedDifference =
                      if unit = NoUnit || baseline.IsEmpty then
                          None
                      else
                          mine
                          |> List.map (fun r ->
                              r.Result.TestAccuracy
                              - (baseline |> List.find (fun b -> b.Seed = r.Seed)).Result.TestAccuracy)
                          |> Forgetting.Analysis.Statistics.meanSd
                          |> Some } ]
