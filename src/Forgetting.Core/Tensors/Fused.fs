namespace Forgetting.Tensors

/// Differentiable fused ops: composites that are hot enough to deserve single-pass kernels (the
/// forgetting layer's gate and lateral-inhibition loss, source 000 eq. 4 and 8). Each equals the
/// composition of plain tensor ops it replaces; the tests hold them to that.
[<RequireQualifiedAccess>]
module Fused =

    let private check (op: string) (h: Tensor) (other: Tensor) (otherShape: int[]) =
        if h.Rank <> 2 || other.Shape <> otherShape then
            Shape.fail
                op
                $"needs h [B, n] and a matching tensor {Shape.show otherShape}, got {Shape.show h.Shape} and {Shape.show other.Shape}"

        Tensor.CheckDType(op, h, other)

    /// σ = sigmoid(ρ · h ⊙ wf) for h [B, n] and wf [n].
    let gate (rho: float) (wf: Tensor) (h: Tensor) =
        check "gate" h wf [| (if h.Rank = 2 then h.Shape[1] else -1) |]
        let sigma = h.Raw.ForgetGate(wf.Raw, rho)

        Tensor.Op(
            sigma,
            [| h; wf |],
            fun g _ ->
                let gh, gw = h.Raw.ForgetGateBackward(wf.Raw, sigma, g, rho)
                [| gh; gw |]
        )

    /// The batch mean of Σ_{i≠j} h_i h_j (1 − σ_i) σ_j for h and σ of shape [B, n].
    let lateralInhibition (h: Tensor) (sigma: Tensor) =
        check "lateralInhibition" h sigma h.Shape
        let value = h.Raw.LateralInhibition sigma.Raw

        Tensor.Op(
            h.Raw.Backend.Full([||], h.DType, value),
            [| h; sigma |],
            fun g _ ->
                let scale = g.ToFloat64()[0] / float h.Shape[0]
                let gh, gs = h.Raw.LateralInhibitionBackward(sigma.Raw, scale)
                [| gh; gs |]
        )

    /// The forgetting layer's output with its shortcut (eq. 5): h ⊙ (1 + σ), h and σ of one shape.
    let shortcut (h: Tensor) (sigma: Tensor) =
        check "shortcut" h sigma h.Shape

        Tensor.Op(
            h.Raw.Shortcut sigma.Raw,
            [| h; sigma |],
            fun g needs ->
                [| (if needs[0] then g.Shortcut sigma.Raw else null)
                   (if needs[1] then g.Binary(Mul, h.Raw) else null) |]
        )
