namespace Forgetting.Tensors.Cpu

open Forgetting.Tensors

/// The CPU backend: the reference implementation of the RawTensor seam.
type CpuBackend private () =
    static member val Instance = CpuBackend() :> IBackend

    interface IBackend with
        member _.Name = "cpu"
        member _.OfFloat32(shape, data) = CpuTensor(F32 data, shape) :> RawTensor
        member _.OfFloat64(shape, data) = CpuTensor(F64 data, shape) :> RawTensor

        member _.Full(shape, dtype, value) =
            CpuTensor(Storage.full dtype (Shape.numel shape) value, shape) :> RawTensor

        member _.OpenScope() = Buffers.Open()
        member _.Release t = Buffers.Release t.Buffer
        member _.ReleaseAllocated keep = Buffers.ReleaseAllocated keep

/// A tensor of the CPU backend: one contiguous array.
and CpuTensor(storage: Storage, shape: int[]) =
    inherit RawTensor(shape, storage.DType)

    member _.Storage = storage

    static member Of(s: Storage, shape: int[]) = CpuTensor(s, shape) :> RawTensor

    static member private StorageOf(op: string, t: RawTensor) =
        match t with
        | :? CpuTensor as c -> c.Storage
        | _ -> Shape.fail op $"cannot mix backends ({t.GetType().Name} with the CPU backend)"

    member private this.Same(op: string, other: RawTensor) =
        if other.DType <> this.DType then
            Shape.fail op $"dtypes differ: {this.DType} and {other.DType}"

        CpuTensor.StorageOf(op, other)

    override _.ToFloat32() = Storage.toFloat32 storage
    override _.ToFloat64() = Storage.toFloat64 storage

    override _.Backend = CpuBackend.Instance

    override _.Buffer =
        match storage with
        | F32 a -> box a
        | F64 a -> box a

    override _.Cast dtype =
        CpuTensor.Of(Storage.cast dtype storage, shape)

    // Immutable storage may be shared: a reshape costs nothing.
    override _.Reshape newShape = CpuTensor.Of(storage, newShape)

    override _.Permute axes =
        CpuTensor.Of(Layout.permute storage shape axes, axes |> Array.map (fun a -> shape[a]))

    override this.Slice(start, length) =
        let rowLen = if shape[0] = 0 then 0 else this.Numel / shape[0]
        CpuTensor.Of(Layout.slice storage rowLen start length, Array.append [| length |] shape[1..])

    override this.Gather indices =
        let rowLen = if shape[0] = 0 then 0 else this.Numel / shape[0]
        CpuTensor.Of(Layout.gather storage rowLen indices, Array.append [| indices.Length |] shape[1..])

    override this.ScatterAdd(indices, count) =
        let rowLen = if shape[0] = 0 then 0 else this.Numel / shape[0]
        CpuTensor.Of(Layout.scatterAdd storage rowLen indices count, Array.append [| count |] shape[1..])

    override this.Concat(others, axis) =
        let parts =
            Array.append [| this :> RawTensor |] others
            |> Array.map (fun t -> this.Same("concat", t), t.Shape)

        let size = parts |> Array.sumBy (fun (_, s) -> s[axis])
        let outShape = shape |> Array.mapi (fun i d -> if i = axis then size else d)
        CpuTensor.Of(Layout.concat parts axis outShape, outShape)

    override _.Expand target =
        CpuTensor.Of(Layout.expand storage shape target, target)

    override this.SumTo target =
        // Sum away the leading axes that broadcasting added, then the stretched axes of size 1.
        let lead = shape.Length - target.Length
        let mutable t = this :> RawTensor

        for _ in 1..lead do
            t <- t.Reduce(Sum, 0).Reshape(t.Shape[1..])

        for d in 0 .. target.Length - 1 do
            if target[d] = 1 && t.Shape[d] <> 1 then
                t <- t.Reduce(Sum, d)

        t.Reshape target

    override _.Unary op =
        CpuTensor.Of(Elementwise.unary op storage, shape)

    override this.Binary(op, other) =
        let o = this.Same("binary", other)
        let outShape = Shape.broadcast op.Name shape other.Shape
        CpuTensor.Of(Elementwise.binary op storage shape o other.Shape outShape, outShape)

    override _.BinaryScalar(op, scalar, scalarFirst) =
        CpuTensor.Of(Elementwise.binaryScalar op storage scalar scalarFirst, shape)

    override this.Where(a, b) =
        let sa = this.Same("where", a)
        let sb = this.Same("where", b)

        let outShape =
            Shape.broadcast "where" (Shape.broadcast "where" shape a.Shape) b.Shape

        CpuTensor.Of(Elementwise.where storage shape sa a.Shape sb b.Shape outShape, outShape)

    override _.Clamp(lo, hi) =
        CpuTensor.Of(Elementwise.clamp storage lo hi, shape)

    override _.Reduce(op, axis) =
        CpuTensor.Of(Reductions.reduce op storage shape axis, Shape.reduce shape axis true)

    override _.SumAll() = Reductions.sumAll storage
    override _.ArgMax axis = Reductions.argMax storage shape axis
    override _.Median() = Reductions.median storage

    override this.MatMul(transposeThis, other, transposeOther) =
        let o = this.Same("matmul", other)
        let rankA, rankB = shape.Length, other.Shape.Length
        let rowsA, colsA = shape[rankA - 2], shape[rankA - 1]
        let rowsB, colsB = other.Shape[rankB - 2], other.Shape[rankB - 1]
        let m, k = (if transposeThis then colsA, rowsA else rowsA, colsA)
        let k2, n = (if transposeOther then colsB, rowsB else rowsB, colsB)

        if k <> k2 then
            let ta = if transposeThis then "ᵀ" else ""
            let tb = if transposeOther then "ᵀ" else ""
            Shape.fail "matmul" $"inner dimensions differ: {Shape.show shape}{ta} × {Shape.show other.Shape}{tb}"

        let batch = if rankA = 3 then shape[0] else 1
        let outShape = if rankA = 3 then [| batch; m; n |] else [| m; n |]
        let r = Storage.uninit this.DType (batch * m * n)
        let aStep, bStep = rowsA * colsA, (if rankB = 3 then rowsB * colsB else 0)

        // One loop for both dtypes, inlined at each (Gemm.gemm is generic over them).
        let inline batched (a: 'T[]) (b: 'T[]) (c: 'T[]) (one: 'T) (zero: 'T) =
            for i in 0 .. batch - 1 do
                Gemm.gemm
                    transposeThis
                    transposeOther
                    m
                    n
                    k
                    one
                    a
                    (i * aStep)
                    colsA
                    b
                    (i * bStep)
                    colsB
                    zero
                    c
                    (i * m * n)
                    n

        match storage, o, r with
        | F32 a, F32 b, F32 c -> batched a b c 1.0f 0.0f
        | F64 a, F64 b, F64 c -> batched a b c 1.0 0.0
        | _ -> ()

        CpuTensor.Of(r, outShape)

    override this.MatMulAdd(transposeThis, other, transposeOther, addend) =
        let o = this.Same("matmul", other)
        let c = this.Same("matmul", addend)
        let rowsA, colsA = shape[0], shape[1]
        let rowsB, colsB = other.Shape[0], other.Shape[1]
        let m, k = (if transposeThis then colsA, rowsA else rowsA, colsA)
        let k2, n = (if transposeOther then colsB, rowsB else rowsB, colsB)

        if
            shape.Length <> 2
            || other.Shape.Length <> 2
            || k <> k2
            || addend.Shape <> [| m; n |]
        then
            Shape.fail
                "matmul"
                $"cannot add {Shape.show shape} × {Shape.show other.Shape} into {Shape.show addend.Shape}"

        match storage, o, c with
        | F32 a, F32 b, F32 cv -> Gemm.gemm transposeThis transposeOther m n k 1.0f a 0 colsA b 0 colsB 1.0f cv 0 n
        | F64 a, F64 b, F64 cv -> Gemm.gemm transposeThis transposeOther m n k 1.0 a 0 colsA b 0 colsB 1.0 cv 0 n
        | _ -> ()

        addend

    override _.Softmax axis =
        CpuTensor.Of(Reductions.softmax false storage shape axis, shape)

    override _.LogSoftmax axis =
        CpuTensor.Of(Reductions.softmax true storage shape axis, shape)

    override this.SoftmaxBackward(g, axis) =
        match Reductions.softmaxBackward storage (this.Same("softmaxBackward", g)) shape axis with
        | Some r -> CpuTensor.Of(r, shape)
        | None -> base.SoftmaxBackward(g, axis)

    override _.Im2Col(kh, kw, stride, padding) =
        let ho, wo =
            Conv.outSize shape[2] kh stride padding, Conv.outSize shape[3] kw stride padding

        CpuTensor.Of(Conv.im2col storage shape kh kw stride padding, [| shape[0]; shape[1] * kh * kw; ho * wo |])

    override _.Col2Im(imageShape, kh, kw, stride, padding) =
        CpuTensor.Of(Conv.col2im storage imageShape kh kw stride padding, imageShape)

    override _.MaxPool2d(k, stride) =
        let r, idx = Conv.maxPool2d storage shape k stride

        let outShape =
            [| shape[0]
               shape[1]
               Conv.outSize shape[2] k stride 0
               Conv.outSize shape[3] k stride 0 |]

        CpuTensor.Of(r, outShape), idx

    override this.ReluBackward g =
        match storage, this.Same("reluBackward", g) with
        | F32 x, F32 gv -> CpuTensor.Of(F32(Fused.reluBackward x gv), shape)
        | F64 x, F64 gv -> CpuTensor.Of(F64(Fused.reluBackward x gv), shape)
        | _ -> Shape.fail "reluBackward" "mixed dtypes"

    override this.AddScaled(other, alpha) =
        // x + alpha·y in one SIMD pass, one body for both dtypes, over the cores in ranges: each
        // element is one multiply-add whatever the split. (The optimizer's update of every
        // parameter goes through here; on one core it was 11 % of an MLP epoch.)
        let inline scaled (x: ^T[]) (y: ^T[]) (alpha: ^T) =
            let r = Buffers.Uninit< ^T> x.Length

            Parallelism.forRanges x.Length 1 (fun first stop ->
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(
                    System.ReadOnlySpan(y, first, stop - first),
                    alpha,
                    System.ReadOnlySpan(x, first, stop - first),
                    System.Span(r, first, stop - first)
                ))

            r

        match storage, this.Same("addScaled", other) with
        | F32 x, F32 y -> CpuTensor.Of(F32(scaled x y (float32 alpha)), shape)
        | F64 x, F64 y -> CpuTensor.Of(F64(scaled x y alpha), shape)
        | _ -> Shape.fail "addScaled" "mixed dtypes"

    override this.AddMany others =
        // The first sum is written straight into the result (no copy of this tensor first); a large
        // tensor is cut into tiles summed on several cores, each element by the same additions in the
        // same order as on one.
        let tile = 32768
        let tiles = (this.Numel + tile - 1) / tile

        let inline sum (x: ^T[]) (ys: ^T[] list) (r: ^T[]) (lo: int) (n: int) =
            match ys with
            | [] -> System.Array.Copy(x, lo, r, lo, n)
            | y :: rest ->
                System.Numerics.Tensors.TensorPrimitives.Add(
                    System.ReadOnlySpan(x, lo, n),
                    System.ReadOnlySpan(y, lo, n),
                    System.Span(r, lo, n)
                )

                for z in rest do
                    System.Numerics.Tensors.TensorPrimitives.Add(
                        System.ReadOnlySpan(r, lo, n),
                        System.ReadOnlySpan(z, lo, n),
                        System.Span(r, lo, n)
                    )

        let inline tiled (x: ^T[]) (ys: ^T[] list) =
            let r = Buffers.Uninit< ^T> x.Length

            if tiles <= 2 then
                sum x ys r 0 x.Length
            else
                Parallelism.forTiles tiles (fun k ->
                    let lo = k * tile
                    sum x ys r lo (min tile (x.Length - lo)))

            r

        // The others' arrays, which must have this one's type ^T[]: a type test on each, not a copy.
        let inline like (_: ^T[]) : ^T[] list =
            others
            |> List.map (fun o ->
                let y =
                    match this.Same("addMany", o) with
                    | F32 y -> box y
                    | F64 y -> box y

                match y with
                | :? (^T[]) as y -> y
                | _ -> Shape.fail "addMany" "mixed dtypes")

        match storage with
        | F32 x -> CpuTensor.Of(F32(tiled x (like x)), shape)
        | F64 x -> CpuTensor.Of(F64(tiled x (like x)), shape)
