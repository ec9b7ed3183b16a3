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

    // The rule's fused form: one pass over W_h, g, m_t and v_t of a CPU tensor instead of a chain of
    // about twenty elementwise ops (each a new tensor of the matrix's size), per element in float64 and
    // rounded once. The composed form below is the reference it is tested against, and what runs on any
    // other backend.
    let inline private fusedOn
        (w: ^T[])
        (g: ^T[])
        (m0: ^T[])
        (v0: ^T[])
        ([<InlineIfLambda>] toFloat: ^T -> float)
        ([<InlineIfLambda>] ofFloat: float -> ^T)
        (lr: float, beta1: float, beta2: float, eps: float, weightDecay: float, meta: float, c1: float, c2: float)
        =
        let n = w.Length
        let w': ^T[] = Array.zeroCreate n
        let m': ^T[] = Array.zeroCreate n
        let v': ^T[] = Array.zeroCreate n
        let size = 8192

        Parallelism.forTiles ((n + size - 1) / size) (fun tile ->
            for i in tile * size .. min n ((tile + 1) * size) - 1 do
                let x = toFloat w[i]
                let gi = toFloat g[i] + weightDecay * x
                let mi = toFloat m0[i] * beta1 + gi * (1.0 - beta1)
                let vi = toFloat v0[i] * beta2 + gi * gi * (1.0 - beta2)
                let step = mi / c1 / (sqrt (vi / c2) + eps) * lr

                // Toward zero where sign(W_h) · m_t > 0: only there is the step attenuated.
                let step =
                    if (x > 0.0 && mi > 0.0) || (x < 0.0 && mi < 0.0) then
                        // 1 − tanh²(z) = sech²(z) = 4e/(1 + e)², e = exp(−2z), z = m|W_h| ≥ 0: one exp.
                        let e = exp (-2.0 * meta * abs x)
                        step * (4.0 * e / ((1.0 + e) * (1.0 + e)))
                    else
                        step

                w'[i] <- ofFloat (x - step)
                m'[i] <- ofFloat mi
                v'[i] <- ofFloat vi)

        w', m', v'

    /// The fused step of one weight matrix where every tensor is a CPU array of one dtype, else None.
    let internal fused lr beta1 beta2 eps weightDecay meta (t: int) (w: Tensor) (g: Tensor) (m: Tensor) (v: Tensor) =
        let hyper =
            lr, beta1, beta2, eps, weightDecay, meta, 1.0 - beta1 ** float t, 1.0 - beta2 ** float t

        let storage (x: Tensor) =
            match x.Raw with
            | :? Cpu.CpuTensor as c -> Some c.Storage
            | _ -> None

        let b = w.Raw.Backend
        let shape = w.Raw.Shape
        let wrap (r: RawTensor) = Tensor.OfRaw r

        match storage w, storage g, storage m, storage v with
        | Some(Cpu.F32 w), Some(Cpu.F32 g), Some(Cpu.F32 m), Some(Cpu.F32 v) ->
            let w', m', v' = fusedOn w g m v float float32 hyper
            Some(wrap (b.OfFloat32(shape, w')), wrap (b.OfFloat32(shape, m')), wrap (b.OfFloat32(shape, v')))
        | Some(Cpu.F64 w), Some(Cpu.F64 g), Some(Cpu.F64 m), Some(Cpu.F64 v) ->
            let w', m', v' = fusedOn w g m v id id hyper
            Some(wrap (b.OfFloat64(shape, w')), wrap (b.OfFloat64(shape, m')), wrap (b.OfFloat64(shape, v')))
        | _ -> None

    /// Metaplastic Adam's composed step of one weight matrix: the new W_h, m_t and v_t.
    let internal composed lr beta1 beta2 eps weightDecay meta t (w: Tensor) (g: Tensor) (buffers: Map<string, Tensor>) =
        let g =
            if weightDecay = 0.0 then
                g
            else
                Tensor.addScaled g weightDecay w

        let mt, v, c1, c2 = Rule.adamMoments beta1 beta2 t g buffers
        let step = mt / c1 / (Tensor.sqrt (v / c2) + eps) * lr
        let towardZero = Tensor.greater (Tensor.sign w * mt) (Tensor.scalar w.DType 0.0)
        let step = Tensor.where towardZero (step * factor meta w) step
        w - step, mt, v

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
                // m = 0 is Adam's own composition, bit for bit; m > 0 takes the fused pass where it can.
                let w', mt, v =
                    if m = 0.0 then
                        composed lr beta1 beta2 eps weightDecay m t w g buffers
                    else
                        match fused lr beta1 beta2 eps weightDecay m t w g buffers["m"] buffers["v"] with
                        | Some r -> r
                        | None -> composed lr beta1 beta2 eps weightDecay m t w g buffers

                w', buffers |> Map.add "m" mt |> Map.add "v" v }

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
