module Forgetting.Tests.Data.TasksTests

open System
open FsCheck.FSharp
open Xunit
open Forgetting.Data
open Forgetting.Tests

/// A train/test pair of `n` and `n / 2` samples of `features` distinct values, labels cycling over 10.
let private data (n: int) (features: int) =
    let make name count offset =
        Dataset.create
            name
            [| features |]
            10
            (Array.init (count * features) (fun k -> float32 (offset + k)))
            (Array.init count (fun i -> i % 10))

    { Train = make "toy/train" n 0
      Test = make "toy/test" (n / 2) 1_000_000 }

[<Fact>]
let ``each permuted task has a bijection of the pixels, fixed by the seed`` () =
    LegacyChecks.checkN
        30
        (Prop.forAll
            (Arb.fromGen (Gen.zip3 (Gen.choose (0, 100000)) (Gen.choose (1, 6)) (Gen.choose (2, 40))))
            (fun (seed, count, features) ->
                let d = data 12 features
                let tasks = Tasks.permuted seed count false d
                let again = Tasks.permuted seed count false d

                tasks
                |> Array.forall (fun t ->
                    let p = t.Train.Permutation.Value

                    Permutation.isBijection p
                    && t.Test.Permutation = Some p
                    && again[t.Id].Train.Permutation = Some p
                    && t.Classes = Array.init 10 id)))

[<Fact>]
let ``seeds give different permutations; keeping task 1 unpermuted changes no other task`` () =
    let d = data 10 64
    let a = Tasks.permuted 1 5 false d
    let b = Tasks.permuted 2 5 false d
    Assert.NotEqual(a[1].Train.Permutation, b[1].Train.Permutation)
    let kept = Tasks.permuted 1 5 true d
    Assert.Equal(None, kept[0].Train.Permutation)
    Assert.Equal(None, kept[0].Test.Permutation)

    for t in 1..4 do
        Assert.Equal(a[t].Train.Permutation, kept[t].Train.Permutation)

    // More tasks, same first ones.
    let more = Tasks.permuted 1 9 false d
    Assert.Equal(a[3].Train.Permutation, more[3].Train.Permutation)
    Assert.Equal<int[]>([| 0; 1; 2; 3; 4 |], a |> Array.map (fun t -> t.Id))
    // A permuted sample is the source's sample, its values moved.
    let v = a[2].Train
    let sample = Array.zeroCreate 64
    DataView.copySample 3 v (Span sample)
    let p = v.Permutation.Value
    Assert.Equal<float32[]>(Array.init 64 (fun j -> d.Train.Images[3 * 64 + p[j]]), sample)
    Assert.Same(d.Train.Images, v.Source.Images)

[<Fact>]
let ``split tasks hold exactly the samples of their classes`` () =
    let d = data 95 3
    let groups = Tasks.classGroups 10 2
    Assert.Equal<int[][]>([| [| 0; 1 |]; [| 2; 3 |]; [| 4; 5 |]; [| 6; 7 |]; [| 8; 9 |] |], groups)
    let tasks = Tasks.splitByClasses groups d

    for t in tasks do
        Assert.Equal<int[]>(groups[t.Id], t.Classes)
        Assert.All(DataView.labels t.Train, fun l -> Assert.Contains(l, t.Classes))
        Assert.All(DataView.labels t.Test, fun l -> Assert.Contains(l, t.Classes))

        Assert.Equal(
            d.Train.Labels
            |> Array.filter (fun l -> Array.contains l t.Classes)
            |> Array.length,
            DataView.count t.Train
        )

    Assert.Equal(95, tasks |> Array.sumBy (fun t -> DataView.count t.Train))
    Assert.Equal(1, Tasks.localLabel tasks[2] 5)
    Assert.Equal<int[][]>([| [| 0; 1; 2 |]; [| 3; 4; 5 |]; [| 6 |] |], Tasks.classGroups 7 3)

    let overlap =
        Assert.Throws<ArgumentException>(fun () -> Tasks.splitByClasses [| [| 0; 1 |]; [| 1; 2 |] |] d |> ignore)

    Assert.Contains("class 1 is in groups 0 and 1", overlap.Message)

[<Fact>]
let ``a stream partitions the training data into near-equal parts`` () =
    LegacyChecks.checkN
        50
        (Prop.forAll
            (Arb.fromGen (Gen.zip3 (Gen.choose (0, 1000)) (Gen.choose (1, 60)) (Gen.choose (1, 60))))
            (fun (seed, n, k) ->
                let count = min n k
                let d = data n 2
                let tasks = Tasks.stream seed count d
                let all = tasks |> Array.collect (fun t -> t.Train.Indices)
                let sizes = tasks |> Array.map (fun t -> DataView.count t.Train)

                Array.sort all = Array.init n id
                && Array.max sizes - Array.min sizes <= 1
                && tasks |> Array.forall (fun t -> DataView.count t.Test = n / 2)
                && (Tasks.stream seed count d |> Array.map (fun t -> t.Train.Indices)) =
                    (tasks |> Array.map (fun t -> t.Train.Indices))))

[<Fact>]
let ``a sequence of data sets is one task per set, in order`` () =
    let a = data 10 4
    let b = data 6 4
    let tasks = Tasks.sequence [ a; b ]
    Assert.Equal<int[]>([| 0; 1 |], tasks |> Array.map (fun t -> t.Id))
    Assert.Equal(10, DataView.count tasks[0].Train)
    Assert.Equal(3, DataView.count tasks[1].Test)
    Assert.Equal("toy", tasks[0].Name)
