/// The diagonal Fisher (Kirkpatrick et al. 2017, eq. 3): true, empirical and sampled, against exact
/// loops and the closed form of logistic regression, in float64.
module Forgetting.Tests.Nn.FisherTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Tests
open Forgetting.Tests.Nn.Nets

/// Batched and looped estimates differ only in the order of their additions (see SampleGradientsTests).
let private tolerance = 1e-11

let private consolidation (model: Layer) (p: Params) (task: int) (outputs: int) (x: Tensor) (labels: int[]) seed =
    { Model = model
      Params = p
      Task = task
      Inputs = x
      Labels = labels
      Outputs = outputs
      Rng = Rng.create (int64 seed) }

let private labelsFor (n: int) (outputs: int) (seed: int) =
    Rng.uniform n (Rng.create (int64 seed + 1L))
    |> Array.map (fun u -> int (u * float outputs))

let private kinds =
    Gen.elements [ FisherKind.True; FisherKind.Empirical; FisherKind.Sampled ]

/// A net, its task and outputs in play, n samples with labels, a seed and an optional sample cap.
let private cases =
    gen {
        let! spec = specs
        let! n = Gen.choose (1, 10)
        let! seed = Gen.choose (0, 1_000_000)
        let! task = Gen.choose (0, spec.Heads - 1)
        let k = List.last spec.Widths
        let! outputs = Gen.choose (min 2 k, k)

        let! cap =
            Gen.frequency [ 2, Gen.constant None; 1, Gen.choose (1, 12) |> Gen.map Some ]

        return spec, n, seed, task, outputs, cap
    }

let private build (spec, n, seed, task, outputs, _) =
    let model = Nets.build spec
    let p = parameters model Float64 seed
    consolidation model p task outputs (inputs spec Float64 n seed) (labelsFor n outputs seed) seed

/// The gradient of log p(y|x) for one sample, by Params.grad on a batch of one.
let private logLikelihoodGrad (c: Consolidation) (b: int) (y: int) =
    Params.grad
        (fun q ->
            let logits =
                Layer.apply c.Model (Mode.Eval.OnTask c.Task) q (Tensor.slice b 1 c.Inputs)

            let inPlay =
                logits |> Tensor.transpose |> Tensor.slice 0 c.Outputs |> Tensor.transpose

            -(Functional.crossEntropy inPlay [| y |]))
        c.Params

let private probabilities (c: Consolidation) (b: int) =
    let logits =
        Layer.apply c.Model (Mode.Eval.OnTask c.Task) c.Params (Tensor.slice b 1 c.Inputs)

    let inPlay =
        logits |> Tensor.transpose |> Tensor.slice 0 c.Outputs |> Tensor.transpose

    (Tensor.softmax 1 inPlay).ToFloat64Array()

let private mean (trees: Params list) =
    trees
    |> List.reduce (Params.map2 (+))
    |> Params.map (fun t -> t / float trees.Length)

/// Logistic regression: one dense layer d → 2 (softmax over two logits).
let private logistic (d: int) = Layer.dense d 2

[<Tests>]
let tests =
    testList
        "Diagonal Fisher"
        [ Checks.forAll "every kind is ≥ 0 everywhere" 100 (Gen.zip cases kinds) (fun (case, kind) ->
              let _, _, _, _, _, cap = case

              values (Fisher.diagonal kind cap (build case))
              |> Array.forall (fun v -> v >= 0.0))

          Checks.forAll
              "every kind, batched, equals the exact loop (float64)"
              120
              (Gen.zip cases kinds)
              (fun (case, kind) ->
                  let _, _, _, _, _, cap = case
                  let c = build case
                  close tolerance (Fisher.diagonal kind cap c) (Fisher.diagonalLoop kind cap c))

          Checks.forAll
              "the empirical Fisher is the mean of (∂ log p(y_k|x_k)/∂θ)² over a direct loop"
              60
              cases
              (fun case ->
                  let c = build case
                  let n = c.Labels.Length

                  let direct =
                      mean [ for b in 0 .. n - 1 -> Params.map Tensor.square (logLikelihoodGrad c b c.Labels[b]) ]

                  close tolerance (Fisher.diagonal FisherKind.Empirical None c) direct)

          Checks.forAll
              "the true Fisher is the mean of Σ_y p(y|x_k) (∂ log p(y|x_k)/∂θ)² over a direct loop"
              60
              cases
              (fun case ->
                  let c = build case
                  let n = c.Labels.Length

                  let direct =
                      mean
                          [ for b in 0 .. n - 1 ->
                                let p = probabilities c b

                                [ for y in 0 .. c.Outputs - 1 ->
                                      Params.map (fun g -> Tensor.square g * p[y]) (logLikelihoodGrad c b y) ]
                                |> List.reduce (Params.map2 (+)) ]

                  close tolerance (Fisher.diagonal FisherKind.True None c) direct)

          // Softmax over logits z = x W + c, W [d, 2]: ∂ log p_y/∂W_ik = x_i (δ_yk − p_k), so
          // Σ_y p_y (δ_yk − p_k)² x_i² = (p_k (1 − p_k)² + (1 − p_k) p_k²) x_i² = p_k (1 − p_k) x_i², and
          // p_0 (1 − p_0) = p_1 (1 − p_1) = p (1 − p) with p = p_0: F_W,ik = mean_b p_b (1 − p_b) x_bi², and
          // F_c,k = mean_b p_b (1 − p_b) for the bias (∂z_k/∂c_k = 1).
          Checks.forAll
              "logistic regression: the true Fisher is mean p(1−p)x² for the weights, mean p(1−p) for the bias"
              100
              (Gen.zip3 (Gen.choose (1, 6)) (Gen.choose (1, 30)) (Gen.choose (0, 1_000_000)))
              (fun (d, n, seed) ->
                  let model = logistic d
                  let p = parameters model Float64 seed
                  let x = Tensor.normal (Rng.create (int64 seed)) Float64 [| n; d |] 0.0 1.5

                  let f =
                      Fisher.diagonal FisherKind.True None (consolidation model p 0 2 x (labelsFor n 2 seed) seed)

                  let xs = x.ToFloat64Array()
                  let probs = (Tensor.softmax 1 (Layer.apply model Mode.Eval p x)).ToFloat64Array()
                  let v b = probs[2 * b] * (1.0 - probs[2 * b])

                  let weight =
                      Array.init (d * 2) (fun ik ->
                          let i = ik / 2

                          (List.sum [ for b in 0 .. n - 1 -> v b * xs[b * d + i] * xs[b * d + i] ])
                          / float n)

                  let bias = Array.create 2 ((List.sum [ for b in 0 .. n - 1 -> v b ]) / float n)

                  let expected =
                      Params.ofTensors
                          [ "bias", Tensor.ofFloat64 [| 2 |] bias
                            "weight", Tensor.ofFloat64 [| d; 2 |] weight ]

                  close 1e-13 f expected)

          test "the sampled Fisher of one input, drawn many times, approaches the true Fisher" {
              let model = logistic 3
              let p = parameters model Float64 11
              let one = Tensor.normal (Rng.create 5L) Float64 [| 1; 3 |] 0.0 1.0
              let x = Tensor.concat 0 (List.replicate 4000 one)
              let c = consolidation model p 0 2 x (Array.zeroCreate 4000) 17
              let sampled = Fisher.diagonal FisherKind.Sampled None c
              let exact = Fisher.diagonal FisherKind.True None c
              // 4000 draws of a Bernoulli: the estimate is within a few percent.
              Expect.isTrue (close 0.05 sampled exact) "within 5 %"
              let worst = relativeError sampled exact |> List.map snd |> List.max
              Expect.isGreaterThan worst 1e-6 "a draw, not the expectation"
          }

          test "a sample cap takes that many distinct samples of the task; a cap at or above its size, all" {
              // One-hot inputs: sample b moves only row b of the weight, so the rows that the Fisher
              // fills name the samples used.
              let n, cap = 12, 5
              let model = Layer.dense n 3
              let p = parameters model Float64 3

              let x =
                  Tensor.ofFloat64 [| n; n |] (Array.init (n * n) (fun i -> if i / n = i % n then 1.0 else 0.0))

              let c = consolidation model p 0 3 x (labelsFor n 3 3) 21
              let capped = Fisher.diagonal FisherKind.True (Some cap) c
              let whole = Fisher.diagonal FisherKind.True None c

              let w, wAll =
                  (Params.tensor "weight" capped).ToFloat64Array(), (Params.tensor "weight" whole).ToFloat64Array()

              let used =
                  [ for b in 0 .. n - 1 -> b, w[b * 3 .. b * 3 + 2] |> Array.exists ((<>) 0.0) ]

              Expect.equal (used |> List.filter snd |> List.length) cap "rows filled"

              for b, filled in used do
                  if filled then
                      for k in 0..2 do
                          // Each used row is its sample's term over cap, as the whole task's is over n.
                          Expect.floatClose
                              Accuracy.veryHigh
                              (w[b * 3 + k] * float cap)
                              (wAll[b * 3 + k] * float n)
                              "one sample's term, divided by the samples used"

              Expect.equal (values (Fisher.diagonal FisherKind.True (Some n) c)) (values whole) "cap = size"
              Expect.equal (values (Fisher.diagonal FisherKind.True (Some 100) c)) (values whole) "cap above size"

              Expect.notEqual
                  (values (Fisher.diagonal FisherKind.True (Some cap) { c with Rng = Rng.create 99L }))
                  (values capped)
                  "another key, another subset"
          }

          test "only the outputs in play count" {
              let model = Layer.dense 3 4
              let p = parameters model Float64 4
              let x = Tensor.normal (Rng.create 8L) Float64 [| 9; 3 |] 0.0 1.0
              let labels = labelsFor 9 2 4

              for kind in [ FisherKind.True; FisherKind.Empirical; FisherKind.Sampled ] do
                  let f = Fisher.diagonal kind None (consolidation model p 0 2 x labels 6)
                  let narrow = Layer.dense 3 2
                  let w = (Params.tensor "weight" p).ToFloat64Array()
                  let b = (Params.tensor "bias" p).ToFloat64Array()

                  let sliced =
                      Params.ofTensors
                          [ "bias", Tensor.ofFloat64 [| 2 |] b[0..1]
                            "weight", Tensor.ofFloat64 [| 3; 2 |] (Array.init 6 (fun i -> w[(i / 2) * 4 + i % 2])) ]

                  let g = Fisher.diagonal kind None (consolidation narrow sliced 0 2 x labels 6)
                  let fw = (Params.tensor "weight" f).ToFloat64Array()
                  let fb = (Params.tensor "bias" f).ToFloat64Array()
                  Expect.equal fb[2..3] [| 0.0; 0.0 |] $"{kind}: the bias of outputs not in play"

                  Expect.isTrue
                      (Array.init 3 (fun i -> fw[i * 4 + 2 .. i * 4 + 3])
                       |> Array.forall (Array.forall ((=) 0.0)))
                      $"{kind}: weights"

                  let kept =
                      Params.ofTensors
                          [ "bias", Tensor.ofFloat64 [| 2 |] fb[0..1]
                            "weight", Tensor.ofFloat64 [| 3; 2 |] (Array.init 6 (fun i -> fw[(i / 2) * 4 + i % 2])) ]

                  Expect.isTrue (close tolerance kept g) $"{kind}: the net of the outputs in play"
          }

          test "it is taken in evaluation mode: dropout is off" {
              let spec =
                  { Widths = [ 4; 6; 3 ]
                    Forgetting = None
                    Heads = 1 }

              let plain = Nets.build spec

              let dropped =
                  Layer.sequential
                      [ "fc1", Layer.dense 4 6
                        "relu1", Layer.relu
                        "drop", Layer.dropout 0.5
                        "out", Layer.dense 6 3 ]

              let p = parameters plain Float64 2
              let x = inputs spec Float64 7 2
              let labels = labelsFor 7 3 2

              let f =
                  Fisher.diagonal FisherKind.True None (consolidation dropped p 0 3 x labels 1)

              let g = Fisher.diagonal FisherKind.True None (consolidation plain p 0 3 x labels 1)
              Expect.equal (values f) (values g) "the same Fisher"
          }

          test "bad inputs are refused with one-line messages saying what to do" {
              let model = Layer.dense 3 2
              let p = parameters model Float64 1
              let x = Tensor.normal (Rng.create 1L) Float64 [| 4; 3 |] 0.0 1.0
              let c = consolidation model p 0 2 x [| 0; 1; 1; 0 |] 1

              let cases =
                  [ "no samples",
                    (fun () ->
                        Fisher.diagonal
                            FisherKind.True
                            None
                            { c with
                                Inputs = Tensor.slice 0 0 x
                                Labels = [||] }),
                    "at least one sample"
                    "a cap of 0", (fun () -> Fisher.diagonal FisherKind.True (Some 0) c), "None for the whole task"
                    "labels missing",
                    (fun () -> Fisher.diagonal FisherKind.Empirical None { c with Labels = [| 0 |] }),
                    "one label per input"
                    "a label out of play",
                    (fun () -> Fisher.diagonal FisherKind.Empirical None { c with Labels = [| 0; 2; 1; 0 |] }),
                    "outside the 2 outputs"
                    "more outputs than the head",
                    (fun () -> Fisher.diagonal FisherKind.True None { c with Outputs = 3 }),
                    "at most 2 outputs"
                    "no outputs",
                    (fun () -> Fisher.diagonal FisherKind.True None { c with Outputs = 0 }),
                    "at least one output" ]

              for name, f, says in cases do
                  let message = refusal f
                  Expect.stringContains message says name
                  Expect.isFalse (message.Contains "\n") $"{name}: one line"
          } ]
