namespace Forgetting.Experiments

open System
open System.IO
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Data
open Forgetting.Training
open Forgetting.Analysis

/// One tensor's importance in a few numbers.
type TensorImportance =
    {
        Tensor: string
        Count: int
        Mean: float
        Median: float
        Max: float
        /// The fraction of exact zeros (parameters the task's outputs do not reach, such as other heads).
        Zeros: float
    }

/// Parameter importance of a trained model on a data set, by any of the synaptic methods' read-outs,
/// and how their rankings agree: what `forgetting importance` prints, and the forgetting paper's
/// Fig. 5c (histograms of parameter importance).
[<RequireQualifiedAccess>]
module Importance =

    /// The read-outs: global MAS (Aljundi et al. 2018, eq. 4, per-sample, ‖F‖²₂), local Hebbian MAS
    /// (eq. 7), and EWC's diagonal true Fisher (Kirkpatrick et al. 2017, eq. 3). SI's importance is a
    /// path integral over training and cannot be read off a trained model.
    let methods = [ "mas"; "mas-local"; "ewc" ]

    /// The importance `method` gives the parameters of `c` (its model, parameters, task, inputs, labels
    /// and outputs in play; EWC alone uses the labels, through the outputs in play).
    let compute (method: string) (c: Consolidation) : Params =
        match method with
        | "mas" -> Mas.globalImportanceOf MasSettings.Default c.Model c.Task (Some c.Outputs) c.Params c.Inputs
        | "mas-local" -> Mas.localImportance c.Model c.Task c.Params c.Inputs
        | "ewc" -> Fisher.diagonal FisherKind.True None c
        | "si" ->
            invalidArg
                (nameof method)
                "SI's importance is a path integral over training: it cannot be read off a trained model (known: mas, mas-local, ewc)"
        | other ->
            let known = String.concat ", " methods
            invalidArg (nameof method) $"unknown importance '{other}'; known: {known}"

    let private median (xs: float[]) =
        let s = Array.sort xs
        let n = s.Length

        if n % 2 = 1 then
            s[n / 2]
        else
            (s[n / 2 - 1] + s[n / 2]) / 2.0

    /// Per tensor of Ω: its count, mean, median, maximum and fraction of zeros.
    let summary (omega: Params) : TensorImportance list =
        [ for path, t in Params.flatten omega ->
              let v = t.ToFloat64Array()

              { Tensor = path
                Count = v.Length
                Mean = (if v.Length = 0 then nan else Array.average v)
                Median = (if v.Length = 0 then nan else median v)
                Max = (if v.Length = 0 then nan else Array.max v)
                Zeros =
                  (if v.Length = 0 then
                       nan
                   else
                       float (v |> Array.filter ((=) 0.0) |> Array.length) / float v.Length) } ]

    /// Spearman's rank correlation of two importances, tensor by tensor (a weight matrix or a bias: one
    /// layer's synapses): over all its entries, and over the entries where either is non-zero (inputs
    /// that never fire, such as MNIST's border pixels, give every method 0 there, and those ties inflate
    /// the first). Tensors where a side is constant (all zeros, such as the heads of other tasks) give no
    /// ranking and are left out.
    let agreement (a: Params) (b: Params) : (string * float * float) list =
        List.map2
            (fun (path, (x: Tensor)) (other, (y: Tensor)) ->
                if path <> other then
                    invalidArg (nameof b) $"the importances have different tensors: '{path}' against '{other}'"

                let xs, ys = x.ToFloat64Array(), y.ToFloat64Array()

                let rho (xs: float[]) (ys: float[]) =
                    if xs.Length < 2 then nan else Statistics.spearman xs ys

                let live =
                    Array.init xs.Length id |> Array.filter (fun i -> xs[i] <> 0.0 || ys[i] <> 0.0)

                path, rho xs ys, rho (live |> Array.map (fun i -> xs[i])) (live |> Array.map (fun i -> ys[i])))
            (Params.flatten a)
            (Params.flatten b)
        |> List.filter (fun (_, rho, _) -> not (Double.IsNaN rho))

    /// The log10 of every positive value of Ω (exact zeros left out).
    let logValues (omega: Params) =
        [| for t in Params.tensors omega do
               for v in t.ToFloat64Array() do
                   if v > 0.0 then
                       yield log10 v |]

    /// Histograms of log10 importance, one group per (label, Ω), overlaid (the forgetting paper's Fig. 5c).
    let histogram (title: string) (groups: (string * Params) list) : Panel =
        Histograms
            { Title = title
              XLabel = "log10 importance"
              Groups = groups |> List.map (fun (label, omega) -> label, logValues omega)
              Bins = 40
              Range = None
              Layout = Overlaid }

    /// A trained model of a single-task run's folder (`train`, a run of `compare`): its recipe, the MLP
    /// with the parameters of its model.safetensors (names and shapes checked against the MLP the recipe
    /// describes), on the training or test inputs chosen by `pick`.
    let private singleRun
        (load: KnownDataset -> TrainTest)
        (folder: string)
        (recipe: Recipe)
        (after: int option)
        (task: int)
        (onTest: bool)
        (pick: int -> int[])
        (seed: int64)
        : Recipe * int * Consolidation =
        let recipe = Classification.validate Catalog.terms recipe

        if task <> 0 then
            invalidArg (nameof task) $"task {task + 1} is not in the run: a single-task run has task 1 only"

        match after with
        | Some a when a <> 1 -> invalidArg (nameof after) $"a single-task run has one model, after task 1; got {a}"
        | _ -> ()

        let modelPath = Path.Combine(folder, "model.safetensors")

        if not (File.Exists modelPath) then
            invalidArg
                (nameof folder)
                $"{folder} holds no model.safetensors (a run from before models were saved): run it again with 'forgetting run'"

        let train, test = Classification.data load recipe
        let data = if onTest then test else train
        let net = Classification.model recipe data.Inputs.Shape[1] data.Classes
        let p = Checkpoint.toParams (Checkpoint.read modelPath).Tensors

        let shapes (q: Params) =
            Params.flatten q |> List.map (fun (path, t) -> path, t.Shape, t.DType)

        let expected = shapes (net.Init (Rng.create 0L) Float32)

        if shapes p <> expected then
            invalidArg
                (nameof folder)
                $"{modelPath} does not hold the model its recipe describes (tensors, shapes or dtypes differ)"

        let chosen = pick data.Count

        recipe,
        1,
        { Model = net
          Params = p
          Task = 0
          Inputs = Tensor.gather chosen data.Inputs
          Labels = chosen |> Array.map (fun i -> data.Labels[i])
          Outputs = data.Classes
          Rng = Rng.create seed }

    /// A trained model of a continual run's folder: its recipe, the model, and the consolidation view
    /// of `task` (0-based) at the parameters of the checkpoint after task `after` (1-based; None: the
    /// latest), on that task's training inputs, or its test inputs with `onTest` (at most `samples`, a
    /// random subset from `seed`).
    let ofRun
        (load: KnownDataset -> TrainTest)
        (folder: string)
        (after: int option)
        (task: int)
        (onTest: bool)
        (samples: int option)
        (seed: int64)
        : Recipe * int * Consolidation =
        let recipePath = Path.Combine(folder, "recipe.json")

        if not (File.Exists recipePath) then
            invalidArg (nameof folder) $"{folder} holds no recipe.json: give the folder of one continual run"

        let recipe = Recipe.load Catalog.terms recipePath

        let pick (n: int) =
            match samples with
            | Some cap when cap < 1 -> invalidArg (nameof samples) $"the sample cap must be at least 1, got {cap}"
            | Some cap when cap < n -> Rng.permutation n (Rng.create seed) |> Array.truncate cap |> Array.sort
            | _ -> Array.init n id

        if recipe.Scenario.Kind = "single" then
            singleRun load folder recipe after task onTest pick seed
        else

            let _, s, net, _, s0 = ContinualRun.prepare Catalog.terms load recipe
            let tasks = s.Tasks.Length

            if task < 0 || task >= tasks then
                invalidArg (nameof task) $"task {task + 1} is not in the run: it has tasks 1 … {tasks}"

            let done', path =
                match after with
                | Some a when a < 1 || a > tasks -> invalidArg (nameof after) $"the run has tasks 1 … {tasks}, got {a}"
                | Some a -> a, Continual.checkpointPath folder a
                | None ->
                    match Continual.latestCheckpoint folder tasks with
                    | Some(a, p) -> a, p
                    | None -> invalidArg (nameof folder) $"{folder} holds no checkpoint: run it first"

            if not (File.Exists path) then
                invalidArg (nameof after) $"{folder} holds no checkpoint after task {done'}"

            let state = Continual.load path s0
            let t = s.Tasks[task]
            let data = if onTest then t.Test else t.Train
            let n = data.Inputs.Shape[0]

            let chosen = pick n

            recipe,
            done',
            { Model = net
              Params = state.State.Params
              Task = t.Head.Task
              Inputs = Tensor.gather chosen data.Inputs
              Labels = chosen |> Array.map (fun i -> data.Labels[i])
              Outputs = t.Head.Outputs
              Rng = Rng.create seed }

    /// The net of a continual run's model description whose parameters are `p`: the input width read off
    /// fc1's weight, the heads off the output layer's ("out/weight" for one head, "out/head1/weight" …
    /// for one per task; "out/fc/weight" … with batch norm). For read-outs of a trained model without its data (the C# face).
    let modelOf (spec: ModelSpec) (p: Params) : Layer =
        let shapes =
            Params.flatten p |> List.map (fun (path, t) -> path, t.Shape) |> Map.ofList

        let features =
            match shapes.TryFind "fc1/weight" with
            | Some s -> s[0]
            | None -> invalidArg (nameof p) "the parameters have no 'fc1/weight': not a continual run's MLP"

        // With batch norm an output layer is "fc" then "bn" (ContinualRun.model).
        let weight = if spec.Norm = "none" then "weight" else "fc/weight"

        let heads =
            match shapes.TryFind $"out/{weight}" with
            | Some s -> [ s[1] ]
            | None ->
                [ for k in 1 .. shapes.Count do
                      match shapes.TryFind $"out/head{k}/{weight}" with
                      | Some s -> yield s[1]
                      | None -> () ]

        if heads.IsEmpty then
            invalidArg (nameof p) $"the parameters have no output layer ('out/{weight}' or 'out/head1/{weight}')"

        ContinualRun.model spec features heads
