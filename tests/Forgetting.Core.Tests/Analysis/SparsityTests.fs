module Forgetting.Tests.Analysis.SparsityTests

open System
open Expecto
open FsCheck.FSharp
open Forgetting.Analysis
open Forgetting.Tests

/// Non-negative activations of 2 to 64 units.
let private activations =
    gen {
        let! n = Gen.choose (2, 64)
        let positive = Gen.choose (1, 10000) |> Gen.map (fun i -> float i / 1000.0)
        return! Gen.arrayOfLength n (Gen.frequency [ 1, Gen.constant 0.0; 3, positive ])
    }

/// The message of the ArgumentException (exactly that type, as xunit's Assert.Throws had it) that `f` raises.
let private refusal (f: unit -> 'a) =
    (Expectations.throws<ArgumentException> "an ArgumentException" (fun () -> f () |> ignore)).Message

[<Tests>]
let tests =
    testList
        "Treves-Rolls sparsity"
        [ Checks.forAll "sparsity lies in [0, 1]" 100 activations (fun r ->
              let s = Sparsity.trevesRolls r
              s >= 0.0 && s <= 1.0)

          Checks.forAll
              "scaling every activation, to 1e200 or 1e-200, leaves the sparsity as it is"
              100
              activations
              (fun r ->
                  let s = Sparsity.trevesRolls r

                  [ 1e200; 1e-200 ]
                  |> List.forall (fun k -> abs (Sparsity.trevesRolls (Array.map ((*) k) r) - s) < 1e-12))

          Checks.forAll
              "uniform activations give 0"
              100
              (Gen.zip (Gen.choose (2, 200)) (Gen.choose (0, 1000)))
              (fun (n, v) -> Sparsity.trevesRolls (Array.create n (float v / 7.0)) = 0.0)

          Checks.forAll
              "a single active unit gives 1"
              100
              (Gen.choose (2, 200)
               |> Gen.bind (fun n -> Gen.map2 (fun i v -> n, i, v) (Gen.choose (0, n - 1)) (Gen.choose (1, 1000))))
              (fun (n, i, v) ->
                  let r = Array.zeroCreate n
                  r[i] <- float v
                  abs (Sparsity.trevesRolls r - 1.0) < 1e-12)

          Checks.forAll
              "k equally active units of N give (1 - k/N) / (1 - 1/N)"
              100
              (Gen.choose (2, 100)
               |> Gen.bind (fun n -> Gen.map (fun k -> n, k) (Gen.choose (1, n))))
              (fun (n, k) ->
                  let r = Array.init n (fun i -> if i < k then 3.0 else 0.0)
                  let expected = (1.0 - float k / float n) / (1.0 - 1.0 / float n)
                  abs (Sparsity.trevesRolls r - expected) < 1e-12)

          Checks.forAll
              "sparsity does not depend on the order of units or their scale"
              100
              (gen {
                  let! r = activations
                  let! shuffled = Gen.shuffle r
                  let! c = Gen.choose (1, 100)
                  return r, shuffled, c
              })
              (fun (r, shuffled, c) ->
                  let s = Sparsity.trevesRolls r
                  let scaled = r |> Array.map (fun x -> x * float c)

                  abs (Sparsity.trevesRolls shuffled - s) < 1e-12
                  && abs (Sparsity.trevesRolls scaled - s) < 1e-9)

          test "from activations it is the sparsity of the column means" {
              let acts = array2D [ [ 1.0; 0.0; 2.0 ]; [ 3.0; 0.0; 0.0 ] ]
              Expect.equal (Sparsity.unitMeans acts) [| 2.0; 0.0; 1.0 |] "column means"

              Expect.equal
                  (Sparsity.ofActivations acts)
                  (Sparsity.trevesRolls [| 2.0; 0.0; 1.0 |])
                  "sparsity of the means"
          }

          test "bad input is refused with a message that says why" {
              Expect.stringContains (refusal (fun () -> Sparsity.trevesRolls [| 1.0 |])) "at least 2 units" "one unit"

              Expect.stringContains
                  (refusal (fun () -> Sparsity.trevesRolls [| 1.0; -0.5 |]))
                  "unit 1 has -0.5"
                  "a negative unit"

              Expect.stringContains (refusal (fun () -> Sparsity.trevesRolls [| nan; 1.0 |])) "non-negative" "NaN"
          } ]
