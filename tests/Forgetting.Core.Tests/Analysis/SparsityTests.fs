module Forgetting.Tests.Analysis.SparsityTests

open System
open FsCheck.FSharp
open Xunit
open Forgetting.Analysis
open Forgetting.Tests

/// Non-negative activations of 2 to 64 units.
let private activations =
    gen {
        let! n = Gen.choose (2, 64)
        let positive = Gen.choose (1, 10000) |> Gen.map (fun i -> float i / 1000.0)
        return! Gen.arrayOfLength n (Gen.frequency [ 1, Gen.constant 0.0; 3, positive ])
    }

[<Fact>]
let ``sparsity lies in [0, 1]`` () =
    Checks.forAll activations (fun r ->
        let s = Sparsity.trevesRolls r
        s >= 0.0 && s <= 1.0)

[<Fact>]
let ``uniform activations give 0`` () =
    Checks.forAll (Gen.zip (Gen.choose (2, 200)) (Gen.choose (0, 1000))) (fun (n, v) ->
        Sparsity.trevesRolls (Array.create n (float v / 7.0)) = 0.0)

[<Fact>]
let ``a single active unit gives 1`` () =
    Checks.forAll
        (Gen.choose (2, 200)
         |> Gen.bind (fun n -> Gen.map2 (fun i v -> n, i, v) (Gen.choose (0, n - 1)) (Gen.choose (1, 1000))))
        (fun (n, i, v) ->
            let r = Array.zeroCreate n
            r[i] <- float v
            abs (Sparsity.trevesRolls r - 1.0) < 1e-12)

[<Fact>]
let ``k equally active units of N give (1 - k/N) / (1 - 1/N)`` () =
    Checks.forAll
        (Gen.choose (2, 100)
         |> Gen.bind (fun n -> Gen.map (fun k -> n, k) (Gen.choose (1, n))))
        (fun (n, k) ->
            let r = Array.init n (fun i -> if i < k then 3.0 else 0.0)
            let expected = (1.0 - float k / float n) / (1.0 - 1.0 / float n)
            abs (Sparsity.trevesRolls r - expected) < 1e-12)

[<Fact>]
let ``sparsity does not depend on the order of units or their scale`` () =
    let cases =
        gen {
            let! r = activations
            let! shuffled = Gen.shuffle r
            let! c = Gen.choose (1, 100)
            return r, shuffled, c
        }

    Checks.forAll cases (fun (r, shuffled, c) ->
        let s = Sparsity.trevesRolls r
        let scaled = r |> Array.map (fun x -> x * float c)

        abs (Sparsity.trevesRolls shuffled - s) < 1e-12
        && abs (Sparsity.trevesRolls scaled - s) < 1e-9)

[<Fact>]
let ``from activations it is the sparsity of the column means`` () =
    let acts = array2D [ [ 1.0; 0.0; 2.0 ]; [ 3.0; 0.0; 0.0 ] ]
    Assert.Equal<float[]>([| 2.0; 0.0; 1.0 |], Sparsity.unitMeans acts)
    Assert.Equal(Sparsity.trevesRolls [| 2.0; 0.0; 1.0 |], Sparsity.ofActivations acts)

[<Fact>]
let ``bad input is refused with a message that says why`` () =
    let one =
        Assert.Throws<ArgumentException>(fun () -> Sparsity.trevesRolls [| 1.0 |] |> ignore)

    Assert.Contains("at least 2 units", one.Message)

    let negative =
        Assert.Throws<ArgumentException>(fun () -> Sparsity.trevesRolls [| 1.0; -0.5 |] |> ignore)

    Assert.Contains("unit 1 has -0.5", negative.Message)

    let nan =
        Assert.Throws<ArgumentException>(fun () -> Sparsity.trevesRolls [| nan; 1.0 |] |> ignore)

    Assert.Contains("non-negative", nan.Message)
