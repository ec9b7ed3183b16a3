/// Kernels that move elements without arithmetic: permute, gather, scatter-add, concat, expand.
module internal Forgetting.Tensors.Cpu.Layout

open System
open Forgetting.Tensors

/// Fill r (of `shape`, row-major) by reading x through `strides`: the input step along each output
/// axis. Permutation and broadcasting are both this walk, with different strides.
let inline private stridedCopy (x: ^T[]) (strides: int[]) (shape: int[]) (r: ^T[]) =
    let rank = shape.Length
    let index = Array.zeroCreate rank
    let mutable src = 0

    for i in 0 .. r.Length - 1 do
        r[i] <- x[src]
        // Advance the multi-index like an odometer, updating the input offset incrementally.
        let mutable d = rank - 1
        let mutable carry = true

        while carry && d >= 0 do
            index[d] <- index[d] + 1
            src <- src + strides[d]

            if index[d] < shape[d] then
                carry <- false
            else
                src <- src - strides[d] * shape[d]
                index[d] <- 0
                d <- d - 1

/// A 2-D transpose in 32×32 tiles, so that both sides stay in cache.
let inline private transpose2d (x: ^T[]) (rows: int) (cols: int) (r: ^T[]) =
    let tile = 32

    for i0 in 0..tile .. rows - 1 do
        for j0 in 0..tile .. cols - 1 do
            for i in i0 .. min rows (i0 + tile) - 1 do
                for j in j0 .. min cols (j0 + tile) - 1 do
                    r[j * rows + i] <- x[i * cols + j]

let permute (x: Storage) (shape: int[]) (axes: int[]) : Storage =
    let r = Storage.uninit x.DType x.Length
    let inStrides = Shape.strides shape
    let outShape = axes |> Array.map (fun a -> shape[a])
    let strides = axes |> Array.map (fun a -> inStrides[a])

    match x, r with
    | F32 x, F32 r when axes = [| 1; 0 |] -> transpose2d x shape[0] shape[1] r
    | F64 x, F64 r when axes = [| 1; 0 |] -> transpose2d x shape[0] shape[1] r
    | F32 x, F32 r -> stridedCopy x strides outShape r
    | F64 x, F64 r -> stridedCopy x strides outShape r
    | _ -> ()

    r

/// Copy `count` rows of `rowLen` elements; source and destination row indices from the two maps.
let private copyRows (x: Storage) (rowLen: int) (count: int) (srcRow: int -> int) (r: Storage) =
    match x, r with
    | F32 x, F32 r ->
        for i in 0 .. count - 1 do
            Array.Copy(x, srcRow i * rowLen, r, i * rowLen, rowLen)
    | F64 x, F64 r ->
        for i in 0 .. count - 1 do
            Array.Copy(x, srcRow i * rowLen, r, i * rowLen, rowLen)
    | _ -> ()

let slice (x: Storage) (rowLen: int) (start: int) (length: int) =
    let r = Storage.uninit x.DType (length * rowLen)
    copyRows x rowLen length (fun i -> start + i) r
    r

let gather (x: Storage) (rowLen: int) (indices: int[]) =
    let r = Storage.uninit x.DType (indices.Length * rowLen)
    copyRows x rowLen indices.Length (fun i -> indices[i]) r
    r

/// Rows of x added into rows `indices` of a zero tensor with `count` rows.
let scatterAdd (x: Storage) (rowLen: int) (indices: int[]) (count: int) =
    let r = Storage.zeros x.DType (count * rowLen)

    match x, r with
    | F32 x, F32 r ->
        for i in 0 .. indices.Length - 1 do
            let dst = Span(r, indices[i] * rowLen, rowLen)

            Numerics.Tensors.TensorPrimitives.Add(
                Span<float32>.op_Implicit dst,
                ReadOnlySpan(x, i * rowLen, rowLen),
                dst
            )
    | F64 x, F64 r ->
        for i in 0 .. indices.Length - 1 do
            let dst = Span(r, indices[i] * rowLen, rowLen)
            Numerics.Tensors.TensorPrimitives.Add(Span<float>.op_Implicit dst, ReadOnlySpan(x, i * rowLen, rowLen), dst)
    | _ -> ()

    r

/// Concatenate along `axis`: each part is [outer, len_p, inner]; blocks interleave per outer index.
let concat (parts: (Storage * int[])[]) (axis: int) (shape: int[]) =
    let outer = Shape.numel shape[.. axis - 1]
    let inner = Shape.numel shape[axis + 1 ..]
    let dtype = (fst parts[0]).DType
    let r = Storage.uninit dtype (Shape.numel shape)
    let rowOut = shape[axis] * inner
    let mutable offset = 0

    for (s, pShape) in parts do
        let block = pShape[axis] * inner

        match s, r with
        | F32 x, F32 r ->
            for o in 0 .. outer - 1 do
                Array.Copy(x, o * block, r, o * rowOut + offset, block)
        | F64 x, F64 r ->
            for o in 0 .. outer - 1 do
                Array.Copy(x, o * block, r, o * rowOut + offset, block)
        | _ -> Shape.fail "concat" "mixed dtypes"

        offset <- offset + block

    r

let expand (x: Storage) (xShape: int[]) (shape: int[]) =
    let n = Shape.numel shape
    let r = Storage.uninit x.DType n
    let strides = Shape.broadcastStrides xShape shape

    let isSuffix =
        xShape.Length <= shape.Length && xShape = shape[shape.Length - xShape.Length ..]

    match x, r with
    | _ when isSuffix && x.Length > 0 -> copyRows x x.Length (n / x.Length) (fun _ -> 0) r
    | F32 x, F32 r -> stridedCopy x strides shape r
    | F64 x, F64 r -> stridedCopy x strides shape r
    | _ -> ()

    r
