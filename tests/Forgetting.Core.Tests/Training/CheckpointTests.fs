module Forgetting.Tests.Training.CheckpointTests

open System
open System.IO
open System.Text
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Data
open Forgetting.Training
open Forgetting.Tests

// ------------------------------------------------------------------ files built by hand

let private u64 (n: int) =
    Array.init 8 (fun i -> byte ((uint64 n >>> (8 * i)) &&& 0xFFUL))

let private f32 (values: float32 list) =
    values
    |> List.toArray
    |> Array.collect (fun v ->
        let bits = BitConverter.SingleToInt32Bits v
        Array.init 4 (fun i -> byte ((bits >>> (8 * i)) &&& 0xFF)))

let private f64 (values: float list) =
    values
    |> List.toArray
    |> Array.collect (fun v ->
        let bits = BitConverter.DoubleToInt64Bits v
        Array.init 8 (fun i -> byte ((bits >>> (8 * i)) &&& 0xFFL)))

/// A file from its header length, header text (padding included) and data, as given.
let private file (length: int) (header: string) (data: byte[]) =
    Array.concat [ u64 length; Encoding.UTF8.GetBytes header; data ]

/// A file whose header is padded with spaces to 8 bytes.
let private padded (header: string) (data: byte[]) =
    let h = Encoding.UTF8.GetBytes header
    let h = Array.append h (Array.create ((8 - h.Length % 8) % 8) (byte ' '))
    Array.concat [ u64 h.Length; h; data ]

let private written (tensors: (string * Tensor) list) (metadata: (string * string) list) =
    Checkpoint.serialize tensors (Map.ofList metadata)

// ------------------------------------------------------------------ comparing

let private bits (t: Tensor) =
    match t.DType with
    | Float32 -> t.ToArray() |> Array.map (BitConverter.SingleToInt32Bits >> int64)
    | Float64 -> t.ToFloat64Array() |> Array.map BitConverter.DoubleToInt64Bits

let private same (a: (string * Tensor) list) (b: (string * Tensor) list) =
    let key (ts: (string * Tensor) list) =
        ts
        |> List.map (fun (n, t) -> n, t.DType, List.ofArray t.Shape, List.ofArray (bits t))
        |> List.sortBy (fun (n, _, _, _) -> n)

    key a = key b

// ------------------------------------------------------------------ generators

let private names =
    [ "weight"
      "bias"
      "layer1/weight"
      "layer1/bias"
      "a"
      "B"
      "quote\"name"
      "back\\slash"
      "tab\tand\nnewline"
      "ünïcödé"
      "日本"
      "emoji 😀"
      "x.y.z" ]

let private tensorGen =
    gen {
        let! f64 = Gen.elements [ false; true ]
        let! rank = Gen.choose (0, 3)
        let! shape = Gen.arrayOfLength rank (Gen.choose (0, 3))
        let n = Array.fold (*) 1 shape

        if f64 then
            let! values =
                Gen.arrayOfLength
                    n
                    (Gen.map BitConverter.Int64BitsToDouble (Gen.choose64 (Int64.MinValue, Int64.MaxValue)))

            return Tensor.ofFloat64 shape values
        else
            let! values =
                Gen.arrayOfLength
                    n
                    (Gen.map BitConverter.Int32BitsToSingle (Gen.choose (Int32.MinValue, Int32.MaxValue)))

            return Tensor.ofArray shape values
    }

let private checkpoints =
    gen {
        let! chosen = Gen.subListOf names
        let! tensors = Gen.listOfLength chosen.Length tensorGen
        let! keys = Gen.subListOf [ "epoch"; "framework"; "\"quoted\""; "ctrl\u0001"; "ß" ]

        let! values =
            Gen.listOfLength keys.Length (Gen.elements [ ""; "pt"; "3"; "line\nbreak"; "\\"; "€uro"; "\u001f" ])

        return List.zip (List.ofSeq chosen) tensors, List.zip (List.ofSeq keys) values
    }

// ------------------------------------------------------------------ refusals

/// The message of the DataError that reading `bytes` raises; checks it names the file and is one line.
let private badFile (bytes: byte[]) =
    let dir = TestData.tempDir ()
    let path = Path.Combine(dir, "bad.safetensors")
    File.WriteAllBytes(path, bytes)

    try
        Checkpoint.read path |> ignore
        failtest "expected a DataError"
    with :? DataError as e ->
        Expect.stringStarts e.Message $"{path}: " "the message names the file"
        Expect.isFalse (e.Message.Contains '\n') "one line"
        Expect.equal e.Path path "the error's path"
        e.Message

let private refusal (f: unit -> 'a) =
    try
        f () |> ignore
        failtest "expected an ArgumentException"
    with :? ArgumentException as e ->
        e.Message

let private entry (name: string) (dtype: string) (shape: string) (b: int) (e: int) =
    $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{shape}],\"data_offsets\":[{b},{e}]}}"

[<Tests>]
let tests =
    testList
        "safetensors checkpoints"
        [ Checks.forAll
              "write then read gives the same tensors, bit for bit, and metadata"
              200
              checkpoints
              (fun (tensors, metadata) ->
                  let dir = TestData.tempDir ()
                  let path = Path.Combine(dir, "c.safetensors")
                  Checkpoint.write path tensors (Map.ofList metadata)
                  let c = Checkpoint.read path

                  same c.Tensors tensors
                  && c.Metadata = Map.ofList metadata
                  && List.map fst c.Tensors =
                      (List.map fst tensors
                       |> List.sortWith (fun a b ->
                           compare
                               (Encoding.UTF8.GetBytes a |> List.ofArray)
                               (Encoding.UTF8.GetBytes b |> List.ofArray))))

          Checks.forAll
              "the header is padded with spaces to 8 bytes and the tensors fill the rest"
              200
              checkpoints
              (fun (tensors, metadata) ->
                  let bytes = written tensors metadata
                  let n = int (BitConverter.ToUInt64(bytes, 0))
                  let header = Encoding.UTF8.GetString(bytes, 8, n)

                  let bytesOf (t: Tensor) =
                      t.Numel * (if t.DType = Float32 then 4 else 8)

                  n % 8 = 0
                  && header.StartsWith '{'
                  && header.TrimEnd(' ').EndsWith '}'
                  && bytes.Length = 8 + n + List.sumBy (snd >> bytesOf) tensors)

          test "a float32 tensor, byte for byte as the reference writer lays it out" {
              let t = Tensor.ofArray [| 1; 2; 3 |] [| 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f |]

              let expected =
                  file
                      64
                      """{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"""
                      (f32 [ 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f ])

              Expect.equal (written [ "attn.0", t ] []) expected "no padding needed: 64 bytes"

              let t = Tensor.ofArray [| 1; 1; 2; 3 |] [| 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f |]

              let expected =
                  file
                      72
                      """{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       """
                      (f32 [ 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f ])

              Expect.equal (written [ "attn0", t ] []) expected "65 bytes of JSON, 7 spaces"
          }

          test "no tensors, with and without metadata" {
              Expect.equal (written [] []) (file 8 "{}      " [||]) "{} and 6 spaces"

              Expect.equal
                  (written [] [ "framework", "pt" ])
                  (file 40 """{"__metadata__":{"framework":"pt"}}     """ [||])
                  "metadata only, 5 spaces"

              let c = Checkpoint.deserialize "empty" (file 8 "{}      " [||])
              Expect.isEmpty c.Tensors "no tensors"
              Expect.isEmpty c.Metadata "no metadata"
          }

          test "float64 before float32, each by name; a scalar; a 0-sized tensor; metadata first, keys sorted" {
              let tensors =
                  [ "b", Tensor.ofArray [| 2 |] [| 1.5f; -2.0f |]
                    "z", Tensor.ofFloat64 [| 2 |] [| Math.PI; -0.0 |]
                    "a", Tensor.ofArray [| 0; 3 |] [||]
                    "c", Tensor.scalar Float64 42.0 ]

              let header =
                  """{"__metadata__":{"epoch":"3","step":"12"},"c":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"F64","shape":[2],"data_offsets":[8,24]},"a":{"dtype":"F32","shape":[0,3],"data_offsets":[24,24]},"b":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}}    """

              let expected =
                  file 264 header (Array.concat [ f64 [ 42.0 ]; f64 [ Math.PI; -0.0 ]; f32 [ 1.5f; -2.0f ] ])

              let bytes = written tensors [ "step", "12"; "epoch", "3" ]
              Expect.equal bytes expected "the reference writer's order"

              let c = Checkpoint.deserialize "mixed" bytes
              Expect.equal (c.Tensors |> List.map fst) [ "a"; "b"; "c"; "z" ] "read back by name"
              Expect.isTrue (same c.Tensors tensors) "the same tensors"
              Expect.equal (snd c.Tensors[2]).Shape [||] "a scalar has shape []"
              Expect.equal (snd c.Tensors[2]).Item 42.0 "its value"
              Expect.equal (snd c.Tensors[0]).Shape [| 0; 3 |] "a 0-sized tensor keeps its shape"
              Expect.equal c.Metadata (Map.ofList [ "epoch", "3"; "step", "12" ]) "metadata"
          }

          test "names and metadata are escaped as JSON and read back" {
              let bytes =
                  written [ "q\"\\\n\u0001é", Tensor.scalar Float32 1.0 ] [ "k", "v\"\t\u001f" ]

              let n = int (BitConverter.ToUInt64(bytes, 0))
              let header = Encoding.UTF8.GetString(bytes, 8, n)

              Expect.stringContains
                  header
                  "\"q\\\"\\\\\\n\\u0001é\":{"
                  "quote, backslash and control characters escaped, the rest as UTF-8"

              Expect.stringContains header "\"k\":\"v\\\"\\t\\u001f\"" "metadata escaped"
              let c = Checkpoint.deserialize "escaped" bytes
              Expect.equal (fst c.Tensors[0]) "q\"\\\n\u0001é" "the name"
              Expect.equal c.Metadata["k"] "v\"\t\u001f" "the value"
          }

          test "a file from another writer: tensors in any order, offsets in any order, extra spaces" {
              let header =
                  "{ "
                  + entry "w" "F32" "2" 8 16
                  + ", "
                  + entry "v" "F64" "1" 0 8
                  + ", \"__metadata__\": {\"format\": \"pt\"} }"

              let bytes = padded header (Array.append (f64 [ 2.5 ]) (f32 [ 1.0f; -1.0f ]))
              let c = Checkpoint.deserialize "other" bytes
              Expect.equal (c.Tensors |> List.map fst) [ "v"; "w" ] "both tensors"
              Expect.equal ((snd c.Tensors[0]).ToFloat64Array()) [| 2.5 |] "v"
              Expect.equal ((snd c.Tensors[1]).ToArray()) [| 1.0f; -1.0f |] "w"
              Expect.equal c.Metadata (Map.ofList [ "format", "pt" ]) "metadata"
          }

          test "writing is atomic: no temporary file is left, an existing file is replaced" {
              let dir = TestData.tempDir ()
              let path = Path.Combine(dir, "model.safetensors")
              Checkpoint.write path [ "a", Tensor.scalar Float32 1.0 ] Map.empty
              Checkpoint.write path [ "b", Tensor.scalar Float32 2.0 ] Map.empty
              Expect.equal (Directory.GetFiles dir |> Array.map Path.GetFileName) [| "model.safetensors" |] "one file"
              Expect.equal ((Checkpoint.read path).Tensors |> List.map fst) [ "b" ] "the second write"

              Expect.throws
                  (fun () -> Checkpoint.write path [ "", Tensor.scalar Float32 1.0 ] Map.empty)
                  "an empty name is refused"

              Expect.equal ((Checkpoint.read path).Tensors |> List.map fst) [ "b" ] "a refused write leaves the file"
              Expect.equal (Directory.GetFiles dir).Length 1 "and no temporary file"
          }

          test "parameter trees: names are the tree's paths" {
              let model =
                  Layer.sequential
                      [ "hidden", Layer.dense 3 4
                        "relu", Layer.relu
                        "out", Layer.heads [ Layer.dense 4 2; Layer.dense 4 3 ] ]

              let p = model.Init (Rng.create 1L) Float32
              let named = Checkpoint.ofParams p

              Expect.equal
                  (named |> List.map fst)
                  [ "hidden/bias"
                    "hidden/weight"
                    "out/head1/bias"
                    "out/head1/weight"
                    "out/head2/bias"
                    "out/head2/weight" ]
                  "paths"

              Expect.equal (Checkpoint.toParams named |> Params.flatten |> List.map fst) (List.map fst named) "rebuilt"

              let dir = TestData.tempDir ()
              let path = Path.Combine(dir, "p.safetensors")
              Checkpoint.writeParams path p (Map.ofList [ "task", "2" ])
              let back, metadata = Checkpoint.readParams path
              Expect.isTrue (same (Params.flatten back) named) "the same tree"
              Expect.equal metadata (Map.ofList [ "task", "2" ]) "metadata"

              let like, _ = Checkpoint.readParamsLike p path
              Expect.isTrue (same (Params.flatten like) named) "restored into the model's tree"

              let other =
                  (Layer.sequential [ "hidden", Layer.dense 3 5 ]).Init (Rng.create 1L) Float32

              Checkpoint.writeParams path other Map.empty

              Expect.throwsC (fun () -> Checkpoint.readParamsLike p path |> ignore) (fun e ->
                  Expect.stringContains e.Message "tensor 'hidden/bias' is F32 [5], the model's is F32 [4]" "shape")

              Checkpoint.write path (named @ [ "extra", Tensor.scalar Float32 0.0 ]) Map.empty

              Expect.throwsC (fun () -> Checkpoint.readParamsLike p path |> ignore) (fun e ->
                  Expect.stringContains e.Message "tensor 'extra' is not one of the model's parameters" "extra")

              Checkpoint.write path named.Tail Map.empty

              Expect.throwsC (fun () -> Checkpoint.readParamsLike p path |> ignore) (fun e ->
                  Expect.stringContains e.Message "the file has no tensor 'hidden/bias'" "missing")

              Expect.stringContains
                  (refusal (fun () ->
                      Checkpoint.toParams [ "a", Tensor.scalar Float32 0.0; "a/b", Tensor.scalar Float32 0.0 ]))
                  "'a' is both a tensor and a folder"
                  "a leaf and a branch"

              Expect.stringContains
                  (refusal (fun () -> Checkpoint.toParams [ "a//b", Tensor.scalar Float32 0.0 ]))
                  "not a parameter path"
                  "an empty segment"

              Expect.stringContains
                  (refusal (fun () -> Checkpoint.ofParams (Leaf(Tensor.scalar Float32 0.0))))
                  "a tree of named tensors"
                  "a bare tensor"
          }

          test "tensors a checkpoint cannot name are refused" {
              let t = Tensor.scalar Float32 0.0
              Expect.stringContains (refusal (fun () -> written [ "a", t; "a", t ] [])) "names tensor 'a' twice" "twice"
              Expect.stringContains (refusal (fun () -> written [ "__metadata__", t ] [])) "keeps that key" "reserved"
              Expect.stringContains (refusal (fun () -> written [ "", t ] [])) "non-empty names" "empty"
          }

          test "bad files are refused with a one-line message naming the file" {
              let good =
                  written
                      [ "a", Tensor.ofArray [| 2 |] [| 1.0f; 2.0f |]
                        "b", Tensor.ofArray [| 1 |] [| 3.0f |] ]
                      []

              let header (h: string) (data: byte[]) = padded ("{" + h + "}") data

              Expect.stringContains
                  (badFile [| 1uy; 2uy; 3uy |])
                  "8-byte header length, the file has 3 bytes"
                  "too short"

              Expect.stringContains (badFile good[.. good.Length - 2]) "beyond the 11 bytes of data" "truncated data"
              Expect.stringContains (badFile good[..20]) "goes beyond the end of the file" "truncated header"

              Expect.stringContains
                  (badFile (Array.append (u64 1_000_000) (Array.create 64 (byte ' '))))
                  "header length 1000000 goes beyond the end of the file (72 bytes"
                  "a header length beyond the file"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "2" 0 8 + "," + entry "b" "F32" "1" 8 16) (Array.zeroCreate 12)))
                  "tensor 'b' has data_offsets [8, 16] beyond the 12 bytes of data"
                  "offsets out of range"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "2" 0 8 + "," + entry "b" "F32" "2" 4 12) (Array.zeroCreate 12)))
                  "tensors 'a' and 'b' overlap"
                  "overlapping offsets"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "1" 0 4 + "," + entry "b" "F32" "1" 8 12) (Array.zeroCreate 12)))
                  "bytes 4 … 7 of the data belong to no tensor (before tensor 'b')"
                  "a gap"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "1" 0 4) (Array.zeroCreate 8)))
                  "bytes 4 … 7 of the data, after the last tensor, belong to no tensor"
                  "bytes after the last tensor"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "3" 0 8) (Array.zeroCreate 8)))
                  "tensor 'a' of shape [3] and dtype F32 needs 12 bytes, its data_offsets [0, 8] hold 8"
                  "shape and offsets disagree"

              Expect.stringContains
                  (badFile (header (entry "a" "F17" "1" 0 4) (Array.zeroCreate 4)))
                  "tensor 'a': unknown dtype F17"
                  "an unknown dtype"

              Expect.stringContains
                  (badFile (header (entry "a" "BF16" "2" 0 4) (Array.zeroCreate 4)))
                  "dtype BF16 is not supported (only F32 and F64 are)"
                  "a dtype of the format this library does not read"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "-1" 0 4) (Array.zeroCreate 4)))
                  "\"shape\" holds -1, not a non-negative integer"
                  "a negative dimension"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "1" 4 0) (Array.zeroCreate 4)))
                  "data_offsets [4, 0] end before they begin"
                  "reversed offsets"

              Expect.stringContains
                  (badFile (header "\"a\":{\"dtype\":\"F32\",\"shape\":[1]}" (Array.zeroCreate 4)))
                  "has no \"data_offsets\""
                  "a missing field"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "1" 0 4 + "," + entry "a" "F32" "1" 4 8) (Array.zeroCreate 8)))
                  "names 'a' twice"
                  "a name twice"

              Expect.stringContains
                  (badFile (header "\"__metadata__\":{\"epoch\":3}" [||]))
                  "maps 'epoch' to 3, not a string"
                  "metadata that is not strings"

              Expect.stringContains
                  (badFile (header "\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}" [||]))
                  "\"__metadata__\" names 'k' twice"
                  "a metadata key twice"

              Expect.stringContains
                  (badFile (header (entry "a" "F32" "2147483647,2147483647,2147483647" 0 4) (Array.zeroCreate 4)))
                  "has more elements than a file can hold"
                  "a shape whose element count overflows"

              Expect.stringContains (badFile (padded "{\"a\":" [||])) "not valid JSON" "not JSON"
              Expect.stringContains (badFile (padded "[1, 2]  " [||])) "does not start with '{'" "not an object"

              Expect.stringContains
                  (badFile (Array.concat [ u64 8; [| byte '{'; 0xFFuy; byte '}' |]; Array.create 5 (byte ' ') ]))
                  "not valid UTF-8"
                  "not UTF-8"

              let missing = Path.Combine(TestData.tempDir (), "none.safetensors")

              Expect.throwsC (fun () -> Checkpoint.read missing |> ignore) (fun e ->
                  Expect.equal e.Message $"{missing}: no such checkpoint file" "a missing file")
          } ]
