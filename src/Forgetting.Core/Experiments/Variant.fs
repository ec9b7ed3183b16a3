namespace Forgetting.Experiments

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Training

/// A model variant of the paper's comparisons: with or without forgetting layers after each hidden
/// activation, and the terms added to the cross-entropy, each a term kind with its settings (see
/// Catalog.terms): data, so that a variant's strengths are the settings of its terms.
type Variant =
    { Name: string
      Layer: ForgettingLayerConfig option
      Terms: TermSpec list }

[<RequireQualifiedAccess>]
module Variant =

    /// The names `forgetting train --variant` accepts, in the paper's order.
    let names =
        [ "sgd"
          "l1"
          "l2"
          "decov"
          "inhibition"
          "i_short_cut"
          "lateral_inhibition"
          "forgetting_layer_star" ]

    /// Refuses a term that a single-task run cannot use: a penalty that acts only after a task has been
    /// learned (EWC, SI) would train as if it were not there.
    let checkSingleTask (o: TermOverride) =
        if (Catalog.terms |> List.find (fun k -> k.Name = o.Kind)).AfterTasks then
            raise (
                System.ArgumentException
                    $"{o.Kind} penalises change after a task is learned, and a single-task run has no earlier task; use a continual run ('forgetting continual')"
            )

    /// A named variant: sgd (plain), l1, l2, decov (the baselines: the term of that name), inhibition
    /// (ERS, no shortcut), i_short_cut (ERS + shortcut), lateral_inhibition (ERS + IRS + shortcut: the
    /// full model), forgetting_layer_star (the layer with λ = β = 0, i.e. no terms). `rho` is the
    /// layer's steepness; `overrides` set the settings of the variant's terms ("ers:weight=0.2") or add
    /// terms of other kinds. Every term takes its kind's default settings otherwise (ERS λ = 0.1, IRS
    /// β = 1e-4, L1 1e-5, L2 5e-4, DeCov 1e-4).
    let rec ofName (rho: float) (overrides: TermOverride list) (name: string) =
        ofLayer
            { ForgettingLayerConfig.Default with
                Rho = rho }
            None
            overrides
            name

    /// A named variant (ofName) whose forgetting layer is `baseLayer` (gate, ρ and its growth, W_f's
    /// initialisation, read-out) with the variant's shortcut, or the given one (`shortcut`).
    and ofLayer
        (baseLayer: ForgettingLayerConfig)
        (shortcut: bool option)
        (overrides: TermOverride list)
        (name: string)
        =
        let layer variantShortcut =
            Some
                { baseLayer with
                    Shortcut = defaultArg shortcut variantShortcut }

        let layerOf, kinds =
            match name with
            | "sgd" -> None, []
            | "l1"
            | "l2"
            | "decov" -> None, [ name ]
            | "inhibition" -> layer false, [ "ers" ]
            | "i_short_cut" -> layer true, [ "ers" ]
            | "lateral_inhibition" -> layer true, [ "ers"; "irs" ]
            | "forgetting_layer_star" -> layer true, []
            | other ->
                let known = String.concat ", " names
                invalidArg (nameof name) $"unknown variant '{other}'; known: {known}"

        overrides |> List.iter checkSingleTask

        { Name = name
          Layer = layerOf
          Terms =
            kinds
            |> List.map (fun k -> TermKind.spec Catalog.terms k [])
            |> TermKind.apply Catalog.terms overrides }

    /// A named variant with its terms' default settings and ρ = 1.
    let byName (name: string) =
        ofName ForgettingLayerConfig.Default.Rho [] name

    /// An MLP with the given layer sizes (inputs first, classes last): dense → ReLU → [forgetting
    /// layer] per hidden layer, then a dense output layer.
    let mlp (variant: Variant) (sizes: int list) : Layer =
        if sizes.Length < 2 then
            invalidArg (nameof sizes) $"an MLP needs at least input and output sizes, got {sizes}"

        let pairs = List.pairwise sizes

        [ for i, (fanIn, fanOut) in List.indexed pairs do
              yield $"fc{i + 1}", Layer.dense fanIn fanOut

              if i < pairs.Length - 1 then
                  yield $"relu{i + 1}", Layer.relu

                  match variant.Layer with
                  | Some config -> yield $"forget{i + 1}", ActiveForgetting.layer config fanOut
                  | None -> () ]
        |> Layer.sequential

    /// Cross-entropy plus the variant's terms.
    let objective (variant: Variant) : Objective =
        variant.Terms |> List.map (TermKind.ofSpec Catalog.terms) |> Objective.ofTerms
