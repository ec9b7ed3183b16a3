namespace Forgetting.Analysis

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms

/// How weights are ranked for pruning (source 000, Fig. 3b).
type PruningCriterion =
    /// Parameter importance (eq. 2) from the neuron importance of the layers the weight joins; units
    /// without a forgetting layer (pixels, logits) count as Ω = 0.
    | Importance of neuronImportance: (int * float[]) list
    /// Parameter importance (eq. 2) with a stated Ω for units without a forgetting layer (pixels,
    /// logits): 0 makes θ the other end's Ω alone (MiL), 1 ties every such weight at θ = 1.
    | ImportanceWith of neuronImportance: (int * float[]) list * boundary: float
    /// |w|.
    | Magnitude
    /// Optimal brain damage: saliency ½ H_ii w², with the Hessian's diagonal approximated by the
    /// empirical Fisher (the mean of squared per-sample gradients), given as one tensor tree.
    | BrainDamage of fisherDiagonal: Params
    /// Uniformly random scores from the key.
    | RandomScores of Rng

/// Where the fraction of weights kept is counted.
type PruningScope =
    /// The fraction of every dense layer's weights (the default).
    | PerLayer
    /// The fraction of all dense weights together, ranked across layers.
    | Global

/// Keeping a fraction of each dense layer's weights, chosen by a criterion; the rest are set to 0.
[<RequireQualifiedAccess>]
module Pruning =

    /// Neuron importance of a dense layer's input side (layer 1: the pixels) and output side (the
    /// logits of the last layer): the hidden layer's, or `boundary` for units without a forgetting layer.
    let private omega (importance: (int * float[]) list) (boundary: float) (hidden: int) (size: int) =
        importance
        |> List.tryFind (fun (k, _) -> k = hidden)
        |> Option.map snd
        |> Option.defaultValue (Array.create size boundary)

    /// The score of every weight of dense layer `layer` (row-major [inputs, outputs]); higher is kept.
    /// For eq. 2 the score is θ itself; ties are broken by |w| when ranking (ranked).
    let scores (criterion: PruningCriterion) (layer: int) (p: Params) : float[] =
        let w = Params.tensor (Surgery.weightPath layer) p
        let inputs, outputs = w.Shape[0], w.Shape[1]
        let v = w.ToFloat64Array()

        let theta importance boundary =
            if not (boundary >= 0.0 && boundary <= 1.0) then
                invalidArg
                    (nameof criterion)
                    $"the Ω of units without a forgetting layer must be in [0, 1], got {boundary}"

            let t =
                ActiveForgetting.parameterImportance
                    (omega importance boundary (layer - 1) inputs)
                    (omega importance boundary layer outputs)

            Array.init v.Length (fun k -> t[k / outputs, k % outputs])

        match criterion with
        | Magnitude -> v |> Array.map abs
        | RandomScores rng ->
            let keys = Rng.splitN (layer + 1) rng
            Rng.uniform v.Length keys[layer]
        | BrainDamage fisher ->
            let h = (Params.tensor (Surgery.weightPath layer) fisher).ToFloat64Array()
            Array.map2 (fun hii wi -> 0.5 * hii * wi * wi) h v
        | Importance importance -> theta importance 0.0
        | ImportanceWith(importance, boundary) -> theta importance boundary

    /// Indices ordered best first: by score, then (ties) by |w|, then by index, so that the order is
    /// deterministic whatever the sort.
    let ranked (score: float[]) (magnitude: float[]) =
        Array.init score.Length id
        |> Array.sortWith (fun a b ->
            match compare score[b] score[a] with
            | 0 ->
                match compare magnitude[b] magnitude[a] with
                | 0 -> compare a b
                | c -> c
            | c -> c)

    /// The parameters with only the best-scored fraction of the dense weights kept, per layer or
    /// across all layers (`scope`); ties in score are broken by |w| (ranked).
    let pruneWith (scope: PruningScope) (criterion: PruningCriterion) (fraction: float) (p: Params) =
        if not (fraction >= 0.0 && fraction <= 1.0) then
            invalidArg (nameof fraction) $"the fraction kept must be in [0, 1], got {fraction}"

        let layers = Surgery.denseLayers p

        let magnitudes layer =
            (Params.tensor (Surgery.weightPath layer) p).ToFloat64Array() |> Array.map abs

        let masks =
            match scope with
            | PerLayer ->
                [ for layer in layers ->
                      let s = scores criterion layer p
                      let keep = int (round (fraction * float s.Length))
                      let m = Array.zeroCreate s.Length

                      for k in (ranked s (magnitudes layer))[.. keep - 1] do
                          m[k] <- 1.0

                      layer, m ]
            | Global ->
                let all =
                    [ for layer in layers -> layer, scores criterion layer p, magnitudes layer ]

                let score = all |> List.map (fun (_, s, _) -> s) |> Array.concat
                let magnitude = all |> List.map (fun (_, _, m) -> m) |> Array.concat
                let keep = int (round (fraction * float score.Length))
                let kept = Array.zeroCreate score.Length

                for k in (ranked score magnitude)[.. keep - 1] do
                    kept[k] <- 1.0

                let offsets = all |> List.scan (fun o (_, s, _) -> o + s.Length) 0

                [ for (layer, s, _), o in List.zip all (List.take all.Length offsets) ->
                      layer, kept[o .. o + s.Length - 1] ]

        masks |> List.fold (fun q (layer, m) -> Surgery.mask layer m q) p

    /// The parameters with only the best-scored fraction of every dense layer's weights kept.
    let prune (criterion: PruningCriterion) (fraction: float) (p: Params) = pruneWith PerLayer criterion fraction p

    /// The empirical Fisher diagonal (mean of squared per-sample gradients of `loss`) over `count`
    /// samples, by the exact loop (`Params.perSampleGrads`) for an opaque per-sample loss; for a model
    /// and its data, `Fisher.diagonal FisherKind.Empirical` is the batched form.
    let fisherDiagonal (loss: Params -> int -> Tensor) (count: int) (p: Params) =
        let grads = Params.perSampleGrads loss count p

        let sumSq =
            grads |> Array.map (Params.map Tensor.square) |> Array.reduce (Params.map2 (+))

        Params.map (fun t -> t / float count) sumSq
