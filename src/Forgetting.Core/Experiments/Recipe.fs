namespace Forgetting.Experiments

open System
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Data

/// Which task sequence a run learns, and in which continual-learning setting (van de Ven & Tolias 2019):
/// "task" (Task-IL: a head per task, the task id given), "domain" (Domain-IL: one head, no task id) or
/// "class" (Class-IL: one head over every class seen so far).
type ScenarioSpec =
    {
        /// "single" (one data set as one task, on its own train/test split: plain classification), or
        /// the task sequences "permuted", "split", "sequence" or "stream".
        Kind: string
        Setting: string
        /// The data sets: one for permuted, split and stream; two or more, in order, for sequence.
        Data: string list
        /// The number of tasks (permuted, stream); for split it follows from ClassesPerTask.
        Tasks: int
        /// Classes per task of a split scenario.
        ClassesPerTask: int
        /// Split: the classes in the order they are cut into tasks (empty: 0, 1, 2, …); the official
        /// MAS demo's tasks {1, 2} … {9, 0} are the order 1 2 3 4 5 6 7 8 9 0.
        ClassOrder: int list
        /// Permuted: permute the first task too (as most reference codes do), or keep it unpermuted.
        PermuteFirst: bool
        /// Seed of the tasks themselves (pixel permutations, stream cuts).
        Seed: int
        /// Keep at most this many training samples per task (0: all), for quick runs.
        TrainLimit: int
    }

/// The network: an MLP with these hidden sizes, optionally a forgetting layer after each hidden ReLU;
/// or a binarized net (Laborieux et al. 2021); either with batch norm after every dense layer.
type ModelSpec =
    {
        Hidden: int list
        Forgetting: ForgettingLayerConfig option
        /// "mlp" (dense → [batch norm] → ReLU → [forgetting layer] per hidden layer) or "binarized"
        /// (binarized dense → batch norm → sign per hidden layer; the output layer's batch-normed
        /// output is the logits).
        Kind: string
        /// Batch norm after every dense layer: "none", "batch" (batch statistics, at evaluation too)
        /// or "running" (running statistics at evaluation). With batch norm, dense layers have no bias.
        Norm: string
        /// Batch norm learns γ and β.
        Affine: bool
        /// Which batch-norm γ, β test a learned task: "task" (its own, saved after it was learned, as
        /// the reference code of Laborieux et al. 2021 does) or "domain" (the current ones).
        NormState: string
        /// Weight matrices drawn from U(−a, a) with this a; 0: each layer's own default.
        InitScale: float
    }

/// The optimizer and whether it starts afresh at every task.
type OptimizerSpec =
    {
        /// "sgd" or "adam".
        Kind: string
        Lr: float
        Momentum: float
        Nesterov: bool
        WeightDecay: float
        Beta1: float
        Beta2: float
        Eps: float
        /// Re-create the optimizer's state (momentum, Adam's moments) at the start of every task.
        ResetPerTask: bool
        /// Metaplastic Adam's m (Laborieux et al. 2021, eq. 1): one value for every weight matrix, or one
        /// per layer in the net's order (fc1, fc2, …, out). Only for the kind "metaplastic".
        Meta: float list
        /// The learning-rate schedule over a task's epochs: "constant", or "cosine" (lr_e =
        /// lr · ½(1 + cos(π (e−1)/E)) for epoch e of E, stepped per epoch, as MiL's CosineAnnealingLR).
        Schedule: string
    }

    /// The learning rate of epoch `epoch` (from 1) of `epochs`.
    member o.LrAt (epoch: int) (epochs: int) =
        match o.Schedule with
        | "cosine" -> o.Lr * 0.5 * (1.0 + cos (Math.PI * float (epoch - 1) / float epochs))
        | _ -> o.Lr

    /// The optimizer with learning rate `lr`; `layerOf path` numbers a weight matrix's layer (0, 1, …)
    /// for metaplastic Adam's m per layer.
    member o.BuildAt(lr: float, layerOf: string -> int) =
        match o.Kind with
        | "sgd" -> Optim.sgdWith lr o.Momentum o.Nesterov o.WeightDecay
        | "adam" -> Optim.adamWith lr o.Beta1 o.Beta2 o.Eps o.WeightDecay
        | "metaplastic" ->
            let meta =
                match o.Meta with
                | [] -> invalidArg "optimizer" "metaplastic adam needs m (--meta), one value or one per layer"
                | [ m ] -> fun (_: string) -> m
                | ms ->
                    fun path ->
                        let k = layerOf path

                        if k < 0 || k >= ms.Length then
                            invalidArg
                                "optimizer"
                                $"--meta gives m for {ms.Length} layers, but '{path}' is in layer {k + 1}: give one m per layer, or one for all"

                        ms[k]

            Metaplasticity.adam lr o.Beta1 o.Beta2 o.Eps o.WeightDecay meta
        | other -> invalidArg "optimizer" $"unknown optimizer '{other}'; known: sgd, adam, metaplastic"

    /// The optimizer of a net, at the recipe's learning rate.
    member o.BuildFor(layerOf: string -> int) = o.BuildAt(o.Lr, layerOf)

    /// The optimizer with learning rate `lr`, for a net whose weight matrices need no layer numbers (all
    /// but metaplastic Adam with m per layer).
    member o.BuildWith(lr: float) = o.BuildAt(lr, (fun _ -> 0))

    /// The optimizer at the recipe's learning rate, for a net whose weight matrices need no layer numbers.
    member o.Build() = o.BuildWith o.Lr

/// An analysis that a run is made for beyond training, by kind (the forgetting paper's figures:
/// "fig1e" … "fig4c", Figures.kinds), with its settings resolved (every one present).
type StudySpec = { Kind: string; Settings: Settings }

/// A run as one value: the scenario, the model, the objective's terms, the optimizer and schedule, the
/// seed, and the study it serves, if any. Every results folder stores it resolved in full
/// (recipe.json), so that `forgetting run <folder>/recipe.json` runs it again.
type Recipe =
    {
        /// What is run, for tables and legends: the variant or the method ("lateral_inhibition", "ewc").
        Label: string
        Scenario: ScenarioSpec
        Model: ModelSpec
        /// "sequential" (task after task, the terms consolidating after each) or "joint" (every task's
        /// data at once: the upper bound).
        Training: string
        Terms: TermSpec list
        Optimizer: OptimizerSpec
        EpochsPerTask: int
        BatchSize: int
        /// Seed of the initialisation, the batches and anything random in the terms.
        Seed: int64
        /// The analysis this run is made for. A study trains variants of its own (a figure compares
        /// several): then the model's forgetting layer gives their ρ, and the terms are settings applied
        /// to every variant's terms of the same kind (or added to them), as `--term` does.
        Study: StudySpec option
    }

/// Reading and writing run descriptions as JSON, numbers at full round-trip precision.
[<RequireQualifiedAccess>]
module Recipe =

    let private fail (message: string) : 'a = raise (ArgumentException message)

    /// The defaults every front end starts from: permuted MNIST, 10 tasks (every one permuted), Task-IL,
    /// an MLP 784-512-256 with a head per task (the forgetting paper's Fig. 5b), plain fine-tuning,
    /// SGD lr 0.01 with momentum 0.9, one epoch per task, batches of 128, seed 1.
    let defaults: Recipe =
        { Label = "none"
          Scenario =
            { Kind = "permuted"
              Setting = "task"
              Data = [ "mnist" ]
              Tasks = 10
              ClassesPerTask = 2
              ClassOrder = []
              PermuteFirst = true
              Seed = 1
              TrainLimit = 0 }
          Model =
            { Hidden = [ 512; 256 ]
              Forgetting = None
              Kind = "mlp"
              Norm = "none"
              Affine = true
              NormState = "domain"
              InitScale = 0.0 }
          Training = "sequential"
          Terms = []
          Optimizer =
            { Kind = "sgd"
              Lr = 0.01
              Momentum = 0.9
              Nesterov = false
              WeightDecay = 0.0
              Beta1 = 0.9
              Beta2 = 0.999
              Eps = 1e-8
              ResetPerTask = false
              Meta = []
              Schedule = "constant" }
          EpochsPerTask = 1
          BatchSize = 128
          Seed = 1L
          Study = None }

    /// The defaults of a single-task run (the forgetting paper's classification, Fig. 1-4): Fashion-MNIST
    /// on its published split, an MLP 784-256-256-128-10, SGD lr 0.01 with momentum 0.9, 10 epochs,
    /// batches of 128, seed 1, no terms (the "sgd" variant).
    let single: Recipe =
        { defaults with
            Label = "sgd"
            Scenario =
                { defaults.Scenario with
                    Kind = "single"
                    Data = [ "fashion-mnist" ]
                    Tasks = 1 }
            Model =
                { defaults.Model with
                    Hidden = [ 256; 256; 128 ] }
            EpochsPerTask = 10 }

    /// The MLP with these hidden sizes and, optionally, a forgetting layer after every hidden ReLU;
    /// no batch norm, each layer's own initialisation.
    let mlp (hidden: int list) (forgetting: ForgettingLayerConfig option) : ModelSpec =
        { defaults.Model with
            Hidden = hidden
            Forgetting = forgetting }

    /// The binarized net of Laborieux et al. 2021 with these hidden sizes, as their reference code has it:
    /// batch norm with batch statistics and learned γ, β after every layer, each learned task tested
    /// with its own γ, β ("task"), hidden weights from U(−0.05, 0.05).
    let binarized (hidden: int list) : ModelSpec =
        { Hidden = hidden
          Forgetting = None
          Kind = "binarized"
          Norm = "batch"
          Affine = true
          NormState = "task"
          InitScale = 0.05 }

    /// Metaplastic Adam as the reference code of Laborieux et al. 2021 runs it on permuted MNIST:
    /// lr 0.005, Adam's betas and ε, L2 decay 1e-7 on the hidden weights, re-created at every task.
    let metaplastic (meta: float list) : OptimizerSpec =
        { defaults.Optimizer with
            Kind = "metaplastic"
            Lr = 0.005
            Momentum = 0.0
            WeightDecay = 1e-7
            ResetPerTask = true
            Meta = meta }

    /// A recipe with a variant's forgetting layer, terms and name.
    let withVariant (v: Variant) (r: Recipe) =
        { r with
            Label = v.Name
            Model = { r.Model with Forgetting = v.Layer }
            Terms = v.Terms }

    /// The terms of a study's recipe as the settings they give every variant's terms of their kind.
    let overrides (r: Recipe) : TermOverride list =
        [ for t in r.Terms ->
              { Kind = t.Kind
                Given = Map.toList t.Settings } ]

    /// The variant a single-task recipe trains: its label, forgetting layer and terms.
    let variant (r: Recipe) : Variant =
        { Name = r.Label
          Layer = r.Model.Forgetting
          Terms = r.Terms }

    /// The default data of a scenario kind: MNIST, then Fashion-MNIST for a sequence.
    let defaultData (kind: string) =
        if kind = "sequence" then
            [ "mnist"; "fashion-mnist" ]
        else
            [ "mnist" ]

    /// The default number of tasks of a scenario kind: 10 permuted, 5 stream parts (split and
    /// sequence tasks follow from their data).
    let defaultTasks (kind: string) = if kind = "stream" then 5 else 10

    /// Adam's default learning rate where SGD's is 0.01; metaplastic Adam's is the reference's 0.005.
    let defaultLr (optimizer: string) =
        match optimizer with
        | "adam" -> 1e-3
        | "metaplastic" -> 0.005
        | _ -> 0.01

    let private setting (v: SettingValue) : JsonNode =
        match v with
        | Number x -> JsonValue.Create x
        | Count n -> JsonValue.Create n
        | Switch b -> JsonValue.Create b
        | Choice s -> JsonValue.Create s

    let private obj (fields: (string * JsonNode) list) =
        let o = JsonObject()

        for k, v in fields do
            o[k] <- v

        o :> JsonNode

    let private arr (items: JsonNode seq) =
        JsonArray(Array.ofSeq items) :> JsonNode

    let private str (s: string) = JsonValue.Create s :> JsonNode
    let private num (x: float) = JsonValue.Create x :> JsonNode
    let private int (n: int) = JsonValue.Create n :> JsonNode
    let private flag (b: bool) = JsonValue.Create b :> JsonNode

    /// Study kinds whose settings say everything they train (the Hopfield study: its task, layers,
    /// units, epochs and optimizer). They read nothing else of a recipe, so their recipes are written as
    /// the label and the study alone, without a scenario, model, terms or optimizer that a reader of
    /// the results folder would take for the run's, and read back with the defaults in their place.
    let selfContainedStudies = [ "hopfield" ]

    let private isSelfContained (study: StudySpec option) =
        study |> Option.exists (fun st -> List.contains st.Kind selfContainedStudies)

    let private settingsJson (values: Settings) =
        obj [ for KeyValue(k, v) in values -> k, setting v ]

    let private studyJson (study: StudySpec option) =
        match study with
        | None -> null
        | Some st -> obj [ "kind", str st.Kind; "settings", settingsJson st.Settings ]

    /// Every field of the recipe.
    let private fullJson (r: Recipe) : JsonNode =
        let settings = settingsJson

        obj
            [ "label", str r.Label
              "scenario",
              obj
                  [ "kind", str r.Scenario.Kind
                    "setting", str r.Scenario.Setting
                    "data", arr (r.Scenario.Data |> List.map str)
                    "tasks", int r.Scenario.Tasks
                    "classes_per_task", int r.Scenario.ClassesPerTask
                    "class_order", arr (r.Scenario.ClassOrder |> List.map int)
                    "permute_first", flag r.Scenario.PermuteFirst
                    "seed", int r.Scenario.Seed
                    "train_limit", int r.Scenario.TrainLimit ]
              "model",
              obj
                  [ "hidden", arr (r.Model.Hidden |> List.map int)
                    "forgetting_layer",
                    (match r.Model.Forgetting with
                     | None -> null
                     | Some f ->
                         obj
                             [ "static_gate", flag f.StaticGate
                               "shortcut", flag f.Shortcut
                               "rho", num f.Rho
                               "wf_init_sd", num f.WfInitSd
                               "rho_growth", num f.RhoGrowth
                               "readout", str f.Readout ])
                    "kind", str r.Model.Kind
                    "norm", str r.Model.Norm
                    "affine", flag r.Model.Affine
                    "norm_state", str r.Model.NormState
                    "init_scale", num r.Model.InitScale ]
              "training", str r.Training
              "terms", arr [ for t in r.Terms -> obj [ "kind", str t.Kind; "settings", settings t.Settings ] ]
              "optimizer",
              obj
                  [ "kind", str r.Optimizer.Kind
                    "lr", num r.Optimizer.Lr
                    "momentum", num r.Optimizer.Momentum
                    "nesterov", flag r.Optimizer.Nesterov
                    "weight_decay", num r.Optimizer.WeightDecay
                    "beta1", num r.Optimizer.Beta1
                    "beta2", num r.Optimizer.Beta2
                    "eps", num r.Optimizer.Eps
                    "reset_per_task", flag r.Optimizer.ResetPerTask
                    "meta", arr (r.Optimizer.Meta |> List.map num)
                    "schedule", str r.Optimizer.Schedule ]
              "epochs_per_task", int r.EpochsPerTask
              "batch_size", int r.BatchSize
              "seed", JsonValue.Create r.Seed
              "study", studyJson r.Study ]

    /// The recipe as a JSON node: a self-contained study's as its label and study alone.
    let toJson (r: Recipe) : JsonNode =
        if isSelfContained r.Study then
            obj [ "label", str r.Label; "study", studyJson r.Study ]
        else
            fullJson r

    /// The recipe as indented JSON text.
    let toText (r: Recipe) =
        (toJson r).ToJsonString(JsonSerializerOptions(WriteIndented = true))

    /// The SHA-256 of a list of recipes' texts (toText, joined by newlines), as lower-case hex.
    let digest (rs: Recipe list) =
        let text = rs |> List.map toText |> String.concat "\n"

        let bytes =
            System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes text)

        System.Convert.ToHexString(bytes).ToLowerInvariant()

    /// A short stable name for a list of recipes: the first 8 hex digits of their digest, so that folder
    /// names tell runs of different settings apart.
    let hash (rs: Recipe list) = (digest rs).Substring(0, 8)

    // ------------------------------------------------------------------ reading

    let private field (where: string) (name: string) (o: JsonObject) : JsonNode =
        let mutable v: JsonNode = null

        if o.TryGetPropertyValue(name, &v) then
            v
        else
            fail $"{where}: '{name}' is missing"

    let private asObject (where: string) (n: JsonNode) =
        match n with
        | :? JsonObject as o -> o
        | _ -> fail $"{where} must be an object"

    let private kindOf (n: JsonNode) =
        if isNull n then JsonValueKind.Null else n.GetValueKind()

    let private getString where name o =
        let n = field where name o

        if kindOf n = JsonValueKind.String then
            n.GetValue<string>()
        else
            fail $"{where}: '{name}' must be a string"

    let private getFloat where name o =
        let n = field where name o

        if kindOf n = JsonValueKind.Number then
            n.GetValue<float>()
        else
            fail $"{where}: '{name}' must be a number"

    let private getInt64 where name (o: JsonObject) =
        let n = field where name o

        match kindOf n with
        | JsonValueKind.Number ->
            // A node built in memory holds the type it was made from; a parsed one converts.
            match n.AsValue().TryGetValue<int64>(), n.AsValue().TryGetValue<int>() with
            | (true, v), _ -> v
            | _, (true, v) -> int64 v
            | _ -> fail $"{where}: '{name}' must be a whole number, got {n.ToJsonString()}"
        | _ -> fail $"{where}: '{name}' must be a whole number"

    let private getInt where name o =
        let v = getInt64 where name o

        if v < int64 Int32.MinValue || v > int64 Int32.MaxValue then
            fail $"{where}: '{name}' is out of range: {v}"

        Checked.int v

    let private getBool where name o =
        match kindOf (field where name o) with
        | JsonValueKind.True -> true
        | JsonValueKind.False -> false
        | _ -> fail $"{where}: '{name}' must be true or false"

    let private tryField (name: string) (o: JsonObject) : JsonNode option =
        let mutable v: JsonNode = null

        if o.TryGetPropertyValue(name, &v) && not (isNull v) then
            Some v
        else
            None

    let private getArray where name o =
        match field where name o with
        | :? JsonArray as a -> List.ofSeq a
        | _ -> fail $"{where}: '{name}' must be a list"

    let private settingOf (where: string) (name: string) (n: JsonNode) =
        match kindOf n with
        | JsonValueKind.Number ->
            // Written without a fraction or exponent, a number is a whole number (resolve widens it
            // back where the setting is a real number).
            match n.AsValue().TryGetValue<int>() with
            | true, i when n.ToJsonString() |> Seq.forall (fun c -> Char.IsDigit c || c = '-') -> Count i
            | _ -> Number(n.GetValue<float>())
        | JsonValueKind.True -> Switch true
        | JsonValueKind.False -> Switch false
        | JsonValueKind.String -> Choice(n.GetValue<string>())
        | _ -> fail $"{where}: setting '{name}' must be a number, true/false or a word"

    let private settingsOf (where: string) (n: JsonNode) =
        [ for KeyValue(name, v) in asObject where n -> name, settingOf where name v ]

    let private studyOf (root: JsonObject) : StudySpec option =
        tryField "study" root
        |> Option.map (fun n ->
            let st = asObject "study" n

            { Kind = getString "study" "kind" st
              Settings = field "study" "settings" st |> settingsOf "study.settings" |> Map.ofList })

    let private labelOf (root: JsonObject) =
        match tryField "label" root with
        | Some _ -> getString "the recipe" "label" root
        | None -> ""

    /// Every field of a recipe from JSON (ofJson).
    let private ofFullJson (kinds: TermKind list) (root: JsonObject) : Recipe =
        let s = field "the recipe" "scenario" root |> asObject "scenario"
        let m = field "the recipe" "model" root |> asObject "model"
        let o = field "the recipe" "optimizer" root |> asObject "optimizer"

        let forgetting =
            match field "model" "forgetting_layer" m with
            | null -> None
            | n ->
                let f = asObject "model.forgetting_layer" n

                let d = ForgettingLayerConfig.Default
                let where = "model.forgetting_layer"

                // Fields added after the first recipes were written default to what those ran with.
                Some
                    { StaticGate = getBool where "static_gate" f
                      Shortcut = getBool where "shortcut" f
                      Rho = getFloat where "rho" f
                      WfInitSd =
                        match tryField "wf_init_sd" f with
                        | Some _ -> getFloat where "wf_init_sd" f
                        | None -> d.WfInitSd
                      RhoGrowth =
                        match tryField "rho_growth" f with
                        | Some _ -> getFloat where "rho_growth" f
                        | None -> d.RhoGrowth
                      Readout =
                        match tryField "readout" f with
                        | Some _ -> getString where "readout" f
                        | None -> d.Readout }

        let terms =
            getArray "the recipe" "terms" root
            |> List.mapi (fun i n ->
                let where = $"terms[{i}]"
                let t = asObject where n
                let kindName = getString where "kind" t

                let kind =
                    match kinds |> List.tryFind (fun k -> k.Name = kindName) with
                    | Some k -> k
                    | None ->
                        let known = kinds |> List.map (fun k -> k.Name) |> String.concat ", "
                        fail $"{where}: unknown term '{kindName}'; known: {known}"

                let given = field where "settings" t |> settingsOf $"{where}.settings"

                { TermSpec.Kind = kindName
                  Settings = TermSetting.resolve kindName kind.Settings given })

        { Label = labelOf root
          Scenario =
            { Kind = getString "scenario" "kind" s
              Setting = getString "scenario" "setting" s
              Data =
                getArray "scenario" "data" s
                |> List.map (fun n ->
                    if kindOf n = JsonValueKind.String then
                        n.GetValue<string>()
                    else
                        fail "scenario: 'data' must be a list of data-set names")
              Tasks = getInt "scenario" "tasks" s
              ClassesPerTask = getInt "scenario" "classes_per_task" s
              ClassOrder =
                match tryField "class_order" s with
                | None -> []
                | Some _ ->
                    getArray "scenario" "class_order" s
                    |> List.map (fun n ->
                        match kindOf n with
                        | JsonValueKind.Number when fst (n.AsValue().TryGetValue<int>()) -> n.GetValue<int>()
                        | _ -> fail "scenario: 'class_order' must be a list of class numbers")
              PermuteFirst = getBool "scenario" "permute_first" s
              Seed = getInt "scenario" "seed" s
              TrainLimit = getInt "scenario" "train_limit" s }
          Model =
            { Hidden =
                getArray "model" "hidden" m
                |> List.map (fun n ->
                    match kindOf n with
                    | JsonValueKind.Number when fst (n.AsValue().TryGetValue<int>()) -> n.GetValue<int>()
                    | _ -> fail "model: 'hidden' must be a list of whole numbers")
              Forgetting = forgetting
              // Absent in recipes written before binarized nets: the MLP without batch norm.
              Kind =
                (if (tryField "kind" m).IsSome then
                     getString "model" "kind" m
                 else
                     "mlp")
              Norm =
                (if (tryField "norm" m).IsSome then
                     getString "model" "norm" m
                 else
                     "none")
              Affine =
                (if (tryField "affine" m).IsSome then
                     getBool "model" "affine" m
                 else
                     true)
              NormState =
                (if (tryField "norm_state" m).IsSome then
                     getString "model" "norm_state" m
                 else
                     "domain")
              InitScale =
                (if (tryField "init_scale" m).IsSome then
                     getFloat "model" "init_scale" m
                 else
                     0.0) }
          Training = getString "the recipe" "training" root
          Terms = terms
          Optimizer =
            { Kind = getString "optimizer" "kind" o
              Lr = getFloat "optimizer" "lr" o
              Momentum = getFloat "optimizer" "momentum" o
              Nesterov = getBool "optimizer" "nesterov" o
              WeightDecay = getFloat "optimizer" "weight_decay" o
              Beta1 = getFloat "optimizer" "beta1" o
              Beta2 = getFloat "optimizer" "beta2" o
              Eps = getFloat "optimizer" "eps" o
              ResetPerTask = getBool "optimizer" "reset_per_task" o
              Meta =
                match tryField "meta" o with
                | None -> []
                | Some _ ->
                    getArray "optimizer" "meta" o
                    |> List.map (fun n ->
                        if kindOf n = JsonValueKind.Number then
                            n.GetValue<float>()
                        else
                            fail "optimizer: 'meta' must be a list of numbers")
              Schedule =
                match tryField "schedule" o with
                | Some _ -> getString "optimizer" "schedule" o
                | None -> "constant" }
          EpochsPerTask = getInt "the recipe" "epochs_per_task" root
          BatchSize = getInt "the recipe" "batch_size" root
          Seed = getInt64 "the recipe" "seed" root
          Study = studyOf root }

    /// A recipe from JSON, every term resolved against `kinds` (its settings' defaults filled in and
    /// checked; a study's settings are resolved by its kind when it runs); a malformed one raises
    /// ArgumentException with a one-line message naming the field. "label" and "study" may be left
    /// out (no label, no study). A self-contained study's recipe may hold only its label and study
    /// (toJson writes it so); one with every field, as written before, is read in full.
    let ofJson (kinds: TermKind list) (node: JsonNode) : Recipe =
        let root = asObject "the recipe" node
        let study = studyOf root

        if isSelfContained study && (tryField "scenario" root).IsNone then
            { defaults with
                Label = labelOf root
                Study = study }
        else
            ofFullJson kinds root

    let scenarioKinds = [ "single"; "permuted"; "split"; "sequence"; "stream" ]
    let settings = [ "task"; "domain"; "class" ]

    /// A recipe with every value in range, or an ArgumentException with a one-line message saying
    /// which value and what it must be. Checked before any data is loaded; what only one kind of run
    /// asks (a task sequence, a single task) its runner checks besides.
    let validate (kinds: TermKind list) (r: Recipe) =
        let s = r.Scenario
        let o = r.Optimizer

        let check condition (message: string) =
            if not condition then
                fail message

        check
            (List.contains s.Kind scenarioKinds)
            $"""unknown scenario '{s.Kind}'; known: {String.concat ", " scenarioKinds}"""

        check
            (List.contains s.Setting settings)
            $"""unknown setting '{s.Setting}'; known: {String.concat ", " settings}"""

        check (not s.Data.IsEmpty) "a scenario needs a data set"

        for d in s.Data do
            check (KnownDataset.tryParse d |> Option.isSome) $"unknown data set '{d}'; known: mnist, fashion-mnist"

        check
            (s.Kind = "sequence" || s.Data.Length = 1)
            $"a {s.Kind} scenario takes one data set, got {s.Data.Length}; only 'sequence' takes several"

        check
            (s.Kind <> "sequence" || s.Data.Length >= 2)
            "a sequence scenario needs two or more data sets, in the order they are learned"

        check (s.Kind = "split" || s.Kind = "sequence" || s.Tasks >= 1) $"--tasks must be at least 1, got {s.Tasks}"

        check
            (s.Kind <> "split" || s.ClassesPerTask >= 1)
            $"--classes-per-task must be at least 1, got {s.ClassesPerTask}"

        check
            (s.ClassOrder.IsEmpty || s.Kind = "split")
            $"a class order cuts a split scenario into tasks; a {s.Kind} scenario has none"

        check (s.TrainLimit >= 0) $"the training limit must be 0 (all) or more, got {s.TrainLimit}"

        check
            (r.Training = "sequential" || r.Training = "joint")
            $"training must be sequential or joint, got '{r.Training}'"

        check (r.EpochsPerTask >= 1) $"--epochs must be at least 1, got {r.EpochsPerTask}"
        check (r.BatchSize >= 1) $"--batch-size must be at least 1, got {r.BatchSize}"

        check
            (not r.Model.Hidden.IsEmpty && r.Model.Hidden |> List.forall (fun h -> h >= 1))
            $"the hidden layer sizes must be at least 1 each, got {r.Model.Hidden}"

        match r.Model.Forgetting with
        | Some f ->
            check (Double.IsFinite f.Rho && f.Rho > 0.0) $"--rho must be positive, got {f.Rho}"

            check
                (Double.IsFinite f.WfInitSd && f.WfInitSd >= 0.0)
                $"--wf-init-sd must be 0 (W_f = 0) or more, got {f.WfInitSd}"

            check
                (Double.IsFinite f.RhoGrowth && f.RhoGrowth > 0.0)
                $"--rho-growth must be positive (1: ρ fixed), got {f.RhoGrowth}"

            check
                (f.Readout = "" || List.contains f.Readout ActiveForgetting.readouts)
                $"""unknown read-out '{f.Readout}'; known: {String.concat ", " ActiveForgetting.readouts}"""
        | None -> ()

        let m = r.Model
        check (m.Kind = "mlp" || m.Kind = "binarized") $"unknown model '{m.Kind}'; known: mlp, binarized"

        check
            (List.contains m.Norm [ "none"; "batch"; "running" ])
            $"unknown batch norm '{m.Norm}'; known: none, batch, running"

        check
            (m.NormState = "task" || m.NormState = "domain")
            $"--norm-state must be task or domain, got '{m.NormState}'"

        check
            (m.Kind <> "binarized" || m.Norm <> "none")
            "a binarized net needs batch norm (its logits are the last layer's batch-normed output): give --norm batch or running"

        check
            (m.Kind <> "binarized" || m.Forgetting.IsNone)
            "a binarized net takes no forgetting layer: leave out the forgetting layer, or use --model mlp"

        check
            (m.NormState = "domain" || (m.Norm <> "none" && m.Affine))
            "--norm-state task keeps each task's batch-norm γ and β, but this net has none: give --norm batch with γ, β, or --norm-state domain"

        check
            (m.NormState = "domain" || s.Kind <> "single")
            "--norm-state task keeps batch-norm γ and β per task, but a single-task run has no tasks: leave it out"

        check
            (Double.IsFinite m.InitScale && m.InitScale >= 0.0)
            $"--init-scale must be 0 (the layers' default) or more, got {m.InitScale}"

        check
            (List.contains o.Kind [ "sgd"; "adam"; "metaplastic" ])
            $"unknown optimizer '{o.Kind}'; known: sgd, adam, metaplastic"

        check
            (o.Meta.IsEmpty || o.Kind = "metaplastic")
            $"--meta is metaplastic Adam's; the optimizer '{o.Kind}' has none: give --optimizer metaplastic"

        check
            (o.Kind <> "metaplastic" || not o.Meta.IsEmpty)
            "metaplastic Adam needs m: give --meta, one value or one per layer"

        check
            (o.Meta |> List.forall (fun x -> Double.IsFinite x && x >= 0.0))
            $"--meta must be finite numbers ≥ 0, got {o.Meta}"

        check
            (o.Meta.Length <= 1 || o.Meta.Length = m.Hidden.Length + 1)
            $"--meta gives {o.Meta.Length} values for a net of {m.Hidden.Length + 1} layers: give one per layer, or one for all"

        check
            (o.Schedule = "constant" || o.Schedule = "cosine")
            $"unknown learning-rate schedule '{o.Schedule}'; known: constant, cosine"

        check
            (o.Kind = "sgd" || not o.Nesterov)
            $"--nesterov is an option of sgd; {o.Kind} has no Nesterov momentum here (leave it out)"

        check
            (not o.Nesterov || o.Momentum > 0.0)
            "--nesterov needs a momentum above 0 (Nesterov's look-ahead is along the momentum)"

        check (Double.IsFinite o.Lr && o.Lr > 0.0) $"--lr must be positive, got {o.Lr}"

        check
            (Double.IsFinite o.Momentum && o.Momentum >= 0.0 && o.Momentum < 1.0)
            $"--momentum must be in [0, 1), got {o.Momentum}"

        check
            (Double.IsFinite o.WeightDecay && o.WeightDecay >= 0.0)
            $"--weight-decay must be 0 or more, got {o.WeightDecay}"

        o.Build() |> ignore

        for t in r.Terms do
            match kinds |> List.tryFind (fun k -> k.Name = t.Kind) with
            | Some k -> TermSetting.resolve k.Name k.Settings (Map.toList t.Settings) |> ignore
            | None ->
                let known = kinds |> List.map (fun k -> k.Name) |> String.concat ", "
                fail $"unknown term '{t.Kind}'; known: {known}"

        r

    /// A JSON file (`what` it should hold, e.g. "recipe", for the messages) read by `read`; a missing,
    /// unreadable or malformed file, or one `read` refuses with an ArgumentException, raises DataError
    /// naming the file and the problem.
    let readFile (what: string) (read: JsonNode -> 'a) (path: string) : 'a =
        let bad (message: string) : 'b =
            raise (Forgetting.Data.DataError($"{path}: {message}", path))

        let text =
            try
                File.ReadAllText path
            with
            | :? FileNotFoundException
            | :? DirectoryNotFoundException -> bad $"no such {what} file"
            | :? IOException
            | :? UnauthorizedAccessException as e -> bad $"cannot be read: {e.Message}"

        let node =
            try
                JsonNode.Parse text
            with :? JsonException as e ->
                bad $"not valid JSON ({e.Message.Split('.')[0]})"

        try
            read node
        with :? ArgumentException as e ->
            bad e.Message

    /// A recipe from a JSON file; a missing, unreadable or malformed file raises DataError naming the file
    /// and, for a malformed one, the field.
    let load (kinds: TermKind list) (path: string) = readFile "recipe" (ofJson kinds) path
