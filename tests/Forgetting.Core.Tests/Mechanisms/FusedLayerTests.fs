/// The forgetting layer's fused op (Fused.layer: one forward and one backward kernel for the gate,
/// the output, the batch means of ERS and the sums of IRS) against the composed ops, in float64.
module Forgetting.Tests.Mechanisms.FusedLayerTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

/// A batch [B, n] of non-negative (post-ReLU) activations, some exactly zero.
let private activations =
    gen {
        let! b, n = Gen.zip (Gen.choose (1, 6)) (Gen.choose (1, 9))
        let! seed = seeds

        let v =
            (tensor seed [| b; n |] -1.0 2.0 0.0).ToFloat64Array() |> Array.map (max 0.0)

        return Tensor.ofFloat64 [| b; n |] v
    }

/// Inhibitory weights for n units.
let private weightsFor (n: int) (seed: int) = tensor seed [| n |] -2.0 2.0 0.0

let private config shortcut rho =
    { ForgettingLayerConfig.Default with
        StaticGate = false
        Shortcut = shortcut
        Rho = rho }

/// The layer's output and both losses of one forward pass, weighted into one scalar, with every read
/// of σ the trace offers: `mode` picks the fused op (training) or the composed ops (evaluation).
let private objective (mode: Mode) (c: ForgettingLayerConfig) (xs: Tensor[]) =
    let layer = ActiveForgetting.layer c xs[1].Shape[1]
    let out, trace = layer.Forward mode (Params.ofTensors [ "wf", xs[0] ]) xs[1]
    let sigma = (Trace.ofKind Gate trace).Head.Value

    Tensor.sum (out * out) * 0.3
    + ActiveForgetting.inhibitionLoss trace * 0.7
    + ActiveForgetting.lateralLoss trace * 0.2
    // σ read directly as well: its gradient joins the others in the one backward kernel.
    + Tensor.sum (sigma * sigma) * 0.1

let private close (a: float[]) (b: float[]) =
    Array.forall2 (fun (x: float) y -> abs (x - y) <= 1e-12 * (1.0 + abs y)) a b

let private train = Mode.Train(Rng.create 5L)

[<Tests>]
let tests =
    testList
        "the fused forgetting layer"
        [ Checks.forAll
              "its output, gate, batch means and lateral term equal the composed ops in float64 (1e-12)"
              100
              (Gen.zip3 activations seeds (Gen.elements [ (false, 0.5); (true, 1.0); (true, 3.0); (false, 2.0) ]))
              (fun (h, seed, (shortcut, rho)) ->
                  let wf = weightsFor h.Shape[1] seed
                  let out, sigma = Fused.layer rho shortcut wf h
                  let composedSigma = Tensor.sigmoid (h * wf * rho)

                  let composedOut =
                      if shortcut then
                          h + h * composedSigma
                      else
                          h * composedSigma

                  let lateral =
                      ActiveForgetting.pairSum (h * (1.0 - composedSigma)) (h * composedSigma)
                      |> Tensor.mean

                  close (out.ToFloat64Array()) (composedOut.ToFloat64Array())
                  && close (sigma.ToFloat64Array()) (composedSigma.ToFloat64Array())
                  && close
                      ((Fused.batchMean sigma).ToFloat64Array())
                      ((Tensor.meanAxis 0 false composedSigma).ToFloat64Array())
                  && close [| (Fused.lateralInhibition h sigma).Item |] [| lateral.Item |])

          Checks.forAll
              "its gradients equal the composed ops' reverse mode in float64 (1e-12)"
              100
              (Gen.zip3 activations seeds (Gen.elements [ (false, 0.5); (true, 1.0); (true, 3.0); (false, 2.0) ]))
              (fun (h, seed, (shortcut, rho)) ->
                  let c = config shortcut rho
                  let xs = [| weightsFor h.Shape[1] seed; h |]
                  let fused = Tensor.grads (objective train c) xs
                  let composed = Tensor.grads (objective Mode.Eval c) xs

                  Array.forall2
                      (fun (a: Tensor) (b: Tensor) -> close (a.ToFloat64Array()) (b.ToFloat64Array()))
                      fused
                      composed)

          Checks.forAll
              "its gradients match central finite differences in float64 (GradCheck: 1e-6 absolute + 1e-5 relative)"
              100
              (Gen.zip3 activations seeds (Gen.elements [ (false, 1.3); (true, 1.3); (true, 0.5) ]))
              (fun (h, seed, (shortcut, rho)) ->
                  // h moved off the ReLU's zeros: the layer itself is smooth there, but the check is
                  // of the layer, not of a kink.
                  agrees (objective train (config shortcut rho)) [| weightsFor h.Shape[1] seed; h + 0.05 |])

          test "in float32, over rows wider than a SIMD vector, it agrees with the float64 composed ops (1e-5)" {
              // 37 columns: whole float32 vectors and a scalar tail in every row.
              let h = tensor 8 [| 5; 37 |] 0.0 2.0 0.0
              let wf = weightsFor 37 9
              let c = config true 1.5
              let xs = [| wf; h |]
              let xs32 = xs |> Array.map (Tensor.cast Float32)
              let value32 = (objective train c xs32).Item
              let value = (objective Mode.Eval c xs).Item
              Expect.floatClose Accuracy.low value32 value "the fused float32 value"

              for g32, g in Array.zip (Tensor.grads (objective train c) xs32) (Tensor.grads (objective Mode.Eval c) xs) do
                  let a, b = g32.ToFloat64Array(), g.ToFloat64Array()

                  for i in 0 .. a.Length - 1 do
                      Expect.isLessThanOrEqual (abs (a[i] - b[i])) (1e-5 * (1.0 + abs b[i])) "a fused float32 gradient"
          }

          test "a loss that reads only the output, or only the batch means, still reaches h and wf" {
              let h = tensor 3 [| 4; 5 |] 0.0 2.0 0.0
              let wf = weightsFor 5 4

              for f in
                  [ (fun (xs: Tensor[]) -> Tensor.sum (fst (Fused.layer 1.5 true xs[0] xs[1])))
                    (fun (xs: Tensor[]) -> Tensor.sum (Fused.batchMean (snd (Fused.layer 1.5 true xs[0] xs[1]))))
                    (fun (xs: Tensor[]) -> Fused.lateralInhibition xs[1] (snd (Fused.layer 1.5 false xs[0] xs[1]))) ] do
                  Expect.isTrue (agrees f [| wf; h |]) "fused gradients agree with finite differences"
          } ]
