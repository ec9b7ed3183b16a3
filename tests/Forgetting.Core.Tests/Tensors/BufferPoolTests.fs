/// The reuse of the tape's dead gradient buffers: it must change no number, never hand out a buffer
/// someone can still read (a returned gradient, an input, an activation), and actually reuse.
module Forgetting.Tests.Tensors.BufferPoolTests

open System.Threading
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Tensors.Cpu
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

// A two-layer net on a batch, with every kind of aliasing the rules produce: a sum whose rule hands
// the same gradient to both inputs (h + h), a reshape that shares its input's buffer, a softmax and a
// product that each make a fresh one. The sizes keep every buffer above the pool's minimum length.
let private loss (x: Tensor) (ws: Tensor[]) =
    let h = Tensor.tanh (Tensor.matmul x ws[0])
    let twice = h + h
    let flat = Tensor.reshape [| twice.Numel |] twice |> Tensor.reshape twice.Shape
    let p = Tensor.softmax 1 (Tensor.matmul flat ws[1])
    Tensor.sum (p * p)

let private gradientsOf (x: Tensor) (ws: Tensor[]) =
    Tensor.grads (loss x) ws |> Array.map (fun g -> g.ToFloat64Array())

/// The same computation on a fresh thread, whose pool is empty.
let private onFreshThread (f: unit -> 'a) =
    let mutable result = Unchecked.defaultof<'a>
    let t = Thread(fun () -> result <- f ())
    t.Start()
    t.Join()
    result

let private cases =
    Gen.zip3 (Gen.choose (32, 96)) (Gen.choose (32, 64)) (Gen.elements [ Float32; Float64 ])

[<Tests>]
let tests =
    testList
        "buffer pool"
        [ Checks.forAll
              "gradients on a thread whose pool is full of dead buffers equal those on a fresh thread, bit for bit"
              20
              (Gen.zip cases seeds)
              (fun ((batch, width, dtype), seed) ->
                  let x = tensor seed [| batch; width |] -1.0 1.0 0.0 |> Tensor.cast dtype

                  let ws =
                      [| tensor (seed + 1) [| width; width |] -0.5 0.5 0.0 |> Tensor.cast dtype
                         tensor (seed + 2) [| width; width |] -0.5 0.5 0.0 |> Tensor.cast dtype |]

                  let fresh = onFreshThread (fun () -> gradientsOf x ws)

                  // Warm this thread's pool with buffers of the same lengths, then compute again twice.
                  let other = tensor (seed + 3) [| batch; width |] -1.0 1.0 0.0 |> Tensor.cast dtype
                  gradientsOf other ws |> ignore
                  let first = gradientsOf x ws
                  let second = gradientsOf x ws
                  first = fresh && second = fresh)

          test "a returned gradient, the inputs and the activations are never reused" {
              let x = tensor 7 [| 64; 48 |] -1.0 1.0 0.0 |> Tensor.cast Float32

              let ws =
                  [| tensor 8 [| 48; 48 |] -0.5 0.5 0.0 |> Tensor.cast Float32
                     tensor 9 [| 48; 48 |] -0.5 0.5 0.0 |> Tensor.cast Float32 |]

              let kept = Tensor.grads (loss x) ws
              let keptValues = kept |> Array.map (fun g -> g.ToFloat64Array())
              let inputs = Array.append [| x |] ws |> Array.map (fun t -> t.ToFloat64Array())
              let h = Tensor.tanh (Tensor.matmul x ws[0])
              let hValues = h.ToFloat64Array()

              // Many more backward passes of the same lengths, on other data.
              for seed in 10..20 do
                  let other = tensor seed [| 64; 48 |] -1.0 1.0 0.0 |> Tensor.cast Float32
                  Tensor.grads (loss other) ws |> ignore

              Expect.equal (kept |> Array.map (fun g -> g.ToFloat64Array())) keptValues "returned gradients unchanged"

              Expect.equal
                  (Array.append [| x |] ws |> Array.map (fun t -> t.ToFloat64Array()))
                  inputs
                  "inputs unchanged"

              Expect.equal (h.ToFloat64Array()) hValues "an activation held by the caller unchanged"
          }

          test "a second backward pass of the same shapes reuses the first one's dead buffers" {
              onFreshThread (fun () ->
                  let x = tensor 3 [| 64; 48 |] -1.0 1.0 0.0 |> Tensor.cast Float32

                  let ws =
                      [| tensor 4 [| 48; 48 |] -0.5 0.5 0.0 |> Tensor.cast Float32
                         tensor 5 [| 48; 48 |] -0.5 0.5 0.0 |> Tensor.cast Float32 |]

                  gradientsOf x ws |> ignore
                  let before = Buffers.Reused
                  gradientsOf x ws |> ignore
                  Buffers.Reused - before)
              |> fun reused -> Expect.isGreaterThan reused 0L "buffers reused in the second pass"
          } ]
