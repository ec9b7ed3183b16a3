namespace Forgetting.Tensors

open System
open System.Collections.Generic
open System.Threading
open Forgetting.Tensors.Cpu

/// One recorded op of the tape: its inputs and its derivative rule. `Backward g needs` maps the
/// gradient of the op's output to the gradient of each input, computing only those flagged in `needs`
/// (null for the others).
[<AllowNullLiteral>]
type internal Node(parents: Tensor[], backward: RawTensor -> bool[] -> RawTensor[]) =
    static let mutable counter = 0L
    // Creation order is a topological order of the graph: a node is created after its inputs.
    member val Id = Interlocked.Increment &counter
    member _.Parents = parents
    member _.Backward = backward

    /// True when every gradient `Backward` returns is a fresh buffer that nothing else holds: the tape
    /// may then add other gradients into it in place.
    member val OwnsGradients = false with get, set

    /// Optional (null when absent): `Accumulate g i pending` adds this op's gradient for input i into
    /// `pending`, a buffer the tape owns, which it may overwrite; it returns the sum, or null when it
    /// cannot (then `Backward` computes that gradient as usual).
    member val Accumulate: RawTensor -> int -> RawTensor -> RawTensor = Unchecked.defaultof<_> with get, set

/// An immutable n-dimensional array that records, when it depends on a variable of `grad`, how it was
/// computed (reverse-mode automatic differentiation by a tape of derivative rules).
and [<Sealed>] Tensor internal (raw: RawTensor, node: Node) =

    static let noParents: Tensor[] = [||]

    member internal _.Raw = raw
    member internal _.Node = node
    member _.Shape: int[] = Array.copy raw.Shape
    member _.DType = raw.DType
    member _.Rank = raw.Rank
    member _.Numel = raw.Numel
    /// True when this tensor depends on a variable being differentiated.
    member _.IsTracked = not (isNull node)

    /// The elements, row-major, as float32 (a copy).
    member _.ToArray() = raw.ToFloat32()
    /// The elements, row-major, as float64 (a copy).
    member _.ToFloat64Array() = raw.ToFloat64()

    /// The value of a one-element tensor.
    member _.Item =
        if raw.Numel <> 1 then
            Shape.fail "item" $"needs a one-element tensor, got shape {Shape.show raw.Shape}"

        raw.ToFloat64()[0]

    override _.ToString() =
        let values = raw.ToFloat64()

        let shown =
            values
            |> Seq.truncate 8
            |> Seq.map (fun v -> v.ToString "G6")
            |> String.concat ", "

        let more = if values.Length > 8 then ", …" else ""
        $"Tensor({Shape.show raw.Shape}, {raw.DType}, [{shown}{more}])"

    /// A constant (untracked) tensor over a raw one.
    static member internal OfRaw(r: RawTensor) = Tensor(r, null)

    /// The result of an op: tracked when any input is, with the op's derivative rule.
    static member internal Op(r: RawTensor, parents: Tensor[], backward: RawTensor -> bool[] -> RawTensor[]) =
        if parents |> Array.exists (fun p -> p.IsTracked) then
            Tensor(r, Node(parents, backward))
        else
            Tensor(r, null)

    /// An op whose derivative rule returns fresh gradient buffers that nothing else holds (see
    /// `Node.OwnsGradients`).
    static member internal OpOwningGradients(r: RawTensor, parents: Tensor[], backward) =
        let t = Tensor.Op(r, parents, backward)

        if t.IsTracked then
            t.Node.OwnsGradients <- true

        t

    /// An op that can also add its gradient for an input into a buffer the tape owns (see
    /// `Node.Accumulate`).
    static member internal OpAccumulating(r: RawTensor, parents: Tensor[], backward, accumulate) =
        let t = Tensor.Op(r, parents, backward)

        if t.IsTracked then
            t.Node.Accumulate <- accumulate

        t

    /// A fresh variable for `grad`: a leaf of the tape.
    static member internal Variable(t: Tensor) =
        Tensor(t.Raw, Node(noParents, fun _ _ -> [||]))

    /// The same values, cut from the tape: no gradient flows through it.
    member t.StopGradient() = Tensor(raw, null)

    static member internal CheckDType(op: string, a: Tensor, b: Tensor) =
        if a.DType <> b.DType then
            Shape.fail op $"dtypes differ: {a.DType} {Shape.show a.Raw.Shape} and {b.DType} {Shape.show b.Raw.Shape}"

    /// A broadcasting binary op whose derivative rule is given per input (before un-broadcasting).
    static member internal Broadcast
        (op: BinaryOp, a: Tensor, b: Tensor, da: RawTensor -> RawTensor, db: RawTensor -> RawTensor)
        =
        Tensor.CheckDType(op.Name, a, b)
        let r = a.Raw.Binary(op, b.Raw)

        Tensor.Op(
            r,
            [| a; b |],
            fun g needs ->
                [| (if needs[0] then (da g).SumTo a.Raw.Shape else null)
                   (if needs[1] then (db g).SumTo b.Raw.Shape else null) |]
        )

    static member (+)(a: Tensor, b: Tensor) = Tensor.Broadcast(Add, a, b, id, id)

    static member (-)(a: Tensor, b: Tensor) =
        Tensor.Broadcast(Sub, a, b, id, (fun g -> g.Unary Neg))

    static member (*)(a: Tensor, b: Tensor) =
        Tensor.Broadcast(Mul, a, b, (fun g -> g.Binary(Mul, b.Raw)), (fun g -> g.Binary(Mul, a.Raw)))

    static member (/)(a: Tensor, b: Tensor) =
        Tensor.Broadcast(
            Div,
            a,
            b,
            (fun g -> g.Binary(Div, b.Raw)),
            // d(a/b)/db = -a/b²
            fun g -> g.Binary(Mul, a.Raw).Binary(Div, b.Raw.Unary Square).Unary Neg
        )

    static member (~-)(a: Tensor) =
        Tensor.Op(a.Raw.Unary Neg, [| a |], (fun g _ -> [| g.Unary Neg |]))

    /// a op s (or s op a when `scalarFirst`), s a constant.
    static member internal Scalar(op: BinaryOp, a: Tensor, s: float, scalarFirst: bool, da: RawTensor -> RawTensor) =
        Tensor.Op(a.Raw.BinaryScalar(op, s, scalarFirst), [| a |], (fun g _ -> [| da g |]))

    static member (+)(a: Tensor, s: float) = Tensor.Scalar(Add, a, s, false, id)
    static member (+)(s: float, a: Tensor) = Tensor.Scalar(Add, a, s, true, id)
    static member (-)(a: Tensor, s: float) = Tensor.Scalar(Sub, a, s, false, id)

    static member (-)(s: float, a: Tensor) =
        Tensor.Scalar(Sub, a, s, true, (fun g -> g.Unary Neg))

    static member (*)(a: Tensor, s: float) =
        Tensor.Scalar(Mul, a, s, false, (fun g -> g.BinaryScalar(Mul, s, false)))

    static member (*)(s: float, a: Tensor) = a * s

    static member (/)(a: Tensor, s: float) =
        Tensor.Scalar(Div, a, s, false, (fun g -> g.BinaryScalar(Div, s, false)))

    static member (/)(s: float, a: Tensor) =
        // d(s/a)/da = -s/a²
        Tensor.Scalar(Div, a, s, true, (fun g -> g.Binary(Mul, a.Raw.Unary(Square).BinaryScalar(Div, -s, true))))

    /// a ** p for a constant exponent.
    static member Pow(a: Tensor, p: float) =
        Tensor.Scalar(
            Pow,
            a,
            p,
            false,
            (fun g -> g.Binary(Mul, a.Raw.BinaryScalar(Pow, p - 1.0, false).BinaryScalar(Mul, p, false)))
        )

    /// a ** b elementwise, broadcasting.
    static member Pow(a: Tensor, b: Tensor) =
        let r = a.Raw.Binary(Pow, b.Raw)

        Tensor.Broadcast(
            Pow,
            a,
            b,
            // d/da = b a^(b-1); d/db = a^b ln a
            (fun g -> g.Binary(Mul, b.Raw).Binary(Mul, a.Raw.Binary(Pow, b.Raw.BinaryScalar(Sub, 1.0, false)))),
            fun g -> g.Binary(Mul, r).Binary(Mul, a.Raw.Unary Log)
        )

/// Reverse-mode differentiation: the gradient of a scalar function, by walking the tape backwards.
module internal Tape =

    /// Gradients of `output` with respect to each of `variables` (zeros where it does not depend on one).
    /// A variable may also be a tracked intermediate of the tape (the output of an op): its gradient is
    /// the total that reaches it, recorded before it is passed on to its parents.
    let gradients (output: Tensor) (variables: Tensor[]) : RawTensor[] =
        if output.Numel <> 1 then
            Shape.fail
                "grad"
                $"the function must return a scalar (one element), it returned shape {Shape.show output.Raw.Shape}; reduce it first (e.g. with Tensor.sum or Tensor.mean)"

        // Each node's incoming gradients are kept until the node is reached (after all its consumers, in
        // reverse creation order), then summed in one buffer.
        let incoming = Dictionary<Node, RawTensor list>(HashIdentity.Reference)
        let results = Dictionary<Node, RawTensor>(HashIdentity.Reference)
        let backend = output.Raw.Backend

        // The gradient buffers the tape holds, each with the number of places that hold it (pending
        // lists and results; rules may return a gradient they were given, or a reshape of it, so one
        // buffer can be held twice). When the count falls to zero nothing will read the buffer again,
        // and the backend may reuse it for the next op: a training step then makes its large arrays
        // once instead of every time. Results are never let go: the caller owns them.
        let holders = Dictionary<obj, int>(HashIdentity.Reference)

        let hold (t: RawTensor) =
            match holders.TryGetValue t.Buffer with
            | true, c -> holders[t.Buffer] <- c + 1
            | _ -> holders[t.Buffer] <- 1

        let letGo (t: RawTensor) =
            match holders.TryGetValue t.Buffer with
            | true, 1 ->
                holders.Remove t.Buffer |> ignore
                backend.Release t
            | true, c -> holders[t.Buffer] <- c - 1
            | _ -> ()

        let push (p: Node) (g: RawTensor) =
            hold g

            match incoming.TryGetValue p with
            | true, gs -> incoming[p] <- g :: gs
            | _ -> incoming[p] <- [ g ]

        // The sum of a node's incoming gradients, held once; the parts are let go.
        let total (n: Node) =
            match incoming.TryGetValue n with
            | true, gs ->
                incoming.Remove n |> ignore

                match gs with
                | [ g ] -> Some g
                | g :: rest ->
                    let sum = g.AddMany rest
                    hold sum
                    List.iter letGo gs
                    Some sum
                | [] -> None
            | _ -> None

        let wanted =
            HashSet<Node>(
                variables |> Seq.filter (fun v -> v.IsTracked) |> Seq.map (fun v -> v.Node),
                HashIdentity.Reference
            )

        if output.IsTracked then
            use _ = backend.OpenScope()

            // Every node reachable from the output, in reverse creation order (a reverse topological order).
            let seen = HashSet<Node>(HashIdentity.Reference)
            let stack = Stack<Node>()
            stack.Push output.Node

            while stack.Count > 0 do
                let n = stack.Pop()

                if seen.Add n then
                    for p in n.Parents do
                        if p.IsTracked then
                            stack.Push p.Node

            let order = seen |> Seq.sortByDescending (fun n -> n.Id) |> Seq.toArray

            // Only nodes with a path down to a wanted one need their gradient: a node needs it when it
            // is wanted or one of its parents needs it (parents come first in creation order). A
            // product whose other input leads nowhere wanted (a weight, when the gradient is wanted at
            // a layer's output) then skips that input's rule.
            let needed = HashSet<Node>(HashIdentity.Reference)

            for i in order.Length - 1 .. -1 .. 0 do
                let n = order[i]

                if
                    wanted.Contains n
                    || n.Parents |> Array.exists (fun p -> p.IsTracked && needed.Contains p.Node)
                then
                    needed.Add n |> ignore

            push output.Node (backend.Full(output.Raw.Shape, output.DType, 1.0))

            // Gradient buffers no one but the tape holds (from ops that own their gradients): an op
            // that can accumulate adds its own contribution into such a buffer in place (a matrix
            // product with β = 1) instead of writing a new one that would then be summed with it.
            let owned = HashSet<RawTensor>(HashIdentity.Reference)

            for n in order do
                match total n with
                | Some g when n.Parents.Length > 0 ->
                    if wanted.Contains n then
                        hold g
                        results[n] <- g

                    let needs = n.Parents |> Array.map (fun p -> p.IsTracked && needed.Contains p.Node)

                    if not (isNull (box n.Accumulate)) then
                        for i in 0 .. n.Parents.Length - 1 do
                            if needs[i] then
                                let p = n.Parents[i].Node

                                match incoming.TryGetValue p with
                                | true, [ pending ] when owned.Contains pending ->
                                    let sum = n.Accumulate g i pending

                                    if not (isNull sum) then
                                        owned.Remove pending |> ignore
                                        owned.Add sum |> ignore
                                        incoming.Remove p |> ignore
                                        push p sum
                                        letGo pending
                                        needs[i] <- false
                                | _ -> ()

                    if Array.contains true needs then
                        let parentGrads = n.Backward g needs

                        for i in 0 .. n.Parents.Length - 1 do
                            if needs[i] then
                                if n.OwnsGradients then
                                    owned.Add parentGrads[i] |> ignore

                                push n.Parents[i].Node parentGrads[i]

                    // Every rule that reads g has run.
                    letGo g
                | Some g -> results[n] <- g // the pending sum's hold passes to the result
                | None -> ()

        variables
        |> Array.map (fun v ->
            match results.TryGetValue v.Node with
            | true, g -> g
            | _ -> v.Raw.Backend.Full(v.Raw.Shape, v.DType, 0.0))

    /// After the last gradient of `outputs` is taken: give the backend back the array of every tracked
    /// value the outputs were computed from (the tape's intermediates, down to the variables), except
    /// those sharing an array with `kept`. The backend takes back only arrays allocated in its open
    /// scope, so the variables, made before it, and untracked constants a layer may keep from call to
    /// call are never reused.
    let releaseIntermediates (outputs: Tensor[]) (kept: RawTensor seq) =
        let keep = HashSet<obj>(kept |> Seq.map (fun r -> r.Buffer), HashIdentity.Reference)

        let seen = HashSet<Node>(HashIdentity.Reference)
        let stack = Stack<Tensor>()

        for y in outputs do
            keep.Add y.Raw.Buffer |> ignore

            if y.IsTracked then
                stack.Push y

        while stack.Count > 0 do
            let t = stack.Pop()

            if seen.Add t.Node then
                if not (keep.Contains t.Raw.Buffer) then
                    t.Raw.Backend.Release t.Raw

                for p in t.Node.Parents do
                    if p.IsTracked then
                        stack.Push p
