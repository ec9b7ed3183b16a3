/// Synaptic metaplasticity in binarized nets (Laborieux et al. 2021): f_meta (eq. 1), metaplastic Adam
/// against a direct loop and against Adam at m = 0, the straight-through estimators, batch norm with
/// batch and running statistics, the per-task γ and β of the continual runner, and bad input.
module Forgetting.Tests.Mechanisms.MetaplasticityTests

open System
open Expecto
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Data
open Forgetting.Training
open Forgetting.Mechanisms
open Forgetting.Experiments
open Forgetting.Tests
open Forgetting.Tests.Tensors

let private vec (xs: float[]) = Tensor.ofFloat64 [| xs.Length |] xs
let private mat r c (xs: float[]) = Tensor.ofFloat64 [| r; c |] xs

/// `steps` updates from p0 with the gradient sin(k + 3i) + 0.5 θ at step k (direction changes, so
/// that some steps push weights toward zero and some away).
let private run (optimizer: Optimizer) (steps: int) (p0: Params) =
    let grad k (p: Params) =
        p
        |> Params.map (fun t ->
            let v = t.ToFloat64Array()
            Tensor.ofFloat64 t.Shape (v |> Array.mapi (fun i x -> sin (float k + 3.0 * float i) + 0.5 * x)))

    let mutable p, s = p0, optimizer.Init p0

    for k in 1..steps do
        let p', s' = optimizer.Update s p (grad k p)
        p <- p'
        s <- s'

    p

let private p0 =
    Checkpoint.toParams
        [ "fc1/weight", mat 2 3 [| 0.5; -1.2; 0.01; 2.0; -0.3; 0.0 |]
          "bn1/gamma", vec [| 1.0; 0.8 |] ]

// The continual runner's tests' quadrants: 4 classes of 8×8 images, 200 to train and 80 to test.
let private data = Forgetting.Tests.Training.ContinualTests.data

/// A binarized net on 3 permuted quadrant tasks, metaplastic Adam with m, the reference's protocol.
let private recipe (m: float) : Recipe =
    { Recipe.defaults with
        Label = "test"
        Scenario =
            { Recipe.defaults.Scenario with
                Kind = "permuted"
                Setting = "domain"
                Tasks = 3 }
        Model = Recipe.binarized [ 32; 32 ]
        Optimizer =
            { Recipe.metaplastic [ m ] with
                Lr = 0.02 }
        EpochsPerTask = 2
        BatchSize = 20 }

let private runRecipe (r: Recipe) =
    ContinualRun.run Catalog.terms (fun _ -> data) ignore None r

[<Tests>]
let tests =
    testList
        "metaplasticity"
        [ test "f_meta equals 1 − tanh²(m·|W|) on a grid" {
              let ws = [| -3.0 .. 0.25..3.0 |]

              for m in [ 0.0; 0.5; 1.0; 1.35; 2.5 ] do
                  let got = (Metaplasticity.factor m (vec ws)).ToFloat64Array()

                  for i, w in Array.indexed ws do
                      let expected = 1.0 - Math.Pow(Math.Tanh(m * abs w), 2.0)
                      Expect.isTrue (abs (got[i] - expected) < 1e-15) $"m = {m}, W = {w}: {got[i]} vs {expected}"
          }

          test "m = 0 gives parameters bit-identical to Adam's over several steps" {
              let meta =
                  Metaplasticity.adam 0.01 0.9 0.999 1e-8 0.0 (fun _ -> 0.0)
                  |> fun o -> run o 6 p0

              let adam = run (Optim.adamWith 0.01 0.9 0.999 1e-8 0.0) 6 p0

              for (name, a), (_, b) in List.zip (Params.flatten meta) (Params.flatten adam) do
                  Expect.equal (a.ToFloat64Array()) (b.ToFloat64Array()) name
          }

          test "the step is attenuated by f_meta exactly where sign(W)·m_t > 0, against a direct loop" {
              let lr, b1, b2, eps, wd, m = 0.05, 0.9, 0.999, 1e-8, 1e-3, 1.35
              let w0 = (Params.tensor "fc1/weight" p0).ToFloat64Array()
              let mom, v = Array.zeroCreate w0.Length, Array.zeroCreate w0.Length
              let mutable attenuated, plain = 0, 0

              let expected =
                  w0
                  |> Array.mapi (fun i x0 ->
                      let mutable x = x0

                      for k in 1..5 do
                          let g = sin (float k + 3.0 * float i) + 0.5 * x + wd * x
                          mom[i] <- b1 * mom[i] + (1.0 - b1) * g
                          v[i] <- b2 * v[i] + (1.0 - b2) * g * g

                          let step =
                              lr * (mom[i] / (1.0 - b1 ** float k))
                              / (sqrt (v[i] / (1.0 - b2 ** float k)) + eps)

                          if float (sign x) * mom[i] > 0.0 then
                              attenuated <- attenuated + 1
                              x <- x - step * (1.0 - Math.Pow(Math.Tanh(m * abs x), 2.0))
                          else
                              plain <- plain + 1
                              x <- x - step

                      x)

              let got =
                  Metaplasticity.adam lr b1 b2 eps wd (fun _ -> m)
                  |> fun o -> run o 5 p0
                  |> Params.tensor "fc1/weight"
                  |> fun t -> t.ToFloat64Array()

              Expect.isGreaterThan attenuated 0 "some steps pushed toward zero"
              Expect.isGreaterThan plain 0 "some steps pushed away from zero"

              for i in 0 .. got.Length - 1 do
                  Expect.isTrue (abs (got[i] - expected[i]) < 1e-12) $"weight {i}: got {got[i]}, the loop {expected[i]}"
          }

          test "the fused step equals the composed one: float64 to 1e-13, float32 to float32's rounding" {
              for dtype, tolerance in [ Float64, 1e-13; Float32, 1e-6 ] do
                  let keys = Rng.splitN 4 (Rng.create 11L)

                  let draw k =
                      Tensor.normal keys[k] dtype [| 300; 70 |] 0.0 1.0

                  let w, g, m, v = draw 0, draw 1, draw 2 * 0.1, Tensor.abs (draw 3) * 0.01
                  let buffers = Map [ "m", m; "v", v ]

                  for t in [ 1; 7 ] do
                      let expected = Metaplasticity.composed 0.01 0.9 0.999 1e-8 1e-3 1.35 t w g buffers

                      match Metaplasticity.fused 0.01 0.9 0.999 1e-8 1e-3 1.35 t w g m v with
                      | None -> failtest $"{dtype}: the fused step did not run on the CPU backend"
                      | Some got ->
                          let pairs =
                              [ "W_h", (let a, _, _ = got in a), (let a, _, _ = expected in a)
                                "m_t", (let _, a, _ = got in a), (let _, a, _ = expected in a)
                                "v_t", (let _, _, a = got in a), (let _, _, a = expected in a) ]

                          for name, a, b in pairs do
                              let a, b = a.ToFloat64Array(), b.ToFloat64Array()

                              for i in 0 .. a.Length - 1 do
                                  if abs (a[i] - b[i]) > tolerance * (1.0 + abs b[i]) then
                                      failtest $"{dtype}, step {t}, {name}[{i}]: fused {a[i]}, composed {b[i]}"
          }

          test "vectors (γ, β) get plain Adam with no decay, whatever m" {
              let meta =
                  Metaplasticity.adam 0.01 0.9 0.999 1e-8 0.1 (fun _ -> 2.0)
                  |> fun o -> run o 4 p0

              let adam = run (Optim.adamWith 0.01 0.9 0.999 1e-8 0.0) 4 p0

              Expect.equal
                  ((Params.tensor "bn1/gamma" meta).ToFloat64Array())
                  ((Params.tensor "bn1/gamma" adam).ToFloat64Array())
                  "γ as under Adam"
          }

          test "the binarized activation's gradient passes exactly where |x| ≤ 1" {
              let x = vec [| -2.0; -1.0; -0.5; 0.0; 0.3; 1.0; 1.5 |]
              let y = Functional.signActivation x
              Expect.equal (y.ToFloat64Array()) [| -1.0; -1.0; -1.0; 0.0; 1.0; 1.0; 1.0 |] "sign, 0 at 0"

              let g =
                  Tensor.grads (fun xs -> Tensor.sum (Functional.signActivation xs[0] * vec [| 1.0 .. 7.0 |])) [| x |]

              Expect.equal (g[0].ToFloat64Array()) [| 0.0; 2.0; 3.0; 4.0; 5.0; 6.0; 0.0 |] "masked where |x| > 1"
          }

          test "the binarized weight's gradient passes straight through, unmasked" {
              let w = vec [| -2.0; 0.4; 3.0 |]

              let g =
                  Tensor.grads
                      (fun xs -> Tensor.sum (Functional.signStraightThrough xs[0] * vec [| 1.0; 2.0; 3.0 |]))
                      [| w |]

              Expect.equal (g[0].ToFloat64Array()) [| 1.0; 2.0; 3.0 |] "identity, even where |W| > 1"
          }

          test "a binarized layer computes with sign(W_h), no bias" {
              let layer = Metaplasticity.dense 0.05 3 2
              let p = Params.ofTensors [ "weight", mat 3 2 [| 0.3; -0.01; -2.0; 0.7; 0.0; 5.0 |] ]
              let x = mat 2 3 [| 1.0; 2.0; 3.0; -1.0; 0.5; 0.25 |]
              let y = (Layer.apply layer Mode.Eval p x).ToFloat64Array()
              // sign(W) = [[1, −1], [−1, 1], [0, 1]]
              Expect.equal y [| 1.0 - 2.0; -1.0 + 2.0 + 3.0; -1.0 - 0.5; 1.0 + 0.5 + 0.25 |] "x · sign(W)"
              let init = layer.Init (Rng.create 3L) Float64 |> Params.tensor "weight"
              let values = init.ToFloat64Array()
              Expect.isTrue (values |> Array.forall (fun v -> abs v <= 0.05)) "U(−0.05, 0.05)"
              Expect.equal (Params.flatten (layer.Init (Rng.create 3L) Float64) |> List.map fst) [ "weight" ] "no bias"
          }

          test "every weight matrix of a binarized net enters its forward pass as sign(W_h)" {
              let net = ContinualRun.model (Recipe.binarized [ 6; 5 ]) 8 [ 3 ]
              let p = net.Init (Rng.create 1L) Float64
              let x = Tensor.normal (Rng.create 2L) Float64 [| 4; 8 |] 0.0 1.0

              let scaled = p |> Params.map (fun t -> if t.Rank >= 2 then t * 7.0 else t)

              Expect.equal
                  ((Layer.apply net Mode.Eval scaled x).ToFloat64Array())
                  ((Layer.apply net Mode.Eval p x).ToFloat64Array())
                  "scaling the hidden weights leaves their signs, and the logits"

              let matrices =
                  Params.flatten p |> List.filter (fun (_, t) -> t.Rank >= 2) |> List.map fst

              Expect.equal matrices [ "fc1/weight"; "fc2/weight"; "out/fc/weight" ] "three binarized layers, no biases"
          }

          test "batch norm uses the batch's statistics, at evaluation too, and its gradient checks" {
              let bn = Layer.batchNorm 3 true false
              let x = mat 4 3 [| 1.0; 2.0; 0.0; 3.0; -1.0; 1.0; 5.0; 0.5; 2.0; -2.0; 1.0; 4.0 |]

              let p =
                  Params.ofTensors [ "gamma", vec [| 1.5; 0.5; 2.0 |]; "beta", vec [| 0.1; -0.2; 0.0 |] ]

              let y = (Layer.apply bn Mode.Eval p x).ToFloat64Array()
              let xs = x.ToFloat64Array()

              for f in 0..2 do
                  let col = Array.init 4 (fun b -> xs[b * 3 + f])
                  let mu = Array.average col
                  let var = col |> Array.averageBy (fun v -> (v - mu) ** 2.0)
                  let gamma, beta = [| 1.5; 0.5; 2.0 |][f], [| 0.1; -0.2; 0.0 |][f]

                  for b in 0..3 do
                      let expected = gamma * (col[b] - mu) / sqrt (var + 1e-5) + beta
                      Expect.isTrue (abs (y[b * 3 + f] - expected) < 1e-12) $"row {b}, feature {f}"

              let f (ts: Tensor[]) =
                  let p = Params.ofTensors [ "gamma", ts[1]; "beta", ts[2] ]
                  Tensor.sum (Tensor.square (Layer.apply bn Mode.Eval p ts[0]) * mat 4 3 [| 1.0 .. 12.0 |])

              match GradCheck.compare f [| x; vec [| 1.5; 0.5; 2.0 |]; vec [| 0.1; -0.2; 0.0 |] |] with
              | Some failure -> failtest failure
              | None -> ()
          }

          test "batch norm with running statistics updates them in the training step and uses them at evaluation" {
              let net =
                  Layer.sequential [ "fc", Layer.denseNoBias 2 3; "bn", Layer.batchNorm 3 true true ]

              let p = net.Init (Rng.create 1L) Float64
              let x = Tensor.normal (Rng.create 2L) Float64 [| 8; 2 |] 1.0 2.0

              let batch =
                  { Inputs = x
                    Labels = Array.init 8 (fun i -> i % 3)
                    Task = 0
                    Outputs = 3 }

              let state = Step.init (Optim.sgd 0.1) Objective.taskOnly p
              let after, _ = Step.run net (Optim.sgd 0.1) (Rng.create 3L) state batch
              let z = Tensor.matmul x (Params.tensor "fc/weight" p)
              let zs = z.ToFloat64Array()

              for f in 0..2 do
                  let col = Array.init 8 (fun b -> zs[b * 3 + f])
                  let mu = Array.average col
                  let unbiased = (col |> Array.sumBy (fun v -> (v - mu) ** 2.0)) / 7.0
                  let rm = (Params.tensor "bn/running_mean" after.Params).ToFloat64Array()
                  let rv = (Params.tensor "bn/running_var" after.Params).ToFloat64Array()
                  Expect.isTrue (abs (rm[f] - 0.1 * mu) < 1e-12) $"running mean {f}: 0.9·0 + 0.1·μ"
                  Expect.isTrue (abs (rv[f] - (0.9 + 0.1 * unbiased)) < 1e-12) $"running variance {f}: 0.9·1 + 0.1·σ²"

              let eval = Layer.apply net Mode.Eval after.Params x

              let viaStats =
                  Functional.batchNormWith
                      1e-5
                      (Params.tensor "bn/running_mean" after.Params)
                      (Params.tensor "bn/running_var" after.Params)
                      (Params.tensor "bn/gamma" after.Params)
                      (Params.tensor "bn/beta" after.Params)
                      (Tensor.matmul x (Params.tensor "fc/weight" after.Params))

              Expect.equal (eval.ToFloat64Array()) (viaStats.ToFloat64Array()) "evaluation with the running statistics"
          }

          test "the task norm state tests each learned task with its own γ and β, saved exactly" {
              let r = recipe 1.0
              let _, s, net, config, s0 = ContinualRun.prepare Catalog.terms (fun _ -> data) r
              let c1 = Continual.learnNext net config s ignore s0
              let c2 = Continual.learnNext net config s ignore c1

              let own =
                  Params.flatten c1.State.Params
                  |> List.filter (fun (path, _) -> ContinualRun.isNormAffine path)

              Expect.equal (own |> List.map fst) (c2.Snapshots.[0] |> List.map fst) "the γ and β of every batch norm"

              for (name, a), (_, b) in List.zip own c2.Snapshots.[0] do
                  Expect.equal (b.ToArray()) (a.ToArray()) $"{name} after task 1, bit for bit"

              let restored =
                  own
                  |> List.fold (fun acc (path, t) -> Params.replace path t acc) c2.State.Params

              let expected = Scenario.accuracy s net restored config.BatchSize 1 0
              Expect.equal (c2.Rows[2][0]) expected "task 1 after task 2, tested with task 1's γ, β"

              let current = Scenario.accuracy s net c2.State.Params config.BatchSize 1 0

              let domain =
                  ContinualRun.run
                      Catalog.terms
                      (fun _ -> data)
                      ignore
                      None
                      { r with
                          Model = { r.Model with NormState = "domain" } }

              Expect.equal (domain.R[2][0]) current "the domain state tests with the current ones"
          }

          test "a resumed binarized run, metaplastic Adam reset per task and γ, β per task, gives the same numbers" {
              let dir = TestData.tempDir ()
              let r = recipe 1.35
              let whole = runRecipe r
              let _, s, net, config, s0 = ContinualRun.prepare Catalog.terms (fun _ -> data) r

              Continual.save
                  (Continual.checkpointPath dir 2)
                  (Continual.learnNext net config s ignore s0
                   |> Continual.learnNext net config s ignore)

              let resumed = ContinualRun.run Catalog.terms (fun _ -> data) ignore (Some dir) r
              Expect.equal resumed.R whole.R "R"

              for (name, a), (_, b) in
                  List.zip (Params.flatten resumed.Final.State.Params) (Params.flatten whole.Final.State.Params) do
                  Expect.equal (a.ToArray()) (b.ToArray()) name
          }

          test
              "larger m keeps the first task better, smaller m learns the last one better (Laborieux et al. 2021, Fig. 2)" {
              let m0 = runRecipe (recipe 0.0)
              let m3 = runRecipe (recipe 3.0)
              let last = m0.R.Length - 1
              Expect.isGreaterThan (m3.R[last][0]) (m0.R[last][0]) "task 1 at the end: m = 3 above m = 0"
          }

          Sequencing.degreeOfParallelism
          <| test "a binarized metaplastic run is bit-identical on 1 and 2 threads" {
              let r = { recipe 1.0 with EpochsPerTask = 1 }
              let one = Parallelism.withDegree 1 (fun () -> runRecipe r)
              let two = Parallelism.withDegree 2 (fun () -> runRecipe r)
              Expect.equal two.R one.R "R"

              for (name, a), (_, b) in
                  List.zip (Params.flatten one.Final.State.Params) (Params.flatten two.Final.State.Params) do
                  Expect.equal (b.ToArray()) (a.ToArray()) name
          }

          test "bad input is refused with a message saying what to give" {
              let refused (r: Recipe) (fragment: string) =
                  let e =
                      Expect.throwsC (fun () -> ContinualRun.validate Catalog.terms r |> ignore) id

                  Expect.stringContains e.Message fragment $"the message: {e.Message}"

              let r = recipe 1.0

              refused
                  { r with
                      Optimizer = { r.Optimizer with Meta = [ -0.5 ] } }
                  "--meta must be finite numbers ≥ 0"

              refused
                  { r with
                      Model = { r.Model with Hidden = [ 0 ] } }
                  "at least 1"

              refused
                  { r with
                      Model = { r.Model with Norm = "none" } }
                  "a binarized net needs batch norm"

              refused
                  { r with
                      Model = { r.Model with Affine = false } }
                  "--norm-state task"

              refused
                  { r with
                      Optimizer = { r.Optimizer with Meta = [ 1.0; 2.0 ] } }
                  "give one per layer"

              refused
                  { r with
                      Optimizer = { r.Optimizer with Kind = "adam" } }
                  "--meta is metaplastic Adam's"

              let single =
                  { Recipe.single with
                      Model =
                          { Recipe.single.Model with
                              Norm = "batch"
                              NormState = "task" } }

              let e = Expect.throwsC (fun () -> Recipe.validate Catalog.terms single |> ignore) id
              Expect.stringContains e.Message "a single-task run has no tasks" e.Message

              Expect.throwsT<ArgumentException> (fun () -> Metaplasticity.dense 0.05 0 3 |> ignore) "width 0"

              Expect.throwsT<ArgumentException>
                  (fun () -> Metaplasticity.adamRule 0.01 0.9 0.999 1e-8 0.0 -1.0 |> ignore)
                  "m < 0"
          } ]
