namespace Forgetting.Tensors

/// Neural-network ops built on the engine: losses, convolution, pooling, dropout, normalisation.
/// Those with a fused derivative rule (cross-entropy, im2col, max-pool) have it beside the forward
/// rule; the rest are compositions of differentiable tensor ops.
[<RequireQualifiedAccess>]
module Functional =

    /// Mean cross-entropy of logits [B, C] against integer labels, fused and numerically stable:
    /// log-softmax with the maximum subtracted; the gradient is (softmax − one-hot) / B.
    let crossEntropy (logits: Tensor) (labels: int[]) =
        if logits.Rank <> 2 then
            Shape.fail "crossEntropy" $"logits must be [batch, classes], got {Shape.show logits.Raw.Shape}"

        let b, c = logits.Raw.Shape[0], logits.Raw.Shape[1]

        if labels.Length <> b then
            Shape.fail "crossEntropy" $"{labels.Length} labels for a batch of {b} logits"

        if b = 0 then
            Shape.fail "crossEntropy" "the batch is empty"

        let oneHot = Array.zeroCreate (b * c)

        labels
        |> Array.iteri (fun i l ->
            if l < 0 || l >= c then
                Shape.fail "crossEntropy" $"label {l} at row {i} is outside the {c} classes"

            oneHot[i * c + l] <- 1.0)

        let raw = logits.Raw
        let ls = raw.LogSoftmax 1
        let target = raw.Backend.OfFloat64([| b; c |], oneHot).Cast logits.DType
        let loss = -(ls.Binary(Mul, target).SumAll()) / float b

        Tensor.Op(
            raw.Backend.Full([||], logits.DType, loss),
            [| logits |],
            fun g _ -> [| ls.Unary(Exp).Binary(Sub, target).Binary(Mul, g).BinaryScalar(Div, float b, false) |]
        )

    /// Mean squared error.
    let mse (prediction: Tensor) (target: Tensor) =
        Tensor.square (prediction - target) |> Tensor.mean

    /// Image patches as columns: [N, C, H, W] → [N, C·kh·kw, Ho·Wo]; the adjoint sums them back.
    let im2col (kh: int) (kw: int) (stride: int) (padding: int) (x: Tensor) =
        if x.Rank <> 4 then
            Shape.fail "im2col" $"needs an image batch [N, C, H, W], got {Shape.show x.Raw.Shape}"

        let s = x.Raw.Shape

        if kh < 1 || kw < 1 || stride < 1 || padding < 0 then
            Shape.fail "im2col" $"bad kernel {kh}×{kw}, stride {stride} or padding {padding}"

        if s[2] + 2 * padding < kh || s[3] + 2 * padding < kw then
            Shape.fail "im2col" $"kernel {kh}×{kw} is larger than the padded image of shape {Shape.show s}"

        Tensor.Op(x.Raw.Im2Col(kh, kw, stride, padding), [| x |], fun g _ -> [| g.Col2Im(s, kh, kw, stride, padding) |])

    /// 2-D convolution (cross-correlation, as in PyTorch): x [N, C, H, W], weight [O, C, kh, kw],
    /// bias [O]; im2col, then one matrix product per batch.
    let conv2d (stride: int) (padding: int) (x: Tensor) (weight: Tensor) (bias: Tensor option) =
        if weight.Rank <> 4 || x.Rank <> 4 || weight.Raw.Shape[1] <> x.Raw.Shape[1] then
            Shape.fail
                "conv2d"
                $"needs x [N, C, H, W] and weight [O, C, kh, kw] with the same C, got {Shape.show x.Raw.Shape} and {Shape.show weight.Raw.Shape}"

        let n, o = x.Raw.Shape[0], weight.Raw.Shape[0]
        let kh, kw = weight.Raw.Shape[2], weight.Raw.Shape[3]
        let cols = im2col kh kw stride padding x
        let ho = (x.Raw.Shape[2] + 2 * padding - kh) / stride + 1
        let wo = (x.Raw.Shape[3] + 2 * padding - kw) / stride + 1
        let w = weight |> Tensor.reshape [| o; -1 |]
        // [N, L, CK] × [CK, O] → [N, L, O] → [N, O, Ho, Wo]
        let out =
            Tensor.matmul (Tensor.transpose cols) (Tensor.transpose w)
            |> Tensor.transpose
            |> Tensor.reshape [| n; o; ho; wo |]

        match bias with
        | Some b -> out + Tensor.reshape [| 1; o; 1; 1 |] b
        | None -> out

    /// Max pooling over k×k windows with the given stride, no padding; the gradient goes to each
    /// window's first maximum.
    let maxPool2d (k: int) (stride: int) (x: Tensor) =
        if x.Rank <> 4 then
            Shape.fail "maxPool2d" $"needs an image batch [N, C, H, W], got {Shape.show x.Raw.Shape}"

        if k < 1 || stride < 1 || x.Raw.Shape[2] < k || x.Raw.Shape[3] < k then
            Shape.fail "maxPool2d" $"window {k} with stride {stride} does not fit shape {Shape.show x.Raw.Shape}"

        let pooled, argMax = x.Raw.MaxPool2d(k, stride)
        let numel = x.Numel

        Tensor.Op(
            pooled,
            [| x |],
            fun g _ -> [| g.Reshape([| argMax.Length; 1 |]).ScatterAdd(argMax, numel).Reshape x.Raw.Shape |]
        )

    /// Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p), from an
    /// explicit key. p = 0 is the identity.
    let dropout (rng: Rng) (p: float) (x: Tensor) =
        if p < 0.0 || p >= 1.0 then
            Shape.fail "dropout" $"the drop probability must be in [0, 1), got {p}"

        if p = 0.0 then
            x
        else
            let keep =
                Rng.uniform x.Numel rng
                |> Array.map (fun u -> if u >= p then 1.0 / (1.0 - p) else 0.0)

            x * Tensor.create x.DType x.Shape keep

    /// What batch normalisation computed: the output and the batch statistics it used (to blend into
    /// running statistics, if the model keeps them).
    type BatchNormResult =
        { Output: Tensor
          Mean: Tensor
          Variance: Tensor }

    /// The axes batch normalisation averages over: all but the channel axis 1.
    let private statAxes (op: string) (x: Tensor) =
        match x.Rank with
        | 2 -> [ 0 ]
        | 4 -> [ 0; 2; 3 ]
        | _ -> Shape.fail op $"needs [B, F] or [B, C, H, W], got {Shape.show x.Raw.Shape}"

    let private channelShape (x: Tensor) =
        Array.init x.Rank (fun i -> if i = 1 then x.Raw.Shape[1] else 1)

    /// Batch normalisation with batch statistics (biased variance), per feature or channel:
    /// γ (x − μ) / √(σ² + ε) + β.
    let batchNorm (eps: float) (gamma: Tensor) (beta: Tensor) (x: Tensor) =
        let axes = statAxes "batchNorm" x

        let meanOver t =
            axes |> List.fold (fun acc a -> Tensor.meanAxis a true acc) t

        let mu = meanOver x
        let centred = x - mu
        let var = meanOver (Tensor.square centred)
        let shape = channelShape x

        { Output =
            centred / Tensor.sqrt (var + eps) * Tensor.reshape shape gamma
            + Tensor.reshape shape beta
          Mean = Tensor.reshape [| -1 |] mu
          Variance = Tensor.reshape [| -1 |] var }

    /// Batch normalisation with given (running) statistics, as at evaluation time.
    let batchNormWith (eps: float) (mean: Tensor) (variance: Tensor) (gamma: Tensor) (beta: Tensor) (x: Tensor) =
        statAxes "batchNormWith" x |> ignore
        let shape = channelShape x
        let r t = Tensor.reshape shape t
        (x - r mean) / Tensor.sqrt (r variance + eps) * r gamma + r beta

    /// GELU, exact (PyTorch's nn.GELU default, as in timm's vision transformer): x Φ(x) with Φ the
    /// standard normal distribution function, 0.5 x (1 + erf(x / √2)) (Hendrycks & Gimpel 2016).
    let gelu (x: Tensor) =
        x * (Tensor.erf (x / sqrt 2.0) + 1.0) * 0.5

    /// SELU (Klambauer et al. 2017, eq. 2): λ x for x > 0, λ α (eˣ − 1) otherwise, with their λ and α.
    let selu (x: Tensor) =
        let lambda, alpha = 1.0507009873554805, 1.6732632423543772
        let positive = Tensor.greater x (Tensor.scalar x.DType 0.0)

        Tensor.where positive x ((Tensor.exp (Tensor.minScalar 0.0 x) - 1.0) * alpha)
        * lambda

    /// Layer normalisation over the last axis: γ (x − μ) / √(σ² + ε) + β.
    let layerNorm (eps: float) (gamma: Tensor) (beta: Tensor) (x: Tensor) =
        let mu = Tensor.meanAxis -1 true x
        let centred = x - mu
        let var = Tensor.meanAxis -1 true (Tensor.square centred)
        centred / Tensor.sqrt (var + eps) * gamma + beta

    /// sign(x) (0 at 0), passing the gradient straight through unchanged: a binarized weight
    /// W_b = sign(W_h) whose hidden weight W_h takes the gradient of W_b (Courbariaux et al. 2016;
    /// Laborieux et al. 2021, Methods: no mask on the weights).
    let signStraightThrough (x: Tensor) =
        Tensor.Op(x.Raw.Unary Sign, [| x |], (fun g _ -> [| g |]))

    /// sign(x) (0 at 0) as an activation, its gradient passed straight through where |x| ≤ 1 and zeroed
    /// where |x| > 1 (the derivative of hardtanh; Courbariaux et al. 2016, eq. 4).
    let signActivation (x: Tensor) =
        let inside =
            x.Raw.Unary(Abs).BinaryScalar(Greater, 1.0, false).BinaryScalar(Sub, 1.0, true)

        Tensor.Op(x.Raw.Unary Sign, [| x |], (fun g _ -> [| g.Binary(Mul, inside) |]))
