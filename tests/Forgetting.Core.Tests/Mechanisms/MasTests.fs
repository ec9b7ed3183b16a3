/// Memory aware synapses (Aljundi et al. 2018): global importance against its definition by a loop,
/// the batched form, the Hebbian local form against a direct loop, accumulation, the penalty and its
/// refusals.
module Forgetting.Tests.Mechanisms.MasTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Tests
open Forgetting.Tests.Nn.Nets

/// Batched sums and loops differ only in the order of their additions: in float64 they agree to 1e-11
/// of each tensor's largest entry.
let private tolerance = 1e-11

/// ‖F‖ of one sample's outputs [1, K], as the definition reads: Σ F², Σ |F|, over K for the mean.
let private normOf (norm: MasNorm) (mean: bool) (f: Tensor) =
    let total =
        match norm with
        | MasNorm.SquaredL2 -> Tensor.sum (Tensor.square f)
        | MasNorm.L1 -> Tensor.sum (Tensor.abs f)

    if mean then total / float f.Shape[1] else total

/// The definition (eq. 4), by a loop: (1/N) Σ_k |∂ ‖F(x_k)‖ / ∂θ|, one backward pass per sample, or per
/// batch of b for the batched form.
let private definition (norm: MasNorm) (mean: bool) (batch: int) (model: Layer) (task: int) (p: Params) (x: Tensor) =
    let n = x.Shape[0]
    let mode = Mode.Eval.OnTask task

    [ for start in 0..batch .. n - 1 ->
          let xb = Tensor.slice start (min batch (n - start)) x

          Params.grad
              (fun q ->
                  let f = Layer.apply model mode q xb

                  [ for k in 0 .. xb.Shape[0] - 1 -> normOf norm mean (Tensor.slice k 1 f) ]
                  |> List.reduce (+))
              p
          |> Params.map Tensor.abs ]
    |> List.reduce (Params.map2 (+))
    |> Params.map (fun t -> t / float n)

/// Local MAS by a direct loop over samples, layers and synapses: Ω_ij = (1/N) Σ_k |y_i y_j|, a bias
/// y_j = 1, for a plain MLP (fc{l} → relu{l} …, out), read from the layers' own outputs.
let private localLoop (spec: Spec) (model: Layer) (task: int) (p: Params) (x: Tensor) =
    let n = x.Shape[0]
    let depth = spec.Widths.Length - 1
    let mode = Mode.Eval.OnTask task

    let layerPath l =
        if l < depth then $"fc{l}"
        elif spec.Heads = 1 then "out"
        else $"out/head{task + 1}"

    let weights =
        [ for l in 1..depth ->
              let w = Params.tensor (layerPath l + "/weight") p
              let b = Params.tensor (layerPath l + "/bias") p
              w.ToFloat64Array(), b.ToFloat64Array(), spec.Widths[l - 1], spec.Widths[l] ]

    let sums =
        [| for _, _, fanIn, fanOut in weights -> Array.zeroCreate (fanIn * fanOut), Array.zeroCreate fanOut |]

    for k in 0 .. n - 1 do
        let mutable y = (Tensor.slice k 1 x).ToFloat64Array()

        for l, (w, b, fanIn, fanOut) in List.indexed weights do
            let z =
                Array.init fanOut (fun i ->
                    b[i] + Seq.sum (seq { for j in 0 .. fanIn - 1 -> y[j] * w[j * fanOut + i] }))

            let post = if l < depth - 1 then Array.map (max 0.0) z else z
            let sw, sb = sums[l]

            for j in 0 .. fanIn - 1 do
                for i in 0 .. fanOut - 1 do
                    sw[j * fanOut + i] <- sw[j * fanOut + i] + abs (post[i] * y[j])

            for i in 0 .. fanOut - 1 do
                sb[i] <- sb[i] + abs post[i]

            y <- post

    let byPath =
        [ for l in 1..depth do
              let sw, sb = sums[l - 1]
              yield layerPath l + "/weight", sw
              yield layerPath l + "/bias", sb ]
        |> Map.ofList

    Params.flatten p
    |> List.map (fun (path, t) ->
        match byPath.TryFind path with
        | Some v -> Tensor.ofFloat64 t.Shape (v |> Array.map (fun s -> s / float n))
        | None -> Tensor.zerosLike t)
    |> Array.ofList
    |> Params.withTensors p

let private cases =
    gen {
        let! spec = specs
        let! n = Gen.choose (1, 12)
        let! seed = Gen.choose (0, 1_000_000)
        let! task = Gen.choose (0, spec.Heads - 1)
        let! norm = Gen.elements [ MasNorm.SquaredL2; MasNorm.L1 ]
        let! mean = Gen.elements [ false; true ]
        return spec, n, seed, task, norm, mean
    }

let private globalOf norm mean batch =
    { MasSettings.Default with
        Norm = norm
        MeanOverOutputs = mean
        BatchSize = batch }

let private spec =
    { Widths = [ 4; 5; 3 ]
      Forgetting = None
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

/// θ* of task 1 moved by N(0, 0.3²) noise from a seed.
let private near (seed: int) =
    let anchor = (consolidation 1).Params
    let keys = Rng.splitN (Params.tensors anchor).Length (Rng.create (int64 seed))

    Params.tensors anchor
    |> Array.mapi (fun i t -> t + Tensor.normal keys[i] Float64 t.Shape 0.0 0.3)
    |> Params.withTensors anchor

let private importanceOn (s: MasSettings) (c: Consolidation) =
    Mas.importanceOf s c.Model c.Task (Some c.Outputs) c.Params c.Inputs

[<Tests>]
let tests =
    testList
        "MAS"
        [ Checks.forAll
              "per-sample Ω (the |A|ᵀ|G| pass for dense layers) equals the definition computed by a loop, for every norm"
              60
              cases
              (fun (spec, n, seed, task, norm, mean) ->
                  let model = build spec
                  let p = parameters model Float64 seed
                  let x = inputs spec Float64 n seed
                  let omega = Mas.globalImportanceOf (globalOf norm mean None) model task None p x
                  close tolerance omega (definition norm mean 1 model task p x))

          Checks.forAll
              "the |A|ᵀ|G| pass equals the per-sample loop of SampleGradients, with MAS's quantity"
              40
              cases
              (fun (spec, n, seed, task, norm, mean) ->
                  let model = build spec
                  let p = parameters model Float64 seed
                  let x = inputs spec Float64 n seed

                  let losses _ (f: Tensor) =
                      [ { Values = Mas.outputNorm norm mean f
                          Weights = None } ]

                  let mode = Mode.Eval.OnTask task
                  let batched = SampleGradients.sumsWith 3 SampleMap.Abs model mode losses p x
                  let looped = SampleGradients.loop SampleMap.Abs model mode losses p x
                  close tolerance batched looped)

          Checks.forAll
              "batched Ω equals its definition, and equals per-sample Ω at batch size 1"
              40
              (Gen.zip cases (Gen.choose (1, 5)))
              (fun ((spec, n, seed, task, norm, mean), batch) ->
                  let model = build spec
                  let p = parameters model Float64 seed
                  let x = inputs spec Float64 n seed

                  let batched =
                      Mas.globalImportanceOf (globalOf norm mean (Some batch)) model task None p x

                  let one = Mas.globalImportanceOf (globalOf norm mean (Some 1)) model task None p x
                  let perSample = Mas.globalImportanceOf (globalOf norm mean None) model task None p x

                  close tolerance batched (definition norm mean batch model task p x)
                  && close tolerance one perSample)

          Checks.forAll
              "Ω ≥ 0, and the mean over outputs is the sum over outputs divided by K"
              40
              cases
              (fun (spec, n, seed, task, norm, _) ->
                  let model = build spec
                  let p = parameters model Float64 seed
                  let x = inputs spec Float64 n seed
                  let k = float (List.last spec.Widths)
                  let sum = Mas.globalImportanceOf (globalOf norm false None) model task None p x
                  let mean = Mas.globalImportanceOf (globalOf norm true None) model task None p x
                  let local = Mas.localImportance model task p x

                  values sum |> Array.forall (fun v -> v >= 0.0)
                  && values local |> Array.forall (fun v -> v >= 0.0)
                  && close tolerance mean (Params.map (fun t -> t / k) sum))

          Checks.forAll
              "local Hebbian Ω equals its direct loop, Ω_ij = mean |y_i y_j| with a bias y_j = 1"
              60
              cases
              (fun (spec, n, seed, task, _, _) ->
                  let spec = { spec with Forgetting = None }
                  let model = build spec
                  let p = parameters model Float64 seed
                  let x = inputs spec Float64 n seed
                  close tolerance (Mas.localImportance model task p x) (localLoop spec model task p x))

          Checks.forAll
              "on the output layer, global per-sample Ω on ‖F‖²₂ is exactly twice local Ω (|∂F_i²/∂W_ji| = 2|F_i||a_j|)"
              30
              cases
              (fun (spec, n, seed, task, _, _) ->
                  let spec = { spec with Forgetting = None }
                  let model = build spec
                  let p = parameters model Float64 seed
                  let x = inputs spec Float64 n seed
                  let head = if spec.Heads = 1 then "out" else $"out/head{task + 1}"
                  let g = Params.get head (Mas.globalImportance model task p x)
                  let l = Params.get head (Mas.localImportance model task p x)
                  close tolerance g (Params.map (fun t -> t * 2.0) l))

          test "local Ω with forgetting layers takes the ReLU's output as y_i, and gives W_f no importance" {
              let withLayer =
                  { spec with
                      Forgetting = Some ForgettingLayerConfig.Default }

              let model = build withLayer
              let plain = build spec
              let p = parameters model Float64 3
              let x = inputs spec Float64 9 4
              let omega = Mas.localImportance model 0 p x
              Expect.isTrue (values (Params.get "forget1" omega) |> Array.forall ((=) 0.0)) "W_f gets 0"
              // fc1's post-synaptic unit is the ReLU before the gate: the same as without the layer.
              let pPlain = Params.ofList [ "fc1", Params.get "fc1" p; "out", Params.get "out" p ]
              let omegaPlain = Mas.localImportance plain 0 pPlain x
              Expect.equal (values (Params.get "fc1" omega)) (values (Params.get "fc1" omegaPlain)) "fc1's Ω"
          }

          test "only the head of the task gets importance, on its outputs in play" {
              let spec = { spec with Heads = 3 }
              let model = build spec
              let p = parameters model Float64 5
              let x = inputs spec Float64 7 6

              for omega in [ Mas.globalImportance model 1 p x; Mas.localImportance model 1 p x ] do
                  Expect.isTrue (values (Params.get "out/head1" omega) |> Array.forall ((=) 0.0)) "head 1: 0"
                  Expect.isTrue (values (Params.get "out/head2" omega) |> Array.exists (fun v -> v > 0.0)) "head 2"
                  Expect.isTrue (values (Params.get "out/head3" omega) |> Array.forall ((=) 0.0)) "head 3: 0"

              let two = Mas.globalImportanceOf MasSettings.Default model 1 (Some 2) p x
              let w = (Params.tensor "out/head2/weight" two).ToFloat64Array()

              Expect.isTrue
                  (w |> Array.indexed |> Array.forall (fun (i, v) -> i % 3 < 2 || v = 0.0))
                  "class 3 out of play"
          }

          test "no penalty and no state before the first consolidation" {
              let term = Mas.term MasSettings.Default
              Expect.isNone (term.Loss(viewAt (consolidation 1).Params)) "no penalty"
              Expect.isEmpty term.State "no state"
              Expect.isNone (Mas.omegaOf term) "no Ω"
              Expect.equal term.Name "mas" "its name"
          }

          test "the penalty is exactly 0 at θ*" {
              let term = (Mas.term MasSettings.Default).Consolidate(consolidation 1)
              Expect.equal (lossAt term (consolidation 1).Params).Item 0.0 "0 at θ*"

              Expect.isTrue
                  (values (gradAt term (consolidation 1).Params) |> Array.forall ((=) 0.0))
                  "its gradient is 0"
          }

          Checks.forAll
              "the penalty is λ Σ Ω (θ − θ*)² with gradient 2λΩ(θ − θ*), analytically and by finite differences"
              20
              (Gen.zip3 (Gen.choose (0, 1_000_000)) (Gen.choose (1, 1000)) (Gen.elements [ false; true ]))
              (fun (seed, l, local) ->
                  let lambda = float l / 10.0

                  let s =
                      { MasSettings.Default with
                          Lambda = lambda
                          Importance = (if local then MasImportance.Local else MasImportance.Global) }

                  let c = consolidation 1
                  let term = (Mas.term s).Consolidate c
                  let omega = importanceOn s c
                  let theta = near seed
                  let value = (lossAt term theta).Item

                  let expected =
                      Array.zip3 (values omega) (values theta) (values c.Params)
                      |> Array.sumBy (fun (o, t, a) -> lambda * o * (t - a) * (t - a))

                  let analytic =
                      Params.map2 (fun o d -> o * d * (2.0 * lambda)) omega (Params.map2 (-) theta c.Params)

                  let grad = gradAt term theta

                  let fd =
                      let h = 1e-6
                      let leaves = Params.tensors theta

                      leaves
                      |> Array.mapi (fun i t ->
                          let v = t.ToFloat64Array()

                          Array.init v.Length (fun j ->
                              let moved (delta: float) =
                                  let w = Array.copy v
                                  w[j] <- w[j] + delta

                                  leaves
                                  |> Array.mapi (fun k u -> if k = i then Tensor.ofFloat64 t.Shape w else u)
                                  |> Params.withTensors theta

                              ((lossAt term (moved h)).Item - (lossAt term (moved -h)).Item) / (2.0 * h))
                          |> Tensor.ofFloat64 t.Shape)
                      |> Params.withTensors theta

                  abs (value - expected) <= 1e-12 * max 1.0 (abs expected)
                  && close 1e-12 grad analytic
                  && close 1e-6 grad fd)

          test "accumulation sums Ω over tasks, or blends it exactly, anchored at the latest θ*" {
              let o1, o2, o3 =
                  importanceOn MasSettings.Default (consolidation 1),
                  importanceOn MasSettings.Default (consolidation 2),
                  importanceOn MasSettings.Default (consolidation 3)

              let consolidateAll (term: Term) =
                  [ 1; 2; 3 ]
                  |> List.fold (fun (t: Term) k -> t.Consolidate(consolidation k)) term

              let summed = consolidateAll (Mas.term MasSettings.Default)
              let expected = Params.map2 (+) (Params.map2 (+) o1 o2) o3
              Expect.equal (values (Mas.omegaOf summed).Value) (values expected) "Ω_1 + Ω_2 + Ω_3"
              Expect.equal (values (Mas.anchorOf summed).Value) (values (consolidation 3).Params) "θ*_3"

              let alpha = 0.25

              let blended =
                  consolidateAll (
                      Mas.term
                          { MasSettings.Default with
                              Alpha = Some alpha }
                  )

              let blend (o: Params) (f: Params) =
                  Params.map2 (fun o f -> o * alpha + f * (1.0 - alpha)) o f

              Expect.equal (values (Mas.omegaOf blended).Value) (values (blend (blend o1 o2) o3)) "α-blend"
          }

          test "State → Restore round-trips exactly" {
              let s = MasSettings.Default

              let term =
                  [ 1; 2 ]
                  |> List.fold (fun (t: Term) k -> t.Consolidate(consolidation k)) (Mas.term s)

              let restored = (Mas.term s).Restore term.State
              Expect.equal (List.map fst restored.State) (List.map fst term.State) "the same names"

              Expect.equal
                  (restored.State |> List.map (fun (_, t) -> t.ToFloat64Array()))
                  (term.State |> List.map (fun (_, t) -> t.ToFloat64Array()))
                  "the same values"

              let theta = near 7
              Expect.equal (lossAt restored theta).Item (lossAt term theta).Item "the same penalty"
              Expect.isEmpty ((Mas.term s).Restore []).State "an empty state is a fresh term"

              Expect.stringContains
                  (refusal (fun () -> (Mas.term s).Restore [ "omega/x", Tensor.zeros Float64 [| 1 |] ]))
                  "does not know"
                  "unknown entries"
          }

          test "a sample cap takes a random subset of the task, from the consolidation's key" {
              let c = consolidation 1

              let capped =
                  (Mas.term
                      { MasSettings.Default with
                          Samples = Some 3 })
                      .Consolidate
                      c

              let again =
                  (Mas.term
                      { MasSettings.Default with
                          Samples = Some 3 })
                      .Consolidate
                      c

              let all = (Mas.term MasSettings.Default).Consolidate c
              Expect.equal (values (Mas.omegaOf capped).Value) (values (Mas.omegaOf again).Value) "reproducible"
              Expect.notEqual (values (Mas.omegaOf capped).Value) (values (Mas.omegaOf all).Value) "a subset"
          }

          test "bad settings and inputs are refused with one line, before any work" {
              let refuses (s: MasSettings) (words: string) =
                  Expect.stringContains (refusal (fun () -> Mas.term s)) words words

              refuses
                  { MasSettings.Default with
                      Lambda = -1.0 }
                  "λ must be a finite number ≥ 0"

              refuses
                  { MasSettings.Default with
                      Lambda = nan }
                  "λ must be a finite number ≥ 0"

              refuses
                  { MasSettings.Default with
                      Alpha = Some 1.5 }
                  "α must be in [0, 1]"

              refuses
                  { MasSettings.Default with
                      Alpha = Some -0.1 }
                  "α must be in [0, 1]"

              refuses
                  { MasSettings.Default with
                      BatchSize = Some 0 }
                  "batch size must be at least 1"

              refuses
                  { MasSettings.Default with
                      Samples = Some 0 }
                  "sample cap must be at least 1"

              refuses
                  { MasSettings.Default with
                      Importance = MasImportance.Local
                      BatchSize = Some 10 }
                  "global MAS only"

              let empty = Tensor.zeros Float64 [| 0; 4 |]
              let p = (consolidation 1).Params

              for f in
                  [ fun () -> Mas.globalImportance model 0 p empty
                    fun () -> Mas.localImportance model 0 p empty ] do
                  Expect.stringContains (refusal f) "at least one sample" "an empty data set"

              let noDense = Layer.sequential [ "relu", Layer.relu ]

              Expect.stringContains
                  (refusal (fun () -> Mas.localImportance noDense 0 Params.empty (Tensor.zeros Float64 [| 2; 4 |])))
                  "local MAS needs dense layers"
                  "no dense layer"

              for line in
                  [ refusal (fun () ->
                        Mas.term
                            { MasSettings.Default with
                                Alpha = Some 2.0 })
                    refusal (fun () -> Mas.globalImportance model 0 p empty) ] do
                  Expect.isFalse (line.Contains "\n") "one line"
          }

          test "the term kind builds MAS from its settings and refuses bad values" {
              let term =
                  TermKind.build
                      Mas.kind
                      [ "lambda", Number 2.0
                        "importance", Choice "local"
                        "accumulate", Choice "blend"
                        "alpha", Number 0.3 ]

              Expect.equal term.Name "mas" "built"

              let s =
                  Mas.settingsOf (
                      TermSetting.resolve
                          Mas.kind.Name
                          Mas.kind.Settings
                          [ "batch", Count 200; "norm", Choice "l1"; "mean_outputs", Switch true ]
                  )

              Expect.equal s.BatchSize (Some 200) "batch"
              Expect.equal s.Norm MasNorm.L1 "norm"
              Expect.isTrue s.MeanOverOutputs "mean"
              Expect.equal s.Alpha None "sum by default"

              Expect.throwsC (fun () -> TermKind.build Mas.kind [ "alpha", Number 1.5 ] |> ignore) (fun e ->
                  Expect.stringContains e.Message "alpha" "names the setting")

              Expect.throwsC (fun () -> TermKind.build Mas.kind [ "lambda", Number -1.0 ] |> ignore) (fun e ->
                  Expect.stringContains e.Message "lambda" "names the setting")
          } ]
