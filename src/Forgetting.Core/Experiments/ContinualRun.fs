namespace Forgetting.Experiments

open System
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Data
open Forgetting.Training
open Forgetting.Analysis

/// What a continual run gave: its recipe, the accuracy matrix R (row 0 at initialisation, row i after
/// task i; column j = task j), the epochs of every task, and where training ended.
type ContinualResult =
    { Recipe: Recipe
      TaskNames: string[]
      R: float[][]
      History: EpochMetrics list list
      Final: ContinualState }

/// A recipe made into a run: its data, scenario, model and objective, and the run itself.
[<RequireQualifiedAccess>]
module ContinualRun =

    let private fail (message: string) : 'a = raise (ArgumentException message)

    /// A recipe of a task sequence, every value in range (Recipe.validate), or an ArgumentException
    /// with a one-line message. Checked before any data is loaded.
    let validate (kinds: TermKind list) (r: Recipe) =
        let r = Recipe.validate kinds r

        if r.Scenario.Kind = "single" then
            fail "a single-task recipe is not a task sequence: run it with 'forgetting run' or 'forgetting train'"

        if r.Study.IsSome then
            fail
                $"a continual run has no study; '{r.Study.Value.Kind}' is run by 'forgetting run' or 'forgetting figure'"

        r

    /// The learning tasks of a scenario, from the data sets it names (`load` fetches one by name).
    let tasks (load: KnownDataset -> TrainTest) (s: ScenarioSpec) : LearningTask[] =
        let data = s.Data |> List.map (fun d -> load (KnownDataset.tryParse d).Value)

        match s.Kind with
        | "permuted" -> Tasks.permuted s.Seed s.Tasks (not s.PermuteFirst) data.Head
        | "split" ->
            let classes = data.Head.Train.Classes

            if s.ClassesPerTask > classes then
                fail $"--classes-per-task {s.ClassesPerTask} is more than the {classes} classes of {s.Data.Head}"

            let groups =
                if s.ClassOrder.IsEmpty then
                    Tasks.classGroups classes s.ClassesPerTask
                elif List.sort s.ClassOrder <> List.init classes id then
                    fail
                        $"--class-order must name each of the {classes} classes of {s.Data.Head} once (0 to {classes - 1}), got {s.ClassOrder}"
                else
                    Array.ofList s.ClassOrder |> Array.chunkBySize s.ClassesPerTask

            Tasks.splitByClasses groups data.Head
        | "sequence" ->
            let sizes = data |> List.map (fun d -> Dataset.features d.Train) |> List.distinct

            if sizes.Length > 1 then
                fail $"a sequence needs data sets of one input size, got {sizes}"

            Tasks.sequence data
        | "stream" -> Tasks.stream s.Seed s.Tasks data.Head
        | other -> fail $"unknown scenario '{other}'"

    /// The scenario of a recipe: its tasks in its setting (Scenario.create), each task's training set
    /// cut to the recipe's limit first when it has one.
    let scenario (load: KnownDataset -> TrainTest) (spec: ScenarioSpec) : Scenario =
        let limit (v: DataView) =
            if spec.TrainLimit > 0 && v.Indices.Length > spec.TrainLimit then
                { v with
                    Indices = v.Indices[.. spec.TrainLimit - 1] }
            else
                v

        tasks load spec
        |> Array.map (fun t -> { t with Train = limit t.Train })
        |> Scenario.create (Setting.parse spec.Setting)

    /// The net of a model description. An MLP: per hidden layer dense → [batch norm] → ReLU →
    /// [forgetting layer]. A binarized net (Laborieux et al. 2021): per hidden layer binarized dense →
    /// batch norm → sign. Then one output layer per head (Layer.heads when there are several), itself
    /// followed by batch norm when the net has it: a binarized net's logits are the batch-normed output
    /// of its last layer. With batch norm, dense layers have no bias (β takes its place).
    let model (m: ModelSpec) (features: int) (heads: int list) : Layer =
        let sizes = features :: m.Hidden
        let normed = m.Norm <> "none"

        let norm width =
            Layer.batchNorm width m.Affine (m.Norm = "running")

        let linear fanIn fanOut =
            let layer =
                match m.Kind with
                | "binarized" -> Metaplasticity.dense (if m.InitScale > 0.0 then m.InitScale else 0.05) fanIn fanOut
                | _ when normed -> Layer.denseNoBias fanIn fanOut
                | _ -> Layer.dense fanIn fanOut

            if m.InitScale > 0.0 && m.Kind <> "binarized" then
                Layer.uniformWeights m.InitScale layer
            else
                layer

        let hidden =
            [ for k, (fanIn, fanOut) in List.indexed (List.pairwise sizes) do
                  yield $"fc{k + 1}", linear fanIn fanOut

                  if normed then
                      yield $"bn{k + 1}", norm fanOut

                  match m.Kind with
                  | "binarized" -> yield $"sign{k + 1}", Metaplasticity.signActivation
                  | _ -> yield $"relu{k + 1}", Layer.relu

                  match m.Forgetting with
                  | Some config -> yield $"forget{k + 1}", ActiveForgetting.layer config fanOut
                  | None -> () ]

        let last = List.last sizes

        let head width =
            if normed then
                Layer.sequential [ "fc", linear last width; "bn", norm width ]
            else
                linear last width

        let output =
            match heads with
            | [ width ] -> head width
            | _ -> Layer.heads (heads |> List.map head)

        Layer.sequential (hidden @ [ "out", output ])

    /// The layer (0, 1, …; the output layer last) of a parameter of `model`'s net, by its path.
    let layerOf (m: ModelSpec) (path: string) =
        let first = path.Split('/')[0]

        if first = "out" then m.Hidden.Length
        elif first.StartsWith "fc" then int (first.Substring 2) - 1
        else -1

    /// Whether a parameter of `model`'s net is a batch norm's γ or β, which the "task" norm state keeps
    /// per task.
    let isNormAffine (path: string) =
        let parts = path.Split '/'
        let last = parts[parts.Length - 1]

        (last = "gamma" || last = "beta")
        && parts |> Array.exists (fun p -> p.StartsWith "bn")

    /// The objective of a recipe: the task loss plus its terms, built by their kinds.
    let objective (kinds: TermKind list) (r: Recipe) =
        r.Terms
        |> List.map (fun t ->
            let kind = kinds |> List.find (fun k -> k.Name = t.Kind)
            kind.Build t.Settings)
        |> Objective.ofTerms

    /// The parts of a run before any training: its scenario, model, initial parameters, configuration
    /// and starting state.
    let prepare (kinds: TermKind list) (load: KnownDataset -> TrainTest) (recipe: Recipe) =
        let recipe = validate kinds recipe
        let s = scenario load recipe.Scenario
        let features = s.Tasks[0].Train.Inputs.Shape[1]
        let net = model recipe.Model features (List.ofArray s.Heads)
        let initKey, _ = Rng.split (Rng.create recipe.Seed)
        let p0 = net.Init initKey Float32

        let config =
            { EpochsPerTask = recipe.EpochsPerTask
              BatchSize = recipe.BatchSize
              Optimizer = recipe.Optimizer.BuildFor(layerOf recipe.Model)
              ResetOptimizer = recipe.Optimizer.ResetPerTask
              PerTask =
                if recipe.Model.NormState = "task" then
                    isNormAffine
                else
                    fun _ -> false
              Seed = recipe.Seed }

        recipe, s, net, config, Continual.start net config (objective kinds recipe) s p0

    /// Run a recipe: load its data, build its tasks, model and objective, learn the tasks (or all at
    /// once, for joint training) and return R with the rest. With a folder, the state after every task
    /// is checkpointed there, and a run that finds checkpoints in it goes on from the latest one
    /// instead of redoing those tasks, to the same numbers. Pure in its result: the same recipe gives
    /// the same numbers on any thread count.
    let run
        (kinds: TermKind list)
        (load: KnownDataset -> TrainTest)
        (progress: ContinualProgress -> unit)
        (folder: string option)
        (recipe: Recipe)
        : ContinualResult =
        let recipe, s, net, config, s0 = prepare kinds load recipe

        let final =
            if recipe.Training = "joint" then
                Continual.joint net config s progress s0
            else
                let resumed =
                    match folder |> Option.bind (fun f -> Continual.latestCheckpoint f s.Tasks.Length) with
                    | Some(task, path) ->
                        let c = Continual.load path s0
                        progress (Resumed task)
                        c
                    | None -> s0

                let save (c: ContinualState) =
                    folder
                    |> Option.iter (fun f -> Continual.save (Continual.checkpointPath f c.Done) c)

                Continual.finishWith net config s progress save resumed

        { Recipe = recipe
          TaskNames = s.Tasks |> Array.map (fun t -> t.Name)
          R = Continual.matrix final
          History = final.History
          Final = final }

    /// The metrics of a run, each with its definition (Analysis.Metrics). Joint training has only R's
    /// rows at initialisation and after all tasks: its ACC is the mean of the last row, and the
    /// metrics that need a row per task are undefined.
    let metrics (r: ContinualResult) : MetricValue list =
        if r.Recipe.Training = "joint" then
            [ for m in Metrics.all ->
                  { Name = m.Name
                    Definition = m.Definition
                    Value =
                      if m.Name = Metrics.averageAccuracy.Name then
                          Some(Array.average r.R[r.R.Length - 1])
                      else
                          None } ]
        else
            Metrics.evaluate r.R

    /// The figures of a run: the accuracy matrix R as a heatmap (rows: after each task; columns: the
    /// tasks), and each task's accuracy over the sequence with the average accuracy so far (ACC_i).
    let panels (r: ContinualResult) : Panel list =
        let tasks = r.TaskNames.Length
        let rows = r.R.Length
        let after i = if i = 0 then "init" else $"task {i}"

        let curves =
            [ for j in 0 .. tasks - 1 do
                  yield
                      { Label = $"task {j + 1}"
                        X = Array.init rows float
                        Y = Array.init rows (fun i -> r.R[i][j])
                        Sd = None }
              if r.Recipe.Training <> "joint" then
                  yield
                      { Label = "average so far (ACC_i)"
                        X = Array.init (rows - 1) (fun i -> float (i + 1))
                        Y = Metrics.averageAccuracies r.R
                        Sd = None } ]

        [ Matrix
              { Title = "accuracy matrix R"
                XLabel = "task tested"
                YLabel = "after learning"
                Rows = List.init rows after
                Columns = List.init tasks (fun j -> $"task {j + 1}")
                Values = r.R
                ValueLabel = "test accuracy"
                Range = Some(0.0, 1.0) }
          Lines
              { Title = "accuracy over the sequence"
                XLabel = "tasks learned"
                YLabel = "test accuracy"
                Series = curves
                XRange = None
                YRange = Some(0.0, 1.0) } ]


    /// Per method (mean ± sd over its seeds): the accuracy on the first task after each task, and the
    /// average accuracy ACC_i after each task (the forgetting paper's Fig. 5b); and, for the methods
    /// with an EWC term, the histogram of log10 of the first task's Fisher values (its Fig. 5c: exact
    /// zeros, such as the heads of tasks not learned yet, are left out); for the methods with a MAS
    /// term, the same of MAS's accumulated Ω after the last task, global and local MAS in panels apart.
    let comparison (runs: (string * ContinualResult) list) : Panel list =
        let methods = runs |> List.map fst |> List.distinct

        let ofMethod m =
            runs |> List.filter (fun (n, _) -> n = m) |> List.map snd

        let series (label: string) (xs: float[]) (values: float list[]) =
            let stats = values |> Array.map Statistics.meanSd

            { Label = label
              X = xs
              Y = stats |> Array.map fst
              Sd =
                (if values[0].Length > 1 then
                     Some(Array.map snd stats)
                 else
                     None) }

        let xsOf (r: ContinualResult) =
            // Joint training's two rows stand at initialisation and after the last task.
            if r.Recipe.Training = "joint" then
                [| 0.0; float r.TaskNames.Length |]
            else
                Array.init r.R.Length float

        let firstTask =
            [ for m in methods ->
                  let rs = ofMethod m
                  let rows = rs.Head.R.Length
                  series m (xsOf rs.Head) (Array.init rows (fun i -> rs |> List.map (fun r -> r.R[i][0]))) ]

        let average =
            [ for m in methods ->
                  let rs = ofMethod m

                  if rs.Head.Recipe.Training = "joint" then
                      series m [| float rs.Head.TaskNames.Length |] [| rs |> List.map (fun r -> Array.average r.R[1]) |]
                  else
                      let accs = rs |> List.map (fun r -> Metrics.averageAccuracies r.R)
                      let t = accs.Head.Length

                      series
                          m
                          (Array.init t (fun i -> float (i + 1)))
                          (Array.init t (fun i -> accs |> List.map (fun a -> a[i]))) ]

        let fisher =
            [ for m in methods do
                  let values =
                      [| for r in ofMethod m do
                             for t in r.Final.State.Objective.Terms do
                                 if t.Name = Ewc.Name then
                                     match Ewc.fisherOf t with
                                     | first :: _ ->
                                         for v in Params.tensors first |> Array.collect (fun x -> x.ToFloat64Array()) do
                                             if v > 0.0 then
                                                 yield log10 v
                                     | [] -> () |]

                  if values.Length > 0 then
                      yield m, values ]

        // MAS's Ω after the last task (summed or blended over the tasks), global and local apart: their
        // scales differ by orders of magnitude.
        let masOmega (importance: string) =
            [ for m in methods do
                  let values =
                      [| for r in ofMethod m do
                             let wanted =
                                 r.Recipe.Terms
                                 |> List.exists (fun t ->
                                     t.Kind = Mas.Name && t.Settings.TryFind "importance" = Some(Choice importance))

                             for t in r.Final.State.Objective.Terms do
                                 if wanted && t.Name = Mas.Name then
                                     match Mas.omegaOf t with
                                     | Some omega ->
                                         for v in Params.tensors omega |> Array.collect (fun x -> x.ToFloat64Array()) do
                                             if v > 0.0 then
                                                 yield log10 v
                                     | None -> () |]

                  if values.Length > 0 then
                      yield m, values ]

        let masHistograms =
            [ for importance, title in
                  [ "global", "MAS's Ω after the last task"
                    "local", "local (Hebbian) MAS's Ω after the last task" ] do
                  let groups = masOmega importance

                  if not groups.IsEmpty then
                      Histograms
                          { Title = title
                            XLabel = "log10 Ω"
                            Groups = groups
                            Bins = 40
                            Range = None
                            Layout = Overlaid } ]

        [ Lines
              { Title = "accuracy on task 1 over the sequence"
                XLabel = "tasks learned"
                YLabel = "test accuracy on task 1"
                Series = firstTask
                XRange = None
                YRange = Some(0.0, 1.0) }
          Lines
              { Title = "average accuracy over the tasks learned (ACC_i)"
                XLabel = "tasks learned"
                YLabel = "average test accuracy"
                Series = average
                XRange = None
                YRange = Some(0.0, 1.0) }
          if not fisher.IsEmpty then
              Histograms
                  { Title = "EWC's Fisher of task 1"
                    XLabel = "log10 Fisher value"
                    Groups = fisher
                    Bins = 40
                    Range = None
                    Layout = Overlaid }
          yield! masHistograms ]

    /// Per method, in the order given, every metric's mean and sample standard deviation (n − 1; 0 for
    /// one seed) over the method's runs, or None where the metric is undefined for every run.
    let summary (runs: (string * ContinualResult) list) : (string * (string * (float * float) option) list) list =
        let methods = runs |> List.map fst |> List.distinct

        [ for m in methods ->
              let values = runs |> List.filter (fun (n, _) -> n = m) |> List.map (snd >> metrics)

              m,
              [ for k, first in List.indexed values.Head ->
                    let xs = values |> List.choose (fun ms -> ms[k].Value)

                    first.Name, if xs.IsEmpty then None else Some(Statistics.meanSd xs) ] ]
