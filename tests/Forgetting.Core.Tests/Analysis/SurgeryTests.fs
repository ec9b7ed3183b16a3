/// Ablation, pruning and perturbation on small generated nets where the answer is known.
module Forgetting.Tests.Analysis.SurgeryTests

open FsCheck.FSharp
open Xunit
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Analysis
open Forgetting.Experiments
open Forgetting.Tests
open Forgetting.Tests.Tensors.GradCheck

let private model =
    Variant.mlp (Variant.ofName Strengths.Default "lateral_inhibition") [ 4; 6; 5; 3 ]

let private netFor (seed: int) =
    model.Init (Rng.create (int64 seed)) Float64

let private inputs = tensor 99 [| 7; 4 |] 0.0 1.0 0.0

let private logits (p: Params) =
    (Layer.apply model Mode.Eval p inputs).ToFloat64Array()

let private nonZero (layer: int) (p: Params) =
    (Params.tensor (Surgery.weightPath layer) p).ToFloat64Array()
    |> Array.filter ((<>) 0.0)
    |> Array.length

[<Fact>]
let ``removing a unit whose outgoing weights are already zero changes nothing`` () =
    LegacyChecks.forAll (Gen.zip seeds (Gen.zip (Gen.choose (1, 2)) (Gen.choose (0, 4)))) (fun (seed, (layer, unit)) ->
        let p = netFor seed
        let silenced = Ablation.remove [ { Layer = layer; Index = unit } ] p
        logits (Ablation.remove [ { Layer = layer; Index = unit } ] silenced) = logits silenced)

[<Fact>]
let ``removing every unit of a hidden layer makes the output independent of the input`` () =
    let p = netFor 3
    let all = [ for i in 0..4 -> { Layer = 2; Index = i } ]
    let out = logits (Ablation.remove all p)
    // Every row (input) gives the same logits: only the last layer's bias remains.
    Assert.All([ 1..6 ], fun r -> Assert.Equal<float[]>(out[0..2], out[r * 3 .. r * 3 + 2]))

[<Fact>]
let ``ablation orders follow importance; a shuffled order is a permutation`` () =
    let importance = [ 1, [| 0.9; 0.1; 0.5 |]; 2, [| 0.3 |] ]
    let asc = Ablation.order Ascending importance

    Assert.Equal<HiddenUnit[]>(
        [| { Layer = 1; Index = 1 }
           { Layer = 2; Index = 0 }
           { Layer = 1; Index = 2 }
           { Layer = 1; Index = 0 } |],
        asc
    )

    Assert.Equal<HiddenUnit[]>(Array.rev asc, Ablation.order Descending importance)
    Assert.Equal<HiddenUnit[]>(Array.sort asc, Array.sort (Ablation.order (Shuffled(Rng.create 4L)) importance))

[<Fact>]
let ``pruning keeps the given fraction of every layer; keeping all is the identity`` () =
    LegacyChecks.forAll (Gen.zip seeds (Gen.choose (0, 10))) (fun (seed, tenths) ->
        let p = netFor seed
        let f = float tenths / 10.0
        let pruned = Pruning.prune Magnitude f p

        logits (Pruning.prune Magnitude 1.0 p) = logits p
        && [ 1; 2; 3 ]
           |> List.forall (fun layer ->
               let n = (Params.tensor (Surgery.weightPath layer) p).Numel
               nonZero layer pruned = int (round (f * float n))))

[<Fact>]
let ``magnitude pruning keeps the largest weights; importance pruning keeps weights of important units`` () =
    let p = netFor 5

    let kept =
        (Params.tensor (Surgery.weightPath 1) (Pruning.prune Magnitude 0.25 p)).ToFloat64Array()

    let original = (Params.tensor (Surgery.weightPath 1) p).ToFloat64Array()
    let threshold = kept |> Array.filter ((<>) 0.0) |> Array.map abs |> Array.min

    Assert.All(
        Array.zip original kept,
        fun (o, k) ->
            if k = 0.0 then
                Assert.True(abs o <= threshold)
    )
    // Hidden layer 1: units 0 and 1 fully important, the rest not: fc1 keeps exactly their columns.
    let importance = [ 1, [| 1.0; 1.0; 0.0; 0.0; 0.0; 0.0 |]; 2, Array.create 5 0.5 ]

    let fc1 =
        (Params.tensor (Surgery.weightPath 1) (Pruning.prune (Importance importance) (2.0 / 6.0) p)).ToFloat64Array()

    Assert.All(Array.indexed fc1, fun (k, v) -> Assert.Equal(k % 6 < 2, v <> 0.0))

[<Fact>]
let ``perturbation touches only the chosen units, is reproducible, and is the identity at fraction 0`` () =
    let p = netFor 6
    let key = Rng.create 11L
    Assert.Equal<float[]>(logits p, logits (Perturbation.perturb key 2 0.0 1.0 p))
    let q = Perturbation.perturb key 2 0.4 1.0 p
    Assert.Equal<float[]>(logits q, logits (Perturbation.perturb key 2 0.4 1.0 p))

    let before, after =
        (Params.tensor "fc2/weight" p).ToFloat64Array(), (Params.tensor "fc2/weight" q).ToFloat64Array()

    let changedUnits =
        [ for k in 0 .. before.Length - 1 do
              if before[k] <> after[k] then
                  k % 5 ]
        |> List.distinct

    Assert.Equal(2, changedUnits.Length)

    Assert.Equal<float[]>(
        (Params.tensor "fc1/weight" p).ToFloat64Array(),
        (Params.tensor "fc1/weight" q).ToFloat64Array()
    )

[<Fact>]
let ``the Fisher diagonal is the mean of squared per-sample gradients`` () =
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

    Assert.Equal<float[]>(
        (Params.tensor "fc2/weight" expected).ToFloat64Array(),
        (Params.tensor "fc2/weight" fisher).ToFloat64Array()
    )

[<Fact>]
let ``evaluation reads out each unit's mean and standard deviation of activation`` () =
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

    Assert.All(
        [ 0..3 ],
        fun j ->
            Assert.Equal(mean j, means[j], 12)
            Assert.Equal(sd j, sds[j], 12)
    )
