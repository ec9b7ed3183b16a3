namespace Forgetting.Mechanisms

open Forgetting.Tensors
open Forgetting.Nn

/// Synaptic metaplasticity in binarized neural networks (Laborieux et al., Nature Communications 2021):
/// a binarized net computes with W_b = sign(W_h) while its optimizer moves the real hidden weights W_h;
/// metaplastic Adam makes a hidden weight the harder to push back toward zero (where its sign, the
/// binary weight, would flip) the further it has moved from zero. No term of the loss changes between
/// tasks: consolidation is in the optimizer.
[<RequireQualifiedAccess>]
module Metaplasticity =

    /// The metaplastic factor f_meta(m, W_h) = 1 − tanh²(m · |W_h|) (Laborieux et al. 2021, eq. 1):
    /// 1 at W_h = 0 or m = 0, falling toward 0 as |W_h| grows.
    let factor (m: float) (w: Tensor) =
        1.0 - Tensor.square (Tensor.tanh (Tensor.abs w * m))

    /// Metaplastic Adam's rule for a weight matrix (Laborieux et al. 2021, Methods, Algorithm 1):
    /// Adam's moments of g + wd·W_h (L2 decay before the moments); the bias-corrected step is scaled
    /// by f_meta only where it pushes W_h toward zero, i.e. where sign(W_h) · m_t > 0 (the step is
    /// −lr m̂/(√v̂ + ε)). With m = 0 the factor is exactly 1 and the rule is Rule.adam bit for bit.
    /// Hidden weights are not clipped: their growing magnitude is what consolidates them.
    let adamRule (lr: float) (beta1: float) (beta2: float) (eps: float) (weightDecay: float) (m: float) : Rule =
        Rule.checkAdam "metaplastic adam" lr beta1 beta2 eps weightDecay

        if not (m >= 0.0) || System.Double.IsInfinity m then
            invalidArg (nameof m) $"the metaplasticity m must be a finite number ≥ 0, got {m}"

        { Name = "metaplastic adam"
          Settings =
            [ "lr", lr
              "beta1", beta1
              "beta2", beta2
              "eps", eps
              "weight_decay", weightDecay
              "m", m ]
          Buffers = [ "m"; "v" ]
          Apply =
            fun t w g buffers ->
                let g =
                    if weightDecay = 0.0 then
                        g
                    else
                        Tensor.addScaled g weightDecay w

                let mt, v, c1, c2 = Rule.adamMoments beta1 beta2 t g buffers
                let step = mt / c1 / (Tensor.sqrt (v / c2) + eps) * lr
                let towardZero = Tensor.greater (Tensor.sign w * mt) (Tensor.scalar w.DType 0.0)
                let step = Tensor.where towardZero (step * factor m w) step
                w - step, buffers |> Map.add "m" mt |> Map.add "v" v }

    /// Metaplastic Adam over a net: the metaplastic rule with `meta path` as m for every weight matrix
    /// (rank ≥ 2), plain Adam without weight decay for vectors (batch norm's γ and β), as the
    /// reference optimizer does. m = 0 everywhere is Adam with L2 decay on the weight matrices only.
    let adam (lr: float) (beta1: float) (beta2: float) (eps: float) (weightDecay: float) (meta: string -> float) =
        let plain = Rule.adam lr beta1 beta2 eps 0.0

        Optim.ofRules "metaplastic adam" (fun path w ->
            if w.Rank >= 2 then
                adamRule lr beta1 beta2 eps weightDecay (meta path)
            else
                plain)

    /// The binarized activation as a layer: sign(x), the gradient straight through where |x| ≤ 1
    /// (Functional.signActivation), recorded as the layer's activation.
    let signActivation =
        { Layer.Name = "sign"
          Init = fun _ _ -> Params.empty
          Forward =
            fun _ _ x ->
                let h = Functional.signActivation x

                h,
                [ { Path = ""
                    Kind = Activation
                    Value = h } ] }

    /// A binarized dense layer x · sign(W_h), with no bias (batch norm's β takes its place): the hidden
    /// weight "weight" [in, out], initialised U(−scale, scale) (the reference's 0.05, for the sign to
    /// start random). The input is used as it comes: the first layer sees the pixels, the later ones
    /// the ±1 of a sign activation. The per-sample gradient of W_h is that of W_b (straight through),
    /// a_bᵀ g_b, so the Fisher and MAS apply unchanged.
    let dense (scale: float) (inputs: int) (outputs: int) =
        if inputs < 1 || outputs < 1 then
            invalidArg (nameof outputs) $"a binarized layer needs a width ≥ 1, got {inputs}→{outputs}"

        if not (scale > 0.0) then
            invalidArg (nameof scale) $"the initial hidden weights' range must be > 0, got {scale}"

        { Layer.Name = $"binarized {inputs}→{outputs}"
          Init =
            fun rng dtype -> Params.ofTensors [ "weight", Tensor.uniform rng dtype [| inputs; outputs |] -scale scale ]
          Forward =
            fun _ p x ->
                let x = if x.Rank > 2 then Tensor.flatten x else x
                let z = Tensor.matmul x (Functional.signStraightThrough (Params.tensor "weight" p))

                z,
                [ { Path = ""
                    Kind = Gradient("weight", Outer x)
                    Value = z } ] }
