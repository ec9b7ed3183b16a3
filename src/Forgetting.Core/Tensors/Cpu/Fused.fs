/// Single-pass CPU kernels for the fused ops of RawTensor: row by row, each row's temporaries in cache.
module internal Forgetting.Tensors.Cpu.Fused

open System
open System.Numerics
open System.Numerics.Tensors

/// g where x > 0, else 0: a vector of elements at a time, then a scalar tail. One body for float32
/// and float64 (a selection, so the same bits as any other way of computing it).
let reluBackward<'T when 'T :> INumber<'T> and 'T: (new: unit -> 'T) and 'T: struct and 'T :> ValueType>
    (x: 'T[])
    (g: 'T[])
    =
    let r = Buffers.Uninit<'T> x.Length
    let w = Vector<'T>.Count
    let mutable i = 0

    while i <= x.Length - w do
        let keep = Vector.GreaterThan(Vector<'T>(x, i), Vector<'T>.Zero)
        Vector.ConditionalSelect(keep, Vector<'T>(g, i), Vector<'T>.Zero).CopyTo(r, i)
        i <- i + w

    while i < x.Length do
        r[i] <- if 'T.op_GreaterThan (x[i], 'T.Zero) then g[i] else 'T.Zero
        i <- i + 1

    r

/// σ = sigmoid(ρ h ⊙ wf), per row of h [rows, n]: three SIMD passes over a row that stays in cache.
let inline private gate< ^T when ^T :> IFloatingPointIeee754< ^T >> (h: ^T[]) (wf: ^T[]) (rho: ^T) =
    let n = wf.Length
    let r = Buffers.Uninit< ^T> h.Length

    for row in 0 .. h.Length / n - 1 do
        let dst = Span(r, row * n, n)
        TensorPrimitives.Multiply(ReadOnlySpan(h, row * n, n), ReadOnlySpan wf, dst)
        TensorPrimitives.Multiply(ReadOnlySpan(r, row * n, n), rho, dst)
        TensorPrimitives.Sigmoid(ReadOnlySpan(r, row * n, n), dst)

    r

let gate32 h wf (rho: float32) = gate h wf rho
let gate64 h wf (rho: float) = gate h wf rho

/// d = g σ (1 − σ) ρ; gh = d ⊙ wf; gwf = Σ_rows d ⊙ h.
let inline private gateBackward (h: ^T[]) (wf: ^T[]) (sigma: ^T[]) (g: ^T[]) (rho: ^T) =
    let n = wf.Length
    let gh = Buffers.Uninit< ^T> h.Length
    let gwf = Array.zeroCreate< ^T> n
    let one = LanguagePrimitives.GenericOne< ^T>

    for row in 0 .. h.Length / n - 1 do
        let o = row * n

        for i in 0 .. n - 1 do
            let s = sigma[o + i]
            let d = g[o + i] * s * (one - s) * rho
            gh[o + i] <- d * wf[i]
            gwf[i] <- gwf[i] + d * h[o + i]

    gh, gwf

let gateBackward32 h wf sigma g (rho: float32) = gateBackward h wf sigma g rho
let gateBackward64 h wf sigma g (rho: float) = gateBackward h wf sigma g rho

/// Batch mean of (Σa)(Σb) − Σ a⊙b per row, a = h(1 − σ), b = hσ; accumulated in float64.
let inline private lateral (h: ^T[]) (sigma: ^T[]) (n: int) =
    let rows = h.Length / n
    let mutable total = 0.0

    for row in 0 .. rows - 1 do
        let o = row * n
        let mutable sa = 0.0
        let mutable sb = 0.0
        let mutable sab = 0.0

        for i in 0 .. n - 1 do
            let b = float (h[o + i] * sigma[o + i])
            let a = float h[o + i] - b
            sa <- sa + a
            sb <- sb + b
            sab <- sab + a * b

        total <- total + (sa * sb - sab)

    total / float rows

let lateral32 (h: float32[]) (sigma: float32[]) n = lateral h sigma n
let lateral64 (h: float[]) (sigma: float[]) n = lateral h sigma n

/// Gradients (h, σ) of `lateral`, times scale.
let inline private lateralBackward (h: ^T[]) (sigma: ^T[]) (n: int) (scale: ^T) =
    let gh = Buffers.Uninit< ^T> h.Length
    let gs = Buffers.Uninit< ^T> h.Length
    let one = LanguagePrimitives.GenericOne< ^T>

    for row in 0 .. h.Length / n - 1 do
        let o = row * n
        let mutable sa = LanguagePrimitives.GenericZero< ^T>
        let mutable sb = LanguagePrimitives.GenericZero< ^T>

        for i in 0 .. n - 1 do
            let b = h[o + i] * sigma[o + i]
            sa <- sa + (h[o + i] - b)
            sb <- sb + b

        for i in 0 .. n - 1 do
            let s = sigma[o + i]
            let b = h[o + i] * s
            let restA = sa - (h[o + i] - b)
            let restB = sb - b
            gh[o + i] <- (restB * (one - s) + restA * s) * scale
            gs[o + i] <- h[o + i] * (restA - restB) * scale

    gh, gs

let lateralBackward32 h sigma n (scale: float32) = lateralBackward h sigma n scale
let lateralBackward64 h sigma n (scale: float) = lateralBackward h sigma n scale

/// What the forgetting layer's forward pass keeps for its backward pass, besides h and wf.
type LayerSaved<'T> =
    {
        /// σ [B, n].
        Sigma: 'T[]
        /// Per row, Σ_i a_i and Σ_i b_i with a = h(1 − σ), b = hσ (the lateral term's sums).
        SumA: 'T[]
        SumB: 'T[]
    }

/// The statistics half of the forgetting layer's forward pass, over σ already computed: the output
/// h ⊙ (1 + σ) (shortcut) or h ⊙ σ, the batch mean σ̄ [n] followed by the lateral term (the batch mean
/// of (Σa)(Σb) − Σ a⊙b) in one [n + 1] vector, all in one pass over [B, n]: SIMD over each row, a
/// scalar tail for the columns past the last full vector. Each row's sums are taken in the element
/// type and added across rows in float64.
let inline private layerStats (ofFloat: float -> ^T) (h: ^T[]) (sigma: ^T[]) (n: int) (shortcut: bool) =
    let rows = h.Length / n
    let w = Vector< ^T>.Count
    let out = Buffers.Uninit< ^T> h.Length
    let colSum = Array.zeroCreate< ^T> n
    let sumA = Buffers.Uninit< ^T> rows
    let sumB = Buffers.Uninit< ^T> rows
    let mutable total = 0.0

    for row in 0 .. rows - 1 do
        let o = row * n
        let mutable va = Vector< ^T>.Zero
        let mutable vb = Vector< ^T>.Zero
        let mutable vab = Vector< ^T>.Zero
        let mutable i = 0

        while i <= n - w do
            let x = Vector< ^T>(h, o + i)
            let s = Vector< ^T>(sigma, o + i)
            let b = x * s
            (if shortcut then x + b else b).CopyTo(out, o + i)
            (Vector< ^T>(colSum, i) + s).CopyTo(colSum, i)
            let a = x - b
            va <- va + a
            vb <- vb + b
            vab <- vab + a * b
            i <- i + w

        let mutable sa = Vector.Sum va
        let mutable sb = Vector.Sum vb
        let mutable sab = Vector.Sum vab

        while i < n do
            let x = h[o + i]
            let s = sigma[o + i]
            let b = x * s
            out[o + i] <- (if shortcut then x + b else b)
            colSum[i] <- colSum[i] + s
            let a = x - b
            sa <- sa + a
            sb <- sb + b
            sab <- sab + a * b
            i <- i + 1

        sumA[row] <- sa
        sumB[row] <- sb
        total <- total + (float sa * float sb - float sab)

    let stats = Buffers.Uninit< ^T>(n + 1)
    let perRow = ofFloat (1.0 / float rows)

    for i in 0 .. n - 1 do
        stats[i] <- colSum[i] * perRow

    stats[n] <- ofFloat (total / float rows)

    out,
    stats,
    { Sigma = sigma
      SumA = sumA
      SumB = sumB }

/// The forgetting layer's forward pass over h [B, n] and wf [n]: σ = sigmoid(ρ h ⊙ wf) (SIMD, row by
/// row), then the output and the [n + 1] statistics of `layerStats`.
let layerForward32 (h: float32[]) (wf: float32[]) (rho: float32) (shortcut: bool) =
    layerStats float32 h (gate32 h wf rho) wf.Length shortcut

let layerForward64 (h: float[]) (wf: float[]) (rho: float) (shortcut: bool) =
    layerStats id h (gate64 h wf rho) wf.Length shortcut

/// The forgetting layer's backward pass in one sweep over [B, n]: from the gradient at the output
/// (null when none reached it), at σ itself (null when none), at the batch means c [n] and at the
/// lateral term l, the gradients at h and wf. Per element, with a = h(1 − σ), b = hσ and the row's sums
/// A, B: ∂/∂σ = g_out h + g_σ + c/B + (l/B) h ((A − a) − (B − b)); ∂/∂h, before the gate,
/// g_out (1 + σ) (σ without the shortcut) + (l/B) ((B − b)(1 − σ) + (A − a) σ); the gate adds
/// d = ∂/∂σ · ρ σ (1 − σ), d·wf to ∂/∂h and Σ_rows d·h to ∂/∂wf.
let inline private layerBackward
    (ofFloat: float -> ^T)
    (h: ^T[])
    (wf: ^T[])
    (saved: LayerSaved< ^T >)
    (gOut: ^T[])
    (gSigma: ^T[])
    (gStats: ^T[])
    (rho: ^T)
    (shortcut: bool)
    =
    let n = wf.Length
    let rows = h.Length / n
    let one = LanguagePrimitives.GenericOne< ^T>
    let perRow: ^T = ofFloat (1.0 / float rows)
    let lB: ^T = gStats[n] * perRow
    let gh = Buffers.Uninit< ^T> h.Length
    let gwf = Array.zeroCreate< ^T> n
    let cB = Array.init n (fun i -> gStats[i] * perRow)
    let hasOut = not (isNull gOut)
    let hasSigma = not (isNull gSigma)
    let sigma = saved.Sigma
    let w = Vector< ^T>.Count
    let vOne = Vector< ^T>.One
    let vRho = Vector< ^T>(value = rho)
    let vlB = Vector< ^T>(value = lB)

    for row in 0 .. rows - 1 do
        let o = row * n
        let sa: ^T = saved.SumA[row]
        let sb: ^T = saved.SumB[row]
        let vsa = Vector< ^T>(value = sa)
        let vsb = Vector< ^T>(value = sb)
        let mutable i = 0

        // The same formulas as the scalar tail below, a vector of columns at a time.
        while i <= n - w do
            let x = Vector< ^T>(h, o + i)
            let s = Vector< ^T>(sigma, o + i)
            let b = x * s
            let restA = vsa - (x - b)
            let restB = vsb - b
            let mutable gs = Vector< ^T>(cB, i) + vlB * x * (restA - restB)
            let mutable gx = vlB * (restB * (vOne - s) + restA * s)

            if hasOut then
                let go = Vector< ^T>(gOut, o + i)
                gs <- gs + go * x
                gx <- gx + go * (if shortcut then vOne + s else s)

            if hasSigma then
                gs <- gs + Vector< ^T>(gSigma, o + i)

            let d = gs * s * (vOne - s) * vRho
            (gx + d * Vector< ^T>(wf, i)).CopyTo(gh, o + i)
            (Vector< ^T>(gwf, i) + d * x).CopyTo(gwf, i)
            i <- i + w

        while i < n do
            let x = h[o + i]
            let s = sigma[o + i]
            let b = x * s
            let restA = sa - (x - b)
            let restB = sb - b
            let mutable gs = cB[i] + lB * x * (restA - restB)
            let mutable gx = lB * (restB * (one - s) + restA * s)

            if hasOut then
                let go = gOut[o + i]
                gs <- gs + go * x
                gx <- gx + go * (if shortcut then one + s else s)

            if hasSigma then
                gs <- gs + gSigma[o + i]

            let d = gs * s * (one - s) * rho
            gh[o + i] <- gx + d * wf[i]
            gwf[i] <- gwf[i] + d * x
            i <- i + 1

    gh, gwf

let layerBackward32 h wf saved gOut gSigma gStats (rho: float32) shortcut =
    layerBackward float32 h wf saved gOut gSigma gStats rho shortcut

let layerBackward64 h wf saved gOut gSigma gStats (rho: float) shortcut =
    layerBackward id h wf saved gOut gSigma gStats rho shortcut
