/// Invariants of the engine other than gradients: broadcasting, softmax, matmul and conv2d against
/// naive loops, float32 against float64, stability, errors that name the op, and the RNG.
module Forgetting.Tests.Tensors.TensorTests

open System
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

let private close (tol: float) (a: float[]) (b: float[]) =
    a.Length = b.Length
    && Array.forall2 (fun (x: float) y -> Math.Abs(x - y) <= tol * (1.0 + Math.Abs y)) a b

let private naiveMatmul (a: float[]) (b: float[]) m k n =
    Array.init (m * n) (fun ij ->
        let i, j = ij / n, ij % n
        Seq.sum (seq { for p in 0 .. k - 1 -> a[i * k + p] * b[p * n + j] }))

let private dims = Gen.choose (1, 40)

let private convCases =
    Gen.zip
        (Gen.zip3 (Gen.choose (1, 2)) (Gen.choose (1, 3)) (Gen.choose (1, 3)))
        (Gen.zip3 (Gen.choose (1, 3)) (Gen.choose (1, 2)) (Gen.choose (0, 2)))

[<Tests>]
let tests =
    testList
        "tensor invariants"
        [ Checks.forAll
              "sign is 1, −1 or 0 (at 0 and NaN) element by element, in both dtypes and at any length"
              100
              (Gen.zip (Gen.choose (0, 70)) seeds)
              (fun (n, seed) ->
                  let rng = System.Random seed

                  let xs =
                      Array.init n (fun i ->
                          match i % 7 with
                          | 0 -> 0.0
                          | 1 when n > 20 -> nan
                          | _ -> rng.NextDouble() * 4.0 - 2.0)

                  let expected =
                      xs
                      |> Array.map (fun x ->
                          if x > 0.0 then 1.0
                          elif x < 0.0 then -1.0
                          else 0.0)

                  [ Float32; Float64 ]
                  |> List.forall (fun dtype ->
                      (Tensor.sign (Tensor.create dtype [| n |] xs)).ToFloat64Array() = expected))
          Checks.forAll
              "broadcasting equals explicit expansion"
              100
              (Gen.zip broadcastPairs seeds)
              (fun ((sa, sb), seed) ->
                  let a, b = tensor seed sa -2.0 2.0 0.0, tensor (seed + 1) sb -2.0 2.0 0.0
                  let shape = Shape.broadcast "test" sa sb
                  let ea, eb = Tensor.broadcastTo shape a, Tensor.broadcastTo shape b

                  [ (+); (-); (*); (fun x y -> Tensor.maximum x y) ]
                  |> List.forall (fun op -> (op a b).ToFloat64Array() = (op ea eb).ToFloat64Array()))

          Checks.forAll
              "softmax sums to 1 along its axis and log-softmax is its log"
              100
              (Gen.zip shapes seeds)
              (fun (shape, seed) ->
                  let x = tensor seed shape -30.0 30.0 0.0
                  let axis = shape.Length - 1 - seed % shape.Length
                  let s = Tensor.softmax axis x
                  let sums = Tensor.sumAxis axis false s

                  close 1e-12 (sums.ToFloat64Array()) (Array.create sums.Numel 1.0)
                  && close 1e-12 ((Tensor.logSoftmax axis x).ToFloat64Array()) ((Tensor.log s).ToFloat64Array()))

          test "log-softmax and cross-entropy stay finite for huge logits" {
              for dtype in [ Float32; Float64 ] do
                  let logits =
                      Tensor.create dtype [| 2; 3 |] [| 1e4; -1e4; 0.0; 500.0; 500.0; -500.0 |]

                  let ls = (Tensor.logSoftmax 1 logits).ToFloat64Array()

                  for v in ls do
                      Expect.isTrue (Double.IsFinite v) $"log-softmax gave {v}"

                  let loss, g =
                      Tensor.valueAndGrad (fun l -> Functional.crossEntropy l [| 1; 2 |]) logits

                  Expect.isTrue (Double.IsFinite loss.Item) $"{dtype}: the loss is finite"

                  for v in g.ToFloat64Array() do
                      Expect.isTrue (Double.IsFinite v) $"{dtype}: the gradient is finite"

                  // Row 0 puts its mass on class 0 (loss 2e4); row 1 on classes 0 and 1 (loss 1000 + log 2).
                  Expectations.equalRounded
                      (if dtype = Float64 then 9 else 0)
                      loss.Item
                      ((2e4 + 1000.0 + Math.Log 2.0) / 2.0)
                      $"{dtype}: the loss"
          }

          Checks.forAll
              "matmul equals the naive triple loop, batched and shared"
              60
              (Gen.zip (Gen.zip3 dims dims dims) (Gen.zip (Gen.choose (1, 3)) seeds))
              (fun ((m, k, n), (b, seed)) ->
                  let a = tensor seed [| b; m; k |] -1.0 1.0 0.0
                  let w = tensor (seed + 1) [| k; n |] -1.0 1.0 0.0
                  let batched = tensor (seed + 2) [| b; k; n |] -1.0 1.0 0.0
                  let av, wv, bv = a.ToFloat64Array(), w.ToFloat64Array(), batched.ToFloat64Array()
                  let slice (v: float[]) i size = v[i * size .. (i + 1) * size - 1]
                  let shared = (Tensor.matmul a w).ToFloat64Array()
                  let each = (Tensor.matmul a batched).ToFloat64Array()
                  let plain = (Tensor.matmul (Tensor.index 0 a) w).ToFloat64Array()

                  close 1e-12 plain (naiveMatmul (slice av 0 (m * k)) wv m k n)
                  && Seq.forall
                      (fun i ->
                          close 1e-12 (slice shared i (m * n)) (naiveMatmul (slice av i (m * k)) wv m k n)
                          && close
                              1e-12
                              (slice each i (m * n))
                              (naiveMatmul (slice av i (m * k)) (slice bv i (k * n)) m k n))
                      [ 0 .. b - 1 ])

          Checks.forAll
              "conv2d equals a direct loop"
              100
              (Gen.zip convCases seeds)
              (fun (((n, c, o), (k, stride, padding)), seed) ->
                  let h, w = 7, 6
                  let x = tensor seed [| n; c; h; w |] -1.0 1.0 0.0
                  let wt = tensor (seed + 1) [| o; c; k; k |] -1.0 1.0 0.0
                  let bias = tensor (seed + 2) [| o |] -1.0 1.0 0.0
                  let y = Functional.conv2d stride padding x wt (Some bias)
                  let xv, wv, bv = x.ToFloat64Array(), wt.ToFloat64Array(), bias.ToFloat64Array()
                  let ho, wo = (h + 2 * padding - k) / stride + 1, (w + 2 * padding - k) / stride + 1

                  let expected =
                      [| for b in 0 .. n - 1 do
                             for oc in 0 .. o - 1 do
                                 for i in 0 .. ho - 1 do
                                     for j in 0 .. wo - 1 do
                                         let mutable acc = bv[oc]

                                         for ic in 0 .. c - 1 do
                                             for di in 0 .. k - 1 do
                                                 for dj in 0 .. k - 1 do
                                                     let r, s = i * stride - padding + di, j * stride - padding + dj

                                                     if r >= 0 && r < h && s >= 0 && s < w then
                                                         acc <-
                                                             acc
                                                             + xv[((b * c + ic) * h + r) * w + s]
                                                               * wv[((oc * c + ic) * k + di) * k + dj]

                                         acc |]

                  y.Shape = [| n; o; ho; wo |] && close 1e-12 (y.ToFloat64Array()) expected)

          Checks.forAll
              "float32 ops agree with float64 within float32 precision"
              100
              (Gen.zip shapes seeds)
              (fun (shape, seed) ->
                  let x64 = tensor seed shape 0.1 2.0 0.0
                  let x32 = Tensor.cast Float32 x64

                  let f (x: Tensor) =
                      Tensor.softmax
                          -1
                          (Tensor.exp x * Tensor.log x + Tensor.sigmoid x / Tensor.sqrt x - Tensor.tanh x)

                  close 1e-5 ((f x32).ToFloat64Array()) ((f x64).ToFloat64Array()))

          test "errors name the op and the shapes" {
              let a = Tensor.zeros Float32 [| 2; 3 |]
              let b = Tensor.zeros Float32 [| 4 |]

              let message (f: unit -> Tensor) =
                  (Expectations.throwsAny<ArgumentException> "an ArgumentException" (fun () -> f () |> ignore)).Message

              Expect.equal
                  (message (fun () -> a + b))
                  "Add: shapes [2, 3] and [4] cannot be broadcast together"
                  "shapes that do not broadcast"

              Expect.equal
                  (message (fun () -> Tensor.matmul a b))
                  "matmul: cannot multiply shapes [2, 3] and [4]"
                  "matmul of a vector"

              Expect.equal
                  (message (fun () -> Tensor.matmul a a))
                  "matmul: inner dimensions differ: [2, 3] × [2, 3]"
                  "matmul of mismatched matrices"

              Expect.equal
                  (message (fun () -> Tensor.sumAxis 2 false a))
                  "sumAxis: axis 2 is out of range for shape [2, 3]"
                  "an axis out of range"

              Expect.equal
                  (message (fun () -> Tensor.reshape [| 4; -1 |] a))
                  "reshape: cannot reshape 6 elements into shape [4, -1]"
                  "an impossible reshape"

              Expect.equal
                  (message (fun () -> a + Tensor.zeros Float64 [| 2; 3 |]))
                  "Add: dtypes differ: Float32 [2, 3] and Float64 [2, 3]"
                  "mixed dtypes"

              Expect.equal
                  (message (fun () -> Functional.crossEntropy a [| 0; 3 |]))
                  "crossEntropy: label 3 at row 1 is outside the 3 classes"
                  "a label out of range"

              Expect.stringStarts
                  (message (fun () -> Tensor.grad id a))
                  "grad: the function must return a scalar (one element), it returned shape [2, 3]"
                  "grad of a non-scalar"

              Expect.equal
                  (message (fun () -> Tensor.ofArray [| 2; 2 |] [| 1f; 2f; 3f |]))
                  "ofArray: 3 values do not fill shape [2, 2] (4 elements)"
                  "too few values"
          }

          test "no state leaks between gradient calls" {
              let x = tensor 3 [| 4 |] -1.0 1.0 0.0
              let f (x: Tensor) = Tensor.sum (Tensor.tanh x * x)
              let g1 = (Tensor.grad f x).ToFloat64Array()
              let _ = Tensor.grad (fun y -> Tensor.sum (y * 5.0)) x
              let g2 = (Tensor.grad f x).ToFloat64Array()
              Expect.equal g2 g1 "the same gradient after another gradient call"
              Expect.isFalse (Tensor.grad f x).IsTracked "a gradient is not tracked"
              // A function that ignores its input has a zero gradient.
              Expect.equal
                  ((Tensor.grad (fun _ -> Tensor.scalar Float64 2.0) x).ToFloat64Array())
                  (Array.zeroCreate 4)
                  "the gradient of a constant"
          }

          test "the same key gives the same draws; split keys give different ones" {
              let r = Rng.create 42L
              Expect.equal (Rng.normal 100 (Rng.create 42L)) (Rng.normal 100 r) "draws from equal keys"
              let a, b = Rng.split r
              Expect.notEqual (Rng.uniform 10 b) (Rng.uniform 10 a) "draws from the two halves of a split"
              Expect.notEqual (Rng.uniform 10 r) (Rng.uniform 10 a) "draws from a key and a half of its split"
              let keys = Rng.splitN 5 r |> Array.map (fun k -> k.Key)
              Expect.equal (Array.distinct keys |> Array.length) 5 "distinct keys of splitN 5"
              // A prefix of a larger draw is the smaller draw: values do not depend on the draw's size.
              let prefix = (Rng.uniform 1000 r)[..9]
              Expect.equal prefix (Rng.uniform 10 r) "a prefix of a larger draw"
          }

          testList
              "normal draws have mean 0 and sd 1; permutations are permutations"
              [ test "normal draws have mean 0 and sd 1" {
                    let z = Rng.normal 200_000 (Rng.create 7L)
                    let mean = Array.average z
                    let sd = sqrt (Array.averageBy (fun v -> (v - mean) ** 2.0) z)
                    Expectations.inRange mean -0.01 0.01 "the mean"
                    Expectations.inRange sd 0.99 1.01 "the sd"
                }

                Checks.forAll
                    "permutations are permutations"
                    100
                    (Gen.zip (Gen.choose (0, 300)) seeds)
                    (fun (n, seed) -> Array.sort (Rng.permutation n (Rng.create (int64 seed))) = Array.init n id) ]

          Sequencing.degreeOfParallelism
          <| test "a training step gives bit-identical parameters on 1 and 2 threads" {
              // Big enough for the GEMM to split its work over threads (more than 2^20 multiply-adds).
              let variant = Forgetting.Experiments.Variant.byName "lateral_inhibition"
              let model = Forgetting.Experiments.Variant.mlp variant [ 512; 256; 10 ]
              let p0 = model.Init (Rng.create 5L) Float32

              let batch: Forgetting.Training.Batch =
                  { Inputs = Tensor.uniform (Rng.create 6L) Float32 [| 64; 512 |] 0.0 1.0
                    Labels = Array.init 64 (fun i -> i % 10)
                    Task = 0
                    Outputs = 10 }

              let objective = Forgetting.Experiments.Variant.objective variant
              let sgd = Forgetting.Nn.Optim.sgdWith 0.01 0.9 false 0.0

              // The one training step (forward, backward, update) that the trainer and the runner use.
              let step () =
                  let state, _ =
                      Forgetting.Training.Step.run
                          model
                          sgd
                          (Rng.create 7L)
                          (Forgetting.Training.Step.init sgd objective p0)
                          batch

                  Forgetting.Nn.Params.tensors state.Params |> Array.map (fun t -> t.ToArray())

              let one = Parallelism.withDegree 1 step
              let two = Parallelism.withDegree 2 step
              Expect.equal two one "the parameters after a step on 2 threads"
          }
          Checks.forAll
              "Select.kth is the k-th of the sorted values, with runs of ties and at any length"
              200
              (Gen.zip3 (Gen.choose (1, 400)) (Gen.choose (1, 50)) seeds)
              (fun (n, levels, seed) ->
                  // Few levels make long runs of equal values; many make them rare.
                  let rng = System.Random seed
                  let xs = Array.init n (fun _ -> float (rng.Next levels) - float levels / 2.0)
                  let sorted = Array.sort xs

                  Array.init n id
                  |> Array.forall (fun k -> Select.kth k (Array.copy xs) = sorted[k]))
          Checks.forAll
              "medianFrom picks the k-th element by value, then position, as a sort of the group would"
              100
              (Gen.zip3 (Gen.choose (1, 300)) (Gen.choose (1, 6)) seeds)
              (fun (n, levels, seed) ->
                  let rng = System.Random seed
                  let xs = Array.init n (fun _ -> float (rng.Next levels))
                  let x = Tensor.ofFloat64 [| n |] xs

                  let byValueThenPosition =
                      Array.init n id
                      |> Array.sortWith (fun i j -> Operators.compare (xs[i], i) (xs[j], j))

                  let g = (Tensor.grad (Tensor.medianFrom 0 false None) x).ToFloat64Array()
                  g[byValueThenPosition[(n - 1) / 2]] = 1.0 && Array.sum g = 1.0)
          test "medianFrom takes the lower median of each group of trailing axes, over the included elements" {
              // Two groups of four: the lower median of an even count is the smaller middle element.
              let x = Tensor.ofFloat64 [| 2; 2; 2 |] [| 4.0; 1.0; 3.0; 2.0; -1.0; 5.0; 0.0; 7.0 |]
              let m = Tensor.medianFrom 1 false None x
              Expect.equal m.Shape [| 2 |] "one median per leading index"
              Expect.equal (m.ToFloat64Array()) [| 2.0; 0.0 |] "lower medians of {1, 2, 3, 4} and {-1, 0, 5, 7}"
              Expect.equal (Tensor.medianFrom 1 true None x).Shape [| 2; 1; 1 |] "keepDim keeps the axes as 1"
              Expect.equal (Tensor.medianFrom 0 false None x).Item 2.0 "the median of all eight"
              Expect.equal (Tensor.medianFrom 0 false None x).Item ((Tensor.median x).Item) "as Tensor.median"
              Expect.equal (Tensor.medianFrom 2 false None x).Shape [| 2; 2 |] "groups of the last axis"

              let among =
                  Tensor.ofFloat64 [| 2; 2; 2 |] [| 1.0; 1.0; 1.0; 0.0; 1.0; 1.0; 1.0; 1.0 |]

              Expect.equal
                  ((Tensor.medianFrom 1 false (Some among) x).ToFloat64Array())
                  [| 3.0; 0.0 |]
                  "the left-out 2.0 does not count: the median of {1, 3, 4}"

              let g = Tensor.grad (fun x -> Tensor.medianFrom 1 false None x |> Tensor.sum) x

              Expect.equal
                  (g.ToFloat64Array())
                  [| 0.0; 0.0; 0.0; 1.0; 0.0; 0.0; 1.0; 0.0 |]
                  "the gradient reaches the picked element of each group"

              let tie = Tensor.ofFloat64 [| 4 |] [| 1.0; 1.0; 1.0; 1.0 |]
              let gt = Tensor.grad (Tensor.medianFrom 0 false None) tie
              Expect.equal (gt.ToFloat64Array()) [| 0.0; 1.0; 0.0; 0.0 |] "at a tie, the first of the sorted middle"

              let none = Tensor.zeros Float64 [| 2; 2 |]

              Expect.throws
                  (fun () ->
                      Tensor.medianFrom 1 false (Some none) (Tensor.zeros Float64 [| 2; 2 |])
                      |> ignore)
                  "a group with nothing included is refused"

              Expect.throws (fun () -> Tensor.medianFrom 3 false None x |> ignore) "an axis outside the shape"
          }
          test "erf and GELU against reference values" {
              // Python's math.erf (the C library's erf) at these points, and GELU(1.3) = 0.65 (1 + erf(1.3/√2)).
              let points =
                  [| 0.0; 0.1; 0.5; 1.0; 2.0; 2.5; 2.50001; 2.6; 3.0; 4.0; 6.0; -1.5; -3.2 |]

              let expected =
                  [| 0.0
                     0.1124629160182849
                     0.5204998778130465
                     0.8427007929497149
                     0.9953222650189527
                     0.999593047982555
                     0.9995930697648527
                     0.9997639655834707
                     0.9999779095030014
                     0.9999999845827421
                     1.0
                     -0.9661051464753108
                     -0.9999939742388483 |]

              let got =
                  (Tensor.erf (Tensor.ofFloat64 [| points.Length |] points)).ToFloat64Array()

              for i in 0 .. points.Length - 1 do
                  Expect.isTrue
                      (abs (got[i] - expected[i]) <= 2e-15)
                      $"erf({points[i]}) = {got[i]:R}, expected {expected[i]:R}"

              let g = (Functional.gelu (Tensor.ofFloat64 [| 1 |] [| 1.3 |])).Item
              Expect.floatClose Accuracy.veryHigh g 1.1741593700387067 "GELU(1.3)"
              let g32 = (Functional.gelu (Tensor.ofArray [| 1 |] [| 1.3f |])).Item
              Expect.floatClose Accuracy.medium g32 1.1741593700387067 "GELU(1.3) in float32"
          }
          test "float32 GELU against float64 GELU, relative error ≤ 3e-7 on a dense grid" {
              // The float32 GELU's Φ (Numerical Recipes' erfcc on both sides, in float64 lanes) against
              // the float64 one (erf to about 1e-15), on 20,001 points of [−6, 6] and tiny arguments; ≤ 3e-7
              // is its 1.2e-7 plus float32 rounding of the result. Below x ≈ −5.5 GELU underflows toward 0
              // and is compared absolutely. The points' count is not a multiple of the lanes, so the padded
              // last group is among them; the gradient, Φ + x φ, is held to the same bound on its terms.
              let points =
                  Array.append (Array.init 20001 (fun i -> -6.0 + float i * 6e-4)) [| 1e-30; -1e-8; 1e-4; 0.7071067 |]
                  |> Array.map (fun v -> float (float32 v))

              let wide =
                  (Functional.gelu (Tensor.ofFloat64 [| points.Length |] points)).ToFloat64Array()

              let narrow =
                  (Functional.gelu (Tensor.ofArray [| points.Length |] (points |> Array.map float32))).ToFloat64Array()

              for i in 0 .. points.Length - 1 do
                  Expect.isTrue
                      (abs (narrow[i] - wide[i]) <= 3e-7 * abs wide[i] + 1e-12)
                      $"GELU({points[i]:R}) = {narrow[i]:R} in float32, {wide[i]:R} in float64"

              let slope (t: Tensor) =
                  (Tensor.grad (fun x -> Tensor.sum (Functional.gelu x)) t).ToFloat64Array()

              let wideSlope = slope (Tensor.ofFloat64 [| points.Length |] points)

              let narrowSlope =
                  slope (Tensor.ofArray [| points.Length |] (points |> Array.map float32))

              for i in 0 .. points.Length - 1 do
                  // Relative to the terms' sizes Φ + |x| φ: they cancel near GELU's minimum (x ≈ −0.75).
                  let x = points[i]
                  let cdf = if x = 0.0 then 0.5 else wide[i] / x
                  let scale = cdf + abs x * 0.3989422804014327 * exp (-0.5 * x * x)

                  Expect.isTrue
                      (abs (narrowSlope[i] - wideSlope[i]) <= 3e-7 * scale + 1e-12)
                      $"GELU'({points[i]:R}) = {narrowSlope[i]:R} in float32, {wideSlope[i]:R} in float64"
          }
          test "the fused layer norm and GELU equal their compositions of tensor ops" {
              // Layer norm: γ (x − μ)/√(σ² + ε) + β with the biased variance; GELU: x (1 + erf(x/√2))/2.
              let rng = Rng.create 5L
              let k = Rng.splitN 3 rng
              let x = Tensor.uniform k[0] Float64 [| 3; 5; 7 |] -3.0 3.0
              let gamma = Tensor.uniform k[1] Float64 [| 7 |] 0.5 1.5
              let beta = Tensor.uniform k[2] Float64 [| 7 |] -1.0 1.0
              let mu = Tensor.meanAxis -1 true x
              let var = Tensor.meanAxis -1 true (Tensor.square (x - mu))

              let composed = ((x - mu) / Tensor.sqrt (var + 1e-5) * gamma + beta).ToFloat64Array()

              let fused = (Functional.layerNorm 1e-5 gamma beta x).ToFloat64Array()

              for i in 0 .. fused.Length - 1 do
                  Expect.isTrue
                      (abs (fused[i] - composed[i]) <= 1e-12)
                      $"layer norm element {i}: {fused[i]} vs {composed[i]}"

              let gelu = (Functional.gelu x).ToFloat64Array()
              let plain = (x * (Tensor.erf (x / sqrt 2.0) + 1.0) * 0.5).ToFloat64Array()

              for i in 0 .. gelu.Length - 1 do
                  Expect.isTrue (abs (gelu[i] - plain[i]) <= 1e-14) $"GELU element {i}: {gelu[i]} vs {plain[i]}"

              let x32 = Tensor.cast Float32 x

              let ln32 =
                  (Functional.layerNorm 1e-5 (Tensor.cast Float32 gamma) (Tensor.cast Float32 beta) x32)
                      .ToFloat64Array()

              for i in 0 .. ln32.Length - 1 do
                  Expect.isTrue (abs (ln32[i] - composed[i]) <= 1e-5) $"float32 layer norm element {i}"
          } ]
