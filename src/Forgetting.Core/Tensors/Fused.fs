namespace Forgetting.Tensors

open System

open System.Runtime.CompilerServices
open Forgetting.Tensors.Cpu

/// The by-products of one forgetting layer's fused forward pass, found again from its gate.
type internal LayerOutputs =
    {
        /// The layer's input h, which the lateral term is of.
        Input: Tensor
        /// σ̄ [n], the batch mean of the gate.
        GateMean: Tensor
        /// The lateral term (eq. 8) of this layer, a scalar.
        Lateral: Tensor
    }

/// Differentiable fused ops of the forgetting layer (source 000, eq. 4, 5 and 8): composites hot
/// enough to deserve single-pass kernels. Each op carries its own kernels here, with the CPU backend's
/// single passes where the tensors are CPU ones and the composition of plain seam ops as the default
/// for any other backend: the seam (RawTensor) knows no mechanism. Each equals the composition of
/// plain tensor ops it replaces; the tests hold them to that.
[<RequireQualifiedAccess>]
module Fused =

    module Kernels = Forgetting.Tensors.Cpu.Fused

    let private check (op: string) (h: Tensor) (other: Tensor) (otherShape: int[]) =
        if h.Rank <> 2 || other.Shape <> otherShape then
            Shape.fail
                op
                $"needs h [B, n] and a matching tensor {Shape.show otherShape}, got {Shape.show h.Shape} and {Shape.show other.Shape}"

        Tensor.CheckDType(op, h, other)

    /// The CPU storages of raw tensors of one dtype, or None when any is of another backend.
    let private cpu (ts: RawTensor list) =
        if ts |> List.forall (fun t -> t :? CpuTensor) then
            Some(ts |> List.map (fun t -> (t :?> CpuTensor).Storage))
        else
            None

    let private array32 (t: RawTensor) =
        match (t :?> CpuTensor).Storage with
        | F32 a -> a
        | F64 _ -> Shape.fail "forgetting layer" "mixed dtypes"

    let private array64 (t: RawTensor) =
        match (t :?> CpuTensor).Storage with
        | F64 a -> a
        | F32 _ -> Shape.fail "forgetting layer" "mixed dtypes"

    let private gateRaw (h: RawTensor) (wf: RawTensor) (rho: float) =
        match cpu [ h; wf ] with
        | Some [ F32 x; F32 w ] -> CpuTensor.Of(F32(Kernels.gate32 x w (float32 rho)), h.Shape)
        | Some [ F64 x; F64 w ] -> CpuTensor.Of(F64(Kernels.gate64 x w rho), h.Shape)
        | _ -> h.Binary(Mul, wf).BinaryScalar(Mul, rho, false).Unary Sigmoid

    let private gateBackwardRaw (h: RawTensor) (wf: RawTensor) (sigma: RawTensor) (g: RawTensor) (rho: float) =
        match cpu [ h; wf; sigma; g ] with
        | Some [ F32 x; F32 w; F32 s; F32 gv ] ->
            let gh, gw = Kernels.gateBackward32 x w s gv (float32 rho)
            CpuTensor.Of(F32 gh, h.Shape), CpuTensor.Of(F32 gw, wf.Shape)
        | Some [ F64 x; F64 w; F64 s; F64 gv ] ->
            let gh, gw = Kernels.gateBackward64 x w s gv rho
            CpuTensor.Of(F64 gh, h.Shape), CpuTensor.Of(F64 gw, wf.Shape)
        | _ ->
            let d =
                g.Binary(Mul, sigma.Binary(Mul, sigma.BinaryScalar(Sub, 1.0, true))).BinaryScalar(Mul, rho, false)

            d.Binary(Mul, wf), d.Binary(Mul, h).SumTo wf.Shape

    /// The batch mean of Σ_{i≠j} a_i b_j, a = h ⊙ (1 − σ), b = h ⊙ σ, as (Σa)(Σb) − Σ a⊙b.
    let private lateralRaw (h: RawTensor) (sigma: RawTensor) =
        match cpu [ h; sigma ] with
        | Some [ F32 x; F32 s ] -> Kernels.lateral32 x s h.Shape[1]
        | Some [ F64 x; F64 s ] -> Kernels.lateral64 x s h.Shape[1]
        | _ ->
            let b = h.Binary(Mul, sigma)
            let a = h.Binary(Sub, b)

            let perSample =
                a.Reduce(Sum, 1).Binary(Mul, b.Reduce(Sum, 1)).Binary(Sub, a.Binary(Mul, b).Reduce(Sum, 1))

            perSample.SumAll() / float h.Shape[0]

    /// The gradients (h, σ) of `lateralRaw`, times scale: ∂/∂h_i = (B − b_i)(1 − σ_i) + (A − a_i) σ_i and
    /// ∂/∂σ_i = h_i ((A − a_i) − (B − b_i)), A = Σa, B = Σb.
    let private lateralBackwardRaw (h: RawTensor) (sigma: RawTensor) (scale: float) =
        match cpu [ h; sigma ] with
        | Some [ F32 x; F32 s ] ->
            let gh, gs = Kernels.lateralBackward32 x s h.Shape[1] (float32 scale)
            CpuTensor.Of(F32 gh, h.Shape), CpuTensor.Of(F32 gs, h.Shape)
        | Some [ F64 x; F64 s ] ->
            let gh, gs = Kernels.lateralBackward64 x s h.Shape[1] scale
            CpuTensor.Of(F64 gh, h.Shape), CpuTensor.Of(F64 gs, h.Shape)
        | _ ->
            let b = h.Binary(Mul, sigma)
            let a = h.Binary(Sub, b)
            let restA = a.Reduce(Sum, 1).Binary(Sub, a)
            let restB = b.Reduce(Sum, 1).Binary(Sub, b)

            let gh =
                restB.Binary(Mul, sigma.BinaryScalar(Sub, 1.0, true)).Binary(Add, restA.Binary(Mul, sigma))

            gh.BinaryScalar(Mul, scale, false), h.Binary(Mul, restA.Binary(Sub, restB)).BinaryScalar(Mul, scale, false)

    /// h ⊙ (1 + σ), h and σ of one shape.
    let private shortcutRaw (h: RawTensor) (sigma: RawTensor) =
        match cpu [ h; sigma ] with
        | Some [ F32 x; F32 s ] ->
            let r = Buffers.Uninit<float32> x.Length
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(ReadOnlySpan x, ReadOnlySpan s, ReadOnlySpan x, Span r)
            CpuTensor.Of(F32 r, h.Shape)
        | Some [ F64 x; F64 s ] ->
            let r = Buffers.Uninit<float> x.Length
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(ReadOnlySpan x, ReadOnlySpan s, ReadOnlySpan x, Span r)
            CpuTensor.Of(F64 r, h.Shape)
        | _ -> h.Binary(Add, h.Binary(Mul, sigma))

    /// σ = sigmoid(ρ · h ⊙ wf) for h [B, n] and wf [n].
    let gate (rho: float) (wf: Tensor) (h: Tensor) =
        check "gate" h wf [| (if h.Rank = 2 then h.Shape[1] else -1) |]
        let sigma = gateRaw h.Raw wf.Raw rho

        Tensor.Op(
            sigma,
            [| h; wf |],
            fun g _ ->
                let gh, gw = gateBackwardRaw h.Raw wf.Raw sigma g rho
                [| gh; gw |]
        )

    // The fused layer's by-products, keyed by the gate it returned, so that the losses which find a
    // layer's gate in a trace (ActiveForgetting) take the batch mean and the lateral term the forward
    // pass already computed instead of a second pass. Weak keys: an entry lives as long as the gate.
    let private outputs = ConditionalWeakTable<Tensor, LayerOutputs>()

    /// The batch mean of Σ_{i≠j} h_i h_j (1 − σ_i) σ_j for h and σ of shape [B, n]: the value that the
    /// fused layer (`layer`) already computed when σ is its gate of this h.
    let lateralInhibition (h: Tensor) (sigma: Tensor) =
        match outputs.TryGetValue sigma with
        | true, o when Object.ReferenceEquals(o.Input, h) -> o.Lateral
        | _ ->
            check "lateralInhibition" h sigma h.Shape
            let value = lateralRaw h.Raw sigma.Raw

            Tensor.Op(
                h.Raw.Backend.Full([||], h.DType, value),
                [| h; sigma |],
                fun g _ ->
                    let scale = g.ToFloat64()[0] / float h.Shape[0]
                    let gh, gs = lateralBackwardRaw h.Raw sigma.Raw scale
                    [| gh; gs |]
            )

    /// The batch mean σ̄ [n] of a gate σ [B, n]: the fused layer's (`layer`) own when σ is its gate.
    let batchMean (sigma: Tensor) =
        match outputs.TryGetValue sigma with
        | true, o -> o.GateMean
        | _ -> Tensor.meanAxis 0 false sigma

    /// The forgetting layer's output with its shortcut (eq. 5): h ⊙ (1 + σ), h and σ of one shape.
    let shortcut (h: Tensor) (sigma: Tensor) =
        check "shortcut" h sigma h.Shape

        Tensor.Op(
            shortcutRaw h.Raw sigma.Raw,
            [| h; sigma |],
            fun g needs ->
                [| (if needs[0] then shortcutRaw g sigma.Raw else null)
                   (if needs[1] then g.Binary(Mul, h.Raw) else null) |]
        )

    /// Gradients that reached the fused layer's output and gate, handed to its one backward kernel.
    type private Pending() =
        member val Output: RawTensor = null with get, set
        member val Gate: RawTensor = null with get, set

    /// The forgetting layer with an input gate (eq. 4) on h [B, n], wf [n]: its output h ⊙ (1 + σ)
    /// with the shortcut (eq. 5) or h ⊙ σ without, and its gate σ. On the CPU backend one forward
    /// kernel computes σ, the output, the batch mean σ̄ and the lateral term of eq. 8 in one sweep over
    /// [B, n], and one backward kernel takes the gradients at all four back to h and wf; the losses
    /// reach σ̄ and the lateral term through `batchMean` and `lateralInhibition` on the gate. Other
    /// backends get the composition of `gate` and `shortcut`.
    ///
    /// How the one backward kernel is reached: a hidden node S [n + 1] (σ̄, then the lateral term) is
    /// the only one whose inputs are h and wf; the output and σ are nodes over S, created after it,
    /// so the tape visits them first. Their rules only keep the gradient that reached them (and hand
    /// S a zero [n + 1]), and S's rule runs the kernel with everything that arrived.
    let layer (rho: float) (withShortcut: bool) (wf: Tensor) (h: Tensor) =
        check "forgetting layer" h wf [| (if h.Rank = 2 then h.Shape[1] else -1) |]

        // One body for both dtypes: the storage case, the reader of a gradient's array and the
        // dtype's kernels are its only differences.
        let cpuLayer
            (store: 'T[] -> Storage)
            (read: RawTensor -> 'T[])
            (forward: 'T[] -> 'T[] -> bool -> 'T[] * 'T[] * Kernels.LayerSaved<'T>)
            (backward: 'T[] -> 'T[] -> Kernels.LayerSaved<'T> -> 'T[] -> 'T[] -> 'T[] -> bool -> 'T[] * 'T[])
            (x: 'T[])
            (w: 'T[])
            =
            let out, stats, saved = forward x w withShortcut

            let run (p: Pending) (gStats: RawTensor) =
                let orNull (t: RawTensor) = if isNull t then null else read t

                let gh, gw =
                    backward x w saved (orNull p.Output) (orNull p.Gate) (read gStats) withShortcut

                CpuTensor.Of(store gh, h.Shape), CpuTensor.Of(store gw, wf.Shape)

            Some(
                CpuTensor.Of(store out, h.Shape),
                CpuTensor.Of(store stats, [| w.Length + 1 |]),
                CpuTensor.Of(store saved.Sigma, h.Shape),
                run
            )

        let fused =
            match h.Raw, wf.Raw with
            | (:? CpuTensor as hc), (:? CpuTensor as wc) ->
                match hc.Storage, wc.Storage with
                | F32 x, F32 w ->
                    let r = float32 rho

                    cpuLayer
                        F32
                        array32
                        (fun x w sc -> Kernels.layerForward32 x w r sc)
                        (fun x w sv go gs gst sc -> Kernels.layerBackward32 x w sv go gs gst r sc)
                        x
                        w
                | F64 x, F64 w ->
                    cpuLayer
                        F64
                        array64
                        (fun x w sc -> Kernels.layerForward64 x w rho sc)
                        (fun x w sv go gs gst sc -> Kernels.layerBackward64 x w sv go gs gst rho sc)
                        x
                        w
                | _ -> None
            | _ -> None

        match fused with
        | Some(out, stats, sigma, backward) ->
            let n = wf.Shape[0]
            let pending = Pending()

            let s =
                Tensor.OpOwningGradients(
                    stats,
                    [| h; wf |],
                    fun g _ ->
                        let gh, gw = backward pending g
                        // A later pass over the same graph must not see this one's gradients.
                        pending.Output <- null
                        pending.Gate <- null
                        [| gh; gw |]
                )

            let zeros () =
                stats.Backend.Full(stats.Shape, stats.DType, 0.0)

            let output =
                Tensor.Op(
                    out,
                    [| s |],
                    fun g _ ->
                        pending.Output <- g
                        [| zeros () |]
                )

            let gate =
                Tensor.Op(
                    sigma,
                    [| s |],
                    fun g _ ->
                        pending.Gate <- g
                        [| zeros () |]
                )

            outputs.AddOrUpdate(
                gate,
                { Input = h
                  GateMean = Tensor.slice 0 n s
                  Lateral = Tensor.slice n 1 s |> Tensor.reshape [||] }
            )

            output, gate
        | None ->
            let sigma = gate rho wf h
            (if withShortcut then shortcut h sigma else h * sigma), sigma
