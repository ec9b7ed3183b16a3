namespace Forgetting.Experiments

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Training
open Forgetting.Analysis

/// A re-run figure of source 000: its panels (chart descriptions, drawn by Forgetting.Reporting) and the
/// runs behind them.
type Figure =
    { Name: string
      Caption: string
      Panels: Panel list
      Runs: RunResult list }

/// Settings shared by the figures: how long to train and on what.
type FigureSettings =
    {
        Hidden: int list
        Epochs: int
        BatchSize: int
        Optimizer: OptimizerChoice
        /// The forgetting layer's steepness ρ.
        Rho: float
        /// Settings of the variants' terms ("ers:weight=0.2"), or terms added to every variant.
        Terms: TermOverride list
        Seed: int64
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


    /// Train one variant with the settings (seed offset by `k` for repetitions).
    let train
        (s: FigureSettings)
        (progress: string -> Progress -> unit)
        (variant: string)
        (k: int)
        (data: Examples * Examples)
        =
        let v = Variant.ofName s.Rho s.Terms variant

        let config =
            { Variant = v
              Hidden = s.Hidden
              Optimizer = s.Optimizer
              Epochs = s.Epochs
              BatchSize = s.BatchSize
              Seed = s.Seed + int64 k }

        Classification.run config (progress $"{variant} seed {config.Seed}") (fst data) (snd data)

    /// Accuracy of a trained run's model with other parameters, on the test set.
    let private accuracyWith (r: RunResult) (test: Examples) (p: Params) =
        let m = Classification.model r.Config test.Inputs.Shape[1] test.Classes
        fst (Trainer.accuracy (Trainer.predict m p r.Config.BatchSize test) test)

    let private importanceOf (r: RunResult) =
        r.Layers
        |> List.map (fun l ->
            match l.Importance with
            | Some omega -> l.Layer, omega
            | None -> failwith $"{r.Config.Variant.Name} has no forgetting layer to read importance from")

    /// A histogram of a per-unit statistic of the first hidden layer, one group per run.
    let private activations (title: string) (statistic: LayerReadout -> float[]) (runs: RunResult list) =
        Histograms
            { Title = title
              XLabel = "activation"
              Groups = [ for r in runs -> r.Config.Variant.Name, statistic r.Layers.Head ]
              Bins = 30
              Range = None
              Layout = Overlaid }

    /// Fig. 1e: sparsity of each hidden layer without the layer, with ERS only, and with ERS + IRS.
    let sparsity (s: FigureSettings) progress data =
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
                        { Series.Label = r.Config.Variant.Name
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
    let ablation (s: FigureSettings) progress (data: Examples * Examples) (draws: int) =
        let test = snd data
        let r = train s progress "lateral_inhibition" 0 data
        let importance = importanceOf r
        let evaluate = accuracyWith r test
        let rng = Rng.create (s.Seed + 1000L)

        let curves (scope: (int * float[]) list) =
            let fixedOrder label order =
                { Series.Label = label
                  X = Array.ofList fractions
                  Y =
                    Ablation.curve evaluate r.Params (Ablation.order order scope) fractions
                    |> Array.ofList
                  Sd = None }

            let random =
                Rng.splitN draws rng
                |> Array.map (fun key ->
                    Ablation.curve evaluate r.Params (Ablation.order (Shuffled key) scope) fractions
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
            snd (Trainer.accuracy (Trainer.predict m (Ablation.remove removed r.Params) r.Config.BatchSize test) test)

        let classes = [| for c in 0 .. test.Classes - 1 -> float c |]
        let m = Classification.model r.Config test.Inputs.Shape[1] test.Classes

        let intact =
            snd (Trainer.accuracy (Trainer.predict m r.Params r.Config.BatchSize test) test)

        { Name = "fig2"
          Caption =
            "Ablation of hidden units by neuron importance (a, b), per-class accuracy after removing the most important units (c), importance histograms (d)."
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
                      "(d) Neuron importance",
                      "importance Ω",
                      [ for layer, omega in importance -> $"layer {layer}", omega ]
                  ) ]
          Runs = [ r ] }

    /// Fig. 3b: accuracy against the fraction of weights kept, pruning by parameter importance (eq. 2),
    /// magnitude, optimal brain damage (empirical Fisher over `fisherSamples` training examples), random.
    let pruning (s: FigureSettings) progress (data: Examples * Examples) (fisherSamples: int) =
        let trainSet, test = data
        let r = train s progress "lateral_inhibition" 0 data
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
              Y = [| for f in kept -> accuracyWith r test (Pruning.prune criterion f r.Params) |]
              Sd = None }

        { Name = "fig3b"
          Caption = "Test accuracy against the fraction of weights kept in every dense layer."
          Panels =
            [ lines (
                  "Pruning",
                  "fraction of weights kept",
                  "test accuracy",
                  [ curve "parameter importance (eq. 2)" (Importance(importanceOf r))
                    curve "optimal brain damage (Fisher)" (BrainDamage fisher)
                    curve "magnitude" Magnitude
                    curve "random" (RandomScores(Rng.create (s.Seed + 2000L))) ]
              ) ]
          Runs = [ r ] }

    /// Fig. 3c: training loss per epoch of the plain net, the layer without its losses, the full layer.
    let convergence (s: FigureSettings) progress data =
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
                        { Series.Label = r.Config.Variant.Name
                          X = [| for m in r.History -> float m.Epoch |]
                          Y = [| for m in r.History -> m.TrainLoss |]
                          Sd = None } ]
              ) ]
          Runs = runs }

    /// Fig. 4a: mean sparsity of the hidden layers against test accuracy, `seeds` runs per variant.
    let tradeoff (s: FigureSettings) progress data (seeds: int) =
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
    let robustness (s: FigureSettings) progress data (layer: int) (scale: float) (repeats: int) =
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

            { Series.Label = r.Config.Variant.Name
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
    let tsne (s: FigureSettings) progress (data: Examples * Examples) (count: int) =
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
              for r in runs -> panel $"Last hidden layer, {r.Config.Variant.Name}" (lastHidden r test count) ]
          Runs = runs }
