namespace Forgetting.Experiments

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Training
open Forgetting.Analysis
open Forgetting.Mechanisms

/// A re-run figure of source 000: its panels (chart descriptions, drawn by Forgetting.Reporting) and the
/// runs behind them.
type Figure =
    { Name: string
      Caption: string
      Panels: Panel list
      Runs: RunResult list }

/// A figure as a study a recipe can name (Recipe.Study): the settings it takes, and how it runs on a
/// recipe's training settings and data with them resolved.
type FigureKind =
    {
        Name: string
        Doc: string
        Settings: SettingSpec list
        /// The hidden layers of the paper's net for this figure.
        Hidden: int list
        /// What is wrong with these settings on this recipe, if anything (checked before any training).
        Fits: Recipe -> Settings -> string option
        Run: Recipe -> (string -> Progress -> unit) -> Examples * Examples -> Settings -> Figure
    }

/// The paper's analyses (source 000, Fig. 1e-4c), each a function of training data and settings.
[<RequireQualifiedAccess>]
module Figures =

    let private lines (title, xLabel, yLabel, series) =
        Lines
            { Title = title
              XLabel = xLabel
              YLabel = yLabel
              Series = series
              XRange = None
              YRange = None }

    /// Importance and other values in [0, 1], in 20 bins.
    let private histograms (title, xLabel, groups) =
        Histograms
            { Title = title
              XLabel = xLabel
              Groups = groups
              Bins = 20
              Range = Some(0.0, 1.0)
              Layout = Overlaid }

    let private points (title, xLabel, yLabel, groups) =
        Points
            { Title = title
              XLabel = xLabel
              YLabel = yLabel
              Groups = groups
              XRange = None
              YRange = None }


    /// The study setting `name` of a figure recipe, if it has it.
    let private studySetting (s: Recipe) (name: string) =
        s.Study |> Option.bind (fun st -> st.Settings.TryFind name)

    /// The variant with forgetting layers a figure trains where the paper's full model stands
    /// (setting "variant": lateral_inhibition unless another is chosen).
    let layerVariant (s: Recipe) =
        match studySetting s "variant" with
        | Some(Choice v) -> v
        | _ -> "lateral_inhibition"

    /// Train one of a figure's variants with the study recipe's settings (seed offset by `k` for
    /// repetitions): its forgetting layer from the recipe's (gate, ρ and its growth, W_f's start,
    /// read-out) with the variant's shortcut unless the study's "shortcut" setting says on or off, its
    /// terms' settings from the recipe's terms. "lateral_inhibition", the paper's full model, stands for
    /// the study's chosen variant (layerVariant).
    let train
        (s: Recipe)
        (progress: string -> Progress -> unit)
        (variant: string)
        (k: int)
        (data: Examples * Examples)
        =
        let variant =
            if variant = "lateral_inhibition" then
                layerVariant s
            else
                variant

        let layer = s.Model.Forgetting |> Option.defaultValue ForgettingLayerConfig.Default

        let shortcut =
            match studySetting s "shortcut" with
            | Some(Choice "on") -> Some true
            | Some(Choice "off") -> Some false
            | _ -> None

        // A term of the forgetting layer sets that term where the variant has it, and adds none (the
        // paper's variants are defined by which of the layer's terms they have).
        let plain = Variant.ofName layer.Rho [] variant

        let overrides =
            Recipe.overrides s
            |> List.filter (fun o ->
                not (ActiveForgetting.isLayerTerm o.Kind)
                || plain.Terms |> List.exists (fun t -> t.Kind = o.Kind))

        let config =
            { Recipe.withVariant (Variant.ofLayer layer shortcut overrides variant) s with
                Seed = s.Seed + int64 k
                Study = None }

        Classification.run config (progress $"{variant} seed {config.Seed}") (fst data) (snd data)

    /// The safetensors file a --model path names: the file itself, or a train folder's model.safetensors.
    let modelFile (path: string) =
        if System.IO.Directory.Exists path then
            System.IO.Path.Combine(path, "model.safetensors")
        else
            path

    /// The recipe a saved model was trained by: its metadata's "recipe" (written by train and compare),
    /// else the recipe.json beside it; a DataError naming the file when neither is there or readable.
    let modelRecipe (file: string) =
        let c = Checkpoint.read file

        match c.Metadata.TryFind "recipe" with
        | Some text ->
            try
                Recipe.ofJson Catalog.terms (System.Text.Json.Nodes.JsonNode.Parse text)
            with
            | :? System.ArgumentException
            | :? System.Text.Json.JsonException as e ->
                raise (Forgetting.Data.DataError($"{file}: its recipe metadata is not a recipe: {e.Message}", file))
        | None ->
            let beside =
                System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath file), "recipe.json")

            if not (System.IO.File.Exists beside) then
                raise (
                    Forgetting.Data.DataError($"{file}: no recipe in its metadata and no recipe.json beside it", file)
                )

            Recipe.load Catalog.terms beside

    /// A trained run from a saved model (`train`'s model.safetensors) instead of training: its recipe,
    /// its parameters (names, shapes and dtypes checked against the net the recipe describes, a file
    /// that does not fit refused in one line), and its read-outs on the test set; no epochs.
    let loadRun (path: string) (data: Examples * Examples) : RunResult =
        let file = modelFile path
        let recipe = Classification.validate Catalog.terms (modelRecipe file)
        let trainSet, test = data

        if recipe.Model.Forgetting.IsNone then
            raise (
                Forgetting.Data.DataError(
                    $"{file}: the model '{recipe.Label}' has no forgetting layer, and the figure reads neuron importance off one",
                    file
                )
            )

        let m = Classification.model recipe trainSet.Inputs.Shape[1] trainSet.Classes
        let p, _ = Checkpoint.readParamsLike (m.Init (Rng.create 0L) Float32) file

        let e =
            Trainer.evaluate m (Variant.objective (Recipe.variant recipe)) p recipe.BatchSize test

        { Config = recipe
          Params = p
          History = []
          Test = e
          Layers = Classification.readouts recipe m p test e }

    /// The one net a figure reads (fig2, fig3b): the saved model of the study's "model" setting, or the
    /// chosen variant trained.
    let private trainedOrLoaded (s: Recipe) progress (data: Examples * Examples) =
        match studySetting s "model" with
        | Some(Choice path) when path <> "" ->
            let r = loadRun path data

            if r.Config.Scenario.Data <> s.Scenario.Data then
                raise (
                    Forgetting.Data.DataError(
                        $"{modelFile path}: the model was trained on {r.Config.Scenario.Data.Head}, the figure is drawn on {s.Scenario.Data.Head}",
                        path
                    )
                )

            r
        | _ -> train s progress "lateral_inhibition" 0 data

    /// Accuracy of a trained run's model with other parameters, on the test set.
    let private accuracyWith (r: RunResult) (test: Examples) (p: Params) =
        let m = Classification.model r.Config test.Inputs.Shape[1] test.Classes
        fst (Trainer.accuracy (Trainer.predict m p r.Config.BatchSize test) test)

    /// The read-out a run's neuron importance was taken by.
    let readoutName (r: RunResult) =
        r.Layers
        |> List.tryPick (fun l -> if l.Readout = "" then None else Some l.Readout)
        |> Option.defaultValue "none"

    let private importanceOf (r: RunResult) =
        r.Layers
        |> List.map (fun l ->
            match l.Importance with
            | Some omega -> l.Layer, omega
            | None -> failwith $"{r.Config.Label} has no forgetting layer to read importance from")

    /// A histogram of a per-unit statistic of the first hidden layer, one group per run.
    let private activations (title: string) (statistic: LayerReadout -> float[]) (runs: RunResult list) =
        Histograms
            { Title = title
              XLabel = "activation"
              Groups = [ for r in runs -> r.Config.Label, statistic r.Layers.Head ]
              Bins = 30
              Range = None
              Layout = Overlaid }

    /// Fig. 1e: sparsity of each hidden layer without the layer, with ERS only, and with ERS + IRS.
    let sparsity (s: Recipe) progress data =
        let runs =
            [ "sgd"; "inhibition"; "lateral_inhibition" ]
            |> List.map (fun v -> train s progress v 0 data)

        { Name = "fig1e"
          Caption =
            "Treves-Rolls sparsity of each hidden layer's output: plain net, inhibition (ERS), ERS + IRS; the distribution of each unit's mean and standard deviation of activation in the first hidden layer."
          Panels =
            [ lines (
                  "(a) Sparsity per hidden layer",
                  "hidden layer",
                  "sparsity",
                  [ for r in runs ->
                        { Series.Label = r.Config.Label
                          X = [| for l in r.Layers -> float l.Layer |]
                          Y = [| for l in r.Layers -> l.Sparsity |]
                          Sd = None } ]
              )
              activations "(b) Mean activation per unit, hidden layer 1" (fun l -> l.MeanActivation) runs
              activations "(c) Standard deviation of activation per unit, hidden layer 1" (fun l -> l.SdActivation) runs ]
          Runs = runs }

    let fractions = [ for i in 0..10 -> float i / 10.0 ]

    /// Fig. 2a-d on one trained net with forgetting layers: ablation curves over all hidden units and per
    /// layer (ascending, descending, random: mean ± sd of `draws`), per-class accuracy after removing the
    /// top-1 and top-10 units, and the histograms of neuron importance.
    let ablation (s: Recipe) progress (data: Examples * Examples) (draws: int) (mode: AblationMode) =
        let test = snd data
        let r = trainedOrLoaded s progress data
        let importance = importanceOf r
        let evaluate = accuracyWith r test
        let rng = Rng.create (s.Seed + 1000L)

        let curves (scope: (int * float[]) list) =
            let fixedOrder label order =
                { Series.Label = label
                  X = Array.ofList fractions
                  Y =
                    Ablation.curveWith mode evaluate r.Params (Ablation.order order scope) fractions
                    |> Array.ofList
                  Sd = None }

            let random =
                Rng.splitN draws rng
                |> Array.map (fun key ->
                    Ablation.curveWith mode evaluate r.Params (Ablation.order (Shuffled key) scope) fractions
                    |> Array.ofList)

            let stats =
                Array.init fractions.Length (fun i -> Statistics.meanSd (random |> Array.map (fun c -> c[i])))

            [ fixedOrder "ascending importance" Ascending
              fixedOrder "descending importance" Descending
              { Series.Label = $"random (mean ± sd of {draws})"
                X = Array.ofList fractions
                Y = stats |> Array.map fst
                Sd = Some(stats |> Array.map snd) } ]

        let top k =
            let removed =
                Ablation.order Descending importance |> Array.truncate k |> List.ofArray

            let m = Classification.model r.Config test.Inputs.Shape[1] test.Classes

            snd (
                Trainer.accuracy
                    (Trainer.predict m (Ablation.removeWith mode removed r.Params) r.Config.BatchSize test)
                    test
            )

        let classes = [| for c in 0 .. test.Classes - 1 -> float c |]
        let m = Classification.model r.Config test.Inputs.Shape[1] test.Classes

        let intact =
            snd (Trainer.accuracy (Trainer.predict m r.Params r.Config.BatchSize test) test)

        { Name = "fig2"
          Caption =
            $"""Ablation of hidden units ({(match mode with
                                            | WholeUnit -> "whole units"
                                            | GatedBranch -> "gated branch only")}) by neuron importance ({readoutName r}) (a, b), per-class accuracy after removing the most important units (c), importance histograms (d)."""
          Panels =
            [ yield lines ("(a) All hidden layers", "fraction of units removed", "test accuracy", curves importance)
              for layer, omega in importance do
                  yield
                      lines (
                          $"(b) Hidden layer {layer}",
                          "fraction of units removed",
                          "test accuracy",
                          curves [ layer, omega ]
                      )
              yield
                  lines (
                      "(c) Per-class accuracy",
                      "class",
                      "test accuracy",
                      [ { Series.Label = "intact"
                          X = classes
                          Y = intact
                          Sd = None }
                        { Series.Label = "top-1 removed"
                          X = classes
                          Y = top 1
                          Sd = None }
                        { Series.Label = "top-10 removed"
                          X = classes
                          Y = top 10
                          Sd = None } ]
                  )
              yield
                  histograms (
                      $"(d) Neuron importance ({readoutName r})",
                      "importance Ω",
                      [ for layer, omega in importance -> $"layer {layer}", omega ]
                  ) ]
          Runs = [ r ] }

    /// Fig. 3b: accuracy against the fraction of weights kept, pruning by parameter importance (eq. 2),
    /// magnitude, optimal brain damage (empirical Fisher over `fisherSamples` training examples), random.
    let pruning
        (s: Recipe)
        progress
        (data: Examples * Examples)
        (fisherSamples: int)
        (scope: PruningScope)
        (boundary: float)
        =
        let trainSet, test = data
        let r = trainedOrLoaded s progress data
        let m = Classification.model r.Config test.Inputs.Shape[1] test.Classes

        // The first `fisherSamples` training examples' per-sample gradients, batched.
        let used = Examples.take fisherSamples trainSet

        let fisher =
            Fisher.diagonal
                FisherKind.Empirical
                None
                { Model = m
                  Params = r.Params
                  Task = 0
                  Inputs = used.Inputs
                  Labels = used.Labels
                  Outputs = test.Classes
                  Rng = Rng.create 0L }

        let kept = [ 0.02; 0.05; 0.1; 0.2; 0.3; 0.5; 0.7; 1.0 ]

        let curve label criterion =
            { Series.Label = label
              X = Array.ofList kept
              Y = [| for f in kept -> accuracyWith r test (Pruning.pruneWith scope criterion f r.Params) |]
              Sd = None }

        { Name = "fig3b"
          Caption =
            $"""Test accuracy against the fraction of weights kept ({(match scope with
                                                                      | PerLayer -> "in every dense layer"
                                                                      | Global -> "over all dense layers")}); eq. 2 from neuron importance ({readoutName r}), Ω = {boundary} for pixels and logits, ties broken by |w|."""
          Panels =
            [ lines (
                  "Pruning",
                  "fraction of weights kept",
                  "test accuracy",
                  [ curve "parameter importance (eq. 2)" (ImportanceWith(importanceOf r, boundary))
                    curve "optimal brain damage (Fisher)" (BrainDamage fisher)
                    curve "magnitude" Magnitude
                    curve "random" (RandomScores(Rng.create (s.Seed + 2000L))) ]
              ) ]
          Runs = [ r ] }

    /// Fig. 3c: training loss per epoch of the plain net, the layer without its losses, the full layer.
    let convergence (s: Recipe) progress data =
        let runs =
            [ "sgd"; "forgetting_layer_star"; "lateral_inhibition" ]
            |> List.map (fun v -> train s progress v 0 data)

        { Name = "fig3c"
          Caption = "Training loss per epoch (each variant's own objective)."
          Panels =
            [ lines (
                  "Convergence",
                  "epoch",
                  "training loss",
                  [ for r in runs ->
                        { Series.Label = r.Config.Label
                          X = [| for m in r.History -> float m.Epoch |]
                          Y = [| for m in r.History -> m.TrainLoss |]
                          Sd = None } ]
              ) ]
          Runs = runs }

    /// Fig. 4a: mean sparsity of the hidden layers against test accuracy, `seeds` runs per variant.
    let tradeoff (s: Recipe) progress data (seeds: int) =
        let variants =
            [ "l1"; "decov"; "sgd"; "inhibition"; "i_short_cut"; "lateral_inhibition" ]

        let runs =
            [ for v in variants -> v, [ for k in 0 .. seeds - 1 -> train s progress v k data ] ]

        { Name = "fig4a"
          Caption = $"Mean sparsity of the hidden layers against test accuracy, {seeds} seeds per variant."
          Panels =
            [ points (
                  "Sparsity and accuracy",
                  "test accuracy",
                  "mean sparsity",
                  [ for v, rs in runs ->
                        v, [| for r in rs -> r.Test.Accuracy, r.Layers |> List.averageBy (fun l -> l.Sparsity) |] ]
              ) ]
          Runs = runs |> List.collect snd }

    /// Fig. 4b: accuracy when a fraction of one hidden layer's units get Gaussian noise on their incoming
    /// weights (sd = scale × the layer's weight sd), mean ± sd over `repeats`, with and without the layer.
    let robustness (s: Recipe) progress data (layer: int) (scale: float) (repeats: int) =
        let test = snd data

        let runs =
            [ "sgd"; "lateral_inhibition" ] |> List.map (fun v -> train s progress v 0 data)

        let perturbed = [ 0.0; 0.1; 0.2; 0.3; 0.4; 0.5; 0.6; 0.7; 0.8; 0.9; 1.0 ]

        let curve (r: RunResult) =
            let keys = Rng.splitN repeats (Rng.create (s.Seed + 3000L))

            let stats =
                [| for f in perturbed ->
                       Statistics.meanSd
                           [| for key in keys -> accuracyWith r test (Perturbation.perturb key layer f scale r.Params) |] |]

            { Series.Label = r.Config.Label
              X = Array.ofList perturbed
              Y = stats |> Array.map fst
              Sd = Some(stats |> Array.map snd) }

        { Name = "fig4b"
          Caption =
            $"Noise (sd {scale} × the layer's weight sd) on the incoming weights of a fraction of hidden layer {layer}'s units; mean ± sd of {repeats}."
          Panels = [ lines ("Robustness", "fraction of units perturbed", "test accuracy", List.map curve runs) ]
          Runs = runs }

    /// The output of the last hidden block for the first `count` test examples.
    let lastHidden (r: RunResult) (test: Examples) (count: int) =
        let m = Classification.model r.Config test.Inputs.Shape[1] test.Classes
        let x = Tensor.slice 0 count test.Inputs
        let _, trace = m.Forward Mode.Eval r.Params x
        let h = (trace |> List.filter (fun e -> e.Kind = Activation) |> List.last).Value
        let v, n = h.ToFloat64Array(), h.Shape[1]
        Array.init count (fun i -> v[i * n .. (i + 1) * n - 1])

    /// Fig. 4c: t-SNE maps of the raw inputs and of the last hidden layer of the plain net and of the net
    /// with forgetting layers, `count` test examples coloured by class, with each map's trustworthiness.
    let tsne (s: Recipe) progress (data: Examples * Examples) (count: int) =
        let test = snd data
        let count = min count test.Count

        let runs =
            [ "sgd"; "lateral_inhibition" ] |> List.map (fun v -> train s progress v 0 data)

        let raw = (Tensor.slice 0 count test.Inputs).ToFloat64Array()
        let features = raw.Length / count
        let inputs = Array.init count (fun i -> raw[i * features .. (i + 1) * features - 1])
        let options = { Tsne.defaults with Seed = s.Seed }

        let panel (title: string) (data: float[][]) =
            let map = Tsne.embed options data
            let trust = Tsne.trustworthiness 12 data map

            points (
                $"{title} (trustworthiness {trust:F3})",
                "t-SNE 1",
                "t-SNE 2",
                [ for c in 0 .. test.Classes - 1 ->
                      string c,
                      [| for i in 0 .. count - 1 do
                             if test.Labels[i] = c then
                                 yield map[i][0], map[i][1] |] ]
            )

        { Name = "fig4c"
          Caption =
            $"t-SNE of {count} test images: raw pixels, and the last hidden layer of the plain net and of the net with forgetting layers."
          Panels =
            [ yield panel "Raw inputs" inputs
              for r in runs -> panel $"Last hidden layer, {r.Config.Label}" (lastHidden r test count) ]
          Runs = runs }

    /// The map of where the importance claims hold: over ρ ∈ {1, 20} × λ ∈ {0.1, 1} (rows) and
    /// optimizer ∈ {sgd, adam} × shortcut ∈ {on, off} (columns), the study's variant with its gate,
    /// each optimizer at its default learning rate (sgd 0.01 with momentum 0.9, adam 1e-3): the
    /// bimodality coefficient of Ω over every hidden unit (Statistics.bimodality, > 5/9: two modes),
    /// and the gain of importance-ordered ablation over random (the mean, over 10 % … 90 % of the
    /// hidden units removed least important first, of that accuracy minus the mean accuracy of
    /// `draws` random orders).
    let claimsMap (s: Recipe) progress (data: Examples * Examples) (draws: int) =
        let test = snd data

        let layer = s.Model.Forgetting |> Option.defaultValue ForgettingLayerConfig.Default

        let rows =
            [ for rho in [ 1.0; 20.0 ] do
                  for lambda in [ 0.1; 1.0 ] -> rho, lambda ]

        let columns =
            [ for o in [ "sgd"; "adam" ] do
                  for sc in [ true; false ] -> o, sc ]

        let inner = [ for i in 1..9 -> float i / 10.0 ]

        let cell (rho, lambda) (optimizer, shortcut) =
            let overrides =
                Recipe.overrides s
                @ [ { Kind = "ers"
                      Given = [ "weight", Number lambda ] } ]

            let v =
                Variant.ofLayer { layer with Rho = rho } (Some shortcut) overrides (layerVariant s)

            let config =
                { Recipe.withVariant v s with
                    Optimizer =
                        { s.Optimizer with
                            Kind = optimizer
                            Lr = Recipe.defaultLr optimizer
                            Momentum =
                                (if optimizer = "adam" then
                                     0.0
                                 else
                                     Recipe.single.Optimizer.Momentum)
                            Nesterov = false }
                    Study = None }

            let label =
                $"""ρ {rho} λ {lambda} {optimizer} shortcut {if shortcut then "on" else "off"}"""

            let r = Classification.run config (progress label) (fst data) test
            let importance = importanceOf r
            let omega = importance |> List.collect (snd >> List.ofArray) |> Array.ofList
            let evaluate = accuracyWith r test

            let ascending =
                Ablation.curve evaluate r.Params (Ablation.order Ascending importance) inner

            let random =
                Rng.splitN draws (Rng.create (s.Seed + 1000L))
                |> Array.map (fun key ->
                    Ablation.curve evaluate r.Params (Ablation.order (Shuffled key) importance) inner)

            let gain =
                List.mapi (fun i a -> a - (random |> Array.averageBy (fun c -> c[i]))) ascending
                |> List.average

            let saturated =
                float (omega |> Array.filter (fun o -> o < 0.1 || o > 0.9) |> Array.length)
                / float omega.Length

            r, Statistics.bimodality omega, gain, saturated

        let cells = [ for row in rows -> [ for column in columns -> cell row column ] ]

        let heatmap title valueLabel (pick: RunResult * float * float * float -> float) =
            Matrix
                { Title = title
                  XLabel = "optimizer, shortcut"
                  YLabel = "ρ, λ"
                  Rows = [ for rho, lambda in rows -> $"ρ {rho}, λ {lambda}" ]
                  Columns = [ for o, sc in columns -> $"""{o}, {if sc then "shortcut" else "no shortcut"}""" ]
                  Values = [| for row in cells -> [| for c in row -> pick c |] |]
                  ValueLabel = valueLabel
                  Range = None }

        let readout =
            match cells |> List.concat |> List.tryHead with
            | Some(r, _, _, _) -> readoutName r
            | None -> "none"

        let gate = if layer.StaticGate then "static" else "input"

        { Name = "map"
          Caption =
            $"Where the importance claims hold ({layerVariant s}, {gate} gate, read-out {readout}, {s.EpochsPerTask} epochs): the bimodality coefficient of Ω over all hidden units (above 5/9: two modes), and the accuracy gained by ablating in ascending importance over random ({draws} orders), averaged over 10-90 percent removed; and the share of units whose Ω is below 0.1 or above 0.9 (the coefficient alone also rises for a skewed single mode)."
          Panels =
            [ heatmap "(a) Bimodality of neuron importance" "bimodality coefficient" (fun (_, b, _, _) -> b)
              heatmap "(b) Gain of importance-ordered ablation over random" "accuracy gain" (fun (_, _, g, _) -> g)
              heatmap "(c) Share of units with Ω below 0.1 or above 0.9" "share saturated" (fun (_, _, _, s) -> s) ]
          Runs = cells |> List.concat |> List.map (fun (r, _, _, _) -> r) }

    /// The saved model a figure starts from instead of training ("": train).
    let private modelSetting: SettingSpec =
        { Name = "model"
          Doc = "a train folder or its model.safetensors to start from instead of training (empty: train)"
          Default = Choice ""
          Check =
            function
            | Choice _ -> None
            | v -> Some $"model must be a path, got {v}" }

    /// A saved model that is not there is refused before any work.
    let private modelFits (v: Settings) =
        match TermSetting.toChoice v "model" with
        | "" -> None
        | path when System.IO.File.Exists(modelFile path) -> None
        | path -> Some $"no saved model at {modelFile path}"

    let private positive name doc value =
        TermSetting.count name doc value "at least 1" (fun n -> n >= 1)

    /// The settings every figure takes: which variant with forgetting layers stands for the paper's
    /// full model, and its shortcut.
    let private common =
        [ TermSetting.choice
              "variant"
              "the variant with forgetting layers trained where the paper's full model stands"
              "lateral_inhibition"
              [ "inhibition"; "i_short_cut"; "lateral_inhibition" ]
          TermSetting.choice
              "shortcut"
              "the shortcut of eq. 5: as the variant has it, or on or off"
              "variant"
              [ "variant"; "on"; "off" ] ]

    /// The figures, in the paper's order, as study kinds, without the common settings.
    let private paperKinds: FigureKind list =
        let paperNet = [ 256; 256; 128 ]

        [ { Name = "fig1e"
            Doc = "sparsity of each hidden layer, and each unit's mean and sd of activation"
            Settings = []
            Hidden = paperNet
            Fits = fun _ _ -> None
            Run = fun s p d _ -> sparsity s p d }
          { Name = "fig2"
            Doc = "ablation of hidden units by neuron importance, per-class accuracy, importance histograms"
            Settings =
              [ positive "draws" "random ablation orders" 10
                TermSetting.choice
                    "ablate"
                    "remove the whole unit (both paths of the shortcut) or only its gated branch"
                    "unit"
                    [ "unit"; "gated-branch" ]
                modelSetting ]
            Hidden = paperNet
            Fits = fun _ v -> modelFits v
            Run =
              fun s p d v ->
                  ablation
                      s
                      p
                      d
                      (TermSetting.toInt v "draws")
                      (if TermSetting.toChoice v "ablate" = "gated-branch" then
                           GatedBranch
                       else
                           WholeUnit) }
          { Name = "fig3b"
            Doc = "pruning by parameter importance (eq. 2), optimal brain damage, magnitude, random"
            Settings =
              [ positive "fisher_samples" "training examples for the Fisher of brain damage" 200
                TermSetting.choice
                    "prune_scope"
                    "keep the fraction of weights per layer or over all layers"
                    "per-layer"
                    [ "per-layer"; "global" ]
                TermSetting.number
                    "boundary_omega"
                    "the Ω of units without a forgetting layer (pixels, logits) in eq. 2"
                    0.0
                    "in [0, 1]"
                    (fun x -> x >= 0.0 && x <= 1.0)
                modelSetting ]
            Hidden = paperNet
            Fits = fun _ v -> modelFits v
            Run =
              fun s p d v ->
                  pruning
                      s
                      p
                      d
                      (TermSetting.toInt v "fisher_samples")
                      (if TermSetting.toChoice v "prune_scope" = "global" then
                           Global
                       else
                           PerLayer)
                      (TermSetting.toFloat v "boundary_omega") }
          { Name = "fig3c"
            Doc = "training loss per epoch"
            Settings = []
            Hidden = paperNet
            Fits = fun _ _ -> None
            Run = fun s p d _ -> convergence s p d }
          { Name = "fig4a"
            Doc = "mean sparsity against test accuracy over seeds (the paper's smaller net, 784-64-64-10)"
            Settings = [ positive "seeds" "runs per variant" 10 ]
            Hidden = [ 64; 64 ]
            Fits = fun _ _ -> None
            Run = fun s p d v -> tradeoff s p d (TermSetting.toInt v "seeds") }
          { Name = "fig4b"
            Doc = "accuracy under Gaussian noise on the incoming weights of a fraction of one layer's units"
            Settings =
              [ positive "perturb_layer" "the hidden layer perturbed" 1
                TermSetting.number "noise" "noise sd as a multiple of the layer's weight sd" 1.0 "≥ 0" (fun x ->
                    x >= 0.0)
                positive "repeats" "noise draws per fraction" 5 ]
            Hidden = paperNet
            Fits =
              fun s v ->
                  let layer = TermSetting.toInt v "perturb_layer"

                  if layer > s.Model.Hidden.Length then
                      Some $"perturb_layer must be a hidden layer, 1 to {s.Model.Hidden.Length}, got {layer}"
                  else
                      None
            Run =
              fun s p d v ->
                  robustness
                      s
                      p
                      d
                      (TermSetting.toInt v "perturb_layer")
                      (TermSetting.toFloat v "noise")
                      (TermSetting.toInt v "repeats") }
          { Name = "map"
            Doc =
              "where the importance claims hold: bimodality of Ω and the gain of importance-ordered ablation over random, over ρ × λ × optimizer × shortcut"
            Settings = [ positive "draws" "random ablation orders per cell" 3 ]
            Hidden = paperNet
            Fits = fun _ _ -> None
            Run = fun s p d v -> claimsMap s p d (TermSetting.toInt v "draws") }
          { Name = "fig4c"
            Doc = "t-SNE of the raw inputs and of the last hidden layer, with trustworthiness"
            Settings = [ positive "tsne_points" "test images embedded" 1000 ]
            Hidden = paperNet
            Fits = fun _ _ -> None
            Run = fun s p d v -> tsne s p d (TermSetting.toInt v "tsne_points") } ]

    /// The figures, in the paper's order, as study kinds, each with the common settings.
    let kinds =
        paperKinds
        |> List.map (fun k ->
            { k with
                Settings = k.Settings @ common })

    /// The figure kind of a name, or an ArgumentException listing the names.
    let kind (name: string) =
        match kinds |> List.tryFind (fun k -> k.Name = name) with

        | Some k -> k
        | None ->
            let known = kinds |> List.map (fun k -> k.Name) |> String.concat ", "
            invalidArg (nameof name) $"unknown figure '{name}'; known: {known}"

    /// A study recipe: `base` (a single-task recipe: data, net, optimizer, schedule, seed, ρ and term
    /// settings) made to draw figure `name`, with its settings resolved (defaults filled in, checked).
    let recipe (name: string) (given: (string * SettingValue) list) (baseRecipe: Recipe) : Recipe =
        let k = kind name
        let settings = TermSetting.resolve name k.Settings given

        match k.Fits baseRecipe settings with
        | Some problem -> invalidArg (nameof given) $"{name}: {problem}"
        | None -> ()

        { baseRecipe with
            Label = name
            Study = Some { Kind = name; Settings = settings } }

    /// Draw the figure a study recipe names, on the recipe's data (Classification.data).
    let run (r: Recipe) (progress: string -> Progress -> unit) (data: Examples * Examples) : Figure =
        match r.Study with
        | None -> invalidArg "recipe" "the recipe names no study (a figure); it is a training run"
        | Some st ->
            let r = recipe st.Kind (Map.toList st.Settings) r
            Classification.validate Catalog.terms { r with Study = None } |> ignore
            (kind st.Kind).Run r progress data r.Study.Value.Settings
