namespace Forgetting.Experiments

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Training
open Forgetting.Analysis
open Forgetting.Data
open Forgetting.Mechanisms

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

/// What a single-task run gave: its recipe, the trained parameters, the epochs and the test read-outs.
type RunResult =
    { Config: Recipe
      Params: Params
      History: EpochMetrics list
      Test: Evaluation
      Layers: LayerReadout list }

[<RequireQualifiedAccess>]
module Classification =

    let private fail (message: string) : 'a =
        raise (System.ArgumentException message)

    /// A single-task recipe with every value in range (Recipe.validate), or an ArgumentException with
    /// a one-line message: its scenario must be "single", trained sequentially, with no term that acts
    /// only after a task (Variant.checkSingleTask).
    let validate (kinds: TermKind list) (r: Recipe) =
        let r = Recipe.validate kinds r

        if r.Scenario.Kind <> "single" then
            fail
                $"a classification run learns one task; a '{r.Scenario.Kind}' scenario is a continual run ('forgetting continual')"

        if r.Training <> "sequential" then
            fail $"a single task has nothing to train jointly with; training must be sequential, got '{r.Training}'"

        if r.Model.Kind <> "mlp" || r.Model.Norm <> "none" || r.Model.InitScale <> 0.0 then
            fail
                "a single-task run trains the forgetting paper's MLP; a binarized net, batch norm or --init-scale are for task sequences ('forgetting continual')"

        for t in r.Terms do
            Variant.checkSingleTask { Kind = t.Kind; Given = [] }

            if r.Model.Forgetting.IsNone && ActiveForgetting.isLayerTerm t.Kind then
                fail $"{t.Kind} acts on forgetting layers, and '{r.Label}' has none; choose a variant with them"

        r

    /// The training and test examples of a single-task recipe from its data set (`load` fetches it by
    /// name), the training set cut to the recipe's limit when it has one.
    let data (load: KnownDataset -> TrainTest) (r: Recipe) =
        let d = load (KnownDataset.tryParse r.Scenario.Data.Head).Value
        let train = Examples.ofDataset d.Train

        let train =
            if r.Scenario.TrainLimit > 0 then
                Examples.take r.Scenario.TrainLimit train
            else
                train

        train, Examples.ofDataset d.Test

    /// The model of a run for inputs of `features` values and `classes` classes.
    let model (r: Recipe) (features: int) (classes: int) =
        Variant.mlp (Recipe.variant r) (features :: r.Model.Hidden @ [ classes ])

    /// Per hidden block: sparsity and mean activation of its output, importance of its gates.
    let readouts (r: Recipe) (e: Evaluation) =
        let find path (entries: (string * float[]) list) =
            entries |> List.tryFind (fun (p, _) -> p = path) |> Option.map snd

        [ for k in 1 .. r.Model.Hidden.Length do
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

    /// Train a single-task recipe from its seed and read it out on the test set (the recipe is
    /// validated first; `train` and `test` are its data, Classification.data).
    let run (recipe: Recipe) (progress: Progress -> unit) (train: Examples) (test: Examples) =
        let config = validate Catalog.terms recipe
        let features = train.Inputs.Shape[1]
        let m = model config features train.Classes
        let objective = Variant.objective (Recipe.variant config)
        let initKey, trainKey = Rng.split (Rng.create config.Seed)
        let p0 = m.Init initKey Float32

        let trainConfig =
            { Epochs = config.EpochsPerTask
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
