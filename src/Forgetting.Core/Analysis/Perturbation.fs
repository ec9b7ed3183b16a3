namespace Forgetting.Analysis

open Forgetting.Tensors
open Forgetting.Nn

/// Robustness (source 000, Fig. 4b): Gaussian noise on the incoming weights and bias of a fraction of
/// one hidden layer's units. The noise's standard deviation is `scale` times the standard deviation of
/// that layer's weights, so one scale means the same on layers of different sizes.
[<RequireQualifiedAccess>]
module Perturbation =

    /// Perturb ⌊fraction·n⌋ units of hidden layer `layer` (chosen at random from the key).
    let perturb (rng: Rng) (layer: int) (fraction: float) (scale: float) (p: Params) =
        if fraction < 0.0 || fraction > 1.0 then
            invalidArg (nameof fraction) $"the fraction perturbed must be in [0, 1], got {fraction}"

        let w = Params.tensor (Surgery.weightPath layer) p
        let b = Params.tensor (Surgery.biasPath layer) p
        let units = w.Shape[1]
        let keys = Rng.splitN 3 rng
        let chooseKey, wKey, bKey = keys[0], keys[1], keys[2]

        let chosen =
            Rng.permutation units chooseKey
            |> Array.truncate (int (floor (fraction * float units)))
            |> Set.ofArray

        let v = w.ToFloat64Array()
        let mean = Array.average v
        let sd = sqrt (Array.averageBy (fun x -> (x - mean) ** 2.0) v) * scale
        let wNoise = Rng.normal v.Length wKey
        let bNoise = Rng.normal units bKey

        let w' =
            v
            |> Array.mapi (fun k x -> if chosen.Contains(k % units) then x + sd * wNoise[k] else x)

        let b' =
            b.ToFloat64Array()
            |> Array.mapi (fun j x -> if chosen.Contains j then x + sd * bNoise[j] else x)

        p
        |> Surgery.replace (Surgery.weightPath layer) (Tensor.create w.DType w.Shape w')
        |> Surgery.replace (Surgery.biasPath layer) (Tensor.create b.DType b.Shape b')
