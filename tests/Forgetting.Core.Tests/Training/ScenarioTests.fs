module Forgetting.Tests.Training.ScenarioTests

open System
open Expecto
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Data
open Forgetting.Training

/// A data set of `count` samples of `features` distinct values, labels cycling over `classes`.
let private dataset (name: string) (classes: int) (count: int) (features: int) (offset: int) =
    Dataset.create
        name
        [| features |]
        classes
        (Array.init (count * features) (fun k -> float32 (offset + k)))
        (Array.init count (fun i -> i % classes))

let private trainTest (name: string) (classes: int) (features: int) =
    { Train = dataset $"{name}/train" classes (4 * classes) features 0
      Test = dataset $"{name}/test" classes (2 * classes) features 100_000 }

/// The four kinds of task sequence, small.
let private permuted () =
    Tasks.permuted 7 3 false (trainTest "toy" 4 6)

let private split () =
    Tasks.splitByClasses (Tasks.classGroups 6 2) (trainTest "toy" 6 5)

let private sequence () =
    Tasks.sequence [ trainTest "a" 3 4; trainTest "b" 3 4 ]

let private stream () = Tasks.stream 3 3 (trainTest "toy" 4 5)

let private kinds =
    [ "permuted", permuted; "split", split; "sequence", sequence; "stream", stream ]

let private settings = [ TaskIL; DomainIL; ClassIL ]

/// The message of the ArgumentException that `f` raises.
let private refusal (f: unit -> 'a) =
    try
        f () |> ignore
        failtest "expected an ArgumentException"
    with :? ArgumentException as e ->
        e.Message

/// What holds in every setting for every kind: labels are the head labels of the samples' classes, below
/// the outputs in play; inputs are the views' samples; heads laid out per setting.
let private invariants (setting: Setting) (tasks: LearningTask[]) (s: Scenario) =
    let t = tasks.Length
    Expect.equal s.Tasks.Length t "one scenario task per task"

    Expect.equal s.Heads.Length (if setting = TaskIL then t else 1) "Task-IL: a head per task; otherwise one"

    for task in s.Tasks do
        let source = tasks[task.Index]
        Expect.equal task.Classes source.Classes "the task's classes"
        Expect.equal task.Name source.Name "the task's name"

        let expectLabels (what: string) (view: DataView) (e: Examples) =
            let expected =
                DataView.labels view
                |> Array.map (fun l -> task.HeadLabels[Array.IndexOf(source.Classes, l)])

            Expect.equal e.Labels expected $"task {task.Index}: {what} labels in the head's numbering"
            Expect.equal e.Classes s.Heads[task.Head.Task] $"task {task.Index}: {what} examples span the head"

            Expect.equal
                (e.Inputs.ToArray())
                (DataView.materialise view).Images
                $"task {task.Index}: {what} inputs are the view's samples"

        expectLabels "training" source.Train task.Train
        expectLabels "test" source.Test task.Test

        Expect.isTrue
            (task.Train.Labels |> Array.forall (fun l -> l < task.Head.Outputs))
            "training labels are among the outputs in play"

        Expect.isLessThanOrEqual task.Head.Outputs s.Heads[task.Head.Task] "the outputs in play fit the head"

        Expect.isTrue
            (task.Test.Labels
             |> Array.forall (fun l -> l < (Scenario.testHead s task.Index task.Index).Outputs))
            "after its own training, a task's test labels are in play"

        match setting with
        | TaskIL ->
            Expect.equal task.Head.Task task.Index "Task-IL: task t trains head t"
            Expect.equal task.Head.Outputs source.Classes.Length "Task-IL: every output of its head"
            Expect.equal task.HeadLabels (Array.init source.Classes.Length id) "Task-IL: the position in the task"
        | DomainIL ->
            Expect.equal task.Head { Task = 0; Outputs = s.Heads[0] } "Domain-IL: the one head, every output"
            Expect.equal task.HeadLabels (Array.init source.Classes.Length id) "Domain-IL: the position in the task"
        | ClassIL ->
            Expect.equal
                task.Head
                { Task = 0
                  Outputs = s.Seen[task.Index] }
                "Class-IL: the classes seen so far"

    for after in -1 .. t - 1 do
        for j in 0 .. t - 1 do
            let h = Scenario.testHead s after j

            let expected =
                match setting with
                | TaskIL -> s.Tasks[j].Head
                | DomainIL -> { Task = 0; Outputs = s.Heads[0] }
                | ClassIL ->
                    { Task = 0
                      Outputs = s.Seen[max after 0] }

            Expect.equal h expected $"task {j} tested after task {after}"

    if setting = ClassIL then
        Expect.equal (Array.last s.Seen) s.Heads[0] "Class-IL: every class is seen in the end"
        Expect.equal s.Seen (Array.sort s.Seen) "Class-IL: classes seen only grow"

/// The head labels of each task.
let private labelsOf (s: Scenario) =
    s.Tasks |> Array.map (fun t -> t.HeadLabels)

/// One-hot samples of 4 classes (sample i of class i % 4), for a model whose logits are its inputs.
let private oneHot (name: string) (count: int) =
    Dataset.create
        name
        [| 4 |]
        4
        (Array.init (count * 4) (fun k -> if k % 4 = (k / 4) % 4 then 1.0f else 0.0f))
        (Array.init count (fun i -> i % 4))

let private identityHeads (s: Scenario) =
    Scenario.heads s (fun _ _ -> Layer.stateless "identity" id)

[<Tests>]
let tests =
    testList
        "Continual-learning scenarios"
        [ testList
              "every setting of every kind"
              [ for kind, make in kinds do
                    for setting in settings do
                        test $"{kind} in {Setting.name setting}" {
                            let tasks = make ()
                            invariants setting tasks (Scenario.create setting tasks)
                        } ]

          test "permuted tasks: Class-IL numbers task t's class c as t·K + c" {
              let tasks = permuted ()
              let task = Scenario.create TaskIL tasks
              let domain = Scenario.create DomainIL tasks
              let cls = Scenario.create ClassIL tasks
              Expect.equal task.Heads [| 4; 4; 4 |] "Task-IL heads"
              Expect.equal domain.Heads [| 4 |] "Domain-IL head"
              Expect.equal cls.Heads [| 12 |] "Class-IL head"
              Expect.equal cls.Seen [| 4; 8; 12 |] "classes seen"

              Expect.equal (labelsOf cls) [| [| 0; 1; 2; 3 |]; [| 4; 5; 6; 7 |]; [| 8; 9; 10; 11 |] |] "t·K + c"

              Expect.equal (labelsOf domain) (Array.create 3 [| 0; 1; 2; 3 |]) "Domain-IL: c"
              Expect.equal cls.Tasks[2].Train.Labels[..4] [| 8; 9; 10; 11; 8 |] "samples of task 2"
          }

          test "permuted tasks with the first unpermuted: still a domain per task" {
              let s = Scenario.create ClassIL (Tasks.permuted 7 3 true (trainTest "toy" 4 6))
              Expect.equal s.Heads [| 12 |] "the unpermuted task is a domain of its own"
          }

          test "split tasks: Class-IL keeps the original classes" {
              let tasks = split ()
              let task = Scenario.create TaskIL tasks
              let domain = Scenario.create DomainIL tasks
              let cls = Scenario.create ClassIL tasks
              Expect.equal task.Heads [| 2; 2; 2 |] "Task-IL heads"
              Expect.equal domain.Heads [| 2 |] "Domain-IL head"
              Expect.equal cls.Heads [| 6 |] "Class-IL head"
              Expect.equal cls.Seen [| 2; 4; 6 |] "classes seen"
              Expect.equal (labelsOf cls) [| [| 0; 1 |]; [| 2; 3 |]; [| 4; 5 |] |] "original classes"
              Expect.equal (labelsOf task) (Array.create 3 [| 0; 1 |]) "positions"
              Expect.equal task.Tasks[1].Train.Labels[..3] [| 0; 1; 0; 1 |] "classes 2, 3 as 0, 1"
              Expect.equal cls.Tasks[1].Train.Labels[..3] [| 2; 3; 2; 3 |] "classes 2, 3 as they are"
          }

          test "split tasks out of order: Class-IL numbers classes as the tasks bring them" {
              let data = trainTest "toy" 6 5

              let s =
                  Scenario.create ClassIL (Tasks.splitByClasses [| [| 3; 4 |]; [| 1; 0 |] |] data)

              Expect.equal (labelsOf s) [| [| 0; 1 |]; [| 3; 2 |] |] "3, 4 first, then 0, 1 in increasing order"
              Expect.equal s.Seen [| 2; 4 |] "the classes seen are the first outputs"
              Expect.equal s.Heads [| 4 |] "only the classes of the tasks"

              let s =
                  Scenario.create ClassIL (Tasks.splitByClasses [| [| 1; 0 |]; [| 3; 2 |] |] data)

              Expect.equal (labelsOf s) [| [| 1; 0 |]; [| 3; 2 |] |] "groups in increasing order keep their classes"
          }

          test "split tasks of unequal size serve Task-IL and Class-IL, not Domain-IL" {
              let tasks = Tasks.splitByClasses (Tasks.classGroups 5 3) (trainTest "toy" 5 5)
              Expect.equal (Scenario.create TaskIL tasks).Heads [| 3; 2 |] "Task-IL heads"
              Expect.equal (Scenario.create ClassIL tasks).Heads [| 5 |] "Class-IL head"
              invariants TaskIL tasks (Scenario.create TaskIL tasks)
              invariants ClassIL tasks (Scenario.create ClassIL tasks)

              Expect.stringContains
                  (refusal (fun () -> Scenario.create DomainIL tasks))
                  "Domain-IL needs every task to have the same number of classes"
                  "Domain-IL"
          }

          test "a sequence of data sets: Class-IL offsets each by the classes before it" {
              let cls = Scenario.create ClassIL (sequence ())
              Expect.equal cls.Heads [| 6 |] "3 + 3 classes"
              Expect.equal (labelsOf cls) [| [| 0; 1; 2 |]; [| 3; 4; 5 |] |] "b's classes after a's"
              Expect.equal (Scenario.create DomainIL (sequence ())).Heads [| 3 |] "Domain-IL: c"

              let uneven = Tasks.sequence [ trainTest "a" 3 4; trainTest "b" 4 4 ]
              Expect.equal (Scenario.create ClassIL uneven).Heads [| 7 |] "3 + 4 classes"
              Expect.equal (Scenario.create TaskIL uneven).Heads [| 3; 4 |] "Task-IL heads"
              Expect.stringContains (refusal (fun () -> Scenario.create DomainIL uneven)) "task 1 (b) has 4" "Domain-IL"
          }

          test "a sequence of data sets of different input sizes is refused" {
              let tasks = Tasks.sequence [ trainTest "a" 3 4; trainTest "b" 3 5 ]

              for setting in settings do
                  Expect.stringContains
                      (refusal (fun () -> Scenario.create setting tasks))
                      "task 1 (b) has 5 values per sample, task 0 has 4"
                      (Setting.name setting)
          }

          test "a stream's parts share their classes and one test set" {
              let tasks = stream ()
              let cls = Scenario.create ClassIL tasks
              Expect.equal cls.Heads [| 4 |] "one data set: its classes"
              Expect.equal cls.Seen [| 4; 4; 4 |] "every class from the first part on"
              Expect.equal (Scenario.create TaskIL tasks).Heads [| 4; 4; 4 |] "Task-IL: a head per part"

              Expect.isTrue
                  (obj.ReferenceEquals(cls.Tasks[0].Test.Inputs, cls.Tasks[2].Test.Inputs))
                  "the whole test set is materialised once"

              Expect.equal
                  (cls.Tasks |> Array.sumBy (fun t -> t.Train.Count))
                  (Dataset.count tasks[0].Train.Source)
                  "the parts cut the training set"
          }

          test "Class-IL tests with the outputs seen after the task: unseen classes are always wrong" {
              let data =
                  { Train = oneHot "onehot/train" 16
                    Test = oneHot "onehot/test" 8 }

              let s =
                  Scenario.create ClassIL (Tasks.splitByClasses [| [| 0; 1 |]; [| 2; 3 |] |] data)

              let model = identityHeads s
              let p = model.Init (Rng.create 0L) Float32

              let acc after task =
                  Scenario.accuracy s model p 3 after task

              Expect.equal [ acc -1 0; acc -1 1 ] [ 1.0; 0.0 ] "at initialisation: the first task's outputs"
              Expect.equal [ acc 0 0; acc 0 1 ] [ 1.0; 0.0 ] "after task 0: classes 2, 3 are not in play"
              Expect.equal [ acc 1 0; acc 1 1 ] [ 1.0; 1.0 ] "after task 1: every class"

              let t =
                  Scenario.create TaskIL (Tasks.splitByClasses [| [| 0; 1 |]; [| 2; 3 |] |] data)

              let heads =
                  Scenario.heads t (fun h width ->
                      Layer.stateless "slice" (fun x ->
                          x |> Tensor.transpose |> Tensor.slice (2 * h) width |> Tensor.transpose))

              let p = heads.Init (Rng.create 0L) Float32

              Expect.equal
                  [ for after in -1 .. 1 do
                        for j in 0..1 -> Scenario.accuracy t heads p 5 after j ]
                  (List.replicate 6 1.0)
                  "Task-IL: each task on its own head"
          }

          test "the joint bound: one part of mixed tasks where they share a head, a part per head in Task-IL" {
              let tasks = split ()
              let cls = Scenario.create ClassIL tasks
              let joint = Scenario.joint cls
              Expect.equal joint.Parts.Length 1 "Class-IL: one part"
              let part = joint.Parts[0]
              Expect.equal part.Head { Task = 0; Outputs = 6 } "every class in play"
              Expect.equal part.Train.Labels (cls.Tasks |> Array.collect (fun t -> t.Train.Labels)) "the union's labels"

              Expect.equal
                  (part.Train.Inputs.ToArray())
                  (cls.Tasks |> Array.collect (fun t -> t.Train.Inputs.ToArray()))
                  "the union's inputs"

              let domain = Scenario.joint (Scenario.create DomainIL tasks)
              Expect.equal domain.Parts[0].Head { Task = 0; Outputs = 2 } "Domain-IL: the one head"

              let task = Scenario.create TaskIL tasks
              let joint = Scenario.joint task

              Expect.equal
                  (joint.Parts |> Array.map (fun p -> p.Head))
                  (task.Tasks |> Array.map (fun t -> t.Head))
                  "heads"

              Expect.isTrue
                  (Array.forall2
                      (fun (t: ScenarioTask) (p: JointPart) -> obj.ReferenceEquals(t.Train, p.Train))
                      task.Tasks
                      joint.Parts)
                  "parts"
          }

          test "an epoch of the joint bound uses every sample once; Task-IL batches take the heads in turn" {
              let tasks =
                  Tasks.splitByClasses [| [| 0; 1 |]; [| 2; 3; 4 |] |] (trainTest "toy" 5 3)

              let s = Scenario.create TaskIL tasks
              let batches = Joint.epoch (Rng.create 5L) 3 (Scenario.joint s)
              // Task 0 has 8 samples (3 batches), task 1 has 12 (4 batches).
              Expect.equal (batches |> Array.map (fun b -> b.Task)) [| 0; 1; 0; 1; 0; 1; 1 |] "round robin"

              for b in batches do
                  Expect.equal b.Outputs s.Tasks[b.Task].Head.Outputs "the head's outputs"
                  Expect.isLessThanOrEqual b.Labels.Length 3 "at most the batch size"

              for task in s.Tasks do
                  let rows =
                      batches
                      |> Array.filter (fun b -> b.Task = task.Index)
                      |> Array.collect (fun b -> b.Inputs.ToArray() |> Array.chunkBySize 3)
                      |> Array.sortBy (fun r -> r[0])

                  Expect.equal rows (task.Train.Inputs.ToArray() |> Array.chunkBySize 3) "each sample once"

              let again = Joint.epoch (Rng.create 5L) 3 (Scenario.joint s)
              Expect.equal (again |> Array.map (fun b -> b.Labels)) (batches |> Array.map (fun b -> b.Labels)) "seeded"

              let mixed =
                  Joint.epoch (Rng.create 5L) 4 (Scenario.joint (Scenario.create ClassIL tasks))

              Expect.equal mixed.Length 5 "20 samples in batches of 4"
              Expect.isTrue (mixed |> Array.forall (fun b -> b.Task = 0 && b.Outputs = 5)) "one head, every class"

              let union =
                  (Scenario.create ClassIL tasks).Tasks
                  |> Array.collect (fun t -> t.Train.Labels)
                  |> Array.sort

              Expect.equal (mixed |> Array.collect (fun b -> b.Labels) |> Array.sort) union "every sample once"
          }

          test "settings by name" {
              Expect.equal (settings |> List.map (Setting.name >> Setting.parse)) settings "round trip"
              Expect.equal (Setting.parse "Class-IL") ClassIL "Class-IL"
              Expect.stringContains (refusal (fun () -> Setting.parse "online")) "known: task, domain, class" "unknown"
          }

          test "split groups by their number" {
              Expect.equal (Scenario.groups 5 2) [| [| 0; 1; 2 |]; [| 3; 4 |] |] "5 classes in 2 groups"
              Expect.equal (Scenario.groups 10 5) (Tasks.classGroups 10 2) "as classGroups when they divide"

              Expect.stringContains
                  (refusal (fun () -> Scenario.groups 3 4))
                  "1 … 3 groups, not 4"
                  "more groups than classes"

              Expect.stringContains (refusal (fun () -> Scenario.groups 3 0)) "not 0" "no groups"
          }

          test "a scenario its data cannot serve is refused with a message that says why" {
              let data = trainTest "toy" 4 3
              let tasks = split ()
              Expect.stringContains (refusal (fun () -> Scenario.create TaskIL [||])) "at least one task" "no tasks"

              Expect.stringContains
                  (refusal (fun () -> Scenario.create TaskIL tasks[1..]))
                  "has id 1: a scenario's tasks are numbered 0 … 1 in order"
                  "ids out of order"

              let noTraining =
                  { tasks[0] with
                      Train = DataView.ofIndices [||] tasks[0].Train.Source }

              Expect.stringContains
                  (refusal (fun () -> Scenario.create ClassIL [| noTraining |]))
                  "has no training samples"
                  "an empty task"

              let noTest =
                  { tasks[0] with
                      Test = DataView.ofIndices [||] tasks[0].Test.Source }

              Expect.stringContains
                  (refusal (fun () -> Scenario.create ClassIL [| noTest |]))
                  "has no test samples"
                  "no test"

              let noClasses = { tasks[0] with Classes = [||] }

              Expect.stringContains
                  (refusal (fun () -> Scenario.create TaskIL [| noClasses |]))
                  "has no classes"
                  "no classes"

              let twice =
                  { tasks[0] with
                      Classes = [| 0; 1; 0 |] }

              Expect.stringContains (refusal (fun () -> Scenario.create TaskIL [| twice |])) "a class twice" "twice"

              let outside = { tasks[0] with Classes = [| 0; 9 |] }

              Expect.stringContains
                  (refusal (fun () -> Scenario.create TaskIL [| outside |]))
                  "class 9 is outside 0 … 5"
                  "outside the data set"

              let stray =
                  { Id = 0
                    Name = "stray"
                    Classes = [| 0 |]
                    Train = DataView.all data.Train
                    Test = DataView.all data.Test }

              Expect.stringContains
                  (refusal (fun () -> Scenario.create TaskIL [| stray |]))
                  "training sample 1 has label 1, not one of its classes 0"
                  "a label outside the task's classes"

              let s = Scenario.create TaskIL tasks
              Expect.stringContains (refusal (fun () -> Scenario.testHead s 3 0)) "not 3" "after the last task"
              Expect.stringContains (refusal (fun () -> Scenario.testHead s -2 0)) "not -2" "before initialisation"
              Expect.stringContains (refusal (fun () -> Scenario.testHead s 0 3)) "tasks 0 … 2, not 3" "no such task"
          } ]
