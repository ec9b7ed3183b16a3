namespace Forgetting.Training

open System
open System.Collections.Generic
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Data

/// The three continual-learning scenarios of van de Ven & Tolias (2019, "Three scenarios for continual
/// learning"), which differ in what the model is told at test time and what it must tell apart:
/// Task-IL, Domain-IL and Class-IL.
type Setting =
    /// Task-incremental: the task id is given at test time; a head per task (all layers shared except
    /// the output layer), each over its task's own classes.
    | TaskIL
    /// Domain-incremental: no task id; one head whose outputs are the positions within a task's classes
    /// (split MNIST: "first or second digit of the pair"), shared by every task.
    | DomainIL
    /// Class-incremental: no task id; one head over every class of every task, of which the classes seen
    /// so far are in play.
    | ClassIL

[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Setting =

    /// The name run descriptions use: "task", "domain" or "class".
    let name (s: Setting) =
        match s with
        | TaskIL -> "task"
        | DomainIL -> "domain"
        | ClassIL -> "class"

    /// The setting of a name: "task", "domain" or "class" (also "task-il", "TaskIL", … in any case).
    let parse (text: string) =
        match text.Trim().ToLowerInvariant().Replace("-", "").Replace("_", "") with
        | "task"
        | "taskil" -> TaskIL
        | "domain"
        | "domainil" -> DomainIL
        | "class"
        | "classil" -> ClassIL
        | _ -> invalidArg (nameof text) $"unknown continual-learning setting '{text}'; known: task, domain, class"

/// One task of a scenario as the runner trains and tests it: its examples with labels in its head's
/// numbering, and the head and outputs it is trained on.
type ScenarioTask =
    {
        /// The task's position in the sequence (0 … T−1), the same as its `LearningTask.Id`.
        Index: int
        Name: string
        /// The task's classes in its data set's own numbering (`LearningTask.Classes`).
        Classes: int[]
        /// The head's label of each of `Classes`: a sample of class `Classes[k]` carries `HeadLabels[k]`.
        HeadLabels: int[]
        /// Training examples, labels in the head's numbering, `Classes` = the width of the head.
        Train: Examples
        /// Test examples, labelled the same way.
        Test: Examples
        /// The head (`Task`) and the outputs in play (`Outputs`) while this task is learned.
        Head: HeadUse
    }

/// A task sequence in one of the three settings, with everything materialised once: per task its
/// examples and head use, and the layout of heads the model needs.
type Scenario =
    {
        Setting: Setting
        Tasks: ScenarioTask[]
        /// The width of each head the model needs, head h at index h: Task-IL one per task (its class
        /// count), Domain-IL one (the common class count), Class-IL one (every class of every task).
        Heads: int[]
        /// Class-IL: the number of classes seen after each task (`Seen[i]` after task i, 0-based); the
        /// outputs in play are always the first `Seen[i]` of the head. Task-IL and Domain-IL: each task's
        /// head width.
        Seen: int[]
    }

/// One part of the joint bound's training set: examples that train the same head with the same outputs.
type JointPart = { Head: HeadUse; Train: Examples }

/// The joint bound (every task's training data at once) as parts that each train one head: where the
/// tasks share a head (Domain-IL, Class-IL) there is one part, the union of all tasks' training sets, so
/// that batches mix tasks as i.i.d. training would; in Task-IL one part per task, since a forward pass
/// runs one head, and an epoch interleaves the parts' batches (see `Joint.epoch`).
type Joint = { Parts: JointPart[] }

/// The joint bound's batches.
[<RequireQualifiedAccess>]
module Joint =

    /// One epoch's batches: each part shuffled by its own key and cut into batches of `batchSize` (the
    /// last one partial), then taken in turn, batch b of every part before batch b + 1 of any (round
    /// robin; a part with fewer batches drops out when it has none left). With one part (Domain-IL,
    /// Class-IL) these are plain shuffled mini-batches of the union, tasks mixed within a batch; in
    /// Task-IL each batch holds one task and trains its head.
    let epoch (rng: Rng) (batchSize: int) (joint: Joint) : Forgetting.Training.Batch[] =
        if batchSize < 1 then
            invalidArg (nameof batchSize) $"the batch size must be at least 1, got {batchSize}"

        let keys = Rng.splitN joint.Parts.Length rng

        let perPart =
            joint.Parts
            |> Array.mapi (fun k part -> Trainer.batches keys[k] part.Train.Count batchSize)

        let rounds =
            if perPart.Length = 0 then
                0
            else
                perPart |> Array.map Array.length |> Array.max

        [| for b in 0 .. rounds - 1 do
               for k in 0 .. perPart.Length - 1 do
                   if b < perPart[k].Length then
                       let part = joint.Parts[k]
                       let indices = perPart[k][b]

                       let batch: Forgetting.Training.Batch =
                           { Inputs = Tensor.gather indices part.Train.Inputs
                             Labels = indices |> Array.map (fun i -> part.Train.Labels[i])
                             Task = part.Head.Task
                             Outputs = part.Head.Outputs }

                       yield batch |]

/// Continual-learning scenarios: a task sequence (permuted, split, sequence or stream tasks, `Tasks`)
/// learned in Task-IL, Domain-IL or Class-IL (van de Ven & Tolias 2019).
///
/// Labels. Task-IL and Domain-IL: a sample of the task's class `Classes[k]` carries k, its position
/// within the task's classes. Class-IL: a global class index. Two tasks share their classes when they
/// share their domain, that is the source data set of their training samples (the same value) and the
/// pixel permutation; tasks of different domains are disjoint copies of their label spaces (permuted
/// tasks, as GMvandeVen/continual-learning numbers permuted MNIST's Class-IL classes; a sequence of
/// data sets). The (domain, class) pairs are numbered in the order in which the tasks first bring them,
/// a task's new classes in increasing order, so that the classes seen after any task are the first
/// outputs of the head. Hence: split tasks whose groups come in increasing order (`Tasks.classGroups`)
/// keep their original class; permuted tasks of K classes give task t's class c the label t·K + c; a
/// sequence offsets each data set's classes by the classes of the data sets before it; stream parts all
/// share one data set and keep their original classes.
///
/// Testing, which defines the accuracy matrix R (row 0 at initialisation, row i + 1 after the model
/// learned task i, column j = task j): task j is tested on its whole test set, as `testHead` says, after
/// task i. Task-IL: task j's own head with all its outputs, whatever i (the task id is given at test
/// time; a head not trained yet is tested as it is). Domain-IL: the one head with all its outputs.
/// Class-IL: the one head with the outputs in play after task i, `Seen[i]`, so that a sample of a class
/// not seen yet is always wrong (R[i + 1, j] = 0 when all of task j's classes are new after task i); at
/// initialisation (i = −1) the first task's outputs. The same outputs are in play while task i is
/// learned, both in training and in testing.
[<RequireQualifiedAccess>]
module Scenario =

    let private fail (message: string) : 'a = raise (ArgumentException message)

    /// `count` groups of consecutive classes of near-equal size (the first `classes mod count` one
    /// larger), for split tasks given by their number rather than their size.
    let groups (classes: int) (count: int) : int[][] =
        if classes < 1 then
            fail $"split tasks need at least one class, got {classes}"

        if count < 1 || count > classes then
            fail $"{classes} classes can be split into 1 … {classes} groups, not {count}"

        let small = classes / count
        let larger = classes % count

        Array.init count (fun g ->
            let start = g * small + min g larger
            Array.init (small + (if g < larger then 1 else 0)) (fun k -> start + k))

    let private sameDomain (a: DataView) (b: DataView) =
        obj.ReferenceEquals(a.Source, b.Source) && a.Permutation = b.Permutation

    let private validate (setting: Setting) (tasks: LearningTask[]) =
        if tasks.Length = 0 then
            fail "a scenario needs at least one task"

        let features = DataView.features tasks[0].Train

        for t in 0 .. tasks.Length - 1 do
            let task = tasks[t]
            let name = $"task {t} ({task.Name})"

            if task.Id <> t then
                fail
                    $"task {t} ({task.Name}) has id {task.Id}: a scenario's tasks are numbered 0 … {tasks.Length - 1} in order"

            if task.Classes.Length = 0 then
                fail $"{name} has no classes"

            if Array.distinct task.Classes |> Array.length <> task.Classes.Length then
                fail $"""{name} lists a class twice: {String.Join(", ", task.Classes)}"""

            for c in task.Classes do
                if c < 0 || c >= task.Train.Source.Classes then
                    fail $"{name}: class {c} is outside 0 … {task.Train.Source.Classes - 1} of its data set"

            if DataView.count task.Train = 0 then
                fail $"{name} has no training samples"

            if DataView.count task.Test = 0 then
                fail $"{name} has no test samples"

            if DataView.features task.Test <> DataView.features task.Train then
                fail
                    $"{name}: its training samples have {DataView.features task.Train} values and its test samples {DataView.features task.Test}"

            if DataView.features task.Train <> features then
                fail
                    $"{name} has {DataView.features task.Train} values per sample, task 0 has {features}: one network takes one input size"

        match setting with
        | DomainIL ->
            let k = tasks[0].Classes.Length

            match tasks |> Array.tryFind (fun t -> t.Classes.Length <> k) with
            | Some t ->
                fail
                    $"Domain-IL needs every task to have the same number of classes (one head, no task id): task {t.Id} ({t.Name}) has {t.Classes.Length}, task 0 has {k}"
            | None -> ()
        | TaskIL
        | ClassIL -> ()

    /// Class-IL: the global label of every task's classes, and the classes seen after each task.
    let private classLabels (tasks: LearningTask[]) =
        let domains = List<DataView>()
        let numbers = Dictionary<struct (int * int), int>()

        let perTask =
            tasks
            |> Array.map (fun task ->
                let d =
                    match Seq.tryFindIndex (fun v -> sameDomain v task.Train) domains with
                    | Some d -> d
                    | None ->
                        domains.Add task.Train
                        domains.Count - 1

                for c in Array.sort task.Classes do
                    if not (numbers.ContainsKey(struct (d, c))) then
                        numbers[struct (d, c)] <- numbers.Count

                task.Classes |> Array.map (fun c -> numbers[struct (d, c)]), numbers.Count)

        Array.map fst perTask, Array.map snd perTask

    /// Examples of a view with its labels mapped to the head's numbering; the inputs of views holding
    /// the same samples (a stream's parts all test on the whole test set) are materialised once.
    let private examples
        (cache: List<DataView * Tensor>)
        (what: string)
        (task: LearningTask)
        (headLabels: int[])
        (width: int)
        (view: DataView)
        =
        let inputs =
            match
                cache
                |> Seq.tryFind (fun (v, _) -> sameDomain v view && v.Indices = view.Indices)
            with
            | Some(_, inputs) -> inputs
            | None ->
                let inputs = (Examples.ofView view).Inputs
                cache.Add((view, inputs))
                inputs

        let map = Dictionary<int, int>()
        Array.iter2 (fun c l -> map[c] <- l) task.Classes headLabels

        let labels =
            DataView.labels view
            |> Array.mapi (fun i l ->
                match map.TryGetValue l with
                | true, h -> h
                | _ ->
                    fail
                        $"""task {task.Id} ({task.Name}): {what} sample {i} has label {l}, not one of its classes {String.Join(", ", task.Classes)}""")

        { Inputs = inputs
          Labels = labels
          Classes = width }

    /// The scenario of a task sequence in a setting: labels mapped, examples materialised once, heads laid
    /// out. Refused with an ArgumentException: no tasks, task ids not 0 … T−1 in order, a task without
    /// classes, training or test samples, a class listed twice or outside its data set, a sample whose
    /// label is not one of its task's classes, tasks of different input sizes (e.g. a sequence of data
    /// sets of different image sizes), and Domain-IL over tasks of different class counts (one head
    /// shared without a task id only means something when position k of every task is one output: a
    /// split into unequal groups, say 10 classes in groups of 3, is refused; Task-IL or Class-IL serve it).
    let create (setting: Setting) (tasks: LearningTask[]) : Scenario =
        validate setting tasks

        let headLabels, seen =
            match setting with
            | TaskIL
            | DomainIL ->
                tasks |> Array.map (fun t -> Array.init t.Classes.Length id),
                tasks |> Array.map (fun t -> t.Classes.Length)
            | ClassIL -> classLabels tasks

        let heads =
            match setting with
            | TaskIL -> tasks |> Array.map (fun t -> t.Classes.Length)
            | DomainIL -> [| tasks[0].Classes.Length |]
            | ClassIL -> [| Array.last seen |]

        let cache = List<DataView * Tensor>()

        let scenarioTasks =
            tasks
            |> Array.mapi (fun t task ->
                let head =
                    match setting with
                    | TaskIL -> { Task = t; Outputs = heads[t] }
                    | DomainIL -> { Task = 0; Outputs = heads[0] }
                    | ClassIL -> { Task = 0; Outputs = seen[t] }

                let width = heads[head.Task]

                { Index = t
                  Name = task.Name
                  Classes = Array.copy task.Classes
                  HeadLabels = headLabels[t]
                  Train = examples cache "training" task headLabels[t] width task.Train
                  Test = examples cache "test" task headLabels[t] width task.Test
                  Head = head })

        { Setting = setting
          Tasks = scenarioTasks
          Heads = heads
          Seen = seen }

    /// How task `task` is tested after the model learned tasks 0 … `after` (`after` = −1 at
    /// initialisation): the head and outputs behind R[after + 1, task]. Task-IL: the task's own head, all
    /// its outputs. Domain-IL: the one head, all its outputs. Class-IL: the one head, the outputs of the
    /// classes seen after task `after` (at initialisation those of the first task).
    let testHead (s: Scenario) (after: int) (task: int) : HeadUse =
        if after < -1 || after >= s.Tasks.Length then
            fail
                $"a scenario of {s.Tasks.Length} tasks is tested after task -1 (at initialisation) … {s.Tasks.Length - 1}, not {after}"

        if task < 0 || task >= s.Tasks.Length then
            fail $"a scenario of {s.Tasks.Length} tasks has tasks 0 … {s.Tasks.Length - 1}, not {task}"

        match s.Setting with
        | TaskIL -> s.Tasks[task].Head
        | DomainIL -> { Task = 0; Outputs = s.Heads[0] }
        | ClassIL ->
            { Task = 0
              Outputs = s.Seen[max after 0] }

    /// R[after + 1, task]: the fraction of task `task`'s test samples the model classifies right, in
    /// evaluation mode, as `testHead` says, after it learned tasks 0 … `after` (−1: at initialisation).
    /// A sample whose label is beyond the outputs in play (Class-IL, a class not seen yet) counts as wrong.
    let accuracy (s: Scenario) (model: Layer) (p: Params) (batchSize: int) (after: int) (task: int) : float =
        let head = testHead s after task
        let test = s.Tasks[task].Test
        let predicted = Trainer.predictOn head model p batchSize test

        let hits =
            Array.fold2 (fun n a b -> if a = b then n + 1 else n) 0 predicted test.Labels

        float hits / float test.Count

    /// The model's output layer for the scenario: one head per entry of `Heads`, head h made by
    /// `make h width` (Task-IL picks head t for task t; the other settings always run head 0).
    let heads (s: Scenario) (make: int -> int -> Layer) : Layer =
        s.Heads |> Array.mapi make |> List.ofArray |> Layer.heads

    /// The joint bound's training data. Where every task trains one head (Domain-IL, Class-IL) one part,
    /// the union of the tasks' training sets in task order, on the head's full width (Class-IL: every
    /// class); in Task-IL one part per task, on its head. Each sample keeps its head's label. Tested like
    /// the sequential runs after their last task (`testHead s (T − 1)`).
    let joint (s: Scenario) : Joint =
        let last = s.Tasks.Length - 1

        match s.Setting with
        | TaskIL ->
            { Parts =
                s.Tasks
                |> Array.map (fun t ->
                    { Head = testHead s last t.Index
                      Train = t.Train }) }
        | DomainIL
        | ClassIL ->
            let union =
                if s.Tasks.Length = 1 then
                    s.Tasks[0].Train
                else
                    { Inputs =
                        s.Tasks
                        |> Array.map (fun t -> t.Train.Inputs)
                        |> List.ofArray
                        |> Tensor.concat 0
                      Labels = s.Tasks |> Array.collect (fun t -> t.Train.Labels)
                      Classes = s.Heads[0] }

            { Parts =
                [| { Head = testHead s last 0
                     Train = union } |] }
