namespace Forgetting.Experiments

open Forgetting.Nn
open Forgetting.Mechanisms

/// A named set of options for a single-task run with forgetting layers: the variant, its layer, the
/// optimizer and the settings of its terms. Every option given beside a preset takes precedence.
type Preset =
    {
        Name: string
        Doc: string
        Variant: string
        Layer: ForgettingLayerConfig
        /// The shortcut, when the preset fixes it regardless of the variant.
        Shortcut: bool option
        Optimizer: OptimizerSpec
        Terms: TermOverride list
    }

/// The option sets of mechanisms.md §1: the paper as written, the setting under which its importance
/// claims hold here, and the lab's later MiL training.
[<RequireQualifiedAccess>]
module Presets =

    let private single = Recipe.single

    /// The paper's full model as written (source 000, eq. 3-9): input gate, shortcut, ρ = 1, W_f = 0,
    /// ERS λ = 0.1 and IRS β = 1e-4, SGD lr 0.01 with momentum 0.9.
    let paper =
        { Name = "paper"
          Doc = "the paper's full model as written: input gate, shortcut, ρ 1, λ 0.1, SGD lr 0.01"
          Variant = "lateral_inhibition"
          Layer = ForgettingLayerConfig.Default
          Shortcut = None
          Optimizer = single.Optimizer
          Terms = [] }

    /// Where the importance claims hold (mechanisms.md §1, "what was measured"): the static gate, no
    /// shortcut, ERS only with λ = 1, ρ = 20, W_f = 0, Adam lr 1e-3.
    let claims =
        { Name = "claims"
          Doc = "where the importance claims hold: static gate, no shortcut, ERS λ 1, ρ 20, W_f 0, Adam lr 1e-3"
          Variant = "inhibition"
          Layer =
            { ForgettingLayerConfig.Default with
                StaticGate = true
                Shortcut = false
                Rho = 20.0 }
          Shortcut = Some false
          Optimizer =
            { single.Optimizer with
                Kind = "adam"
                Lr = 1e-3
                Momentum = 0.0 }
          Terms =
            [ { Kind = "ers"
                Given = [ "weight", Number 1.0 ] } ] }

    /// The lab's later public code (GeoX-Lab/MiL, mechanisms.md §1): the static gate σ(ρ W_f) with no
    /// shortcut (h' = h ⊙ σ), W_f from N(0, 1), ρ from 3 growing × 1.018 per epoch, ERS with a
    /// denominator per layer at λ = 5 (the low end of MiL's 5-200), the lateral term on the gates, SGD
    /// with Nesterov momentum 0.9, lr 0.05, weight decay 5e-4 (on W_f too) and a cosine schedule.
    let mil =
        { Name = "mil"
          Doc =
            "the lab's MiL training: static gate, no shortcut, W_f ~ N(0,1), ρ 3 × 1.018/epoch, ERS per layer λ 5, IRS on gates, SGD Nesterov lr 0.05, wd 5e-4, cosine"
          Variant = "lateral_inhibition"
          Layer =
            { ForgettingLayerConfig.Default with
                StaticGate = true
                Shortcut = false
                Rho = 3.0
                WfInitSd = 1.0
                RhoGrowth = 1.018 }
          Shortcut = Some false
          Optimizer =
            { single.Optimizer with
                Kind = "sgd"
                Lr = 0.05
                Momentum = 0.9
                Nesterov = true
                WeightDecay = 5e-4
                Schedule = "cosine" }
          Terms =
            [ { Kind = "ers"
                Given = [ "weight", Number 5.0; "denominator", Choice "per-layer" ] }
              { Kind = "irs"
                Given = [ "on", Choice "gates" ] } ] }

    let all = [ paper; claims; mil ]

    /// The preset of a name, or an ArgumentException listing the names.
    let byName (name: string) =
        match all |> List.tryFind (fun p -> p.Name = name) with
        | Some p -> p
        | None ->
            let known = all |> List.map (fun p -> p.Name) |> String.concat ", "
            invalidArg (nameof name) $"unknown preset '{name}'; known: {known}"
