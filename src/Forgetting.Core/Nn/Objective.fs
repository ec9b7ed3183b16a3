namespace Forgetting.Nn

open Forgetting.Tensors

/// What an objective term sees of one training step: the (tracked) parameters, the forward trace, the
/// logits of the outputs in play, the labels and the task the batch belongs to.
type StepView =
    { Params: Params
      Trace: TraceEntry list
      Logits: Tensor
      Labels: int[]
      Task: int }

/// What a term sees after an optimizer update: the parameters before and after it, and the gradient
/// of the task loss alone at the parameters before it (synaptic intelligence's path integral needs
/// it: Zenke et al., ICML 2017, eq. 3).
type StepObservation =
    { Before: Params
      After: Params
      TaskGradient: Params }

/// What a term's consolidation step sees after a task was learned: the model, the parameters it ended
/// with, the task, the task's training inputs and labels, how many outputs of its head were in play,
/// and a key for anything random (e.g. sampled Fisher labels).
type Consolidation =
    { Model: Layer
      Params: Params
      Task: int
      Inputs: Tensor
      Labels: int[]
      Outputs: int
      Rng: Rng }

/// One named term of an objective, added to the task loss: a penalty (EWC, SI, MAS), a regulariser
/// (L1, L2, DeCov) or a mechanism's own losses (the forgetting layer's ERS and IRS). A term is a value
/// with its own state; it changes only through `Observe` (after every step, for terms that declare
/// `ObservesSteps`) and `Consolidate` (after every task). Its weight is part of the term.
type Term =
    {
        /// The name results and progress displays show ("ewc", "l2", "ers").
        Name: string
        /// Its weighted contribution to a step's loss, or None when it has nothing to add yet (a
        /// penalty before its first consolidation).
        Loss: StepView -> Tensor option
        /// True when the term needs `Observe` after every step (and so the task loss's own gradient).
        ObservesSteps: bool
        /// The term after one optimizer update.
        Observe: StepObservation -> Term
        /// The term after a task was learned: snapshot θ*, compute importance, …
        Consolidate: Consolidation -> Term
        /// The term's state as named tensors, for checkpoints (empty for stateless terms).
        State: (string * Tensor) list
        /// The term with its state read back from a checkpoint.
        Restore: (string * Tensor) list -> Term
    }

/// The loss a model is trained on: the task loss (cross-entropy over the outputs in play) plus the sum
/// of its terms.
type Objective = { Terms: Term list }

[<RequireQualifiedAccess>]
module Term =

    /// A term without state: its loss is a function of the step alone, and nothing changes it.
    let stateless (name: string) (loss: StepView -> Tensor option) : Term =
        let rec term =
            { Name = name
              Loss = loss
              ObservesSteps = false
              Observe = fun _ -> term
              Consolidate = fun _ -> term
              State = []
              Restore = fun _ -> term }

        term

    /// A stateless term of the parameters alone, scaled by `weight` (skipped when the weight is 0).
    let ofParams (name: string) (weight: float) (f: Params -> Tensor) =
        stateless name (fun v -> if weight = 0.0 then None else Some(f v.Params * weight))

    /// A stateless term of the forward trace alone, scaled by `weight` (skipped when the weight is 0).
    let ofTrace (name: string) (weight: float) (f: TraceEntry list -> Tensor) =
        stateless name (fun v -> if weight = 0.0 then None else Some(f v.Trace * weight))

[<RequireQualifiedAccess>]
module Objective =

    /// Cross-entropy alone.
    let taskOnly = { Terms = [] }

    let ofTerms (terms: Term list) =
        let names = terms |> List.map (fun t -> t.Name)

        if List.distinct names <> names then
            let all = String.concat ", " names
            invalidArg (nameof terms) $"the terms of an objective need distinct names, got {all}"

        { Terms = terms }

    /// The task loss of a step: mean cross-entropy over the logits in play.
    let taskLoss (view: StepView) =
        Functional.crossEntropy view.Logits view.Labels

    /// The task loss plus every term that has something to add.
    let loss (objective: Objective) (view: StepView) =
        objective.Terms
        |> List.choose (fun t -> t.Loss view)
        |> List.fold (+) (taskLoss view)

    /// Whether any term observes steps (then a step also takes the task loss's own gradient).
    let observesSteps (objective: Objective) =
        objective.Terms |> List.exists (fun t -> t.ObservesSteps)

    /// Every term after one optimizer update.
    let observe (observation: StepObservation) (objective: Objective) =
        { Terms =
            objective.Terms
            |> List.map (fun t -> if t.ObservesSteps then t.Observe observation else t) }

    /// Every term after a task.
    let consolidate (c: Consolidation) (objective: Objective) =
        { Terms = objective.Terms |> List.map (fun t -> t.Consolidate c) }

    /// The state of every term, as named tensors under the term's name ("ewc/fisher1/…").
    let state (objective: Objective) =
        [ for t in objective.Terms do
              for name, tensor in t.State -> t.Name + "/" + name, tensor ]

    /// Every term with its state read back from `state` as written by `Objective.state`.
    let restore (state: (string * Tensor) list) (objective: Objective) =
        { Terms =
            objective.Terms
            |> List.map (fun t ->
                let prefix = t.Name + "/"

                state
                |> List.filter (fun (name, _) -> name.StartsWith prefix)
                |> List.map (fun (name, tensor) -> name.Substring prefix.Length, tensor)
                |> t.Restore) }
