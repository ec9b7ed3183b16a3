module Forgetting.Reporting.Tests.BinsTests

open Expecto
open FsCheck.FSharp
open Forgetting.Reporting
open Forgetting.Tests

/// Ranges over many magnitudes whose span is not lost in the rounding of their ends; one in ten is a
/// single value.
let private ranges =
    gen {
        let! e = Gen.choose (-8, 8)
        let! spanE = Gen.choose (e - 5, e + 3)
        let! lo = Gen.choose (-1000, 1000)
        let! span = Gen.frequency [ 1, Gen.constant 0; 9, Gen.choose (1, 1000) ]
        let lo = float lo / 100.0 * 10.0 ** float e
        return lo, lo + float span / 100.0 * 10.0 ** float spanE
    }

/// Mostly finite values across magnitudes, sometimes NaN or infinite.
let private value =
    let finite =
        Gen.map2 (fun m e -> float m / 100.0 * 10.0 ** float e) (Gen.choose (-1000, 1000)) (Gen.choose (-6, 6))

    Gen.frequency [ 8, finite; 1, Gen.constant nan; 1, Gen.elements [ infinity; -infinity ] ]

[<Tests>]
let tests =
    testList
        "histogram bins"
        [ Checks.forAll "round ends cover the range, on a 1, 2, 2.5 or 5 times 10^k step" 500 ranges (fun (lo, hi) ->
              let first, last = Bins.niceEnds lo hi
              // The span the step is chosen for: a single value is widened by 10% of it each way, or by 1.
              let span =
                  if lo < hi then hi - lo
                  elif abs lo < 1e-300 then 2.0
                  else abs lo * 0.2

              let step = Bins.niceStep span 5
              // The measured step can sit a hair below 10^k; 0.01 decades stops floor dropping a decade.
              let mantissa = step / 10.0 ** floor (log10 step + 0.01)
              // Ends carry rounding error of a few ulps of their magnitude, not just of the step.
              let slack = step * 1e-9 + (max (abs first) (abs last)) * 1e-15

              let onStep (v: float) =
                  abs (v - step * round (v / step)) <= slack

              first <= lo + slack
              && last >= hi - slack
              && onStep first
              && onStep last
              && (last - first) / step <= 7.0 + 1e-9
              && [ 1.0; 2.0; 2.5; 5.0 ] |> List.exists (fun m -> abs (mantissa - m) < 1e-6))

          test "a single value is padded around itself" {
              for v in [ 0.0; 3.0; -2e-7; 1e9 ] do
                  let first, last = Bins.niceEnds v v
                  Expect.isTrue (first < v && last > v) $"{v}: ({first}, {last})"
          }

          Checks.forAll
              "bin counts add up to the finite values in range"
              300
              (gen {
                  let! n = Gen.choose (1, 200)
                  let! vs = Gen.arrayOfLength n value
                  let! bins = Gen.choose (1, 50)

                  let! lo, hi =
                      Gen.map2 (fun a b -> float a, float a + float b) (Gen.choose (-100, 100)) (Gen.choose (1, 200))

                  return vs, bins, lo, hi
              })
              (fun (vs, bins, lo, hi) ->
                  let counts = Bins.counts (lo, hi) bins vs

                  counts.Length = bins
                  && Array.sum counts = (vs |> Array.filter (fun v -> v >= lo && v <= hi) |> Array.length))

          test "the upper end falls in the last bin, and values outside are not counted" {
              let counts =
                  Bins.counts (0.0, 1.0) 4 [| 0.0; 0.1; 0.15; 0.5; 0.99; 1.0; nan; 2.0; -0.1 |]

              Expect.equal counts [| 3; 0; 1; 2 |] "counts per bin"
          } ]
