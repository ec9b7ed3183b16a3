namespace Forgetting.Analysis

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms

/// How weights are ranked for pruning (source 000, Fig. 3b).
type PruningCriterion =
    /// Parameter importance (eq. 2) from the neuron importance of the layers the weight joins.
    | Importance of neuronImportance: (int * float[]) list
    /// |w|.
    | Magnitude
    /// Optimal brain damage: saliency ½ H_ii w², with the Hessian's diagonal approximated by the
    /// empirical Fisher (the mean of squared per-sample gradients), given as one tensor tree.
    | BrainDamage of fisherDiagonal: Params
    /// Uniformly random scores from the key.
    | RandomScores of Rng

/// Keeping a fraction of each dense layer's weights, chosen by a criterion; the rest are set to 0.
[<RequireQualifiedAccess>]
module Pruning =

    /// Neuron importance of a dense layer's input side (layer 1: the pixels) and output side (the
    /// logits of the last layer). Units without a forgetting layer count as Ω = 0, so that eq. 2
    /// reduces to the importance of the unit at the weight's other end rather than to a tie at 1.
    let private omega (importance: (int * float[]) list) (hidden: int) (size: int) =
        importance
        |> List.tryFind (fun (k, _) -> k = hidden)
        |> Option.map snd
        |> Option.defaultValue (Array.zeroCreate size)

    /// The score of every weight of dense layer `layer` (row-major [inputs, outputs]); higher is kept.
    let scores (criterion: PruningCriterion) (layer: int) (p: Params) : float[] =
        let w = Params.tensor (Surgery.weightPath layer) p
        let inputs, outputs = w.Shape[0], w.Shape[1]
        let v = w.ToFloat64Array()

        match criterion with
        | Magnitude -> v |> Array.map abs
        | RandomScores rng ->
            let keys = Rng.splitN (layer + 1) rng
            Rng.uniform v.Length keys[layer]
        | BrainDamage fisher ->
            let h = (Params.tensor (Surgery.weightPath layer) fisher).ToFloat64Array()
            Array.map2 (fun hii wi -> 0.5 * hii * wi * wi) h v
        | Importance importance ->
            let theta =
                ActiveForgetting.parameterImportance
                    (omega importance (layer - 1) inputs)
                    (omega importance layer outputs)
            // Ties (equal importance) are broken by magnitude, which is small beside a step in θ.
            Array.init v.Length (fun k -> theta[k / outputs, k % outputs] + 1e-9 * abs v[k])

    /// The parameters with only the best-scored fraction of every dense layer's weights kept.
    let prune (criterion: PruningCriterion) (fraction: float) (p: Params) =
        if fraction < 0.0 || fraction > 1.0 then
            invalidArg (nameof fraction) $"the fraction kept must be in [0, 1], got {fraction}"

        Surgery.denseLayers p
        |> List.fold
            (fun q layer ->
                let s = scores criterion layer p
                let keep = int (round (fraction * float s.Length))
                let ranked = Array.init s.Length id |> Array.sortByDescending (fun k -> s[k])
                let m = Array.zeroCreate s.Length

                for k in ranked[.. keep - 1] do
                    m[k] <- 1.0

                Surgery.mask layer m q)
            p

    /// The empirical Fisher diagonal (mean of squared per-sample gradients of `loss`) over `count`
    /// samples, by the exact loop (`Params.perSampleGrads`) for an opaque per-sample loss; for a model
    /// and its data, `Fisher.diagonal FisherKind.Empirical` is the batched form.
    let fisherDiagonal (loss: Params -> int -> Tensor) (count: int) (p: Params) =
        let grads = Params.perSampleGrads loss count p

        let sumSq =
            grads |> Array.map (Params.map Tensor.square) |> Array.reduce (Params.map2 (+))

        Params.map (fun t -> t / float count) sumSq
