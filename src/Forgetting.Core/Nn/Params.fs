namespace Forgetting.Nn

open Forgetting.Tensors

/// Parameters: an immutable tree of named tensors. Branch names are sorted (a Map), so flattening
/// always gives the same order and a tree can be rebuilt from its flat list of tensors.
type Params =
    | Leaf of Tensor
    | Branch of Map<string, Params>

[<RequireQualifiedAccess>]
module Params =

    let empty = Branch Map.empty

    /// A branch from named subtrees.
    let ofList (children: (string * Params) list) = Branch(Map.ofList children)

    /// A branch of named tensors.
    let ofTensors (children: (string * Tensor) list) =
        children |> List.map (fun (n, t) -> n, Leaf t) |> ofList

    /// Every tensor with its path ("layer1/weight"), in the tree's fixed order.
    let rec flatten (p: Params) : (string * Tensor) list =
        match p with
        | Leaf t -> [ "", t ]
        | Branch children ->
            [ for KeyValue(name, child) in children do
                  for path, t in flatten child -> (if path = "" then name else name + "/" + path), t ]

    let tensors (p: Params) =
        flatten p |> List.map snd |> Array.ofList

    /// The same tree with its tensors replaced, in flatten order.
    let withTensors (p: Params) (ts: Tensor[]) =
        let mutable next = 0

        let rec go p =
            match p with
            | Leaf _ ->
                next <- next + 1
                Leaf ts[next - 1]
            | Branch children -> Branch(children |> Map.map (fun _ c -> go c))

        let count = tensors p |> Array.length

        if ts.Length <> count then
            invalidArg (nameof ts) $"the tree holds {count} tensors, {ts.Length} were given"

        go p

    let map (f: Tensor -> Tensor) (p: Params) =
        tensors p |> Array.map f |> withTensors p

    /// Combine two trees of the same structure tensor by tensor.
    let map2 (f: Tensor -> Tensor -> Tensor) (a: Params) (b: Params) =
        let fa, fb = flatten a, flatten b

        if List.map fst fa <> List.map fst fb then
            invalidArg (nameof b) "the two parameter trees differ in structure"

        List.map2 (fun (_, x) (_, y) -> f x y) fa fb |> Array.ofList |> withTensors a

    /// The subtree or tensor at a path such as "layer1/weight".
    let get (path: string) (p: Params) =
        let rec go (parts: string list) p =
            match parts, p with
            | [], found -> found
            | name :: rest, Branch children ->
                match children.TryFind name with
                | Some c -> go rest c
                | None ->
                    let known = String.concat ", " children.Keys
                    invalidArg (nameof path) $"no parameter '{name}' in '{path}'; there are: {known}"
            | _ :: _, Leaf _ -> invalidArg (nameof path) $"'{path}' goes below a tensor"

        go (path.Split '/' |> List.ofArray |> List.filter ((<>) "")) p

    let tensor (path: string) (p: Params) =
        match get path p with
        | Leaf t -> t
        | Branch _ -> invalidArg (nameof path) $"'{path}' is a subtree, not a tensor"

    /// Whether the tensor at `path` is a statistic a layer keeps rather than a trained parameter: its
    /// name starts with "running_" (batch norm's running mean and variance). Optimizers leave it alone;
    /// the layer gives its next value in the trace (TraceKind.Statistic) and the training step stores it.
    let isStatistic (path: string) =
        let name = path.Substring(path.LastIndexOf '/' + 1)
        name.StartsWith "running_"

    /// The tree with the tensor at `path` replaced by `value` (of the same shape).
    let replace (path: string) (value: Tensor) (p: Params) =
        let rec go (parts: string list) p =
            match parts, p with
            | [], Leaf t when t.Shape = value.Shape && t.DType = value.DType -> Leaf value
            | [], Leaf t ->
                invalidArg
                    (nameof value)
                    $"'{path}' is {t.DType} {Shape.show t.Shape}, the new value {value.DType} {Shape.show value.Shape}"
            | name :: rest, Branch children when children.ContainsKey name ->
                Branch(Map.add name (go rest children[name]) children)
            | _ -> invalidArg (nameof path) $"no tensor at '{path}'"

        go (path.Split '/' |> List.ofArray |> List.filter ((<>) "")) p

    /// The number of scalar parameters.
    let count (p: Params) =
        tensors p |> Array.sumBy (fun t -> t.Numel)

    /// The value of a scalar function of the parameters and its gradient, as a tree of the same shape.
    let valueAndGrad (f: Params -> Tensor) (p: Params) : Tensor * Params =
        let value, grads = Tensor.valueAndGrads (fun ts -> f (withTensors p ts)) (tensors p)
        value, withTensors p grads

    let grad (f: Params -> Tensor) (p: Params) = valueAndGrad f p |> snd

    /// One gradient per sample: the gradient of `loss p i` for each i. A loop over samples, exact for
    /// any loss, at the cost of one forward and backward pass per sample, kept as the reference for
    /// tests and for opaque per-sample losses; sums over samples of f(per-sample gradient) of a model
    /// (the Fisher, MAS) are `SampleGradients.sums`, batched.
    let perSampleGrads (loss: Params -> int -> Tensor) (count: int) (p: Params) : Params[] =
        Array.init count (fun i -> grad (fun q -> loss q i) p)
