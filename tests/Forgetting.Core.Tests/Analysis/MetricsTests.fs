module Forgetting.Tests.Analysis.MetricsTests

open System
open Expecto
open FsCheck.FSharp
open Forgetting.Analysis
open Forgetting.Tests

/// An accuracy matrix of 1 to 8 tasks: T + 1 rows of T accuracies, exact 0 and 1 among them.
let private matrices =
    gen {
        let! t = Gen.choose (1, 8)

        let accuracy =
            Gen.frequency
                [ 1, Gen.constant 0.0
                  1, Gen.constant 1.0
                  6, Gen.choose (0, 1000) |> Gen.map (fun i -> float i / 1000.0) ]

        return! Gen.arrayOfLength (t + 1) (Gen.arrayOfLength t accuracy)
    }

/// The value of a metric, which must be defined.
let private value (m: Metric) (r: float[][]) =
    match m.Compute r with
    | Some v -> v
    | None -> failtest $"{m.Name} is undefined"

/// The metrics written directly from their definitions, tasks counted from 1: R[i, j] = r[i][j - 1].
let private reference (r: float[][]) =
    let t = r.Length - 1
    let R i j = r[i][j - 1]
    let earlier = [ 1 .. t - 1 ]
    // NaN for no tasks: the metrics that need two tasks are not compared at T = 1.
    let mean (f: int -> float) (js: int list) =
        if js.IsEmpty then nan else List.averageBy f js

    let bwt = earlier |> mean (fun j -> R t j - R j j)

    let chaudhry =
        earlier |> mean (fun j -> (List.max [ for l in j .. t - 1 -> R l j ]) - R t j)

    let avalanche = earlier |> mean (fun j -> R j j - R t j)
    let fwt = [ 2..t ] |> mean (fun j -> R (j - 1) j - R 0 j)
    let acc = [ for i in 1..t -> [ 1..i ] |> List.averageBy (fun j -> R i j) ]
    acc, bwt, chaudhry, avalanche, fwt

/// The message of the ArgumentException that `f` raises.
let private refusal (f: unit -> 'a) =
    try
        f () |> ignore
        failtest "expected an ArgumentException"
    with :? ArgumentException as e ->
        e.Message

let private close (a: float) (b: float) = abs (a - b) < 1e-12

/// The hand example: three tasks.
let private example =
    [| [| 0.10; 0.20; 0.30 |] // at initialisation
       [| 0.90; 0.25; 0.35 |] // after task 1
       [| 0.95; 0.80; 0.40 |] // after task 2
       [| 0.60; 0.70; 0.95 |] |] // after task 3

[<Tests>]
let tests =
    testList
        "Continual-learning metrics"
        [ Checks.forAll "BWT is minus Avalanche's forgetting, exactly" 500 matrices (fun r ->
              match Metrics.backwardTransfer.Compute r, Metrics.forgettingAvalanche.Compute r with
              | Some bwt, Some f -> bwt = -f
              | None, None -> r.Length = 2
              | _ -> false)

          Checks.forAll "every metric lies in [-1, 1], ACC and every ACC_i in [0, 1]" 500 matrices (fun r ->
              let inRange lo hi (v: float) = v >= lo && v <= hi

              Metrics.evaluate r
              |> List.forall (fun m -> m.Value |> Option.forall (inRange -1.0 1.0))
              && inRange 0.0 1.0 (value Metrics.averageAccuracy r)
              && Metrics.averageAccuracies r |> Array.forall (inRange 0.0 1.0))

          Checks.forAll "Chaudhry's forgetting is never below Avalanche's" 500 matrices (fun r ->
              match Metrics.forgettingChaudhry.Compute r, Metrics.forgettingAvalanche.Compute r with
              | Some c, Some a -> c >= a - 1e-12
              | None, None -> true
              | _ -> false)

          Checks.forAll "the two forgettings agree when no task gets better after it was learned" 300 matrices (fun r ->
              let t = r.Length - 1
              let r = Array.map Array.copy r

              for j in 0 .. t - 1 do
                  for l in j + 2 .. t do
                      r[l][j] <- min (r[l][j]) (r[j + 1][j])

              Metrics.forgettingChaudhry.Compute r = Metrics.forgettingAvalanche.Compute r
              || close (value Metrics.forgettingChaudhry r) (value Metrics.forgettingAvalanche r))

          Checks.forAll "every metric is its definition, written out" 500 matrices (fun r ->
              let t = r.Length - 1
              let acc = Metrics.averageAccuracies r
              let accRef, bwt, chaudhry, avalanche, fwt = reference r

              Array.forall2 close acc (Array.ofList accRef)
              && close (value Metrics.averageAccuracy r) (List.last accRef)
              && (if t = 1 then
                      [ Metrics.backwardTransfer
                        Metrics.forgettingChaudhry
                        Metrics.forgettingAvalanche
                        Metrics.forwardTransfer ]
                      |> List.forall (fun m -> m.Compute r = None)
                  else
                      close (value Metrics.backwardTransfer r) bwt
                      && close (value Metrics.forgettingChaudhry r) chaudhry
                      && close (value Metrics.forgettingAvalanche r) avalanche
                      && close (value Metrics.forwardTransfer r) fwt))

          test "a hand example has the values worked out by hand" {
              let acc = Metrics.averageAccuracies example
              Expect.floatClose Accuracy.veryHigh acc[0] 0.90 "ACC_1 = R[1, 1]"
              Expect.floatClose Accuracy.veryHigh acc[1] 0.875 "ACC_2 = (0.95 + 0.80) / 2"
              Expect.floatClose Accuracy.veryHigh acc[2] 0.75 "ACC_3 = (0.60 + 0.70 + 0.95) / 3"
              Expect.floatClose Accuracy.veryHigh (value Metrics.averageAccuracy example) 0.75 "ACC = ACC_3"

              Expect.floatClose
                  Accuracy.veryHigh
                  (value Metrics.backwardTransfer example)
                  -0.2
                  "BWT = ((0.60 - 0.90) + (0.70 - 0.80)) / 2"

              Expect.floatClose
                  Accuracy.veryHigh
                  (value Metrics.forgettingChaudhry example)
                  0.225
                  "Chaudhry = ((max(0.90, 0.95) - 0.60) + (0.80 - 0.70)) / 2"

              Expect.floatClose
                  Accuracy.veryHigh
                  (value Metrics.forgettingAvalanche example)
                  0.2
                  "Avalanche = ((0.90 - 0.60) + (0.80 - 0.70)) / 2"

              Expect.floatClose
                  Accuracy.veryHigh
                  (value Metrics.forwardTransfer example)
                  0.075
                  "FWT = ((0.25 - 0.20) + (0.40 - 0.30)) / 2"
          }

          test "Chaudhry's maximum runs over the rows after the task was learned, before the last" {
              // Task 2 scores 1.0 at initialisation and before it is learned: neither counts as knowledge.
              let r = Array.map Array.copy example
              r[0][1] <- 1.0
              r[1][1] <- 1.0

              Expect.floatClose
                  Accuracy.veryHigh
                  (value Metrics.forgettingChaudhry r)
                  0.225
                  "rows 0 and 1 do not count for task 2"

              // The last row is never the maximum's own candidate: a task that gets better at the end is
              // not forgotten, it is negatively forgotten.
              let r = [| [| 0.0; 0.0 |]; [| 0.5; 0.0 |]; [| 0.9; 0.9 |] |]
              Expect.floatClose Accuracy.veryHigh (value Metrics.forgettingChaudhry r) -0.4 "0.5 - 0.9"
          }

          test "with one task only ACC is defined" {
              let r = [| [| 0.1 |]; [| 0.8 |] |]

              Expect.equal
                  (Metrics.evaluate r |> List.map (fun m -> m.Name, m.Value))
                  [ "ACC", Some 0.8
                    "BWT", None
                    "forgetting (Chaudhry)", None
                    "forgetting (Avalanche)", None
                    "FWT", None ]
                  "T = 1"

              Expect.equal (Metrics.averageAccuracies r) [| 0.8 |] "ACC_1"
          }

          test "every metric is printed with its name and a definition in terms of R" {
              let values = Metrics.evaluate example
              Expect.equal (values |> List.map (fun v -> v.Name)) (Metrics.all |> List.map (fun m -> m.Name)) "order"

              for v in values do
                  Expect.stringContains v.Definition "R[" $"{v.Name} is defined in terms of R"
                  Expect.isFalse (v.Definition.Contains '\n') $"{v.Name}'s definition is one line"

              Expect.stringContains Metrics.backwardTransfer.Definition "Lopez-Paz & Ranzato 2017" "BWT's source"
              Expect.stringContains Metrics.forgettingChaudhry.Definition "Chaudhry et al. 2018" "its source"
          }

          test "R's shape and values are checked" {
              Expect.stringContains (refusal (fun () -> Metrics.tasks [||])) "T + 1 rows" "no rows"
              Expect.stringContains (refusal (fun () -> Metrics.tasks [| [| 0.5 |] |])) "got 1 rows" "one row"

              Expect.stringContains
                  (refusal (fun () -> Metrics.tasks [| [| 0.5; 0.5 |]; [| 0.5; 0.5 |] |]))
                  "row 0 has 2"
                  "T × T instead of (T + 1) × T"

              Expect.stringContains
                  (refusal (fun () -> Metrics.tasks [| [| 0.5 |]; [| 0.5; 0.1 |] |]))
                  "row 1 has 2"
                  "ragged rows"

              Expect.stringContains
                  (refusal (fun () ->
                      Metrics.backwardTransfer.Compute [| [| 0.5; 0.5 |]; [| 1.5; 0.5 |]; [| 0.5; 0.5 |] |]))
                  "1.5 at row 1, column 0 (task 1)"
                  "above 1"

              Expect.stringContains
                  (refusal (fun () -> Metrics.evaluate [| [| -0.1 |]; [| 0.5 |] |]))
                  "in [0, 1]"
                  "below 0"

              Expect.stringContains (refusal (fun () -> Metrics.evaluate [| [| nan |]; [| 0.5 |] |])) "NaN" "NaN"

              Expect.equal (Metrics.tasks (Metrics.ofArray2D (Array2D.create 4 3 0.5))) 3 "a 2-D array of 4 × 3"
          } ]
