module Forgetting.Tests.Training.ContinualTests

open System
open Expecto
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Data
open Forgetting.Training
open Forgetting.Experiments

/// A small learnable data set: 4 classes of 8×8 images, each class a bright quadrant plus noise (also
/// the metaplasticity tests' data).
let quadrants (name: string) (seed: int) (count: int) =
    let rng = Random seed
    let labels = Array.init count (fun i -> i % 4)

    let images =
        [| for i in 0 .. count - 1 do
               for r in 0..7 do
                   for c in 0..7 do
                       let q = (if r < 4 then 0 else 2) + (if c < 4 then 0 else 1)
                       float32 ((if q = labels[i] then 0.8 else 0.1) + 0.2 * rng.NextDouble()) |]

    Dataset.create name [| 8; 8 |] 4 images labels

let data =
    { Train = quadrants "quadrants/train" 1 200
      Test = quadrants "quadrants/test" 2 80 }

/// A recipe on the quadrants: `kind` scenario in `setting`, plain SGD, 2 epochs per task.
let private recipe kind setting (terms: TermSpec list) : Recipe =
    { Label = "test"
      Scenario =
        { Kind = kind
          Setting = setting
          Data = [ "mnist" ]
          Tasks = 3
          ClassesPerTask = 2
          ClassOrder = []
          PermuteFirst = true
          Seed = 1
          TrainLimit = 0 }
      Model = Recipe.mlp [ 16 ] None
      Training = "sequential"
      Terms = terms
      Optimizer =
        { Kind = "sgd"
          Lr = 0.1
          Momentum = 0.9
          Nesterov = false
          WeightDecay = 0.0
          Beta1 = 0.9
          Beta2 = 0.999
          Eps = 1e-8
          ResetPerTask = false
          Meta = []
          Schedule = "constant" }
      EpochsPerTask = 2
      BatchSize = 32
      Seed = 5L
      Study = None }

let private run (r: Recipe) =
    ContinualRun.run Catalog.terms (fun _ -> data) ignore None r

/// A term that counts its consolidations, to see the runner call them once per task.
let rec private counter (n: int) : Term =
    { Name = "count"
      Loss = fun _ -> None
      ObservesSteps = false
      Observe = fun _ -> counter n
      Consolidate = fun c -> counter (n + 1)
      State = [ "n", Tensor.scalar Float32 (float n) ]
      Restore = fun _ -> counter n }

[<Tests>]
let tests =
    testList
        "the continual runner"
        [ test "R has a row at initialisation and one per task, every entry an accuracy" {
              for kind, tasks in [ "permuted", 3; "split", 2; "stream", 3 ] do
                  for setting in [ "task"; "domain"; "class" ] do
                      let r = run (recipe kind setting [])
                      Expect.equal r.R.Length (tasks + 1) $"{kind} {setting}: rows"

                      for row in r.R do
                          Expect.equal row.Length tasks $"{kind} {setting}: columns"
                          Expect.isTrue (row |> Array.forall (fun a -> a >= 0.0 && a <= 1.0)) "accuracies"
          }

          test "each task is learned: its accuracy right after it is well above chance" {
              let r = run (recipe "split" "task" [])

              for j in 0..1 do
                  Expect.isGreaterThan (r.R[j + 1][j]) 0.9 $"task {j + 1} after learning it"
          }

          test "Class-IL fine-tuning forgets the first task's classes" {
              let r = run (recipe "split" "class" [])
              Expect.isGreaterThan (r.R[1][0]) 0.9 "task 1 after learning it"
              Expect.isLessThan (r.R[2][0]) 0.5 "task 1 after task 2: its classes are no longer predicted"
          }

          test "every term is consolidated once after each task" {
              let sequence =
                  ContinualRun.scenario (fun _ -> data) (recipe "split" "task" []).Scenario

              let model = ContinualRun.model (Recipe.mlp [ 8 ] None) 64 [ 2; 2 ]

              let config =
                  { EpochsPerTask = 1
                    BatchSize = 32
                    Optimizer = Optim.sgd 0.1
                    ResetOptimizer = false
                    Seed = 1L
                    PerTask = fun _ -> false }

              let s0 =
                  Continual.start
                      model
                      config
                      (Objective.ofTerms [ counter 0 ])
                      sequence
                      (model.Init (Rng.create 1L) Float32)

              let s = Continual.finish model config sequence ignore s0
              Expect.equal (snd s.State.Objective.Terms.Head.State.Head).Item 2.0 "two tasks, two consolidations"
          }

          test "a run stopped after a task and continued gives the same numbers as one unbroken run" {
              let sequence =
                  ContinualRun.scenario (fun _ -> data) (recipe "permuted" "domain" []).Scenario

              let model =
                  ContinualRun.model (Recipe.mlp [ 8 ] None) 64 (List.ofArray sequence.Heads)

              let config =
                  { EpochsPerTask = 1
                    BatchSize = 32
                    Optimizer = Optim.sgdWith 0.05 0.9 false 0.0
                    ResetOptimizer = false
                    Seed = 3L
                    PerTask = fun _ -> false }

              let start () =
                  Continual.start model config Objective.taskOnly sequence (model.Init (Rng.create 1L) Float32)

              let whole = Continual.finish model config sequence ignore (start ())
              let first = Continual.learnNext model config sequence ignore (start ())
              let resumed = Continual.finish model config sequence ignore first
              Expect.equal (Continual.matrix resumed) (Continual.matrix whole) "R"

              for (name, a), (_, b) in
                  List.zip (Params.flatten resumed.State.Params) (Params.flatten whole.State.Params) do
                  Expect.equal (a.ToArray()) (b.ToArray()) name
          }

          test "a run killed after a task resumes from its folder's checkpoint, without redoing it, to the same numbers" {
              let dir = Forgetting.Tests.TestData.tempDir ()
              let r = recipe "split" "task" []
              let whole = run r
              let mutable tasksTrained = 0

              let counting =
                  function
                  | TaskStarted _ -> tasksTrained <- tasksTrained + 1
                  | _ -> ()

              // The first task alone, as a run killed during its second task leaves its folder.
              let _, s, net, config, s0 = ContinualRun.prepare Catalog.terms (fun _ -> data) r
              let first = Continual.learnNext net config s ignore s0
              Continual.save (Continual.checkpointPath dir 1) first

              let resumed = ContinualRun.run Catalog.terms (fun _ -> data) counting (Some dir) r
              Expect.equal tasksTrained 1 "only the second task is trained again"
              Expect.equal resumed.R whole.R "R"
              Expect.isTrue (IO.File.Exists(Continual.checkpointPath dir 2)) "the second task's checkpoint"

              for (name, a), (_, b) in
                  List.zip (Params.flatten resumed.Final.State.Params) (Params.flatten whole.Final.State.Params) do
                  Expect.equal (a.ToArray()) (b.ToArray()) name
          }

          test "with EWC, SI and MAS terms too, a resumed run gives the same numbers as an unbroken one" {
              for method in [ "ewc"; "online-ewc"; "si"; "mas"; "mas-local" ] do
                  let dir = Forgetting.Tests.TestData.tempDir ()
                  let r = Methods.apply method [] (recipe "permuted" "domain" [])
                  let whole = run r
                  let _, s, net, config, s0 = ContinualRun.prepare Catalog.terms (fun _ -> data) r
                  Continual.save (Continual.checkpointPath dir 1) (Continual.learnNext net config s ignore s0)
                  let resumed = ContinualRun.run Catalog.terms (fun _ -> data) ignore (Some dir) r
                  Expect.equal resumed.R whole.R $"{method}: R"

                  Expect.equal
                      (Objective.state resumed.Final.State.Objective
                       |> List.map (fun (n, t) -> n, t.ToArray()))
                      (Objective.state whole.Final.State.Objective
                       |> List.map (fun (n, t) -> n, t.ToArray()))
                      $"{method}: the terms' state"
          }

          test "EWC forgets less than fine-tuning on the same sequence" {
              let none = run (recipe "permuted" "domain" [])

              let ewc =
                  run (Methods.apply "ewc" [ "lambda", Number 10.0 ] (recipe "permuted" "domain" []))

              let bwt (r: ContinualResult) =
                  (ContinualRun.metrics r |> List.find (fun m -> m.Name = "BWT")).Value.Value

              Expect.isLessThan (bwt none) -0.05 "fine-tuning forgets on this sequence"
              Expect.isGreaterThan (bwt ewc) (bwt none + 0.02) "EWC's backward transfer is higher (less negative)"
          }

          test "MAS and local MAS forget less than fine-tuning on the same sequence, and still learn each task" {
              let bwt (r: ContinualResult) =
                  (ContinualRun.metrics r |> List.find (fun m -> m.Name = "BWT")).Value.Value

              let lastTask (r: ContinualResult) = r.R[r.R.Length - 1][r.R.Length - 2]
              let none = run (recipe "permuted" "domain" [])

              // λ = 0.01 here: at SGD lr 0.1 with momentum 0.9 on this small net, λ = 1 makes the penalty's
              // steps overshoot (lr · 2λΩ beyond 2(1 + momentum) for the largest Ω).
              for method in [ "mas"; "mas-local" ] do
                  let mas =
                      run (Methods.apply method [ "mas_lambda", Number 0.01 ] (recipe "permuted" "domain" []))

                  Expect.isGreaterThan
                      (bwt mas)
                      (bwt none + 0.02)
                      $"{method}'s backward transfer is higher (less negative)"

                  Expect.isGreaterThan (lastTask mas) 0.9 $"{method} learns the last task"
          }

          test "a checkpoint of another run is refused with a message naming the file" {
              let dir = Forgetting.Tests.TestData.tempDir ()
              let r = recipe "split" "task" []
              let _, s, net, config, s0 = ContinualRun.prepare Catalog.terms (fun _ -> data) r
              Continual.save (Continual.checkpointPath dir 1) (Continual.learnNext net config s ignore s0)

              let other =
                  { r with
                      Model = { r.Model with Hidden = [ 9 ] } }

              Expect.throwsC
                  (fun () -> ContinualRun.run Catalog.terms (fun _ -> data) ignore (Some dir) other |> ignore)
                  (fun e -> Expect.stringContains e.Message "belongs to another run" "the message")
          }

          test "a continual run is bit-identical on 1 and 2 threads" {
              let r = recipe "permuted" "task" []
              let one = Parallelism.withDegree 1 (fun () -> run r)
              let two = Parallelism.withDegree 2 (fun () -> run r)
              Expect.equal one.R two.R "R"
          }

          test "a MAS run is bit-identical on 1 and 2 threads, global and local" {
              let mas importance =
                  recipe
                      "permuted"
                      "task"
                      [ TermKind.spec Catalog.terms "mas" [ "lambda", Number 1.0; "importance", Choice importance ] ]

              for importance in [ "global"; "local" ] do
                  let one = Parallelism.withDegree 1 (fun () -> run (mas importance))
                  let two = Parallelism.withDegree 2 (fun () -> run (mas importance))
                  Expect.equal one.R two.R $"{importance}: R"

                  let omega (r: ContinualResult) =
                      r.Final.State.Objective.Terms
                      |> List.pick (fun t -> Forgetting.Mechanisms.Mas.omegaOf t)
                      |> Params.tensors
                      |> Array.map (fun t -> t.ToFloat64Array())

                  Expect.equal (omega one) (omega two) $"{importance}: Ω"
          }

          test "joint training gives R a row at initialisation and one after all tasks" {
              let r =
                  run
                      { recipe "split" "task" [] with
                          Training = "joint" }

              Expect.equal r.R.Length 2 "two rows"
              Expect.isGreaterThan (Array.average r.R[1]) 0.9 "both tasks learned"
          }

          test "a recipe's bad values are refused before any data is loaded" {
              let refused (r: Recipe) (words: string) =
                  Expect.throwsC
                      (fun () ->
                          ContinualRun.run Catalog.terms (fun _ -> failwith "loaded data") ignore None r
                          |> ignore)
                      (fun e -> Expect.stringContains e.Message words $"the message for {words}")

              let r = recipe "split" "task" []
              refused { r with EpochsPerTask = 0 } "--epochs must be at least 1"

              refused
                  { r with
                      Scenario = { r.Scenario with Kind = "shuffled" } }
                  "unknown scenario 'shuffled'"

              refused
                  { r with
                      Scenario = { r.Scenario with Setting = "instance" } }
                  "unknown setting 'instance'"

              refused
                  { r with
                      Optimizer = { r.Optimizer with Lr = nan } }
                  "--lr must be positive"

              refused
                  { r with
                      Scenario = { r.Scenario with Data = [ "cifar" ] } }
                  "unknown data set 'cifar'"

              refused
                  { r with
                      Terms =
                          [ { Kind = "nonsense"
                              Settings = Map.empty } ] }
                  "unknown term 'nonsense'"
          }

          test "a loss that stops being finite ends the run with a message naming the task, epoch and step" {
              let r = recipe "split" "task" []
              let _, s, net, config, s0 = ContinualRun.prepare Catalog.terms (fun _ -> data) r

              // A term whose value is not a number: the first step's loss is NaN.
              let poisoned =
                  { s0 with
                      State =
                          { s0.State with
                              Objective =
                                  Objective.ofTerms [ Term.stateless "nan" (fun v -> Some(Tensor.sum v.Logits * nan)) ] } }

              Expect.throwsC (fun () -> Continual.learnNext net config s ignore poisoned |> ignore) (fun e ->
                  Expect.isTrue (e :? DivergedError) "a DivergedError"
                  Expect.stringContains e.Message "task 1 of 2: training diverged at epoch" "where"
                  Expect.stringContains e.Message "try a smaller learning rate" "what to do")
          }

          test "more classes per task than the data set has is refused with a message" {
              let r = recipe "split" "task" []

              Expect.throwsC
                  (fun () ->
                      run
                          { r with
                              Scenario = { r.Scenario with ClassesPerTask = 5 } }
                      |> ignore)
                  (fun e -> Expect.stringContains e.Message "more than the 4 classes" "the message")
          }

          test "a class order cuts a split scenario into tasks in that order, and must name every class once" {
              let s =
                  { (recipe "split" "task" []).Scenario with
                      ClassOrder = [ 1; 2; 3; 0 ] }

              let tasks = ContinualRun.tasks (fun _ -> data) s

              let classesOf (t: Forgetting.Data.LearningTask) =
                  t.Train.Indices
                  |> Array.map (fun i -> data.Train.Labels[i])
                  |> Array.distinct
                  |> Array.sort

              Expect.equal (tasks |> Array.map (fun t -> t.Classes)) [| [| 1; 2 |]; [| 3; 0 |] |] "{1, 2}, then {3, 0}"
              Expect.equal (tasks |> Array.map classesOf) [| [| 1; 2 |]; [| 0; 3 |] |] "the samples of those classes"

              for bad in [ [ 1; 2; 3 ]; [ 0; 1; 2; 2 ]; [ 0; 1; 2; 4 ] ] do
                  Expect.throwsC
                      (fun () -> ContinualRun.tasks (fun _ -> data) { s with ClassOrder = bad } |> ignore)
                      (fun e -> Expect.stringContains e.Message "must name each of the 4 classes" $"{bad}")

              Expect.throwsC
                  (fun () ->
                      ContinualRun.validate
                          Catalog.terms
                          { recipe "permuted" "task" [] with
                              Scenario = { s with Kind = "permuted" } }
                      |> ignore)
                  (fun e -> Expect.stringContains e.Message "a class order cuts a split scenario" "permuted")
          } ]

[<Tests>]
let recipes =
    testList
        "run descriptions"
        [ test "a recipe survives JSON exactly, numbers at full precision" {
              let l2 = Catalog.terms |> List.find (fun k -> k.Name = "l2")

              let r =
                  { recipe
                        "permuted"
                        "class"
                        [ { Kind = "l2"
                            Settings = TermSetting.resolve "l2" l2.Settings [ "weight", Number 1e-7 ] } ] with
                      Optimizer =
                          { (recipe "split" "task" []).Optimizer with
                              Lr = 0.1 + 0.2 }
                      Model =
                          Recipe.mlp
                              [ 7; 3 ]
                              (Some
                                  { Forgetting.Mechanisms.ForgettingLayerConfig.Default with
                                      Rho = 1.0 / 3.0 }) }

              let back =
                  Recipe.ofJson Catalog.terms (Text.Json.Nodes.JsonNode.Parse(Recipe.toText r))

              Expect.equal back r "the same recipe"
          }

          test "every term kind of the catalog builds its term from its defaults" {
              for k in Catalog.terms do
                  let term = TermKind.build k []
                  Expect.equal term.Name k.Name $"{k.Name}: the term's name"
                  Expect.isEmpty term.State $"{k.Name}: no state before any task"
          }

          test "ewc_f is EWC on the net with forgetting layers and their terms; the other methods leave the net alone" {
              let r = recipe "permuted" "task" []
              let f = Methods.apply "ewc_f" [ "lambda", Number 5.0 ] r
              Expect.isSome f.Model.Forgetting "forgetting layers"
              Expect.equal (f.Terms |> List.map (fun t -> t.Kind)) [ "ewc"; "ers"; "irs" ] "the terms"
              Expect.equal f.Terms.Head.Settings["lambda"] (Number 5.0) "λ as given"
              let e = Methods.apply "ewc" [] r
              Expect.isNone e.Model.Forgetting "no layers"
              Expect.equal e.Terms.Head.Settings["lambda"] (Number 100.0) "the default λ"
              Expect.equal (Methods.apply "joint" [] r).Training "joint" "joint trains all tasks at once"
          }

          test "a term's settings get their defaults, and bad ones a one-line message" {
              let l1 = Catalog.terms |> List.find (fun k -> k.Name = "l1")
              Expect.equal (TermSetting.resolve "l1" l1.Settings []) (Map [ "weight", Number 1e-5 ]) "the default"

              let message (given: (string * SettingValue) list) =
                  try
                      TermSetting.resolve "l1" l1.Settings given |> ignore
                      ""
                  with :? ArgumentException as e ->
                      e.Message

              Expect.stringContains (message [ "weight", Number -1.0 ]) "weight must be ≥ 0, got -1" "negative"
              Expect.stringContains (message [ "weight", Number infinity ]) "weight must be ≥ 0" "infinite"
              Expect.stringContains (message [ "strength", Number 1.0 ]) "no setting 'strength'" "unknown"
              Expect.stringContains (message [ "weight", Choice "big" ]) "takes a value like" "wrong type"
          }

          test "a malformed recipe file is refused naming the file and the field" {
              let dir = Forgetting.Tests.TestData.tempDir ()
              let path = IO.Path.Combine(dir, "recipe.json")
              let text = Recipe.toText (recipe "split" "task" [])
              IO.File.WriteAllText(path, text.Replace("\"epochs_per_task\"", "\"epochs\""))

              Expect.throwsC (fun () -> Recipe.load Catalog.terms path |> ignore) (fun e ->
                  Expect.stringContains e.Message "'epochs_per_task' is missing" "the message")

              IO.File.WriteAllText(path, "{ not json")

              Expect.throwsC (fun () -> Recipe.load Catalog.terms path |> ignore) (fun e ->
                  Expect.stringContains e.Message "not valid JSON" "the message")
          } ]
