namespace Forgetting.Experiments

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Training
open Forgetting.Analysis

/// Which optimizer a run uses.
type OptimizerChoice =
    | Sgd of lr: float * momentum: float
    | Adam of lr: float

    member o.Build() =
        match o with
        | Sgd(lr, momentum) -> Optim.sgdWith lr momentum false 0.0
        | Adam lr -> Optim.adam lr

/// One training run of an MLP classifier variant.
type RunConfig =
    { Variant: Variant
      Hidden: int list
      Optimizer: OptimizerChoice
      Epochs: int
      BatchSize: int
      Seed: int64 }

/// A hidden layer's read-outs over the test set.
type LayerReadout =
    {
        /// The block ("1" for the first hidden layer).
        Layer: int
        /// Treves-Rolls sparsity of the block's output (the gated output when it has a forgetting layer).
        Sparsity: float
        /// Mean activation per unit.
        MeanActivation: float[]
        /// Standard deviation of each unit's activation over the test set.
        SdActivation: float[]
        /// Neuron importance Ω (mean gate per unit), when the block has a forgetting layer.
        Importance: float[] option
    }

type RunResult =
    { Config: RunConfig
      Params: Params
      History: EpochMetrics list
      Test: Evaluation
      Layers: LayerReadout list }

[<RequireQualifiedAccess>]
module Classification =

    /// The model of a run for inputs of `features` values and `classes` classes.
    let model (config: RunConfig) (features: int) (classes: int) =
        Variant.mlp config.Variant (features :: config.Hidden @ [ classes ])

    /// Per hidden block: sparsity and mean activation of its output, importance of its gates.
    let readouts (config: RunConfig) (e: Evaluation) =
        let find path (entries: (string * float[]) list) =
            entries |> List.tryFind (fun (p, _) -> p = path) |> Option.map snd

        [ for k in 1 .. config.Hidden.Length do
              let gates = find $"forget{k}" e.Readouts.Gates

              let outputOf entries =
                  find $"forget{k}" entries
                  |> Option.orElse (find $"relu{k}" entries)
                  |> Option.defaultWith (fun () -> failwith $"no activation recorded for hidden layer {k}")

              let output = outputOf e.Readouts.Activations

              { Layer = k
                Sparsity = Sparsity.trevesRolls output
                MeanActivation = output
                SdActivation = outputOf e.Readouts.ActivationSds
                Importance = gates } ]

    /// Train one variant from its seed and read it out on the test set.
    let run (config: RunConfig) (progress: Progress -> unit) (train: Examples) (test: Examples) =
        let features = train.Inputs.Shape[1]
        let m = model config features train.Classes
        let objective = Variant.objective config.Variant
        let initKey, trainKey = Rng.split (Rng.create config.Seed)
        let p0 = m.Init initKey Float32

        let trainConfig =
            { Epochs = config.Epochs
              BatchSize = config.BatchSize
              Optimizer = config.Optimizer.Build()
              Seed = int64 trainKey.Key }

        let p, history, evaluation =
            Trainer.train m objective trainConfig progress p0 train test

        { Config = config
          Params = p
          History = history
          Test = evaluation
          Layers = readouts config evaluation }
