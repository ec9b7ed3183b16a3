/// Small random networks, data and comparisons for the tests of per-sample gradients, the Fisher,
/// EWC and SI.
module Forgetting.Tests.Nn.Nets

open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms

/// A net to build: an MLP of the given widths with ReLU, optionally a forgetting layer after each
/// hidden ReLU, and `Heads` output layers (Task-IL; 1: a single head).
type Spec =
    { Widths: int list
      Forgetting: ForgettingLayerConfig option
      Heads: int }

    override s.ToString() =
        let widths = s.Widths |> List.map string |> String.concat "-"

        let layer =
            match s.Forgetting with
            | None -> ""
            | Some c -> $", forgetting (static {c.StaticGate}, shortcut {c.Shortcut}, ρ {c.Rho})"

        $"MLP {widths}{layer}, {s.Heads} head(s)"

/// The model of a spec: fc1, relu1, forget1, …, and "out" (dense, or one dense per head).
let build (s: Spec) : Layer =
    let pairs = List.pairwise s.Widths
    let last = pairs.Length - 1

    [ for i, (fanIn, fanOut) in List.indexed pairs do
          if i < last then
              yield $"fc{i + 1}", Layer.dense fanIn fanOut
              yield $"relu{i + 1}", Layer.relu

              match s.Forgetting with
              | Some c -> yield $"forget{i + 1}", ActiveForgetting.layer c fanOut
              | None -> ()
          elif s.Heads = 1 then
              yield "out", Layer.dense fanIn fanOut
          else
              yield "out", Layer.heads (List.init s.Heads (fun _ -> Layer.dense fanIn fanOut)) ]
    |> Layer.sequential

/// The model's initial parameters moved by N(0, 0.5²) noise: W_f away from 0 (where every gate is
/// exactly ½), and units that fire for some samples and not for others.
let parameters (model: Layer) (dtype: DType) (seed: int) =
    let keys = Rng.splitN 2 (Rng.create (int64 seed))
    let p = model.Init keys[0] dtype
    let noise = Rng.splitN (Params.tensors p).Length keys[1]

    Params.tensors p
    |> Array.mapi (fun i t -> t + Tensor.normal noise[i] dtype t.Shape 0.0 0.5)
    |> Params.withTensors p

/// n inputs of the spec's width, N(0, 1).
let inputs (s: Spec) (dtype: DType) (n: int) (seed: int) =
    Tensor.normal (Rng.create (int64 seed + 7919L)) dtype [| n; s.Widths.Head |] 0.0 1.0

let private configs =
    Gen.elements
        [ None
          Some ForgettingLayerConfig.Default
          Some
              { ForgettingLayerConfig.Default with
                  Shortcut = false
                  Rho = 2.0 }
          Some
              { ForgettingLayerConfig.Default with
                  StaticGate = true } ]

/// Nets of 1 to 3 dense layers of widths 1 to 6, with or without forgetting layers, 1 to 3 heads.
let specs =
    gen {
        let! depth = Gen.choose (1, 3)
        let! widths = Gen.listOfLength (depth + 1) (Gen.choose (1, 6))
        let! forgetting = configs
        let! heads = Gen.choose (1, 3)
        // The output needs 2 classes for a softmax to have a gradient.
        let widths = List.updateAt depth (max 2 widths[depth]) widths

        return
            { Widths = widths
              Forgetting = forgetting
              Heads = heads }
    }

/// The largest |a − b| of a tensor over its largest |b| (1 when that is below 1), per tensor.
let relativeError (a: Params) (b: Params) =
    List.map2
        (fun (path, (x: Tensor)) (_, (y: Tensor)) ->
            let xs, ys = x.ToFloat64Array(), y.ToFloat64Array()
            let scale = ys |> Array.fold (fun m v -> max m (abs v)) 1.0
            path, Array.fold2 (fun m u v -> max m (abs (u - v))) 0.0 xs ys / scale)
        (Params.flatten a)
        (Params.flatten b)

/// True when every tensor of `a` is within `tolerance` of `b` relative to `b`'s largest entry (see
/// `relativeError`); prints the worst tensor otherwise.
let close (tolerance: float) (a: Params) (b: Params) =
    let errors = relativeError a b

    match errors |> List.filter (fun (_, e) -> not (e <= tolerance)) with
    | [] -> true
    | bad ->
        eprintfn "beyond %g: %A" tolerance bad
        false

/// The values of a tree, flat.
let values (p: Params) =
    Params.tensors p |> Array.collect (fun t -> t.ToFloat64Array())

/// The message of the ArgumentException that `f` raises.
let refusal (f: unit -> 'a) =
    try
        f () |> ignore
        failtest "expected an ArgumentException"
    with :? System.ArgumentException as e ->
        e.Message
