/// Kernels that move elements without arithmetic: permute, gather, scatter-add, concat, expand.
module internal Forgetting.Tensors.Cpu.Layout

open System
open Forgetting.Tensors

/// A walk of `shape` in row-major order through each input's `strides` (its step along each axis),
/// collapsed: axes of size 1 are dropped, and an axis merges into the one inside it where every input
/// steps across the pair as across one axis (stride[d] = stride[d+1] · shape[d+1], stride 0 included).
/// A bias row, a column of per-row statistics, a [1, H, 1, 1] scale or a permutation that keeps the
/// last axes together so become a few long rows, the unit that the SIMD span kernels take whole; an
/// element-by-element walk through four axes cost several nanoseconds an element. At least one axis
/// is left (a single element walks [1] with step 1).
let collapse (shape: int[]) (strides: int[][]) : int[] * int[][] =
    let dims = ResizeArray<int>()
    let steps = strides |> Array.map (fun _ -> ResizeArray<int>())

    for d in shape.Length - 1 .. -1 .. 0 do
        if shape[d] <> 1 then
            let last = dims.Count - 1

            if
                last >= 0
                && Array.forall2 (fun (s: int[]) (st: ResizeArray<int>) -> s[d] = st[last] * dims[last]) strides steps
            then
                dims[last] <- dims[last] * shape[d]
            else
                dims.Add shape[d]
                Array.iter2 (fun (s: int[]) (st: ResizeArray<int>) -> st.Add s[d]) strides steps

    if dims.Count = 0 then
        [| 1 |], strides |> Array.map (fun _ -> [| 1 |])
    else
        let outward (xs: ResizeArray<int>) = Array.rev (xs.ToArray())
        outward dims, steps |> Array.map outward

/// The innermost rows first .. stop-1 of a collapsed walk of two inputs: `row` gets each row's output
/// offset and the two inputs' offsets; a row's length is the last of `dims`.
let inline rowsBetween
    (first: int)
    (stop: int)
    (dims: int[])
    (sa: int[])
    (sb: int[])
    ([<InlineIfLambda>] row: int -> int -> int -> unit)
    =
    let rank = dims.Length
    let inner = dims[rank - 1]
    let index = Array.zeroCreate rank
    let mutable oa = 0
    let mutable ob = 0
    let mutable rest = first

    // The multi-index of row `first` over the outer axes, and the inputs' offsets there.
    for d in rank - 2 .. -1 .. 0 do
        index[d] <- rest % dims[d]
        rest <- rest / dims[d]
        oa <- oa + index[d] * sa[d]
        ob <- ob + index[d] * sb[d]

    for i in first .. stop - 1 do
        row (i * inner) oa ob
        // Advance the outer multi-index like an odometer, updating both input offsets incrementally.
        let mutable d = rank - 2
        let mutable carry = true

        while carry && d >= 0 do
            index[d] <- index[d] + 1
            oa <- oa + sa[d]
            ob <- ob + sb[d]

            if index[d] < dims[d] then
                carry <- false
            else
                oa <- oa - sa[d] * dims[d]
                ob <- ob - sb[d] * dims[d]
                index[d] <- 0
                d <- d - 1

/// The number of innermost rows of a collapsed walk.
let rowCount (dims: int[]) =
    let inner = dims[dims.Length - 1]
    if inner = 0 then 0 else Shape.numel dims / inner

/// Every row of a collapsed walk of one input, the rows split across workers when the copy is large
/// (a copy is the same whichever worker makes it).
let inline private copyRows1 (dims: int[]) (s: int[]) ([<InlineIfLambda>] row: int -> int -> unit) =
    let inner = dims[dims.Length - 1]

    Parallelism.forRanges (rowCount dims) inner (fun first stop ->
        rowsBetween first stop dims s s (fun o i _ -> row o i))

/// Fill r (of `shape`, row-major) by reading x through `strides`, collapsed first. Rows that stay
/// contiguous are block copies, a broadcast row is a fill, and a swap of the last two axes (a batch of
/// transposes, as attention's kᵀ) goes in 32×32 tiles so that both sides stay in cache.
let inline private stridedCopy (x: ^T[]) (strides: int[]) (shape: int[]) (r: ^T[]) =
    let dims, st = collapse shape [| strides |]
    let s = st[0]
    let rank = dims.Length
    let inner = dims[rank - 1]

    if r.Length = 0 then
        ()
    elif s[rank - 1] = 1 then
        copyRows1 dims s (fun o i -> Array.Copy(x, i, r, o, inner))
    elif s[rank - 1] = 0 then
        copyRows1 dims s (fun o i -> Array.Fill(r, x[i], o, inner))
    elif rank >= 2 && s[rank - 2] = 1 && s[rank - 1] = dims[rank - 2] then
        // Output blocks [c, r] read from input blocks [r, c]: r = dims[rank-1], c = dims[rank-2].
        let rowsIn, colsIn = dims[rank - 1], dims[rank - 2]
        let outerDims = Array.append dims[.. rank - 3] [| rowsIn * colsIn |]
        let outerSteps = Array.append s[.. rank - 3] [| 1 |]
        let tile = 32

        copyRows1 outerDims outerSteps (fun o i ->
            for i0 in 0..tile .. rowsIn - 1 do
                for j0 in 0..tile .. colsIn - 1 do
                    for a in i0 .. min rowsIn (i0 + tile) - 1 do
                        for b in j0 .. min colsIn (j0 + tile) - 1 do
                            r[o + b * rowsIn + a] <- x[i + a * colsIn + b])
    else
        let step = s[rank - 1]

        copyRows1 dims s (fun o i ->
            for j in 0 .. inner - 1 do
                r[o + j] <- x[i + j * step])

let permute (x: Storage) (shape: int[]) (axes: int[]) : Storage =
    let r = Storage.uninit x.DType x.Length
    let inStrides = Shape.strides shape
    let outShape = axes |> Array.map (fun a -> shape[a])
    let strides = axes |> Array.map (fun a -> inStrides[a])

    match x, r with
    | F32 x, F32 r -> stridedCopy x strides outShape r
    | F64 x, F64 r -> stridedCopy x strides outShape r
    | _ -> ()

    r

/// Copy `count` rows of `rowLen` elements; source and destination row indices from the two maps.
// Rows split over the cores: a batch gathered from a dataset far larger than the caches waits on
// memory row by row, and two cores wait on two rows at once (65 us against 31 us for 128 rows of
// 784 float32 on the 2-vCPU Xeon of bench/RESULTS.md).
let private copyRows (x: Storage) (rowLen: int) (count: int) (srcRow: int -> int) (r: Storage) =
    let copy (x: 'T[]) (r: 'T[]) =
        Parallelism.forRanges count rowLen (fun first stop ->
            for i in first .. stop - 1 do
                Array.Copy(x, srcRow i * rowLen, r, i * rowLen, rowLen))

    match x, r with
    | F32 x, F32 r -> copy x r
    | F64 x, F64 r -> copy x r
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
    let r = Storage.uninit x.DType (Shape.numel shape)
    let strides = Shape.broadcastStrides xShape shape

    match x, r with
    | F32 x, F32 r -> stridedCopy x strides shape r
    | F64 x, F64 r -> stridedCopy x strides shape r
    | _ -> ()

    r
