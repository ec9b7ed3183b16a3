namespace Forgetting.Analysis

open System

/// Sparsity of a population code: how few units carry the activity (source 000, eq. 1).
[<RequireQualifiedAccess>]
module Sparsity =

    /// Treves-Rolls sparsity of per-unit mean activations r (r_i >= 0):
    /// S = [1 - (sum r / N)^2 / (sum r^2 / N)] / (1 - 1/N).
    /// S is 0 when every unit is equally active (or all are silent) and 1 when one unit carries
    /// all the activity. The seed's text multiplies by (1 - 1/N); dividing is the standard form
    /// and the one that keeps S in [0, 1] (mechanisms.md §1).
    let trevesRolls (meanActivations: float[]) : float =
        let n = meanActivations.Length

        if n < 2 then
            invalidArg (nameof meanActivations) $"sparsity needs at least 2 units, got {n}"

        for i in 0 .. n - 1 do
            let r = meanActivations[i]

            if not (Double.IsFinite r) || r < 0.0 then
                invalidArg
                    (nameof meanActivations)
                    $"sparsity needs finite, non-negative activations (after a ReLU); unit {i} has {r}"

        // S does not change when every r is scaled; dividing by the largest keeps the squares below
        // from overflowing (r ≥ 1e155) or underflowing to 0 (r ≤ 1e-160).
        let top = Array.max meanActivations
        let scale = if top > 0.0 then top else 1.0

        // 1 - (mean r)^2 / mean(r^2) = var(r) / mean(r^2). The variance is taken of r - r_0, which is
        // exactly 0 when every unit is equally active, so uniform activations give S = 0 exactly.
        let r0 = meanActivations[0] / scale
        let mutable shiftedSum = 0.0
        let mutable shiftedSumSq = 0.0
        let mutable sumSq = 0.0

        for i in 0 .. n - 1 do
            let r = meanActivations[i] / scale
            let d = r - r0
            shiftedSum <- shiftedSum + d
            shiftedSumSq <- shiftedSumSq + d * d
            sumSq <- sumSq + r * r

        if sumSq = 0.0 then
            0.0
        else
            let nf = float n
            let variance = shiftedSumSq / nf - (shiftedSum / nf) * (shiftedSum / nf)
            // Clamp rounding error so that S stays in [0, 1].
            Math.Clamp(variance / (sumSq / nf) / (1.0 - 1.0 / nf), 0.0, 1.0)

    /// Mean activation of each unit (column) over the samples (rows).
    let unitMeans (activations: float[,]) : float[] =
        let samples = Array2D.length1 activations

        if samples = 0 then
            invalidArg (nameof activations) "sparsity needs at least one sample (row) of activations"

        Array.init (Array2D.length2 activations) (fun j ->
            let mutable s = 0.0

            for i in 0 .. samples - 1 do
                s <- s + activations[i, j]

            s / float samples)

    /// Treves-Rolls sparsity of a layer from its activations, samples in rows and units in columns.
    let ofActivations (activations: float[,]) : float = trevesRolls (unitMeans activations)
