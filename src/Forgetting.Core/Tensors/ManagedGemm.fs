/// The managed GEMM: cache-blocked and packed in the manner of Goto and van de Geijn (BLIS), with
/// register-blocked micro-kernels over Vector512 (AVX-512), over Vector256 + FMA, and a portable
/// Vector<T> one for other processors.
/// Callers (Gemm) check the arguments and handle the degenerate cases (m, n or k = 0, alpha = 0).
module internal Forgetting.Tensors.ManagedGemm

#nowarn "9" // Pointer arithmetic over pinned arrays: the micro-kernel must address packed panels directly.

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.InteropServices
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open Microsoft.FSharp.NativeInterop

/// A register-blocked micro-kernel: C[0..MR, 0..NR) := alpha · A·B + beta · C over a depth of kc,
/// where A's element (r, p) is at a + r·aRow + p·aStep (so one kernel reads both packed layouts of
/// A) and B's element (p, j) is at b + p·NR + j. beta = 0 writes C without reading it.
[<AbstractClass>]
type Kernel<'T when 'T: unmanaged>(mr: int, nr: int) =
    member _.MR = mr
    member _.NR = nr

    /// A kernel of the same height for the last panel of B when it is narrow enough for it, where
    /// a kernel this wide would mostly multiply zero padding.
    abstract Narrow: Kernel<'T> option
    default _.Narrow = None

    /// Whether the copies around this kernel (packing partial panels, edge tiles of C) may use
    /// AVX-512 masked moves. Only kernels that need AVX-512 anyway say so, which keeps the plain
    /// copies that other processors run tested wherever the other kernels are.
    abstract MaskedMoves: bool
    default _.MaskedMoves = false

    abstract Run:
        kc: int *
        a: nativeptr<'T> *
        aRow: int *
        aStep: int *
        b: nativeptr<'T> *
        c: nativeptr<'T> *
        ldc: int *
        alpha: 'T *
        beta: 'T ->
            unit

// The kernels are generic over float32 and float64: the JIT compiles a generic method once per
// value type it is instantiated with, so the type tests below are constants in each compilation and
// only the matching branch remains. The hardware multiply-adds exist only as float32 and float64
// overloads, hence these dispatches; every other operation is Vector256<'T> or Vector512<'T>'s own.

/// x·y + z rounded once (vfmadd), lane by lane.
let inline private fma256 (x: Vector256<'T>) (y: Vector256<'T>) (z: Vector256<'T>) : Vector256<'T> =
    if Type.op_Equality (typeof<'T>, typeof<float32>) then
        Vector256.As<float32, 'T>(Fma.MultiplyAdd(Vector256.AsSingle x, Vector256.AsSingle y, Vector256.AsSingle z))
    elif Type.op_Equality (typeof<'T>, typeof<float>) then
        Vector256.As<float, 'T>(Fma.MultiplyAdd(Vector256.AsDouble x, Vector256.AsDouble y, Vector256.AsDouble z))
    else
        raise (NotSupportedException $"GEMM kernels over {typeof<'T>}")

/// x·y + z rounded once, over zmm registers.
let inline private fma512 (x: Vector512<'T>) (y: Vector512<'T>) (z: Vector512<'T>) : Vector512<'T> =
    if Type.op_Equality (typeof<'T>, typeof<float32>) then
        Vector512.As<float32, 'T>(
            Avx512F.FusedMultiplyAdd(Vector512.AsSingle x, Vector512.AsSingle y, Vector512.AsSingle z)
        )
    elif Type.op_Equality (typeof<'T>, typeof<float>) then
        Vector512.As<float, 'T>(
            Avx512F.FusedMultiplyAdd(Vector512.AsDouble x, Vector512.AsDouble y, Vector512.AsDouble z)
        )
    else
        raise (NotSupportedException $"GEMM kernels over {typeof<'T>}")

/// The element at p in every lane, loaded by the broadcast itself (vbroadcastss/sd from memory).
let inline private broadcast256 (p: nativeptr<'T>) : Vector256<'T> =
    if Type.op_Equality (typeof<'T>, typeof<float32>) then
        Vector256.As<float32, 'T>(
            Avx.BroadcastScalarToVector256(NativePtr.ofNativeInt<float32>(NativePtr.toNativeInt p))
        )
    elif Type.op_Equality (typeof<'T>, typeof<float>) then
        Vector256.As<float, 'T>(Avx.BroadcastScalarToVector256(NativePtr.ofNativeInt<float>(NativePtr.toNativeInt p)))
    else
        raise (NotSupportedException $"GEMM kernels over {typeof<'T>}")

/// 6 x 2·Vector256<T>.Count (6x16 float32, 6x8 float64) with twelve ymm accumulators, the shape
/// that fits AVX2's sixteen registers with two for B and one for the broadcast of A. Each depth
/// step is one rank-1 update of the tile of C held in registers, as in the BLIS micro-kernel; the
/// tile is a number of vectors wide, so float64 gets half the columns of float32.
[<Sealed>]
type FmaKernel<'T when 'T: unmanaged>() =
    inherit Kernel<'T>(6, 2 * Vector256<'T>.Count)

    override _.Run(kc, a, aRow, aStep, b, c, ldc, alpha, beta) =
        // Read before the accumulators exist: EqualityComparer's static may need its class
        // constructor, a call, and on System V every vector register is caller-saved, so the JIT
        // would keep all its accumulators on the stack through the loop (two to eight times
        // slower when the kernel is compiled before the comparer is first used elsewhere).
        let betaZero = EqualityComparer<'T>.Default.Equals(beta, Unchecked.defaultof<'T>)
        let w = Vector256<'T>.Count
        let a0 = a
        let a1 = NativePtr.add a aRow
        let a2 = NativePtr.add a (2 * aRow)
        let a3 = NativePtr.add a (3 * aRow)
        let a4 = NativePtr.add a (4 * aRow)
        let a5 = NativePtr.add a (5 * aRow)
        let mutable c00 = Vector256<'T>.Zero
        let mutable c01 = Vector256<'T>.Zero
        let mutable c10 = Vector256<'T>.Zero
        let mutable c11 = Vector256<'T>.Zero
        let mutable c20 = Vector256<'T>.Zero
        let mutable c21 = Vector256<'T>.Zero
        let mutable c30 = Vector256<'T>.Zero
        let mutable c31 = Vector256<'T>.Zero
        let mutable c40 = Vector256<'T>.Zero
        let mutable c41 = Vector256<'T>.Zero
        let mutable c50 = Vector256<'T>.Zero
        let mutable c51 = Vector256<'T>.Zero
        let mutable pb = b
        let mutable off = 0
        let mutable p = 0

        while p < kc do
            let b0 = Vector256.Load pb
            let b1 = Vector256.Load(NativePtr.add pb w)
            let x = broadcast256 (NativePtr.add a0 off)
            c00 <- fma256 x b0 c00
            c01 <- fma256 x b1 c01
            let x = broadcast256 (NativePtr.add a1 off)
            c10 <- fma256 x b0 c10
            c11 <- fma256 x b1 c11
            let x = broadcast256 (NativePtr.add a2 off)
            c20 <- fma256 x b0 c20
            c21 <- fma256 x b1 c21
            let x = broadcast256 (NativePtr.add a3 off)
            c30 <- fma256 x b0 c30
            c31 <- fma256 x b1 c31
            let x = broadcast256 (NativePtr.add a4 off)
            c40 <- fma256 x b0 c40
            c41 <- fma256 x b1 c41
            let x = broadcast256 (NativePtr.add a5 off)
            c50 <- fma256 x b0 c50
            c51 <- fma256 x b1 c51
            pb <- NativePtr.add pb (2 * w)
            off <- off + aStep
            p <- p + 1

        let alphaV = Vector256.Create alpha

        if betaZero then
            let inline put (row: int) (lo: Vector256<'T>) (hi: Vector256<'T>) =
                let r = NativePtr.add c (row * ldc)
                Vector256.Store(Vector256.Multiply(alphaV, lo), r)
                Vector256.Store(Vector256.Multiply(alphaV, hi), NativePtr.add r w)

            put 0 c00 c01
            put 1 c10 c11
            put 2 c20 c21
            put 3 c30 c31
            put 4 c40 c41
            put 5 c50 c51
        else
            let betaV = Vector256.Create beta

            let inline put (row: int) (lo: Vector256<'T>) (hi: Vector256<'T>) =
                let r = NativePtr.add c (row * ldc)
                let rw = NativePtr.add r w
                Vector256.Store(fma256 lo alphaV (Vector256.Multiply(betaV, Vector256.Load r)), r)
                Vector256.Store(fma256 hi alphaV (Vector256.Multiply(betaV, Vector256.Load rw)), rw)

            put 0 c00 c01
            put 1 c10 c11
            put 2 c20 c21
            put 3 c30 c31
            put 4 c40 c41
            put 5 c50 c51

/// 8 x Vector512<T>.Count (8x16 float32, 8x8 float64), one zmm per row: the last panel of B when
/// at most that many columns remain, where the full-width kernel would spend most of its work on
/// zero padding.
[<Sealed>]
type Avx512NarrowKernel<'T when 'T: unmanaged>() =
    inherit Kernel<'T>(8, Vector512<'T>.Count)

    override _.Run(kc, a, aRow, aStep, b, c, ldc, alpha, beta) =
        // Before the accumulators exist, as in FmaKernel.
        let betaZero = EqualityComparer<'T>.Default.Equals(beta, Unchecked.defaultof<'T>)
        let a0 = a
        let a1 = NativePtr.add a aRow
        let a2 = NativePtr.add a (2 * aRow)
        let a3 = NativePtr.add a (3 * aRow)
        let a4 = NativePtr.add a (4 * aRow)
        let a5 = NativePtr.add a (5 * aRow)
        let a6 = NativePtr.add a (6 * aRow)
        let a7 = NativePtr.add a (7 * aRow)
        let mutable c0 = Vector512<'T>.Zero
        let mutable c1 = Vector512<'T>.Zero
        let mutable c2 = Vector512<'T>.Zero
        let mutable c3 = Vector512<'T>.Zero
        let mutable c4 = Vector512<'T>.Zero
        let mutable c5 = Vector512<'T>.Zero
        let mutable c6 = Vector512<'T>.Zero
        let mutable c7 = Vector512<'T>.Zero
        let mutable pb = b
        let mutable off = 0
        let mutable p = 0

        while p < kc do
            let b0 = Vector512.Load pb
            c0 <- fma512 (Vector512.Create(NativePtr.get a0 off)) b0 c0
            c1 <- fma512 (Vector512.Create(NativePtr.get a1 off)) b0 c1
            c2 <- fma512 (Vector512.Create(NativePtr.get a2 off)) b0 c2
            c3 <- fma512 (Vector512.Create(NativePtr.get a3 off)) b0 c3
            c4 <- fma512 (Vector512.Create(NativePtr.get a4 off)) b0 c4
            c5 <- fma512 (Vector512.Create(NativePtr.get a5 off)) b0 c5
            c6 <- fma512 (Vector512.Create(NativePtr.get a6 off)) b0 c6
            c7 <- fma512 (Vector512.Create(NativePtr.get a7 off)) b0 c7
            pb <- NativePtr.add pb Vector512<'T>.Count
            off <- off + aStep
            p <- p + 1

        let alphaV = Vector512.Create alpha

        if betaZero then
            Vector512.Store(Vector512.Multiply(alphaV, c0), NativePtr.add c (0 * ldc))
            Vector512.Store(Vector512.Multiply(alphaV, c1), NativePtr.add c (1 * ldc))
            Vector512.Store(Vector512.Multiply(alphaV, c2), NativePtr.add c (2 * ldc))
            Vector512.Store(Vector512.Multiply(alphaV, c3), NativePtr.add c (3 * ldc))
            Vector512.Store(Vector512.Multiply(alphaV, c4), NativePtr.add c (4 * ldc))
            Vector512.Store(Vector512.Multiply(alphaV, c5), NativePtr.add c (5 * ldc))
            Vector512.Store(Vector512.Multiply(alphaV, c6), NativePtr.add c (6 * ldc))
            Vector512.Store(Vector512.Multiply(alphaV, c7), NativePtr.add c (7 * ldc))
        else
            let betaV = Vector512.Create beta

            let inline put (row: int) (acc: Vector512<'T>) =
                let r = NativePtr.add c (row * ldc)
                Vector512.Store(fma512 acc alphaV (Vector512.Multiply(betaV, Vector512.Load r)), r)

            put 0 c0
            put 1 c1
            put 2 c2
            put 3 c3
            put 4 c4
            put 5 c5
            put 6 c6
            put 7 c7

/// 8 x 2·Vector512<T>.Count (8x32 float32, 8x16 float64) with sixteen zmm accumulators. AVX-512's
/// thirty-two registers would hold a taller tile, but eight rows divide the batch sizes and layer
/// widths that matter (128, 256, 784) exactly, and the kernel already runs at the FMA units' peak:
/// more rows would only waste edge tiles.
[<Sealed>]
type Avx512Kernel<'T when 'T: unmanaged>() =
    inherit Kernel<'T>(8, 2 * Vector512<'T>.Count)
    let narrow = Some(Avx512NarrowKernel<'T>() :> Kernel<'T>)
    override _.Narrow = narrow
    override _.MaskedMoves = Avx512BW.IsSupported

    override _.Run(kc, a, aRow, aStep, b, c, ldc, alpha, beta) =
        // Before the accumulators exist, as in FmaKernel.
        let betaZero = EqualityComparer<'T>.Default.Equals(beta, Unchecked.defaultof<'T>)
        let w = Vector512<'T>.Count
        let a0 = a
        let a1 = NativePtr.add a aRow
        let a2 = NativePtr.add a (2 * aRow)
        let a3 = NativePtr.add a (3 * aRow)
        let a4 = NativePtr.add a (4 * aRow)
        let a5 = NativePtr.add a (5 * aRow)
        let a6 = NativePtr.add a (6 * aRow)
        let a7 = NativePtr.add a (7 * aRow)
        let mutable c00 = Vector512<'T>.Zero
        let mutable c01 = Vector512<'T>.Zero
        let mutable c10 = Vector512<'T>.Zero
        let mutable c11 = Vector512<'T>.Zero
        let mutable c20 = Vector512<'T>.Zero
        let mutable c21 = Vector512<'T>.Zero
        let mutable c30 = Vector512<'T>.Zero
        let mutable c31 = Vector512<'T>.Zero
        let mutable c40 = Vector512<'T>.Zero
        let mutable c41 = Vector512<'T>.Zero
        let mutable c50 = Vector512<'T>.Zero
        let mutable c51 = Vector512<'T>.Zero
        let mutable c60 = Vector512<'T>.Zero
        let mutable c61 = Vector512<'T>.Zero
        let mutable c70 = Vector512<'T>.Zero
        let mutable c71 = Vector512<'T>.Zero
        let mutable pb = b
        let mutable off = 0
        let mutable p = 0

        while p < kc do
            let b0 = Vector512.Load pb
            let b1 = Vector512.Load(NativePtr.add pb w)
            let x = Vector512.Create(NativePtr.get a0 off)
            c00 <- fma512 x b0 c00
            c01 <- fma512 x b1 c01
            let x = Vector512.Create(NativePtr.get a1 off)
            c10 <- fma512 x b0 c10
            c11 <- fma512 x b1 c11
            let x = Vector512.Create(NativePtr.get a2 off)
            c20 <- fma512 x b0 c20
            c21 <- fma512 x b1 c21
            let x = Vector512.Create(NativePtr.get a3 off)
            c30 <- fma512 x b0 c30
            c31 <- fma512 x b1 c31
            let x = Vector512.Create(NativePtr.get a4 off)
            c40 <- fma512 x b0 c40
            c41 <- fma512 x b1 c41
            let x = Vector512.Create(NativePtr.get a5 off)
            c50 <- fma512 x b0 c50
            c51 <- fma512 x b1 c51
            let x = Vector512.Create(NativePtr.get a6 off)
            c60 <- fma512 x b0 c60
            c61 <- fma512 x b1 c61
            let x = Vector512.Create(NativePtr.get a7 off)
            c70 <- fma512 x b0 c70
            c71 <- fma512 x b1 c71
            pb <- NativePtr.add pb (2 * w)
            off <- off + aStep
            p <- p + 1

        let alphaV = Vector512.Create alpha

        if betaZero then
            let inline put (row: int) (lo: Vector512<'T>) (hi: Vector512<'T>) =
                let r = NativePtr.add c (row * ldc)
                Vector512.Store(Vector512.Multiply(alphaV, lo), r)
                Vector512.Store(Vector512.Multiply(alphaV, hi), NativePtr.add r w)

            put 0 c00 c01
            put 1 c10 c11
            put 2 c20 c21
            put 3 c30 c31
            put 4 c40 c41
            put 5 c50 c51
            put 6 c60 c61
            put 7 c70 c71
        else
            let betaV = Vector512.Create beta

            let inline put (row: int) (lo: Vector512<'T>) (hi: Vector512<'T>) =
                let r = NativePtr.add c (row * ldc)
                let rw = NativePtr.add r w
                Vector512.Store(fma512 lo alphaV (Vector512.Multiply(betaV, Vector512.Load r)), r)
                Vector512.Store(fma512 hi alphaV (Vector512.Multiply(betaV, Vector512.Load rw)), rw)

            put 0 c00 c01
            put 1 c10 c11
            put 2 c20 c21
            put 3 c30 c31
            put 4 c40 c41
            put 5 c50 c51
            put 6 c60 c61
            put 7 c70 c71

/// 4 x 2·Vector<T>.Count for processors without AVX2 + FMA (or other ISAs): eight accumulators
/// fit the sixteen vector registers of SSE and of Arm's NEON alike.
[<Sealed>]
type PortableKernel<'T when 'T: unmanaged and 'T: (new: unit -> 'T) and 'T: struct and 'T :> ValueType>() =
    inherit Kernel<'T>(4, 2 * Vector<'T>.Count)

    override _.Run(kc, a, aRow, aStep, b, c, ldc, alpha, beta) =
        let w = Vector<'T>.Count
        let a0 = a
        let a1 = NativePtr.add a aRow
        let a2 = NativePtr.add a (2 * aRow)
        let a3 = NativePtr.add a (3 * aRow)
        let mutable c00 = Vector<'T>.Zero
        let mutable c01 = Vector<'T>.Zero
        let mutable c10 = Vector<'T>.Zero
        let mutable c11 = Vector<'T>.Zero
        let mutable c20 = Vector<'T>.Zero
        let mutable c21 = Vector<'T>.Zero
        let mutable c30 = Vector<'T>.Zero
        let mutable c31 = Vector<'T>.Zero
        let mutable pb = b
        let mutable off = 0
        let mutable p = 0

        while p < kc do
            let b0 = Vector.Load pb
            let b1 = Vector.Load(NativePtr.add pb w)
            let x = Vector<'T>(NativePtr.get a0 off)
            c00 <- c00 + x * b0
            c01 <- c01 + x * b1
            let x = Vector<'T>(NativePtr.get a1 off)
            c10 <- c10 + x * b0
            c11 <- c11 + x * b1
            let x = Vector<'T>(NativePtr.get a2 off)
            c20 <- c20 + x * b0
            c21 <- c21 + x * b1
            let x = Vector<'T>(NativePtr.get a3 off)
            c30 <- c30 + x * b0
            c31 <- c31 + x * b1
            pb <- NativePtr.add pb (2 * w)
            off <- off + aStep
            p <- p + 1

        let alphaV = Vector<'T>(alpha)
        let overwrite = Vector.EqualsAll(Vector<'T>(beta), Vector<'T>.Zero)
        let betaV = Vector<'T>(beta)

        let inline put (row: int) (lo: Vector<'T>) (hi: Vector<'T>) =
            let r = NativePtr.add c (row * ldc)
            let rw = NativePtr.add r w

            if overwrite then
                Vector.Store(alphaV * lo, r)
                Vector.Store(alphaV * hi, rw)
            else
                Vector.Store(alphaV * lo + betaV * Vector.Load r, r)
                Vector.Store(alphaV * hi + betaV * Vector.Load rw, rw)

        put 0 c00 c01
        put 1 c10 c11
        put 2 c20 c21
        put 3 c30 c31

/// Cache blocking: an A block of MC x KC stays in L2 while B micro-panels of KC x NR stream
/// through L1; a tile is at most NC columns wide, so that its packed B (KC x NC) stays in L3.
/// PackCost is what packing (or first reading) one element of A or B costs, in multiply-adds of
/// the kernel, for the choice of tiles: the faster the kernel, the more a copy costs by that measure.
type Blocking =
    { MC: int
      KC: int
      NC: int
      PackCost: float }

/// Pack-buffer memory per thread, kept between calls: allocating (and page-faulting) a few hundred
/// KB per call costs as much as a small GEMM. Pinned, so its address can be taken at any time.
type private Scratch<'T when 'T: unmanaged>() =
    [<ThreadStatic; DefaultValue>]
    static val mutable private buffer: 'T[]

    /// A 64-byte aligned pointer to at least n elements of this thread's buffer.
    static member Get(n: int) : nativeptr<'T> =
        let needed = n + 64 / sizeof<'T>
        let mutable b = Scratch<'T>.buffer

        if isNull b || b.Length < needed then
            b <- GC.AllocateUninitializedArray<'T>(needed, pinned = true)
            Scratch<'T>.buffer <- b

        let address = Marshal.UnsafeAddrOfPinnedArrayElement(b, 0)
        NativePtr.ofNativeInt<'T>((address + 63n) &&& ~~~63n)

let inline private ceilDiv (x: int) (y: int) = (x + y - 1) / y
let inline private roundUp (x: int) (y: int) = ceilDiv x y * y

let inline private retype<'T, 'U when 'T: unmanaged and 'U: unmanaged> (p: nativeptr<'T>) : nativeptr<'U> =
    NativePtr.ofNativeInt<'U>(NativePtr.toNativeInt p)

/// A byte mask selecting the first `bytes` (clamped to 0..64) lanes of a zmm register.
let inline private firstBytes (bytes: int) =
    Vector512.LessThan(Vector512<byte>.Indices, Vector512.Create(byte (max 0 (min 64 bytes))))

/// Copy `count` elements, reading and writing nothing past them (so it may write into C). Masked
/// moves copy up to 64 bytes at once without faulting on the lanes they leave out.
let inline private copyElements (masked: bool) (src: nativeptr<'T>) (dst: nativeptr<'T>) (count: int) =
    if masked then
        let s = retype<'T, byte> src
        let d = retype<'T, byte> dst
        let bytes = count * sizeof<'T>
        let mutable o = 0

        while o < bytes do
            let mask = firstBytes (bytes - o)

            Avx512BW.MaskStore(
                NativePtr.add d o,
                mask,
                Avx512BW.MaskLoad(NativePtr.add s o, mask, Vector512<byte>.Zero)
            )

            o <- o + 64
    else
        for j in 0 .. count - 1 do
            NativePtr.set dst j (NativePtr.get src j)

/// Copy `count` (<= width) elements to a width-wide row of a panel, zeroing the rest. Full rows
/// of B panels (32 to 128 bytes) go through Vector256, the narrow rows of depth-major A panels
/// (6 elements) through 8-byte words, and partial rows 64 bytes at a time through masked loads
/// that fill in the zeros.
let inline private copyRow (masked: bool) (src: nativeptr<'T>) (dst: nativeptr<'T>) (count: int) (width: int) =
    let lanes = Vector256<'T>.Count

    if count = width && width % lanes = 0 && Vector256.IsHardwareAccelerated then
        let mutable j = 0

        while j < width do
            Vector256.Store(Vector256.Load(NativePtr.add src j), NativePtr.add dst j)
            j <- j + lanes
    elif count = width && width * sizeof<'T> % 8 = 0 then
        let s = NativePtr.ofNativeInt<int64>(NativePtr.toNativeInt src)
        let d = NativePtr.ofNativeInt<int64>(NativePtr.toNativeInt dst)

        for q in 0 .. width * sizeof<'T> / 8 - 1 do
            NativePtr.set d q (NativePtr.get s q)
    elif masked && width * sizeof<'T> % 64 = 0 then
        let s = retype<'T, byte> src
        let d = retype<'T, byte> dst
        let bytes = count * sizeof<'T>

        for o in 0..64 .. width * sizeof<'T> - 1 do
            let v =
                Avx512BW.MaskLoad(NativePtr.add s o, firstBytes (bytes - o), Vector512<byte>.Zero)

            Avx512BW.Store(NativePtr.add d o, v)
    else
        for j in 0 .. count - 1 do
            NativePtr.set dst j (NativePtr.get src j)

        for j in count .. width - 1 do
            NativePtr.set dst j Unchecked.defaultof<'T>

/// Pack rows [0, rows) x depth [0, kc) of op(A) (already offset to the block's corner) into
/// micro-panels of mr rows, zero-padded, returning the kernel's (aRow, aStep). Untransposed A
/// keeps each panel row-major (a row of A is contiguous), transposed A makes it depth-major (a
/// column of A is): both packs are contiguous copies, and the kernel reads either layout.
let private packA
    (masked: bool)
    (transA: bool)
    (a: nativeptr<'T>)
    (lda: int)
    (rows: int)
    (kc: int)
    (mr: int)
    (dst: nativeptr<'T>)
    : struct (int * int) =
    let mutable i = 0

    while i < rows do
        let panel = NativePtr.add dst (i * kc)
        let h = min mr (rows - i)

        if not transA then
            for r in 0 .. mr - 1 do
                let row = NativePtr.add panel (r * kc)

                if r < h then
                    NativePtr.copyBlock row (NativePtr.add a ((i + r) * lda)) kc
                else
                    NativePtr.initBlock row 0uy (uint32 (kc * sizeof<'T>))
        else
            for p in 0 .. kc - 1 do
                copyRow masked (NativePtr.add a (p * lda + i)) (NativePtr.add panel (p * mr)) h mr

        i <- i + mr

    if transA then struct (1, mr) else struct (kc, 1)

/// An nr-column panel (nr a multiple of Vector256<T>.Count, the lanes) of transposed B: blocks of
/// lanes x lanes are transposed in registers, so that both the reads (along rows of the stored B)
/// and the writes (along panel rows) are vectors. The transpose moves 64-bit pairs: four rows of
/// them (a 4x4 float64 block) take an interleave of row pairs and a swap of 128-bit halves. An 8x8
/// float32 block first interleaves its row pairs by 32 bits, which leaves two such 4x4 blocks of
/// pairs, one for result rows 0, 1, 4, 5 and one for rows 2, 3, 6, 7.
let private packTransposed (b: nativeptr<'T>) (ldb: int) (kc: int) (nr: int) (panel: nativeptr<'T>) =
    let lanes = Vector256<'T>.Count

    // Rows x0..x3 of four 64-bit pairs each, transposed into rows r0..r3 of the panel at d.
    let inline transposePairs
        (x0: Vector256<float>)
        (x1: Vector256<float>)
        (x2: Vector256<float>)
        (x3: Vector256<float>)
        (d: nativeptr<'T>)
        (r0: int)
        (r1: int)
        (r2: int)
        (r3: int)
        =
        let lo01 = Avx.UnpackLow(x0, x1)
        let hi01 = Avx.UnpackHigh(x0, x1)
        let lo23 = Avx.UnpackLow(x2, x3)
        let hi23 = Avx.UnpackHigh(x2, x3)
        Vector256.Store(Vector256.As<float, 'T>(Avx.Permute2x128(lo01, lo23, 0x20uy)), NativePtr.add d (r0 * nr))
        Vector256.Store(Vector256.As<float, 'T>(Avx.Permute2x128(hi01, hi23, 0x20uy)), NativePtr.add d (r1 * nr))
        Vector256.Store(Vector256.As<float, 'T>(Avx.Permute2x128(lo01, lo23, 0x31uy)), NativePtr.add d (r2 * nr))
        Vector256.Store(Vector256.As<float, 'T>(Avx.Permute2x128(hi01, hi23, 0x31uy)), NativePtr.add d (r3 * nr))

    let mutable p = 0

    while p + lanes <= kc do
        for group in 0 .. nr / lanes - 1 do
            let s = NativePtr.add b (group * lanes * ldb + p)

            let inline row r =
                Vector256.Load(NativePtr.add s (r * ldb))

            let d = NativePtr.add panel (p * nr + group * lanes)

            if Type.op_Equality (typeof<'T>, typeof<float32>) then
                let inline interleave (r: int) =
                    let x = Vector256.AsSingle(row r)
                    let y = Vector256.AsSingle(row (r + 1))
                    struct (Vector256.AsDouble(Avx.UnpackLow(x, y)), Vector256.AsDouble(Avx.UnpackHigh(x, y)))

                let struct (t0, t1) = interleave 0
                let struct (t2, t3) = interleave 2
                let struct (t4, t5) = interleave 4
                let struct (t6, t7) = interleave 6
                transposePairs t0 t2 t4 t6 d 0 1 4 5
                transposePairs t1 t3 t5 t7 d 2 3 6 7
            else
                let inline pairs r = Vector256.AsDouble(row r)
                transposePairs (pairs 0) (pairs 1) (pairs 2) (pairs 3) d 0 1 2 3

        p <- p + lanes

    while p < kc do
        for j in 0 .. nr - 1 do
            NativePtr.set panel (p * nr + j) (NativePtr.get b (j * ldb + p))

        p <- p + 1

/// Pack depth [0, kc) x columns [0, cols) of op(B) (offset to the block's corner) into depth-major
/// micro-panels of nr columns, zero-padded: the layout the kernel streams. A last panel of at most
/// narrowNr columns is packed narrowNr wide instead, for the kernel's Narrow one.
let private packB
    (masked: bool)
    (transB: bool)
    (b: nativeptr<'T>)
    (ldb: int)
    (kc: int)
    (cols: int)
    (nr: int)
    (narrowNr: int)
    (dst: nativeptr<'T>)
    =
    // Type tests on 'T are constants once the JIT specialises this for float32 or float64.
    let transposed =
        transB
        && Avx.IsSupported
        && (Type.op_Equality (typeof<'T>, typeof<float32>)
            || Type.op_Equality (typeof<'T>, typeof<float>))

    let mutable j = 0

    while j < cols do
        let panel = NativePtr.add dst (j * kc)
        let w = min nr (cols - j)
        let width = if w <= narrowNr then narrowNr else nr

        let src =
            if transB then
                NativePtr.add b (j * ldb)
            else
                NativePtr.add b j

        if not transB then
            for p in 0 .. kc - 1 do
                copyRow masked (NativePtr.add src (p * ldb)) (NativePtr.add panel (p * width)) w width
        elif w = width && width % Vector256<'T>.Count = 0 && transposed then
            packTransposed src ldb kc width panel
        else
            // Column jj of op(B) is row jj of the stored B: read along it, write across the panel.
            for jj in 0 .. w - 1 do
                let row = NativePtr.add src (jj * ldb)

                for p in 0 .. kc - 1 do
                    NativePtr.set panel (p * width + jj) (NativePtr.get row p)

            if w < width then
                for p in 0 .. kc - 1 do
                    for jj in w .. width - 1 do
                        NativePtr.set panel (p * width + jj) Unchecked.defaultof<'T>

        j <- j + nr

/// How C is cut into tiles, each computed start to finish by one worker.
type Grid =
    { RowTiles: int
      ColTiles: int
      TileRows: int
      TileCols: int }

// Below this many multiply-adds a GEMM runs on the calling thread. Handing tiles to a crew member
// that is still spinning (Parallelism.forTiles) costs about a microsecond: on the 2-vCPU Xeon of
// bench/RESULTS.md two threads gained 1.2-1.3x at 64^3 (2^18) and 128x10x128, and nothing or less
// at 48^3 and 64x32x64. (Waking a thread-pool thread, before the crew, cost 50-100 us there, and
// the break-even was 2^20.)
let private parallelThreshold = 1L <<< 18

/// Choose the tiles for `workers` workers. Tile edges fall on multiples of MR and NR counted from
/// C's corner, whatever the grid, so every element of C is computed by the same operations (the
/// same micro-kernel lane, the same k blocks) with any number of workers: the grid only moves work
/// between threads. Cost model: rounds of tiles times the work of one tile, packing included
/// (a tile packs its rows of A and its columns of B once per k block).
let grid (mr: int) (nr: int) (blocking: Blocking) (workers: int) (m: int) (n: int) (k: int) : Grid =
    let nc = blocking.NC

    let workers =
        if int64 m * int64 n * int64 k < parallelThreshold then
            1
        else
            workers

    let minCols = ceilDiv n nc
    let maxRows = min (ceilDiv m mr) (4 * workers)
    let maxCols = min (ceilDiv n nr) (max minCols (4 * workers))
    let mutable best = Unchecked.defaultof<Grid>
    let mutable bestCost = Double.MaxValue

    for rt in 1 .. max 1 maxRows do
        for ct in minCols .. max minCols maxCols do
            let tileRows = roundUp (ceilDiv m rt) mr
            let tileCols = roundUp (ceilDiv n ct) nr
            let rt = ceilDiv m tileRows
            let ct = ceilDiv n tileCols

            // ct = minCols always passes, so a grid is always found.
            if tileCols <= roundUp nc nr then
                let rounds = float (ceilDiv (rt * ct) workers)
                // A tile packs (or, for A in place, first reads from memory) its rows of A and
                // columns of B once per k block.
                let tile =
                    float tileRows * float tileCols * float k
                    + blocking.PackCost * float k * float (tileRows + tileCols)

                let cost = rounds * tile

                if cost < bestCost * 0.999 then
                    bestCost <- cost

                    best <-
                        { RowTiles = rt
                          ColTiles = ct
                          TileRows = tileRows
                          TileCols = tileCols }

    best

/// One GEMM, cut into tiles by `grid`: Tile computes one of them, start to finish.
[<Sealed>]
type private Job<'T when 'T: unmanaged>
    (
        kernel: Kernel<'T>,
        g: Grid,
        kBlocks: int,
        kcMax: int,
        mcMax: int,
        directA: bool,
        one: 'T,
        transA: bool,
        transB: bool,
        m: int,
        n: int,
        k: int,
        alpha: 'T,
        a: nativeint,
        lda: int,
        b: nativeint,
        ldb: int,
        beta: 'T,
        c: nativeint,
        ldc: int
    ) =

    let betaZero = EqualityComparer<'T>.Default.Equals(beta, Unchecked.defaultof<'T>)

    member _.Tile(index: int) =
        let mr = kernel.MR
        let nr = kernel.NR
        let masked = kernel.MaskedMoves

        let struct (narrow, narrowNr) =
            match kernel.Narrow with
            | Some k -> struct (k, k.NR)
            | None -> struct (kernel, nr)

        let i0 = (index / g.ColTiles) * g.TileRows
        let j0 = (index % g.ColTiles) * g.TileCols
        let rows = min g.TileRows (m - i0)
        let cols = min g.TileCols (n - j0)
        let colsPadded = roundUp cols nr
        let aSize = mcMax * kcMax
        let bSize = kcMax * colsPadded
        let scratch = Scratch<'T>.Get(aSize + bSize + mr * nr + 64)
        let packedA = scratch
        let packedB = NativePtr.add scratch (roundUp aSize 16)
        let edge = NativePtr.add packedB (roundUp bSize 16)
        let a = NativePtr.ofNativeInt<'T> a
        let b = NativePtr.ofNativeInt<'T> b
        let c = NativePtr.ofNativeInt<'T> c
        // Where row r, depth p of op(A) is in the stored A: a + r * aRowStride + p * aDepthStride.
        let struct (aRowStride, aDepthStride) =
            if transA then struct (1, lda) else struct (lda, 1)

        let icBlocks = ceilDiv rows mcMax
        let mcSize = roundUp (ceilDiv rows icBlocks) mr

        for kb in 0 .. kBlocks - 1 do
            let p0 = kb * kcMax
            let kc = min kcMax (k - p0)
            let beta = if kb = 0 then beta else one
            let readsC = kb > 0 || not betaZero

            let bCorner =
                if transB then
                    NativePtr.add b (j0 * ldb + p0)
                else
                    NativePtr.add b (p0 * ldb + j0)

            packB masked transB bCorner ldb kc cols nr narrowNr packedB

            let mutable ic = 0

            while ic < rows do
                let mc = min mcSize (rows - ic)
                let i = i0 + ic

                let aCorner =
                    if transA then
                        NativePtr.add a (p0 * lda + i)
                    else
                        NativePtr.add a (i * lda + p0)

                // In place, only a last partial panel needs packing (for its zero rows).
                let full = if directA then mc / mr * mr else 0

                let struct (packedRow, packedStep) =
                    packA
                        masked
                        transA
                        (NativePtr.add aCorner (full * aRowStride))
                        lda
                        (mc - full)
                        kc
                        mr
                        (NativePtr.add packedA (full * kc))

                let mutable jr = 0

                while jr < cols do
                    let w = min nr (cols - jr)

                    let struct (kernel, width) =
                        if w <= narrowNr then
                            struct (narrow, narrowNr)
                        else
                            struct (kernel, nr)

                    let bPanel = NativePtr.add packedB (jr * kc)
                    let mutable ir = 0

                    while ir < mc do
                        let h = min mr (mc - ir)

                        let struct (aPanel, aRow, aStep) =
                            if ir < full then
                                struct (NativePtr.add aCorner (ir * aRowStride), aRowStride, aDepthStride)
                            else
                                struct (NativePtr.add packedA (ir * kc), packedRow, packedStep)

                        let cTile = NativePtr.add c ((i + ir) * ldc + j0 + jr)

                        if h = mr && w = width then
                            kernel.Run(kc, aPanel, aRow, aStep, bPanel, cTile, ldc, alpha, beta)
                        else
                            // An edge tile goes through a full-size buffer and the same kernel, so
                            // that its elements get exactly the arithmetic of interior ones. With
                            // beta = 0 the kernel does not read C, so neither does the copy.
                            if readsC then
                                for r in 0 .. h - 1 do
                                    copyElements
                                        masked
                                        (NativePtr.add cTile (r * ldc))
                                        (NativePtr.add edge (r * width))
                                        w

                            kernel.Run(kc, aPanel, aRow, aStep, bPanel, edge, width, alpha, beta)

                            for r in 0 .. h - 1 do
                                copyElements masked (NativePtr.add edge (r * width)) (NativePtr.add cTile (r * ldc)) w

                        ir <- ir + mr

                    jr <- jr + nr

                ic <- ic + mc

/// C := alpha · op(A) · op(B) + beta · C on pinned, offset pointers; m, n, k >= 1.
let gemm
    (kernel: Kernel<'T>)
    (blocking: Blocking)
    (one: 'T)
    (transA: bool)
    (transB: bool)
    (m: int)
    (n: int)
    (k: int)
    (alpha: 'T)
    (a: nativeint)
    (lda: int)
    (b: nativeint)
    (ldb: int)
    (beta: 'T)
    (c: nativeint)
    (ldc: int)
    : unit =
    let g = grid kernel.MR kernel.NR blocking (Parallelism.degree ()) m n k
    // Balanced k blocks, fixed by k alone: the order of the sum over k is part of every result.
    let kBlocks = ceilDiv k blocking.KC
    let kcMax = ceilDiv k kBlocks
    let mcMax = min (roundUp blocking.MC kernel.MR) g.TileRows
    // A is read in place: the kernel takes a row stride and a depth stride, so rows of op(A) that
    // are contiguous (A as stored) and columns that are (A transposed, each depth step one row of
    // the stored A on) both suit it, and packing would only copy them. Not when rows sit a multiple
    // of 4 KB apart, though: then the rows an A block reads fall into the same few cache sets and
    // evict each other, which packing prevents.
    let directA = lda * sizeof<'T> % 4096 <> 0

    let job =
        Job<'T>(
            kernel,
            g,
            kBlocks,
            kcMax,
            mcMax,
            directA,
            one,
            transA,
            transB,
            m,
            n,
            k,
            alpha,
            a,
            lda,
            b,
            ldb,
            beta,
            c,
            ldc
        )

    Parallelism.forTiles (g.RowTiles * g.ColTiles) job.Tile
