namespace Forgetting.Tensors

open System
open Forgetting.Tensors.Cpu

/// Creating, reshaping and computing with tensors; every differentiable op has its derivative rule
/// beside its forward rule. Ops needing a backend create on the backend of their first input, new
/// tensors on `Tensor.backend` (the CPU backend).
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Tensor =

    /// The backend new tensors are created on.
    let backend: IBackend = CpuBackend.Instance

    // ---------------------------------------------------------------- creation

    let private checkData (op: string) (shape: int[]) (length: int) =
        Shape.validate op shape

        if Shape.numel shape <> length then
            Shape.fail op $"{length} values do not fill shape {Shape.show shape} ({Shape.numel shape} elements)"

    /// A float32 tensor holding a copy of the values.
    let ofArray (shape: int[]) (data: float32[]) =
        checkData "ofArray" shape data.Length
        Tensor.OfRaw(backend.OfFloat32(Array.copy shape, Array.copy data))

    /// A float64 tensor holding a copy of the values.
    let ofFloat64 (shape: int[]) (data: float[]) =
        checkData "ofFloat64" shape data.Length
        Tensor.OfRaw(backend.OfFloat64(Array.copy shape, Array.copy data))

    /// A tensor of the given dtype from float64 values.
    let create (dtype: DType) (shape: int[]) (data: float[]) =
        checkData "create" shape data.Length

        match dtype with
        | Float32 -> Tensor.OfRaw(backend.OfFloat32(Array.copy shape, Array.map float32 data))
        | Float64 -> ofFloat64 shape data

    /// Takes ownership of the array, without a copy: the caller must not change it afterwards.
    let internal wrap32 (shape: int[]) (data: float32[]) =
        Tensor.OfRaw(backend.OfFloat32(shape, data))

    let full (dtype: DType) (shape: int[]) (value: float) =
        Shape.validate "full" shape
        Tensor.OfRaw(backend.Full(Array.copy shape, dtype, value))

    let zeros dtype shape = full dtype shape 0.0
    let ones dtype shape = full dtype shape 1.0
    let scalar (dtype: DType) (value: float) = full dtype [||] value

    /// 0, 1, …, n-1.
    let arange (dtype: DType) (n: int) =
        create dtype [| n |] (Array.init n float)

    /// Uniform in [lo, hi), from an explicit key.
    let uniform (rng: Rng) (dtype: DType) (shape: int[]) (lo: float) (hi: float) =
        Shape.validate "uniform" shape
        create dtype shape (Rng.uniform (Shape.numel shape) rng |> Array.map (fun u -> lo + (hi - lo) * u))

    /// Normal with the given mean and standard deviation, from an explicit key.
    let normal (rng: Rng) (dtype: DType) (shape: int[]) (mean: float) (std: float) =
        Shape.validate "normal" shape
        create dtype shape (Rng.normal (Shape.numel shape) rng |> Array.map (fun z -> mean + std * z))

    let zerosLike (t: Tensor) =
        Tensor.OfRaw(t.Raw.Backend.Full(t.Raw.Shape, t.DType, 0.0))

    let fullLike (t: Tensor) (value: float) =
        Tensor.OfRaw(t.Raw.Backend.Full(t.Raw.Shape, t.DType, value))

    let cast (dtype: DType) (t: Tensor) =
        if t.DType = dtype then
            t
        else
            Tensor.Op(t.Raw.Cast dtype, [| t |], (fun g _ -> [| g.Cast t.DType |]))

    let stopGradient (t: Tensor) = t.StopGradient()

    // ---------------------------------------------------------------- shape

    let reshape (shape: int[]) (t: Tensor) =
        let target = Shape.resolve "reshape" t.Numel shape
        let from = t.Raw.Shape
        Tensor.Op(t.Raw.Reshape target, [| t |], (fun g _ -> [| g.Reshape from |]))

    /// Flatten all axes but the first: [B, …] → [B, features].
    let flatten (t: Tensor) =
        if t.Rank < 1 then
            Shape.fail "flatten" "needs at least one axis"

        reshape [| t.Raw.Shape[0]; -1 |] t

    let permute (axes: int[]) (t: Tensor) =
        if Array.sort axes <> Array.init t.Rank id then
            Shape.fail "permute" $"{Shape.show axes} is not a permutation of the axes of shape {Shape.show t.Raw.Shape}"

        let inverse = Array.zeroCreate axes.Length
        axes |> Array.iteri (fun i a -> inverse[a] <- i)
        Tensor.Op(t.Raw.Permute axes, [| t |], (fun g _ -> [| g.Permute inverse |]))

    /// Swap the last two axes.
    let transpose (t: Tensor) =
        if t.Rank < 2 then
            Shape.fail "transpose" $"needs at least two axes, got shape {Shape.show t.Raw.Shape}"

        let axes = Array.init t.Rank id
        axes[t.Rank - 2] <- t.Rank - 1
        axes[t.Rank - 1] <- t.Rank - 2
        permute axes t

    let private checkLeading (op: string) (t: Tensor) =
        if t.Rank < 1 then
            Shape.fail op "needs a tensor with at least one axis"

    /// Rows start .. start+length-1 along the leading axis.
    let slice (start: int) (length: int) (t: Tensor) =
        checkLeading "slice" t
        let rows = t.Raw.Shape[0]

        if start < 0 || length < 0 || start + length > rows then
            Shape.fail "slice" $"rows {start}..{start + length - 1} are outside shape {Shape.show t.Raw.Shape}"

        Tensor.Op(
            t.Raw.Slice(start, length),
            [| t |],
            fun g _ -> [| g.ScatterAdd(Array.init length (fun i -> start + i), rows) |]
        )

    /// Rows picked by index along the leading axis (repeats allowed).
    let gather (indices: int[]) (t: Tensor) =
        checkLeading "gather" t
        let rows = t.Raw.Shape[0]

        indices
        |> Array.iter (fun i ->
            if i < 0 || i >= rows then
                Shape.fail "gather" $"index {i} is outside the {rows} rows of shape {Shape.show t.Raw.Shape}")

        let indices = Array.copy indices
        Tensor.Op(t.Raw.Gather indices, [| t |], (fun g _ -> [| g.ScatterAdd(indices, rows) |]))

    /// Row i along the leading axis, that axis removed.
    let index (i: int) (t: Tensor) = slice i 1 t |> reshape t.Raw.Shape[1..]

    let concat (axis: int) (ts: Tensor list) =
        match ts with
        | [] -> Shape.fail "concat" "needs at least one tensor"
        | first :: rest ->
            let axis = Shape.axis "concat" first.Raw.Shape axis

            for t in rest do
                Tensor.CheckDType("concat", first, t)

                if
                    t.Rank <> first.Rank
                    || Array.exists2 (fun (i, a) b -> i <> axis && a <> b) (Array.indexed first.Raw.Shape) t.Raw.Shape
                then
                    Shape.fail
                        "concat"
                        $"shapes {Shape.show first.Raw.Shape} and {Shape.show t.Raw.Shape} differ off axis {axis}"

            let parts = Array.ofList ts
            let sizes = parts |> Array.map (fun t -> t.Raw.Shape[axis])
            let raw = first.Raw.Concat(parts[1..] |> Array.map (fun t -> t.Raw), axis)

            Tensor.Op(
                raw,
                parts,
                fun g needs ->
                    // Each part's gradient is its block of g along the axis: move the axis to the front, slice.
                    let front =
                        Array.init g.Rank (fun i ->
                            if i = 0 then axis
                            elif i <= axis then i - 1
                            else i)

                    let back = Array.zeroCreate g.Rank
                    front |> Array.iteri (fun i a -> back[a] <- i)
                    let moved = g.Permute front
                    let mutable start = 0

                    Array.init parts.Length (fun i ->
                        let s = start
                        start <- start + sizes[i]

                        if needs[i] then
                            moved.Slice(s, sizes[i]).Permute back
                        else
                            null)
            )

    /// Stack equal shapes along a new leading axis.
    let stack (ts: Tensor list) =
        ts
        |> List.map (fun t -> reshape (Array.append [| 1 |] t.Raw.Shape) t)
        |> concat 0

    /// Broadcast to a shape (NumPy rules), materialised.
    let broadcastTo (shape: int[]) (t: Tensor) =
        let target = Shape.broadcast "broadcastTo" t.Raw.Shape shape

        if target <> shape then
            Shape.fail "broadcastTo" $"shape {Shape.show t.Raw.Shape} cannot be broadcast to {Shape.show shape}"

        let from = t.Raw.Shape
        Tensor.Op(t.Raw.Expand shape, [| t |], (fun g _ -> [| g.SumTo from |]))

    // ---------------------------------------------------------------- elementwise

    let private unary (op: UnaryOp) (rule: RawTensor -> RawTensor -> RawTensor -> RawTensor) (t: Tensor) =
        let y = t.Raw.Unary op
        Tensor.Op(y, [| t |], (fun g _ -> [| rule g t.Raw y |]))

    let neg (t: Tensor) = -t

    let exp t =
        unary Exp (fun g _ y -> g.Binary(Mul, y)) t

    let log t =
        unary Log (fun g x _ -> g.Binary(Div, x)) t

    let sqrt t =
        unary Sqrt (fun g _ y -> g.Binary(Div, y.BinaryScalar(Mul, 2.0, false))) t

    let abs t =
        unary Abs (fun g x _ -> g.Binary(Mul, x.Unary Sign)) t

    /// The sign; its gradient is zero everywhere.
    let sign (t: Tensor) = Tensor.OfRaw(t.Raw.Unary Sign)

    let tanh t =
        unary Tanh (fun g _ y -> g.Binary(Mul, y.Unary(Square).BinaryScalar(Sub, 1.0, true))) t

    let sigmoid t =
        unary Sigmoid (fun g _ y -> g.Binary(Mul, y.Binary(Mul, y.BinaryScalar(Sub, 1.0, true)))) t

    let relu t =
        unary Relu (fun g x _ -> x.ReluBackward g) t

    let square t =
        unary Square (fun g x _ -> g.Binary(Mul, x.BinaryScalar(Mul, 2.0, false))) t

    /// The error function; d erf(x)/dx = 2/√π exp(−x²).
    let erf t =
        unary
            Erf
            (fun g x _ ->
                g.Binary(Mul, x.Unary(Square).Unary(Neg).Unary(Exp).BinaryScalar(Mul, 2.0 / Math.Sqrt Math.PI, false)))
            t

    let pow (p: float) (t: Tensor) = Tensor.Pow(t, p)

    /// Elementwise maximum with a constant; the gradient flows where t > c.
    let maxScalar (c: float) (t: Tensor) =
        Tensor.Scalar(Maximum, t, c, false, (fun g -> g.Binary(Mul, t.Raw.BinaryScalar(Greater, c, false))))

    /// Elementwise minimum with a constant; the gradient flows where t < c.
    let minScalar (c: float) (t: Tensor) =
        Tensor.Scalar(Minimum, t, c, false, (fun g -> g.Binary(Mul, t.Raw.BinaryScalar(Greater, c, true))))

    /// Clamp into [lo, hi]; the gradient flows strictly inside.
    let clamp (lo: float) (hi: float) (t: Tensor) =
        if lo > hi then
            Shape.fail "clamp" $"lower bound {lo} is above upper bound {hi}"

        let inside =
            t.Raw.BinaryScalar(Greater, lo, false).Binary(Mul, t.Raw.BinaryScalar(Greater, hi, true))

        Tensor.Op(t.Raw.Clamp(lo, hi), [| t |], (fun g _ -> [| g.Binary(Mul, inside) |]))

    /// Elementwise maximum of two tensors; ties send the gradient to the first.
    let maximum (a: Tensor) (b: Tensor) =
        let aWins = a.Raw.Binary(Greater, b.Raw).Binary(Maximum, a.Raw.Binary(Equal, b.Raw))
        let bWins = aWins.BinaryScalar(Sub, 1.0, true)
        Tensor.Broadcast(Maximum, a, b, (fun g -> g.Binary(Mul, aWins)), (fun g -> g.Binary(Mul, bWins)))

    /// Elementwise `mask <> 0 ? a : b` (the mask is a constant), broadcasting all three.
    let where (mask: Tensor) (a: Tensor) (b: Tensor) =
        Tensor.CheckDType("where", a, b)
        let m = mask.Raw.Cast a.DType
        let zero = a.Raw.Backend.Full([||], a.DType, 0.0)
        let r = m.Where(a.Raw, b.Raw)

        Tensor.Op(
            r,
            [| a; b |],
            fun g needs ->
                [| (if needs[0] then
                        m.Where(g, zero).SumTo a.Raw.Shape
                    else
                        null)
                   (if needs[1] then
                        m.Where(zero, g).SumTo b.Raw.Shape
                    else
                        null) |]
        )

    /// 1 where a > b, else 0 (a constant).
    let greater (a: Tensor) (b: Tensor) =
        Tensor.CheckDType("greater", a, b)
        Tensor.OfRaw(a.Raw.Binary(Greater, b.Raw))

    /// a + alpha · b for tensors of one shape, in one pass.
    let addScaled (a: Tensor) (alpha: float) (b: Tensor) =
        Tensor.CheckDType("addScaled", a, b)

        if a.Raw.Shape <> b.Raw.Shape then
            Shape.fail "addScaled" $"shapes differ: {Shape.show a.Raw.Shape} and {Shape.show b.Raw.Shape}"

        Tensor.Op(
            a.Raw.AddScaled(b.Raw, alpha),
            [| a; b |],
            fun g needs -> [| g; (if needs[1] then g.BinaryScalar(Mul, alpha, false) else null) |]
        )

    // ---------------------------------------------------------------- reductions

    let sum (t: Tensor) =
        let from = t.Raw.Shape

        Tensor.Op(
            t.Raw.Backend.Full([||], t.DType, t.Raw.SumAll()),
            [| t |],
            fun g _ -> [| g.Reshape(Array.create from.Length 1).Expand from |]
        )

    let mean (t: Tensor) =
        if t.Numel = 0 then
            Shape.fail "mean" $"the mean of an empty tensor (shape {Shape.show t.Raw.Shape}) is undefined"

        sum t / float t.Numel

    /// Reduce t along an axis (negative counts from the end), keeping it as size 1 or dropping it:
    /// the axis as an index, t's shape and the result, for the caller's backward pass.
    let private reduceAxis (op: ReduceOp) (name: string) (axis: int) (keepDim: bool) (t: Tensor) =
        let a = Shape.axis name t.Raw.Shape axis
        let from = t.Raw.Shape
        let kept = t.Raw.Reduce(op, a)

        struct (a,
                from,
                (if keepDim then
                     kept
                 else
                     kept.Reshape(Shape.reduce from a false)))

    /// Sum along an axis (negative counts from the end).
    let sumAxis (axis: int) (keepDim: bool) (t: Tensor) =
        let struct (a, from, r) = reduceAxis Sum "sumAxis" axis keepDim t
        Tensor.Op(r, [| t |], (fun g _ -> [| g.Reshape(Shape.reduce from a true).Expand from |]))

    let meanAxis (axis: int) (keepDim: bool) (t: Tensor) =
        let a = Shape.axis "meanAxis" t.Raw.Shape axis

        if t.Raw.Shape[a] = 0 then
            Shape.fail "meanAxis" $"axis {axis} of shape {Shape.show t.Raw.Shape} is empty"

        sumAxis a keepDim t / float t.Raw.Shape[a]

    /// Maximum along an axis; the gradient goes to the first maximum.
    let maxAxis (axis: int) (keepDim: bool) (t: Tensor) =
        let struct (a, from, r) = reduceAxis Max "maxAxis" axis keepDim t

        Tensor.Op(
            r,
            [| t |],
            fun g _ ->
                // One-hot of the first arg-max along the axis, built on the host.
                let arg = t.Raw.ArgMax a
                let len, inner = from[a], Shape.numel from[a + 1 ..]
                let mask = Array.zeroCreate (Shape.numel from)

                arg
                |> Array.iteri (fun j k ->
                    let o, i = j / inner, j % inner
                    mask[(o * len + k) * inner + i] <- 1.0)

                let m = t.Raw.Backend.OfFloat64(from, mask).Cast t.DType
                [| g.Reshape(Shape.reduce from a true).Expand(from).Binary(Mul, m) |]
        )

    /// Maximum of all elements.
    let max (t: Tensor) =
        if t.Numel = 0 then
            Shape.fail "max" "the maximum of an empty tensor is undefined"

        reshape [| -1 |] t |> maxAxis 0 false

    let argMax (axis: int) (t: Tensor) =
        t.Raw.ArgMax(Shape.axis "argMax" t.Raw.Shape axis)

    /// The lower median of all elements, as a constant (no gradient flows through a median).
    let median (t: Tensor) =
        Tensor.OfRaw(t.Raw.Backend.Full([||], t.DType, t.Raw.Median()))

    /// The lower median (torch.median's convention: the ⌊(n−1)/2⌋-th smallest of n) of each group of
    /// the trailing axes `fromAxis` … rank−1, over the elements where `among` (a constant of t's
    /// shape, or None for all) is non-zero. The result has shape t.Shape[.. fromAxis−1] (with the
    /// trailing axes kept as 1 when `keepDim`), and its gradient flows to the picked element of each
    /// group, as torch.median's does; ties are ordered by row-major position, so the pick is fixed.
    /// fromAxis = 0 is one median of the whole tensor. Computed on the host, by selection.
    let medianFrom (fromAxis: int) (keepDim: bool) (among: Tensor option) (t: Tensor) =
        let shape = t.Raw.Shape

        if fromAxis < 0 || fromAxis >= Operators.max 1 shape.Length then
            Shape.fail "medianFrom" $"axis {fromAxis} is outside shape {Shape.show shape}"

        among
        |> Option.iter (fun m ->
            if m.Raw.Shape <> shape then
                Shape.fail
                    "medianFrom"
                    $"the among mask has shape {Shape.show m.Raw.Shape}, the tensor {Shape.show shape}")

        let groups = Shape.numel shape[.. fromAxis - 1]
        let size = Shape.numel shape[fromAxis..]

        if size = 0 then
            Shape.fail "medianFrom" $"the median of an empty group (shape {Shape.show shape}) is undefined"

        let v = t.Raw.ToFloat64()
        let keep = among |> Option.map (fun m -> m.Raw.ToFloat64())

        let picked =
            Array.init groups (fun g ->
                let offset = g * size

                let members =
                    match keep with
                    | None -> Array.init size (fun i -> offset + i)
                    | Some k ->
                        [| for i in offset .. offset + size - 1 do
                               if k[i] <> 0.0 then
                                   yield i |]

                if members.Length = 0 then
                    Shape.fail "medianFrom" $"group {g} of shape {Shape.show shape} has no included element"

                if members |> Array.exists (fun i -> Double.IsNaN v[i]) then
                    Shape.fail "medianFrom" $"group {g} holds NaN"

                // The pick is members' k-th under the order (value, position), so that a tie is
                // deterministic. A selection finds the k-th value in linear time (the PFU's median
                // over a whole call reaches a million scores per step, where a sort by comparer was
                // most of the step); the tied members below k, in position order, then locate it.
                let k = (members.Length - 1) / 2
                let values = members |> Array.map (fun i -> v[i])
                let m = Select.kth k values
                let mutable below = 0

                for i in members do
                    if v[i] < m then
                        below <- below + 1

                let mutable skip = k - below
                let mutable pick = -1
                let mutable j = 0

                while pick < 0 do
                    let i = members[j]

                    if v[i] = m then
                        if skip = 0 then pick <- i else skip <- skip - 1

                    j <- j + 1

                pick)

        let outShape =
            if keepDim then
                Array.append shape[.. fromAxis - 1] (Array.create (shape.Length - fromAxis) 1)
            else
                shape[.. fromAxis - 1]

        let numel = t.Numel
        let flat = t.Raw.Reshape [| numel; 1 |]

        Tensor.Op(
            flat.Gather(picked).Reshape outShape,
            [| t |],
            fun g _ -> [| g.Reshape([| groups; 1 |]).ScatterAdd(picked, numel).Reshape shape |]
        )

    // ---------------------------------------------------------------- linear algebra

    /// a × op(b), op(b) = bᵀ (its last two axes swapped) when `tb`: the GEMM reads b transposed in
    /// place, so neither the product nor its backward pass copies a transpose (attention's q kᵀ).
    let private matmul3 (tb: bool) (a: Tensor) (b: Tensor) =
        Tensor.CheckDType("matmul", a, b)
        let ra, rb = a.Rank, b.Rank

        let ok =
            (ra = 2 && rb = 2)
            || (ra = 3 && rb = 2)
            || (ra = 3 && rb = 3 && a.Raw.Shape[0] = b.Raw.Shape[0])

        if not ok then
            let t = if tb then "ᵀ" else ""
            Shape.fail "matmul" $"cannot multiply shapes {Shape.show a.Raw.Shape} and {Shape.show b.Raw.Shape}{t}"

        let r = a.Raw.MatMul(false, b.Raw, tb)

        // d(a) = g op(b)ᵀ; d(b) = aᵀ g, or its transpose gᵀ a when b entered transposed.
        let gradB (a: RawTensor) (g: RawTensor) =
            if tb then
                g.MatMul(true, a, false)
            else
                a.MatMul(true, g, false)

        Tensor.OpAccumulating(
            r,
            [| a; b |],
            (fun g needs ->
                [| (if needs[0] then g.MatMul(false, b.Raw, not tb) else null)
                   (if needs[1] then
                        if ra = 3 && rb = 2 then
                            // The shared matrix collects the gradient of every batch element.
                            let flatA = a.Raw.Reshape [| a.Raw.Shape[0] * a.Raw.Shape[1]; a.Raw.Shape[2] |]
                            let flatG = g.Reshape [| g.Shape[0] * g.Shape[1]; g.Shape[2] |]
                            gradB flatA flatG
                        else
                            gradB a.Raw g
                    else
                        null) |]),
            // Matrices: the gradient added straight into a pending one (a penalty's on a weight).
            fun g i pending ->
                match ra, rb, i with
                | 2, 2, 0 -> g.MatMulAdd(false, b.Raw, not tb, pending)
                | 2, 2, 1 when tb -> g.MatMulAdd(true, a.Raw, false, pending)
                | 2, 2, 1 -> a.Raw.MatMulAdd(true, g, false, pending)
                | _ -> null
        )

    let private matmulWith (tb: bool) (a: Tensor) (b: Tensor) =
        if a.Rank > 3 then
            // Several batch axes [b1, …, bj, m, k] × [b1, …, bj, k, n] (or × a shared [k, n]): one batch axis.
            let sa, sb = a.Raw.Shape, b.Raw.Shape
            let lead = sa[.. sa.Length - 3]

            if not (b.Rank = 2 || (b.Rank = a.Rank && sb[.. sb.Length - 3] = lead)) then
                Shape.fail "matmul" $"cannot multiply shapes {Shape.show sa} and {Shape.show sb}"

            let flatA = reshape [| -1; sa[sa.Length - 2]; sa[sa.Length - 1] |] a

            let flatB =
                if b.Rank = 2 then
                    b
                else
                    reshape [| -1; sb[sb.Length - 2]; sb[sb.Length - 1] |] b

            let r = matmul3 tb flatA flatB
            reshape (Array.append lead r.Raw.Shape[1..]) r
        else
            matmul3 tb a b

    /// Matrix product: [m,k]×[k,n], [b,m,k]×[b,k,n], or [b,m,k]×[k,n] (the matrix shared by the batch);
    /// more batch axes [b1, …, bj, m, k] × [b1, …, bj, k, n] or × [k, n] are flattened into one.
    let matmul (a: Tensor) (b: Tensor) = matmulWith false a b

    /// a × bᵀ with b's last two axes swapped, as matmul a (transpose b) but without copying the
    /// transpose forward or back: [m,k]×[n,k], [b,m,k]×[b,n,k], [b,m,k]×[n,k], and more batch axes.
    let matmulTransposed (a: Tensor) (b: Tensor) = matmulWith true a b

    /// A dense layer: x [B, in] × w [in, out] + b [out].
    let linear (x: Tensor) (w: Tensor) (b: Tensor) = matmul x w + b

    // ---------------------------------------------------------------- softmax

    let softmax (axis: int) (t: Tensor) =
        let a = Shape.axis "softmax" t.Raw.Shape axis
        let s = t.Raw.Softmax a
        // dx = s ⊙ (g − Σ g⊙s)
        Tensor.Op(s, [| t |], (fun g _ -> [| s.SoftmaxBackward(g, a) |]))

    let logSoftmax (axis: int) (t: Tensor) =
        let a = Shape.axis "logSoftmax" t.Raw.Shape axis
        let ls = t.Raw.LogSoftmax a
        // dx = g − softmax ⊙ Σ g
        Tensor.Op(
            ls,
            [| t |],
            fun g _ ->
                let total = g.Reduce(Sum, a)
                [| g.Binary(Sub, ls.Unary(Exp).Binary(Mul, total)) |]
        )

    // ---------------------------------------------------------------- differentiation

    /// The value of f at xs and its gradient with respect to each of xs; f must return a scalar.
    let valueAndGrads (f: Tensor[] -> Tensor) (xs: Tensor[]) : Tensor * Tensor[] =
        let vars = xs |> Array.map Tensor.Variable
        let y = f vars
        let grads = Tape.gradients y vars
        y.StopGradient(), grads |> Array.map Tensor.OfRaw

    let valueAndGrad (f: Tensor -> Tensor) (x: Tensor) : Tensor * Tensor =
        let y, g = valueAndGrads (fun xs -> f xs[0]) [| x |]
        y, g[0]

    let grad (f: Tensor -> Tensor) (x: Tensor) = valueAndGrad f x |> snd

    /// Gradients at intermediates: `f` gets xs tracked and returns scalar outputs and tensors it computed
    /// on the way (e.g. a layer's pre-activation z), or the tracked xs themselves; the result holds the
    /// outputs' values and, per output, its gradient with respect to each of those tensors, from one
    /// forward pass. Per-sample gradients of a dense layer are read off the gradient at its output
    /// (a_bᵀ g_b for sample b), so this is how they avoid a loop.
    let gradientsAt (f: Tensor[] -> Tensor[] * Tensor[]) (xs: Tensor[]) : Tensor[] * Tensor[][] =
        let vars = xs |> Array.map Tensor.Variable
        let outputs, at = f vars

        let grads =
            outputs |> Array.map (fun y -> Tape.gradients y at |> Array.map Tensor.OfRaw)

        outputs |> Array.map (fun y -> y.StopGradient()), grads

    // The step of gradientsOfStep inside its scope, `after` of the gradients still inside it.
    let private stepThen
        (f: Tensor[] -> Tensor[] * Tensor[] * Tensor list)
        (xs: Tensor[])
        (after: Tensor[] -> Tensor[] -> Tensor list -> Tensor[][] -> 'r)
        : Tensor[] * 'r =
        use _ = xs[0].Raw.Backend.OpenScope()
        let vars = xs |> Array.map Tensor.Variable
        let outputs, at, kept = f vars
        let grads = outputs |> Array.map (fun y -> Tape.gradients y at)

        Tape.releaseIntermediates
            outputs
            (Seq.concat
                [ kept |> Seq.map (fun t -> t.Raw)
                  at |> Seq.map (fun t -> t.Raw)
                  Seq.concat grads ])

        let values = outputs |> Array.map (fun y -> y.StopGradient())
        values, after values at kept (grads |> Array.map (Array.map Tensor.OfRaw))

    /// gradientsAt for one training step, whose intermediate values nothing reads afterwards: `f` also
    /// returns the tensors it computed that outlive the step (a layer's trace). Those, the tensors the
    /// gradients are taken at and the gradients themselves are kept; every other value the outputs were
    /// computed from gives its array back to the backend, whose next ops reuse it, so that a step makes
    /// its large arrays once instead of every time. The contract this rests on: `f` hands out every
    /// tensor it wants to keep through its result, and keeps none aside (in a mutable cell, say).
    let gradientsOfStep (f: Tensor[] -> Tensor[] * Tensor[] * Tensor list) (xs: Tensor[]) : Tensor[] * Tensor[][] =
        if xs.Length = 0 then
            gradientsAt (fun vars -> let outputs, at, _ = f vars in outputs, at) xs
        else
            stepThen f xs (fun _ _ _ grads -> grads)

    /// gradientsOfStep, then `update` of its gradients, for a step whose update is the last reader of
    /// them (an optimizer's): afterwards the gradients and every array the update made go back to the
    /// backend too, except those shared with `keptOf` of the update's result (the new parameters and
    /// the optimizer's buffers), with the step's outputs or with what `f` kept. Adam's dozen
    /// temporaries per parameter and last step's gradients then become this step's new parameters.
    /// The contract: `update` keeps no array it made other than through its result.
    let gradientsOfStepThen
        (f: Tensor[] -> Tensor[] * Tensor[] * Tensor list)
        (xs: Tensor[])
        (update: Tensor[][] -> 'r)
        (keptOf: 'r -> Tensor seq)
        : Tensor[] * 'r =
        if xs.Length = 0 then
            let values, grads = gradientsOfStep f xs
            values, update grads
        else
            let backend = xs[0].Raw.Backend

            stepThen f xs (fun values at kept grads ->
                let keep = System.Collections.Generic.HashSet<obj>(HashIdentity.Reference)

                let result =
                    use _ = backend.OpenScope()
                    let r = update grads

                    for t in Seq.concat [ keptOf r; Seq.ofArray values; Seq.ofArray at; Seq.ofList kept ] do
                        keep.Add t.Raw.Buffer |> ignore

                    backend.ReleaseAllocated keep.Contains
                    r

                // The gradients were allocated in the step's scope, which is the open one again.
                for g in Seq.concat grads do
                    if not (keep.Contains g.Raw.Buffer) then
                        backend.Release g.Raw

                result)

    let grads (f: Tensor[] -> Tensor) (xs: Tensor[]) = valueAndGrads f xs |> snd
