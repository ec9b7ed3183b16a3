/// The shared gradient check: reverse-mode gradients against central finite differences, in float64.
module Forgetting.Tests.Tensors.GradCheck

open System
open FsCheck.FSharp
open Forgetting.Tensors

/// Step of the central difference; its truncation error is O(h²) ≈ 1e-12 and its rounding error
/// about 1e-16/h ≈ 1e-10 relative to f, so 1e-6 absolute + 1e-5 relative is a safe, still sharp bound.
let step = 1e-6
let absTol = 1e-6
let relTol = 1e-5

/// The largest violation of |ad − fd| ≤ absTol + relTol·max(|ad|, |fd|) over every input element,
/// with a description of where it happens; None when every element passes.
let compare (f: Tensor[] -> Tensor) (xs: Tensor[]) : string option =
    let ad = Tensor.grads f xs |> Array.map (fun g -> g.ToFloat64Array())
    let values = xs |> Array.map (fun x -> x.ToFloat64Array())

    let evalAt (input: int) (element: int) (delta: float) =
        let moved =
            xs
            |> Array.mapi (fun i x ->
                if i <> input then
                    x
                else
                    let v = Array.copy values[i]
                    v[element] <- v[element] + delta
                    Tensor.ofFloat64 x.Shape v)

        (f moved).Item

    seq {
        for i in 0 .. xs.Length - 1 do
            for e in 0 .. values[i].Length - 1 do
                let fd = (evalAt i e step - evalAt i e -step) / (2.0 * step)
                let a = ad[i][e]
                let bound = absTol + relTol * max (abs a) (abs fd)

                if not (abs (a - fd) <= bound) then
                    yield $"input {i} element {e}: reverse mode {a:G10}, finite difference {fd:G10}"
    }
    |> Seq.tryHead

/// True when the gradients agree; a failure message with the counterexample otherwise (FsCheck prints
/// the inputs, this prints where they disagree).
let agrees (f: Tensor[] -> Tensor) (xs: Tensor[]) =
    match compare f xs with
    | None -> true
    | Some where ->
        eprintfn "gradient check failed: %s" where
        false

/// A float64 tensor of the shape with values from a seed, drawn in [lo, hi] and kept at least `gap`
/// away from 0 in absolute value when gap > 0 (away from the kink of abs, relu, max).
let tensor (seed: int) (shape: int[]) (lo: float) (hi: float) (gap: float) =
    let u = Rng.uniform (Shape.numel shape) (Rng.create (int64 seed))

    u
    |> Array.map (fun v ->
        let x = lo + (hi - lo) * v

        if gap > 0.0 && abs x < gap then
            (if x < 0.0 then -gap else gap)
        else
            x)
    |> Tensor.ofFloat64 shape

/// Shapes of rank 1 to 3, sizes 1 to 4.
let shapes =
    gen {
        let! rank = Gen.choose (1, 3)
        return! Gen.arrayOfLength rank (Gen.choose (1, 4))
    }

/// A shape and another that broadcasts against it: some axes set to 1, some leading axes dropped.
let broadcastPairs =
    gen {
        let! a = shapes
        let! ones = Gen.arrayOfLength a.Length (Gen.elements [ false; true ])
        let! drop = Gen.choose (0, a.Length - 1)
        let b = a |> Array.mapi (fun i d -> if ones[i] then 1 else d)
        let! swap = Gen.elements [ false; true ]
        let b = b[drop..]
        return if swap then b, a else a, b
    }

let seeds = Gen.choose (0, Int32.MaxValue)
