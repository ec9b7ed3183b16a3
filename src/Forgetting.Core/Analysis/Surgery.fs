namespace Forgetting.Analysis

open Forgetting.Tensors
open Forgetting.Nn

/// Edits of a trained MLP's parameters (layers named fc1 … fcK, as Experiments.Variant.mlp builds them):
/// the common ground of ablation, pruning and perturbation. Weights are [inputs, outputs].
[<RequireQualifiedAccess>]
module Surgery =

    let weightPath (layer: int) = $"fc{layer}/weight"
    let biasPath (layer: int) = $"fc{layer}/bias"

    /// The dense layers of a model's parameters, in order (fc1, fc2, …).
    let denseLayers (p: Params) =
        Seq.initInfinite (fun i -> i + 1)
        |> Seq.takeWhile (fun k ->
            match p with
            | Branch children -> children.ContainsKey $"fc{k}"
            | Leaf _ -> false)
        |> List.ofSeq

    /// Replace one tensor of the tree, by path.
    let replace (path: string) (t: Tensor) (p: Params) =
        let paths = Params.flatten p |> List.map fst

        if not (List.contains path paths) then
            invalidArg (nameof path) $"no parameter '{path}'"

        Params.flatten p
        |> List.map (fun (q, old) -> if q = path then t else old)
        |> Array.ofList
        |> Params.withTensors p

    /// The weight matrix of a layer as float64 rows [inputs][outputs].
    let weights (layer: int) (p: Params) =
        let w = Params.tensor (weightPath layer) p
        let v = w.ToFloat64Array()
        let rows, cols = w.Shape[0], w.Shape[1]
        Array.init rows (fun i -> v[i * cols .. (i + 1) * cols - 1])

    /// Multiply a layer's weights elementwise by a mask [inputs, outputs] (0 removes a weight).
    let mask (layer: int) (m: float[]) (p: Params) =
        let w = Params.tensor (weightPath layer) p
        replace (weightPath layer) (w * Tensor.create w.DType w.Shape m) p
