module Forgetting.Tests.Data.BatchesTests

open System
open Expecto
open FsCheck.FSharp
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

[<Tests>]
let tests =
    testList
        "batches"
        [ Checks.forAll
              "an epoch covers every sample once, the last batch partial"
              100
              sizes
              (fun (seed, n, batchSize) ->
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

          Checks.forAll "dropping the last batch keeps only full batches" 100 sizes (fun (seed, n, batchSize) ->
              let batches = Batches.epoch (Random seed) batchSize Drop (view n) |> Array.ofSeq
              let seen = batches |> Array.collect (fun b -> b.Labels)

              batches.Length = n / batchSize
              && batches |> Array.forall (fun b -> b.Count = batchSize)
              && seen.Length = n / batchSize * batchSize)

          test "the same seed gives the same order; another seed another" {
              let order seed =
                  Batches.epoch (Random seed) 7 Keep (view 100)
                  |> Seq.collect (fun b -> b.Positions.ToArray())
                  |> Array.ofSeq

              Expect.equal (order 5) (order 5) "the order of seed 5, twice"
              Expect.notEqual (order 6) (order 5) "the orders of seeds 5 and 6"
              // The order is drawn when the epoch is asked for, so epochs from one generator differ and repeat.
              let rng = Random 3
              let first = Batches.epoch rng 10 Keep (view 50)
              let second = Batches.epoch rng 10 Keep (view 50)

              let positions (s: Batch seq) =
                  s |> Seq.collect (fun b -> b.Positions.ToArray()) |> Array.ofSeq

              let p1 = positions first
              let p2 = positions second
              Expect.notEqual p2 p1 "two epochs from one generator"
              let again = positions first
              Expect.equal (positions first) again "one epoch enumerated twice"
          }

          test "in-order batches and a reused buffer see the view's samples, permuted if it is" {
              let v = view 5 |> DataView.permuted [| 1; 0 |]
              let batches = Batches.inOrder 2 v |> Array.ofSeq

              Expect.equal (batches |> Array.map (fun b -> b.Count)) [| 2; 2; 1 |] "batch sizes"

              Expect.equal (batches[0].Images) [| -0.0f; 0.0f; -1.0f; 1.0f |] "the first batch"
              let images = Array.zeroCreate 4
              let labels = Array.zeroCreate 2
              Batches.gather v (ReadOnlySpan [| 4; 2 |]) (Span images) (Span labels)
              Expect.equal images [| -4.0f; 4.0f; -2.0f; 2.0f |] "gathered images"
              Expect.equal labels [| 1; 2 |] "gathered labels"
              Expect.equal (Batches.ranges 3 Keep 7) [| 0, 3; 3, 3; 6, 1 |] "the ranges of batches of 3 out of 7"
          } ]
