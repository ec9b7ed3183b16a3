namespace Forgetting.Mechanisms

open System
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
        /// The steepness ρ > 0 ("cooling factor") of the first epoch.
        Rho: float
        /// W_f's initialisation: 0 gives W_f = 0, every gate exactly half open (the paper); sd > 0 draws
        /// W_f from N(0, sd²), as the lab's later MiL code does (sd 1), and then the random start
        /// largely decides which units end up shut (mechanisms.md §1).
        WfInitSd: float
        /// ρ's factor per epoch: 1 keeps ρ fixed (the paper); MiL grows it geometrically, ρ_e =
        /// ρ · g^(e−1) (start 3, g = 1.018).
        RhoGrowth: float
        /// The neuron-importance read-out Ω (mechanisms.md §1): "gate-mean", "activity-weighted" or
        /// "static"; "" takes the gate's default (activity-weighted for the input gate, static for the
        /// static gate).
        Readout: string
    }

    static member Default =
        { StaticGate = false
          Shortcut = true
          Rho = 1.0
          WfInitSd = 0.0
          RhoGrowth = 1.0
          Readout = "" }

    /// The steepness of epoch `epoch` (from 1): ρ · g^(epoch − 1).
    member c.RhoAt(epoch: int) =
        c.Rho * Math.Pow(c.RhoGrowth, float (epoch - 1))

    /// The configuration of epoch `epoch`: its ρ (RhoAt) as a fixed steepness.
    member c.AtEpoch(epoch: int) = { c with Rho = c.RhoAt epoch }

/// Accumulated per-unit sums of a forgetting layer over a data set, from which every read-out of
/// neuron importance follows (mechanisms.md §1): the sample count, Σ_b σ_b, Σ_b h_b, Σ_b h_b σ_b and
/// the number of samples on which the unit fires (h_b > 0). h is the excitatory activity entering the
/// layer (after its ReLU), σ its gate.
type GateSums =
    { Samples: int
      SumGate: float[]
      SumActivity: float[]
      SumActivityGate: float[]
      Firing: float[] }

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
    /// every gate starts exactly half open (σ = 0.5), or from N(0, sd²) (config.WfInitSd). It records its input h and its gate σ, and in
    /// evaluation mode how W_f's per-sample gradients follow from the gradient at σ.
    let layer (config: ForgettingLayerConfig) (units: int) : Layer =
        if config.Rho <= 0.0 then
            invalidArg (nameof config) $"the steepness ρ must be positive, got {config.Rho}"

        if not (config.WfInitSd >= 0.0) then
            invalidArg (nameof config) $"W_f's initial sd must be 0 or more, got {config.WfInitSd}"

        { Name = "forgetting"
          Init =
            fun key dtype ->
                let wf =
                    if config.WfInitSd > 0.0 then
                        Tensor.create dtype [| units |] (Rng.normal units key |> Array.map ((*) config.WfInitSd))
                    else
                        Tensor.zeros dtype [| units |]

                Params.ofTensors [ "wf", wf ]
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

    /// ERS (eq. 6) with one denominator per layer, as the lab's later MiL code computes it:
    /// Σ_l [Σ_i (1-σ̄_il) σ̄_il / Σ_i (1-σ̄_il)], a layer whose gates are all fully open adding 0.
    /// With one forgetting layer it equals inhibitionLoss.
    let inhibitionLossPerLayer (trace: TraceEntry list) =
        gatesOf trace
        |> List.map (fun s ->
            let m = if s.Rank = 2 then Tensor.meanAxis 0 false s else s
            let num = Tensor.sum ((1.0 - m) * m)
            let den = Tensor.sum (1.0 - m)
            if den.Item = 0.0 then num * 0.0 else num / den)
        |> List.reduce (+)

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

    /// The lateral term of eq. 8 computed on the gates instead of the activations (the lab's later MiL
    /// code; the library's reading: h replaced by σ), mean over the batch of
    /// Σ_l Σ_i Σ_{j≠i} σ_i σ_j (1-σ_i) σ_j = pairSum (σ⊙(1-σ)) (σ⊙σ). A static gate [n] is one sample.
    let lateralLossOnGates (trace: TraceEntry list) =
        gatesOf trace
        |> List.map (fun s ->
            let s2 = if s.Rank = 1 then Tensor.reshape [| 1; -1 |] s else s
            pairSum (s2 * (1.0 - s2)) (s2 * s2) |> Tensor.mean)
        |> List.reduce (+)

    /// ERS as the objective term λ·L_inh of eq. 9 (skipped when λ = 0), one denominator shared by
    /// all layers (eq. 6).
    let inhibitionTerm (lambda: float) =
        Term.ofTrace "ers" lambda inhibitionLoss

    /// ERS with the denominator "shared" by all layers (eq. 6) or one "per-layer" (MiL).
    let inhibitionTermWith (denominator: string) (lambda: float) =
        match denominator with
        | "shared" -> inhibitionTerm lambda
        | "per-layer" -> Term.ofTrace "ers" lambda inhibitionLossPerLayer
        | other -> invalidArg (nameof denominator) $"ers: denominator must be shared or per-layer, got '{other}'"

    /// IRS (eq. 8) as the objective term β·L_lat of eq. 9 (skipped when β = 0).
    let lateralTerm (beta: float) = Term.ofTrace "irs" beta lateralLoss

    /// IRS on the "activations" (eq. 8) or on the "gates" (MiL).
    let lateralTermOn (on: string) (beta: float) =
        match on with
        | "activations" -> lateralTerm beta
        | "gates" -> Term.ofTrace "irs" beta lateralLossOnGates
        | other -> invalidArg (nameof on) $"irs: on must be activations or gates, got '{other}'"

    let private weight name defaultWeight =
        TermSetting.number "weight" $"the weight of {name}" defaultWeight "≥ 0" (fun w -> w >= 0.0)

    /// The forgetting layer's losses as term kinds of a run description: ers (λ = 0.1, denominator
    /// shared) and irs (β = 1e-4, on the activations).
    let kinds =
        [ { Name = "ers"
            Doc = "the inhibition loss of eq. 6, weighted by λ (eq. 9)"
            Settings =
              [ weight "ers" 0.1
                TermSetting.choice
                    "denominator"
                    "one denominator shared by all layers (eq. 6) or one per layer (MiL)"
                    "shared"
                    [ "shared"; "per-layer" ] ]
            AfterTasks = false
            Build = fun s -> inhibitionTermWith (TermSetting.toChoice s "denominator") (TermSetting.toFloat s "weight") }
          { Name = "irs"
            Doc = "the importance-weighted lateral inhibition of eq. 8, weighted by β (eq. 9)"
            Settings =
              [ weight "irs" 1e-4
                TermSetting.choice
                    "on"
                    "the lateral term on the activations (eq. 8) or on the gates (MiL)"
                    "activations"
                    [ "activations"; "gates" ] ]
            AfterTasks = false
            Build = fun s -> lateralTermOn (TermSetting.toChoice s "on") (TermSetting.toFloat s "weight") } ]

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

    // ------------------------------------------------------------------ read-outs

    /// The names of the read-outs of neuron importance.
    let readouts = [ "gate-mean"; "activity-weighted"; "static" ]

    /// The read-out a layer's configuration names, its gate's default when it names none:
    /// activity-weighted for the input gate, static for the static gate (mechanisms.md §1).
    let readoutOf (config: ForgettingLayerConfig) =
        match config.Readout with
        | "" -> if config.StaticGate then "static" else "activity-weighted"
        | r when List.contains r readouts -> r
        | other ->
            let known = String.concat ", " readouts
            invalidArg (nameof config) $"unknown read-out '{other}'; known: {known}"

    /// No samples yet for a layer of `units` units.
    let emptySums (units: int) =
        { Samples = 0
          SumGate = Array.zeroCreate units
          SumActivity = Array.zeroCreate units
          SumActivityGate = Array.zeroCreate units
          Firing = Array.zeroCreate units }

    /// The sums with one batch added: h [B, n] (a layer's GateInput) and σ [B, n] or, for the static
    /// gate, [n] (its Gate).
    let addSums (sums: GateSums) (h: Tensor) (sigma: Tensor) =
        let b, n = h.Shape[0], h.Shape[1]

        if n <> sums.SumGate.Length then
            invalidArg (nameof h) $"the sums are of {sums.SumGate.Length} units, the batch has {n}"

        let hv = h.ToFloat64Array()
        let sv = sigma.ToFloat64Array()
        let perSample = sigma.Rank = 2
        let g = Array.copy sums.SumGate
        let a = Array.copy sums.SumActivity
        let ag = Array.copy sums.SumActivityGate
        let f = Array.copy sums.Firing

        for r in 0 .. b - 1 do
            for i in 0 .. n - 1 do
                let x = hv[r * n + i]
                let s = if perSample then sv[r * n + i] else sv[i]
                g[i] <- g[i] + s
                a[i] <- a[i] + x
                ag[i] <- ag[i] + x * s

                if x > 0.0 then
                    f[i] <- f[i] + 1.0

        { Samples = sums.Samples + b
          SumGate = g
          SumActivity = a
          SumActivityGate = ag
          Firing = f }

    /// Each unit's firing rate: the fraction of samples on which h > 0.
    let firingRate (sums: GateSums) =
        sums.Firing |> Array.map (fun c -> c / float sums.Samples)

    /// Neuron importance Ω per unit by a read-out (mechanisms.md §1), from the sums over a data set and
    /// the layer's W_f and steepness ρ: "gate-mean", the mean gate (the paper's words; for the input
    /// gate a silent sample gives σ = 1/2 whatever W_f, so Ω stays within f/2 of 1/2, f the firing rate);
    /// "activity-weighted", Σ_b h_b σ_b / Σ_b h_b, the share of the unit's signal the gate lets
    /// through, 0 for a unit that never fires; "static", σ(ρ W_f).
    let importance (readout: string) (rho: float) (wf: float[]) (sums: GateSums) =
        match readout with
        | "gate-mean" ->
            if sums.Samples = 0 then
                invalidArg (nameof sums) "the gate-mean read-out needs at least one sample"

            sums.SumGate |> Array.map (fun s -> s / float sums.Samples)
        | "activity-weighted" ->
            Array.map2 (fun hs h -> if h > 0.0 then hs / h else 0.0) sums.SumActivityGate sums.SumActivity
        | "static" -> wf |> Array.map (fun w -> 1.0 / (1.0 + exp (-rho * w)))
        | other ->
            let known = String.concat ", " readouts
            invalidArg (nameof readout) $"unknown read-out '{other}'; known: {known}"
