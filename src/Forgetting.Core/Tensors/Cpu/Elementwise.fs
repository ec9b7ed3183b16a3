/// Elementwise CPU kernels: TensorPrimitives (SIMD) where it has the op, plain loops elsewhere.
module internal Forgetting.Tensors.Cpu.Elementwise

open System
open System.Numerics
open System.Numerics.Tensors
open Forgetting.Tensors

let inline private ro (a: 'T[]) = ReadOnlySpan<'T>(a)
let inline private rw (a: 'T[]) = Span<'T>(a)

let inline private map ([<InlineIfLambda>] f: ^T -> ^T) (x: ^T[]) (r: ^T[]) =
    for i in 0 .. x.Length - 1 do
        r[i] <- f x[i]

let inline private step (x: ^T) =
    if x > LanguagePrimitives.GenericZero then
        LanguagePrimitives.GenericOne
    else
        LanguagePrimitives.GenericZero

/// erf(x) to about 1e-15: its Maclaurin series for |x| ≤ 2 (the largest term is below 3, so
/// cancellation costs about one digit), else 1 − erfc(x) with erfc's continued fraction
/// erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))) evaluated by the modified Lentz
/// method (Abramowitz & Stegun 7.1.5 and 7.1.14).
let erf (x: float) =
    if Double.IsNaN x then
        x
    elif abs x <= 2.0 then
        // Σ_n (−1)ⁿ x^(2n+1) / (n! (2n+1)), times 2/√π.
        let x2 = x * x
        let mutable term = x
        let mutable sum = x
        let mutable n = 0

        while abs term > 1e-17 * abs sum do
            n <- n + 1
            term <- -term * x2 / float n
            sum <- sum + term / float (2 * n + 1)

        sum * 2.0 / sqrt Math.PI
    else
        let a = abs x
        // f = a + (1/2)/(a + (2/2)/(a + (3/2)/(a + …))): Lentz on b_k = a, a_k = k/2.
        let tiny = 1e-300
        let mutable f = a
        let mutable c = a
        let mutable d = 0.0
        let mutable k = 1
        let mutable delta = 0.0

        while k = 1 || abs (delta - 1.0) > 1e-16 do
            let ak = float k / 2.0
            d <- a + ak * d
            d <- if abs d < tiny then tiny else d
            c <- a + ak / c
            c <- if abs c < tiny then tiny else c
            d <- 1.0 / d
            delta <- c * d
            f <- f * delta
            k <- k + 1

        let erfc = exp (-a * a) / sqrt Math.PI / f
        if x > 0.0 then 1.0 - erfc else erfc - 1.0

/// sign(x): 1, −1, or 0 at 0 and at NaN (neither comparison holds), over SIMD lanes: a scalar loop's
/// branch on a random sign mispredicts half the time (6 ns an element), and a binarized net takes the
/// sign of every weight matrix at every step.
let private signInto<'T when 'T: struct and 'T: (new: unit -> 'T) and 'T :> ValueType> (x: 'T[]) (r: 'T[]) =
    let lanes = Numerics.Vector<'T>.Count
    let one, zero = Numerics.Vector<'T>.One, Numerics.Vector<'T>.Zero
    let minusOne = Numerics.Vector.Negate one
    let mutable i = 0

    while i + lanes <= x.Length do
        let v = Numerics.Vector<'T>(x, i)

        let below =
            Numerics.Vector.ConditionalSelect(Numerics.Vector.LessThan(v, zero), minusOne, zero)

        Numerics.Vector.ConditionalSelect(Numerics.Vector.GreaterThan(v, zero), one, below).CopyTo(r, i)
        i <- i + lanes

    // The tail, lane by lane through the same vector ops (a vector of one element and zeros).
    if i < x.Length then
        let tail = Array.zeroCreate<'T> lanes
        Array.blit x i tail 0 (x.Length - i)
        let v = Numerics.Vector<'T>(tail)

        let below =
            Numerics.Vector.ConditionalSelect(Numerics.Vector.LessThan(v, zero), minusOne, zero)

        let out = Array.zeroCreate<'T> lanes
        Numerics.Vector.ConditionalSelect(Numerics.Vector.GreaterThan(v, zero), one, below).CopyTo(out)
        Array.blit out 0 r i (x.Length - i)

/// One body for both dtypes, inlined at each: the same TensorPrimitives calls as hand-written twins.
let inline private unaryTyped< ^T
    when ^T :> IFloatingPointIeee754< ^T >
    and ^T: comparison
    and ^T: struct
    and ^T: (new: unit -> ^T)
    and ^T :> ValueType>
    ([<InlineIfLambda>] erfOf: ^T -> ^T)
    (op: UnaryOp)
    (x: ^T[])
    (r: ^T[])
    =
    match op with
    | Neg -> TensorPrimitives.Negate(ro x, rw r)
    | Exp -> TensorPrimitives.Exp(ro x, rw r)
    | Log -> TensorPrimitives.Log(ro x, rw r)
    | Sqrt -> TensorPrimitives.Sqrt(ro x, rw r)
    | Abs -> TensorPrimitives.Abs(ro x, rw r)
    | Sign -> signInto x r
    | Tanh -> TensorPrimitives.Tanh(ro x, rw r)
    | Sigmoid -> TensorPrimitives.Sigmoid(ro x, rw r)
    | Relu -> TensorPrimitives.Max(ro x, 'T.Zero, rw r)
    | Step -> map step x r
    | Square -> TensorPrimitives.Multiply(ro x, ro x, rw r)
    | Reciprocal -> TensorPrimitives.Divide('T.One, ro x, rw r)
    | Erf -> map erfOf x r

let unary (op: UnaryOp) (x: Storage) : Storage =
    let r = Storage.uninit x.DType x.Length

    match x, r with
    // float32 through the float64 erf, rounded once.
    | F32 x, F32 r -> unaryTyped (fun v -> float32 (erf (float v))) op x r
    | F64 x, F64 r -> unaryTyped erf op x r
    | _ -> ()

    r

/// The scalar function behind each binary op, for the loops that TensorPrimitives does not cover.
let inline private scalarOf (op: BinaryOp) : ^T -> ^T -> ^T =
    match op with
    | Add -> (+)
    | Sub -> (-)
    | Mul -> (*)
    | Div -> (/)
    | Pow -> fun a b -> a ** b
    // a <> a: NaN, which propagates as in TensorPrimitives.Max and Min.
    | Maximum -> fun a b -> if a <> a || a > b then a else b
    | Minimum -> fun a b -> if a <> a || a < b then a else b
    | Greater ->
        fun a b ->
            if a > b then
                LanguagePrimitives.GenericOne
            else
                LanguagePrimitives.GenericZero
    | Equal ->
        fun a b ->
            if a = b then
                LanguagePrimitives.GenericOne
            else
                LanguagePrimitives.GenericZero

/// Same-length spans: one SIMD call where TensorPrimitives has the op. One body for both dtypes,
/// inlined at each, so float32 and float64 run the same calls as hand-written twins did.
let inline private same< ^T when ^T :> IFloatingPointIeee754< ^T > and ^T: comparison>
    (op: BinaryOp)
    (a: ReadOnlySpan< ^T >)
    (b: ReadOnlySpan< ^T >)
    (r: Span< ^T >)
    =
    match op with
    | Add -> TensorPrimitives.Add(a, b, r)
    | Sub -> TensorPrimitives.Subtract(a, b, r)
    | Mul -> TensorPrimitives.Multiply(a, b, r)
    | Div -> TensorPrimitives.Divide(a, b, r)
    | Pow -> TensorPrimitives.Pow(a, b, r)
    | Maximum -> TensorPrimitives.Max(a, b, r)
    | Minimum -> TensorPrimitives.Min(a, b, r)
    | Greater
    | Equal ->
        let f = scalarOf op

        for i in 0 .. r.Length - 1 do
            r[i] <- f a[i] b[i]

/// A span against a scalar, in either order.
let inline private withScalar< ^T when ^T :> IFloatingPointIeee754< ^T > and ^T: comparison>
    (op: BinaryOp)
    (a: ReadOnlySpan< ^T >)
    (s: ^T)
    (scalarFirst: bool)
    (r: Span< ^T >)
    =
    match op, scalarFirst with
    | Add, _ -> TensorPrimitives.Add(a, s, r)
    | Mul, _ -> TensorPrimitives.Multiply(a, s, r)
    | Sub, false -> TensorPrimitives.Subtract(a, s, r)
    | Sub, true -> TensorPrimitives.Subtract(s, a, r)
    | Div, false -> TensorPrimitives.Divide(a, s, r)
    | Div, true -> TensorPrimitives.Divide(s, a, r)
    | Maximum, _ -> TensorPrimitives.Max(a, s, r)
    | Minimum, _ -> TensorPrimitives.Min(a, s, r)
    | _ ->
        let f = scalarOf op

        for i in 0 .. r.Length - 1 do
            r[i] <- if scalarFirst then f s a[i] else f a[i] s

let binaryScalar (op: BinaryOp) (x: Storage) (s: float) (scalarFirst: bool) : Storage =
    let r = Storage.uninit x.DType x.Length

    match x, r with
    | F32 x, F32 r -> withScalar op (ReadOnlySpan x) (float32 s) scalarFirst (Span r)
    | F64 x, F64 r -> withScalar op (ReadOnlySpan x) s scalarFirst (Span r)
    | _ -> ()

    r

/// op(a, b) over a collapsed broadcast walk (Layout.collapse): each innermost row is one span call,
/// both inputs running along it (equal shapes: one row of everything; a bias: rows of its length) or
/// one of them fixed (a column of per-row statistics, a scalar, a per-head scale). After collapsing,
/// an input's step along the innermost axis is 1, or 0 where it is broadcast; never both 0, since an
/// axis of size 1 in both is dropped (a single element walks [1] with steps 1). Large work is split
/// across workers by rows, or a single row by fixed chunks; every element is computed alone, so the
/// split changes nothing.
let inline private broadcastTyped< ^T when ^T :> IFloatingPointIeee754< ^T > and ^T: comparison>
    (op: BinaryOp)
    (x: ^T[])
    (y: ^T[])
    (z: ^T[])
    (dims: int[])
    (sa: int[])
    (sb: int[])
    =
    let last = dims.Length - 1
    let stepA, stepB = sa[last], sb[last]

    if (stepA <> 0 && stepA <> 1) || (stepB <> 0 && stepB <> 1) || stepA + stepB = 0 then
        Shape.fail "binary" $"innermost broadcast steps ({stepA}, {stepB}) (expected 0 or 1)"

    // Elements from..from+count-1 of the row whose output and input offsets are o, ia, ib.
    let inline piece o ia ib from count =
        let out = Span(z, o + from, count)

        match stepA, stepB with
        | 1, 1 -> same op (ReadOnlySpan(x, ia + from, count)) (ReadOnlySpan(y, ib + from, count)) out
        | 1, _ -> withScalar op (ReadOnlySpan(x, ia + from, count)) y[ib] false out
        | _ -> withScalar op (ReadOnlySpan(y, ib + from, count)) x[ia] true out

    let inner = dims[last]
    let rows = Layout.rowCount dims

    if rows = 1 then
        // Chunks of a fixed size, whatever the thread count: a SIMD kernel may treat a span's tail
        // apart from its body, so the boundaries must not move with the split.
        let chunk = 1 <<< 14

        Parallelism.forRanges ((inner + chunk - 1) / chunk) chunk (fun first stop ->
            for c in first .. stop - 1 do
                piece 0 0 0 (c * chunk) (min chunk (inner - c * chunk)))
    else
        Parallelism.forRanges rows inner (fun first stop ->
            Layout.rowsBetween first stop dims sa sb (fun o ia ib -> piece o ia ib 0 inner))

/// op(a, b) with NumPy broadcasting, through SIMD spans (broadcastTyped).
let binary (op: BinaryOp) (a: Storage) (aShape: int[]) (b: Storage) (bShape: int[]) (shape: int[]) : Storage =
    let n = Shape.numel shape
    let r = Storage.uninit a.DType n

    let dims, steps =
        Layout.collapse shape [| Shape.broadcastStrides aShape shape; Shape.broadcastStrides bShape shape |]

    if n > 0 then
        match a, b, r with
        | F32 x, F32 y, F32 z -> broadcastTyped op x y z dims steps[0] steps[1]
        | F64 x, F64 y, F64 z -> broadcastTyped op x y z dims steps[0] steps[1]
        | _ -> Shape.fail "binary" "mixed dtypes reached the kernel"

    r

/// Elementwise select: mask <> 0 ? a : b, all three broadcast to `shape` first.
let where (mask: Storage) (mShape: int[]) (a: Storage) (aShape: int[]) (b: Storage) (bShape: int[]) (shape: int[]) =
    let m = Storage.toFloat64 (Layout.expand mask mShape shape)

    match Layout.expand a aShape shape, Layout.expand b bShape shape with
    | F32 x, F32 y -> F32(Array.init m.Length (fun i -> if m[i] <> 0.0 then x[i] else y[i]))
    | F64 x, F64 y -> F64(Array.init m.Length (fun i -> if m[i] <> 0.0 then x[i] else y[i]))
    | _ -> Shape.fail "where" "mixed dtypes reached the kernel"

let clamp (x: Storage) (lo: float) (hi: float) =
    match x with
    | F32 a ->
        let r = Array.zeroCreate a.Length
        TensorPrimitives.Clamp(ReadOnlySpan a, float32 lo, float32 hi, Span r)
        F32 r
    | F64 a ->
        let r = Array.zeroCreate a.Length
        TensorPrimitives.Clamp(ReadOnlySpan a, lo, hi, Span r)
        F64 r
