/// The CPU kernels that walk collapsed shapes (broadcast arithmetic, permute, expand), the fused
/// softmax gradient and the product with a transposed operand: each against a direct loop or the
/// composition it replaces, and unchanged by the thread count.
module Forgetting.Tests.Tensors.KernelTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

/// Shapes of rank 1 to 4 with sizes 1 to 5: sizes of 1 exercise the dropped axes.
let private shapes4 =
    gen {
        let! rank = Gen.choose (1, 4)
        return! Gen.arrayOfLength rank (Gen.choose (1, 5))
    }

/// A shape and another that broadcasts against it (axes set to 1, leading axes dropped, either side).
let private pairs4 =
    gen {
        let! a = shapes4
        let! ones = Gen.arrayOfLength a.Length (Gen.elements [ false; true ])
        let! drop = Gen.choose (0, a.Length - 1)
        let! swap = Gen.elements [ false; true ]
        let b = (a |> Array.mapi (fun i d -> if ones[i] then 1 else d))[drop..]
        return if swap then b, a else a, b
    }

/// The row-major multi-index of flat position i in `shape`.
let private indexOf (shape: int[]) (i: int) =
    let index = Array.zeroCreate shape.Length
    let mutable rest = i

    for d in shape.Length - 1 .. -1 .. 0 do
        index[d] <- rest % shape[d]
        rest <- rest / shape[d]

    index

/// The flat position in `shape` of the output multi-index `index`, read with NumPy broadcasting.
let private broadcastAt (shape: int[]) (index: int[]) =
    let lead = index.Length - shape.Length
    let mutable at = 0

    for d in 0 .. shape.Length - 1 do
        at <- at * shape[d] + (if shape[d] = 1 then 0 else index[lead + d])

    at

let private ops: (string * (Tensor -> Tensor -> Tensor) * (float -> float -> float)) list =
    [ "+", (+), (+)
      "-", (-), (-)
      "*", (*), (*)
      "/", (/), (/)
      "maximum", Tensor.maximum, max ]

/// Values of a random tensor, kept away from 0 so that division is tame.
let private valuesOf (seed: int) (dtype: DType) (shape: int[]) =
    let t = tensor seed shape -2.0 2.0 0.25
    if dtype = Float32 then Tensor.cast Float32 t else t

[<Tests>]
let tests =
    testList
        "kernels"
        [ Checks.forAll
              "broadcast arithmetic equals a direct loop over the output's multi-index, in both dtypes"
              200
              (Gen.zip3 pairs4 seeds (Gen.elements [ Float32; Float64 ]))
              (fun ((sa, sb), seed, dtype) ->
                  let a, b = valuesOf seed dtype sa, valuesOf (seed / 3 + 1) dtype sb
                  let va, vb = a.ToFloat64Array(), b.ToFloat64Array()

                  ops
                  |> List.forall (fun (_, op, f) ->
                      let r = op a b
                      let vr = r.ToFloat64Array()

                      Array.init vr.Length id
                      |> Array.forall (fun i ->
                          let index = indexOf r.Shape i
                          let expected = f va[broadcastAt sa index] vb[broadcastAt sb index]
                          // float32 rounds the result once; float64 is exact to the loop.
                          let expected =
                              if dtype = Float32 then
                                  float (float32 expected)
                              else
                                  expected

                          vr[i] = expected)))

          Checks.forAll
              "permute and broadcastTo equal direct index loops"
              200
              (Gen.zip shapes4 seeds)
              (fun (shape, seed) ->
                  let x = valuesOf seed Float64 shape
                  let v = x.ToFloat64Array()
                  let axes = Rng.permutation shape.Length (Rng.create (int64 seed))
                  let p = Tensor.permute axes x
                  let vp = p.ToFloat64Array()
                  let strides = Shape.strides shape

                  let permuted =
                      Array.init vp.Length id
                      |> Array.forall (fun i ->
                          let index = indexOf p.Shape i

                          let src =
                              Array.fold2
                                  (fun acc d a -> acc + index[d] * strides[a])
                                  0
                                  (Array.init axes.Length id)
                                  axes

                          vp[i] = v[src])

                  let target =
                      Array.append [| 2 |] (shape |> Array.map (fun d -> if d = 1 then 3 else d))

                  let e = Tensor.broadcastTo target x
                  let ve = e.ToFloat64Array()

                  permuted
                  && Array.init ve.Length id
                     |> Array.forall (fun i -> ve[i] = v[broadcastAt shape (indexOf target i)]))

          Checks.forAll
              "a sum along any axis equals the direct loop x[.., 0, ..] + x[.., 1, ..] + …: in that order inside, to 1e-15 along the last axis"
              200
              (Gen.zip3 shapes4 seeds (Gen.choose (0, 3)))
              (fun (shape, seed, pick) ->
                  let axis = pick % shape.Length
                  let x = valuesOf seed Float64 shape
                  let v = x.ToFloat64Array()
                  let outer = Shape.numel shape[.. axis - 1]
                  let len, inner = shape[axis], Shape.numel shape[axis + 1 ..]
                  let r = (Tensor.sumAxis axis true x).ToFloat64Array()

                  Array.init (outer * inner) id
                  |> Array.forall (fun j ->
                      let o, i = j / inner, j % inner
                      let mutable acc = v[o * len * inner + i]
                      let mutable size = abs acc

                      for k in 1 .. len - 1 do
                          acc <- acc + v[(o * len + k) * inner + i]
                          size <- size + abs v[(o * len + k) * inner + i]

                      // Along the last axis the SIMD sum adds in its own order (lanes, then the lanes'
                      // totals); inside, rows are added whole, in order, so the sum is the loop's.
                      if inner = 1 then
                          abs (r[j] - acc) <= 1e-15 * size
                      else
                          r[j] = acc))

          test "the fused softmax gradient equals its composition bit for bit, in both dtypes" {
              for dtype in [ Float32; Float64 ] do
                  for shape in [ [| 3; 7 |]; [| 2; 3; 1024 |]; [| 64; 1100 |] ] do
                      let x = valuesOf 11 dtype shape
                      let g = valuesOf 12 dtype shape
                      let fused = Tensor.grad (fun x -> Tensor.sum (Tensor.softmax -1 x * g)) x

                      let s = Tensor.softmax -1 x |> Tensor.stopGradient
                      let composed = s * (g - Tensor.sumAxis -1 true (g * s))

                      Expect.equal
                          (fused.ToFloat64Array())
                          (composed.ToFloat64Array())
                          $"{dtype} {Shape.show shape}: s ⊙ (g − Σ g⊙s)"
          }

          Checks.forAll
              "a × bᵀ equals matmul a (transpose b), and its gradients agree with finite differences"
              100
              (Gen.zip (Gen.zip (Gen.choose (1, 5)) (Gen.choose (1, 5))) (Gen.zip (Gen.choose (1, 5)) seeds))
              (fun ((m, k), (n, seed)) ->
                  [ [| m; k |], [| n; k |]
                    [| 2; m; k |], [| 2; n; k |]
                    [| 2; m; k |], [| n; k |]
                    [| 2; 3; m; k |], [| 2; 3; n; k |] ]
                  |> List.forall (fun (sa, sb) ->
                      let a, b = tensor seed sa -1.0 1.0 0.0, tensor (seed + 1) sb -1.0 1.0 0.0

                      let direct = Tensor.matmul a (Tensor.transpose b)
                      let fused = Tensor.matmulTransposed a b

                      let close =
                          Array.forall2
                              (fun (x: float) y -> abs (x - y) <= 1e-12)
                              (direct.ToFloat64Array())
                              (fused.ToFloat64Array())

                      close
                      && agrees
                          (fun xs ->
                              let y = Tensor.matmulTransposed xs[0] xs[1]
                              y * tensor 9 y.Shape 0.5 1.5 0.0 |> Tensor.sum)
                          [| a; b |]))

          Sequencing.degreeOfParallelism
          <| test
              "large broadcast and elementwise arithmetic, sums, softmax, gradients and permutations are bit-identical on 1 and 2 threads" {
              // Above the size where the kernels split their work: one long row (equal shapes), many
              // rows (a column broadcast), softmax rows, column sums, a transpose and a permutation.
              let x = Tensor.uniform (Rng.create 3L) Float32 [| 256; 1031 |] -3.0 3.0
              let y = Tensor.uniform (Rng.create 4L) Float32 [| 256; 1031 |] 0.5 2.0
              let column = Tensor.uniform (Rng.create 5L) Float32 [| 256; 1 |] 0.5 2.0

              let run () =
                  [ x * y
                    x / column
                    x - column
                    Tensor.softmax -1 x
                    Tensor.sumAxis 0 true x
                    Tensor.transpose x
                    Tensor.permute [| 0; 2; 1; 3 |] (Tensor.reshape [| 64; 4; 1031; 1 |] x)
                    // Unary and scalar kernels, so that a split of them over the cores (whose SIMD
                    // tails must not move with the split) cannot change a bit unnoticed.
                    Tensor.exp x
                    Tensor.log y
                    Tensor.tanh x
                    Tensor.sigmoid x
                    Tensor.erf x
                    Tensor.sign x
                    Tensor.relu x
                    x * 0.37
                    1.5 - x ]
                  @ [ Tensor.grad (fun x -> Tensor.sum (Tensor.softmax -1 x * y)) x
                      Tensor.grad (fun x -> Tensor.sum (Tensor.relu x * y)) x ]
                  |> List.map (fun t -> t.ToFloat64Array())

              let one = Parallelism.withDegree 1 run
              let two = Parallelism.withDegree 2 run
              Expect.equal two one "the same bits on 2 threads as on 1"
          } ]
