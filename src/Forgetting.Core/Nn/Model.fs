namespace Forgetting.Nn

open Forgetting.Tensors

/// How the gradient of one parameter splits over the samples of a batch, read off the gradient g at a
/// layer's output: sums over samples of f(per-sample gradient), for f multiplicative such as the square
/// (Fisher) or the absolute value (MAS), then need no loop: Σ_b f(a_b ⊗ g_b) = f(A)ᵀ f(G).
type SampleGradient =
    /// A weight [in, out] of z = a·W: per sample the outer product a_bᵀ g_b, with `input` = a [B, in].
    | Outer of input: Tensor
    /// A bias [out] of z = a·W + b: per sample g_b itself.
    | Rows
    /// A per-unit weight w [n] entering as z_bi = c_bi · w_i: per sample g_b ⊙ c_b, with `factor` = c [B, n].
    | Scaled of factor: Tensor

/// What a recorded intermediate is, so that losses and read-outs can find theirs in a trace.
type TraceKind =
    /// A hidden layer's activation (after its nonlinearity).
    | Activation
    /// The excitatory input h of a forgetting layer.
    | GateInput
    /// The gate σ of a forgetting layer, per sample and unit (or per unit for a static gate).
    | Gate
    /// The output of a layer, recorded with how the per-sample gradient of its parameter `param` (a path
    /// inside the layer) follows from the gradient at that output.
    | Gradient of param: string * rule: SampleGradient
    /// The next value of one of the layer's running statistics, `param` being its path inside the layer
    /// (a name Params.isStatistic accepts): the training step stores it after the optimizer's update.
    | Statistic of param: string
    /// An intermediate a mechanism names itself (e.g. "hopfield/association" for a Hopfield layer's
    /// association matrix): the vocabulary stays open without a new case here per mechanism. By
    /// convention the tag starts with the mechanism's name and a slash.
    | Tagged of tag: string

/// One recorded intermediate of a forward pass. `Path` names the layer ("block2/forget").
type TraceEntry =
    { Path: string
      Kind: TraceKind
      Value: Tensor }

/// How a forward pass runs: training (dropout on, batch statistics) or evaluation, the key for anything
/// random in it, and the task the input belongs to (0 … T−1), which picks the head of a multi-head net.
type Mode =
    { Training: bool
      Rng: Rng
      Task: int }

    static member Eval =
        { Training = false
          Rng = Rng.create 0L
          Task = 0 }

    static member Train(rng: Rng) =
        { Training = true; Rng = rng; Task = 0 }

    /// The same mode for the input of another task.
    member m.OnTask(task: int) = { m with Task = task }

/// A layer of two inputs, as a Hopfield layer takes them: the state patterns (the queries, [B, Q, d])
/// and the stored patterns (keys and values, [B, K, d']). `Layer2.self` and `Layer2.withStored` make a
/// one-input layer of it, to compose with `Layer.sequential`.
type Layer2 =
    { Name: string
      Init: Rng -> DType -> Params
      Forward: Mode -> Params -> Tensor -> Tensor -> Tensor * TraceEntry list }

/// A layer is a value: how to initialise its parameters from a key, and a pure forward function that
/// returns the output and the intermediates it recorded. Models are layers composed in sequence.
type Layer =
    { Name: string
      Init: Rng -> DType -> Params
      Forward: Mode -> Params -> Tensor -> Tensor * TraceEntry list }

[<RequireQualifiedAccess>]
module Layer =

    /// A layer with no parameters.
    let stateless (name: string) (f: Tensor -> Tensor) =
        { Name = name
          Init = fun _ _ -> Params.empty
          Forward = fun _ _ x -> f x, [] }

    /// A dense layer x W + b, PyTorch's default initialisation.
    let dense (inputs: int) (outputs: int) =
        { Name = $"dense {inputs}→{outputs}"
          Init = fun rng dtype -> Init.dense rng dtype inputs outputs
          Forward =
            fun _ p x ->
                let x = if x.Rank > 2 then Tensor.flatten x else x
                let z = Tensor.linear x (Params.tensor "weight" p) (Params.tensor "bias" p)

                z,
                [ { Path = ""
                    Kind = Gradient("weight", Outer x)
                    Value = z }
                  { Path = ""
                    Kind = Gradient("bias", Rows)
                    Value = z } ] }

    /// A dense layer x W without a bias (as before batch norm, whose β takes its place), PyTorch's
    /// default initialisation of W.
    let denseNoBias (inputs: int) (outputs: int) =
        { Name = $"dense {inputs}→{outputs}, no bias"
          Init =
            fun rng dtype ->
                Params.ofTensors
                    [ "weight", Init.fanInUniform (fst (Rng.split rng)) dtype [| inputs; outputs |] inputs ]
          Forward =
            fun _ p x ->
                let x = if x.Rank > 2 then Tensor.flatten x else x
                let z = Tensor.matmul x (Params.tensor "weight" p)

                z,
                [ { Path = ""
                    Kind = Gradient("weight", Outer x)
                    Value = z } ] }

    /// The layer with every weight matrix (rank ≥ 2) of its initialisation drawn from U(−scale, scale)
    /// instead, each from a key of its own; the rest as the layer initialises it.
    let uniformWeights (scale: float) (layer: Layer) =
        if not (scale > 0.0) || System.Double.IsInfinity scale then
            invalidArg (nameof scale) $"the initial weights' range must be a finite number > 0, got {scale}"

        { layer with
            Name = $"{layer.Name}, U(±{scale})"
            Init =
                fun rng dtype ->
                    let own, weights = Rng.split rng
                    let p = layer.Init own dtype
                    let ts = Params.tensors p
                    let keys = Rng.splitN (max 1 ts.Length) weights

                    ts
                    |> Array.mapi (fun i t ->
                        if t.Rank >= 2 then
                            Tensor.uniform keys[i] dtype t.Shape -scale scale
                        else
                            t)
                    |> Params.withTensors p }

    /// ReLU, recording its output as the layer's activation.
    let relu =
        { Name = "relu"
          Init = fun _ _ -> Params.empty
          Forward =
            fun _ _ x ->
                let h = Tensor.relu x

                h,
                [ { Path = ""
                    Kind = Activation
                    Value = h } ] }

    let tanh = stateless "tanh" Tensor.tanh

    let flatten = stateless "flatten" Tensor.flatten

    /// Inverted dropout while training; the identity at evaluation.
    let dropout (p: float) =
        { Name = $"dropout {p}"
          Init = fun _ _ -> Params.empty
          Forward = fun mode _ x -> (if mode.Training then Functional.dropout mode.Rng p x else x), [] }

    /// Batch normalisation over the features of [B, n] (Ioffe & Szegedy 2015), PyTorch's ε = 1e-5:
    /// γ (x − μ) / √(σ² + ε) + β with the batch's mean and biased variance. `affine` learns γ and β
    /// ("gamma", "beta"; else γ = 1, β = 0). `running` keeps running statistics ("running_mean",
    /// "running_var", momentum 0.1, the variance unbiased, as PyTorch) and uses them at evaluation;
    /// without it the batch's statistics are used at evaluation too, so that a test accuracy depends on
    /// the test batch (as in the binarized nets of Laborieux et al. 2021).
    let batchNorm (width: int) (affine: bool) (running: bool) =
        if width < 1 then
            invalidArg (nameof width) $"batch norm needs a width ≥ 1, got {width}"

        let eps, momentum = 1e-5, 0.1

        { Name = $"batch norm {width}"
          Init =
            fun _ dtype ->
                [ if affine then
                      "gamma", Tensor.ones dtype [| width |]
                      "beta", Tensor.zeros dtype [| width |]
                  if running then
                      "running_mean", Tensor.zeros dtype [| width |]
                      "running_var", Tensor.ones dtype [| width |] ]
                |> Params.ofTensors
          Forward =
            fun mode p x ->
                if x.Rank <> 2 || x.Shape[1] <> width then
                    invalidArg "x" $"batch norm {width} needs [batch, {width}], got {Shape.show x.Shape}"

                let gamma, beta =
                    if affine then
                        Params.tensor "gamma" p, Params.tensor "beta" p
                    else
                        Tensor.ones x.DType [| width |], Tensor.zeros x.DType [| width |]

                if running && not mode.Training then
                    Functional.batchNormWith
                        eps
                        (Params.tensor "running_mean" p)
                        (Params.tensor "running_var" p)
                        gamma
                        beta
                        x,
                    []
                else
                    // Per feature over the batch is layer normalisation of the transpose, whose fused op
                    // (one kernel each way) replaces the twenty-odd composed ops of Functional.batchNorm.
                    let b = x.Shape[0]

                    let output =
                        Functional.layerNorm
                            eps
                            (Tensor.ones x.DType [| b |])
                            (Tensor.zeros x.DType [| b |])
                            (Tensor.transpose x)
                        |> Tensor.transpose
                        |> fun normed -> normed * gamma + beta

                    if running then
                        let n = float b
                        let unbiased = n / max 1.0 (n - 1.0)
                        let constant = Tensor.stopGradient x
                        let mean = Tensor.meanAxis 0 false constant
                        let var = Tensor.meanAxis 0 false (Tensor.square (constant - mean))

                        output,
                        [ { Path = ""
                            Kind = Statistic "running_mean"
                            Value = Params.tensor "running_mean" p * (1.0 - momentum) + mean * momentum }
                          { Path = ""
                            Kind = Statistic "running_var"
                            Value = Params.tensor "running_var" p * (1.0 - momentum) + var * (unbiased * momentum) } ]
                    else
                        output, [] }

    /// Layers applied in order; each gets the subtree of parameters under its name, a key of its own,
    /// and its trace entries are prefixed with its name.
    let sequential (layers: (string * Layer) list) =
        let names = layers |> List.map fst

        if List.distinct names <> names then
            let all = String.concat ", " names
            invalidArg (nameof layers) $"layer names must be unique, got {all}"

        { Name = "sequential"
          Init =
            fun rng dtype ->
                let keys = Rng.splitN layers.Length rng

                layers
                |> List.mapi (fun i (name, layer) -> name, layer.Init keys[i] dtype)
                |> List.filter (fun (_, p) -> p <> Params.empty)
                |> Params.ofList
          Forward =
            fun mode p x ->
                let keys = Rng.splitN layers.Length mode.Rng
                let mutable h = x
                let trace = ResizeArray()

                layers
                |> List.iteri (fun i (name, layer) ->
                    let sub =
                        match p with
                        | Branch children -> children.TryFind name |> Option.defaultValue Params.empty
                        | Leaf _ -> Params.empty

                    let y, entries = layer.Forward { mode with Rng = keys[i] } sub h
                    h <- y

                    for e in entries do
                        trace.Add
                            { e with
                                Path = (if e.Path = "" then name else name + "/" + e.Path) })

                h, List.ofSeq trace }

    /// One head per task, chosen by the task id the forward pass carries (Task-IL: every task its own
    /// output layer, the rest of the net shared). Head t's parameters live under `head{t+1}`.
    let heads (perTask: Layer list) =
        if perTask.IsEmpty then
            invalidArg (nameof perTask) "a multi-head layer needs at least one head"

        let names = perTask |> List.mapi (fun t _ -> $"head{t + 1}")
        let byTask = Array.ofList perTask

        { Name = $"{perTask.Length} heads"
          Init =
            fun rng dtype ->
                let keys = Rng.splitN byTask.Length rng

                List.mapi (fun t name -> name, byTask[t].Init keys[t] dtype) names
                |> Params.ofList
          Forward =
            fun mode p x ->
                if mode.Task < 0 || mode.Task >= byTask.Length then
                    invalidArg
                        "mode"
                        $"task {mode.Task} has no head: this net has heads for tasks 0 … {byTask.Length - 1}"

                let name = names[mode.Task]
                let y, entries = byTask[mode.Task].Forward mode (Params.get name p) x

                y,
                entries
                |> List.map (fun e ->
                    { e with
                        Path = (if e.Path = "" then name else name + "/" + e.Path) }) }

    /// Output only.
    let apply (layer: Layer) (mode: Mode) (p: Params) (x: Tensor) = layer.Forward mode p x |> fst

/// Two-input layers made into one-input ones.
[<RequireQualifiedAccess>]
module Layer2 =

    /// The input serves as both state and stored patterns (self-association, self-attention).
    let self (layer: Layer2) : Layer =
        { Layer.Name = layer.Name
          Init = layer.Init
          Forward = fun mode p x -> layer.Forward mode p x x }

    /// The input is the state; the stored patterns are the given constant (a fixed memory).
    let withStored (stored: Tensor) (layer: Layer2) : Layer =
        { Layer.Name = layer.Name
          Init = layer.Init
          Forward = fun mode p x -> layer.Forward mode p x stored }

    /// Output only.
    let apply (layer: Layer2) (mode: Mode) (p: Params) (state: Tensor) (stored: Tensor) =
        layer.Forward mode p state stored |> fst

/// Reading traces.
[<RequireQualifiedAccess>]
module Trace =
    let ofKind (kind: TraceKind) (trace: TraceEntry list) =
        trace |> List.filter (fun e -> e.Kind = kind)

    /// The entries a mechanism recorded under its own tag.
    let tagged (tag: string) (trace: TraceEntry list) = ofKind (Tagged tag) trace
