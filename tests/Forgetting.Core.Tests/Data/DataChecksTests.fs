/// Properties of the checks on what comes in from outside (issue #15): any bytes given as an IDX file
/// are parsed or refused with a DataError, never another exception and never an allocation of what a
/// header merely claims; and a recipe's numbers come back from JSON bit for bit.
module Forgetting.Tests.Data.DataChecksTests

open System
open System.Text.Json.Nodes
open Expecto
open FsCheck.FSharp
open Forgetting.Data
open Forgetting.Experiments
open Forgetting.Tests
open Forgetting.Tests.TestData

let private bigEndian (n: int) =
    [| byte (n >>> 24); byte (n >>> 16); byte (n >>> 8); byte n |]

/// An IDX image file: a header claiming `count` images of rows × columns, then `data` bytes.
let private imageFile (count: int) (rows: int) (columns: int) (data: byte[]) =
    Array.concat
        [ bigEndian Idx.ImagesMagic
          bigEndian count
          bigEndian rows
          bigEndian columns
          data ]

/// Headers that claim anything from nothing to 2³¹ − 1 images, over data that may or may not match.
let private claims =
    gen {
        let! count =
            Gen.oneof [ Gen.choose (0, 8); Gen.elements [ 1_000_000; 2_700_000; Int32.MaxValue ] ]

        let! rows =
            Gen.oneof [ Gen.choose (0, 4); Gen.elements [ 28; 65_536; Int32.MaxValue ] ]

        let! columns = Gen.choose (0, 4)
        let! length = Gen.choose (0, 64)
        let! data = Gen.arrayOfLength length (Gen.choose (0, 255) |> Gen.map byte)
        return count, rows, columns, data
    }

/// Whether parsing gives a result or a DataError (true), or something else escapes (false).
let private parsedOrRefused (parse: unit -> 'a) =
    try
        parse () |> ignore
        true
    with
    | :? DataError -> true
    | e -> failtest $"{e.GetType().Name}: {e.Message}"

let private finiteFloats =
    Gen.oneof
        [ Gen.choose (-1000, 1000) |> Gen.map (fun k -> float k / 7.0)
          Gen.elements [ 1e-7; 1e-300; 5e-324; 1.0 / 3.0; 0.1 + 0.2; 1e308; Double.Epsilon ]
          Gen.choose (-300, 300)
          |> Gen.map (fun e -> 1.2345678901234567 * 10.0 ** float e) ]

[<Tests>]
let tests =
    testList
        "checks on what comes in"
        [ Checks.forAll
              "any IDX image header over any data is parsed or refused, never more"
              300
              claims
              (fun (count, rows, columns, data) ->
                  parsedOrRefused (fun () -> Idx.parseImages "claims.idx" (imageFile count rows columns data)))

          Checks.forAll
              "a valid IDX image file cut short anywhere is refused with a DataError"
              200
              (gen {
                  let! rows = Gen.choose (1, 5)
                  let! columns = Gen.choose (1, 5)
                  let! count = Gen.choose (1, 6)
                  let! seed = Gen.choose (0, 10000)
                  let pixels, _ = images seed count rows columns 10
                  let file = imageFile count rows columns pixels
                  let! cut = Gen.choose (0, file.Length - 1)
                  return file[.. cut - 1]
              })
              (fun truncated ->
                  try
                      Idx.parseImages "cut.idx" truncated |> ignore
                      false
                  with :? DataError ->
                      true)

          Checks.forAll
              "any bytes as an IDX label file are parsed or refused, never more"
              300
              (Gen.arrayOf (Gen.choose (0, 255) |> Gen.map byte))
              (fun bytes -> parsedOrRefused (fun () -> Idx.parseLabels "labels.idx" 10 bytes))

          Checks.forAll
              "a recipe's numbers come back from its JSON bit for bit"
              300
              (Gen.zip3 finiteFloats finiteFloats (Gen.choose (0, 999) |> Gen.map (fun k -> float k / 1000.0)))
              (fun (lr, decay, momentum) ->
                  let r =
                      { Recipe.defaults with
                          Optimizer =
                              { Recipe.defaults.Optimizer with
                                  Lr = lr
                                  WeightDecay = decay
                                  Momentum = momentum } }

                  let back = Recipe.ofJson Catalog.terms (JsonNode.Parse(Recipe.toText r))

                  BitConverter.DoubleToInt64Bits back.Optimizer.Lr = BitConverter.DoubleToInt64Bits lr
                  && BitConverter.DoubleToInt64Bits back.Optimizer.WeightDecay = BitConverter.DoubleToInt64Bits decay
                  && back.Optimizer.Momentum = momentum) ]
