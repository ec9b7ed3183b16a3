/// The managed GEMM: cache-blocked and packed in the manner of Goto and van de Geijn (BLIS), with a
/// register-blocked micro-kernel over Vector256 + FMA and a portable Vector<T> one elsewhere.
/// Callers (Gemm) check the arguments and handle the degenerate cases (m, n or k = 0, alpha = 0).
module internal Forgetting.Tensors.ManagedGemm

#nowarn "9" // Pointer arithmetic over pinned arrays: the micro-kernel must address packed panels directly.

open System
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

/// 6x16 float32 with twelve ymm accumulators, the shape that fits AVX2's sixteen registers with two
/// for B and one for the broadcast of A.
[<Sealed>]
type Fma32Kernel() =
    inherit Kernel<float32>(6, 16)

    override _.Run(kc, a, aRow, aStep, b, c, ldc, alpha, beta) =
        let a0 = a
        let a1 = NativePtr.add a aRow
        let a2 = NativePtr.add a (2 * aRow)
        let a3 = NativePtr.add a (3 * aRow)
        let a4 = NativePtr.add a (4 * aRow)
        let a5 = NativePtr.add a (5 * aRow)
        let mutable c00 = Vector256<float32>.Zero
        let mutable c01 = Vector256<float32>.Zero
        let mutable c10 = Vector256<float32>.Zero
        let mutable c11 = Vector256<float32>.Zero
        let mutable c20 = Vector256<float32>.Zero
        let mutable c21 = Vector256<float32>.Zero
        let mutable c30 = Vector256<float32>.Zero
        let mutable c31 = Vector256<float32>.Zero
        let mutable c40 = Vector256<float32>.Zero
        let mutable c41 = Vector256<float32>.Zero
        let mutable c50 = Vector256<float32>.Zero
        let mutable c51 = Vector256<float32>.Zero
        let mutable pb = b
        let mutable off = 0
        let mutable p = 0

        while p < kc do
            let b0 = Avx.LoadVector256 pb
            let b1 = Avx.LoadVector256(NativePtr.add pb 8)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a0 off)
            c00 <- Fma.MultiplyAdd(x, b0, c00)
            c01 <- Fma.MultiplyAdd(x, b1, c01)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a1 off)
            c10 <- Fma.MultiplyAdd(x, b0, c10)
            c11 <- Fma.MultiplyAdd(x, b1, c11)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a2 off)
            c20 <- Fma.MultiplyAdd(x, b0, c20)
            c21 <- Fma.MultiplyAdd(x, b1, c21)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a3 off)
            c30 <- Fma.MultiplyAdd(x, b0, c30)
            c31 <- Fma.MultiplyAdd(x, b1, c31)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a4 off)
            c40 <- Fma.MultiplyAdd(x, b0, c40)
            c41 <- Fma.MultiplyAdd(x, b1, c41)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a5 off)
            c50 <- Fma.MultiplyAdd(x, b0, c50)
            c51 <- Fma.MultiplyAdd(x, b1, c51)
            pb <- NativePtr.add pb 16
            off <- off + aStep
            p <- p + 1

        let alphaV = Vector256.Create alpha

        if beta = 0.0f then
            let inline put (row: int) (lo: Vector256<float32>) (hi: Vector256<float32>) =
                let r = NativePtr.add c (row * ldc)
                Avx.Store(r, Avx.Multiply(alphaV, lo))
                Avx.Store(NativePtr.add r 8, Avx.Multiply(alphaV, hi))

            put 0 c00 c01
            put 1 c10 c11
            put 2 c20 c21
            put 3 c30 c31
            put 4 c40 c41
            put 5 c50 c51
        else
            let betaV = Vector256.Create beta

            let inline put (row: int) (lo: Vector256<float32>) (hi: Vector256<float32>) =
                let r = NativePtr.add c (row * ldc)
                let r8 = NativePtr.add r 8
                Avx.Store(r, Fma.MultiplyAdd(lo, alphaV, Avx.Multiply(betaV, Avx.LoadVector256 r)))
                Avx.Store(r8, Fma.MultiplyAdd(hi, alphaV, Avx.Multiply(betaV, Avx.LoadVector256 r8)))

            put 0 c00 c01
            put 1 c10 c11
            put 2 c20 c21
            put 3 c30 c31
            put 4 c40 c41
            put 5 c50 c51

/// 6x8 float64: the float32 kernel's register layout with half as many lanes.
[<Sealed>]
type Fma64Kernel() =
    inherit Kernel<float>(6, 8)

    override _.Run(kc, a, aRow, aStep, b, c, ldc, alpha, beta) =
        let a0 = a
        let a1 = NativePtr.add a aRow
        let a2 = NativePtr.add a (2 * aRow)
        let a3 = NativePtr.add a (3 * aRow)
        let a4 = NativePtr.add a (4 * aRow)
        let a5 = NativePtr.add a (5 * aRow)
        let mutable c00 = Vector256<float>.Zero
        let mutable c01 = Vector256<float>.Zero
        let mutable c10 = Vector256<float>.Zero
        let mutable c11 = Vector256<float>.Zero
        let mutable c20 = Vector256<float>.Zero
        let mutable c21 = Vector256<float>.Zero
        let mutable c30 = Vector256<float>.Zero
        let mutable c31 = Vector256<float>.Zero
        let mutable c40 = Vector256<float>.Zero
        let mutable c41 = Vector256<float>.Zero
        let mutable c50 = Vector256<float>.Zero
        let mutable c51 = Vector256<float>.Zero
        let mutable pb = b
        let mutable off = 0
        let mutable p = 0

        while p < kc do
            let b0 = Avx.LoadVector256 pb
            let b1 = Avx.LoadVector256(NativePtr.add pb 4)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a0 off)
            c00 <- Fma.MultiplyAdd(x, b0, c00)
            c01 <- Fma.MultiplyAdd(x, b1, c01)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a1 off)
            c10 <- Fma.MultiplyAdd(x, b0, c10)
            c11 <- Fma.MultiplyAdd(x, b1, c11)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a2 off)
            c20 <- Fma.MultiplyAdd(x, b0, c20)
            c21 <- Fma.MultiplyAdd(x, b1, c21)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a3 off)
            c30 <- Fma.MultiplyAdd(x, b0, c30)
            c31 <- Fma.MultiplyAdd(x, b1, c31)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a4 off)
            c40 <- Fma.MultiplyAdd(x, b0, c40)
            c41 <- Fma.MultiplyAdd(x, b1, c41)
            let x = Avx.BroadcastScalarToVector256(NativePtr.add a5 off)
            c50 <- Fma.MultiplyAdd(x, b0, c50)
            c51 <- Fma.MultiplyAdd(x, b1, c51)
            pb <- NativePtr.add pb 8
            off <- off + aStep
            p <- p + 1

        let alphaV = Vector256.Create alpha

        if beta = 0.0 then
            let inline put (row: int) (lo: Vector256<float>) (hi: Vector256<float>) =
                let r = NativePtr.add c (row * ldc)
                Avx.Store(r, Avx.Multiply(alphaV, lo))
                Avx.Store(NativePtr.add r 4, Avx.Multiply(alphaV, hi))

            put 0 c00 c01
            put 1 c10 c11
            put 2 c20 c21
            put 3 c30 c31
            put 4 c40 c41
            put 5 c50 c51
        else
            let betaV = Vector256.Create beta

            let inline put (row: int) (lo: Vector256<float>) (hi: Vector256<float>) =
                let r = NativePtr.add c (row * ldc)
                let r4 = NativePtr.add r 4
                Avx.Store(r, Fma.MultiplyAdd(lo, alphaV, Avx.Multiply(betaV, Avx.LoadVector256 r)))
                Avx.Store(r4, Fma.MultiplyAdd(hi, alphaV, Avx.Multiply(betaV, Avx.LoadVector256 r4)))

            put 0 c00 c01
            put 1 c10 c11
            put 2 c20 c21
            put 3 c30 c31
            put 4 c40 c41
            put 5 c50 c51

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
type Blocking = { MC: int; KC: int; NC: int }

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

/// Copy `count` (<= width) elements to a width-wide row of a panel, zeroing the rest. Full rows
/// of B panels (32 or 64 bytes) go through Vector256, the narrow rows of depth-major A panels
/// (6 elements) through 8-byte words.
let inline private copyRow (src: nativeptr<'T>) (dst: nativeptr<'T>) (count: int) (width: int) =
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
                copyRow (NativePtr.add a (p * lda + i)) (NativePtr.add panel (p * mr)) h mr

        i <- i + mr

    if transA then struct (1, mr) else struct (kc, 1)

/// A 16-column panel of transposed float32 B: 8x8 blocks are transposed in registers, so that
/// both the reads (along rows of the stored B) and the writes (along panel rows) are vectors.
let private packTransposed32 (b: nativeptr<float32>) (ldb: int) (kc: int) (panel: nativeptr<float32>) =
    let mutable p = 0

    while p + 8 <= kc do
        for half in 0..1 do
            let s = NativePtr.add b (half * 8 * ldb + p)

            let row r =
                Avx.LoadVector256(NativePtr.add s (r * ldb))

            let t0 = Avx.UnpackLow(row 0, row 1)
            let t1 = Avx.UnpackHigh(row 0, row 1)
            let t2 = Avx.UnpackLow(row 2, row 3)
            let t3 = Avx.UnpackHigh(row 2, row 3)
            let t4 = Avx.UnpackLow(row 4, row 5)
            let t5 = Avx.UnpackHigh(row 4, row 5)
            let t6 = Avx.UnpackLow(row 6, row 7)
            let t7 = Avx.UnpackHigh(row 6, row 7)
            let u0 = Avx.Shuffle(t0, t2, 0x44uy)
            let u1 = Avx.Shuffle(t0, t2, 0xEEuy)
            let u2 = Avx.Shuffle(t1, t3, 0x44uy)
            let u3 = Avx.Shuffle(t1, t3, 0xEEuy)
            let u4 = Avx.Shuffle(t4, t6, 0x44uy)
            let u5 = Avx.Shuffle(t4, t6, 0xEEuy)
            let u6 = Avx.Shuffle(t5, t7, 0x44uy)
            let u7 = Avx.Shuffle(t5, t7, 0xEEuy)
            let d = NativePtr.add panel (p * 16 + half * 8)
            Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20uy))
            Avx.Store(NativePtr.add d 16, Avx.Permute2x128(u1, u5, 0x20uy))
            Avx.Store(NativePtr.add d 32, Avx.Permute2x128(u2, u6, 0x20uy))
            Avx.Store(NativePtr.add d 48, Avx.Permute2x128(u3, u7, 0x20uy))
            Avx.Store(NativePtr.add d 64, Avx.Permute2x128(u0, u4, 0x31uy))
            Avx.Store(NativePtr.add d 80, Avx.Permute2x128(u1, u5, 0x31uy))
            Avx.Store(NativePtr.add d 96, Avx.Permute2x128(u2, u6, 0x31uy))
            Avx.Store(NativePtr.add d 112, Avx.Permute2x128(u3, u7, 0x31uy))

        p <- p + 8

    while p < kc do
        for j in 0..15 do
            NativePtr.set panel (p * 16 + j) (NativePtr.get b (j * ldb + p))

        p <- p + 1

/// An 8-column panel of transposed float64 B, by 4x4 blocks (see packTransposed32).
let private packTransposed64 (b: nativeptr<float>) (ldb: int) (kc: int) (panel: nativeptr<float>) =
    let mutable p = 0

    while p + 4 <= kc do
        for half in 0..1 do
            let s = NativePtr.add b (half * 4 * ldb + p)

            let row r =
                Avx.LoadVector256(NativePtr.add s (r * ldb))

            let t0 = Avx.UnpackLow(row 0, row 1)
            let t1 = Avx.UnpackHigh(row 0, row 1)
            let t2 = Avx.UnpackLow(row 2, row 3)
            let t3 = Avx.UnpackHigh(row 2, row 3)
            let d = NativePtr.add panel (p * 8 + half * 4)
            Avx.Store(d, Avx.Permute2x128(t0, t2, 0x20uy))
            Avx.Store(NativePtr.add d 8, Avx.Permute2x128(t1, t3, 0x20uy))
            Avx.Store(NativePtr.add d 16, Avx.Permute2x128(t0, t2, 0x31uy))
            Avx.Store(NativePtr.add d 24, Avx.Permute2x128(t1, t3, 0x31uy))

        p <- p + 4

    while p < kc do
        for j in 0..7 do
            NativePtr.set panel (p * 8 + j) (NativePtr.get b (j * ldb + p))

        p <- p + 1

let inline private retype<'T, 'U when 'T: unmanaged and 'U: unmanaged> (p: nativeptr<'T>) : nativeptr<'U> =
    NativePtr.ofNativeInt<'U>(NativePtr.toNativeInt p)

/// Pack depth [0, kc) x columns [0, cols) of op(B) (offset to the block's corner) into depth-major
/// micro-panels of nr columns, zero-padded: the layout the kernel streams.
let private packB (transB: bool) (b: nativeptr<'T>) (ldb: int) (kc: int) (cols: int) (nr: int) (dst: nativeptr<'T>) =
    // Type tests on 'T are constants once the JIT specialises this for float32 or float64.
    let transposed32 =
        transB
        && Avx.IsSupported
        && nr = 16
        && Type.op_Equality (typeof<'T>, typeof<float32>)

    let transposed64 =
        transB
        && Avx.IsSupported
        && nr = 8
        && Type.op_Equality (typeof<'T>, typeof<float>)

    let mutable j = 0

    while j < cols do
        let panel = NativePtr.add dst (j * kc)
        let w = min nr (cols - j)

        let src =
            if transB then
                NativePtr.add b (j * ldb)
            else
                NativePtr.add b j

        if not transB then
            for p in 0 .. kc - 1 do
                copyRow (NativePtr.add src (p * ldb)) (NativePtr.add panel (p * nr)) w nr
        elif w = nr && transposed32 then
            packTransposed32 (retype src) ldb kc (retype panel)
        elif w = nr && transposed64 then
            packTransposed64 (retype src) ldb kc (retype panel)
        else
            // Column jj of op(B) is row jj of the stored B: read along it, write across the panel.
            for jj in 0 .. w - 1 do
                let row = NativePtr.add src (jj * ldb)

                for p in 0 .. kc - 1 do
                    NativePtr.set panel (p * nr + jj) (NativePtr.get row p)

            if w < nr then
                for p in 0 .. kc - 1 do
                    for jj in w .. nr - 1 do
                        NativePtr.set panel (p * nr + jj) Unchecked.defaultof<'T>

        j <- j + nr

/// How C is cut into tiles, each computed start to finish by one worker.
type Grid =
    { RowTiles: int
      ColTiles: int
      TileRows: int
      TileCols: int }

// Below this many multiply-adds a GEMM runs on the calling thread. Waking a second worker costs
// 5-20 us (more on a busy machine), about what the kernel needs for this much work: on this
// 2-core machine 96^3 was slower on two threads (15-22 us) than on one (14 us), 128^3 faster
// (20 us against 34).
let private parallelThreshold = 1L <<< 20

/// Choose the tiles for `workers` workers. Tile edges fall on multiples of MR and NR counted from
/// C's corner, whatever the grid, so every element of C is computed by the same operations (the
/// same micro-kernel lane, the same k blocks) with any number of workers: the grid only moves work
/// between threads. Cost model: rounds of tiles times the work of one tile, packing included
/// (a tile packs its rows of A and its columns of B once per k block).
let grid (mr: int) (nr: int) (nc: int) (workers: int) (m: int) (n: int) (k: int) : Grid =
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
                // columns of B once per k block; an element of that costs about as much as 4
                // multiply-adds of the kernel.
                let tile =
                    float tileRows * float tileCols * float k
                    + 4.0 * float k * float (tileRows + tileCols)

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

    member _.Tile(index: int) =
        let mr = kernel.MR
        let nr = kernel.NR
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
        let icBlocks = ceilDiv rows mcMax
        let mcSize = roundUp (ceilDiv rows icBlocks) mr

        for kb in 0 .. kBlocks - 1 do
            let p0 = kb * kcMax
            let kc = min kcMax (k - p0)
            let beta = if kb = 0 then beta else one

            let bCorner =
                if transB then
                    NativePtr.add b (j0 * ldb + p0)
                else
                    NativePtr.add b (p0 * ldb + j0)

            packB transB bCorner ldb kc cols nr packedB

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
                        transA
                        (NativePtr.add aCorner (full * lda))
                        lda
                        (mc - full)
                        kc
                        mr
                        (NativePtr.add packedA (full * kc))

                let mutable jr = 0

                while jr < cols do
                    let w = min nr (cols - jr)
                    let bPanel = NativePtr.add packedB (jr * kc)
                    let mutable ir = 0

                    while ir < mc do
                        let h = min mr (mc - ir)

                        let struct (aPanel, aRow, aStep) =
                            if ir < full then
                                struct (NativePtr.add aCorner (ir * lda), lda, 1)
                            else
                                struct (NativePtr.add packedA (ir * kc), packedRow, packedStep)

                        let cTile = NativePtr.add c ((i + ir) * ldc + j0 + jr)

                        if h = mr && w = nr then
                            kernel.Run(kc, aPanel, aRow, aStep, bPanel, cTile, ldc, alpha, beta)
                        else
                            // An edge tile goes through a full-size buffer and the same kernel, so
                            // that its elements get exactly the arithmetic of interior ones.
                            for r in 0 .. h - 1 do
                                for j in 0 .. w - 1 do
                                    NativePtr.set edge (r * nr + j) (NativePtr.get cTile (r * ldc + j))

                            kernel.Run(kc, aPanel, aRow, aStep, bPanel, edge, nr, alpha, beta)

                            for r in 0 .. h - 1 do
                                for j in 0 .. w - 1 do
                                    NativePtr.set cTile (r * ldc + j) (NativePtr.get edge (r * nr + j))

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
    let g = grid kernel.MR kernel.NR blocking.NC (Parallelism.degree ()) m n k
    // Balanced k blocks, fixed by k alone: the order of the sum over k is part of every result.
    let kBlocks = ceilDiv k blocking.KC
    let kcMax = ceilDiv k kBlocks
    let mcMax = min (roundUp blocking.MC kernel.MR) g.TileRows
    // Untransposed A is read in place: its rows are contiguous, as the kernel wants, so packing
    // would only copy it. Not when rows sit a multiple of 4 KB apart, though: then the rows of an
    // A block fall into the same few cache sets and evict each other, which packing prevents.
    let directA = not transA && lda * sizeof<'T> % 4096 <> 0

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
