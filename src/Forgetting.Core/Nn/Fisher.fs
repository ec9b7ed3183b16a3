namespace Forgetting.Nn

open Forgetting.Tensors

/// At which labels y the diagonal Fisher takes the gradients of log p(y|x).
[<RequireQualifiedAccess>]
type FisherKind =
    /// The Fisher information itself, the expectation over the model's own predictive distribution:
    /// Σ_y p(y|x) (∂ log p(y|x)/∂θ)², one backward pass per class in play. The default, as in
    /// van de Ven et al.'s reference code; Kirkpatrick et al. 2017 (eq. 3 and its supplement) define
    /// F this way.
    | True
    /// The empirical Fisher: y the sample's own label.
    | Empirical
    /// One label per sample drawn from p(·|x): a one-draw Monte Carlo estimate of the true Fisher.
    | Sampled

/// The diagonal of the Fisher information of a classifier, F_i = (1/N) Σ_k E_y (∂ log p(y|x_k)/∂θ_i)²
/// (Kirkpatrick et al. 2017, eq. 3), from per-sample gradients (never from the square of a batch's mean
/// gradient), as a parameter tree. It is taken on the model in evaluation mode, on the head of the task
/// (`Mode.Eval.OnTask task`) and on the first `Outputs` logits of that head (the classes in play), and
/// divided by N, the number of samples used (not N − 1). Parameters the task's outputs do not depend
/// on (the heads of other tasks) get 0.
[<RequireQualifiedAccess>]
module Fisher =

    /// The first `outputs` columns of logits [B, K].
    let private inPlay (outputs: int) (logits: Tensor) =
        if outputs = logits.Shape[1] then
            logits
        else
            logits |> Tensor.transpose |> Tensor.slice 0 outputs |> Tensor.transpose

    /// One-hot rows [rows, k] for the classes ys.
    let private oneHot (dtype: DType) (k: int) (ys: int[]) =
        let data = Array.zeroCreate (ys.Length * k)
        ys |> Array.iteri (fun b y -> data[b * k + y] <- 1.0)
        Tensor.create dtype [| ys.Length; k |] data

    /// The smallest class whose cumulative probability exceeds u (the last one if rounding leaves the
    /// total below u).
    let private draw (probabilities: float[]) (offset: int) (k: int) (u: float) =
        let mutable total = 0.0
        let mutable y = -1

        for j in 0 .. k - 1 do
            total <- total + probabilities[offset + j]

            if y < 0 && u < total then
                y <- j

        if y < 0 then k - 1 else y

    /// The per-sample log-likelihoods of a chunk whose first sample is `start`, for the kind.
    let private logLikelihoods
        (kind: FisherKind)
        (outputs: int)
        (labels: int[])
        (uniforms: float[])
        (start: int)
        (logits: Tensor)
        : SampleLoss list =
        if logits.Rank <> 2 then
            invalidArg "model" $"the Fisher needs logits [B, K], the model returned shape {Shape.show logits.Shape}"

        let k = logits.Shape[1]

        if outputs > k then
            invalidArg "outputs" $"{outputs} outputs are in play but the task's head has {k}: give at most {k} outputs"

        let rows = logits.Shape[0]
        let logp = Tensor.logSoftmax 1 (inPlay outputs logits)

        let at (ys: int[]) =
            { Values = Tensor.sumAxis 1 false (logp * oneHot logp.DType outputs ys)
              Weights = None }

        match kind with
        | FisherKind.Empirical -> [ at labels[start .. start + rows - 1] ]
        | FisherKind.Sampled ->
            let p = (Tensor.exp logp).ToFloat64Array()
            [ at (Array.init rows (fun b -> draw p (b * outputs) outputs uniforms[start + b])) ]
        | FisherKind.True ->
            let p = Tensor.exp (logp.StopGradient())

            [ for y in 0 .. outputs - 1 ->
                  let column = oneHot logp.DType outputs [| y |]

                  { Values = Tensor.sumAxis 1 false (logp * column)
                    Weights = Some(Tensor.sumAxis 1 false (p * column)) } ]

    /// The samples the Fisher is taken on, their labels and the key for sampled labels.
    let private select (samples: int option) (c: Consolidation) =
        if c.Inputs.Rank < 1 || c.Inputs.Shape[0] = 0 then
            invalidArg "inputs" "the Fisher needs at least one sample: the task's training inputs are empty"

        let n = c.Inputs.Shape[0]

        if c.Labels.Length <> n then
            invalidArg "labels" $"{c.Labels.Length} labels for {n} inputs: give one label per input"

        if c.Outputs < 1 then
            invalidArg "outputs" $"the Fisher needs at least one output in play, got {c.Outputs}"

        let subsetKey, labelKey = Rng.split c.Rng

        let inputs, labels =
            match samples with
            | Some cap when cap < 1 ->
                invalidArg
                    (nameof samples)
                    $"the Fisher's sample cap must be at least 1, got {cap}: give a positive count, or None for the whole task"
            | Some cap when cap < n ->
                // A uniformly random subset drawn from the consolidation's key, kept in the data's
                // order: a task's data may be ordered by class, so its first samples can be biased.
                let chosen = Rng.permutation n subsetKey |> Array.truncate cap |> Array.sort
                Tensor.gather chosen c.Inputs, chosen |> Array.map (fun i -> c.Labels[i])
            | _ -> c.Inputs, c.Labels

        labels
        |> Array.iteri (fun i y ->
            if y < 0 || y >= c.Outputs then
                invalidArg "labels" $"label {y} of sample {i} is outside the {c.Outputs} outputs in play")

        inputs, labels, Rng.uniform labels.Length labelKey

    let private estimate sum (kind: FisherKind) (samples: int option) (c: Consolidation) =
        let inputs, labels, uniforms = select samples c

        let total =
            sum
                SampleMap.Square
                c.Model
                (Mode.Eval.OnTask c.Task)
                (logLikelihoods kind c.Outputs labels uniforms)
                c.Params
                inputs

        Params.map (fun t -> t / float labels.Length) total

    /// The diagonal Fisher of `kind` on the task of `c` (its model, parameters, task, training inputs
    /// and labels, outputs in play; its key draws the subset and the sampled labels), on at most
    /// `samples` samples: with `Some n` below the task's size, a uniformly random subset of n drawn
    /// from `c.Rng` (a task's data may be ordered by class, which makes its first n samples biased);
    /// with None, the whole task. Per-sample gradients come from `SampleGradients.sums`: one forward
    /// pass per chunk of samples, one backward pass per chunk for the empirical and sampled kinds and
    /// one per class in play for the true Fisher, then one matrix product per dense layer.
    let diagonal (kind: FisherKind) (samples: int option) (c: Consolidation) : Params =
        estimate SampleGradients.sums kind samples c

    /// The same by the exact loop over samples (one forward and backward pass per sample and label):
    /// the reference `diagonal` is tested against.
    let diagonalLoop (kind: FisherKind) (samples: int option) (c: Consolidation) : Params =
        estimate SampleGradients.loop kind samples c
