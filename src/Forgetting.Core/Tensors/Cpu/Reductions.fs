/// Reductions along an axis, softmax, arg-max and median. A tensor reduced along `axis` is viewed as
/// [outer, len, inner]; every output element is summed in a fixed order, so results do not depend on
/// the thread count.
module internal Forgetting.Tensors.Cpu.Reductions

open System
open System.Numerics
open System.Numerics.Tensors
open Forgetting.Tensors

/// The [outer, len, inner] view of a shape around an axis.
let private split (shape: int[]) (axis: int) =
    Shape.numel shape[.. axis - 1], shape[axis], Shape.numel shape[axis + 1 ..]

let inline private reduceLoop
    ([<InlineIfLambda>] combine: ^T -> ^T -> ^T)
    (x: ^T[])
    (outer: int)
    (len: int)
    (inner: int)
    (r: ^T[])
    =
    for o in 0 .. outer - 1 do
        let baseIn = o * len * inner

        for i in 0 .. inner - 1 do
            let mutable acc = x[baseIn + i]

            for k in 1 .. len - 1 do
                acc <- combine acc x[baseIn + k * inner + i]

            r[o * inner + i] <- acc

// One body for both dtypes: inlined at float32 and float64, the same TensorPrimitives calls and the
// same loop order as hand-written twins, so results stay bit-identical.
let inline private reduceTyped< ^T when ^T :> INumber< ^T > and ^T: comparison>
    ([<InlineIfLambda>] isNaN: ^T -> bool)
    (op: ReduceOp)
    (x: ^T[])
    outer
    len
    inner
    (r: ^T[])
    =
    if inner = 1 then
        for o in 0 .. outer - 1 do
            let row = ReadOnlySpan(x, o * len, len)

            r[o] <-
                match op with
                | Sum -> TensorPrimitives.Sum< ^T> row
                | Max -> TensorPrimitives.Max< ^T> row
                | Min -> TensorPrimitives.Min< ^T> row
    else
        match op with
        | Sum ->
            // Row by row, r += x[k] over SIMD spans: per element the same sums in the same order as
            // the scalar loop (x[0] + x[1] + …), a bias gradient's column sums without strided reads.
            // Columns are independent, so they are split across workers.
            Parallelism.forRanges inner (outer * len) (fun first stop ->
                let width = stop - first

                for o in 0 .. outer - 1 do
                    let baseIn = o * len * inner + first
                    let acc = Span(r, o * inner + first, width)
                    ReadOnlySpan(x, baseIn, width).CopyTo acc

                    for k in 1 .. len - 1 do
                        TensorPrimitives.Add(
                            Span< ^T>.op_Implicit acc,
                            ReadOnlySpan(x, baseIn + k * inner, width),
                            acc
                        ))
        | Max -> reduceLoop (fun a b -> if isNaN a || a >= b then a else b) x outer len inner r
        | Min -> reduceLoop (fun a b -> if isNaN a || a <= b then a else b) x outer len inner r

/// Reduce along `axis`; the result has the axis kept with size 1. An empty axis sums to 0 and has no
/// maximum (an error naming the shape).
let reduce (op: ReduceOp) (x: Storage) (shape: int[]) (axis: int) : Storage =
    let outer, len, inner = split shape axis

    if len = 0 then
        match op with
        | Sum -> Storage.zeros x.DType (outer * inner)
        | _ -> Shape.fail "max/min" $"cannot reduce the empty axis {axis} of shape {Shape.show shape}"
    else
        let r = Storage.uninit x.DType (outer * inner)

        match x, r with
        | F32 x, F32 r -> reduceTyped Single.IsNaN op x outer len inner r
        | F64 x, F64 r -> reduceTyped Double.IsNaN op x outer len inner r
        | _ -> ()

        r

let sumAll (x: Storage) =
    match x with
    | F32 a -> float (TensorPrimitives.Sum(ReadOnlySpan a))
    | F64 a -> TensorPrimitives.Sum(ReadOnlySpan a)

let argMax (x: Storage) (shape: int[]) (axis: int) : int[] =
    let outer, len, inner = split shape axis

    if len = 0 then
        Shape.fail "argmax" $"cannot take the arg-max of the empty axis {axis} of shape {Shape.show shape}"

    let v = Storage.toFloat64 x

    Array.init (outer * inner) (fun j ->
        let o, i = j / inner, j % inner
        let mutable best = 0
        let mutable bestV = v[o * len * inner + i]

        for k in 1 .. len - 1 do
            let c = v[(o * len + k) * inner + i]

            if c > bestV then
                best <- k
                bestV <- c

        best)

/// The lower median of all elements (torch.median's convention for an even count).
let median (x: Storage) =
    let v = Storage.toFloat64 x

    if v.Length = 0 then
        Shape.fail "median" "the median of an empty tensor is undefined"

    if Array.exists Double.IsNaN v then
        Shape.fail "median" "the tensor holds NaN"

    Select.kth ((v.Length - 1) / 2) v

let inline private softmaxRows< ^T when ^T :> IFloatingPointIeee754< ^T > and ^T: comparison>
    (log: bool)
    (x: ^T[])
    outer
    len
    inner
    (r: ^T[])
    =
    // Subtract the maximum before exponentiating: exp never overflows and log-softmax never sees log 0.
    let colBuf: ^T[] = Array.zeroCreate len

    for o in 0 .. outer - 1 do
        for i in 0 .. inner - 1 do
            let at k = (o * len + k) * inner + i
            let mutable m = x[at 0]

            for k in 1 .. len - 1 do
                if x[at k] > m then
                    m <- x[at k]

            for k in 0 .. len - 1 do
                colBuf[k] <- x[at k] - m

            let shifted = Array.copy colBuf
            TensorPrimitives.Exp(ReadOnlySpan colBuf, Span colBuf)
            let mutable s = 'T.Zero

            for k in 0 .. len - 1 do
                s <- s + colBuf[k]

            if log then
                let ls = 'T.Log s

                for k in 0 .. len - 1 do
                    r[at k] <- shifted[k] - ls
            else
                for k in 0 .. len - 1 do
                    r[at k] <- colBuf[k] / s

/// Softmax (or log-softmax) along the last axis, row by row through SIMD spans; rows are independent,
/// so they are split across workers (Parallelism.forRanges) without changing any result.
let inline private softmaxLast< ^T when ^T :> IFloatingPointIeee754< ^T > and ^T: comparison>
    (log: bool)
    (x: ^T[])
    outer
    len
    (r: ^T[])
    =
    Parallelism.forRanges outer len (fun first stop ->
        let tmp = if log then Array.zeroCreate< ^T> len else null

        for o in first .. stop - 1 do
            let src = ReadOnlySpan(x, o * len, len)
            let dst = Span(r, o * len, len)
            TensorPrimitives.Subtract(src, TensorPrimitives.Max src, dst)

            if log then
                TensorPrimitives.Exp(Span< ^T>.op_Implicit dst, Span tmp)
                let ls = 'T.Log(TensorPrimitives.Sum(ReadOnlySpan tmp))
                TensorPrimitives.Subtract(Span< ^T>.op_Implicit dst, ls, dst)
            else
                TensorPrimitives.Exp(Span< ^T>.op_Implicit dst, dst)

                TensorPrimitives.Divide(
                    Span< ^T>.op_Implicit dst,
                    TensorPrimitives.Sum(Span< ^T>.op_Implicit dst),
                    dst
                ))

/// s ⊙ (g − Σ g ⊙ s) along the last axis, one row at a time in cache, with the same operations in the
/// same order as the composition (products, their sum, the difference, the product), so the result
/// is bit-identical to it.
let inline private softmaxBackwardLast< ^T when ^T :> IFloatingPointIeee754< ^T > and ^T: comparison>
    (s: ^T[])
    (g: ^T[])
    outer
    len
    (r: ^T[])
    =
    Parallelism.forRanges outer len (fun first stop ->
        let tmp = Array.zeroCreate< ^T> len

        for o in first .. stop - 1 do
            let sRow = ReadOnlySpan(s, o * len, len)
            let gRow = ReadOnlySpan(g, o * len, len)
            let dst = Span(r, o * len, len)
            TensorPrimitives.Multiply(gRow, sRow, Span tmp)
            TensorPrimitives.Subtract(gRow, TensorPrimitives.Sum(ReadOnlySpan tmp), dst)
            TensorPrimitives.Multiply(Span< ^T>.op_Implicit dst, sRow, dst))

/// The softmax gradient along the last axis (RawTensor.SoftmaxBackward), or None for another axis,
/// which the composition handles.
let softmaxBackward (s: Storage) (g: Storage) (shape: int[]) (axis: int) : Storage option =
    let outer, len, inner = split shape axis

    if inner <> 1 || len = 0 then
        None
    else
        let r = Storage.uninit s.DType s.Length

        match s, g, r with
        | F32 s, F32 g, F32 r -> softmaxBackwardLast s g outer len r
        | F64 s, F64 g, F64 r -> softmaxBackwardLast s g outer len r
        | _ -> Shape.fail "softmaxBackward" "mixed dtypes reached the kernel"

        Some r

/// Softmax (or log-softmax) along an axis.
let softmax (log: bool) (x: Storage) (shape: int[]) (axis: int) : Storage =
    let outer, len, inner = split shape axis
    let r = Storage.uninit x.DType x.Length

    if len > 0 then
        match x, r with
        | F32 x, F32 r when inner = 1 -> softmaxLast log x outer len r
        | F64 x, F64 r when inner = 1 -> softmaxLast log x outer len r
        | F32 x, F32 r -> softmaxRows log x outer len inner r
        | F64 x, F64 r -> softmaxRows log x outer len inner r
        | _ -> ()

    r
