module Forgetting.Tests.Data.TasksTests

open System
open Expecto
open FsCheck.FSharp
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

[<Tests>]
let tests =
    testList
        "continual-learning tasks"
        [ Checks.forAll
              "each permuted task has a bijection of the pixels, fixed by the seed"
              30
              (Gen.zip3 (Gen.choose (0, 100000)) (Gen.choose (1, 6)) (Gen.choose (2, 40)))
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
                      && t.Classes = Array.init 10 id))

          test "seeds give different permutations; keeping task 1 unpermuted changes no other task" {
              let d = data 10 64
              let a = Tasks.permuted 1 5 false d
              let b = Tasks.permuted 2 5 false d
              Expect.notEqual (b[1].Train.Permutation) (a[1].Train.Permutation) "task 1 of seeds 1 and 2"
              let kept = Tasks.permuted 1 5 true d
              Expect.equal (kept[0].Train.Permutation) None "task 0 kept unpermuted: train"
              Expect.equal (kept[0].Test.Permutation) None "task 0 kept unpermuted: test"

              for t in 1..4 do
                  Expect.equal
                      (kept[t].Train.Permutation)
                      (a[t].Train.Permutation)
                      $"task {t} with task 0 kept unpermuted"

              // More tasks, same first ones.
              let more = Tasks.permuted 1 9 false d
              Expect.equal (more[3].Train.Permutation) (a[3].Train.Permutation) "task 3 of 9 and of 5"
              Expect.equal (a |> Array.map (fun t -> t.Id)) [| 0; 1; 2; 3; 4 |] "task ids"
              // A permuted sample is the source's sample, its values moved.
              let v = a[2].Train
              let sample = Array.zeroCreate 64
              DataView.copySample 3 v (Span sample)
              let p = v.Permutation.Value
              Expect.equal sample (Array.init 64 (fun j -> d.Train.Images[3 * 64 + p[j]])) "a permuted sample"
              Expectations.same v.Source.Images d.Train.Images "the view's source images are the data set's"
          }

          test "split tasks hold exactly the samples of their classes" {
              let d = data 95 3
              let groups = Tasks.classGroups 10 2
              Expect.equal groups [| [| 0; 1 |]; [| 2; 3 |]; [| 4; 5 |]; [| 6; 7 |]; [| 8; 9 |] |] "groups"
              let tasks = Tasks.splitByClasses groups d

              for t in tasks do
                  Expect.equal t.Classes groups[t.Id] $"task {t.Id}: classes"

                  for l in DataView.labels t.Train do
                      Expect.contains t.Classes l $"task {t.Id}: a train label"

                  for l in DataView.labels t.Test do
                      Expect.contains t.Classes l $"task {t.Id}: a test label"

                  Expect.equal
                      (DataView.count t.Train)
                      (d.Train.Labels
                       |> Array.filter (fun l -> Array.contains l t.Classes)
                       |> Array.length)
                      $"task {t.Id}: train samples"

              Expect.equal (tasks |> Array.sumBy (fun t -> DataView.count t.Train)) 95 "train samples of all tasks"

              Expect.equal (Tasks.localLabel tasks[2] 5) 1 "Tasks.localLabel tasks[2] 5"
              Expect.equal (Tasks.classGroups 7 3) [| [| 0; 1; 2 |]; [| 3; 4; 5 |]; [| 6 |] |] "Tasks.classGroups 7 3"

              let overlap =
                  Expectations.throws<ArgumentException> "overlapping groups" (fun () ->
                      Tasks.splitByClasses [| [| 0; 1 |]; [| 1; 2 |] |] d |> ignore)

              Expect.stringContains overlap.Message "class 1 is in groups 0 and 1" "the class in two groups"
          }

          Checks.forAll
              "a stream partitions the training data into near-equal parts"
              50
              (Gen.zip3 (Gen.choose (0, 1000)) (Gen.choose (1, 60)) (Gen.choose (1, 60)))
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
                      (tasks |> Array.map (fun t -> t.Train.Indices)))

          test "a sequence of data sets is one task per set, in order" {
              let a = data 10 4
              let b = data 6 4
              let tasks = Tasks.sequence [ a; b ]
              Expect.equal (tasks |> Array.map (fun t -> t.Id)) [| 0; 1 |] "task ids"
              Expect.equal (DataView.count tasks[0].Train) 10 "DataView.count tasks[0].Train"
              Expect.equal (DataView.count tasks[1].Test) 3 "DataView.count tasks[1].Test"
              Expect.equal (tasks[0].Name) "toy" "tasks[0].Name"
          } ]
