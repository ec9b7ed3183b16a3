namespace Forgetting.Training

open System
open System.IO
open System.Text.Json
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Data

/// How a continual run trains: per task the epochs and batch size, the optimizer (and whether its state
/// starts afresh at every task), the seed, and the parameters kept per task.
type ContinualConfig =
    {
        EpochsPerTask: int
        BatchSize: int
        Optimizer: Optimizer
        ResetOptimizer: bool
        Seed: int64
        /// The parameters (by path) saved after each task and restored to test that task, the rest of
        /// the net as it stands (batch norm's γ and β in the binarized nets of Laborieux et al. 2021, their
        /// "task" scenario). Nothing (fun _ -> false) tests every task with the current parameters.
        PerTask: string -> bool
    }

/// Progress of a continual run, for a display.
type ContinualProgress =
    | TaskStarted of task: int * tasks: int * name: string
    | Training of task: int * Progress
    | TaskDone of task: int * accuracies: float[]
    /// A run resumed from its checkpoint after this many tasks.
    | Resumed of tasks: int

/// Where a run stands after some tasks: the training state and the rows of R so far.
type ContinualState =
    {
        /// Tasks learned so far (for joint training: all of them once it is done).
        Done: int
        State: TrainState
        /// R's rows so far: row 0 at initialisation, row i after task i (accuracy on every task).
        Rows: float[] list
        /// Per learned task, its epochs.
        History: EpochMetrics list list
        /// Per learned task, its own values of the parameters kept per task (ContinualConfig.PerTask).
        Snapshots: (string * Tensor) list list
    }

/// The continual runner: tasks one after another, every term's consolidation after each task, and the
/// raw accuracy matrix R, from which every metric derives (Analysis.Metrics). Each step is pure: a
/// state in, the next state out, so that a run can stop after any task and go on from its checkpoint.
[<RequireQualifiedAccess>]
module Continual =

    /// Accuracy on every task of the scenario, tested as the model stands after task `after` (−1 at
    /// initialisation; see Scenario.testHead), each learned task j with its own snapshot of the
    /// parameters kept per task (snapshots[j]) in place of the current ones. A task tested on the same
    /// samples with the same head and parameters as an earlier one (the parts of a stream, all tested on
    /// the whole test set) is not tested again.
    let rowWith (model: Layer) (batchSize: int) (s: Scenario) (after: int) (snapshots: (string * Tensor) list list) p =
        let byTask = Array.ofList snapshots

        let own j =
            j < byTask.Length && not byTask[j].IsEmpty

        // The scenario shares the inputs of equal test views (Scenario.create).
        let sameTest (a: Examples) (b: Examples) =
            obj.ReferenceEquals(a.Inputs, b.Inputs) && a.Labels = b.Labels

        let row = Array.zeroCreate s.Tasks.Length

        for j in 0 .. s.Tasks.Length - 1 do
            let earlier =
                if own j then
                    None
                else
                    [ 0 .. j - 1 ]
                    |> List.tryFind (fun k ->
                        not (own k)
                        && Scenario.testHead s after k = Scenario.testHead s after j
                        && sameTest s.Tasks[k].Test s.Tasks[j].Test)

            row[j] <-
                match earlier with
                | Some k -> row[k]
                | None ->
                    let pj =
                        if own j then
                            byTask[j] |> List.fold (fun acc (path, t) -> Params.replace path t acc) p
                        else
                            p

                    Scenario.accuracy s model pj batchSize after j

        row

    /// Accuracy on every task of the scenario, tested as the model stands after task `after` (−1 at
    /// initialisation; see Scenario.testHead).
    let row (model: Layer) (batchSize: int) (s: Scenario) (after: int) (p: Params) =
        rowWith model batchSize s after [] p

    let private snapshot (config: ContinualConfig) (p: Params) =
        Params.flatten p |> List.filter (fst >> config.PerTask)

    /// The start of a run: R's row at initialisation, nothing learned yet.
    let start (model: Layer) (config: ContinualConfig) (objective: Objective) (s: Scenario) (p0: Params) =
        if s.Tasks.Length = 0 then
            invalidArg (nameof s) "a continual run needs at least one task"

        { Done = 0
          State = Step.init config.Optimizer objective p0
          Rows = [ row model config.BatchSize s -1 p0 ]
          History = []
          Snapshots = [] }

    // One key per task, from the run's seed alone: a resumed run draws the same batches as an unbroken one.
    let private taskKeys (config: ContinualConfig) (task: int) =
        let keys = Rng.splitN (task + 1) (Rng.create config.Seed)
        Rng.split keys[task]

    /// Learn the next task: train it, consolidate every term on it, and test every task.
    let learnNext
        (model: Layer)
        (config: ContinualConfig)
        (s: Scenario)
        (progress: ContinualProgress -> unit)
        (c: ContinualState)
        =
        let i = c.Done

        if i >= s.Tasks.Length then
            invalidArg (nameof c) $"every one of the {s.Tasks.Length} tasks is learned already"

        let task = s.Tasks[i]
        progress (TaskStarted(i, s.Tasks.Length, task.Name))
        let trainKey, consolidationKey = taskKeys config i

        let state =
            if config.ResetOptimizer && i > 0 then
                { c.State with
                    Optimizer = config.Optimizer.Init c.State.Params }
            else
                c.State

        let trainConfig =
            { Epochs = config.EpochsPerTask
              BatchSize = config.BatchSize
              Optimizer = config.Optimizer
              Seed = int64 trainKey.Key }

        let state, history, _ =
            try
                Trainer.fit model trainConfig task.Head (fun p -> progress (Training(i, p))) state task.Train task.Test
            with :? DivergedError as e ->
                raise (DivergedError $"task {i + 1} of {s.Tasks.Length}: {e.Message}")

        let objective =
            Objective.consolidate
                { Model = model
                  Params = state.Params
                  Task = i
                  Inputs = task.Train.Inputs
                  Labels = task.Train.Labels
                  Outputs = task.Head.Outputs
                  Rng = consolidationKey }
                state.Objective

        let snapshots = c.Snapshots @ [ snapshot config state.Params ]
        let accuracies = rowWith model config.BatchSize s i snapshots state.Params
        progress (TaskDone(i, accuracies))

        { Done = i + 1
          State = { state with Objective = objective }
          Rows = c.Rows @ [ accuracies ]
          History = c.History @ [ history ]
          Snapshots = snapshots }

    /// Learn every remaining task, calling `after` with the state after each (to checkpoint it).
    let finishWith model config (s: Scenario) progress (after: ContinualState -> unit) (c: ContinualState) =
        let mutable c = c

        while c.Done < s.Tasks.Length do
            c <- learnNext model config s progress c
            after c

        c

    /// Learn every remaining task.
    let finish model config (s: Scenario) progress (c: ContinualState) =
        finishWith model config s progress ignore c

    /// The joint bound: every task's data at once (Scenario.joint, batches from Joint.epoch), tested as
    /// the sequential runs are after their last task. R gets two rows: at initialisation and after.
    let joint
        (model: Layer)
        (config: ContinualConfig)
        (s: Scenario)
        (progress: ContinualProgress -> unit)
        (c: ContinualState)
        =
        let last = s.Tasks.Length - 1
        let data = Scenario.joint s
        let total = data.Parts |> Array.sumBy (fun p -> p.Train.Count)
        progress (TaskStarted(0, 1, "all tasks at once"))
        let trainKey, _ = taskKeys config 0
        let epochKeys = Rng.splitN config.EpochsPerTask trainKey
        let mutable state = c.State
        let mutable limit = None

        let history =
            [ for epoch in 1 .. config.EpochsPerTask do
                  let sw = Diagnostics.Stopwatch.StartNew()
                  let batchKey, stepKey = Rng.split epochKeys[epoch - 1]
                  let batches = Joint.epoch batchKey config.BatchSize data

                  let state', lossSum, ceiling =
                      try
                          Trainer.steps
                              model
                              config.Optimizer
                              stepKey
                              epoch
                              (fun p -> progress (Training(0, p)))
                              limit
                              state
                              batches.Length
                              (fun b -> batches[b])
                      with :? DivergedError as e ->
                          raise (DivergedError $"joint training: {e.Message}")

                  state <- state'
                  limit <- Some ceiling
                  let accuracies = row model config.BatchSize s last state.Params

                  let m =
                      { Epoch = epoch
                        TrainLoss = lossSum / float total
                        TestLoss = nan
                        TestAccuracy = Array.average accuracies
                        Seconds = sw.Elapsed.TotalSeconds }

                  progress (Training(0, EpochDone m))
                  m ]

        let accuracies = row model config.BatchSize s last state.Params
        progress (TaskDone(0, accuracies))

        { Done = s.Tasks.Length
          State = state
          Rows = c.Rows @ [ accuracies ]
          History = [ history ]
          Snapshots = [] }

    /// R as an array: (tasks learned + 1) rows × tasks columns.
    let matrix (c: ContinualState) = c.Rows |> Array.ofList

    // ------------------------------------------------------------------ checkpoints

    let private rowsJson (c: ContinualState) =
        JsonSerializer.Serialize(c.Rows |> List.map Array.ofSeq |> Array.ofList)

    let private historyJson (c: ContinualState) =
        JsonSerializer.Serialize(
            c.History
            |> List.map (fun h ->
                h
                |> List.map (fun m -> [| float m.Epoch; m.TrainLoss; m.TestLoss; m.TestAccuracy; m.Seconds |])
                |> Array.ofList)
            |> Array.ofList
        )

    /// Write the state after a task as one safetensors file (parameters under "params/", optimizer
    /// buffers under "optimizer/<buffer>/<parameter>", term state under "terms/", the parameters kept
    /// per task under "task<k>/"; tasks done, R's rows, the epochs and the optimizer's step count in the
    /// metadata), atomically.
    let save (path: string) (c: ContinualState) =
        let named prefix (p: Params) =
            Params.flatten p |> List.map (fun (name, t) -> prefix + name, t)

        let tensors =
            [ yield! named "params/" c.State.Params
              for KeyValue(name, t) in c.State.Optimizer.Buffers -> "optimizer/" + name, t
              for name, t in Objective.state c.State.Objective -> "terms/" + name, t
              for k, snapshot in List.indexed c.Snapshots do
                  for path, t in snapshot -> $"task{k + 1}/{path}", t ]

        Checkpoint.write
            path
            tensors
            (Map
                [ "done", string c.Done
                  "optimizer_step", string c.State.Optimizer.Step
                  "optimizer_buffers", string c.State.Optimizer.Buffers.Count
                  "rows", rowsJson c
                  "history", historyJson c ])

    /// A state read back from `save`'s file, its structure taken from `like` (a fresh start of the same
    /// run: the parameter tree, the optimizer and the objective's terms); a file of another run is
    /// refused with a one-line message naming it.
    let load (path: string) (like: ContinualState) : ContinualState =
        let c = Checkpoint.read path
        let stored = dict c.Tensors

        let bad (message: string) : 'a =
            raise (DataError($"{path}: {message}", path))

        let meta key =
            match c.Metadata.TryFind key with
            | Some v -> v
            | None -> bad $"not a checkpoint of a continual run (no '{key}' in its metadata)"

        let tree (prefix: string) (shape: Params) =
            Params.flatten shape
            |> List.map (fun (name, t) ->
                match stored.TryGetValue(prefix + name) with
                | true, v when v.Shape = t.Shape && v.DType = t.DType -> v
                | true, v ->
                    bad
                        $"'{prefix + name}' is {v.DType} {Shape.show v.Shape} here but {t.DType} {Shape.show t.Shape} in this run: the checkpoint belongs to another run"
                | _ -> bad $"it lacks '{prefix + name}': the checkpoint belongs to another run")
            |> Array.ofList
            |> Params.withTensors shape

        let p = tree "params/" like.State.Params
        let buffers = int (meta "optimizer_buffers")

        if buffers <> like.State.Optimizer.Buffers.Count then
            bad $"its optimizer keeps {buffers} buffers, this run's {like.State.Optimizer.Buffers.Count}"

        let named (name: string) (like: Tensor) =
            match stored.TryGetValue name with
            | true, v when v.Shape = like.Shape && v.DType = like.DType -> v
            | true, v ->
                bad
                    $"'{name}' is {v.DType} {Shape.show v.Shape} here but {like.DType} {Shape.show like.Shape} in this run: the checkpoint belongs to another run"
            | _ -> bad $"it lacks '{name}': the checkpoint belongs to another run"

        let terms =
            [ for name, t in c.Tensors do
                  if name.StartsWith "terms/" then
                      name.Substring 6, t ]

        let rows = JsonSerializer.Deserialize<float[][]>(meta "rows") |> List.ofArray

        let history =
            JsonSerializer.Deserialize<float[][][]>(meta "history")
            |> Array.map (fun h ->
                h
                |> Array.map (fun m ->
                    { Epoch = int m[0]
                      TrainLoss = m[1]
                      TestLoss = m[2]
                      TestAccuracy = m[3]
                      Seconds = m[4] })
                |> List.ofArray)
            |> List.ofArray

        let learned = int (meta "done")

        let snapshots =
            [ for k in 1..learned ->
                  [ for name, t in c.Tensors do
                        if name.StartsWith $"task{k}/" then
                            name.Substring(name.IndexOf '/' + 1), t ] ]

        { Done = learned
          State =
            { Params = p
              Optimizer =
                { Step = int (meta "optimizer_step")
                  Buffers =
                    like.State.Optimizer.Buffers
                    |> Map.map (fun name b -> named ("optimizer/" + name) b) }
              Objective = Objective.restore terms like.State.Objective }
          Rows = rows
          History = history
          Snapshots = snapshots }

    /// The checkpoint file of a run folder after task i (1-based), and the latest one present.
    let checkpointPath (folder: string) (task: int) =
        Path.Combine(folder, $"checkpoint-task{task}.safetensors")

    let latestCheckpoint (folder: string) (tasks: int) =
        [ tasks .. -1 .. 1 ]
        |> List.tryFind (fun t -> File.Exists(checkpointPath folder t))
        |> Option.map (fun t -> t, checkpointPath folder t)
