namespace Forgetting.Experiments

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Training

/// Strengths of the terms a variant may add to the task loss.
type Strengths =
    {
        /// λ, the ERS (inhibition) weight of eq. 9.
        Lambda: float
        /// β, the IRS (lateral inhibition) weight of eq. 9.
        Beta: float
        /// The forgetting layer's steepness ρ.
        Rho: float
        /// Weight of Σ|w| over weight matrices.
        L1: float
        /// Weight of ½Σw² over weight matrices (weight decay).
        L2: float
        /// Weight of DeCov over hidden activations.
        DeCov: float
    }

    /// λ = 0.1 and β = 1e-4 as in the benchmark workload; ρ = 1; L1 1e-5, L2 5e-4, DeCov 1e-4.
    static member Default =
        { Lambda = 0.1
          Beta = 1e-4
          Rho = 1.0
          L1 = 1e-5
          L2 = 5e-4
          DeCov = 1e-4 }

/// A model variant of the paper's comparisons: with or without forgetting layers after each hidden
/// activation, and which terms are added to the cross-entropy.
type Variant =
    { Name: string
      Layer: ForgettingLayerConfig option
      Lambda: float
      Beta: float
      L1: float
      L2: float
      DeCov: float }

[<RequireQualifiedAccess>]
module Variant =

    let private plain name =
        { Name = name
          Layer = None
          Lambda = 0.0
          Beta = 0.0
          L1 = 0.0
          L2 = 0.0
          DeCov = 0.0 }

    let private layer (s: Strengths) shortcut =
        Some
            { ForgettingLayerConfig.Default with
                Shortcut = shortcut
                Rho = s.Rho }

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

    /// A named variant with the given strengths:
    /// sgd (plain), l1, l2, decov (the baselines), inhibition (ERS, no shortcut), i_short_cut (ERS +
    /// shortcut), lateral_inhibition (ERS + IRS + shortcut: the full model), forgetting_layer_star
    /// (the layer with λ = β = 0).
    let ofName (s: Strengths) (name: string) =
        match name with
        | "sgd" -> plain name
        | "l1" -> { plain name with L1 = s.L1 }
        | "l2" -> { plain name with L2 = s.L2 }
        | "decov" -> { plain name with DeCov = s.DeCov }
        | "inhibition" ->
            { plain name with
                Layer = layer s false
                Lambda = s.Lambda }
        | "i_short_cut" ->
            { plain name with
                Layer = layer s true
                Lambda = s.Lambda }
        | "lateral_inhibition" ->
            { plain name with
                Layer = layer s true
                Lambda = s.Lambda
                Beta = s.Beta }
        | "forgetting_layer_star" -> { plain name with Layer = layer s true }
        | other ->
            let known = String.concat ", " names
            invalidArg (nameof name) $"unknown variant '{other}'; known: {known}"

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
        Objective.ofTerms
            [ if variant.L1 <> 0.0 then
                  Regularizers.l1Term variant.L1
              if variant.L2 <> 0.0 then
                  Regularizers.l2Term variant.L2
              if variant.DeCov <> 0.0 then
                  Regularizers.decovTerm variant.DeCov
              if variant.Lambda <> 0.0 then
                  ActiveForgetting.inhibitionTerm variant.Lambda
              if variant.Beta <> 0.0 then
                  ActiveForgetting.lateralTerm variant.Beta ]
