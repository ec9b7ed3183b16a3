module Forgetting.Tests.Data.DatasetTests

open System
open Xunit
open Forgetting.Data

/// n samples of 3 values: sample i holds i, i + 0.25, i + 0.5; label i mod classes.
let sample (n: int) (classes: int) =
    Dataset.create
        "sample"
        [| 3 |]
        classes
        (Array.init (3 * n) (fun k -> float32 (k / 3) + 0.25f * float32 (k % 3)))
        (Array.init n (fun i -> i % classes))

[<Fact>]
let ``count, features and class counts`` () =
    let d = sample 7 3
    Assert.Equal(7, Dataset.count d)
    Assert.Equal(3, Dataset.features d)
    Assert.Equal<int[]>([| 3; 2; 2 |], Dataset.classCounts d)
    Assert.Equal<int[]>([| 1; 2; 4; 5 |], Dataset.indicesOfClasses [| 1; 2 |] d)

[<Fact>]
let ``create refuses inconsistent parts`` () =
    let sizes =
        Assert.Throws<ArgumentException>(fun () -> Dataset.create "d" [| 2 |] 2 [| 1.0f |] [| 0 |] |> ignore)

    Assert.Contains("1 labels need 2 image values", sizes.Message)

    let label =
        Assert.Throws<ArgumentException>(fun () -> Dataset.create "d" [| 1 |] 2 [| 1.0f |] [| 2 |] |> ignore)

    Assert.Contains("label 2 of sample 0 is outside 0 … 1", label.Message)

[<Fact>]
let ``subset gathers rows; the identity selection is no copy`` () =
    let d = sample 5 2
    Assert.Same(d, Dataset.subset [| 0; 1; 2; 3; 4 |] d)
    let s = Dataset.subset [| 4; 1 |] d
    Assert.Equal<float32[]>([| 4.0f; 4.25f; 4.5f; 1.0f; 1.25f; 1.5f |], s.Images)
    Assert.Equal<int[]>([| 0; 1 |], s.Labels)
    Assert.Equal<float32[]>([| 2.0f; 2.25f; 2.5f |], (Dataset.image 2 d).ToArray())

    Assert.Throws<ArgumentException>(fun () -> Dataset.subset [| 5 |] d |> ignore)
    |> ignore

    Assert.Same(d, Dataset.slice 0 5 d)
    let sl = Dataset.slice 3 2 d
    Assert.Equal<float32[]>([| 3.0f; 3.25f; 3.5f; 4.0f; 4.25f; 4.5f |], sl.Images)
    Assert.Equal<int[]>([| 1; 0 |], sl.Labels)

[<Fact>]
let ``a permuted view reads value j of a sample from the source's value p[j]`` () =
    let d = sample 4 2

    let v =
        DataView.all d |> DataView.permuted [| 2; 0; 1 |] |> DataView.subset [| 3; 1 |]

    let m = DataView.materialise v
    Assert.Equal<float32[]>([| 3.5f; 3.0f; 3.25f; 1.5f; 1.0f; 1.25f |], m.Images)
    Assert.Equal<int[]>([| 1; 1 |], m.Labels)

    Assert.Throws<ArgumentException>(fun () -> DataView.permuted [| 0; 0; 1 |] (DataView.all d) |> ignore)
    |> ignore
