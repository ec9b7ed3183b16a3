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
          }

          test
              "Sarle's bimodality coefficient: 5/9 for a uniform sample, 1/3 for a normal one, near 1 for two modes, 0 for one point" {
              let uniform = Array.init 2001 (fun i -> float i / 2000.0)
              let normal = Forgetting.Tensors.Rng.normal 20000 (Forgetting.Tensors.Rng.create 3L)
              let twoModes = Array.init 2000 (fun i -> if i % 2 = 0 then 0.02 else 0.98)
              Expect.isLessThan (abs (Statistics.bimodality uniform - 5.0 / 9.0)) 0.005 "uniform"
              Expect.isLessThan (abs (Statistics.bimodality normal - 1.0 / 3.0)) 0.02 "normal"
              Expect.isGreaterThan (Statistics.bimodality twoModes) 0.99 "two modes"
              Expect.equal (Statistics.bimodality (Array.create 10 0.5)) 0.0 "one point"

              Expect.throwsT<System.ArgumentException>
                  (fun () -> Statistics.bimodality [| 1.0; 2.0; 3.0 |] |> ignore)
                  "three values"
          } ]
