/// General matrix multiply, BLAS-style and row-major (cblas with CblasRowMajor):
/// C := alpha · op(A) · op(B) + beta · C, where op(X) is X or its transpose, op(A) is m x k,
/// op(B) is k x n and C is m x n; lda, ldb and ldc are the row strides of the matrices as stored.
/// beta = 0 sets C without reading it (NaN in C is ignored), and alpha = 0 or k = 0 leaves A and B
/// unread, as in the reference BLAS.
///
/// Two providers compute it, the same results within float tolerance: the managed kernel, always
/// there, and the system OpenBLAS when it loads. The managed kernel is the default (its results do not
/// depend on the thread count); FORGETTING_GEMM=openblas
/// (read at the first GEMM) or useProvider choose otherwise; gemmWith names one. One body serves
/// float32 and float64 (sgemm and dgemm are gemm at each).
[<RequireQualifiedAccess>]
module Forgetting.Tensors.Gemm

#nowarn "9" // The managed kernel takes pinned pointers to the caller's arrays.

open System
open System.Numerics
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open Microsoft.FSharp.NativeInterop

module Blas = Forgetting.Tensors.OpenBlas

/// Who computes a GEMM.
type Provider =
    /// The engine's own cache-blocked, vectorised kernel.
    | Managed
    /// cblas_sgemm / cblas_dgemm of the system OpenBLAS.
    | OpenBlas

/// The environment variable that picks the provider: "managed" or "openblas".
[<Literal>]
let EnvironmentVariable = "FORGETTING_GEMM"

/// The providers that can run on this machine: Managed, and OpenBlas when it loads.
let available: Provider list =
    if Blas.available () then
        [ Managed; OpenBlas ]
    else
        [ Managed ]

let private openBlasMissing (what: string) =
    let tried = String.concat ", " Blas.libraryNames
    invalidOp $"{what}: OpenBLAS is not loadable (tried {tried}); on Debian install libopenblas0-pthread"

/// Whether the managed kernels run on AVX-512 here.
let private managedIsWide = Vector512.IsHardwareAccelerated && Avx512F.IsSupported

let private fromEnvironment () =
    // The managed kernels by default: their work is split by output tiles, so a seed gives the same
    // numbers whatever the thread count, which OpenBLAS does not promise (nor keep, measured here).
    // With AVX-512 they also match OpenBLAS's own AVX-512 kernels (bench/RESULTS.md).
    let best = Managed

    match Environment.GetEnvironmentVariable EnvironmentVariable with
    | null -> best
    | text when String.IsNullOrWhiteSpace text -> best
    | text ->
        match text.Trim().ToLowerInvariant() with
        | "managed" -> Managed
        | "openblas" when List.contains OpenBlas available -> OpenBlas
        | "openblas" -> openBlasMissing $"{EnvironmentVariable}={text}"
        | _ -> invalidOp $"{EnvironmentVariable}='{text}' is not a GEMM provider: expected 'managed' or 'openblas'"

// Read at the first GEMM, so a bad setting is reported there (and at every later one) rather than
// while loading the assembly.
let private initial = lazy (fromEnvironment ())
let mutable private chosen: Provider option = None

/// The provider gemm uses now.
let provider () : Provider =
    match chosen with
    | Some p -> p
    | None -> initial.Force()

/// Make `p` the provider of every later gemm (overrides FORGETTING_GEMM).
let useProvider (p: Provider) : unit =
    if p = OpenBlas && not (List.contains OpenBlas available) then
        openBlasMissing "Gemm.useProvider OpenBlas"

    chosen <- Some p

// The checks run on every call, tiny GEMMs included, so they allocate nothing unless they fail:
// the messages are built by these functions, called only then, and no closure captures the shape.
let private shapeText m n k = $"m={m}, n={n}, k={k}"

let private storedText (name: string) trans rows cols m n k =
    let transposed = if trans then " (transposed)" else ""
    $"{name} is stored {rows}x{cols}{transposed} for {shapeText m n k}"

/// One matrix of a GEMM stored rows x cols (as op(X) is transposed or not) at offset, row stride ld.
let private checkMatrix (op: string) m n k (name: string) (ldName: string) trans (array: 'T[]) offset ld rows cols =
    if isNull array then
        invalidArg name $"{op}: {name} is null ({shapeText m n k})"

    if ld < max 1 cols then
        let stored = storedText name trans rows cols m n k
        invalidArg ldName $"{op}: {stored}, so {ldName} must be >= {max 1 cols}, got {ld}"

    if offset < 0 then
        invalidArg (name + "Offset") $"{op}: {name}'s offset must be >= 0, got {offset} ({shapeText m n k})"

    let needed =
        if rows = 0 || cols = 0 then
            int64 offset
        else
            int64 offset + int64 (rows - 1) * int64 ld + int64 cols

    if needed > int64 array.Length then
        let stored = storedText name trans rows cols m n k

        invalidArg
            name
            $"{op}: {stored} with {ldName}={ld} from offset {offset}, so it needs {needed} elements; the array has {array.Length}"

/// Checks gemmOn's arguments; op names the routine in the messages.
let private checkArgs (op: string) transA transB m n k a aOffset lda b bOffset ldb c cOffset ldc =
    if m < 0 || n < 0 || k < 0 then
        invalidArg "m" $"{op}: dimensions must be >= 0, got {shapeText m n k}"

    checkMatrix op m n k "A" "lda" transA a aOffset lda (if transA then k else m) (if transA then m else k)
    checkMatrix op m n k "B" "ldb" transB b bOffset ldb (if transB then n else k) (if transB then k else n)
    checkMatrix op m n k "C" "ldc" false c cOffset ldc m n

// scale and small are written once for both element types against the generic math interfaces,
// with explicit 'T.op_* calls: F#'s operators and `=` do not resolve through those interfaces for
// the declared 'T of gemmOn. For float32 and float64 the JIT makes each call the one instruction
// the operator was, so the products are computed as before, in the same order.

/// C := beta · C, the whole GEMM when alpha = 0 or k = 0.
let inline private scale<'T when 'T :> INumberBase<'T>> m n (beta: 'T) (c: 'T[]) cOffset ldc =
    if 'T.op_Equality (beta, 'T.Zero) then
        for i in 0 .. m - 1 do
            Array.fill c (cOffset + i * ldc) n 'T.Zero
    elif 'T.op_Inequality (beta, 'T.One) then
        for i in 0 .. m - 1 do
            for j in cOffset + i * ldc .. cOffset + i * ldc + n - 1 do
                c[j] <- 'T.op_Multiply (beta, c[j])

// Below this many multiply-adds the direct loop beats packing (by some 50 ns at 4x4x4); at 8x8x8
// the packed kernel is already twice as fast.
let private smallWork = 256L

/// The direct triple loop for tiny products.
let inline private small<'T when 'T :> INumberBase<'T>>
    transA
    transB
    m
    n
    k
    (alpha: 'T)
    (a: 'T[])
    aOffset
    lda
    (b: 'T[])
    bOffset
    ldb
    (beta: 'T)
    (c: 'T[])
    cOffset
    ldc
    =
    for i in 0 .. m - 1 do
        for j in 0 .. n - 1 do
            let mutable s = 'T.Zero

            for p in 0 .. k - 1 do
                let x =
                    if transA then
                        a[aOffset + p * lda + i]
                    else
                        a[aOffset + i * lda + p]

                let y =
                    if transB then
                        b[bOffset + j * ldb + p]
                    else
                        b[bOffset + p * ldb + j]

                s <- 'T.op_Addition (s, 'T.op_Multiply (x, y))

            let at = cOffset + i * ldc + j

            c[at] <-
                if 'T.op_Equality (beta, 'T.Zero) then
                    'T.op_Multiply (alpha, s)
                else
                    'T.op_Addition ('T.op_Multiply (alpha, s), 'T.op_Multiply (beta, c[at]))

// Fma with Avx2 is what the Vector256 kernels use; Avx2 also guarantees Avx for the loads and
// broadcasts.
let private hasFma = Fma.IsSupported && Avx2.IsSupported

// The runtime reports Vector512 as not accelerated on processors that slow their clock for
// 512-bit work, so there the Vector256 kernels stay in use.
let private hasAvx512 = managedIsWide

/// What computes a product: a provider's engine, or (for tests and measurements) one managed
/// kernel named explicitly.
[<RequireQualifiedAccess>]
type internal Engine =
    | Blas
    /// The fastest managed kernel this processor runs.
    | Fast
    /// 8x32 float32 and 8x16 float64 over Vector512.
    | Avx512
    /// 6x16 float32 and 6x8 float64 over Vector256 + FMA.
    | Fma
    /// Vector<T>, for processors with neither.
    | Portable

/// The managed kernels this processor runs, fastest first: the one Fast names, then the others.
let internal kernels: Engine list =
    [ if hasAvx512 then
          Engine.Avx512
      if hasFma then
          Engine.Fma
      Engine.Portable ]

let private avx512x32 = ManagedGemm.Avx512Kernel<float32>()
let private avx512x64 = ManagedGemm.Avx512Kernel<float>()
let private fma32 = ManagedGemm.FmaKernel<float32>()
let private fma64 = ManagedGemm.FmaKernel<float>()
let private portable32 = ManagedGemm.PortableKernel<float32>()
let private portable64 = ManagedGemm.PortableKernel<float>()

// Blocking for this machine class (48 KB L1d, 1 MB L2 per core): a B micro-panel of 256 x 16
// float32 (16 KB) in L1, an A block of 144 x 256 (144 KB) in L2. Throughput changed by under 2%
// across MC 96-240 and KC 256-512, so these are not finely tuned to one processor. Packing an
// element costs about 4 multiply-adds of these kernels.
let private blocking32: ManagedGemm.Blocking =
    { MC = 144
      KC = 256
      NC = 4096
      PackCost = 4.0 }

// A float64 is twice the bytes of a float32, so the same cache footprint holds half the rows of
// an A block and half the columns of B; the depth KC stays.
let private halved (b: ManagedGemm.Blocking) = { b with MC = b.MC / 2; NC = b.NC / 2 }

let private blocking64 = halved blocking32

// The AVX-512 kernels' B micro-panel of 256 x 32 float32 (32 KB) leaves a third of L1 to the A
// rows streaming past it. On Zen 5, 1024^3 and the MLP shapes moved by no more than the noise
// (about 5%) across MC 64-384 and KC 128-512, in either precision. Twice the multiply-adds per
// cycle make a packed element cost twice as many of them: 2 threads on 128x256x784 ran 3% faster
// split by columns, which that weighs right, than by rows.
let private blocking512x32: ManagedGemm.Blocking =
    { MC = 128
      KC = 256
      NC = 4096
      PackCost = 8.0 }

let private blocking512x64 = halved blocking512x32

let private unsupported (engine: Engine) =
    invalidOp $"the managed GEMM kernel {engine} does not run on this processor"

/// Whether 'T is float32; the JIT folds this per instantiation, so each element type keeps only
/// its own branch wherever it is asked.
let inline private isSingle<'T> () =
    Type.op_Equality (typeof<'T>, typeof<float32>)

/// The name of the BLAS routine over 'T, for error messages.
let inline private routine<'T> () =
    if isSingle<'T>() then
        "sgemm"
    elif Type.op_Equality (typeof<'T>, typeof<float>) then
        "dgemm"
    else
        raise (NotSupportedException $"GEMM over {typeof<'T>}")

/// Of a float32 kernel and its float64 twin, the one over 'T: a reference cast, no copy.
let private pick<'T when 'T: unmanaged> (k32: ManagedGemm.Kernel<float32>) (k64: ManagedGemm.Kernel<float>) =
    if isSingle<'T>() then
        box k32 :?> ManagedGemm.Kernel<'T>
    else
        box k64 :?> ManagedGemm.Kernel<'T>

/// The kernel over 'T an engine names (Fast: the first of `kernels`), with its blocking.
let internal kernelOf<'T when 'T: unmanaged> (engine: Engine) : struct (ManagedGemm.Kernel<'T> * ManagedGemm.Blocking) =
    let single = isSingle<'T>()

    match (if engine = Engine.Fast then kernels.Head else engine) with
    | Engine.Avx512 when hasAvx512 ->
        struct (pick<'T> avx512x32 avx512x64, (if single then blocking512x32 else blocking512x64))
    | Engine.Fma when hasFma -> struct (pick<'T> fma32 fma64, (if single then blocking32 else blocking64))
    | Engine.Portable -> struct (pick<'T> portable32 portable64, (if single then blocking32 else blocking64))
    | _ -> unsupported engine

let private engineOf (provider: Provider) =
    match provider with
    | OpenBlas -> Engine.Blas
    | Managed -> kernels.Head

/// The one GEMM body, over float32 (sgemm) and float64 (dgemm).
let internal gemmOn<'T when 'T: unmanaged and 'T :> INumberBase<'T>>
    (engine: Engine)
    (transA: bool)
    (transB: bool)
    (m: int)
    (n: int)
    (k: int)
    (alpha: 'T)
    (a: 'T[])
    (aOffset: int)
    (lda: int)
    (b: 'T[])
    (bOffset: int)
    (ldb: int)
    (beta: 'T)
    (c: 'T[])
    (cOffset: int)
    (ldc: int)
    : unit =
    checkArgs (routine<'T>()) transA transB m n k a aOffset lda b bOffset ldb c cOffset ldc

    if m = 0 || n = 0 then
        ()
    elif k = 0 || 'T.op_Equality (alpha, 'T.Zero) then
        scale m n beta c cOffset ldc
    elif engine <> Engine.Blas && int64 m * int64 n * int64 k <= smallWork then
        small transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc
    else
        // Both providers take pinned, offset pointers.
        use pa = fixed a
        use pb = fixed b
        use pc = fixed c
        let a = NativePtr.toNativeInt (NativePtr.add pa aOffset)
        let b = NativePtr.toNativeInt (NativePtr.add pb bOffset)
        let c = NativePtr.toNativeInt (NativePtr.add pc cOffset)

        if engine = Engine.Blas then
            Blas.gemm transA transB m n k alpha a lda b ldb beta c ldc
        else
            let struct (kernel, blocking) = kernelOf<'T> engine
            ManagedGemm.gemm kernel blocking 'T.One transA transB m n k alpha a lda b ldb beta c ldc

// The public entry points take gemmOn's arguments (their types follow from it) after a provider.

/// C := alpha · op(A) · op(B) + beta · C over float32 or float64, by the given provider.
let gemmWith provider transA transB m n k (alpha: 'T) a aOffset lda b bOffset ldb beta c cOffset ldc : unit =
    gemmOn (engineOf provider) transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc

/// C := alpha · op(A) · op(B) + beta · C over float32 or float64, by the current provider.
let gemm transA transB m n k (alpha: 'T) a aOffset lda b bOffset ldb beta c cOffset ldc : unit =
    gemmOn (engineOf (provider ())) transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc

// The BLAS names, kept for callers outside the library: gemm and gemmWith at one element type.

/// gemmWith over float32.
let sgemmWith provider transA transB m n k (alpha: float32) a aOffset lda b bOffset ldb beta c cOffset ldc =
    gemmWith provider transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc

/// gemmWith over float64.
let dgemmWith provider transA transB m n k (alpha: float) a aOffset lda b bOffset ldb beta c cOffset ldc =
    gemmWith provider transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc

/// gemm over float32.
let sgemm transA transB m n k (alpha: float32) a aOffset lda b bOffset ldb beta c cOffset ldc =
    gemm transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc

/// gemm over float64.
let dgemm transA transB m n k (alpha: float) a aOffset lda b bOffset ldb beta c cOffset ldc =
    gemm transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc
