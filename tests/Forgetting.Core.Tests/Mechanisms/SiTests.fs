/// Synaptic intelligence (Zenke et al. 2017): the path integral ω (eq. 3), the importance Ω (eq. 5)
/// and the surrogate penalty (eq. 4), against hand-computed examples.
module Forgetting.Tests.Mechanisms.SiTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Training
open Forgetting.Mechanisms
open Forgetting.Tests
open Forgetting.Tests.Nn.Nets

let private tree (w: float list) =
    Params.ofTensors [ "w", Tensor.ofFloat64 [| w.Length |] (Array.ofList w) ]

/// One plain SGD step of rate lr from θ with gradient g, as the term sees it.
let private sgdStep (lr: float) (theta: float list) (g: float list) =
    { Before = tree theta
      After = tree (List.map2 (fun t g -> t - lr * g) theta g)
      TaskGradient = tree g }

let private entry (name: string) (term: Term) =
    term.State
    |> List.find (fun (n, _) -> n = name)
    |> snd
    |> fun t -> t.ToFloat64Array()

let private consolidationAt (p: Params) =
    { Model = Layer.stateless "none" id
      Params = p
      Task = 0
      Inputs = Tensor.zeros Float64 [| 1; 1 |]
      Labels = [| 0 |]
      Outputs = 1
      Rng = Rng.create 0L }

let private viewAt (p: Params) =
    { Params = p
      Trace = []
      Logits = Tensor.zeros Float64 [| 1; 2 |]
      Labels = [| 0 |]
      Task = 0 }

let private near (xs: float[]) (ys: float[]) =
    xs.Length = ys.Length
    && Array.forall2 (fun x y -> abs (x - y) <= 1e-12 * max 1.0 (abs y)) xs ys

let private sameState (a: (string * Tensor) list) (b: (string * Tensor) list) =
    List.map fst a = List.map fst b
    && List.forall2 (fun (_, (x: Tensor)) (_, (y: Tensor)) -> x.ToFloat64Array() = y.ToFloat64Array()) a b

let private si = Si.term SiSettings.Default

[<Tests>]
let tests =
    testList
        "Synaptic intelligence"
        [ test "two plain SGD steps of rate 0.1, by hand" {
              // θ0 = (1, −2), g0 = (0.5, −1): θ1 = θ0 − 0.1 g0 = (0.95, −1.9), Δ = (−0.05, 0.1), −g0 ⊙ Δ = (0.025, 0.1).
              // g1 = (0.25, 0.5): θ2 = (0.925, −1.95), Δ = (−0.025, −0.05), −g1 ⊙ Δ = (0.00625, 0.025).
              // ω = (0.03125, 0.125); θ2 − θ0 = (−0.075, 0.05); (θ2 − θ0)² + ξ = (0.105625, 0.1025);
              // Ω = ω / ((θ2 − θ0)² + ξ) = (0.2958579881656805, 1.2195121951219512).
              let s1 = si.Observe(sgdStep 0.1 [ 1.0; -2.0 ] [ 0.5; -1.0 ])
              Expect.isTrue (near (entry "path/w" s1) [| 0.025; 0.1 |]) "ω after one step"
              Expect.isTrue (near (entry "start/w" s1) [| 1.0; -2.0 |]) "θ_start: the first step's θ"
              let s2 = s1.Observe(sgdStep 0.1 [ 0.95; -1.9 ] [ 0.25; 0.5 ])
              Expect.isTrue (near (entry "path/w" s2) [| 0.03125; 0.125 |]) "ω after two steps"
              let done' = s2.Consolidate(consolidationAt (tree [ 0.925; -1.95 ]))
              Expect.isTrue (near (entry "importance/w" done') [| 0.2958579881656805; 1.2195121951219512 |]) "Ω"
              Expect.isTrue (near (entry "anchor/w" done') [| 0.925; -1.95 |]) "θ* = θ2"
              Expect.isFalse (done'.State |> List.exists (fun (n, _) -> n.StartsWith "path/")) "ω is reset"
              // The penalty c Σ Ω (θ − θ*)² at θ* + (0.1, −0.2), c = 1.
              let penalty = (done'.Loss(viewAt (tree [ 1.025; -2.15 ]))).Value.Item

              Expect.floatClose
                  Accuracy.veryHigh
                  penalty
                  (0.2958579881656805 * 0.01 + 1.2195121951219512 * 0.04)
                  "c Σ Ω (θ − θ*)²"
          }

          test "two steps of Step.run (plain SGD, rate 1) on a dense layer 1 → 2, by hand" {
              // x = 1, label 0, W = b = 0. Step 1: z = (0, 0), p = (½, ½), ∂CE/∂z = p − e0 = (−½, ½) =
              // ∂CE/∂W = ∂CE/∂b; every parameter moves by ∓½ and gains ω = −g·Δ = g² = ¼.
              // Step 2: z = W + b = (1, −1), p0 = 1/(1 + e^−2) = 0.8807970779778823, ∂CE/∂z = (−p1, p1) with
              // p1 = 0.11920292202211769; ω gains p1² = 0.01420933661861107: ω = 0.26420933661861107 each.
              // θ_end − θ_start = ±(½ + p1) = ±0.6192029220221177; Ω = ω / (0.6192029220221177² + 0.1) = 0.546550758479981.
              let model = Layer.dense 1 2

              let p =
                  Params.ofTensors
                      [ "bias", Tensor.zeros Float64 [| 2 |]
                        "weight", Tensor.zeros Float64 [| 1; 2 |] ]

              let batch =
                  { Inputs = Tensor.ones Float64 [| 1; 1 |]
                    Labels = [| 0 |]
                    Task = 0
                    Outputs = 2 }

              let sgd = Optim.sgd 1.0

              let run (s: TrainState) =
                  fst (Step.run model sgd (Rng.create 1L) s batch)

              let after = Step.init sgd (Objective.ofTerms [ si ]) p |> run |> run
              let term = after.Objective.Terms.Head
              Expect.isTrue (near (entry "path/weight" term) [| 0.26420933661861107; 0.26420933661861107 |]) "ω of W"
              Expect.isTrue (near (entry "path/bias" term) [| 0.26420933661861107; 0.26420933661861107 |]) "ω of b"
              let done' = term.Consolidate(consolidationAt after.Params)
              Expect.isTrue (near (entry "importance/weight" done') [| 0.546550758479981; 0.546550758479981 |]) "Ω of W"
              Expect.isTrue (near (entry "anchor/bias" done') [| 0.6192029220221177; -0.6192029220221177 |]) "θ*"
          }

          test "Ω accumulates over tasks; ω restarts; θ_start is the previous θ*" {
              let task1 =
                  si.Observe(sgdStep 0.1 [ 1.0; -2.0 ] [ 0.5; -1.0 ]).Consolidate(consolidationAt (tree [ 0.95; -1.9 ]))

              let omega1 = entry "importance/w" task1
              // Task 2 starts at θ*_1 = (0.95, −1.9): g = (−1, 2), lr 0.1: θ = (1.05, −2.1), ω = (0.1, 0.4).
              let task2 = task1.Observe(sgdStep 0.1 [ 0.95; -1.9 ] [ -1.0; 2.0 ])
              Expect.isTrue (near (entry "path/w" task2) [| 0.1; 0.4 |]) "ω of task 2 alone"
              Expect.isTrue (near (entry "start/w" task2) [| 0.95; -1.9 |]) "θ_start = θ*_1"
              let done' = task2.Consolidate(consolidationAt (tree [ 1.05; -2.1 ]))
              // (θ_end − θ_start)² = (0.01, 0.04).
              let expected = [| omega1[0] + 0.1 / (0.01 + 0.1); omega1[1] + 0.4 / (0.04 + 0.1) |]
              Expect.isTrue (near (entry "importance/w" done') expected) "Ω_1 + ω_2 / (Δ² + ξ)"
          }

          Checks.forAll
              "the penalty is c Σ Ω (θ − θ*)², 0 at θ*, with gradient 2cΩ(θ − θ*) (analytic and finite differences)"
              30
              (Gen.zip (Gen.choose (1, 1000)) (Gen.choose (0, 1_000_000)))
              (fun (c10, seed) ->
                  let c = float c10 / 10.0
                  let u = Rng.uniform 6 (Rng.create (int64 seed)) |> Array.map (fun v -> v - 0.5)

                  let term =
                      (Si.term { SiSettings.Default with Strength = c })
                          .Observe(sgdStep 0.5 [ 0.0; 1.0; 2.0 ] (List.ofArray u[0..2]))

                  let anchor = tree [ 0.3; 0.7; 1.1 ]
                  let done' = term.Consolidate(consolidationAt anchor)
                  let omega = entry "importance/w" done'
                  let theta = [ 0.3 + u[3]; 0.7 + u[4]; 1.1 + u[5] ]
                  let loss (p: Params) = (done'.Loss(viewAt p)).Value
                  let value = (loss (tree theta)).Item
                  let d = [| u[3]; u[4]; u[5] |]
                  let expected = c * Array.sum (Array.map2 (fun o d -> o * d * d) omega d)
                  let grad = (Params.grad loss (tree theta) |> Params.tensor "w").ToFloat64Array()
                  let analytic = Array.map2 (fun o d -> 2.0 * c * o * d) omega d

                  let fd =
                      Array.init 3 (fun i ->
                          let at (h: float) =
                              (loss (tree (List.mapi (fun j t -> if j = i then t + h else t) theta))).Item

                          (at 1e-6 - at -1e-6) / 2e-6)

                  (loss anchor).Item = 0.0
                  && abs (value - expected) <= 1e-12 * max 1.0 (abs expected)
                  && near grad analytic
                  && Array.forall2 (fun a f -> abs (a - f) <= 1e-6 * max 1.0 (abs a)) grad fd)

          test "no penalty before the first consolidation; it observes steps" {
              Expect.isTrue si.ObservesSteps "observes steps"
              Expect.isNone (si.Loss(viewAt (tree [ 1.0 ]))) "no penalty"
              Expect.isNone (si.Observe(sgdStep 0.1 [ 1.0 ] [ 1.0 ]).Loss(viewAt (tree [ 1.0 ]))) "none during task 1"
              Expect.isEmpty si.State "no state"
              Expect.equal si.Name "si" "its name"
              Expect.isNone (Si.importanceOf si) "no Ω yet"
          }

          test "ω is taken with the task loss's own gradient, not the penalty's" {
              let spec =
                  { Widths = [ 3; 4; 2 ]
                    Forgetting = None
                    Heads = 1 }

              let model = build spec
              let p = parameters model Float64 1

              let batch =
                  { Inputs = inputs spec Float64 5 1
                    Labels = [| 0; 1; 0; 1; 1 |]
                    Task = 0
                    Outputs = 2 }

              let sgd = Optim.sgd 0.1
              // A task learned to p, then a step of task 2 from parameters away from θ* = p.
              let learned =
                  { Before = Params.map (fun t -> t * 0.5) p
                    After = p
                    TaskGradient = Params.map (fun t -> -t) p }

              let term = si.Observe(learned).Consolidate(consolidationAt p)
              Expect.isTrue (values (Si.importanceOf term).Value |> Array.forall (fun o -> o > 0.0)) "Ω > 0: a penalty"
              let start = Params.map (fun t -> t + 0.3) p

              let after, _ =
                  Step.run model sgd (Rng.create 1L) (Step.init sgd (Objective.ofTerms [ term ]) start) batch

              let g =
                  Params.grad (fun q -> Objective.taskLoss (Step.view model (Mode.Train(Rng.create 1L)) q batch)) start

              let expected =
                  Params.map2 (fun g d -> -(g * d)) g (Params.map2 (-) after.Params start)

              let observed =
                  after.Objective.Terms.Head.State
                  |> List.filter (fun (n, _) -> n.StartsWith "path/")
                  |> List.collect (fun (_, t) -> List.ofArray (t.ToFloat64Array()))

              Expect.isTrue (near (Array.ofList observed) (values expected)) "−g_task ⊙ Δθ"
          }

          test "State → Restore round-trips exactly, during a task and after tasks" {
              let t1 = si.Observe(sgdStep 0.1 [ 1.0; -2.0 ] [ 0.5; -1.0 ])
              let t2 = t1.Consolidate(consolidationAt (tree [ 0.95; -1.9 ]))
              let t3 = t2.Observe(sgdStep 0.1 [ 0.95; -1.9 ] [ -1.0; 2.0 ])

              for term in [ t1; t2; t3 ] do
                  let restored = si.Restore term.State
                  Expect.isTrue (sameState restored.State term.State) "the same state"
                  let next = sgdStep 0.1 [ 1.05; -2.1 ] [ 0.3; 0.3 ]

                  Expect.isTrue
                      (sameState (restored.Observe next).State (term.Observe next).State)
                      "the same after a step"

                  let theta = tree [ 0.5; 0.5 ]

                  match term.Loss(viewAt theta), restored.Loss(viewAt theta) with
                  | Some a, Some b -> Expect.equal b.Item a.Item "the same penalty"
                  | None, None -> ()
                  | _ -> failtest "one has a penalty, the other not"

              let names = t3.State |> List.map fst
              Expect.equal names [ "path/w"; "start/w"; "importance/w"; "anchor/w" ] "named tensors"

              Expect.isTrue
                  (Si.importanceOf t3
                   |> Option.exists (fun o -> values o = entry "importance/w" t3))
                  "importanceOf"

              Expect.stringContains
                  (refusal (fun () -> si.Restore [ "omega/w", Tensor.zeros Float64 [| 1 |] ]))
                  "does not know"
                  "unknown entries"
          }

          test "bad settings are refused with one-line messages" {
              let cases =
                  [ "c < 0",
                    { SiSettings.Default with
                        Strength = -1.0 },
                    "c must be"
                    "ξ = 0",
                    { SiSettings.Default with
                        Damping = 0.0 },
                    "ξ must be"
                    "ξ < 0",
                    { SiSettings.Default with
                        Damping = -0.1 },
                    "ξ must be"
                    "ξ NaN",
                    { SiSettings.Default with
                        Damping = nan },
                    "ξ must be" ]

              for name, s, says in cases do
                  let message = refusal (fun () -> Si.term s)
                  Expect.stringContains message says name
                  Expect.isFalse (message.Contains "\n") $"{name}: one line"
          } ]
