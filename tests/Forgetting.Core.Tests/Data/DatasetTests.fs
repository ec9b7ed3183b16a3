module Forgetting.Tests.Data.DatasetTests

open System
open Expecto
open Forgetting.Data
open Forgetting.Tests

/// n samples of 3 values: sample i holds i, i + 0.25, i + 0.5; label i mod classes.
let sample (n: int) (classes: int) =
    Dataset.create
        "sample"
        [| 3 |]
        classes
        (Array.init (3 * n) (fun k -> float32 (k / 3) + 0.25f * float32 (k % 3)))
        (Array.init n (fun i -> i % classes))

[<Tests>]
let tests =
    testList
        "data sets"
        [ test "count, features and class counts" {
              let d = sample 7 3
              Expect.equal (Dataset.count d) 7 "Dataset.count d"
              Expect.equal (Dataset.features d) 3 "Dataset.features d"
              Expect.equal (Dataset.classCounts d) [| 3; 2; 2 |] "Dataset.classCounts d"

              Expect.equal
                  (Dataset.indicesOfClasses [| 1; 2 |] d)
                  [| 1; 2; 4; 5 |]
                  "Dataset.indicesOfClasses [| 1; 2 |] d"
          }

          test "create refuses inconsistent parts" {
              let sizes =
                  Expectations.throws<ArgumentException> "Dataset.create 'd' [| 2 |] 2 [| 1.0f |] [| 0 |]" (fun () ->
                      Dataset.create "d" [| 2 |] 2 [| 1.0f |] [| 0 |] |> ignore)

              Expect.stringContains sizes.Message "1 labels need 2 image values" "sizes.Message"

              let label =
                  Expectations.throws<ArgumentException> "Dataset.create 'd' [| 1 |] 2 [| 1.0f |] [| 2 |]" (fun () ->
                      Dataset.create "d" [| 1 |] 2 [| 1.0f |] [| 2 |] |> ignore)

              Expect.stringContains label.Message "label 2 of sample 0 is outside 0 … 1" "label.Message"
          }

          test "subset gathers rows; the identity selection is no copy" {
              let d = sample 5 2
              Expectations.same (Dataset.subset [| 0; 1; 2; 3; 4 |] d) d "Dataset.subset [| 0; 1; 2; 3; 4 |] d"
              let s = Dataset.subset [| 4; 1 |] d
              Expect.equal s.Images [| 4.0f; 4.25f; 4.5f; 1.0f; 1.25f; 1.5f |] "s.Images"
              Expect.equal s.Labels [| 0; 1 |] "s.Labels"
              Expect.equal ((Dataset.image 2 d).ToArray()) [| 2.0f; 2.25f; 2.5f |] "(Dataset.image 2 d).ToArray()"

              Expectations.throws<ArgumentException> "Dataset.subset [| 5 |] d" (fun () ->
                  Dataset.subset [| 5 |] d |> ignore)
              |> ignore

              Expectations.same (Dataset.slice 0 5 d) d "Dataset.slice 0 5 d"
              let sl = Dataset.slice 3 2 d
              Expect.equal sl.Images [| 3.0f; 3.25f; 3.5f; 4.0f; 4.25f; 4.5f |] "sl.Images"
              Expect.equal sl.Labels [| 1; 0 |] "sl.Labels"
          }

          test "a permuted view reads value j of a sample from the source's value p[j]" {
              let d = sample 4 2

              let v =
                  DataView.all d |> DataView.permuted [| 2; 0; 1 |] |> DataView.subset [| 3; 1 |]

              let m = DataView.materialise v
              Expect.equal m.Images [| 3.5f; 3.0f; 3.25f; 1.5f; 1.0f; 1.25f |] "m.Images"
              Expect.equal m.Labels [| 1; 1 |] "m.Labels"

              Expectations.throws<ArgumentException> "DataView.permuted [| 0; 0; 1 |] (DataView.all d)" (fun () ->
                  DataView.permuted [| 0; 0; 1 |] (DataView.all d) |> ignore)
              |> ignore
          } ]
