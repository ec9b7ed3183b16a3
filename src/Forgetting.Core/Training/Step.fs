namespace Forgetting.Training

open Forgetting.Tensors
open Forgetting.Nn

/// A mini-batch of one task: inputs, labels in the head's own numbering, the task (which picks the
/// head), and how many of the head's outputs are in play (Class-IL: the classes seen so far; otherwise
/// the head's width). Labels are below `Outputs`.
type Batch =
    { Inputs: Tensor
      Labels: int[]
      Task: int
      Outputs: int }

/// Training diverged: a step's loss is no longer a finite number. The message names where (task,
/// epoch, step) and what to try.
type DivergedError(message: string) =
    inherit System.Exception(message)

/// Everything a training run carries from step to step: parameters, optimizer state, and the objective
/// with the state of its terms.
type TrainState =
    { Params: Params
      Optimizer: OptimizerState
      Objective: Objective }

/// The one training step, used by the trainer, the continual runner and the benchmarks.
[<RequireQualifiedAccess>]
module Step =

    /// The first `outputs` columns of logits [B, K] (all of them when outputs ≥ K).
    let inPlay (outputs: int) (logits: Tensor) =
        if outputs >= logits.Shape[1] then
            logits
        else
            logits |> Tensor.transpose |> Tensor.slice 0 outputs |> Tensor.transpose

    /// The forward pass of a batch and what the objective's terms see of it.
    let view (model: Layer) (mode: Mode) (p: Params) (batch: Batch) : StepView =
        let logits, trace = model.Forward (mode.OnTask batch.Task) p batch.Inputs

        { Params = p
          Trace = trace
          Logits = inPlay batch.Outputs logits
          Labels = batch.Labels
          Task = batch.Task }

    /// Start a run: the optimizer's fresh state for `p`.
    let init (optimizer: Optimizer) (objective: Objective) (p: Params) =
        { Params = p
          Optimizer = optimizer.Init p
          Objective = objective }

    /// One optimizer update on one batch, pure: the new state and the batch's loss. `rng` keys the
    /// forward pass's randomness (dropout). When a term observes steps, the task loss's own gradient
    /// is taken from the same forward pass and handed to it with the update.
    let run (model: Layer) (optimizer: Optimizer) (rng: Rng) (state: TrainState) (batch: Batch) : TrainState * float =
        let p = state.Params
        let leaves = Params.tensors p
        let observes = Objective.observesSteps state.Objective

        let mutable statistics = []

        let step (ts: Tensor[]) =
            let v = view model (Mode.Train rng) (Params.withTensors p ts) batch

            statistics <-
                [ for e in v.Trace do
                      match e.Kind with
                      | Statistic param -> (if e.Path = "" then param else e.Path + "/" + param), e.Value
                      | _ -> () ]

            let total = Objective.loss state.Objective v

            (if observes then
                 [| total; Objective.taskLoss v |]
             else
                 [| total |]),
            ts,
            v.Logits :: [ for e in v.Trace -> e.Value ]

        let update (grads: Tensor[][]) =
            optimizer.Update state.Optimizer p (Params.withTensors p grads[0])

        // The forward pass's intermediates go back to the backend after the gradients: only the trace
        // (running statistics among it), the logits and the gradients may be read after them. Without a
        // term that observes the step, the update is the gradients' last reader, and they and the
        // update's own temporaries go back too: only the new parameters and buffers stay.
        let values, (p', optimizerState), taskGradient =
            if observes then
                let values, grads = Tensor.gradientsOfStep step leaves
                values, update grads, Some(Params.withTensors p grads[1])
            else
                let values, updated =
                    Tensor.gradientsOfStepThen step leaves update (fun (p', o: OptimizerState) ->
                        Seq.append (Params.tensors p') o.Buffers.Values)

                values, updated, None

        // Running statistics are not trained: the layer's own update of them replaces the optimizer's.
        let p' =
            statistics
            |> List.fold (fun acc (path, value) -> Params.replace path (Tensor.stopGradient value) acc) p'

        let objective =
            match taskGradient with
            | Some taskGradient ->
                Objective.observe
                    { Before = p
                      After = p'
                      TaskGradient = taskGradient }
                    state.Objective
            | None -> state.Objective

        { Params = p'
          Optimizer = optimizerState
          Objective = objective },
        values[0].Item
