namespace Forgetting.Analysis

open Forgetting.Tensors
open Forgetting.Nn

/// A hidden unit: its hidden layer (from 1) and its index in that layer.
type HiddenUnit = { Layer: int; Index: int }

/// In which order units are removed.
type AblationOrder =
    /// Least important first: accuracy should hold (source 000, Fig. 2a).
    | Ascending
    /// Most important first: accuracy should collapse.
    | Descending
    /// A random order drawn from the key.
    | Shuffled of Rng

/// Removing hidden units of a trained MLP (source 000, Fig. 2a-c). A unit of hidden layer k is removed
/// by zeroing its outgoing weights (row i of fc{k+1}), so nothing it computes reaches the rest of the net.
[<RequireQualifiedAccess>]
module Ablation =

    /// The parameters with the given units removed.
    let remove (units: HiddenUnit list) (p: Params) =
        units
        |> List.groupBy (fun u -> u.Layer)
        |> List.fold
            (fun q (layer, us) ->
                let w = Params.tensor (Surgery.weightPath (layer + 1)) q
                let rows, cols = w.Shape[0], w.Shape[1]

                us
                |> List.iter (fun u ->
                    if u.Index < 0 || u.Index >= rows then
                        invalidArg (nameof units) $"hidden layer {layer} has {rows} units; there is no unit {u.Index}")

                let removed = set [ for u in us -> u.Index ]

                let m =
                    Array.init (rows * cols) (fun k -> if removed.Contains(k / cols) then 0.0 else 1.0)

                Surgery.mask (layer + 1) m q)
            p

    /// The units of the given hidden layers ordered for removal by their importance.
    let order (o: AblationOrder) (importance: (int * float[]) list) =
        let units =
            [| for layer, omega in importance do
                   for i in 0 .. omega.Length - 1 -> { Layer = layer; Index = i }, omega[i] |]

        match o with
        | Ascending -> units |> Array.sortBy snd |> Array.map fst
        | Descending -> units |> Array.sortByDescending snd |> Array.map fst
        | Shuffled rng -> Rng.permutation units.Length rng |> Array.map (fun i -> fst units[i])

    /// Accuracy (from `evaluate`) after removing the first ⌊f·N⌋ units of the order, for each fraction f.
    let curve (evaluate: Params -> float) (p: Params) (ordered: HiddenUnit[]) (fractions: float list) =
        fractions
        |> List.map (fun f ->
            if f < 0.0 || f > 1.0 then
                invalidArg (nameof fractions) $"fractions must be in [0, 1], got {f}"

            let k = int (floor (f * float ordered.Length))
            evaluate (remove (List.ofArray ordered[.. k - 1]) p))
