/// Ablation, pruning and perturbation on small generated nets where the answer is known.
module Forgetting.Tests.Analysis.SurgeryTests

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Analysis
open Forgetting.Experiments
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

let private model = Variant.mlp (Variant.byName "lateral_inhibition") [ 4; 6; 5; 3 ]

let private netFor (seed: int) =
    model.Init (Rng.create (int64 seed)) Float64

let private inputs = tensor 99 [| 7; 4 |] 0.0 1.0 0.0

let private logits (p: Params) =
    (Layer.apply model Mode.Eval p inputs).ToFloat64Array()

let private nonZero (layer: int) (p: Params) =
    (Params.tensor (Surgery.weightPath layer) p).ToFloat64Array()
    |> Array.filter ((<>) 0.0)
    |> Array.length

[<Tests>]
let tests =
    testList
        "ablation, pruning and perturbation"
        [ Checks.forAll
              "removing a unit whose outgoing weights are already zero changes nothing"
              100
              (Gen.zip seeds (Gen.zip (Gen.choose (1, 2)) (Gen.choose (0, 4))))
              (fun (seed, (layer, unit)) ->
                  let p = netFor seed
                  let silenced = Ablation.remove [ { Layer = layer; Index = unit } ] p
                  logits (Ablation.remove [ { Layer = layer; Index = unit } ] silenced) = logits silenced)

          test "removing every unit of a hidden layer makes the output independent of the input" {
              let p = netFor 3
              let all = [ for i in 0..4 -> { Layer = 2; Index = i } ]
              let out = logits (Ablation.remove all p)
              // Every row (input) gives the same logits: only the last layer's bias remains.
              for r in 1..6 do
                  Expect.equal out[r * 3 .. r * 3 + 2] out[0..2] $"the logits of row {r}"
          }

          test "ablation orders follow importance; a shuffled order is a permutation" {
              let importance = [ 1, [| 0.9; 0.1; 0.5 |]; 2, [| 0.3 |] ]
              let asc = Ablation.order Ascending importance

              Expect.equal
                  asc
                  [| { Layer = 1; Index = 1 }
                     { Layer = 2; Index = 0 }
                     { Layer = 1; Index = 2 }
                     { Layer = 1; Index = 0 } |]
                  "the ascending order"

              Expect.equal (Ablation.order Descending importance) (Array.rev asc) "the descending order"

              Expect.equal
                  (Array.sort (Ablation.order (Shuffled(Rng.create 4L)) importance))
                  (Array.sort asc)
                  "the shuffled order is a permutation"
          }

          Checks.forAll
              "pruning keeps the given fraction of every layer; keeping all is the identity"
              100
              (Gen.zip seeds (Gen.choose (0, 10)))
              (fun (seed, tenths) ->
                  let p = netFor seed
                  let f = float tenths / 10.0
                  let pruned = Pruning.prune Magnitude f p

                  logits (Pruning.prune Magnitude 1.0 p) = logits p
                  && [ 1; 2; 3 ]
                     |> List.forall (fun layer ->
                         let n = (Params.tensor (Surgery.weightPath layer) p).Numel
                         nonZero layer pruned = int (round (f * float n))))

          test "magnitude pruning keeps the largest weights; importance pruning keeps weights of important units" {
              let p = netFor 5

              let kept =
                  (Params.tensor (Surgery.weightPath 1) (Pruning.prune Magnitude 0.25 p)).ToFloat64Array()

              let original = (Params.tensor (Surgery.weightPath 1) p).ToFloat64Array()
              let threshold = kept |> Array.filter ((<>) 0.0) |> Array.map abs |> Array.min

              for o, k in Array.zip original kept do
                  if k = 0.0 then
                      Expect.isTrue (abs o <= threshold) $"a pruned weight {o} is below the smallest kept, {threshold}"
              // Hidden layer 1: units 0 and 1 fully important, the rest not: fc1 keeps exactly their columns.
              let importance = [ 1, [| 1.0; 1.0; 0.0; 0.0; 0.0; 0.0 |]; 2, Array.create 5 0.5 ]

              let fc1 =
                  (Params.tensor (Surgery.weightPath 1) (Pruning.prune (Importance importance) (2.0 / 6.0) p))
                      .ToFloat64Array()

              for k, v in Array.indexed fc1 do
                  Expect.equal (v <> 0.0) (k % 6 < 2) $"weight {k} of fc1 is kept"
          }

          test "perturbation touches only the chosen units, is reproducible, and is the identity at fraction 0" {
              let p = netFor 6
              let key = Rng.create 11L

              Expect.equal (logits (Perturbation.perturb key 2 0.0 1.0 p)) (logits p) "perturbing a fraction 0"

              let q = Perturbation.perturb key 2 0.4 1.0 p

              Expect.equal
                  (logits (Perturbation.perturb key 2 0.4 1.0 p))
                  (logits q)
                  "perturbing again with the same key"

              let before, after =
                  (Params.tensor "fc2/weight" p).ToFloat64Array(), (Params.tensor "fc2/weight" q).ToFloat64Array()

              let changedUnits =
                  [ for k in 0 .. before.Length - 1 do
                        if before[k] <> after[k] then
                            k % 5 ]
                  |> List.distinct

              Expect.equal changedUnits.Length 2 "units changed"

              Expect.equal
                  ((Params.tensor "fc1/weight" q).ToFloat64Array())
                  ((Params.tensor "fc1/weight" p).ToFloat64Array())
                  "the other layer's weights"
          }

          test "the Fisher diagonal is the mean of squared per-sample gradients" {
              let p = netFor 7
              let labels = [| 0; 1; 2; 1; 0; 2; 1 |]

              let loss (q: Params) i =
                  Functional.crossEntropy
                      (Layer.apply model Mode.Eval q (Tensor.index i inputs |> Tensor.reshape [| 1; 4 |]))
                      [| labels[i] |]

              let fisher = Pruning.fisherDiagonal loss 2 p
              let g0, g1 = Params.grad (fun q -> loss q 0) p, Params.grad (fun q -> loss q 1) p

              let expected =
                  Params.map2 (fun a b -> (Tensor.square a + Tensor.square b) / 2.0) g0 g1

              Expect.equal
                  ((Params.tensor "fc2/weight" fisher).ToFloat64Array())
                  ((Params.tensor "fc2/weight" expected).ToFloat64Array())
                  "the Fisher diagonal of fc2/weight"
          }

          test "evaluation reads out each unit's mean and standard deviation of activation" {
              let relu = Layer.sequential [ "relu1", Layer.relu ]
              let x = tensor 3 [| 50; 4 |] -1.0 1.0 0.0

              let data: Forgetting.Training.Examples =
                  { Inputs = x
                    Labels = Array.zeroCreate 50
                    Classes = 4 }

              let e =
                  Forgetting.Training.Trainer.evaluate relu Objective.taskOnly Params.empty 16 data

              let h = x.ToFloat64Array() |> Array.map (max 0.0)
              let column j = Array.init 50 (fun i -> h[i * 4 + j])
              let mean j = Array.average (column j)

              let sd j =
                  sqrt (Array.averageBy (fun v -> (v - mean j) ** 2.0) (column j))

              let means, sds = snd e.Readouts.Activations.Head, snd e.Readouts.ActivationSds.Head

              for j in 0..3 do
                  Expectations.equalRounded 12 means[j] (mean j) $"the mean of unit {j}"
                  Expectations.equalRounded 12 sds[j] (sd j) $"the sd of unit {j}"
          } ]
