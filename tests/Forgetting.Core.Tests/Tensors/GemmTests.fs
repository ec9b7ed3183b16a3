module Forgetting.Tests.Tensors.GemmTests

open System
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open System.Threading
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Tests

/// One GEMM call: shapes, flags, scalars, and the layout of the three arrays (offsets into them,
/// row strides wider than the rows by a padding, spare elements after the last row).
type Case =
    { TransA: bool
      TransB: bool
      M: int
      N: int
      K: int
      Alpha: float
      Beta: float
      Offsets: int * int * int
      Pads: int * int * int
      Tails: int * int * int
      Seed: int }

let private dim =
    Gen.frequency
        [ 2, Gen.elements [ 0; 1; 2; 3 ]
          4, Gen.choose (4, 33)
          2, Gen.choose (34, 90) ]

// Depths past the kernel's k block (256) make C accumulate over several blocks.
let private depth =
    Gen.frequency
        [ 2, Gen.elements [ 0; 1; 2 ]
          4, Gen.choose (3, 40)
          2, Gen.choose (41, 300)
          1, Gen.choose (301, 600) ]

let private triple g = Gen.map3 (fun x y z -> x, y, z) g g g

let private cases =
    gen {
        let! transA = Gen.elements [ false; true ]
        let! transB = Gen.elements [ false; true ]
        let! m = dim
        let! n = dim
        let! k = depth
        let! alpha = Gen.elements [ 1.0; -1.0; 0.5; 2.5; 0.0 ]
        let! beta = Gen.elements [ 0.0; 1.0; -0.5; 0.25 ]
        let! offsets = triple (Gen.frequency [ 3, Gen.constant 0; 2, Gen.choose (1, 7) ])
        let! pads = triple (Gen.frequency [ 3, Gen.constant 0; 2, Gen.choose (1, 9) ])
        let! tails = triple (Gen.choose (0, 3))
        let! seed = Gen.choose (0, Int32.MaxValue)

        return
            { TransA = transA
              TransB = transB
              M = m
              N = n
              K = k
              Alpha = alpha
              Beta = beta
              Offsets = offsets
              Pads = pads
              Tails = tails
              Seed = seed }
    }

/// Shapes that stress one side: a row or column vector against a wide matrix, long thin panels,
/// sizes just past a micro-tile or a k block.
let private awkwardShapes =
    [ 1, 700, 300
      700, 1, 300
      7, 13, 2000
      97, 5, 513
      6, 16, 257
      13, 33, 256
      200, 250, 3 ]

/// Every array of a case, with the row strides: the ops' shapes decide the stored ones.
type Layout =
    { A: float[]
      Lda: int
      B: float[]
      Ldb: int
      C: float[]
      Ldc: int }

let private layout (c: Case) =
    let rnd = Random c.Seed
    let aOffset, bOffset, cOffset = c.Offsets
    let aPad, bPad, cPad = c.Pads
    let aTail, bTail, cTail = c.Tails

    let make rows cols offset pad tail =
        let ld = max 1 (cols + pad)

        let length =
            offset + (if rows = 0 || cols = 0 then 0 else (rows - 1) * ld + cols) + tail

        // Values with few significant bits keep float32 products exact enough to compare, yet
        // every element different enough to catch a misplaced one.
        Array.init length (fun _ -> float (rnd.Next(-64, 65)) / 16.0), ld

    let a, lda =
        if c.TransA then
            make c.K c.M aOffset aPad aTail
        else
            make c.M c.K aOffset aPad aTail

    let b, ldb =
        if c.TransB then
            make c.N c.K bOffset bPad bTail
        else
            make c.K c.N bOffset bPad bTail

    let cArray, ldc = make c.M c.N cOffset cPad cTail

    { A = a
      Lda = lda
      B = b
      Ldb = ldb
      C = cArray
      Ldc = ldc }

/// The reference: C as a triple loop in float64 computes it, and for every element a bound on
/// the rounding error of any order of summation, (|alpha| sum |a b| + |beta c|) times a number of
/// roundings; elements outside the m x n window keep their values.
let private reference (c: Case) (l: Layout) =
    let aOffset, bOffset, cOffset = c.Offsets
    let result = Array.copy l.C
    let scale = Array.zeroCreate l.C.Length

    for i in 0 .. c.M - 1 do
        for j in 0 .. c.N - 1 do
            let mutable s = 0.0
            let mutable abs' = 0.0

            for p in 0 .. c.K - 1 do
                let x =
                    if c.TransA then
                        l.A[aOffset + p * l.Lda + i]
                    else
                        l.A[aOffset + i * l.Lda + p]

                let y =
                    if c.TransB then
                        l.B[bOffset + j * l.Ldb + p]
                    else
                        l.B[bOffset + p * l.Ldb + j]

                s <- s + x * y
                abs' <- abs' + abs (x * y)

            let at = cOffset + i * l.Ldc + j
            let old = if c.Beta = 0.0 then 0.0 else l.C[at]
            result[at] <- c.Alpha * s + c.Beta * old
            scale[at] <- abs c.Alpha * abs' + abs (c.Beta * old)

    result, scale

/// |got - want| <= 4 (k + 2) u scale: twice the classical bound for a sum of k + 2 terms, as both
/// the kernel and the reference round (u = 2^-53 for float64, 2^-24 for float32).
let private close (unitRoundoff: float) (c: Case) (got: float[]) (want: float[], scale: float[]) =
    let tolerance = 4.0 * float (c.K + 2) * unitRoundoff

    Array.length got = Array.length want
    && Seq.forall
        (fun i -> got[i] = want[i] || abs (got[i] - want[i]) <= tolerance * scale[i])
        (seq { 0 .. got.Length - 1 })

let private u64 = Math.Pow(2.0, -53.0)
let private u32 = Math.Pow(2.0, -24.0)

/// The shape of sgemm and dgemm (and of their provider- and kernel-specific variants).
type Gemm<'t> =
    bool
        -> bool
        -> int
        -> int
        -> int
        -> 't
        -> 't[]
        -> int
        -> int
        -> 't[]
        -> int
        -> int
        -> 't
        -> 't[]
        -> int
        -> int
        -> unit

/// Run a float64 GEMM on a case, returning the whole C array.
let private computeD (gemm: Gemm<float>) (c: Case) =
    let l = layout c
    let aOffset, bOffset, cOffset = c.Offsets
    let got = Array.copy l.C
    gemm c.TransA c.TransB c.M c.N c.K c.Alpha l.A aOffset l.Lda l.B bOffset l.Ldb c.Beta got cOffset l.Ldc
    got

/// Run a float32 GEMM on a case (the float64 values are exact in float32), returning C widened.
let private computeS (gemm: Gemm<float32>) (c: Case) =
    let l = layout c
    let aOffset, bOffset, cOffset = c.Offsets
    let got = Array.map float32 l.C
    let alpha, beta = float32 c.Alpha, float32 c.Beta
    let a, b = Array.map float32 l.A, Array.map float32 l.B
    gemm c.TransA c.TransB c.M c.N c.K alpha a aOffset l.Lda b bOffset l.Ldb beta got cOffset l.Ldc
    Array.map float got

let private runD (gemm: Gemm<float>) (c: Case) =
    close u64 c (computeD gemm c) (reference c (layout c))

let private runS (gemm: Gemm<float32>) (c: Case) =
    close u32 c (computeS gemm c) (reference c (layout c))

/// Managed and OpenBLAS each within the bound of the reference, and of each other.
let private agreeD (c: Case) =
    let _, scale as want = reference c (layout c)
    let managed = computeD (Gemm.dgemmWith Gemm.Managed) c
    let openBlas = computeD (Gemm.dgemmWith Gemm.OpenBlas) c

    close u64 c managed want
    && close u64 c openBlas want
    && close u64 c managed (openBlas, scale)

let private agreeS (c: Case) =
    let _, scale as want = reference c (layout c)
    let managed = computeS (Gemm.sgemmWith Gemm.Managed) c
    let openBlas = computeS (Gemm.sgemmWith Gemm.OpenBlas) c

    close u32 c managed want
    && close u32 c openBlas want
    && close u32 c managed (openBlas, scale)

let private awkward (transA, transB) (m, n, k) =
    { TransA = transA
      TransB = transB
      M = m
      N = n
      K = k
      Alpha = 1.5
      Beta = -0.5
      Offsets = 3, 1, 2
      Pads = 1, 0, 5
      Tails = 0, 2, 1
      Seed = m * 31 + n * 7 + k }

let private flags = [ false, false; false, true; true, false; true, true ]

let private awkwardCases =
    [ for f in flags do
          for s in awkwardShapes -> awkward f s ]
    // A with rows 4 KB apart (lda = 1024) is packed instead of read in place, transposed or not
    // (stored 20 x 1024 untransposed, 300 x 1024 transposed).
    @ [ for transB in [ false; true ] ->
            { awkward (false, transB) (20, 40, 300) with
                Pads = 724, 0, 0 } ]
    @ [ for transB in [ false; true ] ->
            { awkward (true, transB) (20, 40, 300) with
                Pads = 1004, 0, 0 } ]


/// Shapes around the edges of every kernel's tiles: rows of 8 (AVX-512) and 6 (FMA), columns of
/// 32 with a last panel of at most 16 run by the AVX-512 kernel's narrow one (16 and 48 exactly,
/// 10 as the MLP's output layer), 16 (FMA) and 8 (portable), and depths across a k block.
let private edgeCases =
    [ for transA, transB in flags do
          for m in [ 1; 5; 7; 8; 9; 14; 17 ] do
              for n in [ 1; 7; 10; 15; 16; 17; 31; 32; 33; 47; 48; 49 ] do
                  for k in [ 9; 257 ] do
                      let beta = if (m + n) % 2 = 0 then 0.0 else -0.5

                      { awkward (transA, transB) (m, n, k) with
                          Beta = beta
                          Pads = (m % 3, n % 2, 1) } ]

/// The managed kernels by name, as tests name them (Gemm.Engine is internal to the library).
let private engine (name: string) =
    match name with
    | "Avx512" -> Gemm.Engine.Avx512
    | "Fma" -> Gemm.Engine.Fma
    | "Portable" -> Gemm.Engine.Portable
    | _ -> invalidArg (nameof name) name


/// Each managed kernel on its own: every one this processor runs is checked against the reference
/// (the default provider checks only the fastest), and one it cannot run is refused. Which of the two
/// applies is decided when the tests are listed, from the kernels this processor runs.
let private kernelTests (name: string) =
    let e = engine name

    if List.contains e Gemm.kernels then
        testList
            $"{name} runs here"
            [ Checks.forAll $"{name} dgemm on generated cases" 100 cases (runD (Gemm.gemmOn<float> e))
              Checks.forAll $"{name} sgemm on generated cases" 100 cases (runS (Gemm.gemmOn<float32> e))

              test $"{name} on awkward and edge shapes" {
                  for c in awkwardCases @ edgeCases do
                      Expect.isTrue (runD (Gemm.gemmOn<float> e) c) $"{name} dgemm %A{c}"
                      Expect.isTrue (runS (Gemm.gemmOn<float32> e) c) $"{name} sgemm %A{c}"
              } ]
    else
        test $"{name} does not run here and is refused" {
            let refused =
                Expectations.throws<InvalidOperationException> $"{name} (kernels here: %A{Gemm.kernels})" (fun () ->
                    computeS (Gemm.gemmOn<float32> e) (awkward (false, false) (20, 20, 20))
                    |> ignore)

            Expect.stringContains refused.Message name "the refusal names the kernel"
        }

/// Managed against OpenBLAS where it loads; where it does not, the fallback is checked instead, so
/// that this tests something on every machine (and its test names say which).
let private openBlasTests =
    match OpenBlas.describe () with
    | Some description ->
        Sequencing.openBlas
        <| testList
            "managed and OpenBLAS agree, or without OpenBLAS it is refused and Managed is used"
            [ test "OpenBLAS loads here, beside the managed provider" {
                  Expect.equal Gemm.available [ Gemm.Managed; Gemm.OpenBlas ] $"Gemm.available with {description}"
              }

              Checks.forAll "dgemm of managed and OpenBLAS agree" 60 cases agreeD
              Checks.forAll "sgemm of managed and OpenBLAS agree" 60 cases agreeS

              test "managed and OpenBLAS agree on awkward shapes" {
                  for c in awkwardCases do
                      Expect.isTrue (agreeS c && agreeD c) $"%A{c}"
              }

              test "the default stays managed" {
                  // The default stays managed even with OpenBLAS present: only it is thread-count deterministic.
                  if isNull (Environment.GetEnvironmentVariable Gemm.EnvironmentVariable) then
                      Expect.equal (Gemm.provider ()) Gemm.Managed "Gemm.provider ()"
              } ]
    | None ->
        testList
            "managed and OpenBLAS agree, or without OpenBLAS it is refused and Managed is used"
            [ test "OpenBLAS does not load here: it is refused and Managed is used" {
                  Expect.equal Gemm.available [ Gemm.Managed ] "Gemm.available"

                  let refused =
                      Expectations.throws<InvalidOperationException> "sgemm on OpenBLAS" (fun () ->
                          Gemm.sgemmWith
                              Gemm.OpenBlas
                              false
                              false
                              2
                              2
                              2
                              1.0f
                              (Array.zeroCreate 4)
                              0
                              2
                              (Array.zeroCreate 4)
                              0
                              2
                              0.0f
                              (Array.zeroCreate 4)
                              0
                              2)

                  Expect.stringContains refused.Message "libopenblas0-pthread" "the refusal names the package"

                  Expectations.throws<InvalidOperationException> "useProvider OpenBlas" (fun () ->
                      Gemm.useProvider Gemm.OpenBlas)
                  |> ignore

                  if isNull (Environment.GetEnvironmentVariable Gemm.EnvironmentVariable) then
                      Expect.equal (Gemm.provider ()) Gemm.Managed "Gemm.provider ()"
              } ]

[<Tests>]
let tests =
    testList
        "GEMM"
        [ testList
              "dgemm equals the triple loop for every transpose, offset, stride, alpha and beta"
              [ Checks.forAll "dgemm on generated cases" 100 cases (runD (Gemm.dgemmWith Gemm.Managed))

                test "dgemm on awkward shapes" {
                    for c in awkwardCases do
                        Expect.isTrue (runD (Gemm.dgemmWith Gemm.Managed) c) $"%A{c}"
                } ]

          testList
              "sgemm equals the triple loop within float32 rounding"
              [ Checks.forAll "sgemm on generated cases" 100 cases (runS (Gemm.sgemmWith Gemm.Managed))

                test "sgemm on awkward shapes" {
                    for c in awkwardCases do
                        Expect.isTrue (runS (Gemm.sgemmWith Gemm.Managed) c) $"%A{c}"
                } ]

          testList
              "each managed kernel equals the triple loop, or is refused where it cannot run"
              [ for name in [ "Avx512"; "Fma"; "Portable" ] -> kernelTests name ]

          test "the fastest kernel the processor runs is the default" {
              let expected =
                  if Vector512.IsHardwareAccelerated && Avx512F.IsSupported then
                      Gemm.Engine.Avx512
                  elif Fma.IsSupported && Avx2.IsSupported then
                      Gemm.Engine.Fma
                  else
                      Gemm.Engine.Portable

              Expect.equal Gemm.kernels.Head expected $"the first of the kernels here, %A{Gemm.kernels}"
              Expect.equal (List.last Gemm.kernels) Gemm.Engine.Portable "the last kernel"
              let struct (fast, _) = Gemm.kernelOf<float32> Gemm.Engine.Fast
              let struct (first, _) = Gemm.kernelOf<float32> Gemm.kernels.Head
              Expectations.same fast first "the Fast kernel is the first one"
          }

          test "beta = 0 overwrites C without reading it, even NaN" {
              let engines =
                  [ for p in Gemm.available -> string p, Gemm.dgemmWith p, Gemm.sgemmWith p ]
                  @ [ for e in Gemm.kernels -> string e, Gemm.gemmOn<float> e, Gemm.gemmOn<float32> e ]

              for name, dgemm, sgemm in engines do
                  // Tiny (the direct loop), large (the packed kernel), with edge tiles of rows and of narrow
                  // columns, alpha = 0 and k = 0 (no product at all).
                  for (m, n, k, alpha) in
                      [ 3, 4, 5, 1.0
                        40, 50, 300, 2.0
                        43, 41, 300, 1.0
                        40, 50, 300, 0.0
                        8, 9, 0, 1.0 ] do
                      let a = Array.init (m * k) (fun i -> float (i % 7) - 3.0)
                      let b = Array.init (k * n) (fun i -> float (i % 5) - 2.0)
                      let want = Array.zeroCreate (m * n)
                      Gemm.dgemmWith Gemm.Managed false false m n k alpha a 0 (max 1 k) b 0 n 0.0 want 0 n
                      let c = Array.create (m * n) nan
                      dgemm false false m n k alpha a 0 (max 1 k) b 0 n 0.0 c 0 n

                      Expect.isTrue (Array.forall Double.IsFinite c) $"{name} dgemm {m}x{n}x{k} alpha={alpha} left NaN"

                      Expect.equal c want $"{name} dgemm {m}x{n}x{k} alpha={alpha}"

                      let c32 = Array.create (m * n) Single.NaN

                      sgemm
                          false
                          false
                          m
                          n
                          k
                          (float32 alpha)
                          (Array.map float32 a)
                          0
                          (max 1 k)
                          (Array.map float32 b)
                          0
                          n
                          0.0f
                          c32
                          0
                          n

                      Expect.isTrue
                          (Array.forall Single.IsFinite c32)
                          $"{name} sgemm {m}x{n}x{k} alpha={alpha} left NaN"

                      Expect.equal (Array.map float c32) want $"{name} sgemm {m}x{n}x{k} alpha={alpha}"
          }

          Sequencing.degreeOfParallelism
          <| test "results are bit-identical with 1, 2 and 3 workers" {
              // Edge tiles in both directions for every kernel: 150 rows are not a multiple of 8 or 6, and
              // 170 columns leave 10 for the AVX-512 kernel's narrow panel; 600 is three k blocks.
              let m, n, k = 150, 170, 600
              let rnd = Random 7
              let a = Array.init (m * k) (fun _ -> rnd.NextDouble() - 0.5)
              let b = Array.init (k * n) (fun _ -> rnd.NextDouble() - 0.5)
              let c0 = Array.init (m * n) (fun _ -> rnd.NextDouble() - 0.5)

              for e in Gemm.kernels do
                  // The test means something only if the work is cut differently: one tile, then several.
                  let struct (k32, b32) = Gemm.kernelOf<float32> e
                  let struct (k64, b64) = Gemm.kernelOf<float> e

                  for g1, g2 in
                      [ ManagedGemm.grid k32.MR k32.NR b32 1 m n k, ManagedGemm.grid k32.MR k32.NR b32 2 m n k
                        ManagedGemm.grid k64.MR k64.NR b64 1 m n k, ManagedGemm.grid k64.MR k64.NR b64 2 m n k ] do
                      Expect.equal (g1.RowTiles * g1.ColTiles) 1 $"{e}: tiles of one worker, %A{g1}"
                      Expect.isTrue (g2.RowTiles * g2.ColTiles >= 2) $"{e}: %A{g2}"

                  for transA, transB in flags do
                      let lda = if transA then m else k
                      let ldb = if transB then k else n

                      let runD workers =
                          Parallelism.withDegree workers (fun () ->
                              let c = Array.copy c0
                              Gemm.gemmOn<float> e transA transB m n k 0.75 a 0 lda b 0 ldb 0.5 c 0 n
                              c)

                      let runS workers =
                          Parallelism.withDegree workers (fun () ->
                              let c = Array.map float32 c0

                              Gemm.gemmOn<float32>
                                  e
                                  transA
                                  transB
                                  m
                                  n
                                  k
                                  0.75f
                                  (Array.map float32 a)
                                  0
                                  lda
                                  (Array.map float32 b)
                                  0
                                  ldb
                                  0.5f
                                  c
                                  0
                                  n

                              c)

                      let flagsText = $"{e} transA={transA} transB={transB}"
                      let d1 = runD 1
                      Expect.equal (runD 2) d1 $"{flagsText}: dgemm on 2 workers"
                      Expect.equal (runD 3) d1 $"{flagsText}: dgemm on 3 workers"
                      let s1 = runS 1
                      Expect.equal (runS 2) s1 $"{flagsText}: sgemm on 2 workers"
                      Expect.equal (runS 3) s1 $"{flagsText}: sgemm on 3 workers"
          }

          test "argument errors name the op and the sizes" {
              let a = Array.zeroCreate<float> 12
              let b = Array.zeroCreate<float> 20
              let c = Array.zeroCreate<float> 15

              let error (f: unit -> unit) =
                  (Expectations.throwsAny<ArgumentException> "an ArgumentException" f).Message

              let negative =
                  error (fun () -> Gemm.dgemm false false -1 5 4 1.0 a 0 4 b 0 5 0.0 c 0 5)

              Expect.stringContains negative "dgemm" "a negative size: the op"
              Expect.stringContains negative "m=-1, n=5, k=4" "a negative size: the sizes"

              // A is 3x4, so lda must be at least 4.
              let lda = error (fun () -> Gemm.dgemm false false 3 5 4 1.0 a 0 3 b 0 5 0.0 c 0 5)
              Expect.stringContains lda "dgemm" "a short lda: the op"
              Expect.stringContains lda "lda must be >= 4, got 3" "a short lda: the bound"

              // Transposed, A is stored 4x3: lda 3 suffices, but 12 elements from offset 1 are too few.
              let short = error (fun () -> Gemm.dgemm true false 3 5 4 1.0 a 1 3 b 0 5 0.0 c 0 5)
              Expect.stringContains short "A is stored 4x3 (transposed) for m=3, n=5, k=4" "a short A: its layout"
              Expect.stringContains short "needs 13 elements; the array has 12" "a short A: the sizes"

              let cShort =
                  error (fun () ->
                      Gemm.sgemm
                          false
                          false
                          3
                          5
                          4
                          1.0f
                          (Array.zeroCreate 12)
                          0
                          4
                          (Array.zeroCreate 20)
                          0
                          5
                          0.0f
                          (Array.zeroCreate 14)
                          0
                          5)

              Expect.stringContains cShort "sgemm" "a short C: the op"
              Expect.stringContains cShort "C is stored 3x5" "a short C: its layout"

              let offset =
                  error (fun () ->
                      Gemm.sgemm
                          false
                          false
                          3
                          5
                          4
                          1.0f
                          (Array.zeroCreate 12)
                          0
                          4
                          (Array.zeroCreate 20)
                          -1
                          5
                          0.0f
                          (Array.zeroCreate 15)
                          0
                          5)

              Expect.stringContains offset "B's offset must be >= 0, got -1" "a negative offset"
          }

          Sequencing.degreeOfParallelism
          <| test "the degree of parallelism is validated and forTiles runs every tile once" {
              Expectations.throws<ArgumentException> "setDegree 0" (fun () -> Parallelism.setDegree 0)
              |> ignore

              for workers in [ 1; 2; 5 ] do
                  Parallelism.withDegree workers (fun () ->
                      let hits: int[] = Array.zeroCreate 100
                      Parallelism.forTiles 100 (fun i -> Interlocked.Increment(&hits[i]) |> ignore)
                      Expect.isTrue (Array.forall ((=) 1) hits) $"degree {workers}: %A{hits}")

                  // A kernel's own exception reaches the caller as itself, not wrapped.
                  Parallelism.withDegree workers (fun () ->
                      Expectations.throws<InvalidOperationException>
                          $"degree {workers}: the tile's exception"
                          (fun () ->
                              Parallelism.forTiles 4 (fun i ->
                                  if i = 2 then
                                      invalidOp "tile 2"))
                      |> ignore)
          }

          openBlasTests ]
