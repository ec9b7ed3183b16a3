/// The invariants of the forgetting layer and its losses (source 000, eq. 2-9), as properties.
module Forgetting.Tests.Mechanisms.ActiveForgettingTests

open System
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

let private config shortcut staticGate rho =
    { ForgettingLayerConfig.Default with
        StaticGate = staticGate
        Shortcut = shortcut
        Rho = rho }

/// A batch [B, n] of non-negative (post-ReLU) activations, some exactly zero.
let private activations =
    gen {
        let! b, n = Gen.zip (Gen.choose (1, 6)) (Gen.choose (1, 8))
        let! seed = seeds

        let v =
            (tensor seed [| b; n |] -1.0 2.0 0.0).ToFloat64Array() |> Array.map (max 0.0)

        return Tensor.ofFloat64 [| b; n |] v
    }

/// Inhibitory weights for n units.
let private weightsFor (n: int) (seed: int) (scale: float) = tensor seed [| n |] -scale scale 0.0

let private forward (c: ForgettingLayerConfig) (wf: Tensor) (h: Tensor) =
    let layer = ActiveForgetting.layer c h.Shape[1]
    layer.Forward Mode.Eval (Params.ofTensors [ "wf", wf ]) h

let private entry kind value =
    { Path = "f"
      Kind = kind
      Value = value }

/// The trace of one forgetting layer with inputs h and gates σ.
let private traceOf (h: Tensor) (sigma: Tensor) = [ entry GateInput h; entry Gate sigma ]

/// Gates [B, n] with values in (0, 1).
let private gates =
    gen {
        let! b, n = Gen.zip (Gen.choose (1, 6)) (Gen.choose (1, 8))
        let! seed = seeds
        return tensor seed [| b; n |] 0.001 0.999 0.0
    }

/// The double sum of eq. 8 (or eq. 7 with σ = 1/2 weights dropped) written out, per sample, averaged.
let private lateralDoubleSum (h: float[]) (s: float[]) (b: int) (n: int) (weighted: bool) =
    Seq.average (
        seq {
            for r in 0 .. b - 1 ->
                Seq.sum (
                    seq {
                        for i in 0 .. n - 1 do
                            for j in 0 .. n - 1 do
                                if i <> j then
                                    let hi, hj = h[r * n + i], h[r * n + j]

                                    yield
                                        if weighted then
                                            hi * hj * (1.0 - s[r * n + i]) * s[r * n + j]
                                        else
                                            hi * hj
                    }
                )
        }
    )

/// Neuron importances in [0, 1].
let private importances =
    Gen.choose (0, 1000) |> Gen.map (fun i -> float i / 1000.0)

[<Tests>]
let tests =
    testList
        "the forgetting layer and its losses"
        [ Checks.forAll
              "gates lie strictly inside (0, 1) while |ρ h w| stays below 30"
              100
              (Gen.zip3 activations seeds (Gen.elements [ false; true ]))
              (fun (h, seed, staticGate) ->
                  let c = config true staticGate 1.5
                  let wf = weightsFor h.Shape[1] seed 5.0
                  let _, trace = forward c wf h
                  let sigma = (trace |> List.find (fun e -> e.Kind = Gate)).Value.ToFloat64Array()
                  sigma |> Array.forall (fun s -> s > 0.0 && s < 1.0))

          Checks.forAll
              "zero inhibitory weights give gates of exactly one half"
              100
              (Gen.zip activations (Gen.elements [ false; true ]))
              (fun (h, staticGate) ->
                  let _, trace =
                      forward (config true staticGate 2.0) (Tensor.zeros Float64 [| h.Shape[1] |]) h

                  (trace |> List.find (fun e -> e.Kind = Gate)).Value.ToFloat64Array()
                  |> Array.forall ((=) 0.5))

          Checks.forAll
              "with the shortcut the output is h (1 + σ), never below h for h ≥ 0; without it h σ"
              100
              (Gen.zip activations seeds)
              (fun (h, seed) ->
                  let wf = weightsFor h.Shape[1] seed 3.0
                  let withShortcut, trace = forward (config true false 1.0) wf h
                  let without, _ = forward (config false false 1.0) wf h
                  let hv = h.ToFloat64Array()
                  let s = (trace |> List.find (fun e -> e.Kind = Gate)).Value.ToFloat64Array()
                  let out, plain = withShortcut.ToFloat64Array(), without.ToFloat64Array()

                  Array.forall
                      id
                      (Array.init hv.Length (fun i ->
                          abs (out[i] - hv[i] * (1.0 + s[i])) < 1e-12
                          && out[i] >= hv[i]
                          && abs (plain[i] - hv[i] * s[i]) < 1e-12)))

          test "the layer gates each channel of a conv map with one unit" {
              let h = tensor 3 [| 2; 3; 4; 4 |] 0.0 1.0 0.0
              let out, trace = forward (config false false 1.0) (weightsFor 3 5 2.0) h
              let sigma = (trace |> List.find (fun e -> e.Kind = Gate)).Value
              Expect.equal sigma.Shape [| 2; 3 |] "one gate per sample and channel"
              let expected = h * Tensor.reshape [| 2; 3; 1; 1 |] sigma
              Expect.equal (out.ToFloat64Array()) (expected.ToFloat64Array()) "each channel times its gate"
          }

          Checks.forAll "inhibition loss lies in [0, 1)" 100 gates (fun s ->
              let l = (ActiveForgetting.inhibitionLoss (traceOf s s)).Item
              l >= 0.0 && l < 1.0)

          Checks.forAll
              "inhibition loss is exactly eq. 6 over several layers, against a direct float64 sum, to 1e-12"
              100
              (Gen.zip gates gates)
              (fun (a, b) ->
                  let trace =
                      [ { Path = "f1"; Kind = Gate; Value = a }
                        { Path = "f2"; Kind = Gate; Value = b } ]

                  // σ̄ per unit of each layer (the gate averaged over the batch), then one shared ratio.
                  let means (t: Tensor) =
                      let v, rows, n = t.ToFloat64Array(), t.Shape[0], t.Shape[1]
                      Array.init n (fun i -> Seq.average (seq { for r in 0 .. rows - 1 -> v[r * n + i] }))

                  let units = Array.append (means a) (means b)
                  let num = units |> Array.sumBy (fun m -> (1.0 - m) * m)
                  let den = units |> Array.sumBy (fun m -> 1.0 - m)
                  let expected = num / den
                  let got = (ActiveForgetting.inhibitionLoss trace).Item
                  abs (got - expected) <= 1e-12 * abs expected)

          test "inhibition loss is 0, not NaN, when every gate is fully open" {
              let openGates = Tensor.ones Float64 [| 4; 5 |]

              Expect.equal
                  (ActiveForgetting.inhibitionLoss (traceOf openGates openGates)).Item
                  0.0
                  "the loss of open gates"

              let g =
                  Tensor.grad (fun s -> ActiveForgetting.inhibitionLoss (traceOf s s)) openGates

              Expect.isTrue (g.ToFloat64Array() |> Array.forall ((=) 0.0)) "a zero gradient, not NaN"
          }

          // ERS is the mean of the unit states σ̄ weighted by 1 − σ̄: it is low when the units that are not
          // fully open are nearly shut. (All units nearly open gives L near 1, not 0: the loss drives gates
          // shut, and only fully open ones escape its weight.) So: at least half the units within 0.1 of 0,
          // the others within 0.1 of 0 or 1, against every gate at 1/2.
          Checks.forAll
              "polarised gates have a lower inhibition loss than half-open ones"
              100
              (Gen.zip gates seeds)
              (fun (s, seed) ->
                  let n = s.Shape[1]

                  let sides =
                      Rng.uniform n (Rng.create (int64 seed))
                      |> Array.mapi (fun i u -> if i < (n + 1) / 2 || u < 0.5 then 0.0 else 1.0)

                  let isOpen = Tensor.ofFloat64 [| 1; n |] sides
                  let polarised = Tensor.where isOpen (0.9 + s * 0.1) (s * 0.1)
                  let half = Tensor.fullLike s 0.5
                  let l = (ActiveForgetting.inhibitionLoss (traceOf polarised polarised)).Item
                  l < (ActiveForgetting.inhibitionLoss (traceOf half half)).Item && l <= 0.18)

          Checks.forAll
              "lateral inhibition in O(n) equals the double sum of eq. 7 and eq. 8"
              100
              (Gen.zip activations seeds)
              (fun (h, seed) ->
                  let b, n = h.Shape[0], h.Shape[1]
                  let s = tensor seed [| b; n |] 0.01 0.99 0.0
                  let hv, sv = h.ToFloat64Array(), s.ToFloat64Array()
                  let fast = (ActiveForgetting.lateralLoss (traceOf h s)).Item
                  let plain = (ActiveForgetting.lateralLossPlain (traceOf h s)).Item

                  abs (fast - lateralDoubleSum hv sv b n true) < 1e-9
                  && abs (plain - lateralDoubleSum hv sv b n false) < 1e-9)

          Checks.forAll
              "lateral inhibition is non-negative, and zero when at most one unit is active"
              100
              (Gen.zip3 activations seeds (Gen.choose (0, 100)))
              (fun (h, seed, pick) ->
                  let b, n = h.Shape[0], h.Shape[1]
                  let s = tensor seed [| b; n |] 0.01 0.99 0.0
                  let only = pick % n

                  let single =
                      Tensor.ofFloat64
                          [| b; n |]
                          (h.ToFloat64Array() |> Array.mapi (fun k v -> if k % n = only then v else 0.0))

                  (ActiveForgetting.lateralLoss (traceOf h s)).Item >= 0.0
                  && (ActiveForgetting.lateralLoss (traceOf single s)).Item = 0.0
                  && (ActiveForgetting.lateralLossPlain (traceOf single s)).Item = 0.0)

          Checks.forAll
              "both losses are invariant to permuting the units"
              100
              (Gen.zip3 activations seeds seeds)
              (fun (h, seed, permSeed) ->
                  let b, n = h.Shape[0], h.Shape[1]
                  let s = tensor seed [| b; n |] 0.01 0.99 0.0
                  let perm = Rng.permutation n (Rng.create (int64 permSeed))

                  let permute (t: Tensor) =
                      t |> Tensor.transpose |> Tensor.gather perm |> Tensor.transpose

                  let close (a: Tensor) (c: Tensor) =
                      abs (a.Item - c.Item) < 1e-12 * (1.0 + abs a.Item)

                  close
                      (ActiveForgetting.lateralLoss (traceOf h s))
                      (ActiveForgetting.lateralLoss (traceOf (permute h) (permute s)))
                  && close
                      (ActiveForgetting.inhibitionLoss (traceOf h s))
                      (ActiveForgetting.inhibitionLoss (traceOf (permute h) (permute s))))

          Checks.forAll
              "gradients of the gate, both losses and their sum match finite differences"
              100
              (Gen.zip3 activations seeds (Gen.elements [ false; true ]))
              (fun (h, seed, shortcut) ->
                  let n = h.Shape[1]
                  let c = config shortcut false 1.3
                  let layer = ActiveForgetting.layer c n

                  agrees
                      (fun xs ->
                          let out, trace = layer.Forward Mode.Eval (Params.ofTensors [ "wf", xs[0] ]) xs[1]

                          Tensor.sum (out * 0.3)
                          + ActiveForgetting.inhibitionLoss trace * 0.7
                          + ActiveForgetting.lateralLoss trace * 0.2
                          + ActiveForgetting.lateralLossPlain trace * 0.1)
                      [| weightsFor n seed 1.0; h + 0.05 |])

          Checks.forAll
              "the fused gate, shortcut and lateral-inhibition kernels equal the composed ops"
              100
              (Gen.zip3 activations seeds (Gen.elements [ 0.5; 1.0; 3.0 ]))
              (fun (h, seed, rho) ->
                  let n = h.Shape[1]
                  let wf = weightsFor n seed 2.0
                  let sigma = Fused.gate rho wf h
                  let composed = Tensor.sigmoid (h * wf * rho)

                  let close (a: Tensor) (b: Tensor) =
                      Array.forall2
                          (fun (x: float) y -> abs (x - y) <= 1e-12 * (1.0 + abs y))
                          (a.ToFloat64Array())
                          (b.ToFloat64Array())

                  let lateralComposed =
                      ActiveForgetting.pairSum (h * (1.0 - sigma)) (h * sigma) |> Tensor.mean

                  close sigma composed
                  && close (Fused.shortcut h sigma) (h + h * sigma)
                  && close (Fused.lateralInhibition h sigma) lateralComposed
                  // Their gradients too, against the composed forms' reverse mode.
                  && Array.forall2
                      close
                      (Tensor.grads
                          (fun xs ->
                              Fused.lateralInhibition xs[0] xs[1]
                              + Tensor.sum (Fused.shortcut xs[0] xs[1])
                              + Tensor.sum (Fused.gate rho wf xs[0]))
                          [| h; sigma |])
                      (Tensor.grads
                          (fun xs ->
                              (ActiveForgetting.pairSum (xs[0] * (1.0 - xs[1])) (xs[0] * xs[1]) |> Tensor.mean)
                              + Tensor.sum (xs[0] + xs[0] * xs[1])
                              + Tensor.sum (Tensor.sigmoid (xs[0] * wf * rho)))
                          [| h; sigma |]))

          Checks.forAll
              "parameter importance lies in [0, 1], is symmetric and monotone in each argument"
              100
              (Gen.zip3 importances importances importances)
              (fun (a, b, c) ->
                  let theta x y =
                      (ActiveForgetting.parameterImportance [| x |] [| y |])[0, 0]

                  let v = theta a b

                  v >= 0.0
                  && v <= 1.0
                  && theta a b = theta b a
                  && (theta (max a c) b >= theta (min a c) b)
                  && (theta a (max b c) >= theta a (min b c)))

          test "parameter importance is laid out as the dense weight [inputs, outputs]" {
              let theta = ActiveForgetting.parameterImportance [| 0.0; 1.0; 0.5 |] [| 0.0; 0.5 |]
              Expect.equal (Array2D.length1 theta) 3 "one row per input"
              Expect.equal theta[0, 0] 0.0 "theta[0, 0]"
              Expect.equal theta[1, 0] 1.0 "theta[1, 0]"
              Expect.equal theta[2, 1] 0.75 "theta[2, 1]"
          } ]
