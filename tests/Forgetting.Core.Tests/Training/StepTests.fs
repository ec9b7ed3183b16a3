module Forgetting.Tests.Training.StepTests

open Expecto
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Training
open Forgetting.Tests

let private close (tolerance: float) (a: float[]) (b: float[]) =
    a.Length = b.Length
    && Array.forall2 (fun (x: float) y -> abs (x - y) <= tolerance * (1.0 + abs y)) a b

/// A small float64 net: 5 inputs, a hidden ReLU layer of 4, and `heads` heads of 3 outputs.
let private net (heads: int) =
    let output =
        if heads = 1 then
            Layer.dense 4 3
        else
            Layer.heads (List.init heads (fun _ -> Layer.dense 4 3))

    Layer.sequential [ "fc1", Layer.dense 5 4; "relu1", Layer.relu; "out", output ]

let private batchOf (seed: int64) (task: int) (outputs: int) =
    { Inputs = Tensor.uniform (Rng.create seed) Float64 [| 6; 5 |] -1.0 1.0
      Labels = Array.init 6 (fun i -> i % outputs)
      Task = task
      Outputs = outputs }

/// A term that counts how often it was observed and remembers the last task gradient it saw.
let rec private watcher (seen: int) (last: Params option) : Term =
    { Name = "watch"
      Loss = fun _ -> None
      ObservesSteps = true
      Observe = fun o -> watcher (seen + 1) (Some o.TaskGradient)
      Consolidate = fun _ -> watcher seen last
      State = [ "seen", Tensor.scalar Float64 (float seen) ]
      Restore = fun _ -> watcher seen last }

[<Tests>]
let tests =
    testList
        "the training step"
        [ test "one SGD step is w − lr·∇(task loss + terms), from one forward pass" {
              let model = net 1
              let p = model.Init (Rng.create 1L) Float64
              let batch = batchOf 2L 0 3
              let objective = Objective.ofTerms [ Regularizers.l2Term 0.01 ]
              let sgd = Optim.sgd 0.1

              let state, loss =
                  Step.run model sgd (Rng.create 3L) (Step.init sgd objective p) batch

              let f q =
                  Objective.loss objective (Step.view model (Mode.Train(Rng.create 3L)) q batch)

              let value, g = Params.valueAndGrad f p
              Expect.floatClose Accuracy.veryHigh loss value.Item "the loss of the step"

              let expected = Params.map2 (fun w g -> w - g * 0.1) p g

              for (name, a), (_, b) in List.zip (Params.flatten state.Params) (Params.flatten expected) do
                  Expect.isTrue (close 1e-12 (a.ToFloat64Array()) (b.ToFloat64Array())) name
          }

          test "a term that observes steps is observed once per step, the others not at all" {
              let model = net 1
              let p = model.Init (Rng.create 1L) Float64
              let objective = Objective.ofTerms [ watcher 0 None; Regularizers.l2Term 0.5 ]
              let sgd = Optim.sgd 0.1
              let mutable state = Step.init sgd objective p

              for k in 1..3 do
                  state <- fst (Step.run model sgd (Rng.create (int64 k)) state (batchOf (int64 k) 0 3))

              Expect.equal (snd state.Objective.Terms.Head.State.Head).Item 3.0 "observed after each of 3 steps"
              Expect.isEmpty state.Objective.Terms[1].State "l2 has no state"
          }

          test "the task gradient handed to a term excludes the other terms" {
              let model = net 1
              let p = model.Init (Rng.create 1L) Float64
              let batch = batchOf 2L 0 3
              let mutable got: Params option = None

              let rec spy: Term =
                  { Name = "spy"
                    Loss = fun _ -> None
                    ObservesSteps = true
                    Observe =
                      fun o ->
                          got <- Some o.TaskGradient
                          spy
                    Consolidate = fun _ -> spy
                    State = []
                    Restore = fun _ -> spy }

              let objective = Objective.ofTerms [ spy; Regularizers.l2Term 0.5 ]
              let sgd = Optim.sgd 0.1
              Step.run model sgd (Rng.create 3L) (Step.init sgd objective p) batch |> ignore

              let taskOnly =
                  Params.grad (fun q -> Objective.taskLoss (Step.view model (Mode.Train(Rng.create 3L)) q batch)) p

              for (name, a), (_, b) in List.zip (Params.flatten got.Value) (Params.flatten taskOnly) do
                  Expect.isTrue (close 1e-12 (a.ToFloat64Array()) (b.ToFloat64Array())) name
          }

          test "the task id picks the head, and only that head's parameters get a gradient" {
              let model = net 3
              let p = model.Init (Rng.create 1L) Float64
              let batch = batchOf 2L 1 3

              let g =
                  Params.grad (fun q -> Objective.taskLoss (Step.view model Mode.Eval q batch)) p

              for path, t in Params.flatten g do
                  let zero = t.ToFloat64Array() |> Array.forall ((=) 0.0)

                  if path.StartsWith "out/head1" || path.StartsWith "out/head3" then
                      Expect.isTrue zero $"{path} is another task's head"
                  else
                      Expect.isFalse zero $"{path} is trained by task 1"

              let direct =
                  Layer.apply
                      (Layer.dense 4 3)
                      Mode.Eval
                      (Params.get "out/head2" p)
                      (Layer.apply
                          (Layer.sequential [ "fc1", Layer.dense 5 4; "relu1", Layer.relu ])
                          Mode.Eval
                          (Params.ofList [ "fc1", Params.get "fc1" p ])
                          batch.Inputs)

              let logits, _ = model.Forward (Mode.Eval.OnTask 1) p batch.Inputs
              Expect.equal (logits.ToFloat64Array()) (direct.ToFloat64Array()) "head 2 computes task 1's logits"
          }

          test "a task without a head is refused with a message" {
              let model = net 2
              let p = model.Init (Rng.create 1L) Float64

              Expect.throwsC
                  (fun () -> model.Forward (Mode.Eval.OnTask 2) p (batchOf 2L 0 3).Inputs |> ignore)
                  (fun e -> Expect.stringContains e.Message "task 2 has no head" "the message")
          }

          test "only the outputs in play enter the task loss" {
              let logits =
                  Tensor.ofFloat64 [| 2; 4 |] [| 1.0; 2.0; 3.0; 4.0; 5.0; 6.0; 7.0; 8.0 |]

              Expect.equal ((Step.inPlay 2 logits).ToFloat64Array()) [| 1.0; 2.0; 5.0; 6.0 |] "the first two columns"
              Expect.equal (Step.inPlay 4 logits) logits "all of them"
          }

          test "gradients at an intermediate equal the gradient through it" {
              let x = Tensor.uniform (Rng.create 7L) Float64 [| 3; 4 |] -1.0 1.0
              let w = Tensor.uniform (Rng.create 8L) Float64 [| 4; 2 |] -1.0 1.0

              let values, grads =
                  Tensor.gradientsAt
                      (fun ts ->
                          let z = Tensor.matmul ts[0] ts[1]
                          [| Tensor.sum (Tensor.tanh z); Tensor.sum (Tensor.square z) |], [| z; ts[1] |])
                      [| x; w |]

              let ofTanh, ofSquare = grads[0], grads[1]
              let z = (Tensor.matmul x w).ToFloat64Array()
              let dTanh = z |> Array.map (fun v -> 1.0 - tanh v * tanh v)
              Expect.isTrue (close 1e-12 (ofTanh[0].ToFloat64Array()) dTanh) "d sum tanh z / dz"
              Expect.isTrue (close 1e-12 (ofSquare[0].ToFloat64Array()) (z |> Array.map ((*) 2.0))) "d sum z² / dz"

              let gw = Tensor.grad (fun w -> Tensor.sum (Tensor.tanh (Tensor.matmul x w))) w
              Expect.isTrue (close 1e-12 (ofTanh[1].ToFloat64Array()) (gw.ToFloat64Array())) "d / dW too"
              Expect.floatClose Accuracy.veryHigh values[1].Item (Array.sumBy (fun v -> v * v) z) "the value"
          }

          test "a dense layer records its output with the rules of its weight and bias" {
              let x = Tensor.uniform (Rng.create 7L) Float64 [| 3; 5 |] -1.0 1.0
              let layer = Layer.dense 5 2
              let p = layer.Init (Rng.create 1L) Float64
              let z, trace = layer.Forward Mode.Eval p x
              let kinds = trace |> List.map (fun e -> e.Kind)

              match kinds with
              | [ Gradient("weight", Outer a); Gradient("bias", Rows) ] ->
                  Expect.equal (a.ToFloat64Array()) (x.ToFloat64Array()) "the input"
              | other -> failtestf "unexpected trace %A" other

              Expect.isTrue (trace |> List.forall (fun e -> obj.ReferenceEquals(e.Value, z))) "the output node"
          } ]
