/// Elementwise CPU kernels: TensorPrimitives (SIMD) where it has the op, plain loops elsewhere.
module internal Forgetting.Tensors.Cpu.Elementwise

open System
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

let private unary32 (op: UnaryOp) (x: float32[]) (r: float32[]) =
    match op with
    | Neg -> TensorPrimitives.Negate(ro x, rw r)
    | Exp -> TensorPrimitives.Exp(ro x, rw r)
    | Log -> TensorPrimitives.Log(ro x, rw r)
    | Sqrt -> TensorPrimitives.Sqrt(ro x, rw r)
    | Abs -> TensorPrimitives.Abs(ro x, rw r)
    | Sign -> signInto x r
    | Tanh -> TensorPrimitives.Tanh(ro x, rw r)
    | Sigmoid -> TensorPrimitives.Sigmoid(ro x, rw r)
    | Relu -> TensorPrimitives.Max(ro x, 0.0f, rw r)
    | Step -> map step x r
    | Square -> TensorPrimitives.Multiply(ro x, ro x, rw r)
    | Reciprocal -> TensorPrimitives.Divide(1.0f, ro x, rw r)
    | Erf -> map (fun v -> float32 (erf (float v))) x r

let private unary64 (op: UnaryOp) (x: float[]) (r: float[]) =
    match op with
    | Neg -> TensorPrimitives.Negate(ro x, rw r)
    | Exp -> TensorPrimitives.Exp(ro x, rw r)
    | Log -> TensorPrimitives.Log(ro x, rw r)
    | Sqrt -> TensorPrimitives.Sqrt(ro x, rw r)
    | Abs -> TensorPrimitives.Abs(ro x, rw r)
    | Sign -> signInto x r
    | Tanh -> TensorPrimitives.Tanh(ro x, rw r)
    | Sigmoid -> TensorPrimitives.Sigmoid(ro x, rw r)
    | Relu -> TensorPrimitives.Max(ro x, 0.0, rw r)
    | Step -> map step x r
    | Square -> TensorPrimitives.Multiply(ro x, ro x, rw r)
    | Reciprocal -> TensorPrimitives.Divide(1.0, ro x, rw r)
    | Erf -> map erf x r

let unary (op: UnaryOp) (x: Storage) : Storage =
    let r = Storage.uninit x.DType x.Length

    match x, r with
    | F32 x, F32 r -> unary32 op x r
    | F64 x, F64 r -> unary64 op x r
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
    | Maximum -> fun a b -> if Double.IsNaN(float a) || a > b then a else b
    | Minimum -> fun a b -> if Double.IsNaN(float a) || a < b then a else b
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

/// Same-length spans: one SIMD call where TensorPrimitives has the op.
let private same32 (op: BinaryOp) (a: ReadOnlySpan<float32>) (b: ReadOnlySpan<float32>) (r: Span<float32>) =
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

let private same64 (op: BinaryOp) (a: ReadOnlySpan<float>) (b: ReadOnlySpan<float>) (r: Span<float>) =
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
let private scalar32 (op: BinaryOp) (a: ReadOnlySpan<float32>) (s: float32) (scalarFirst: bool) (r: Span<float32>) =
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

let private scalar64 (op: BinaryOp) (a: ReadOnlySpan<float>) (s: float) (scalarFirst: bool) (r: Span<float>) =
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
    | F32 x, F32 r -> scalar32 op (ReadOnlySpan x) (float32 s) scalarFirst (Span r)
    | F64 x, F64 r -> scalar64 op (ReadOnlySpan x) s scalarFirst (Span r)
    | _ -> ()

    r

/// The general broadcast loop: walk the output in row-major order, reading each input through its
/// broadcast strides (0 along stretched axes).
let inline private broadcastLoop
    ([<InlineIfLambda>] f: ^T -> ^T -> ^T)
    (a: ^T[])
    (sa: int[])
    (b: ^T[])
    (sb: int[])
    (shape: int[])
    (r: ^T[])
    =
    let rank = shape.Length
    let index = Array.zeroCreate rank
    let mutable ia = 0
    let mutable ib = 0

    for i in 0 .. r.Length - 1 do
        r[i] <- f a[ia] b[ib]
        // Advance the multi-index like an odometer, updating both input offsets incrementally.
        let mutable d = rank - 1
        let mutable carry = true

        while carry && d >= 0 do
            index[d] <- index[d] + 1
            ia <- ia + sa[d]
            ib <- ib + sb[d]

            if index[d] < shape[d] then
                carry <- false
            else
                ia <- ia - sa[d] * shape[d]
                ib <- ib - sb[d] * shape[d]
                index[d] <- 0
                d <- d - 1

/// op(a, b) with NumPy broadcasting. Fast paths: equal shapes, a scalar side, and a trailing
/// block broadcast over rows (bias addition), all through SIMD spans.
let binary (op: BinaryOp) (a: Storage) (aShape: int[]) (b: Storage) (bShape: int[]) (shape: int[]) : Storage =
    let n = Shape.numel shape
    let r = Storage.uninit a.DType n

    let bIsSuffix =
        bShape.Length <= aShape.Length
        && bShape = aShape[aShape.Length - bShape.Length ..]

    let aIsSuffix =
        aShape.Length <= bShape.Length
        && aShape = bShape[bShape.Length - aShape.Length ..]

    match a, b, r with
    | F32 x, F32 y, F32 z ->
        if x.Length = n && y.Length = n then
            same32 op (ReadOnlySpan x) (ReadOnlySpan y) (Span z)
        elif y.Length = 1 then
            scalar32 op (ReadOnlySpan x) y[0] false (Span z)
        elif x.Length = 1 then
            scalar32 op (ReadOnlySpan y) x[0] true (Span z)
        elif bIsSuffix && x.Length = n then
            for row in 0 .. n / y.Length - 1 do
                same32
                    op
                    (ReadOnlySpan(x, row * y.Length, y.Length))
                    (ReadOnlySpan y)
                    (Span(z, row * y.Length, y.Length))
        elif aIsSuffix && y.Length = n then
            for row in 0 .. n / x.Length - 1 do
                same32
                    op
                    (ReadOnlySpan x)
                    (ReadOnlySpan(y, row * x.Length, x.Length))
                    (Span(z, row * x.Length, x.Length))
        else
            broadcastLoop
                (scalarOf op)
                x
                (Shape.broadcastStrides aShape shape)
                y
                (Shape.broadcastStrides bShape shape)
                shape
                z
    | F64 x, F64 y, F64 z ->
        if x.Length = n && y.Length = n then
            same64 op (ReadOnlySpan x) (ReadOnlySpan y) (Span z)
        elif y.Length = 1 then
            scalar64 op (ReadOnlySpan x) y[0] false (Span z)
        elif x.Length = 1 then
            scalar64 op (ReadOnlySpan y) x[0] true (Span z)
        elif bIsSuffix && x.Length = n then
            for row in 0 .. n / y.Length - 1 do
                same64
                    op
                    (ReadOnlySpan(x, row * y.Length, y.Length))
                    (ReadOnlySpan y)
                    (Span(z, row * y.Length, y.Length))
        elif aIsSuffix && y.Length = n then
            for row in 0 .. n / x.Length - 1 do
                same64
                    op
                    (ReadOnlySpan x)
                    (ReadOnlySpan(y, row * x.Length, x.Length))
                    (Span(z, row * x.Length, x.Length))
        else
            broadcastLoop
                (scalarOf op)
                x
                (Shape.broadcastStrides aShape shape)
                y
                (Shape.broadcastStrides bShape shape)
                shape
                z
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
