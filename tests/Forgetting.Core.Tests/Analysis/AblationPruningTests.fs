/// Ablation of whole units or of the gated branch only, and eq. 2 pruning with a stated boundary Ω,
/// |w| tie-breaks and per-layer or global scope (issue 14; mechanisms.md §1).
module Forgetting.Tests.Analysis.AblationPruningTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Analysis
open Forgetting.Experiments
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

/// An MLP 4-6-5-3 with forgetting layers (input gate, or static), with or without the shortcut.
let private modelOf (staticGate: bool) (shortcut: bool) =
    let v =
        Variant.ofLayer
            { ForgettingLayerConfig.Default with
                StaticGate = staticGate
                Rho = 2.0 }
            (Some shortcut)
            []
            "lateral_inhibition"

    Variant.mlp v [ 4; 6; 5; 3 ]

/// Its parameters from a seed, W_f drawn away from 0 so that every gate matters.
let private netFor (m: Layer) (seed: int) =
    let p = m.Init (Rng.create (int64 seed)) Float64

    [ 1; 2 ]
    |> List.fold
        (fun q k -> Surgery.replace $"forget{k}/wf" (tensor (seed + k) [| (if k = 1 then 6 else 5) |] -1.5 1.5 0.0) q)
        p

let private inputs = tensor 99 [| 7; 4 |] 0.0 1.0 0.0

let private logits (m: Layer) (p: Params) =
    (Layer.apply m Mode.Eval p inputs).ToFloat64Array()

let private traceOf (m: Layer) (p: Params) = snd (m.Forward Mode.Eval p inputs)

let private column (t: Tensor) (i: int) =
    let v, n = t.ToFloat64Array(), t.Shape[1]
    Array.init t.Shape[0] (fun r -> v[r * n + i])

let private unitCase =
    Gen.zip3 seeds (Gen.choose (1, 2)) (Gen.choose (0, 4))
    |> Gen.zip (Gen.elements [ false; true ])

[<Tests>]
let tests =
    testList
        "ablation of units and branches, eq. 2 pruning"
        [ Checks.forAll
              "whole-unit ablation with the shortcut removes the unit's whole output: neither its W_f nor its incoming weights reach the logits"
              100
              unitCase
              (fun (staticGate, (seed, layer, unit)) ->
                  let m = modelOf staticGate true
                  let p = Ablation.remove [ { Layer = layer; Index = unit } ] (netFor m seed)
                  let wfPath = $"forget{layer}/wf"
                  let wf = (Params.tensor wfPath p).ToFloat64Array()
                  wf[unit] <- wf[unit] + 3.0
                  let movedGate = Surgery.replace wfPath (Tensor.ofFloat64 [| wf.Length |] wf) p
                  let w = (Params.tensor (Surgery.weightPath layer) p).ToFloat64Array()
                  let cols = (Params.tensor (Surgery.weightPath layer) p).Shape[1]

                  for r in 0 .. w.Length / cols - 1 do
                      w[r * cols + unit] <- w[r * cols + unit] + 1.0

                  let movedIn =
                      Surgery.replace (Surgery.weightPath layer) (Tensor.ofFloat64 [| w.Length / cols; cols |] w) p

                  logits m movedGate = logits m p && logits m movedIn = logits m p)

          Checks.forAll
              "gated-branch ablation leaves h' = h with the shortcut and h' = 0 without it, exactly, and the other units unchanged (to 1e-12)"
              100
              (Gen.zip unitCase (Gen.elements [ false; true ]))
              (fun ((staticGate, (seed, layer, unit)), shortcut) ->
                  let m = modelOf staticGate shortcut
                  let p = netFor m seed
                  let q = Ablation.removeGatedBranch [ { Layer = layer; Index = unit } ] p

                  let entry (tr: TraceEntry list) kind =
                      (tr |> List.find (fun e -> e.Path = $"forget{layer}" && e.Kind = kind)).Value

                  let before, after = traceOf m p, traceOf m q
                  let h = column (entry after GateInput) unit
                  let out = column (entry after Activation) unit
                  let expected = if shortcut then h else Array.zeroCreate h.Length
                  let n = (entry after Activation).Shape[1]

                  Expect.equal out expected $"unit {unit} of layer {layer}: h' (h = {h})"

                  for i in 0 .. n - 1 do
                      if i <> unit then
                          let a, b = column (entry after Activation) i, column (entry before Activation) i

                          // The vectorised gate kernel may round the other units' last bit differently
                          // when one input of the vector changes: equal to 1e-12, not bit for bit.
                          if Array.exists2 (fun (x: float) y -> abs (x - y) > 1e-12 * max 1.0 (abs y)) a b then
                              failwith
                                  $"unit {i} of layer {layer} (ablated {unit}, static {staticGate}, shortcut {shortcut}): %A{a} against %A{b}"

                  true)

          test "gated-branch ablation of a layer without a forgetting layer is refused" {
              let m = Variant.mlp (Variant.byName "sgd") [ 4; 6; 3 ]
              let p = m.Init (Rng.create 1L) Float64

              Expect.throwsT<System.ArgumentException>
                  (fun () -> Ablation.removeGatedBranch [ { Layer = 1; Index = 0 } ] p |> ignore)
                  "no gated branch"
          }

          Checks.forAll
              "eq. 2 with every θ tied (Ω = 0 everywhere, or the boundary Ω = 1) prunes exactly as magnitude: ties break by |w|, deterministically"
              60
              (Gen.zip seeds (Gen.elements [ 0.1; 0.25; 0.5; 0.8 ]))
              (fun (seed, f) ->
                  let m = modelOf false true
                  let p = netFor m seed
                  let zeros = [ 1, Array.zeroCreate 6; 2, Array.zeroCreate 5 ]
                  let byMagnitude = Pruning.prune Magnitude f p
                  let tied0 = Pruning.prune (ImportanceWith(zeros, 0.0)) f p

                  let tied1 =
                      Pruning.prune (ImportanceWith([ 1, Array.create 6 0.3; 2, Array.create 5 0.7 ], 1.0)) f p

                  let flat (q: Params) =
                      Params.flatten q |> List.map (fun (_, t) -> t.ToFloat64Array())

                  flat tied0 = flat byMagnitude
                  && flat tied1 = flat byMagnitude
                  && flat tied0 = flat (Pruning.prune (ImportanceWith(zeros, 0.0)) f p))

          test "ties in both θ and |w| are broken by index, lowest kept" {
              let order = Pruning.ranked [| 0.5; 0.5; 0.9; 0.5 |] [| 1.0; 2.0; 0.0; 2.0 |]
              Expect.equal order [| 2; 1; 3; 0 |] "θ first, then |w|, then index"
          }

          test "the stated boundary Ω enters eq. 2 for the pixels and the logits" {
              let m = modelOf false true
              let p = netFor m 5
              let importance = [ 1, Array.create 6 0.5; 2, Array.create 5 0.5 ]
              let s0 = Pruning.scores (ImportanceWith(importance, 0.0)) 1 p
              let s1 = Pruning.scores (ImportanceWith(importance, 0.6)) 1 p
              let sOut = Pruning.scores (ImportanceWith(importance, 0.6)) 3 p
              Expect.isTrue (s0 |> Array.forall ((=) 0.5)) "θ = 1 − (1 − 0.5)(1 − 0)"
              Expect.isTrue (s1 |> Array.forall (fun x -> abs (x - 0.8) < 1e-15)) "θ = 1 − 0.5 · 0.4"
              Expect.isTrue (sOut |> Array.forall (fun x -> abs (x - 0.8) < 1e-15)) "the logits' side too"
              Expect.equal (Pruning.scores (Importance importance) 1 p) s0 "Importance is boundary Ω = 0"
          }

          Checks.forAll
              "per-layer pruning keeps round(f · n) weights of every layer; global keeps round(f · N) overall, the largest scores across layers"
              60
              (Gen.zip seeds (Gen.elements [ 0.1; 0.3; 0.5; 0.9 ]))
              (fun (seed, f) ->
                  let m = modelOf false true
                  let p = netFor m seed
                  let sizes = [ 1, 24; 2, 30; 3, 15 ]

                  let kept (q: Params) layer =
                      (Params.tensor (Surgery.weightPath layer) q).ToFloat64Array()
                      |> Array.filter ((<>) 0.0)
                      |> Array.length

                  let perLayer = Pruning.pruneWith PerLayer Magnitude f p
                  let globalP = Pruning.pruneWith Global Magnitude f p
                  let total = sizes |> List.sumBy snd

                  let all =
                      [ for l, _ in sizes -> (Params.tensor (Surgery.weightPath l) p).ToFloat64Array() |> Array.map abs ]
                      |> Array.concat
                      |> Array.sortDescending

                  let keep = int (round (f * float total))

                  let smallestKept =
                      [ for l, _ in sizes do
                            for v in (Params.tensor (Surgery.weightPath l) globalP).ToFloat64Array() do
                                if v <> 0.0 then
                                    yield abs v ]
                      |> List.min

                  sizes |> List.forall (fun (l, n) -> kept perLayer l = int (round (f * float n)))
                  && (sizes |> List.sumBy (fun (l, _) -> kept globalP l)) = keep
                  && smallestKept = all[keep - 1]) ]
