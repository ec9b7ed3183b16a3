namespace Forgetting.Nn

open System.Collections.Generic
open Forgetting.Tensors

/// The function f applied to each per-sample gradient before the sum over samples. It is
/// multiplicative, f(a·b) = f(a)·f(b), which is what lets the sums of a dense layer skip the loop:
/// Σ_b f(a_b ⊗ g_b) = f(A)ᵀ f(G).
[<RequireQualifiedAccess>]
type SampleMap =
    /// g²: the diagonal Fisher information (Kirkpatrick et al. 2017, the F_i of eq. 3).
    | Square
    /// |g|: the importance of Memory Aware Synapses (Aljundi et al. 2018, eq. 4).
    | Abs

    member f.Apply(t: Tensor) =
        match f with
        | Square -> Tensor.square t
        | Abs -> Tensor.abs t

/// One per-sample quantity of a chunk of samples, whose per-sample parameter gradients are summed:
/// its values ℓ [B], each computed from its own sample's output alone, and optional weights w [B]
/// (constants: no gradient is taken through them).
type SampleLoss =
    { Values: Tensor
      Weights: Tensor option }

/// Sums over the samples of a data set of f(per-sample gradient), for every parameter of a model:
/// Σ_b Σ_j w_jb f(∂ℓ_jb/∂θ) for the per-sample quantities ℓ_j that `losses` computes from the outputs.
///
/// A layer records in its trace, for each parameter it can, the rule by which that parameter's
/// per-sample gradient follows from the gradient G = ∂(Σ_b ℓ_b)/∂z at a tracked output z of the layer
/// (`TraceKind.Gradient`, see `SampleGradient`). One backward pass per quantity ℓ_j gives every G;
/// then `Outer a` sums as f(a)ᵀ (w ⊙ f(G)) (one matrix product), `Rows` as Σ_b w_b f(g_b), and
/// `Scaled c` as Σ_b w_b f(g_b ⊙ c_b). Several quantities (the classes of the true Fisher) add their
/// w ⊙ f(G) before the rule is applied, so a layer still costs one matrix product per chunk.
///
/// Every other parameter the outputs depend on (a static forgetting gate, the input gate outside
/// evaluation mode, a convolution) falls back to an exact loop: one forward and backward pass per
/// sample. Parameters the outputs do not depend on (the heads of other tasks) get zeros without a
/// pass. A rule recorded twice for one parameter (a layer applied twice) is not a per-sample split
/// either: that parameter takes the loop as well.
///
/// Valid only when samples do not interact in the forward pass: G's row b must be sample b's own
/// gradient. Batch statistics (batch normalisation) or a loss over the whole batch would break it.
/// Evaluation mode guarantees it for the layers of this library (no dropout, no layer normalises over
/// the batch); `losses` must compute each ℓ_b from row b of the outputs alone (log-softmax over
/// classes does).
[<RequireQualifiedAccess>]
module SampleGradients =

    /// How many samples one forward pass takes: bounds the memory of a pass (the trace and the
    /// gradients at every layer's output) while keeping the matrix products large.
    let defaultChunk = 256

    let private joinPath (prefix: string) (name: string) =
        if prefix = "" then name else prefix + "/" + name

    /// Which of `vars` the tracked outputs depend on, by a walk of the tape from the outputs.
    let private reached (outputs: Tensor[]) (vars: Tensor[]) =
        let seen = HashSet<Node>(HashIdentity.Reference)
        let stack = Stack<Tensor>()

        for o in outputs do
            if o.IsTracked then
                stack.Push o

        while stack.Count > 0 do
            let t = stack.Pop()

            if seen.Add t.Node then
                for parent in t.Node.Parents do
                    if parent.IsTracked then
                        stack.Push parent

        vars |> Array.map (fun v -> v.IsTracked && seen.Contains v.Node)

    /// The per-sample quantities of a chunk of `rows` samples, checked.
    let private quantities (losses: int -> Tensor -> SampleLoss list) (start: int) (rows: int) (outputs: Tensor) =
        let ls = losses start outputs |> Array.ofList

        if ls.Length = 0 then
            invalidArg (nameof losses) "the per-sample losses are empty: return at least one quantity per chunk"

        for l in ls do
            if l.Values.Shape <> [| rows |] then
                invalidArg
                    (nameof losses)
                    $"a per-sample quantity has shape {Shape.show l.Values.Shape} for a chunk of {rows} samples: return one value per sample, shape [{rows}]"

            match l.Weights with
            | Some w when w.Shape <> [| rows |] ->
                invalidArg
                    (nameof losses)
                    $"per-sample weights have shape {Shape.show w.Shape} for a chunk of {rows} samples: give one weight per sample, shape [{rows}]"
            | _ -> ()

        ls

    /// The rules of a trace that give a parameter its per-sample gradients: (parameter index, rule,
    /// tracked output), for parameters named by exactly one rule.
    let private rulesOf (paths: string[]) (trace: TraceEntry list) =
        let index = paths |> Array.mapi (fun i path -> path, i) |> dict

        let found =
            trace
            |> List.choose (fun e ->
                match e.Kind with
                | Gradient(param, rule) ->
                    let path = joinPath e.Path param

                    match index.TryGetValue path with
                    | true, i -> Some(i, rule, e.Value)
                    | _ ->
                        invalidArg
                            "model"
                            $"the layer at '{e.Path}' records per-sample gradients of '{param}', which is not one of the model's parameters ('{path}' is not in the tree)"
                | _ -> None)

        let counts = found |> List.countBy (fun (i, _, _) -> i) |> dict
        found |> List.filter (fun (i, _, _) -> counts[i] = 1) |> Array.ofList

    /// Σ_j w_j ⊙ f(G_j) for the gradients G_j [B, n] of the quantities at one output.
    let private weighted (f: SampleMap) (ls: SampleLoss[]) (grads: Tensor[]) =
        Array.map2
            (fun (l: SampleLoss) (g: Tensor) ->
                let fg = f.Apply g

                match l.Weights with
                | None -> fg
                | Some w ->
                    let column = Array.append [| g.Shape[0] |] (Array.create (g.Rank - 1) 1)
                    fg * Tensor.reshape column (w.StopGradient()))
            ls
            grads
        |> Array.reduce (+)

    /// One parameter's sum over the chunk from S = Σ_j w_j ⊙ f(G_j) at the output its rule names.
    let private applyRule (f: SampleMap) (path: string) (shape: int[]) (rule: SampleGradient) (s: Tensor) =
        let result =
            match rule with
            | Outer input ->
                let a = f.Apply(input.StopGradient())

                if a.Rank <> 2 || s.Rank <> 2 || a.Shape[0] <> s.Shape[0] then
                    invalidArg
                        "model"
                        $"'{path}': an outer-product rule needs an input [B, in] and an output [B, out], got {Shape.show a.Shape} and {Shape.show s.Shape}"

                Tensor.OfRaw(a.Raw.MatMul(true, s.Raw, false))
            | Rows -> Tensor.sumAxis 0 false s
            | Scaled factor -> Tensor.sumAxis 0 false (s * f.Apply(factor.StopGradient()))

        if result.Shape <> shape then
            invalidArg
                "model"
                $"'{path}': its per-sample rule gives shape {Shape.show result.Shape} for a parameter of shape {Shape.show shape}"

        result

    let private add (acc: Tensor option[]) (i: int) (t: Tensor) =
        acc[i] <-
            match acc[i] with
            | None -> Some t
            | Some s -> Some(s + t)

    /// The exact loop over the samples of a chunk for the parameters `which`.
    let private loopChunk
        (f: SampleMap)
        (model: Layer)
        (mode: Mode)
        (losses: int -> Tensor -> SampleLoss list)
        (p: Params)
        (which: int[])
        (start: int)
        (x: Tensor)
        (acc: Tensor option[])
        =
        if which.Length > 0 then
            let leaves = Params.tensors p

            for b in 0 .. x.Shape[0] - 1 do
                let mutable ls = [||]

                let _, grads =
                    Tensor.gradientsAt
                        (fun vars ->
                            let outputs, _ = model.Forward mode (Params.withTensors p vars) (Tensor.slice b 1 x)
                            ls <- quantities losses (start + b) 1 outputs
                            ls |> Array.map (fun l -> Tensor.sum l.Values), which |> Array.map (fun i -> vars[i]))
                        leaves

                ls
                |> Array.iteri (fun j l ->
                    let w = l.Weights |> Option.map (fun w -> w.Item)

                    which
                    |> Array.iteri (fun k i ->
                        let fg = f.Apply(grads[j][k])

                        match w with
                        | None -> add acc i fg
                        | Some w -> add acc i (fg * w)))

    let private check (inputs: Tensor) (chunk: int) =
        if inputs.Rank < 1 then
            invalidArg (nameof inputs) "the inputs need a leading sample axis"

        if chunk < 1 then
            invalidArg (nameof chunk) $"the chunk size must be at least 1, got {chunk}"

    let private chunks (n: int) (chunk: int) =
        [ for start in 0..chunk .. n - 1 -> start, min chunk (n - start) ]

    /// `sums` with a chosen number of samples per forward pass.
    let sumsWith
        (chunk: int)
        (f: SampleMap)
        (model: Layer)
        (mode: Mode)
        (losses: int -> Tensor -> SampleLoss list)
        (p: Params)
        (inputs: Tensor)
        : Params =
        check inputs chunk
        let flat = Params.flatten p
        let paths = flat |> List.map fst |> Array.ofList
        let leaves = flat |> List.map snd |> Array.ofList
        let acc: Tensor option[] = Array.create leaves.Length None

        for start, rows in chunks inputs.Shape[0] chunk do
            let x = Tensor.slice start rows inputs
            let mutable ls = [||]
            let mutable rules = [||]
            let mutable loopOver = [||]
            // Distinct tracked outputs, by reference (a dense layer names its output twice).
            let values = ResizeArray<Tensor>()

            let valueIndex (z: Tensor) =
                match Seq.tryFindIndex (fun v -> obj.ReferenceEquals(v, z)) values with
                | Some k -> k
                | None ->
                    values.Add z
                    values.Count - 1

            let _, grads =
                Tensor.gradientsAt
                    (fun vars ->
                        let outputs, trace = model.Forward mode (Params.withTensors p vars) x
                        ls <- quantities losses start rows outputs
                        let scalars = ls |> Array.map (fun l -> Tensor.sum l.Values)
                        rules <- rulesOf paths trace |> Array.map (fun (i, rule, z) -> i, rule, valueIndex z)
                        let covered = rules |> Array.map (fun (i, _, _) -> i) |> set
                        let reach = reached scalars vars

                        loopOver <-
                            Array.init vars.Length id
                            |> Array.filter (fun i -> reach[i] && not (covered.Contains i))

                        scalars, values.ToArray())
                    leaves

            let s =
                Array.init values.Count (fun k -> lazy (weighted f ls (grads |> Array.map (fun g -> g[k]))))

            for i, rule, k in rules do
                add acc i (applyRule f paths[i] leaves[i].Shape rule s[k].Value)

            loopChunk f model mode losses p loopOver start x acc

        acc
        |> Array.mapi (fun i t -> t |> Option.defaultWith (fun () -> Tensor.zerosLike leaves[i]))
        |> Params.withTensors p

    /// Σ_b Σ_j w_jb f(∂ℓ_jb/∂θ) for every parameter θ of `model` at `p`, over the samples of `inputs`
    /// (leading axis), `defaultChunk` samples per forward pass. `losses start outputs` gives the
    /// per-sample quantities of the chunk whose first sample is `inputs[start]`, from the model's
    /// outputs on it. The tree has the shape of `p`; zeros where the outputs do not depend on a
    /// parameter; all zeros for an empty data set. Run `mode` in evaluation (see the module's note).
    let sums
        (f: SampleMap)
        (model: Layer)
        (mode: Mode)
        (losses: int -> Tensor -> SampleLoss list)
        (p: Params)
        (inputs: Tensor)
        : Params =
        sumsWith defaultChunk f model mode losses p inputs

    /// The same sums by the exact loop: one forward and backward pass per sample for every parameter,
    /// whatever the layers record. The reference the batched sums are tested against.
    let loop
        (f: SampleMap)
        (model: Layer)
        (mode: Mode)
        (losses: int -> Tensor -> SampleLoss list)
        (p: Params)
        (inputs: Tensor)
        : Params =
        check inputs 1
        let leaves = Params.tensors p
        let acc: Tensor option[] = Array.create leaves.Length None
        let all = Array.init leaves.Length id

        for b in 0 .. inputs.Shape[0] - 1 do
            loopChunk f model mode losses p all b (Tensor.slice b 1 inputs) acc

        acc
        |> Array.mapi (fun i t -> t |> Option.defaultWith (fun () -> Tensor.zerosLike leaves[i]))
        |> Params.withTensors p
