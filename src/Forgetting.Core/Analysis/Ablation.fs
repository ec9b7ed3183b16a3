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

/// What ablating a unit removes (mechanisms.md §1: the shortcut defeats gate-based importance).
type AblationMode =
    /// The whole unit: its outgoing weights are zeroed, so neither path of the shortcut (eq. 5,
    /// h' = h + h ⊙ σ) reaches the next layer. The default.
    | WholeUnit
    /// Only the gated branch h ⊙ σ: the gate is shut (W_f,i = −1e30, so σ = 0 wherever h > 0, and
    /// h ⊙ σ = 0 where h = 0), leaving h' = h with the shortcut and h' = 0 without it.
    | GatedBranch

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

    /// W_f of a shut gate: ρ h W_f is below −700 for any h > 1e-20 and ρ > 1e-8, where sigmoid is 0
    /// in float32 and float64, and 0 · W_f = 0 keeps a silent unit's σ finite (−inf would give NaN).
    let shut = -1e30

    /// The parameters with the given units' gated branch removed (AblationMode.GatedBranch): their
    /// gates shut in forget{k}/wf. A unit of a layer without a forgetting layer has no such branch.
    let removeGatedBranch (units: HiddenUnit list) (p: Params) =
        units
        |> List.groupBy (fun u -> u.Layer)
        |> List.fold
            (fun q (layer, us) ->
                let path = $"forget{layer}/wf"

                if not (Params.flatten q |> List.exists (fun (name, _) -> name = path)) then
                    invalidArg
                        (nameof units)
                        $"hidden layer {layer} has no forgetting layer: its units have no gated branch to remove"

                let wf = Params.tensor path q
                let v = wf.ToFloat64Array()

                for u in us do
                    if u.Index < 0 || u.Index >= v.Length then
                        invalidArg
                            (nameof units)
                            $"hidden layer {layer} has {v.Length} units; there is no unit {u.Index}"

                    v[u.Index] <- shut

                Surgery.replace path (Tensor.create wf.DType wf.Shape v) q)
            p

    /// The parameters with the given units removed as `mode` says.
    let removeWith (mode: AblationMode) (units: HiddenUnit list) (p: Params) =
        match mode with
        | WholeUnit -> remove units p
        | GatedBranch -> removeGatedBranch units p

    /// The units of the given hidden layers ordered for removal by their importance.
    let order (o: AblationOrder) (importance: (int * float[]) list) =
        let units =
            [| for layer, omega in importance do
                   for i in 0 .. omega.Length - 1 -> { Layer = layer; Index = i }, omega[i] |]

        match o with
        | Ascending -> units |> Array.sortBy snd |> Array.map fst
        | Descending -> units |> Array.sortByDescending snd |> Array.map fst
        | Shuffled rng -> Rng.permutation units.Length rng |> Array.map (fun i -> fst units[i])

    /// Accuracy (from `evaluate`) after removing (as `mode` says) the first ⌊f·N⌋ units of the order,
    /// for each fraction f.
    let curveWith
        (mode: AblationMode)
        (evaluate: Params -> float)
        (p: Params)
        (ordered: HiddenUnit[])
        (fractions: float list)
        =
        fractions
        |> List.map (fun f ->
            if f < 0.0 || f > 1.0 then
                invalidArg (nameof fractions) $"fractions must be in [0, 1], got {f}"

            let k = int (floor (f * float ordered.Length))
            evaluate (removeWith mode (List.ofArray ordered[.. k - 1]) p))

    /// Accuracy after removing whole units (curveWith WholeUnit).
    let curve (evaluate: Params -> float) (p: Params) (ordered: HiddenUnit[]) (fractions: float list) =
        curveWith WholeUnit evaluate p ordered fractions
