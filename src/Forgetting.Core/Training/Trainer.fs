namespace Forgetting.Training

open System
open System.Collections.Generic
open System.Diagnostics
open Forgetting.Tensors
open Forgetting.Nn

type TrainConfig =
    { Epochs: int
      BatchSize: int
      Optimizer: Optimizer
      Seed: int64 }

/// Which head a data set is for and how many of its outputs are in play (see Batch).
type HeadUse =
    { Task: int
      Outputs: int }

    /// A single-task classifier: head 0, every one of its outputs.
    static member Single(classes: int) = { Task = 0; Outputs = classes }

/// What one epoch gave.
type EpochMetrics =
    { Epoch: int
      TrainLoss: float
      TestLoss: float
      TestAccuracy: float
      Seconds: float }

/// Progress of a training run, for a display.
type Progress =
    | BatchDone of epoch: int * batch: int * batches: int * loss: float
    | EpochDone of EpochMetrics

/// Mean per-unit read-outs over a data set, per layer path: hidden activations and forgetting gates.
type Readouts =
    { Activations: (string * float[]) list
      ActivationSds: (string * float[]) list
      Gates: (string * float[]) list }

/// What evaluation over a data set gave.
type Evaluation =
    { Loss: float
      Accuracy: float
      Readouts: Readouts }

[<RequireQualifiedAccess>]
module Trainer =

    /// Seeded batches: a permutation of the examples cut into batches, the last one partial.
    let batches (rng: Rng) (count: int) (batchSize: int) =
        let order = Rng.permutation count rng
        order |> Array.chunkBySize batchSize

    let private batchOf (data: Examples) (indices: int[]) =
        Tensor.gather indices data.Inputs, indices |> Array.map (fun i -> data.Labels[i])

    /// Adds, per layer path, the per-unit sums over the batch of every recorded activation and gate and
    /// of their squares: dense [B, n] as it is, conv [B, C, H, W] as channel means per sample, a static
    /// gate [n] as the same value for every sample.
    let private accumulate
        (sums: List<(string * TraceKind) * (float[] * float[])>)
        (batch: int)
        (trace: TraceEntry list)
        =
        for e in trace do
            if e.Kind = Activation || e.Kind = Gate then
                let perSample =
                    match e.Value.Rank with
                    | 1 -> Tensor.broadcastTo [| batch; e.Value.Shape[0] |] e.Value
                    | 4 -> e.Value |> Tensor.meanAxis 3 false |> Tensor.meanAxis 2 false
                    | _ -> e.Value

                let s = (Tensor.sumAxis 0 false perSample).ToFloat64Array()
                let sq = (Tensor.sumAxis 0 false (Tensor.square perSample)).ToFloat64Array()

                // In trace order, which is layer order.
                match Seq.tryFind (fun (key, _) -> key = (e.Path, e.Kind)) sums with
                | Some(_, (acc, accSq)) ->
                    Array.iteri (fun j x -> acc[j] <- acc[j] + x) s
                    Array.iteri (fun j x -> accSq[j] <- accSq[j] + x) sq
                | None -> sums.Add((e.Path, e.Kind), (s, sq))

    let private batch (head: HeadUse) (data: Examples) (indices: int[]) =
        let x, y = batchOf data indices

        { Inputs = x
          Labels = y
          Task = head.Task
          Outputs = head.Outputs }

    /// The predicted class of every example, in evaluation mode, among the outputs in play of its head.
    let predictOn (head: HeadUse) (model: Layer) (p: Params) (batchSize: int) (data: Examples) =
        [| for start in 0..batchSize .. data.Count - 1 do
               let indices = Array.init (min batchSize (data.Count - start)) (fun i -> start + i)
               let v = Step.view model Mode.Eval p (batch head data indices)
               yield! Tensor.argMax 1 v.Logits |]

    /// The predicted class of every example of a single-task classifier, in evaluation mode.
    let predict (model: Layer) (p: Params) (batchSize: int) (data: Examples) =
        predictOn (HeadUse.Single Int32.MaxValue) model p batchSize data

    /// Accuracy of predictions against the examples' labels, overall and per class.
    let accuracy (predicted: int[]) (data: Examples) =
        let hits = Array.map2 (fun a b -> if a = b then 1.0 else 0.0) predicted data.Labels

        let perClass =
            Array.init data.Classes (fun c ->
                let mine =
                    Array.indexed data.Labels |> Array.filter (fun (_, l) -> l = c) |> Array.map fst

                if mine.Length = 0 then
                    nan
                else
                    (mine |> Array.sumBy (fun i -> hits[i])) / float mine.Length)

        Array.average hits, perClass

    /// Loss, accuracy and mean read-outs of the model over a data set, in evaluation mode, on the given
    /// head and outputs.
    let evaluateOn
        (head: HeadUse)
        (model: Layer)
        (objective: Objective)
        (p: Params)
        (batchSize: int)
        (data: Examples)
        : Evaluation =
        let sums = List<(string * TraceKind) * (float[] * float[])>()
        let mutable lossSum = 0.0
        let mutable correct = 0

        for start in 0..batchSize .. data.Count - 1 do
            let indices = Array.init (min batchSize (data.Count - start)) (fun i -> start + i)
            let b = batch head data indices
            let v = Step.view model Mode.Eval p b
            lossSum <- lossSum + (Objective.loss objective v).Item * float indices.Length
            let predicted = Tensor.argMax 1 v.Logits

            correct <-
                correct
                + (Array.map2 (fun a b -> if a = b then 1 else 0) predicted b.Labels |> Array.sum)

            accumulate sums indices.Length v.Trace

        let n = float data.Count

        let stat kind (f: float -> float -> float) =
            [ for (path, k), (s, sq) in sums do
                  if k = kind then
                      path, Array.map2 f s sq ]

        // Per unit: the mean, and the standard deviation over the data set (population form).
        let mean (s: float) (_: float) = s / n

        let sd (s: float) (sq: float) =
            sqrt (max 0.0 (sq / n - (s / n) * (s / n)))

        { Loss = lossSum / n
          Accuracy = float correct / n
          Readouts =
            { Activations = stat Activation mean
              ActivationSds = stat Activation sd
              Gates = stat Gate mean } }

    /// Loss, accuracy and mean read-outs of a single-task classifier over a data set, in evaluation mode.
    let evaluate (model: Layer) (objective: Objective) (p: Params) (batchSize: int) (data: Examples) : Evaluation =
        evaluateOn (HeadUse.Single data.Classes) model objective p batchSize data

    /// How many times the run's first loss (at least 1) a step's loss may reach before training counts
    /// as exploded: far above what a run that learns reaches (2.3e4 on ten classes, whose first loss is
    /// about ln 10) and far below where an exploding run ends up (losses of 1e5 to 1e18 at learning rates
    /// of 10 and more).
    let explosionFactor = 1e4

    /// The first parameter that is not finite in `p`: its path and value.
    let private nonFinite (p: Params) =
        Params.flatten p
        |> List.tryPick (fun (path, t) ->
            t.ToArray()
            |> Array.tryFind (fun x -> not (System.Single.IsFinite x))
            |> Option.map (fun x -> path, x))

    /// One epoch's steps over `count` batches, `batchAt b` made only when its step comes (so that an
    /// epoch never holds a second copy of the data), each keyed from `rng`: the state after them and
    /// the sum of the batches' losses weighted by their sizes, and the loss beyond which it counts as
    /// exploded (`limit`, or explosionFactor times this call's first loss when None) for the next epoch.
    /// Training stops with DivergedError, naming the epoch and step, when a loss is not finite, when it
    /// passes that limit, or when a parameter is no longer finite at the end of the epoch.
    let steps
        (model: Layer)
        (optimizer: Optimizer)
        (rng: Rng)
        (epoch: int)
        (progress: Progress -> unit)
        (limit: float option)
        (state: TrainState)
        (count: int)
        (batchAt: int -> Batch)
        =
        let keys = Rng.splitN count rng
        let mutable state = state
        let mutable lossSum = 0.0
        let mutable ceiling = defaultArg limit infinity

        let diverged (b: int) (what: string) =
            raise (
                DivergedError
                    $"training diverged at epoch {epoch}, step {b + 1}: {what}; try a smaller learning rate or smaller term weights"
            )

        for b in 0 .. count - 1 do
            let data = batchAt b
            let state', loss = Step.run model optimizer keys[b] state data

            if not (Double.IsFinite loss) then
                diverged b $"the loss is {loss}"

            if loss > ceiling then
                diverged b $"the loss exploded to {loss:G4}, over {explosionFactor:G0} times the first step's loss"

            if b = 0 && limit.IsNone then
                ceiling <- explosionFactor * max 1.0 loss

            // A parameter that stops being finite makes the next step's loss non-finite wherever it
            // enters the forward pass; the scan (a copy of every parameter) is done once, after the
            // epoch's last step, to catch the rest before anything is evaluated or saved.
            if b = count - 1 then
                match nonFinite state'.Params with
                | Some(path, x) -> diverged b $"parameter {path} became {x}"
                | None -> ()

            state <- state'
            lossSum <- lossSum + loss * float data.Labels.Length
            progress (BatchDone(epoch, b + 1, count, loss))

        state, lossSum, ceiling

    /// `fit` with a model and an optimizer per epoch (from 1): a steepness that grows per epoch, a
    /// learning-rate schedule. The optimizer's state carries over from epoch to epoch, so each epoch's
    /// optimizer must be of the same kind (the same rule at another learning rate). `config.Optimizer`
    /// makes the initial state only through the caller (Step.init).
    let fitScheduled
        (modelAt: int -> Layer)
        (optimizerAt: int -> Optimizer)
        (config: TrainConfig)
        (head: HeadUse)
        (progress: Progress -> unit)
        (state: TrainState)
        (trainSet: Examples)
        (testSet: Examples)
        =
        if config.Epochs < 1 || config.BatchSize < 1 then
            invalidArg
                (nameof config)
                $"epochs and batch size must be at least 1, got {config.Epochs} and {config.BatchSize}"

        let mutable state = state
        let mutable last = None
        let mutable limit = None
        let epochKeys = Rng.splitN config.Epochs (Rng.create config.Seed)

        let history =
            [ for epoch in 1 .. config.Epochs do
                  let sw = Stopwatch.StartNew()
                  let shuffleKey, dropoutKey = Rng.split epochKeys[epoch - 1]
                  let bs = batches shuffleKey trainSet.Count config.BatchSize

                  let model = modelAt epoch

                  let state', lossSum, ceiling =
                      steps model (optimizerAt epoch) dropoutKey epoch progress limit state bs.Length (fun b ->
                          batch head trainSet bs[b])

                  state <- state'
                  limit <- Some ceiling

                  let test =
                      evaluateOn head model state.Objective state.Params config.BatchSize testSet

                  last <- Some test

                  let m =
                      { Epoch = epoch
                        TrainLoss = lossSum / float trainSet.Count
                        TestLoss = test.Loss
                        TestAccuracy = test.Accuracy
                        Seconds = sw.Elapsed.TotalSeconds }

                  progress (EpochDone m)
                  m ]

        state, history, last.Value

    /// Train from `state` for the configured epochs on one task's examples (its head and outputs
    /// given), evaluating on `testSet` after every epoch; the optimizer in `config` makes the updates
    /// and `state` carries its state in. Pure in its result: the same seed gives the same numbers.
    let fit
        (model: Layer)
        (config: TrainConfig)
        (head: HeadUse)
        (progress: Progress -> unit)
        (state: TrainState)
        (trainSet: Examples)
        (testSet: Examples)
        =
        fitScheduled (fun _ -> model) (fun _ -> config.Optimizer) config head progress state trainSet testSet

    /// Train a single-task classifier with mini-batches from `p0`; report progress through the
    /// callback; evaluate on the test set after every epoch, the last evaluation returned beside the
    /// parameters and the history.
    let train
        (model: Layer)
        (objective: Objective)
        (config: TrainConfig)
        (progress: Progress -> unit)
        (p0: Params)
        (trainSet: Examples)
        (testSet: Examples)
        =
        let state, history, last =
            fit
                model
                config
                (HeadUse.Single trainSet.Classes)
                progress
                (Step.init config.Optimizer objective p0)
                trainSet
                testSet

        state.Params, history, last
