namespace Forgetting.Nn

open Forgetting.Tensors

/// The classical regularisers the forgetting layer is compared with.
[<RequireQualifiedAccess>]
module Regularizers =

    /// The weight matrices of a model (tensors named "weight" of rank ≥ 2), not biases or gates.
    let weights (p: Params) =
        Params.flatten p
        |> List.filter (fun (path, t) -> (path = "weight" || path.EndsWith "/weight") && t.Rank >= 2)
        |> List.map snd

    let private sumOver (f: Tensor -> Tensor) (ts: Tensor list) =
        match ts with
        | [] -> invalidArg "params" "the model has no weight matrices to regularise"
        | _ -> ts |> List.map f |> List.reduce (+)

    /// Σ |w| over the weight matrices.
    let l1 (p: Params) =
        weights p |> sumOver (Tensor.abs >> Tensor.sum)

    /// ½ Σ w² over the weight matrices (its gradient is w: SGD weight decay).
    let l2 (p: Params) =
        weights p |> sumOver (Tensor.square >> Tensor.sum) |> fun s -> s * 0.5

    /// DeCov (Cogswell et al. 2015) of one layer's activations h [B, n]: ½(‖C‖²_F − ‖diag C‖²), C the
    /// batch covariance (divided by B).
    let decov (h: Tensor) =
        let b = float h.Shape[0]
        let centred = h - Tensor.meanAxis 0 true h
        let c = Tensor.matmul (Tensor.transpose centred) centred / b
        let diag = Tensor.sumAxis 0 false (Tensor.square centred) / b
        (Tensor.sum (Tensor.square c) - Tensor.sum (Tensor.square diag)) * 0.5

    /// DeCov summed over the hidden activations recorded in a trace.
    let decovOf (trace: TraceEntry list) =
        Trace.ofKind Activation trace
        |> List.map (fun e -> e.Value)
        |> List.filter (fun h -> h.Rank = 2)
        |> sumOver decov

    /// L1 as an objective term of weight `weight`.
    let l1Term (weight: float) = Term.ofParams "l1" weight l1

    /// L2 as an objective term of weight `weight`.
    let l2Term (weight: float) = Term.ofParams "l2" weight l2

    /// DeCov over the hidden activations as an objective term of weight `weight`.
    let decovTerm (weight: float) = Term.ofTrace "decov" weight decovOf

    /// The regularisers as term kinds of a run description: l1 (weight 1e-5), l2 (5e-4), decov (1e-4).
    let kinds =
        [ TermKind.weighted "l1" "Σ|w| over the weight matrices" 1e-5 l1Term
          TermKind.weighted "l2" "½Σw² over the weight matrices (weight decay)" 5e-4 l2Term
          TermKind.weighted "decov" "DeCov (Cogswell et al. 2016) over the hidden activations" 1e-4 decovTerm ]
