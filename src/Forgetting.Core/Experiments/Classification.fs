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
        /// Neuron importance Ω per unit by the read-out `Readout`, when the block has a forgetting layer.
        Importance: float[] option
        /// The read-out of Importance ("gate-mean", "activity-weighted", "static"; "" without a layer).
        Readout: string
        /// The fraction of test samples on which each unit fires (its ReLU output h > 0).
        FiringRate: float[]
        /// The layer's inhibitory weights W_f, when it has a forgetting layer.
        Wf: float[] option
        /// The mean gate per unit over the test set (the gate-mean read-out), when it has a layer.
        GateMean: float[] option
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

        if
            r.Model.Kind <> "mlp"
            || r.Model.Norm <> "none"
            || r.Model.InitScale <> 0.0
            || r.Optimizer.Kind = "metaplastic"
        then
            fail
                "a single-task run trains the forgetting paper's MLP; a binarized net, batch norm, --init-scale and metaplastic Adam are for task sequences ('forgetting continual')"

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

    /// The model of a run in epoch `epoch` (from 1), for inputs of `features` values and `classes`
    /// classes: its forgetting layers at that epoch's steepness (ForgettingLayerConfig.RhoAt).
    let modelAt (r: Recipe) (epoch: int) (features: int) (classes: int) =
        let v = Recipe.variant r

        Variant.mlp
            { v with
                Layer = v.Layer |> Option.map (fun c -> c.AtEpoch epoch) }
            (features :: r.Model.Hidden @ [ classes ])

    /// The trained model of a run (its last epoch's steepness) for inputs of `features` values and
    /// `classes` classes.
    let model (r: Recipe) (features: int) (classes: int) =
        modelAt r r.EpochsPerTask features classes

    /// Per forgetting layer (by hidden block k, layer path forget{k}), the sums of its input h and gate
    /// σ over `data` in evaluation mode, from which each read-out of neuron importance follows.
    let gateSums (m: Layer) (p: Params) (batchSize: int) (data: Examples) : (int * GateSums) list =
        let sums = System.Collections.Generic.Dictionary<int, GateSums>()

        for start in 0..batchSize .. data.Count - 1 do
            let count = min batchSize (data.Count - start)
            let _, trace = m.Forward Mode.Eval p (Tensor.slice start count data.Inputs)

            let find kind path =
                trace |> List.tryFind (fun e -> e.Kind = kind && e.Path = path)

            let mutable k = 1
            let mutable go = true

            while go do
                match find GateInput $"forget{k}", find Gate $"forget{k}" with
                | Some h, Some sigma ->
                    let before =
                        match sums.TryGetValue k with
                        | true, s -> s
                        | _ -> ActiveForgetting.emptySums h.Value.Shape[1]

                    sums[k] <- ActiveForgetting.addSums before h.Value sigma.Value
                    k <- k + 1
                | _ -> go <- false

        [ for KeyValue(k, s) in sums -> k, s ] |> List.sortBy fst

    /// Per hidden block: sparsity and mean activation of its output, firing rate of its units, and with
    /// a forgetting layer its W_f and the neuron importance by the recipe's read-out
    /// (ActiveForgetting.readoutOf), from the evaluation `e` of the model `m` at `p` on `test`.
    let readouts (r: Recipe) (m: Layer) (p: Params) (test: Examples) (e: Evaluation) =
        let find path (entries: (string * float[]) list) =
            entries |> List.tryFind (fun (p, _) -> p = path) |> Option.map snd

        let sums = gateSums m p r.BatchSize test |> Map.ofList

        // Without forgetting layers the firing rate comes from the ReLU outputs in one more pass.
        let firing =
            if r.Model.Forgetting.IsSome then
                Map.empty
            else
                let counts =
                    Array.init r.Model.Hidden.Length (fun k -> Array.zeroCreate r.Model.Hidden[k])

                for start in 0 .. r.BatchSize .. test.Count - 1 do
                    let count = min r.BatchSize (test.Count - start)
                    let _, trace = m.Forward Mode.Eval p (Tensor.slice start count test.Inputs)

                    for k in 1 .. r.Model.Hidden.Length do
                        match trace |> List.tryFind (fun t -> t.Kind = Activation && t.Path = $"relu{k}") with
                        | Some t ->
                            let v = t.Value.ToFloat64Array()
                            let n = t.Value.Shape[1]

                            for i in 0 .. v.Length - 1 do
                                if v[i] > 0.0 then
                                    counts[k - 1][i % n] <- counts[k - 1][i % n] + 1.0
                        | None -> ()

                Map.ofList
                    [ for k in 1 .. r.Model.Hidden.Length ->
                          k, counts[k - 1] |> Array.map (fun c -> c / float test.Count) ]

        [ for k in 1 .. r.Model.Hidden.Length do
              let outputOf entries =
                  find $"forget{k}" entries
                  |> Option.orElse (find $"relu{k}" entries)
                  |> Option.defaultWith (fun () -> failwith $"no activation recorded for hidden layer {k}")

              let output = outputOf e.Readouts.Activations

              let layerOf =
                  match r.Model.Forgetting, sums.TryFind k with
                  | Some config, Some s ->
                      let wf = (Params.tensor $"forget{k}/wf" p).ToFloat64Array()
                      let readout = ActiveForgetting.readoutOf config
                      let rho = config.RhoAt r.EpochsPerTask

                      Some(
                          readout,
                          ActiveForgetting.importance readout rho wf s,
                          ActiveForgetting.firingRate s,
                          wf,
                          ActiveForgetting.importance "gate-mean" rho wf s
                      )
                  | _ -> None

              { Layer = k
                Sparsity = Sparsity.trevesRolls output
                MeanActivation = output
                SdActivation = outputOf e.Readouts.ActivationSds
                Importance = layerOf |> Option.map (fun (_, omega, _, _, _) -> omega)
                Readout = layerOf |> Option.map (fun (name, _, _, _, _) -> name) |> Option.defaultValue ""
                FiringRate =
                  match layerOf with
                  | Some(_, _, f, _, _) -> f
                  | None -> firing[k]
                Wf = layerOf |> Option.map (fun (_, _, _, wf, _) -> wf)
                GateMean = layerOf |> Option.map (fun (_, _, _, _, g) -> g) } ]

    /// Train a single-task recipe from its seed and read it out on the test set (the recipe is
    /// validated first; `train` and `test` are its data, Classification.data).
    let run (recipe: Recipe) (progress: Progress -> unit) (train: Examples) (test: Examples) =
        let config = validate Catalog.terms recipe
        let features = train.Inputs.Shape[1]
        let m = modelAt config 1 features train.Classes
        let objective = Variant.objective (Recipe.variant config)
        let initKey, trainKey = Rng.split (Rng.create config.Seed)
        let p0 = m.Init initKey Float32

        let trainConfig =
            { Epochs = config.EpochsPerTask
              BatchSize = config.BatchSize
              Optimizer = config.Optimizer.Build()
              Seed = int64 trainKey.Key }

        // ρ per epoch (ForgettingLayerConfig.RhoAt) and the learning rate per epoch (OptimizerSpec.LrAt);
        // with ρ fixed and a constant rate, one model and one optimizer throughout.
        let epochs = config.EpochsPerTask

        let state, history, evaluation =
            Trainer.fitScheduled
                (fun e -> if e = 1 then m else modelAt config e features train.Classes)
                (fun e -> config.Optimizer.BuildWith(config.Optimizer.LrAt e epochs))
                trainConfig
                (HeadUse.Single train.Classes)
                progress
                (Step.init trainConfig.Optimizer objective p0)
                train
                test

        let p = state.Params
        let final = model config features train.Classes

        { Config = config
          Params = p
          History = history
          Test = evaluation
          Layers = readouts config final p test evaluation }
