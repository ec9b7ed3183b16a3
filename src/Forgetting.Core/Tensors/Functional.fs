namespace Forgetting.Tensors

open System
open System.Runtime.Intrinsics
open Forgetting.Tensors.Cpu

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

    // The fused GELU and layer norm below: one kernel each way on the CPU backend's own arrays, instead of
    // a chain of elementwise ops, broadcasts and tape nodes (issue #12's ViT workload); on another backend,
    // the plain compositions of tensor ops.

    /// A CPU tensor's own storage (only read), or None on another backend.
    let private storageOf (r: RawTensor) =
        match r with
        | :? Cpu.CpuTensor as c -> Some c.Storage
        | _ -> None

    /// The elements as float32 (or float64): the CPU tensor's own array where it has that dtype, else a copy.
    let private read32 (r: RawTensor) =
        match storageOf r with
        | Some(Cpu.F32 a) -> a
        | _ -> r.ToFloat32()

    let private read64 (r: RawTensor) =
        match storageOf r with
        | Some(Cpu.F64 a) -> a
        | _ -> r.ToFloat64()

    /// body lo hi for consecutive chunks [lo, hi) of 0 … n − 1, over the parallel workers.
    let private chunks (n: int) (size: int) (body: int -> int -> unit) =
        Parallelism.forTiles ((n + size - 1) / size) (fun t -> body (t * size) (min n ((t + 1) * size)))

    /// The GELU op y = x Φ(x) around its kernels, over chunks of 4096 elements: `forward cdf y lo hi`
    /// writes Φ and y there, `backward cdf g dx lo hi` writes dx = g (Φ + x φ(x)); every element of
    /// the results is written, so their arrays are not zeroed first.
    let inline private geluOp
        (x: Tensor)
        (n: int)
        (read: RawTensor -> ^T[])
        (make: int[] * ^T[] -> RawTensor)
        ([<InlineIfLambda>] forward: ^T[] -> ^T[] -> int -> int -> unit)
        ([<InlineIfLambda>] backward: ^T[] -> ^T[] -> ^T[] -> int -> int -> unit)
        =
        let cdf: ^T[] = Buffers.Uninit n
        let y: ^T[] = Buffers.Uninit n
        chunks n 4096 (forward cdf y)

        Tensor.Op(
            make (x.Raw.Shape, y),
            [| x |],
            fun g _ ->
                let gv = read g
                let dx: ^T[] = Buffers.Uninit n
                chunks n 4096 (backward cdf gv dx)
                [| make (x.Raw.Shape, dx) |]
        )

    /// GELU on float64 elements v: y = x Φ(x), dy/dx = Φ(x) + x φ(x), Φ(x) = (1 + erf(x/√2))/2,
    /// φ(x) = exp(−x²/2)/√(2π), with the engine's erf (to about 1e-15): the reference that gradient
    /// checks and the float32 kernel are measured against.
    let private gelu64 (x: Tensor) (v: float[]) =
        geluOp
            x
            v.Length
            read64
            x.Raw.Backend.OfFloat64
            (fun cdf y lo hi ->
                for i in lo .. hi - 1 do
                    let c = 0.5 * (1.0 + Cpu.Elementwise.erf (v[i] * 0.7071067811865476))
                    cdf[i] <- c
                    y[i] <- v[i] * c)
            (fun cdf gv dx lo hi ->
                for i in lo .. hi - 1 do
                    let xv = v[i]
                    dx[i] <- gv[i] * (cdf[i] + xv * 0.3989422804014327 * exp (-0.5 * xv * xv)))

    /// Φ(x) = erfc(−x/√2)/2 on eight float64 lanes, from the Chebyshev fit of erfc of Numerical Recipes
    /// (Press et al., 2nd ed., §6.2, `erfcc`: fractional error below 1.2e-7 everywhere): Φ = 1 − erfc(z)/2
    /// for x ≥ 0 and erfc(z)/2 below, z = |x|/√2, so one branch-free formula serves every lane and Φ's
    /// relative error stays below 1.2e-7 on both sides (Φ ≥ 1/2 where erfc's error is subtracted).
    let inline private phiLanes (x: Vector512<float>) =
        let inline c (v: float) = Vector512.Create v
        let one = Vector512<float>.One
        let z = Vector512.Abs x * c 0.7071067811865476
        let t = one / (one + z * c 0.5)

        let poly =
            c -1.26551223
            + t
              * (c 1.00002368
                 + t
                   * (c 0.37409196
                      + t
                        * (c 0.09678418
                           + t
                             * (c -0.18628806
                                + t
                                  * (c 0.27886807
                                     + t
                                       * (c -1.13520398 + t * (c 1.48851587 + t * (c -0.82215223 + t * c 0.17087277))))))))

        let half = t * Vector512.Exp(poly - z * z) * c 0.5
        Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(x, Vector512<float>.Zero), one - half, half)

    /// x φ(x) = x exp(−x²/2)/√(2π) on eight float64 lanes.
    let inline private densityTimes (x: Vector512<float>) =
        x
        * Vector512.Create 0.3989422804014327
        * Vector512.Exp(Vector512.Create -0.5 * x * x)

    /// Sixteen float32 elements from `at` (`count` of them, zero-padded when fewer) as two vectors of
    /// eight float64 lanes.
    let inline private load16 (a: float32[]) (at: int) (count: int) =
        let w =
            if count < 16 then
                let tmp = Array.zeroCreate<float32> 16
                Array.blit a at tmp 0 count
                Vector512.Create<float32>(ReadOnlySpan<float32> tmp)
            else
                Vector512.Create<float32>(ReadOnlySpan<float32>(a, at, 16))

        struct (Vector512.WidenLower w, Vector512.WidenUpper w)

    /// Two vectors of eight float64 lanes stored as `count` float32 elements from `at`.
    let inline private store16 (l: Vector512<float>) (h: Vector512<float>) (a: float32[]) (at: int) (count: int) =
        let w = Vector512.Narrow(l, h)

        if count < 16 then
            let tmp = Array.zeroCreate<float32> 16
            w.CopyTo(Span<float32> tmp)
            Array.blit tmp 0 a at count
        else
            w.CopyTo(Span<float32>(a, at, 16))

    /// The float32 GELU, sixteen elements at a time through float64 lanes (phiLanes): the kernel that a
    /// vision transformer runs on every MLP hidden unit, forward and back. Chunks start at multiples of
    /// 4096, so every element is computed by the same lanes wherever it stands and whatever the thread
    /// count; a last partial group goes through zero-padded copies. Vector512 serves processors without
    /// 512-bit registers too: the runtime then carries out each operation as two 256-bit ones.
    let private gelu32 (x: Tensor) (v: float32[]) =
        geluOp
            x
            v.Length
            read32
            x.Raw.Backend.OfFloat32
            (fun cdf y lo hi ->
                let mutable i = lo

                while i < hi do
                    let count = min 16 (hi - i)
                    let struct (xl, xh) = load16 v i count
                    let pl, ph = phiLanes xl, phiLanes xh
                    store16 pl ph cdf i count
                    store16 (xl * pl) (xh * ph) y i count
                    i <- i + 16)
            (fun cdf gv dx lo hi ->
                let mutable i = lo

                while i < hi do
                    let count = min 16 (hi - i)
                    let struct (xl, xh) = load16 v i count
                    let struct (cl, ch) = load16 cdf i count
                    let struct (gl, gh) = load16 gv i count
                    store16 (gl * (cl + densityTimes xl)) (gh * (ch + densityTimes xh)) dx i count
                    i <- i + 16)

    /// GELU, exact (PyTorch's nn.GELU default, as in timm's vision transformer): x Φ(x) with Φ the
    /// standard normal distribution function, 0.5 x (1 + erf(x / √2)) (Hendrycks & Gimpel 2016).
    let gelu (x: Tensor) =
        match x.Raw with
        | :? Cpu.CpuTensor as c ->
            match c.Storage with
            | Cpu.F32 v -> gelu32 x v
            | Cpu.F64 v -> gelu64 x v
        | _ -> x * (Tensor.erf (x / sqrt 2.0) + 1.0) * 0.5

    /// SELU (Klambauer et al. 2017, eq. 2): λ x for x > 0, λ α (eˣ − 1) otherwise, with their λ and α.
    let selu (x: Tensor) =
        let lambda, alpha = 1.0507009873554805, 1.6732632423543772
        let positive = Tensor.greater x (Tensor.scalar x.DType 0.0)

        Tensor.where positive x ((Tensor.exp (Tensor.minScalar 0.0 x) - 1.0) * alpha)
        * lambda

    /// Layer norm over rows of w on the elements v, γ and β (float32 or float64): each row's moments,
    /// x̂ and y, and in the backward pass each row's dx, through SIMD spans (a row's sums in the dtype's
    /// own precision, as torch.nn.LayerNorm); dγ and dβ sum over the rows in float64, row after row, so
    /// they are the same numbers on any thread count, split across workers by columns.
    let inline private layerNormOn< ^T when ^T :> Numerics.IFloatingPointIeee754< ^T > and ^T: comparison>
        (eps: float)
        (x: Tensor)
        (gamma: Tensor)
        (beta: Tensor)
        (v: ^T[])
        ([<InlineIfLambda>] toFloat: ^T -> float)
        ([<InlineIfLambda>] ofFloat: float -> ^T)
        (read: RawTensor -> ^T[])
        (make: int[] * ^T[] -> RawTensor)
        =
        let w = x.Raw.Shape[x.Rank - 1]
        let gm, bt = read gamma.Raw, read beta.Raw
        let rows = if w = 0 then 0 else v.Length / w
        // Every row of the results is written below: no zeroing.
        let xhat: ^T[] = Buffers.Uninit v.Length
        let rstd: ^T[] = Buffers.Uninit rows
        let y: ^T[] = Buffers.Uninit v.Length
        let rowsPerChunk = max 1 (4096 / max 1 w)
        let width = ofFloat (float w)

        chunks rows rowsPerChunk (fun lo hi ->
            for r in lo .. hi - 1 do
                let row = ReadOnlySpan(v, r * w, w)
                let h = Span(xhat, r * w, w)
                let mu = Numerics.Tensors.TensorPrimitives.Sum row / width
                Numerics.Tensors.TensorPrimitives.Subtract(row, mu, h)

                let variance =
                    Numerics.Tensors.TensorPrimitives.SumOfSquares(Span< ^T>.op_Implicit h) / width

                let rs = ofFloat (1.0 / sqrt (toFloat variance + eps))
                rstd[r] <- rs
                Numerics.Tensors.TensorPrimitives.Multiply(Span< ^T>.op_Implicit h, rs, h)

                Numerics.Tensors.TensorPrimitives.FusedMultiplyAdd(
                    Span< ^T>.op_Implicit h,
                    ReadOnlySpan gm,
                    ReadOnlySpan bt,
                    Span(y, r * w, w)
                ))

        Tensor.Op(
            make (x.Raw.Shape, y),
            [| x; gamma; beta |],
            fun g needs ->
                let gv = read g

                let dx =
                    if needs[0] then
                        let dx: ^T[] = Buffers.Uninit v.Length

                        // dx = r (ĝ − mean ĝ − x̂ mean(ĝ x̂)), ĝ = g γ, one row at a time.
                        chunks rows rowsPerChunk (fun lo hi ->
                            for r in lo .. hi - 1 do
                                let h = ReadOnlySpan(xhat, r * w, w)
                                let d = Span(dx, r * w, w)

                                Numerics.Tensors.TensorPrimitives.Multiply(
                                    ReadOnlySpan(gv, r * w, w),
                                    ReadOnlySpan gm,
                                    d
                                )

                                let gh = Span< ^T>.op_Implicit d
                                let mg = Numerics.Tensors.TensorPrimitives.Sum gh / width
                                let mgx = Numerics.Tensors.TensorPrimitives.Dot(gh, h) / width
                                Numerics.Tensors.TensorPrimitives.FusedMultiplyAdd(h, -mgx, gh, d)
                                Numerics.Tensors.TensorPrimitives.Subtract(Span< ^T>.op_Implicit d, mg, d)
                                Numerics.Tensors.TensorPrimitives.Multiply(Span< ^T>.op_Implicit d, rstd[r], d))

                        make (x.Raw.Shape, dx)
                    else
                        null

                let dg, db =
                    if needs[1] || needs[2] then
                        let dg, db = Array.zeroCreate w, Array.zeroCreate w

                        // Each column summed over the rows in order; columns are independent.
                        Parallelism.forRanges w rows (fun first stop ->
                            for r in 0 .. rows - 1 do
                                let o = r * w

                                for j in first .. stop - 1 do
                                    dg[j] <- dg[j] + toFloat gv[o + j] * toFloat xhat[o + j]
                                    db[j] <- db[j] + toFloat gv[o + j])

                        (if needs[1] then
                             make ([| w |], Array.map ofFloat dg)
                         else
                             null),
                        (if needs[2] then
                             make ([| w |], Array.map ofFloat db)
                         else
                             null)
                    else
                        null, null

                [| dx; dg; db |]
        )

    /// Layer normalisation over the last axis: γ (x − μ) / √(σ² + ε) + β (Ba et al. 2016, eq. 4, with
    /// the biased variance, as torch.nn.LayerNorm). With γ, β of the last axis's size, on the CPU backend,
    /// it is one fused op, x̂ = (x − μ) r, r = 1/√(σ² + ε), whose derivative rule is
    /// dx = r (ĝ − mean ĝ − x̂ mean(ĝ x̂)), ĝ = g γ, dγ = Σ g x̂, dβ = Σ g over the rows; otherwise the plain
    /// composition of tensor ops (γ, β broadcast).
    let layerNorm (eps: float) (gamma: Tensor) (beta: Tensor) (x: Tensor) =
        let w = if x.Rank = 0 then 0 else x.Raw.Shape[x.Rank - 1]

        let fused =
            x.Rank > 0
            && gamma.Raw.Shape = [| w |]
            && beta.Raw.Shape = [| w |]
            && gamma.DType = x.DType
            && beta.DType = x.DType

        match x.Raw with
        | :? Cpu.CpuTensor as c when fused ->
            let b = x.Raw.Backend

            match c.Storage with
            | Cpu.F32 v -> layerNormOn eps x gamma beta v float float32 read32 b.OfFloat32
            | Cpu.F64 v -> layerNormOn eps x gamma beta v id id read64 b.OfFloat64
        | _ ->
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
