module Forgetting.Tests.Data.BatchesTests

open System
open FsCheck.FSharp
open Xunit
open Forgetting.Data
open Forgetting.Tests

/// n samples of 2 values (i, -i), label i mod 3.
let private view (n: int) =
    DataView.all (
        Dataset.create
            "b"
            [| 2 |]
            3
            (Array.init (2 * n) (fun k -> if k % 2 = 0 then float32 (k / 2) else -(float32 (k / 2))))
            (Array.init n (fun i -> i % 3))
    )

let private sizes =
    Gen.zip3 (Gen.choose (0, 1000)) (Gen.choose (0, 200)) (Gen.choose (1, 50))

[<Fact>]
let ``an epoch covers every sample once, the last batch partial`` () =
    LegacyChecks.forAll sizes (fun (seed, n, batchSize) ->
        let batches = Batches.epoch (Random seed) batchSize Keep (view n) |> Array.ofSeq

        let seen =
            batches
            |> Array.collect (fun b -> b.Images |> Array.chunkBySize 2 |> Array.map (fun v -> int v[0]))

        Array.sort seen = Array.init n id
        && batches.Length = (n + batchSize - 1) / batchSize
        && batches
           |> Array.forall (fun b ->
               b.Count =
                   (if b.Index = batches.Length - 1 && n % batchSize <> 0 then
                        n % batchSize
                    else
                        batchSize)
               && b.Labels = (b.Images |> Array.chunkBySize 2 |> Array.map (fun v -> int v[0] % 3))
               && b.Positions.ToArray()
                  |> Array.forall2 (fun (v: float32[]) p -> int v[0] = p) (b.Images |> Array.chunkBySize 2)))

[<Fact>]
let ``dropping the last batch keeps only full batches`` () =
    LegacyChecks.forAll sizes (fun (seed, n, batchSize) ->
        let batches = Batches.epoch (Random seed) batchSize Drop (view n) |> Array.ofSeq
        let seen = batches |> Array.collect (fun b -> b.Labels)

        batches.Length = n / batchSize
        && batches |> Array.forall (fun b -> b.Count = batchSize)
        && seen.Length = n / batchSize * batchSize)

[<Fact>]
let ``the same seed gives the same order; another seed another`` () =
    let order seed =
        Batches.epoch (Random seed) 7 Keep (view 100)
        |> Seq.collect (fun b -> b.Positions.ToArray())
        |> Array.ofSeq

    Assert.Equal<int[]>(order 5, order 5)
    Assert.NotEqual<int[]>(order 5, order 6)
    // The order is drawn when the epoch is asked for, so epochs from one generator differ and repeat.
    let rng = Random 3
    let first = Batches.epoch rng 10 Keep (view 50)
    let second = Batches.epoch rng 10 Keep (view 50)

    let positions (s: Batch seq) =
        s |> Seq.collect (fun b -> b.Positions.ToArray()) |> Array.ofSeq

    Assert.NotEqual<int[]>(positions first, positions second)
    Assert.Equal<int[]>(positions first, positions first)

[<Fact>]
let ``in-order batches and a reused buffer see the view's samples, permuted if it is`` () =
    let v = view 5 |> DataView.permuted [| 1; 0 |]
    let batches = Batches.inOrder 2 v |> Array.ofSeq
    Assert.Equal<int[]>([| 2; 2; 1 |], batches |> Array.map (fun b -> b.Count))
    Assert.Equal<float32[]>([| -0.0f; 0.0f; -1.0f; 1.0f |], batches[0].Images)
    let images = Array.zeroCreate 4
    let labels = Array.zeroCreate 2
    Batches.gather v (ReadOnlySpan [| 4; 2 |]) (Span images) (Span labels)
    Assert.Equal<float32[]>([| -4.0f; 4.0f; -2.0f; 2.0f |], images)
    Assert.Equal<int[]>([| 1; 2 |], labels)
    Assert.Equal<(int * int)[]>([| 0, 3; 3, 3; 6, 1 |], Batches.ranges 3 Keep 7)
