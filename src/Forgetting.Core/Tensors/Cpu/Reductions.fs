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
        | Sum -> reduceLoop (+) x outer len inner r
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

let inline private softmaxRows
    ([<InlineIfLambda>] expInPlace: ^T[] -> int -> int -> unit)
    ([<InlineIfLambda>] logOf: ^T -> ^T)
    (log: bool)
    (x: ^T[])
    outer
    len
    inner
    (r: ^T[])
    =
    // Subtract the maximum before exponentiating: exp never overflows and log-softmax never sees log 0.
    let colBuf = Array.zeroCreate len

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
            expInPlace colBuf 0 len
            let mutable s = LanguagePrimitives.GenericZero

            for k in 0 .. len - 1 do
                s <- s + colBuf[k]

            if log then
                let ls = logOf s

                for k in 0 .. len - 1 do
                    r[at k] <- shifted[k] - ls
            else
                for k in 0 .. len - 1 do
                    r[at k] <- colBuf[k] / s

let private softmaxLast32 (log: bool) (x: float32[]) outer len (r: float32[]) =
    for o in 0 .. outer - 1 do
        let src = ReadOnlySpan(x, o * len, len)
        let dst = Span(r, o * len, len)
        TensorPrimitives.Subtract(src, TensorPrimitives.Max src, dst)

        if log then
            let tmp = Array.zeroCreate<float32> len
            TensorPrimitives.Exp(Span<float32>.op_Implicit dst, Span tmp)
            let ls = MathF.Log(TensorPrimitives.Sum(ReadOnlySpan tmp))
            TensorPrimitives.Subtract(Span<float32>.op_Implicit dst, ls, dst)
        else
            TensorPrimitives.Exp(Span<float32>.op_Implicit dst, dst)

            TensorPrimitives.Divide(
                Span<float32>.op_Implicit dst,
                TensorPrimitives.Sum(Span<float32>.op_Implicit dst),
                dst
            )

let private softmaxLast64 (log: bool) (x: float[]) outer len (r: float[]) =
    for o in 0 .. outer - 1 do
        let src = ReadOnlySpan(x, o * len, len)
        let dst = Span(r, o * len, len)
        TensorPrimitives.Subtract(src, TensorPrimitives.Max src, dst)

        if log then
            let tmp = Array.zeroCreate<float> len
            TensorPrimitives.Exp(Span<float>.op_Implicit dst, Span tmp)
            let ls = Math.Log(TensorPrimitives.Sum(ReadOnlySpan tmp))
            TensorPrimitives.Subtract(Span<float>.op_Implicit dst, ls, dst)
        else
            TensorPrimitives.Exp(Span<float>.op_Implicit dst, dst)
            TensorPrimitives.Divide(Span<float>.op_Implicit dst, TensorPrimitives.Sum(Span<float>.op_Implicit dst), dst)

/// Softmax (or log-softmax) along an axis.
let softmax (log: bool) (x: Storage) (shape: int[]) (axis: int) : Storage =
    let outer, len, inner = split shape axis
    let r = Storage.uninit x.DType x.Length

    if len > 0 then
        match x, r with
        | F32 x, F32 r when inner = 1 -> softmaxLast32 log x outer len r
        | F64 x, F64 r when inner = 1 -> softmaxLast64 log x outer len r
        | F32 x, F32 r ->
            softmaxRows
                (fun (a: float32[]) o n -> TensorPrimitives.Exp(ReadOnlySpan(a, o, n), Span(a, o, n)))
                MathF.Log
                log
                x
                outer
                len
                inner
                r
        | F64 x, F64 r ->
            softmaxRows
                (fun (a: float[]) o n -> TensorPrimitives.Exp(ReadOnlySpan(a, o, n), Span(a, o, n)))
                Math.Log
                log
                x
                outer
                len
                inner
                r
        | _ -> ()

    r
