namespace Forgetting.Training

open Forgetting.Tensors
open Forgetting.Nn

/// One task as the continual runner trains it: its examples (labels in its head's numbering) and the
/// head and outputs it is trained on.
type TaskData =
    { Name: string
      Train: Examples
      Test: Examples
      Head: HeadUse }

/// What the runner needs of a scenario: the tasks in order, and how task j is tested after the model
/// has learned tasks 0 … i (i = −1 at initialisation).
type TaskSequence =
    { Tasks: TaskData[]
      TestHead: int -> int -> HeadUse }

/// How a continual run trains: per task the epochs and batch size, the optimizer (and whether its state
/// starts afresh at every task), and the seed.
type ContinualConfig =
    { EpochsPerTask: int
      BatchSize: int
      Optimizer: Optimizer
      ResetOptimizer: bool
      Seed: int64 }

/// Progress of a continual run, for a display.
type ContinualProgress =
    | TaskStarted of task: int * tasks: int * name: string
    | Training of task: int * Progress
    | TaskDone of task: int * accuracies: float[]

/// Where a run stands after some tasks: the training state and the rows of R so far.
type ContinualState =
    {
        /// Tasks learned so far.
        Done: int
        State: TrainState
        /// R's rows so far: row 0 at initialisation, row i after task i (accuracy on every task).
        Rows: float[] list
        /// Per learned task, its epochs.
        History: EpochMetrics list list
    }

/// The continual runner: tasks one after another, every term's consolidation after each task, and the
/// raw accuracy matrix R, from which every metric derives (Analysis.Metrics).
[<RequireQualifiedAccess>]
module Continual =

    /// Accuracy on every task of the sequence, tested as the model stands after task `after`.
    let row (model: Layer) (batchSize: int) (sequence: TaskSequence) (after: int) (p: Params) =
        sequence.Tasks
        |> Array.mapi (fun j t ->
            let head = sequence.TestHead after j
            let predicted = Trainer.predictOn head model p batchSize t.Test
            fst (Trainer.accuracy predicted t.Test))

    /// The start of a run: R's row at initialisation, nothing learned yet.
    let start (model: Layer) (config: ContinualConfig) (objective: Objective) (sequence: TaskSequence) (p0: Params) =
        if sequence.Tasks.Length = 0 then
            invalidArg (nameof sequence) "a continual run needs at least one task"

        { Done = 0
          State = Step.init config.Optimizer objective p0
          Rows = [ row model config.BatchSize sequence -1 p0 ]
          History = [] }

    let private taskKeys (config: ContinualConfig) (task: int) =
        // One key per task, from the run's seed: a resumed run draws the same batches as an unbroken one.
        let keys = Rng.splitN (task + 1) (Rng.create config.Seed)
        Rng.split keys[task]

    /// Learn the next task: train it, consolidate every term on it, and test every task.
    let learnNext
        (model: Layer)
        (config: ContinualConfig)
        (sequence: TaskSequence)
        (progress: ContinualProgress -> unit)
        (s: ContinualState)
        =
        let i = s.Done

        if i >= sequence.Tasks.Length then
            invalidArg (nameof s) $"every one of the {sequence.Tasks.Length} tasks is learned already"

        let task = sequence.Tasks[i]
        progress (TaskStarted(i, sequence.Tasks.Length, task.Name))
        let trainKey, consolidationKey = taskKeys config i

        let state =
            if config.ResetOptimizer && i > 0 then
                { s.State with
                    Optimizer = config.Optimizer.Init s.State.Params }
            else
                s.State

        let trainConfig =
            { Epochs = config.EpochsPerTask
              BatchSize = config.BatchSize
              Optimizer = config.Optimizer
              Seed = int64 trainKey.Key }

        let state, history, _ =
            Trainer.fit model trainConfig task.Head (fun p -> progress (Training(i, p))) state task.Train task.Test

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

        let accuracies = row model config.BatchSize sequence i state.Params
        progress (TaskDone(i, accuracies))

        { Done = i + 1
          State = { state with Objective = objective }
          Rows = s.Rows @ [ accuracies ]
          History = s.History @ [ history ] }

    /// Learn every remaining task.
    let finish model config sequence progress (s: ContinualState) =
        let mutable s = s

        while s.Done < sequence.Tasks.Length do
            s <- learnNext model config sequence progress s

        s

    /// The joint bound: every task's data at once. Each epoch cuts every task's training set into
    /// shuffled batches and interleaves them, task by task in turn, until all are used (a batch holds
    /// one task, so a Task-IL net trains every head). R gets two rows: at initialisation and after.
    let joint
        (model: Layer)
        (config: ContinualConfig)
        (sequence: TaskSequence)
        (progress: ContinualProgress -> unit)
        (s: ContinualState)
        =
        let tasks = sequence.Tasks
        let last = tasks.Length - 1
        progress (TaskStarted(0, 1, "all tasks at once"))
        let trainKey, _ = taskKeys config 0
        let epochKeys = Rng.splitN config.EpochsPerTask trainKey
        let mutable state = s.State
        let total = tasks |> Array.sumBy (fun t -> t.Train.Count)

        let history =
            [ for epoch in 1 .. config.EpochsPerTask do
                  let sw = System.Diagnostics.Stopwatch.StartNew()
                  let keys = Rng.splitN (tasks.Length + 1) epochKeys[epoch - 1]

                  let perTask =
                      tasks
                      |> Array.mapi (fun j t -> Trainer.batches keys[j] t.Train.Count config.BatchSize)

                  let order =
                      [| for b in 0 .. (perTask |> Array.map Array.length |> Array.max) - 1 do
                             for j in 0..last do
                                 if b < perTask[j].Length then
                                     yield j, perTask[j][b] |]

                  let stepKeys = Rng.splitN order.Length keys[tasks.Length]
                  let mutable lossSum = 0.0

                  order
                  |> Array.iteri (fun k (j, indices) ->
                      let t = tasks[j]

                      let batch =
                          { Inputs = Tensor.gather indices t.Train.Inputs
                            Labels = indices |> Array.map (fun i -> t.Train.Labels[i])
                            Task = t.Head.Task
                            Outputs = (sequence.TestHead last j).Outputs }

                      let state', loss = Step.run model config.Optimizer stepKeys[k] state batch
                      state <- state'
                      lossSum <- lossSum + loss * float indices.Length
                      progress (Training(0, BatchDone(epoch, k + 1, order.Length, loss))))

                  let accuracies = row model config.BatchSize sequence last state.Params

                  let m =
                      { Epoch = epoch
                        TrainLoss = lossSum / float total
                        TestLoss = nan
                        TestAccuracy = Array.average accuracies
                        Seconds = sw.Elapsed.TotalSeconds }

                  progress (Training(0, EpochDone m))
                  m ]

        let accuracies = row model config.BatchSize sequence last state.Params
        progress (TaskDone(0, accuracies))

        { Done = tasks.Length
          State = state
          Rows = s.Rows @ [ accuracies ]
          History = [ history ] }

    /// R as an array: (tasks learned + 1) rows × tasks columns.
    let matrix (s: ContinualState) = s.Rows |> Array.ofList
