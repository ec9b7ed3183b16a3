/// Every differentiable op: reverse-mode gradients equal central finite differences (float64, the
/// tolerances of GradCheck), on random shapes and values.
module Forgetting.Tests.Tensors.GradientTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

/// f of one random tensor of a random shape, values in [lo, hi] kept `gap` away from 0.
let private unaryCheck name lo hi gap (f: Tensor -> Tensor) =
    Checks.forAll name 100 (Gen.zip shapes seeds) (fun (shape, seed) ->
        agrees (fun xs -> f xs[0] |> Tensor.sum) [| tensor seed shape lo hi gap |])

/// f of two random tensors whose shapes broadcast against each other.
let private binaryCheck name lo hi gap (f: Tensor -> Tensor -> Tensor) =
    Checks.forAll name 100 (Gen.zip broadcastPairs seeds) (fun ((sa, sb), seed) ->
        // A weighted sum, so that a wrong gradient cannot hide behind symmetric weights.
        let a, b = tensor seed sa lo hi gap, tensor (seed / 2 + 1) sb lo hi gap

        agrees
            (fun xs ->
                let y = f xs[0] xs[1]
                y * tensor 7 y.Shape 0.5 1.5 0.0 |> Tensor.sum)
            [| a; b |])

/// A random shape and one of its axes.
let private shapeAndAxis =
    gen {
        let! shape = shapes
        let! axis = Gen.choose (-shape.Length, shape.Length - 1)
        let! keep = Gen.elements [ false; true ]
        return shape, axis, keep
    }

/// Matrix shapes: 2-D, batched 3-D and 3-D against a shared 2-D matrix.
let private matmulShapes =
    gen {
        let! m, k, n, b =
            Gen.zip (Gen.zip (Gen.choose (1, 5)) (Gen.choose (1, 5))) (Gen.zip (Gen.choose (1, 5)) (Gen.choose (1, 3)))
            |> Gen.map (fun ((m, k), (n, b)) -> m, k, n, b)

        return!
            Gen.elements
                [ [| m; k |], [| k; n |]
                  [| b; m; k |], [| b; k; n |]
                  [| b; m; k |], [| k; n |]
                  [| b; 2; m; k |], [| b; 2; k; n |]
                  [| 2; b; m; k |], [| k; n |] ]
    }

/// medianFrom cases: a shape of rank 1 to 4, the first axis of the groups, keepDim, whether some
/// elements are left out, and a seed.
let private medianCases =
    gen {
        let! rank = Gen.choose (1, 4)
        let! shape = Gen.arrayOfLength rank (Gen.choose (1, 4))
        let! from = Gen.choose (0, rank - 1)
        let! keep = Gen.elements [ false; true ]
        let! masked = Gen.elements [ false; true ]
        let! seed = seeds
        return shape, from, keep, masked, seed
    }

/// conv2d cases: input [n, c, h, w], weight [o, c, k, k], stride, padding and a seed.
let private convCases =
    gen {
        let! n, c, o = Gen.zip3 (Gen.choose (1, 2)) (Gen.choose (1, 2)) (Gen.choose (1, 3))
        let! h, w, k = Gen.zip3 (Gen.choose (3, 6)) (Gen.choose (3, 6)) (Gen.choose (1, 3))
        let! stride, padding = Gen.zip (Gen.choose (1, 2)) (Gen.choose (0, 1))
        let! seed = seeds
        return [| n; c; h; w |], [| o; c; k; k |], stride, padding, seed
    }

[<Tests>]
let tests =
    testList
        "gradients against finite differences"
        [ binaryCheck "add" -2.0 2.0 0.0 (+)
          binaryCheck "sub" -2.0 2.0 0.0 (-)
          binaryCheck "mul" -2.0 2.0 0.0 (*)
          binaryCheck "div" 0.5 2.0 0.0 (/)
          binaryCheck "pow of two tensors" 0.5 2.0 0.0 (fun a b -> Tensor.Pow(a, b))

          // Values apart from each other: at a tie the maximum has no derivative.
          Checks.forAll "maximum of two tensors" 100 (Gen.zip shapes seeds) (fun (shape, seed) ->
              let a = tensor seed shape -2.0 2.0 0.0

              let b =
                  a
                  + tensor (seed + 1) shape 0.1 0.5 0.0
                    * Tensor.sign (tensor (seed + 2) shape -1.0 1.0 0.1)

              agrees (fun xs -> Tensor.maximum xs[0] xs[1] |> Tensor.sum) [| a; b |])

          unaryCheck "scalar arithmetic" 0.5 2.0 0.0 (fun (x: Tensor) ->
              (3.0 - x) * 2.0 + 1.0 - x / 4.0 + 2.0 / x + 1.5 * x - 0.5)

          Checks.forAll "addScaled" 100 (Gen.zip shapes seeds) (fun (shape, seed) ->
              agrees
                  (fun xs -> Tensor.addScaled xs[0] -0.7 xs[1] |> Tensor.square |> Tensor.sum)
                  [| tensor seed shape -1.0 1.0 0.0; tensor (seed + 1) shape -1.0 1.0 0.0 |])

          unaryCheck "neg" -2.0 2.0 0.0 Tensor.neg
          unaryCheck "exp" -2.0 2.0 0.0 Tensor.exp
          unaryCheck "log" 0.2 3.0 0.0 Tensor.log
          unaryCheck "pow with a constant exponent" 0.2 3.0 0.0 (Tensor.pow 2.7)
          unaryCheck "sqrt" 0.2 3.0 0.0 Tensor.sqrt
          unaryCheck "abs" -2.0 2.0 0.1 Tensor.abs
          unaryCheck "sign has a zero gradient" -2.0 2.0 0.1 (fun x -> Tensor.sign x * 3.0)
          unaryCheck "tanh" -3.0 3.0 0.0 Tensor.tanh
          unaryCheck "sigmoid" -4.0 4.0 0.0 Tensor.sigmoid
          unaryCheck "relu" -2.0 2.0 0.1 Tensor.relu
          unaryCheck "square" -2.0 2.0 0.0 Tensor.square
          unaryCheck "erf, on both sides of the series' range" -4.0 4.0 0.0 Tensor.erf
          unaryCheck "GELU" -4.0 4.0 0.0 Functional.gelu
          unaryCheck "SELU" -3.0 3.0 0.1 Functional.selu

          // 0.05 is never within the step of any value (values are at least 0.1 from 0 ... the gap below).
          unaryCheck "max and min with a constant" -2.0 2.0 0.1 (fun x ->
              Tensor.maxScalar 0.0 x + Tensor.minScalar 0.0 x * 3.0)

          Checks.forAll "clamp" 100 (Gen.zip shapes seeds) (fun (shape, seed) ->
              // Values kept 0.05 away from the bounds ±1, where the clamp has no derivative.
              let v =
                  (tensor seed shape -2.0 2.0 0.0).ToFloat64Array()
                  |> Array.map (fun (x: float) ->
                      if System.Math.Abs(System.Math.Abs x - 1.0) < 0.05 then
                          x * 1.1
                      else
                          x)

              agrees (fun xs -> Tensor.clamp -1.0 1.0 xs[0] * 2.0 |> Tensor.sum) [| Tensor.ofFloat64 shape v |])

          Checks.forAll "where" 100 (Gen.zip broadcastPairs seeds) (fun ((sa, sb), seed) ->
              let mask =
                  Tensor.greater (tensor (seed + 5) sa -1.0 1.0 0.0) (Tensor.zeros Float64 [||])

              agrees
                  (fun xs -> Tensor.where mask xs[0] xs[1] * 1.5 |> Tensor.sum)
                  [| tensor seed sa -1.0 1.0 0.0; tensor seed sb -1.0 1.0 0.0 |])

          unaryCheck "sum and mean" -2.0 2.0 0.0 (fun x -> Tensor.sum (x * x) + Tensor.mean x * 3.0)

          Checks.forAll
              "sum, mean and max along an axis"
              100
              (Gen.zip shapeAndAxis seeds)
              (fun ((shape, axis, keep), seed) ->
                  let weights (t: Tensor) =
                      t * tensor 3 t.Shape 0.5 1.5 0.0 |> Tensor.sum

                  agrees
                      (fun xs ->
                          weights (Tensor.sumAxis axis keep xs[0])
                          + weights (Tensor.meanAxis axis keep xs[0])
                          + weights (Tensor.maxAxis axis keep xs[0]))
                      [| tensor seed shape -2.0 2.0 0.0 |])

          unaryCheck "max of all elements" -2.0 2.0 0.0 Tensor.max

          Checks.forAll "matmul" 100 (Gen.zip matmulShapes seeds) (fun ((sa, sb), seed) ->
              agrees
                  (fun xs ->
                      let y = Tensor.matmul xs[0] xs[1]
                      y * tensor 9 y.Shape 0.5 1.5 0.0 |> Tensor.sum)
                  [| tensor seed sa -1.0 1.0 0.0; tensor (seed + 1) sb -1.0 1.0 0.0 |])

          Checks.forAll "softmax and log-softmax" 100 (Gen.zip shapeAndAxis seeds) (fun ((shape, axis, _), seed) ->
              let w (t: Tensor) =
                  t * tensor 4 t.Shape -1.0 1.0 0.0 |> Tensor.sum

              agrees
                  (fun xs -> w (Tensor.softmax axis xs[0]) + w (Tensor.logSoftmax axis xs[0]))
                  [| tensor seed shape -3.0 3.0 0.0 |])

          Checks.forAll "reshape, permute, transpose and broadcastTo" 100 (Gen.zip shapes seeds) (fun (shape, seed) ->
              let w (t: Tensor) =
                  t * tensor 5 t.Shape -1.0 1.0 0.0 |> Tensor.sum

              let axes = Array.init shape.Length id |> Array.rev

              agrees
                  (fun xs ->
                      let x = xs[0]

                      w (Tensor.reshape [| -1 |] x)
                      + w (Tensor.permute axes x)
                      + (if x.Rank >= 2 then
                             w (Tensor.transpose x)
                         else
                             Tensor.zeros Float64 [||])
                      + w (Tensor.broadcastTo (Array.append [| 2 |] shape) x))
                  [| tensor seed shape -1.0 1.0 0.0 |])

          Checks.forAll "slice, index, gather, concat and stack" 100 (Gen.zip shapes seeds) (fun (shape, seed) ->
              let w (t: Tensor) =
                  t * tensor 6 t.Shape -1.0 1.0 0.0 |> Tensor.sum

              let rows = shape[0]

              agrees
                  (fun xs ->
                      let x = xs[0]

                      w (Tensor.slice (rows / 2) (rows - rows / 2) x)
                      + w (Tensor.index (rows - 1) x)
                      + w (Tensor.gather [| rows - 1; 0; rows - 1 |] x)
                      + w (Tensor.concat (shape.Length - 1) [ x; x * 2.0; x ])
                      + w (Tensor.concat 0 [ x; x ])
                      + w (Tensor.stack [ x; x * 3.0 ]))
                  [| tensor seed shape -1.0 1.0 0.0 |])

          Checks.forAll
              "cross-entropy from logits"
              100
              (Gen.zip (Gen.zip (Gen.choose (1, 5)) (Gen.choose (2, 6))) seeds)
              (fun ((b, c), seed) ->
                  let labels = Array.init b (fun i -> (seed + i) % c)
                  agrees (fun xs -> Functional.crossEntropy xs[0] labels) [| tensor seed [| b; c |] -3.0 3.0 0.0 |])

          Checks.forAll "mse" 100 (Gen.zip shapes seeds) (fun (shape, seed) ->
              agrees
                  (fun xs -> Functional.mse xs[0] xs[1])
                  [| tensor seed shape -1.0 1.0 0.0; tensor (seed + 1) shape -1.0 1.0 0.0 |])

          Checks.forAll "conv2d with stride and padding" 30 convCases (fun (xs, ws, stride, padding, seed) ->
              agrees
                  (fun t ->
                      let y = Functional.conv2d stride padding t[0] t[1] (Some t[2])
                      y * tensor 8 y.Shape -1.0 1.0 0.0 |> Tensor.sum)
                  [| tensor seed xs -1.0 1.0 0.0
                     tensor (seed + 1) ws -1.0 1.0 0.0
                     tensor (seed + 2) [| ws[0] |] -1.0 1.0 0.0 |])

          Checks.forAll
              "max-pool 2-D"
              100
              (Gen.zip (Gen.zip (Gen.choose (1, 2)) (Gen.choose (2, 3))) seeds)
              (fun ((k, stride), seed) ->
                  // Distinct values, so that each window has a single maximum.
                  let values =
                      Rng.permutation (2 * 2 * 6 * 6) (Rng.create (int64 seed))
                      |> Array.map (fun i -> float i / 10.0)

                  agrees
                      (fun xs -> Functional.maxPool2d k stride xs[0] * 1.5 |> Tensor.sum)
                      [| Tensor.ofFloat64 [| 2; 2; 6; 6 |] values |])

          unaryCheck "dropout with a fixed key is linear" -1.0 1.0 0.0 (Functional.dropout (Rng.create 3L) 0.3)

          Checks.forAll
              "batch norm and layer norm"
              100
              (Gen.zip (Gen.elements [ [| 4; 3 |]; [| 3; 2; 2; 2 |] ]) seeds)
              (fun (shape, seed) ->
                  let w (t: Tensor) =
                      t * tensor 11 t.Shape -1.0 1.0 0.0 |> Tensor.sum

                  let ch = shape[1]

                  agrees
                      (fun xs ->
                          let bn = Functional.batchNorm 1e-5 xs[1] xs[2] xs[0]
                          w bn.Output + w (Functional.layerNorm 1e-5 xs[3] xs[4] xs[0]))
                      [| tensor seed shape -2.0 2.0 0.0
                         tensor (seed + 1) [| ch |] 0.5 1.5 0.0
                         tensor (seed + 2) [| ch |] -1.0 1.0 0.0
                         tensor (seed + 3) [| shape[shape.Length - 1] |] 0.5 1.5 0.0
                         tensor (seed + 4) [| shape[shape.Length - 1] |] -1.0 1.0 0.0 |])

          Checks.forAll "median over trailing axes" 100 medianCases (fun (shape, from, keep, masked, seed) ->
              // Distinct values 0.1 apart, so that the finite difference never changes which one is picked.
              let n = Shape.numel shape

              let x =
                  Rng.permutation n (Rng.create (int64 seed))
                  |> Array.map (fun i -> float i / 10.0 - float n / 20.0)
                  |> Tensor.ofFloat64 shape

              // Leave out every third element of a group but never a whole group (its first one stays).
              let size = Shape.numel shape[from..]

              let among =
                  if masked then
                      Some(
                          Array.init n (fun i -> if i % size = 0 || i % 3 <> 1 then 1.0 else 0.0)
                          |> Tensor.ofFloat64 shape
                      )
                  else
                      None

              agrees
                  (fun xs ->
                      let m = Tensor.medianFrom from keep among xs[0]
                      m * tensor 12 m.Shape 0.5 1.5 0.0 |> Tensor.sum)
                  [| x |])

          test "stopGradient and median pass no gradient; cast passes it unchanged" {
              let x = tensor 1 [| 5 |] 0.0 1.0 0.0

              let g =
                  Tensor.grad (fun x -> Tensor.sum (x * Tensor.stopGradient x) + Tensor.median x) x

              Expect.equal (g.ToFloat64Array()) (x.ToFloat64Array()) "the gradient of x · stop(x) + median x is x"

              let g2 =
                  Tensor.grad (fun x -> Tensor.cast Float32 x * 2.0 |> Tensor.sum |> Tensor.cast Float64) x

              Expect.equal g2.DType Float64 "the gradient's dtype"
              Expect.equal (g2.ToFloat64Array()) (Array.create 5 2.0) "the gradient through two casts"
          } ]
