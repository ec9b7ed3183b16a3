/// The read-outs of neuron importance (mechanisms.md §1), the per-layer ERS denominator and the lateral
/// term on the gates (the lab's MiL options), W_f's initialisation and ρ's growth per epoch.
module Forgetting.Tests.Mechanisms.ReadoutTests

open System
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

let private sigmoid (x: float) = 1.0 / (1.0 + exp -x)

/// A batch [B, n] of post-ReLU activity, some exactly 0, whose last unit never fires; its W_f; ρ.
let private layerCase =
    gen {
        let! b, n = Gen.zip (Gen.choose (1, 7)) (Gen.choose (2, 8))
        let! seed = seeds
        let! rho = Gen.choose (1, 30) |> Gen.map (fun k -> float k / 10.0)

        let v =
            (tensor seed [| b; n |] -1.0 2.0 0.0).ToFloat64Array()
            |> Array.mapi (fun k x -> if k % n = n - 1 then 0.0 else max 0.0 x)

        let wf = (tensor (seed / 2 + 1) [| n |] -2.0 2.0 0.0).ToFloat64Array()
        return b, n, v, wf, rho
    }

/// The gate and the sums of one layer's forward pass over the batch.
let private sumsOf (staticGate: bool) (b: int) (n: int) (h: float[]) (wf: float[]) (rho: float) =
    let config =
        { ForgettingLayerConfig.Default with
            StaticGate = staticGate
            Rho = rho }

    let sigma =
        ActiveForgetting.gate config (Tensor.ofFloat64 [| n |] wf) (Tensor.ofFloat64 [| b; n |] h)

    ActiveForgetting.addSums (ActiveForgetting.emptySums n) (Tensor.ofFloat64 [| b; n |] h) sigma

let private close (tolerance: float) (a: float[]) (b: float[]) =
    Array.forall2 (fun (x: float) y -> abs (x - y) <= tolerance * max 1.0 (abs y)) a b

[<Tests>]
let tests =
    testList
        "neuron importance read-outs and the MiL options"
        [ Checks.forAll
              "each read-out of the input gate equals its direct float64 computation, to 1e-12"
              100
              layerCase
              (fun (b, n, h, wf, rho) ->
                  let s = sumsOf false b n h wf rho
                  // σ_bi = sigmoid(ρ h_bi W_f,i) (eq. 4), written out per sample.
                  let sigma r i = sigmoid (rho * h[r * n + i] * wf[i])

                  let gateMean =
                      Array.init n (fun i -> Seq.average (seq { for r in 0 .. b - 1 -> sigma r i }))

                  let weighted =
                      Array.init n (fun i ->
                          let num = Seq.sum (seq { for r in 0 .. b - 1 -> h[r * n + i] * sigma r i })
                          let den = Seq.sum (seq { for r in 0 .. b - 1 -> h[r * n + i] })
                          if den > 0.0 then num / den else 0.0)

                  let firing =
                      Array.init n (fun i ->
                          float (Seq.length (Seq.filter (fun r -> h[r * n + i] > 0.0) (seq { 0 .. b - 1 })))
                          / float b)

                  close 1e-12 (ActiveForgetting.importance "gate-mean" rho wf s) gateMean
                  && close 1e-12 (ActiveForgetting.importance "activity-weighted" rho wf s) weighted
                  && close
                      1e-15
                      (ActiveForgetting.importance "static" rho wf s)
                      (wf |> Array.map (fun w -> sigmoid (rho * w)))
                  && ActiveForgetting.firingRate s = firing)

          test "a unit that never fires: activity-weighted 0, gate-mean exactly 1/2, firing rate 0" {
              let h = [| 1.0; 0.0; 2.0; 0.0; 0.5; 0.0 |] // [3, 2], unit 1 silent
              let wf = [| 0.7; -3.0 |]
              let s = sumsOf false 3 2 h wf 2.0
              let weighted = ActiveForgetting.importance "activity-weighted" 2.0 wf s
              let gateMean = ActiveForgetting.importance "gate-mean" 2.0 wf s
              Expect.equal weighted[1] 0.0 "silent: 0"
              Expect.equal gateMean[1] 0.5 "σ(0) on every sample"
              Expect.equal (ActiveForgetting.firingRate s) [| 1.0; 0.0 |] "firing rates"
              // The firing unit: Σ h σ / Σ h with σ = sigmoid(2 · h · 0.7).
              let expected = (1.0 * sigmoid 1.4 + 2.0 * sigmoid 2.8 + 0.5 * sigmoid 0.7) / 3.5

              Expect.floatClose Accuracy.veryHigh weighted[0] expected "Σ hσ / Σ h"
          }

          Checks.forAll
              "the activity-weighted read-out lies in (0, 1) for a unit that fires, and is 0 for one that never does"
              100
              layerCase
              (fun (b, n, h, wf, rho) ->
                  let s = sumsOf false b n h wf rho
                  let omega = ActiveForgetting.importance "activity-weighted" rho wf s

                  Array.forall2
                      (fun (o: float) (f: float) -> if f > 0.0 then o > 0.0 && o < 1.0 else o = 0.0)
                      omega
                      s.Firing)

          Checks.forAll
              "for a static layer the activity-weighted read-out equals the static gate σ(ρ W_f), to 1e-12"
              100
              layerCase
              (fun (b, n, h, wf, rho) ->
                  let s = sumsOf true b n h wf rho
                  let weighted = ActiveForgetting.importance "activity-weighted" rho wf s
                  let staticGate = ActiveForgetting.importance "static" rho wf s

                  Array.init n id
                  |> Array.forall (fun i ->
                      if s.Firing[i] > 0.0 then
                          abs (weighted[i] - staticGate[i]) <= 1e-12
                      else
                          weighted[i] = 0.0)
                  // and the gate-mean of a static gate is the gate itself
                  && close 1e-12 (ActiveForgetting.importance "gate-mean" rho wf s) staticGate)

          test "the default read-out is activity-weighted for the input gate and static for the static gate" {
              let d = ForgettingLayerConfig.Default
              Expect.equal (ActiveForgetting.readoutOf d) "activity-weighted" "input gate"
              Expect.equal (ActiveForgetting.readoutOf { d with StaticGate = true }) "static" "static gate"
              Expect.equal (ActiveForgetting.readoutOf { d with Readout = "gate-mean" }) "gate-mean" "named"

              Expect.throwsT<ArgumentException>
                  (fun () -> ActiveForgetting.readoutOf { d with Readout = "mean" } |> ignore)
                  "an unknown read-out is refused"
          }

          Checks.forAll
              "ERS with a denominator per layer is Σ_l of each layer's eq. 6 ratio, to 1e-12, and equals the shared form for one layer"
              100
              (Gen.zip3 (Gen.choose (1, 5)) (Gen.choose (1, 6)) seeds)
              (fun (b, n, seed) ->
                  let a = tensor seed [| b; n |] 0.001 0.999 0.0
                  let c = tensor (seed / 3) [| b; n + 1 |] 0.001 0.999 0.0
                  let entry p v = { Path = p; Kind = Gate; Value = v }

                  let ratio (t: Tensor) =
                      let v, rows, k = t.ToFloat64Array(), t.Shape[0], t.Shape[1]

                      let m =
                          Array.init k (fun i -> Seq.average (seq { for r in 0 .. rows - 1 -> v[r * k + i] }))

                      (m |> Array.sumBy (fun x -> (1.0 - x) * x))
                      / (m |> Array.sumBy (fun x -> 1.0 - x))

                  let two =
                      (ActiveForgetting.inhibitionLossPerLayer [ entry "f1" a; entry "f2" c ]).Item

                  let one = (ActiveForgetting.inhibitionLossPerLayer [ entry "f1" a ]).Item
                  let shared = (ActiveForgetting.inhibitionLoss [ entry "f1" a ]).Item
                  let expected = ratio a + ratio c

                  abs (two - expected) <= 1e-12 * expected && abs (one - shared) <= 1e-12 * shared)

          Checks.forAll
              "the per-layer ERS and the lateral term on the gates agree with central finite differences (float64, 1e-6 + 1e-5 relative)"
              60
              (Gen.zip3 (Gen.choose (1, 4)) (Gen.choose (2, 5)) seeds)
              (fun (b, n, seed) ->
                  let a = tensor seed [| b; n |] 0.05 0.95 0.0
                  let c = tensor (seed / 3) [| b; n |] 0.05 0.95 0.0

                  let trace (xs: Tensor[]) =
                      [ { Path = "f1"
                          Kind = Gate
                          Value = xs[0] }
                        { Path = "f2"
                          Kind = Gate
                          Value = xs[1] } ]

                  agrees (fun xs -> ActiveForgetting.inhibitionLossPerLayer (trace xs)) [| a; c |]
                  && agrees (fun xs -> ActiveForgetting.lateralLossOnGates (trace xs)) [| a; c |])

          Checks.forAll
              "the lateral term on the gates is the double sum Σ_i Σ_{j≠i} σ_i σ_j (1-σ_i) σ_j per sample, averaged, to 1e-12"
              100
              (Gen.zip3 (Gen.choose (1, 5)) (Gen.choose (1, 6)) seeds)
              (fun (b, n, seed) ->
                  let s = tensor seed [| b; n |] 0.001 0.999 0.0
                  let v = s.ToFloat64Array()

                  let expected =
                      Seq.average (
                          seq {
                              for r in 0 .. b - 1 ->
                                  Seq.sum (
                                      seq {
                                          for i in 0 .. n - 1 do
                                              for j in 0 .. n - 1 do
                                                  if i <> j then
                                                      let si, sj = v[r * n + i], v[r * n + j]
                                                      yield si * sj * (1.0 - si) * sj
                                      }
                                  )
                          }
                      )

                  let got =
                      (ActiveForgetting.lateralLossOnGates [ { Path = "f"; Kind = Gate; Value = s } ]).Item

                  abs (got - expected) <= 1e-12 * max 1.0 (abs expected))

          test "W_f starts at 0 by default and from N(0, sd²) when asked, the same for the same key" {
              let key = Rng.create 7L
              let zero = ActiveForgetting.layer ForgettingLayerConfig.Default 5

              let wf (l: Layer) =
                  (Params.tensor "wf" (l.Init key Float64)).ToFloat64Array()

              Expect.equal (wf zero) (Array.zeroCreate 5) "zeros"

              let normal =
                  ActiveForgetting.layer
                      { ForgettingLayerConfig.Default with
                          WfInitSd = 0.5 }
                      5

              let expected = Rng.normal 5 key |> Array.map ((*) 0.5)
              Expect.equal (wf normal) expected "0.5 · N(0, 1) from the layer's key"
          }

          test "ρ grows geometrically per epoch: ρ_e = ρ · g^(e−1); g = 1 keeps it fixed" {
              let c =
                  { ForgettingLayerConfig.Default with
                      Rho = 3.0
                      RhoGrowth = 1.018 }

              Expect.equal (c.RhoAt 1) 3.0 "epoch 1"
              Expect.floatClose Accuracy.veryHigh (c.RhoAt 11) (3.0 * Math.Pow(1.018, 10.0)) "epoch 11"
              Expect.equal (ForgettingLayerConfig.Default.RhoAt 50) 1.0 "fixed"
          }

          test "a run's model in epoch e gates with ρ_e, and its trained model with the last epoch's ρ" {
              let r =
                  { Forgetting.Experiments.Recipe.single with
                      EpochsPerTask = 3
                      Model =
                          Forgetting.Experiments.Recipe.mlp
                              [ 3 ]
                              (Some
                                  { ForgettingLayerConfig.Default with
                                      StaticGate = true
                                      Rho = 2.0
                                      RhoGrowth = 1.5 }) }

              let wf = [| 0.3; -0.2; 0.05 |]

              let gateOf (m: Layer) =
                  let p =
                      Forgetting.Analysis.Surgery.replace
                          "forget1/wf"
                          (Tensor.ofFloat64 [| 3 |] wf)
                          (m.Init (Rng.create 1L) Float64)

                  let _, trace = m.Forward Mode.Eval p (Tensor.ones Float64 [| 2; 4 |])
                  (trace |> List.find (fun e -> e.Kind = Gate)).Value.ToFloat64Array()

              for epoch, rho in [ 1, 2.0; 2, 3.0; 3, 4.5 ] do
                  let expected = wf |> Array.map (fun w -> sigmoid (rho * w))

                  Expect.isTrue
                      (close 1e-15 (gateOf (Forgetting.Experiments.Classification.modelAt r epoch 4 2)) expected)
                      $"epoch {epoch}: σ(ρ_e W_f)"

              Expect.isTrue
                  (close
                      1e-15
                      (gateOf (Forgetting.Experiments.Classification.model r 4 2))
                      (wf |> Array.map (fun w -> sigmoid (4.5 * w))))
                  "the trained model: the last epoch's ρ"
          } ]
