/// Sums over samples of f(per-sample gradient) without a loop (the dense layers' rules, the forgetting
/// layer's input gate) against the exact loop, in float64.
module Forgetting.Tests.Nn.SampleGradientsTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Tests
open Forgetting.Tests.Nn.Nets

/// Batched and looped sums differ only in the order of their additions (a matrix product against a
/// running sum): in float64 they agree to 1e-11 of each tensor's largest entry.
let private tolerance = 1e-11

/// Two per-sample quantities of a chunk: log p(y_b|x_b) at labels drawn from the seed, and the squared
/// norm of the outputs weighted by w_b ∈ [0.5, 1.5) (as MAS and the true Fisher weight theirs).
let private quantities (seed: int) (start: int) (outputs: Tensor) : SampleLoss list =
    let rows, k = outputs.Shape[0], outputs.Shape[1]
    let u = Rng.uniform (start + rows) (Rng.create (int64 seed))
    let labels = Array.init rows (fun b -> int (u[start + b] * float k))
    let oneHot = Array.zeroCreate (rows * k)
    labels |> Array.iteri (fun b y -> oneHot[b * k + y] <- 1.0)
    let logp = Tensor.logSoftmax 1 outputs

    [ { Values = Tensor.sumAxis 1 false (logp * Tensor.create outputs.DType [| rows; k |] oneHot)
        Weights = None }
      { Values = Tensor.sumAxis 1 false (Tensor.square outputs)
        Weights = Some(Tensor.create outputs.DType [| rows |] (Array.init rows (fun b -> 0.5 + u[start + b]))) } ]

/// A net, its parameters, inputs, a task, a chunk size and a seed.
let private cases =
    gen {
        let! spec = specs
        let! n = Gen.choose (1, 12)
        let! chunk = Gen.choose (1, 5)
        let! seed = Gen.choose (0, 1_000_000)
        let! task = Gen.choose (0, spec.Heads - 1)
        return spec, n, chunk, seed, task
    }

let private batchedEqualsLoop (f: SampleMap) (spec: Spec, n, chunk, seed, task) =
    let model = build spec
    let p = parameters model Float64 seed
    let x = inputs spec Float64 n seed
    let mode = Mode.Eval.OnTask task
    let batched = SampleGradients.sumsWith chunk f model mode (quantities seed) p x
    let looped = SampleGradients.loop f model mode (quantities seed) p x
    close tolerance batched looped

/// A 2×2 convolution of 2 → 3 channels on 3×3 images (no per-sample rule: the loop).
let private conv =
    { Name = "conv"
      Init =
        fun rng dtype ->
            let kw, kb = Rng.split rng

            Params.ofTensors
                [ "weight", Tensor.normal kw dtype [| 3; 2; 2; 2 |] 0.0 0.5
                  "bias", Tensor.normal kb dtype [| 3 |] 0.0 0.5 ]
      Forward =
        fun _ p x ->
            Functional.conv2d 1 0 x (Params.tensor "weight" p) (Some(Params.tensor "bias" p))
            |> Tensor.relu,
            [] }

/// conv, a forgetting layer on its feature maps (one gate per channel), flatten, dense 12 → 3.
let private convNet (config: ForgettingLayerConfig) =
    Layer.sequential
        [ "conv", conv
          "forget", ActiveForgetting.layer config 3
          "flatten", Layer.flatten
          "out", Layer.dense 12 3 ]

/// A dense layer applied twice with the same parameters: its rule is recorded twice.
let private shared =
    let dense = Layer.dense 3 3

    { dense with
        Forward =
            fun mode p x ->
                let h, first = dense.Forward mode p x
                let y, second = dense.Forward mode p (Tensor.tanh h)
                y, first @ second }

[<Tests>]
let tests =
    testList
        "Per-sample gradient sums"
        [ Checks.forAll
              "Σ w f(g)² batched equals the loop (ReLU MLPs, forgetting layers, heads; float64)"
              150
              cases
              (batchedEqualsLoop SampleMap.Square)

          Checks.forAll
              "Σ w |g| batched equals the loop (ReLU MLPs, forgetting layers, heads; float64)"
              150
              cases
              (batchedEqualsLoop SampleMap.Abs)

          Checks.forAll "the loop is the sum of Params.perSampleGrads squared" 40 cases (fun (spec, n, _, seed, task) ->
              let model = build spec
              let p = parameters model Float64 seed
              let x = inputs spec Float64 n seed
              let mode = Mode.Eval.OnTask task

              let first (start: int) (outputs: Tensor) =
                  [ List.head (quantities seed start outputs) ]

              let expected =
                  Params.perSampleGrads
                      (fun q b ->
                          (first b (Layer.apply model mode q (Tensor.slice b 1 x))).Head.Values
                          |> Tensor.sum)
                      n
                      p
                  |> Array.map (Params.map Tensor.square)
                  |> Array.reduce (Params.map2 (+))

              close tolerance (SampleGradients.loop SampleMap.Square model mode first p x) expected
              && close tolerance (SampleGradients.sums SampleMap.Square model mode first p x) expected)

          Checks.forAll
              "a forgetting layer on conv maps: batched equals the loop"
              30
              (Gen.zip3
                  (Gen.elements
                      [ ForgettingLayerConfig.Default
                        { ForgettingLayerConfig.Default with
                            StaticGate = true } ])
                  (Gen.choose (1, 6))
                  (Gen.choose (0, 1_000_000)))
              (fun (config, n, seed) ->
                  let model = convNet config
                  let p = parameters model Float64 seed
                  let x = Tensor.normal (Rng.create (int64 seed)) Float64 [| n; 2; 3; 3 |] 0.0 1.0

                  let batched =
                      SampleGradients.sumsWith 4 SampleMap.Square model Mode.Eval (quantities seed) p x

                  close tolerance batched (SampleGradients.loop SampleMap.Square model Mode.Eval (quantities seed) p x))

          Checks.forAll
              "a layer applied twice takes the loop"
              30
              (Gen.zip (Gen.choose (1, 8)) (Gen.choose (0, 1_000_000)))
              (fun (n, seed) ->
                  let p = parameters shared Float64 seed
                  let x = Tensor.normal (Rng.create (int64 seed)) Float64 [| n; 3 |] 0.0 1.0

                  let batched =
                      SampleGradients.sumsWith 3 SampleMap.Square shared Mode.Eval (quantities seed) p x

                  close
                      tolerance
                      batched
                      (SampleGradients.loop SampleMap.Square shared Mode.Eval (quantities seed) p x))

          test "the heads of other tasks get zeros" {
              let spec =
                  { Widths = [ 4; 5; 3 ]
                    Forgetting = Some ForgettingLayerConfig.Default
                    Heads = 3 }

              let model = build spec
              let p = parameters model Float64 1
              let x = inputs spec Float64 9 1

              let sums =
                  SampleGradients.sums SampleMap.Square model (Mode.Eval.OnTask 1) (quantities 1) p x

              for path, t in Params.flatten sums do
                  let v = t.ToFloat64Array()

                  if path.StartsWith "out/head1/" || path.StartsWith "out/head3/" then
                      Expect.isTrue (v |> Array.forall ((=) 0.0)) $"{path} is not used by task 1"
                  else
                      Expect.isTrue (v |> Array.exists ((<>) 0.0)) $"{path} is used by task 1"
          }

          test "the input gate records W_f's per-sample rule in evaluation mode; the static gate records none" {
              let h = Tensor.normal (Rng.create 3L) Float64 [| 4; 5 |] 0.0 1.0

              let rulesIn (mode: Mode) (config: ForgettingLayerConfig) =
                  let layer = ActiveForgetting.layer config 5
                  let _, trace = layer.Forward mode (parameters layer Float64 2) h

                  trace
                  |> List.choose (fun e ->
                      match e.Kind with
                      | Gradient(param, Scaled c) -> Some(param, c.Shape)
                      | _ -> None)

              let rules = rulesIn Mode.Eval
              Expect.equal (rules ForgettingLayerConfig.Default) [ "wf", [| 4; 5 |] ] "input gate"
              Expect.equal (rulesIn (Mode.Train(Rng.create 1L)) ForgettingLayerConfig.Default) [] "not in training"

              Expect.equal
                  (rules
                      { ForgettingLayerConfig.Default with
                          StaticGate = true })
                  []
                  "static gate"
          }

          test "float32 sums agree with float64 to float32 precision" {
              let spec =
                  { Widths = [ 6; 5; 4; 3 ]
                    Forgetting = Some ForgettingLayerConfig.Default
                    Heads = 1 }

              let model = build spec
              let p64 = parameters model Float64 5
              let p32 = Params.map (Tensor.cast Float32) p64
              let x = inputs spec Float64 20 5

              let s64 =
                  SampleGradients.sumsWith 7 SampleMap.Square model Mode.Eval (quantities 5) p64 x

              let s32 =
                  SampleGradients.sumsWith 7 SampleMap.Square model Mode.Eval (quantities 5) p32 (Tensor.cast Float32 x)

              Expect.isTrue (close 1e-4 s32 s64) "float32 within 1e-4"
          }

          test "an empty data set sums to zeros" {
              let spec =
                  { Widths = [ 3; 2 ]
                    Forgetting = None
                    Heads = 1 }

              let model = build spec
              let p = parameters model Float64 1

              let sums =
                  SampleGradients.sums SampleMap.Square model Mode.Eval (quantities 1) p (inputs spec Float64 0 1)

              Expect.isTrue (values sums |> Array.forall ((=) 0.0)) "zeros"
              Expect.equal (Params.flatten sums |> List.map fst) (Params.flatten p |> List.map fst) "the tree of p"
          }

          test "quantities of the wrong shape are refused in one line" {
              let spec =
                  { Widths = [ 3; 2 ]
                    Forgetting = None
                    Heads = 1 }

              let model = build spec
              let p = parameters model Float64 1
              let x = inputs spec Float64 4 1

              let whole _ (outputs: Tensor) =
                  [ { Values = Tensor.sum outputs
                      Weights = None } ]

              let message =
                  refusal (fun () -> SampleGradients.sums SampleMap.Square model Mode.Eval whole p x)

              Expect.stringContains message "one value per sample" "says what to return"
              Expect.isFalse (message.Contains "\n") "one line"

              let none =
                  refusal (fun () -> SampleGradients.sums SampleMap.Square model Mode.Eval (fun _ _ -> []) p x)

              Expect.stringContains none "at least one quantity" "says what to return"
          } ]
