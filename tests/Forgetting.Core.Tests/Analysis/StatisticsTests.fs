/// Summaries of repeated measurements: mean and sample sd, ranks and Spearman's rank correlation.
module Forgetting.Tests.Analysis.StatisticsTests

open Expecto
open FsCheck.FSharp
open Forgetting.Analysis
open Forgetting.Tests

[<Tests>]
let tests =
    testList
        "statistics"
        [ test "ranks average ties" {
              Expect.equal (Statistics.ranks [| 10.0; 30.0; 20.0; 20.0 |]) [| 1.0; 4.0; 2.5; 2.5 |] "fractional ranks"
          }

          test "Spearman's ρ on known pairs" {
              Expect.equal (Statistics.spearman [| 1.0; 2.0; 3.0 |] [| 10.0; 200.0; 3000.0 |]) 1.0 "monotone: 1"
              Expect.equal (Statistics.spearman [| 1.0; 2.0; 3.0 |] [| 3.0; 2.0; 1.0 |]) -1.0 "reversed: −1"
              // Ranks 1 2 3 4 5 against 2 1 4 3 5: 1 − 6 Σd² / (n(n² − 1)) = 1 − 6·4/120 = 0.8.
              Expect.floatClose
                  Accuracy.veryHigh
                  (Statistics.spearman [| 1.0; 2.0; 3.0; 4.0; 5.0 |] [| 2.0; 1.0; 4.0; 3.0; 5.0 |])
                  0.8
                  "0.8"

              Expect.isTrue (System.Double.IsNaN(Statistics.spearman [| 1.0; 1.0 |] [| 1.0; 2.0 |])) "constant: NaN"
          }

          Checks.forAll
              "Spearman's ρ is in [−1, 1], symmetric, and unchanged by a monotone map"
              50
              (Gen.listOfLength 12 (Gen.choose (-5, 5))
               |> Gen.zip (Gen.listOfLength 12 (Gen.choose (-5, 5))))
              (fun (a, b) ->
                  let xs, ys =
                      a |> List.map float |> Array.ofList, b |> List.map float |> Array.ofList

                  let rho = Statistics.spearman xs ys

                  System.Double.IsNaN rho
                  || (rho >= -1.0 - 1e-12
                      && rho <= 1.0 + 1e-12
                      && abs (rho - Statistics.spearman ys xs) < 1e-12
                      && abs (rho - Statistics.spearman (xs |> Array.map (fun x -> exp x)) ys) < 1e-12))

          test "refusals" {
              Expect.throwsT<System.ArgumentException>
                  (fun () -> Statistics.spearman [| 1.0 |] [| 1.0; 2.0 |] |> ignore)
                  "unpaired"

              Expect.throwsT<System.ArgumentException>
                  (fun () -> Statistics.spearman [| 1.0 |] [| 1.0 |] |> ignore)
                  "one pair"
          } ]
