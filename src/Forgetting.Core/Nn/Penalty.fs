namespace Forgetting.Nn

open System
open System.Numerics
open System.Runtime.Intrinsics
open Forgetting.Tensors
open Forgetting.Tensors.Cpu

/// A quadratic penalty Σ_t Σ_i A_t,i (θ_i − m_t,i)² over a parameter tree, held as one quadratic
/// Σ_i A_i (θ_i − m_i)² + C with A = Σ_t A_t, m = Σ_t A_t m_t / A and C = Σ_t Σ_i A_t,i (m_t,i − m_i)²:
/// the same value and gradient, at one pass over the parameters per step however many terms it sums
/// (EWC's one term per past task, Kirkpatrick et al. 2017, eq. 3; Schwarz et al. 2018's online EWC and
/// Zenke et al. 2017's SI, eq. 4, have one). Tensors whose weights A are all 0 are skipped.
type Quadratic =
    private
        { Paths: string list
          Weights: Tensor option[]
          Centres: Tensor option[]
          Constant: float }

[<RequireQualifiedAccess>]
module Quadratic =

    let private checkSame (what: string) (reference: string list) (p: Params) =
        let paths = Params.flatten p |> List.map fst

        if paths <> reference then
            let has, wanted = String.concat ", " paths, String.concat ", " reference
            invalidArg "params" $"the {what} has the tensors {has}, the penalty was built for {wanted}"

    /// Σ_t Σ_i A_t,i (θ_i − m_t,i)² for the terms (A_t, m_t), each a pair of trees of one structure.
    let ofTerms (terms: (Params * Params) list) : Quadratic =
        match terms with
        | [] -> invalidArg (nameof terms) "a quadratic penalty needs at least one term (weights, centre)"
        | (w0, _) :: _ ->
            let paths = Params.flatten w0 |> List.map fst

            for w, m in terms do
                checkSame "weight tree" paths w
                checkSame "centre tree" paths m

            let count = paths.Length
            let weights = terms |> List.map (fst >> Params.tensors)
            let centres = terms |> List.map (snd >> Params.tensors)
            let mutable constant = 0.0

            let combined =
                Array.init count (fun i ->
                    let ws = weights |> List.map (fun w -> w[i])
                    let ms = centres |> List.map (fun m -> m[i])

                    match ws, ms with
                    | [ w ], [ m ] -> Some(w.StopGradient()), Some(m.StopGradient())
                    | _ ->
                        // In float64: A = Σ A_t, m = Σ A_t m_t / A (any centre where A = 0), C = Σ A_t (m_t − m)².
                        let wv = ws |> List.map (fun t -> t.ToFloat64Array())
                        let mv = ms |> List.map (fun t -> t.ToFloat64Array())
                        let n = wv.Head.Length
                        let a = Array.init n (fun j -> wv |> List.sumBy (fun w -> w[j]))

                        let centre =
                            Array.init n (fun j ->
                                if a[j] = 0.0 then
                                    (List.last mv)[j]
                                else
                                    List.map2 (fun (w: float[]) (m: float[]) -> w[j] * m[j]) wv mv
                                    |> List.sum
                                    |> fun s -> s / a[j])

                        for w, m in List.zip wv mv do
                            for j in 0 .. n - 1 do
                                constant <- constant + w[j] * (m[j] - centre[j]) * (m[j] - centre[j])

                        let t0 = ws.Head
                        Some(Tensor.create t0.DType t0.Shape a), Some(Tensor.create t0.DType t0.Shape centre))

            let nonZero (w: Tensor option) =
                w
                |> Option.filter (fun t -> t.ToFloat64Array() |> Array.exists (fun v -> v <> 0.0))

            let ws = combined |> Array.map (fst >> nonZero)

            { Paths = paths
              Weights = ws
              Centres = Array.map2 (fun w (_, m) -> if Option.isSome w then m else None) ws combined
              Constant = constant }

    /// The elements one tile of the fused kernel covers: a few hundred KB of the three inputs.
    let private tileSize = 16384

    /// s Σ A (θ − m)² over [lo, hi) (lanes in float32 within the tile, the tile's total in float64),
    /// and the gradient 2 s A (θ − m) written to g: one pass, 512-bit vectors where the processor has
    /// them (the pass is bound by memory, and wider loads are what the library's other kernels use).
    let private tile32 (theta: float32[]) (a: float32[]) (m: float32[]) (g: float32[]) (s: float32) lo hi =
        let mutable i = lo
        let mutable total = 0.0

        if Vector512.IsHardwareAccelerated then
            let twice = Vector512.Create(2.0f * s)
            let mutable acc0 = Vector512<float32>.Zero
            let mutable acc1 = Vector512<float32>.Zero

            while i <= hi - 32 do
                let d0 = Vector512.LoadUnsafe(&theta[i]) - Vector512.LoadUnsafe(&m[i])
                let d1 = Vector512.LoadUnsafe(&theta[i + 16]) - Vector512.LoadUnsafe(&m[i + 16])
                let ad0 = Vector512.LoadUnsafe(&a[i]) * d0
                let ad1 = Vector512.LoadUnsafe(&a[i + 16]) * d1
                Vector512.StoreUnsafe(ad0 * twice, &g[i])
                Vector512.StoreUnsafe(ad1 * twice, &g[i + 16])
                acc0 <- acc0 + ad0 * d0
                acc1 <- acc1 + ad1 * d1
                i <- i + 32

            total <- float (Vector512.Sum(acc0 + acc1))
        else
            let w = Vector<float32>.Count
            let twice = Vector<float32>(2.0f * s)
            let mutable acc = Vector<float32>.Zero

            while i <= hi - w do
                let d = Vector<float32>(theta, i) - Vector<float32>(m, i)
                let ad = Vector<float32>(a, i) * d
                (ad * twice).CopyTo(g, i)
                acc <- acc + ad * d
                i <- i + w

            total <- float (Vector.Sum acc)

        while i < hi do
            let d = theta[i] - m[i]
            let ad = a[i] * d
            g[i] <- ad * 2.0f * s
            total <- total + float (ad * d)
            i <- i + 1

        total

    let private tile64 (theta: float[]) (a: float[]) (m: float[]) (g: float[]) (s: float) lo hi =
        let w = Vector<float>.Count
        let twice = Vector<float>(2.0 * s)
        let mutable acc = Vector<float>.Zero
        let mutable i = lo

        while i <= hi - w do
            let d = Vector<float>(theta, i) - Vector<float>(m, i)
            let ad = Vector<float>(a, i) * d
            (ad * twice).CopyTo(g, i)
            acc <- acc + ad * d
            i <- i + w

        let mutable total = Vector.Sum acc

        while i < hi do
            let d = theta[i] - m[i]
            let ad = a[i] * d
            g[i] <- ad * 2.0 * s
            total <- total + ad * d
            i <- i + 1

        total

    /// Σ A (θ − m)² and the gradients 2 s A (θ − m), one pass per tensor: on the CPU backend a fused
    /// kernel over fixed tiles (the partial sums are added in tile order, so the value does not depend
    /// on the thread count); elsewhere composed of raw ops.
    let private valueAndGradients (s: float) (thetas: RawTensor[]) (weights: RawTensor[]) (centres: RawTensor[]) =
        let storages =
            Array.init thetas.Length (fun i ->
                match thetas[i], weights[i], centres[i] with
                | (:? CpuTensor as t), (:? CpuTensor as a), (:? CpuTensor as m) ->
                    match t.Storage, a.Storage, m.Storage with
                    | F32 _, F32 _, F32 _
                    | F64 _, F64 _, F64 _ -> Some(t.Storage, a.Storage, m.Storage)
                    | _ -> None
                | _ -> None)

        if storages |> Array.forall Option.isSome then
            let storages = storages |> Array.map Option.get

            let grads = storages |> Array.map (fun (t, _, _) -> Storage.uninit t.DType t.Length)

            let tiles =
                [| for i in 0 .. storages.Length - 1 do
                       let (t, _, _) = storages[i]

                       for lo in 0..tileSize .. t.Length - 1 -> i, lo, min t.Length (lo + tileSize) |]

            let partial = Array.zeroCreate tiles.Length

            Parallelism.forTiles tiles.Length (fun k ->
                let i, lo, hi = tiles[k]

                partial[k] <-
                    match storages[i], grads[i] with
                    | (F32 t, F32 a, F32 m), F32 g -> tile32 t a m g (float32 s) lo hi
                    | (F64 t, F64 a, F64 m), F64 g -> tile64 t a m g s lo hi
                    | _ -> 0.0)

            Array.sum partial, Array.init thetas.Length (fun i -> CpuTensor.Of(grads[i], thetas[i].Shape))
        else
            let mutable total = 0.0

            let grads =
                Array.init thetas.Length (fun i ->
                    let ad = thetas[i].Binary(Sub, centres[i]).Binary(Mul, weights[i])
                    total <- total + ad.Binary(Mul, thetas[i].Binary(Sub, centres[i])).SumAll()
                    ad.BinaryScalar(Mul, 2.0 * s, false))

            total, grads

    /// The penalty scale · (Σ_i A_i (θ_i − m_i)² + C) at the parameters `theta` (tracked, so that its
    /// gradient scale · 2A(θ − m) flows into them), as one fused op: the value and the gradient come
    /// from one pass over the parameters.
    let loss (scale: float) (q: Quadratic) (theta: Params) : Tensor =
        let flat = Params.flatten theta

        if List.map fst flat <> q.Paths then
            checkSame "parameter tree" q.Paths theta

        let leaves = flat |> List.map snd |> Array.ofList

        let used =
            Array.init leaves.Length id |> Array.filter (fun i -> q.Weights[i].IsSome)

        let thetas = used |> Array.map (fun i -> leaves[i])

        let dtype = if leaves.Length > 0 then leaves[0].DType else Float32

        if thetas.Length = 0 then
            Tensor.scalar dtype (scale * q.Constant)
        else
            let compute () =
                valueAndGradients
                    scale
                    (thetas |> Array.map (fun t -> t.Raw))
                    (used |> Array.map (fun i -> q.Weights[i].Value.Raw))
                    (used |> Array.map (fun i -> q.Centres[i].Value.Raw))

            let value, grads = compute ()

            // The gradients are handed to the tape once, to own (it may add the task loss's gradient into
            // them in place); a second backward pass through this op computes them again.
            let mutable handedOut = false

            Tensor.OpOwningGradients(
                thetas[0].Raw.Backend.Full([||], thetas[0].DType, scale * (value + q.Constant)),
                thetas,
                fun g needs ->
                    let factor = g.ToFloat64()[0]
                    let grads = if handedOut then snd (compute ()) else grads
                    handedOut <- true

                    grads
                    |> Array.mapi (fun i gi ->
                        if not needs[i] then null
                        elif factor = 1.0 then gi
                        else gi.BinaryScalar(Mul, factor, false))
            )

/// Parameter trees as named tensors ("fisher1/fc1/weight"), the form term state takes in checkpoints.
[<RequireQualifiedAccess>]
module NamedTensors =

    let private join (prefix: string) (path: string) =
        if path = "" then prefix else prefix + "/" + path

    /// The tensors of `p` named prefix/path.
    let ofParams (prefix: string) (p: Params) =
        [ for path, t in Params.flatten p -> join prefix path, t ]

    /// The tree under `prefix` (the entries named prefix/… or prefix itself), if there are any.
    let toParams (prefix: string) (state: (string * Tensor) list) : Params option =
        let entries =
            state
            |> List.choose (fun (name, t) ->
                if name = prefix then
                    Some([], t)
                elif name.StartsWith(prefix + "/") then
                    Some(name.Substring(prefix.Length + 1).Split '/' |> List.ofArray, t)
                else
                    None)

        let rec build (path: string) (entries: (string list * Tensor) list) =
            match entries with
            | [ [], t ] -> Leaf t
            | _ when entries |> List.exists (fst >> List.isEmpty) ->
                invalidArg (nameof state) $"'{join prefix path}' is named both as a tensor and as a subtree"
            | _ ->
                entries
                |> List.groupBy (fst >> List.head)
                |> List.map (fun (name, group) ->
                    let child = if path = "" then name else path + "/" + name
                    name, build child (group |> List.map (fun (parts, t) -> List.tail parts, t)))
                |> Params.ofList

        match entries with
        | [] -> None
        | _ ->
            let names = entries |> List.map fst

            if List.distinct names <> names then
                invalidArg (nameof state) $"the state names a tensor under '{prefix}' twice"

            Some(build "" entries)

    /// The prefixes "name1", "name2", … of a state, as the numbers they end in, ascending.
    let numbered (name: string) (state: (string * Tensor) list) =
        state
        |> List.choose (fun (entry, _) ->
            let head = entry.Split('/')[0]

            if head.StartsWith name && head.Length > name.Length then
                match Int32.TryParse(head.Substring name.Length) with
                | true, k -> Some k
                | _ -> None
            else
                None)
        |> List.distinct
        |> List.sort
