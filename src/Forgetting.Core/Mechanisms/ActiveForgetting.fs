namespace Forgetting.Mechanisms

open Forgetting.Tensors
open Forgetting.Nn

/// How a forgetting layer gates (source 000, eq. 3-5; mechanisms.md §1).
type ForgettingLayerConfig =
    {
        /// false: σ = sigmoid(ρ · h ⊙ W_f), per sample (eq. 4); true: σ = sigmoid(ρ · W_f), the same
        /// for every sample (the later model of the same lab).
        StaticGate: bool
        /// h' = h + h ⊙ σ (eq. 5) instead of h' = h ⊙ σ (eq. 3).
        Shortcut: bool
        /// The fixed steepness ρ > 0 ("cooling factor").
        Rho: float
    }

    static member Default =
        { StaticGate = false
          Shortcut = true
          Rho = 1.0 }

/// The plug-and-play forgetting layer of inhibitory units, its losses and its read-outs.
[<RequireQualifiedAccess>]
module ActiveForgetting =

    /// The gate σ of a forgetting layer with inhibitory weights wf [n] for excitatory activity h [B, n].
    let gate (config: ForgettingLayerConfig) (wf: Tensor) (h: Tensor) =
        if config.StaticGate then
            Tensor.sigmoid (wf * config.Rho)
        else
            Fused.gate config.Rho wf h

    /// Per-unit activity of a layer's output: dense [B, n] as it is; conv [B, C, H, W] as the spatial
    /// mean per channel, so that one inhibitory unit gates one channel.
    let private activity (h: Tensor) =
        match h.Rank with
        | 2 -> h
        | 4 -> h |> Tensor.meanAxis 3 false |> Tensor.meanAxis 2 false
        | _ ->
            Shape.fail
                "forgetting layer"
                $"needs dense [B, n] or conv [B, C, H, W] activations, got {Shape.show h.Shape}"

    /// A forgetting layer for `units` excitatory units (channels, for conv maps). W_f starts at 0, so
    /// every gate starts exactly half open (σ = 0.5). It records its input h and its gate σ, and in
    /// evaluation mode how W_f's per-sample gradients follow from the gradient at σ.
    let layer (config: ForgettingLayerConfig) (units: int) : Layer =
        if config.Rho <= 0.0 then
            invalidArg (nameof config) $"the steepness ρ must be positive, got {config.Rho}"

        { Name = "forgetting"
          Init = fun _ dtype -> Params.ofTensors [ "wf", Tensor.zeros dtype [| units |] ]
          Forward =
            fun mode p h ->
                let wf = Params.tensor "wf" p
                let a = activity h

                if a.Shape[1] <> units then
                    Shape.fail
                        "forgetting layer"
                        $"built for {units} units, got activations of shape {Shape.show h.Shape}"

                // Training steps take the fused op (one forward and one backward kernel for the gate,
                // the output and both losses' statistics). Evaluation keeps the composed ops: the
                // per-sample rule below needs the gradient at σ to include the path through the output.
                let fused =
                    if mode.Training && not config.StaticGate && h.Rank = 2 then
                        Some(Fused.layer config.Rho config.Shortcut wf a)
                    else
                        None

                let sigma =
                    match fused with
                    | Some(_, s) -> s
                    | None -> gate config wf a
                // Broadcast the per-unit gate over a conv map's spatial axes.
                let s =
                    if h.Rank = 4 then
                        Tensor.reshape [| -1; units; 1; 1 |] sigma
                    else
                        sigma

                let out =
                    match fused, config.Shortcut, h.Rank with
                    | Some(o, _), _, _ -> o
                    | None, true, 2 when not config.StaticGate -> Fused.shortcut h sigma
                    | None, true, _ -> h + h * s
                    | None, false, _ -> h * s

                // How W_f's per-sample gradient follows from the gradient G at the input gate σ =
                // sigmoid(ρ a ⊙ W_f) (eq. 4): ∂ℓ_b/∂W_f,i = G_bi · ρ a_bi σ_bi (1 − σ_bi), a factor that
                // no gradient flows through. Recorded in evaluation mode, where per-sample gradients are
                // taken (the Fisher, MAS), so that training steps do not pay for the factor. The static
                // gate is one σ for the whole batch: no rule.
                let perSample =
                    if config.StaticGate || mode.Training then
                        []
                    else
                        let sg = sigma.StopGradient()
                        let factor = a.StopGradient() * config.Rho * sg * (1.0 - sg)

                        [ { Path = ""
                            Kind = Gradient("wf", Scaled factor)
                            Value = sigma } ]

                out,
                [ { Path = ""
                    Kind = GateInput
                    Value = a }
                  { Path = ""
                    Kind = Gate
                    Value = sigma }
                  { Path = ""
                    Kind = Activation
                    Value = out } ]
                @ perSample }

    let private gatesOf (trace: TraceEntry list) =
        let gates = Trace.ofKind Gate trace |> List.map (fun e -> e.Value)

        if gates.IsEmpty then
            invalidArg (nameof trace) "the trace holds no forgetting layer: this loss needs at least one"

        gates

    /// ERS (eq. 6): Σ_l Σ_i (1-σ̄_il) σ̄_il / Σ_l Σ_i (1-σ̄_il), σ̄ the gate averaged over the batch.
    /// In [0, 1); 0 when the gates are saturated (all open or all shut). Exactly eq. 6: only the 0/0
    /// case, every gate fully open (σ̄ = 1), is guarded, and gives 0 with a zero gradient.
    let inhibitionLoss (trace: TraceEntry list) =
        let means =
            gatesOf trace |> List.map (fun s -> if s.Rank = 2 then Fused.batchMean s else s)

        let num = means |> List.map (fun m -> Tensor.sum ((1.0 - m) * m)) |> List.reduce (+)
        let den = means |> List.map (fun m -> Tensor.sum (1.0 - m)) |> List.reduce (+)
        if den.Item = 0.0 then num * 0.0 else num / den

    /// Σ_{i≠j} a_i b_j per sample in O(n): (Σa)(Σb) − Σ a⊙b, for a, b of shape [B, n] → [B].
    let pairSum (a: Tensor) (b: Tensor) =
        Tensor.sumAxis 1 false a * Tensor.sumAxis 1 false b
        - Tensor.sumAxis 1 false (a * b)

    let private inputsAndGates (trace: TraceEntry list) =
        let inputs = Trace.ofKind GateInput trace |> List.map (fun e -> e.Value)
        List.zip inputs (gatesOf trace)

    /// IRS, plain (eq. 7): mean over the batch of Σ_l Σ_i Σ_{j≠i} h_i h_j.
    let lateralLossPlain (trace: TraceEntry list) =
        inputsAndGates trace
        |> List.map (fun (h, _) -> pairSum h h |> Tensor.mean)
        |> List.reduce (+)

    /// IRS weighted by importance (eq. 8, the default): mean over the batch of
    /// Σ_l Σ_i Σ_{j≠i} h_i h_j (1-σ_i) σ_j, computed as pairSum (h⊙(1-σ)) (h⊙σ).
    let lateralLoss (trace: TraceEntry list) =
        inputsAndGates trace
        |> List.map (fun (h, s) ->
            if s.Shape = h.Shape then
                Fused.lateralInhibition h s
            else
                // A static gate [n]: the composed form broadcasts it over the batch.
                pairSum (h * (1.0 - s)) (h * s) |> Tensor.mean)
        |> List.reduce (+)

    /// ERS as the objective term λ·L_inh of eq. 9 (skipped when λ = 0).
    let inhibitionTerm (lambda: float) =
        Term.ofTrace "ers" lambda inhibitionLoss

    /// IRS (eq. 8) as the objective term β·L_lat of eq. 9 (skipped when β = 0).
    let lateralTerm (beta: float) = Term.ofTrace "irs" beta lateralLoss

    /// The forgetting layer's losses as term kinds of a run description: ers (λ = 0.1) and irs (β = 1e-4).
    let kinds =
        [ TermKind.weighted "ers" "the inhibition loss of eq. 6, weighted by λ (eq. 9)" 0.1 inhibitionTerm
          TermKind.weighted
              "irs"
              "the importance-weighted lateral inhibition of eq. 8, weighted by β (eq. 9)"
              1e-4
              lateralTerm ]

    /// Whether a term kind is one of the layer's own (it needs forgetting layers in the net).
    let isLayerTerm (kind: string) =
        kinds |> List.exists (fun k -> k.Name = kind)

    /// Parameter importance (eq. 2) of the weights [inputs, outputs] of a dense layer from the neuron
    /// importance of its input units Ω^{l-1} and output units Ω^l: θ_ij = 1 − (1 − Ω_i^l)(1 − Ω_j^{l−1}).
    /// The caller chooses the Ω of units with no forgetting layer (pixels, logits): Ω = 0 makes θ_ij the
    /// other end's Ω alone (what Analysis.Pruning passes); Ω = 1 would tie every such weight at θ = 1.
    let parameterImportance (inputImportance: float[]) (outputImportance: float[]) =
        Array2D.init inputImportance.Length outputImportance.Length (fun j i ->
            1.0 - (1.0 - outputImportance[i]) * (1.0 - inputImportance[j]))
