/// Elastic weight consolidation (Kirkpatrick et al. 2017; online: Schwarz et al. 2018) and the fused
/// quadratic penalty it shares with SI.
module Forgetting.Tests.Mechanisms.EwcTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Training
open Forgetting.Mechanisms
open Forgetting.Tests
open Forgetting.Tests.Nn.Nets

let private spec =
    { Widths = [ 4; 5; 3 ]
      Forgetting = Some ForgettingLayerConfig.Default
      Heads = 1 }

let private model = build spec

/// Task t's consolidation: the parameters it ended with and 8 samples of its own.
let private consolidation (t: int) =
    let n = 8

    { Model = model
      Params = parameters model Float64 (100 + t)
      Task = 0
      Inputs = inputs spec Float64 n (200 + t)
      Labels = Array.init n (fun i -> (i + t) % 3)
      Outputs = 3
      Rng = Rng.create (int64 t) }

/// What a term sees of a step at the parameters p (the penalties read only the parameters).
let private viewAt (p: Params) =
    { Params = p
      Trace = []
      Logits = Tensor.zeros Float64 [| 1; 3 |]
      Labels = [| 0 |]
      Task = 0 }

let private lossAt (term: Term) (p: Params) =
    match term.Loss(viewAt p) with
    | Some l -> l
    | None -> failtest "the term has no penalty"

let private gradAt (term: Term) (p: Params) = Params.grad (lossAt term) p

/// Σ_i F_i (θ_i − θ*_i)² by hand.
let private quadratic (f: Params) (theta: Params) (anchor: Params) =
    Array.zip3 (values f) (values theta) (values anchor)
    |> Array.sumBy (fun (f, t, a) -> f * (t - a) * (t - a))

/// Central differences of a scalar function of the parameters, element by element.
let private finiteDifferences (f: Params -> float) (p: Params) =
    let h = 1e-6
    let leaves = Params.tensors p

    leaves
    |> Array.mapi (fun i t ->
        let v = t.ToFloat64Array()

        Array.init v.Length (fun j ->
            let moved (delta: float) =
                let w = Array.copy v
                w[j] <- w[j] + delta

                leaves
                |> Array.mapi (fun k u -> if k = i then Tensor.ofFloat64 t.Shape w else u)
                |> Params.withTensors p

            (f (moved h) - f (moved -h)) / (2.0 * h))
        |> Tensor.ofFloat64 t.Shape)
    |> Params.withTensors p

let private consolidateAll (term: Term) (tasks: int list) =
    tasks |> List.fold (fun (t: Term) k -> t.Consolidate(consolidation k)) term

let private settings lambda =
    { EwcSettings.Default with
        Lambda = lambda }

/// θ* of task 1 moved by N(0, 0.3²) noise from a seed.
let private near (seed: int) =
    let anchor = (consolidation 1).Params
    let keys = Rng.splitN (Params.tensors anchor).Length (Rng.create (int64 seed))

    Params.tensors anchor
    |> Array.mapi (fun i t -> t + Tensor.normal keys[i] Float64 t.Shape 0.0 0.3)
    |> Params.withTensors anchor

let private sameState (a: (string * Tensor) list) (b: (string * Tensor) list) =
    List.map fst a = List.map fst b
    && List.forall2
        (fun (_, (x: Tensor)) (_, (y: Tensor)) -> x.Shape = y.Shape && x.ToFloat64Array() = y.ToFloat64Array())
        a
        b

[<Tests>]
let tests =
    testList
        "EWC"
        [ test "no penalty and no state before the first consolidation" {
              let term = Ewc.term (settings 10.0)
              Expect.isNone (term.Loss(viewAt (consolidation 1).Params)) "no penalty"
              Expect.isEmpty term.State "no state"
              Expect.isEmpty (Ewc.fisherOf term) "no Fisher"
              Expect.equal term.Name "ewc" "its name"
              Expect.isFalse term.ObservesSteps "EWC needs no step"
          }

          test "the penalty is exactly 0 at θ*" {
              let term = (Ewc.term (settings 10.0)).Consolidate(consolidation 1)
              Expect.equal (lossAt term (consolidation 1).Params).Item 0.0 "0 at θ*"

              Expect.isTrue
                  (values (gradAt term (consolidation 1).Params) |> Array.forall ((=) 0.0))
                  "its gradient is 0"
          }

          Checks.forAll
              "the penalty is (λ/2) Σ F (θ − θ*)² and its gradient λF(θ − θ*), analytically and by finite differences"
              25
              (Gen.zip (Gen.choose (0, 1_000_000)) (Gen.choose (1, 1000)))
              (fun (seed, l) ->
                  let lambda = float l / 10.0
                  let c = consolidation 1
                  let term = (Ewc.term (settings lambda)).Consolidate c
                  let f = Fisher.diagonal FisherKind.True None c
                  let theta = near seed
                  let value = (lossAt term theta).Item
                  let expected = lambda / 2.0 * quadratic f theta c.Params

                  let analytic =
                      Params.map2 (fun f d -> f * d * lambda) f (Params.map2 (-) theta c.Params)

                  let grad = gradAt term theta
                  let fd = finiteDifferences (fun q -> (lossAt term q).Item) theta

                  abs (value - expected) <= 1e-12 * max 1.0 (abs expected)
                  && close 1e-12 grad analytic
                  && close 1e-6 grad fd)

          test "separate EWC keeps one term (F_t, θ*_t) per task" {
              let lambda = 7.0
              let term = consolidateAll (Ewc.term (settings lambda)) [ 1; 2; 3 ]

              let fishers =
                  [ for t in 1..3 -> Fisher.diagonal FisherKind.True None (consolidation t) ]

              let heads =
                  term.State
                  |> List.map (fun (n, _) -> n.Split('/')[0])
                  |> List.distinct
                  |> List.sort

              Expect.equal heads [ "anchor1"; "anchor2"; "anchor3"; "fisher1"; "fisher2"; "fisher3" ] "named per task"
              Expect.equal (Ewc.fisherOf term |> List.map values) (fishers |> List.map values) "the Fisher of each task"

              Expect.equal
                  (Ewc.anchorsOf term |> List.map values)
                  [ for t in 1..3 -> values (consolidation t).Params ]
                  "the θ* of each task"

              let theta = near 4

              let expected =
                  List.sum [ for t in 1..3 -> lambda / 2.0 * quadratic fishers[t - 1] theta (consolidation t).Params ]

              Expect.floatClose Accuracy.veryHigh (lossAt term theta).Item expected "Σ_t (λ/2) Σ F_t (θ − θ*_t)²"

              let analytic =
                  [ for t in 1..3 ->
                        Params.map2
                            (fun f d -> f * d * lambda)
                            fishers[t - 1]
                            (Params.map2 (-) theta (consolidation t).Params) ]
                  |> List.reduce (Params.map2 (+))

              Expect.isTrue (close 1e-12 (gradAt term theta) analytic) "Σ_t λ F_t (θ − θ*_t)"
          }

          test "online EWC with γ = 1 is the running sum of the Fishers, anchored at the latest θ*" {
              let lambda = 3.0

              let term =
                  consolidateAll
                      (Ewc.term
                          { settings lambda with
                              Online = Some 1.0 })
                      [ 1; 2; 3 ]

              let sum =
                  [ for t in 1..3 -> Fisher.diagonal FisherKind.True None (consolidation t) ]
                  |> List.reduce (Params.map2 (+))

              Expect.equal (Ewc.fisherOf term |> List.map values) [ values sum ] "ΣF"
              Expect.equal (Ewc.anchorsOf term |> List.map values) [ values (consolidation 3).Params ] "θ*_3"

              let heads =
                  term.State
                  |> List.map (fun (n, _) -> n.Split('/')[0])
                  |> List.distinct
                  |> List.sort

              Expect.equal heads [ "anchor"; "fisher" ] "one term"
              let theta = near 5

              Expect.floatClose
                  Accuracy.veryHigh
                  (lossAt term theta).Item
                  (lambda / 2.0 * quadratic sum theta (consolidation 3).Params)
                  "(λ/2) Σ (ΣF) (θ − θ*_3)²"
          }

          test "online EWC decays the Fisher, F ← γF + F_new; γ in the penalty multiplies it once more" {
              let gamma = 0.25

              let online =
                  { settings 2.0 with
                      Online = Some gamma }

              let term = consolidateAll (Ewc.term online) [ 1; 2 ]

              let f1, f2 =
                  Fisher.diagonal FisherKind.True None (consolidation 1),
                  Fisher.diagonal FisherKind.True None (consolidation 2)

              let expected = Params.map2 (fun a b -> a * gamma + b) f1 f2
              Expect.equal (Ewc.fisherOf term |> List.map values) [ values expected ] "γF_1 + F_2"
              let theta = near 6

              let withGamma =
                  consolidateAll (Ewc.term { online with GammaInPenalty = true }) [ 1; 2 ]

              Expect.floatClose Accuracy.veryHigh (lossAt withGamma theta).Item ((lossAt term theta).Item * gamma) "× γ"
          }

          test "State → Restore round-trips exactly, for separate and online EWC" {
              for s in [ settings 5.0; { settings 5.0 with Online = Some 0.9 } ] do
                  let term = consolidateAll (Ewc.term s) [ 1; 2 ]
                  let restored = (Ewc.term s).Restore term.State
                  Expect.isTrue (sameState restored.State term.State) "the same state"
                  let theta = near 7
                  Expect.equal (lossAt restored theta).Item (lossAt term theta).Item "the same penalty"
                  Expect.equal (values (gradAt restored theta)) (values (gradAt term theta)) "the same gradient"

                  let next, nextRestored =
                      term.Consolidate(consolidation 3), restored.Consolidate(consolidation 3)

                  Expect.isTrue (sameState nextRestored.State next.State) "the same after another task"
                  Expect.isEmpty ((Ewc.term s).Restore []).State "an empty state is a fresh term"

              let objective = Objective.ofTerms [ consolidateAll (Ewc.term (settings 5.0)) [ 1 ] ]
              let state = Objective.state objective

              Expect.isTrue
                  (state
                   |> List.forall (fun (n, _) -> n.StartsWith "ewc/fisher1/" || n.StartsWith "ewc/anchor1/"))
                  "ewc/fisher1/…"

              let back = Objective.restore state (Objective.ofTerms [ Ewc.term (settings 5.0) ])
              Expect.isTrue (sameState (Objective.state back) state) "through Objective.state and restore"
          }

          test "a state of one form is refused by the other, in one line" {
              let separate = consolidateAll (Ewc.term (settings 1.0)) [ 1 ]
              let online = consolidateAll (Ewc.term { settings 1.0 with Online = Some 1.0 }) [ 1 ]

              for message in
                  [ refusal (fun () -> (Ewc.term { settings 1.0 with Online = Some 1.0 }).Restore separate.State)
                    refusal (fun () -> (Ewc.term (settings 1.0)).Restore online.State)
                    refusal (fun () -> (Ewc.term (settings 1.0)).Restore [ "other/x", Tensor.zeros Float64 [| 1 |] ]) ] do
                  Expect.stringContains message "state" "says what is wrong"
                  Expect.isFalse (message.Contains "\n") "one line"
          }

          test "λ = 0 adds nothing" {
              let term = consolidateAll (Ewc.term (settings 0.0)) [ 1 ]
              Expect.isNone (term.Loss(viewAt (near 1))) "no penalty"
              Expect.equal (Ewc.fisherOf term).Length 1 "the Fisher is still kept (for histograms)"
          }

          test "one SGD step with EWC moves θ by lr · (g + λF(θ − θ*))" {
              let lambda, lr = 50.0, 0.1
              let c = consolidation 1
              let term = (Ewc.term (settings lambda)).Consolidate c
              let theta = near 8

              let batch =
                  { Inputs = inputs spec Float64 6 9
                    Labels = [| 0; 1; 2; 0; 1; 2 |]
                    Task = 0
                    Outputs = 3 }

              let sgd = Optim.sgd lr
              let state = Step.init sgd (Objective.ofTerms [ term ]) theta
              let after, _ = Step.run model sgd (Rng.create 1L) state batch

              let g =
                  Params.grad (fun q -> Objective.taskLoss (Step.view model (Mode.Train(Rng.create 1L)) q batch)) theta

              let f = Fisher.diagonal FisherKind.True None c

              let penalty =
                  Params.map2 (fun f d -> f * d * lambda) f (Params.map2 (-) theta c.Params)

              let expected = Params.map2 (fun t d -> t - d * lr) theta (Params.map2 (+) g penalty)
              Expect.isTrue (close 1e-12 after.Params expected) "θ − lr (g + λF(θ − θ*))"
          }

          test "a multi-head net: the heads of other tasks get no Fisher, hence no penalty" {
              let heads = { spec with Heads = 2 }
              let m = build heads
              let p = parameters m Float64 3

              let c =
                  { Model = m
                    Params = p
                    Task = 1
                    Inputs = inputs heads Float64 6 3
                    Labels = [| 0; 1; 2; 0; 1; 2 |]
                    Outputs = 3
                    Rng = Rng.create 3L }

              let term = (Ewc.term (settings 1.0)).Consolidate c
              let fisher = (Ewc.fisherOf term).Head

              for path, t in Params.flatten fisher do
                  if path.StartsWith "out/head1/" then
                      Expect.isTrue (t.ToFloat64Array() |> Array.forall ((=) 0.0)) $"{path}: task 0's head"

              let moved = Params.map (fun t -> t + 1.0) p

              let grads =
                  Params.grad (fun q -> (term.Loss(viewAt q)).Value) moved |> Params.flatten

              for path, g in grads do
                  if path.StartsWith "out/head1/" then
                      Expect.isTrue (g.ToFloat64Array() |> Array.forall ((=) 0.0)) $"{path}: not penalised"
          }

          test "bad settings are refused with one-line messages" {
              let cases =
                  [ "λ < 0", { settings -1.0 with Lambda = -1.0 }, "λ must be"
                    "λ NaN", { settings 1.0 with Lambda = nan }, "λ must be"
                    "γ > 1", { settings 1.0 with Online = Some 1.5 }, "γ must be in [0, 1]"
                    "γ < 0", { settings 1.0 with Online = Some -0.1 }, "γ must be in [0, 1]"
                    "no Fisher samples", { settings 1.0 with Samples = Some 0 }, "at least 1"
                    "γ in the penalty without online",
                    { settings 1.0 with
                        GammaInPenalty = true },
                    "online EWC only" ]

              for name, s, says in cases do
                  let message = refusal (fun () -> Ewc.term s)
                  Expect.stringContains message says name
                  Expect.isFalse (message.Contains "\n") $"{name}: one line"
          }

          test "with the task loss, the gradient is the sum of both (the tape adds one into the other in place)" {
              for dtype in [ Float64; Float32 ] do
                  let c = consolidation 1
                  let cast = Params.map (Tensor.cast dtype)

                  let c =
                      { c with
                          Params = cast c.Params
                          Inputs = Tensor.cast dtype c.Inputs }

                  let term = (Ewc.term (settings 30.0)).Consolidate c
                  let theta = cast (near 9)
                  let x = Tensor.cast dtype (inputs spec Float64 6 9)

                  let task (q: Params) =
                      Functional.crossEntropy (Layer.apply model Mode.Eval q x) [| 0; 1; 2; 0; 1; 2 |]

                  let both = Params.grad (fun q -> task q + lossAt term q) theta
                  let apart = Params.map2 (+) (Params.grad task theta) (gradAt term theta)
                  let tolerance = if dtype = Float64 then 1e-12 else 1e-5
                  Expect.isTrue (close tolerance both apart) $"{dtype}: ∇(task + penalty) = ∇task + ∇penalty"

                  // Two backward passes through one penalty (two outputs of one forward pass): the
                  // second gets the penalty's gradient afresh, not the buffer the first one summed into.
                  let _, grads =
                      Tensor.gradientsAt
                          (fun ts ->
                              let q = Params.withTensors theta ts
                              let total = task q + lossAt term q
                              [| total; total * 3.0 |], ts)
                          (Params.tensors theta)

                  let first, second =
                      Params.withTensors theta grads[0], Params.withTensors theta grads[1]

                  Expect.isTrue (close tolerance first apart) $"{dtype}: the first pass"

                  Expect.isTrue
                      (close tolerance second (Params.map (fun t -> t * 3.0) apart))
                      $"{dtype}: the second pass"
          }

          test "the fused penalty equals its composition in float32 over many tiles, whatever the thread count" {
              let shapes = [ [| 300; 170 |]; [| 7 |]; [| 40001 |] ]

              let tree seed =
                  Params.ofTensors
                      [ for i, s in List.indexed shapes ->
                            $"t{i}", Tensor.normal (Rng.create (int64 (seed + i))) Float32 s 0.0 1.0 ]

              let weights = tree 1 |> Params.map Tensor.abs
              let centre, theta = tree 10, tree 20
              let q = Quadratic.ofTerms [ weights, centre ]

              let loss () =
                  Params.valueAndGrad (Quadratic.loss 0.5 q) theta

              let v1, g1 = Parallelism.withDegree 1 loss
              let v2, g2 = Parallelism.withDegree 2 loss
              Expect.equal v1.Item v2.Item "the value does not depend on the thread count"
              Expect.equal (values g1) (values g2) "nor the gradient"

              let composed =
                  Params.valueAndGrad
                      (fun p ->
                          List.map3
                              (fun a t m -> Tensor.sum (a * Tensor.square (t - m)))
                              (Params.tensors weights |> List.ofArray)
                              (Params.tensors p |> List.ofArray)
                              (Params.tensors centre |> List.ofArray)
                          |> List.reduce (+)
                          |> fun s -> s * 0.5)
                      theta

              Expect.floatClose { absolute = 1e-3; relative = 1e-5 } v1.Item (fst composed).Item "the value"
              Expect.isTrue (close 1e-5 g1 (snd composed)) "the gradient"
          } ]
