namespace Forgetting.Experiments

open System
open Forgetting.Nn

/// The continual-learning methods a run can be asked for by name, as what they add to a recipe: the
/// bounds (joint training, plain fine-tuning) and the synaptic penalties, each its term kind with
/// settings. A method is data, not code: `forgetting continual --methods ewc,si` and the C# face
/// both turn names into the same recipe.
[<RequireQualifiedAccess>]
module Methods =

    /// The method names, in the order of the published comparison tables.
    let names =
        [ "none"
          "joint"
          "ewc"
          "online-ewc"
          "si"
          "ewc_f"
          "mas"
          "mas-local"
          "mas_f"
          "mas-local_f" ]

    /// λ of EWC, for the default optimizer (SGD, lr 0.01, momentum 0.9): 1e2. Separate EWC sums one
    /// Fisher per past task, so the penalty stiffens task after task, and SGD diverges once lr·λ·F
    /// outgrows about 2(1 + momentum) for the largest Fisher values: on split MNIST here λ = 1e3
    /// diverges at the fourth task, 1e4 at the second. The published values, 1e2 (permuted MNIST) to
    /// 1e7 (split MNIST, Task-IL), were tuned with Adam, whose steps a stiff penalty cannot blow up (van
    /// de Ven & Tolias 2019): give them with --lambda and --optimizer adam.
    let defaultLambda (_: ScenarioSpec) = 1e2

    /// SI's c per scenario kind (same sources): 0.1 on permuted tasks, 1 on split ones.
    let defaultC (scenario: ScenarioSpec) =
        match scenario.Kind with
        | "split" -> 1.0
        | _ -> 0.1

    /// MAS's λ: 1, the paper's (Aljundi et al. 2018, its object-recognition runs) and the official
    /// split-MNIST demo's, with SGD (lr 0.01, momentum 0.9). MAS's Ω is the mean |gradient| of the squared
    /// output norm, far larger than an MLP's Fisher, so it needs no λ of EWC's scale.
    let defaultMasLambda (_: ScenarioSpec) = 1.0

    /// The training regime and terms of a named method on a scenario; `overrides` are settings given
    /// for its penalty (e.g. "lambda", "gamma", "fisher", "samples"), checked by the term kind.
    let terms (scenario: ScenarioSpec) (method: string) (overrides: (string * SettingValue) list) =
        let only (allowed: string list) =
            overrides |> List.filter (fun (name, _) -> List.contains name allowed)

        match method with
        | "none" -> "sequential", []
        | "joint" -> "joint", []
        | "ewc" ->
            "sequential",
            [ "ewc",
              [ "lambda", Number(defaultLambda scenario); "online", Switch false ]
              @ only [ "lambda"; "fisher"; "samples"; "binary_anchor" ] ]
        | "online-ewc" ->
            "sequential",
            [ "ewc",
              [ "lambda", Number(defaultLambda scenario); "online", Switch true ]
              @ only [ "lambda"; "fisher"; "samples"; "gamma"; "gamma_in_penalty"; "binary_anchor" ] ]
        | "si" -> "sequential", [ "si", [ "c", Number(defaultC scenario) ] @ only [ "c"; "damping" ] ]
        | "ewc_f" ->
            "sequential",
            [ "ewc",
              [ "lambda", Number(defaultLambda scenario); "online", Switch false ]
              @ only [ "lambda"; "fisher"; "samples"; "binary_anchor" ] ]
        | "mas"
        | "mas_f"
        | "mas-local"
        | "mas-local_f" ->
            // MAS's own settings arrive prefixed "mas_" (mas_lambda, mas_alpha, …), apart from EWC's λ;
            // the local variant takes no gradient, so the output norm and batch size are global MAS's only.
            let given =
                overrides
                |> List.choose (fun (name, v) ->
                    if name.StartsWith "mas_" then
                        Some(name.Substring 4, v)
                    else
                        None)

            let importance = if method.StartsWith "mas-local" then "local" else "global"

            "sequential",
            [ "mas",
              [ "lambda", Number(defaultMasLambda scenario); "importance", Choice importance ]
              @ (given
                 |> List.filter (fun (name, _) ->
                     name <> "importance"
                     && (importance = "global"
                         || not (List.contains name [ "norm"; "mean_outputs"; "batch" ])))) ]
        | other ->
            let known = String.concat ", " names
            raise (ArgumentException $"unknown method '{other}'; known: {known}")

    /// A recipe with a method applied: its name as the label, its training regime, and its penalty's term first among the
    /// recipe's terms (a term of the same kind already there is replaced). ewc_f is EWC on the net with
    /// a forgetting layer after every hidden ReLU and the layer's own terms (the forgetting paper's
    /// Fig. 5b): the method puts the layers in, where the recipe has none; mas_f and mas-local_f do the
    /// same for MAS (its Fig. 5c draws MAS's importance with and without the layer).
    let apply (method: string) (overrides: (string * SettingValue) list) (recipe: Recipe) : Recipe =
        // EWC on a binarized net anchors at the binary weights by default, as the reference code of
        // Laborieux et al. 2021 does (the net computes with them).
        let overrides =
            if
                recipe.Model.Kind = "binarized"
                && (method = "ewc" || method = "online-ewc")
                && not (overrides |> List.exists (fun (name, _) -> name = "binary_anchor"))
            then
                overrides @ [ "binary_anchor", Switch true ]
            else
                overrides

        let training, methodTerms = terms recipe.Scenario method overrides

        let withLayer = method.EndsWith "_f"

        let layerTerms =
            if withLayer then
                [ for k in Forgetting.Mechanisms.ActiveForgetting.kinds do
                      if not (recipe.Terms |> List.exists (fun t -> t.Kind = k.Name)) then
                          k.Name, [] ]
            else
                []

        let specs =
            methodTerms @ layerTerms
            |> List.map (fun (kind, given) -> TermKind.spec Catalog.terms kind given)

        let kinds = specs |> List.map (fun t -> t.Kind)

        let model =
            if withLayer && recipe.Model.Forgetting.IsNone then
                { recipe.Model with
                    Forgetting = Some Forgetting.Mechanisms.ForgettingLayerConfig.Default }
            else
                recipe.Model

        { recipe with
            Label = method
            Training = training
            Model = model
            Terms =
                specs
                @ (recipe.Terms |> List.filter (fun t -> not (List.contains t.Kind kinds))) }
