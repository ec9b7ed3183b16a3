/// The reuse of the tape's dead buffers (gradients, and a training step's intermediates): it must
/// change no number, never hand out a buffer someone can still read (a returned gradient, an input, an
/// activation the caller keeps, a running statistic), and actually reuse.
module Forgetting.Tests.Tensors.BufferPoolTests

open System.Threading
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Tensors.Cpu
open Forgetting.Nn
open Forgetting.Training
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

/// The same computation on a fresh thread, whose pool is empty; its exception (a failed expectation)
/// is raised again here, so that it fails the test instead of the process.
let private onFreshThread (f: unit -> 'a) =
    let mutable result = Unchecked.defaultof<'a>
    let mutable error = null

    let t =
        Thread(fun () ->
            try
                result <- f ()
            with e ->
                error <- System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture e)

    t.Start()
    t.Join()

    if not (isNull error) then
        error.Throw()

    result

// A float32 batch of 64 × 48 from `seed` and two 48 × 48 weights from the next two seeds, every array
// above the pool's minimum length.
let private batchAndWeights (seed: int) =
    tensor seed [| 64; 48 |] -1.0 1.0 0.0 |> Tensor.cast Float32,
    [| tensor (seed + 1) [| 48; 48 |] -0.5 0.5 0.0 |> Tensor.cast Float32
       tensor (seed + 2) [| 48; 48 |] -0.5 0.5 0.0 |> Tensor.cast Float32 |]

// A step of a net whose running statistics (1024 of them, above the pool's minimum length) come out
// of the forward pass in its trace, with dropout, and Adam's buffers.
let private bnNet =
    Layer.sequential
        [ "fc1", Layer.dense 24 1024
          "bn", Layer.batchNorm 1024 true true
          "relu", Layer.relu
          "drop", Layer.dropout 0.25
          "out", Layer.dense 1024 5 ]

let private bnBatch (seed: int64) =
    { Inputs = Tensor.uniform (Rng.create seed) Float32 [| 16; 24 |] -1.0 1.0
      Labels = Array.init 16 (fun i -> (i * 7 + int seed) % 5)
      Task = 0
      Outputs = 5 }

let private adam = Optim.adamWith 1e-2 0.9 0.999 1e-8 0.0

let private bnStep (state: TrainState) (k: int) =
    Step.run bnNet adam (Rng.create (int64 (100 + k))) state (bnBatch (int64 k))

// The same step without giving anything back: Step.run's arithmetic from the public functions.
let private referenceStep (state: TrainState) (k: int) =
    let batch = bnBatch (int64 k)
    let mode = Mode.Train(Rng.create (int64 (100 + k)))
    let mutable statistics = []

    let losses, grads =
        Tensor.gradientsAt
            (fun ts ->
                let v = Step.view bnNet mode (Params.withTensors state.Params ts) batch

                statistics <-
                    [ for e in v.Trace do
                          match e.Kind with
                          | Statistic param -> e.Path + "/" + param, e.Value
                          | _ -> () ]

                [| Objective.loss state.Objective v |], ts)
            (Params.tensors state.Params)

    let p, optimizer =
        adam.Update state.Optimizer state.Params (Params.withTensors state.Params grads[0])

    let p =
        statistics
        |> List.fold (fun acc (path, value) -> Params.replace path (Tensor.stopGradient value) acc) p

    { state with
        Params = p
        Optimizer = optimizer },
    losses[0].Item

let private values (state: TrainState) =
    Params.flatten state.Params
    |> List.map (fun (path, t) -> path, t.ToFloat64Array())

// One step's loss of x tanh(x W) V, its hidden activation (above the pool's minimum length) returned
// to be kept or not.
let private stepLoss (x: Tensor) (keep: bool) (ws: Tensor[]) =
    let h = Tensor.tanh (Tensor.matmul x ws[0])
    let y = Tensor.softmax 1 (Tensor.matmul h ws[1])
    [| Tensor.sum (y * y) |], ws, (if keep then [ h ] else [])

/// The bytes this thread allocates in a fourth call of `step`, after three that warm its pool.
let private allocatedBySteadyStep (step: unit -> unit) =
    for _ in 1..3 do
        step ()

    let before = System.GC.GetAllocatedBytesForCurrentThread()
    step ()
    System.GC.GetAllocatedBytesForCurrentThread() - before

// An update with a temporary per parameter (as momentum or Adam make), returning new parameters of
// the gradients' lengths, which a later step's pool may hand out again.
let private doubledSgd (ws: Tensor[]) (grads: Tensor[][]) =
    Array.map2 (fun (w: Tensor) g -> Tensor.addScaled w -0.01 (g * 2.0)) ws grads[0]

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
              let x, ws = batchAndWeights 7

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
                  let x, ws = batchAndWeights 3

                  gradientsOf x ws |> ignore
                  let before = Buffers.Reused
                  gradientsOf x ws |> ignore
                  Buffers.Reused - before)
              |> fun reused -> Expect.isGreaterThan reused 0L "buffers reused in the second pass"
          }

          test "training steps that give their intermediates back give the numbers of steps that keep them" {
              let p = bnNet.Init (Rng.create 1L) Float32
              let start = Step.init adam Objective.taskOnly p

              let run (step: TrainState -> int -> TrainState * float) =
                  onFreshThread (fun () ->
                      let mutable s = start
                      let losses = ResizeArray()

                      for k in 1..4 do
                          let s', loss = step s k
                          s <- s'
                          losses.Add loss

                      values s, List.ofSeq losses)

              let stepped, steppedLosses = run bnStep
              let reference, referenceLosses = run referenceStep
              Expect.equal steppedLosses referenceLosses "the same losses"
              Expect.equal stepped reference "the same parameters and running statistics"
          }

          test "a step's intermediate is reused only when the step does not keep it" {
              onFreshThread (fun () ->
                  let x, ws = batchAndWeights 11

                  let mutable kept = None

                  Tensor.gradientsOfStep
                      (fun vs ->
                          let outputs, at, keep = stepLoss x true vs
                          kept <- Some keep.Head
                          outputs, at, keep)
                      ws
                  |> ignore

                  let h = kept.Value
                  let hValues = h.ToFloat64Array()

                  for seed in 14..24 do
                      let other = tensor seed [| 64; 48 |] -1.0 1.0 0.0 |> Tensor.cast Float32
                      Tensor.gradientsOfStep (stepLoss other false) ws |> ignore

                  Expect.equal (h.ToFloat64Array()) hValues "the kept activation unchanged")
          }

          test "giving a step's intermediates back cuts what a steady step allocates" {
              onFreshThread (fun () ->
                  let x, ws = batchAndWeights 15

                  let releasing =
                      allocatedBySteadyStep (fun () -> Tensor.gradientsOfStep (stepLoss x false) ws |> ignore)

                  let keeping =
                      allocatedBySteadyStep (fun () ->
                          Tensor.gradientsAt
                              (fun vs ->
                                  let outputs, at, _ = stepLoss x false vs
                                  outputs, at)
                              ws
                          |> ignore)

                  // Three activations of 64 x 48 float32 (12 kB each) are made again by the step that keeps them.
                  Expect.isLessThan
                      releasing
                      (keeping - 30_000L)
                      "fewer bytes allocated when the intermediates go back")
          }
          test "an update in the step's scope keeps what it returns, and hands back the gradients and its temporaries" {
              onFreshThread (fun () ->
                  let x, ws = batchAndWeights 21

                  let update = doubledSgd

                  let _, expected =
                      Tensor.gradientsAt (fun vs -> let o, at, _ = stepLoss x false vs in o, at) ws

                  let expected = update ws expected |> Array.map (fun t -> t.ToFloat64Array())

                  let _, updated =
                      Tensor.gradientsOfStepThen (stepLoss x false) ws (update ws) Seq.ofArray

                  Expect.equal (updated |> Array.map (fun t -> t.ToFloat64Array())) expected "the update's result"

                  let before = Buffers.Reused

                  for seed in 30..40 do
                      let other = tensor seed [| 64; 48 |] -1.0 1.0 0.0 |> Tensor.cast Float32

                      Tensor.gradientsOfStepThen (stepLoss other false) ws (update ws) Seq.ofArray
                      |> ignore

                  Expect.isGreaterThan (Buffers.Reused - before) 0L "buffers reused by the later steps"

                  Expect.equal
                      (updated |> Array.map (fun t -> t.ToFloat64Array()))
                      expected
                      "the returned parameters unchanged by the later steps")
          }

          test "handing back the gradients and the update's temporaries cuts what a steady step allocates" {
              onFreshThread (fun () ->
                  let x, ws = batchAndWeights 25

                  let update = doubledSgd ws

                  let together =
                      allocatedBySteadyStep (fun () ->
                          Tensor.gradientsOfStepThen (stepLoss x false) ws update Seq.ofArray |> ignore)

                  let apart =
                      allocatedBySteadyStep (fun () ->
                          Tensor.gradientsOfStep (stepLoss x false) ws |> snd |> update |> ignore)

                  // Two gradients and two temporaries of 48 x 48 float32 (9 kB each) are made again apart.
                  Expect.isLessThan together (apart - 30_000L) "fewer bytes allocated with the update in the scope")
          } ]
