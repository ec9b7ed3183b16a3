namespace Forgetting.Mechanisms

open System.Collections.Generic
open Forgetting.Tensors
open Forgetting.Nn

/// Which norm of the output F(x) global MAS differentiates (Aljundi et al. 2018, eq. 4 uses ‖F‖²₂).
[<RequireQualifiedAccess>]
type MasNorm =
    /// ‖F(x)‖²₂ = Σ_k F_k², the paper's (eq. 4) and the official code's default (compute_importance_l2).
    | SquaredL2
    /// ‖F(x)‖₁ = Σ_k |F_k|, the official code's other form (compute_importance).
    | L1

/// Where MAS's importance comes from.
[<RequireQualifiedAccess>]
type MasImportance =
    /// Global MAS (eq. 4): Ω = (1/N) Σ_k |∂ ‖F(x_k)‖² / ∂θ|, from gradients of the output's norm.
    | Global
    /// Local MAS, Hebb's rule (the paper's §4.2, eq. 7): Ω_ij = (1/N) Σ_k |y_i(x_k) y_j(x_k)| for the
    /// weight from unit j (the layer's input) to unit i (its output after the nonlinearity); no gradient.
    | Local

/// Memory aware synapses: which importance, how it is accumulated, and the penalty's strength.
type MasSettings =
    {
        /// λ ≥ 0 of the penalty λ Σ_i Ω_i (θ_i − θ*_i)² (Aljundi et al. 2018, eq. 3; no ½: the official
        /// code adds 2λΩ(θ − θ*) to the gradient). The paper and its split-MNIST demo use λ = 1.
        Lambda: float
        /// Global (gradients of the output norm, the default) or local (Hebbian).
        Importance: MasImportance
        /// Global MAS: ‖F‖²₂ (the default) or ‖F‖₁.
        Norm: MasNorm
        /// Global MAS: the norm divided by the number K of outputs (a mean over outputs instead of a sum).
        MeanOverOutputs: bool
        /// Global MAS: None, per-sample gradients (the exact form of eq. 4, the default); Some b, the
        /// official demo's batched form (1/N) Σ_batches |∂ Σ_{k ∈ batch} ‖F(x_k)‖² / ∂θ| with batches of b
        /// (the demo uses 200). Some 1 is the per-sample form.
        BatchSize: int option
        /// None: Ω ← Ω_old + Ω_new after each task (the official code's accumulation, the default).
        /// Some α, α ∈ [0, 1]: Ω ← α Ω_old + (1 − α) Ω_new (Avalanche's, α = 0.5).
        Alpha: float option
        /// At most this many samples of a task for Ω (a random subset drawn from the consolidation's key);
        /// None: the whole task.
        Samples: int option
    }

    /// Global per-sample MAS on ‖F‖²₂, summed over tasks, λ = 1 (the paper's and the demo's).
    static member Default =
        { Lambda = 1.0
          Importance = MasImportance.Global
          Norm = MasNorm.SquaredL2
          MeanOverOutputs = false
          BatchSize = None
          Alpha = None
          Samples = None }

/// Memory aware synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars, ECCV 2018, arXiv
/// 1711.09601) as an objective term named "mas": after each task, the importance Ω of every parameter
/// on that task's training inputs (no labels: the sensitivity of the output of the task's head, the
/// model in evaluation mode) and a copy θ* of the parameters; while learning later tasks, the penalty
/// λ Σ_i Ω_i (θ_i − θ*_i)² (eq. 3), one fused pass (`Quadratic`).
[<RequireQualifiedAccess>]
module Mas =

    /// The name of the term (and the prefix of its state in checkpoints).
    [<Literal>]
    let Name = "mas"

    /// Refuses settings no MAS can run with, with a one-line message saying what to give instead.
    let validate (s: MasSettings) =
        if not (s.Lambda >= 0.0) || System.Double.IsInfinity s.Lambda then
            invalidArg "Lambda" $"MAS's λ must be a finite number ≥ 0, got {s.Lambda}"

        match s.Alpha with
        | Some a when not (a >= 0.0 && a <= 1.0) ->
            invalidArg "Alpha" $"MAS's blend α must be in [0, 1], got {a}: Ω ← α Ω_old + (1 − α) Ω_new"
        | _ -> ()

        match s.BatchSize with
        | Some b when b < 1 ->
            invalidArg
                "BatchSize"
                $"MAS's batch size must be at least 1, got {b}: give a positive size, or None for per-sample gradients"
        | _ -> ()

        match s.Samples with
        | Some n when n < 1 ->
            invalidArg
                "Samples"
                $"MAS's sample cap must be at least 1, got {n}: give a positive count, or None for the whole task"
        | _ -> ()

        if s.Importance = MasImportance.Local then
            if s.BatchSize.IsSome then
                invalidArg "BatchSize" "the batch size applies to global MAS only: local MAS takes no gradient"

            if s.Norm <> MasNorm.SquaredL2 || s.MeanOverOutputs then
                invalidArg "Norm" "the output norm applies to global MAS only: local MAS takes no gradient"

    let private checkInputs (inputs: Tensor) =
        if inputs.Rank < 1 || inputs.Shape[0] = 0 then
            invalidArg (nameof inputs) "MAS needs at least one sample: the inputs are empty"

    /// The first `outputs` columns of logits [B, K] (the classes in play of the task's head).
    let private inPlay (outputs: int option) (logits: Tensor) =
        if logits.Rank <> 2 then
            invalidArg "model" $"MAS needs outputs [B, K], the model returned shape {Shape.show logits.Shape}"

        match outputs with
        | Some k when k > logits.Shape[1] ->
            invalidArg "outputs" $"{k} outputs are in play but the task's head has {logits.Shape[1]}"
        | Some k when k < logits.Shape[1] -> logits |> Tensor.transpose |> Tensor.slice 0 k |> Tensor.transpose
        | _ -> logits

    /// ℓ_b, per sample b: ‖F(x_b)‖²₂ or ‖F(x_b)‖₁, over K when meanOverOutputs (shape [B]).
    let outputNorm (norm: MasNorm) (meanOverOutputs: bool) (f: Tensor) : Tensor =
        let perSample =
            match norm with
            | MasNorm.SquaredL2 -> Tensor.sumAxis 1 false (Tensor.square f)
            | MasNorm.L1 -> Tensor.sumAxis 1 false (Tensor.abs f)

        if meanOverOutputs then
            perSample / float f.Shape[1]
        else
            perSample

    /// Global MAS (eq. 4) of `model` at `p` on `inputs` alone (no labels), through the head of `task`,
    /// in evaluation mode, on the first `outputs` logits (None: all of the head's).
    ///
    /// Per sample (BatchSize None): Ω = (1/N) Σ_k |∂ℓ_k/∂θ| from `SampleGradients.sums` with `SampleMap.Abs`.
    /// A dense layer needs no loop there: its per-sample weight gradient is the outer product a_kᵀ g_k of
    /// its input and the gradient at its output, and |a_kᵀ g_k| = |a_k|ᵀ|g_k|, so Σ_k |a_kᵀ g_k| = |A|ᵀ|G|:
    /// one matrix product per layer and chunk. Batched (Some b): Ω = (1/N) Σ_batches |∂ Σ_{k∈batch} ℓ_k/∂θ|,
    /// as the official demo's MAS_Omega_update (its running mean ends at the sum over N).
    let globalImportanceOf
        (s: MasSettings)
        (model: Layer)
        (task: int)
        (outputs: int option)
        (p: Params)
        (inputs: Tensor)
        =
        validate s
        checkInputs inputs
        let n = inputs.Shape[0]
        let mode = Mode.Eval.OnTask task

        let norm logits =
            outputNorm s.Norm s.MeanOverOutputs (inPlay outputs logits)

        let total =
            match s.BatchSize with
            | None ->
                SampleGradients.sums
                    SampleMap.Abs
                    model
                    mode
                    (fun _ logits -> [ { Values = norm logits; Weights = None } ])
                    p
                    inputs
            | Some b ->
                let mutable acc = Params.map Tensor.zerosLike p

                for start in 0..b .. n - 1 do
                    let x = Tensor.slice start (min b (n - start)) inputs
                    let g = Params.grad (fun q -> Tensor.sum (norm (Layer.apply model mode q x))) p
                    acc <- Params.map2 (fun a g -> a + Tensor.abs g) acc g

                acc

        Params.map (fun t -> t / float n) total

    /// Global per-sample MAS with the defaults (‖F‖²₂ summed over all outputs of the head of `task`) on
    /// unlabeled `inputs`: the importance of a trained model on a data set.
    let globalImportance (model: Layer) (task: int) (p: Params) (inputs: Tensor) =
        globalImportanceOf MasSettings.Default model task None p inputs

    let private joinPath (prefix: string) (name: string) =
        if prefix = "" then name else prefix + "/" + name

    let private isOuter (e: TraceEntry) =
        match e.Kind with
        | Gradient("weight", Outer _) -> true
        | _ -> false

    /// How many samples one forward pass of local MAS takes.
    let private chunk = 256

    /// Local, Hebbian MAS (the paper's eq. 7, "a direct application of Hebb's rule"): for each dense
    /// layer, Ω_ij = (1/N) Σ_k |y_i(x_k) y_j(x_k)| with y_j its input (pre-synaptic, the layer's input as
    /// recorded by its `Outer` rule) and y_i its output after the nonlinearity (post-synaptic: the first
    /// activation the trace records after the layer and before the next dense layer; the layer's own
    /// output where none follows, as for the logits). A bias counts y_j = 1: Ω_i = (1/N) Σ_k |y_i(x_k)|.
    /// Over the data set it is one matrix product per layer and chunk, |Y_in|ᵀ|Y_out|, and needs no
    /// gradient. The model runs in evaluation mode on the head of `task`. Parameters outside dense layers
    /// (a forgetting layer's W_f, the heads of other tasks) get 0. No reference code exists for it.
    let localImportance (model: Layer) (task: int) (p: Params) (inputs: Tensor) =
        checkInputs inputs
        let n = inputs.Shape[0]
        let flat = Params.flatten p
        let index = flat |> List.mapi (fun i (path, _) -> path, i) |> dict
        let leaves = flat |> List.map snd |> Array.ofList
        let acc: Tensor option[] = Array.create leaves.Length None
        let mode = Mode.Eval.OnTask task

        let add i (t: Tensor) =
            acc[i] <-
                match acc[i] with
                | None -> Some t
                | Some s -> Some(s + t)

        for start in 0..chunk .. n - 1 do
            let x = Tensor.slice start (min chunk (n - start)) inputs
            let _, trace = model.Forward mode p x
            let entries = Array.ofList trace

            let layers =
                entries
                |> Array.indexed
                |> Array.choose (fun (k, e) ->
                    match e.Kind with
                    | Gradient("weight", Outer a) -> Some(k, e, a)
                    | _ -> None)

            if layers.Length = 0 then
                invalidArg
                    "model"
                    "local MAS needs dense layers (Ω_ij = mean |y_i y_j| over a layer's inputs and outputs): this model records none"

            for k, e, a in layers do
                let post =
                    entries[k + 1 ..]
                    |> Seq.takeWhile (isOuter >> not)
                    |> Seq.tryFind (fun f -> f.Kind = Activation)
                    |> Option.map (fun f -> f.Value)
                    |> Option.defaultValue e.Value

                let y = Tensor.abs (post.StopGradient())
                let pre = Tensor.abs (a.StopGradient())

                match index.TryGetValue(joinPath e.Path "weight") with
                | true, i -> add i (Tensor.OfRaw(pre.Raw.MatMul(true, y.Raw, false)))
                | _ -> invalidArg "model" $"the dense layer at '{e.Path}' has no weight in the parameter tree"

                let hasBias =
                    entries
                    |> Array.exists (fun f ->
                        match f.Kind with
                        | Gradient("bias", Rows) -> f.Path = e.Path
                        | _ -> false)

                match index.TryGetValue(joinPath e.Path "bias") with
                | true, i when hasBias -> add i (Tensor.sumAxis 0 false y)
                | _ -> ()

        acc
        |> Array.mapi (fun i t ->
            match t with
            | Some t -> t / float n
            | None -> Tensor.zerosLike leaves[i])
        |> Params.withTensors p

    /// The importance the settings name, on the given inputs (see `globalImportanceOf` and
    /// `localImportance`).
    let importanceOf (s: MasSettings) (model: Layer) (task: int) (outputs: int option) (p: Params) (inputs: Tensor) =
        validate s

        match s.Importance with
        | MasImportance.Global -> globalImportanceOf s model task outputs p inputs
        | MasImportance.Local ->
            checkInputs inputs
            localImportance model task p inputs

    /// Ω after a task: Ω_old + Ω_new (alpha None), or α Ω_old + (1 − α) Ω_new; Ω_new after the first task.
    let accumulate (alpha: float option) (old: Params option) (fresh: Params) =
        match old, alpha with
        | None, _ -> fresh
        | Some o, None -> Params.map2 (+) o fresh
        | Some o, Some a -> Params.map2 (fun o f -> o * a + f * (1.0 - a)) o fresh

    /// The samples of a consolidation Ω is taken on: all, or a uniformly random subset of `cap`, kept in
    /// the data's order (a task's data may be ordered by class).
    let private select (samples: int option) (c: Consolidation) =
        checkInputs c.Inputs
        let n = c.Inputs.Shape[0]

        match samples with
        | Some cap when cap < n ->
            let chosen = Rng.permutation n c.Rng |> Array.truncate cap |> Array.sort
            Tensor.gather chosen c.Inputs
        | _ -> c.Inputs

    let private names = [ "importance"; "anchor" ]

    let private parse (state: (string * Tensor) list) =
        match
            state
            |> List.map (fun (name, _) -> name.Split('/')[0])
            |> List.distinct
            |> List.filter (fun h -> not (List.contains h names))
        with
        | [] -> ()
        | unknown ->
            let found = String.concat ", " unknown
            invalidArg "state" $"the MAS state has entries it does not know: {found}"

        match NamedTensors.toParams "importance" state, NamedTensors.toParams "anchor" state with
        | Some o, Some a -> Some(o, a)
        | None, None -> None
        | _ -> invalidArg "state" "the MAS state has 'importance' without 'anchor' or the reverse: it needs both"

    let rec private make (s: MasSettings) (st: (Params * Params) option) : Term =
        let penalty = st |> Option.map (fun pair -> Quadratic.ofTerms [ pair ])

        let rec term =
            { Name = Name
              Loss =
                fun view ->
                    match penalty with
                    | Some q when s.Lambda <> 0.0 -> Some(Quadratic.loss s.Lambda q view.Params)
                    | _ -> None
              ObservesSteps = false
              Observe = fun _ -> term
              Consolidate =
                fun c ->
                    let inputs = select s.Samples c
                    let fresh = importanceOf s c.Model c.Task (Some c.Outputs) c.Params inputs
                    let omega = accumulate s.Alpha (st |> Option.map fst) fresh
                    make s (Some(omega, Params.map Tensor.stopGradient c.Params))
              State =
                match st with
                | Some(o, a) -> NamedTensors.ofParams "importance" o @ NamedTensors.ofParams "anchor" a
                | None -> []
              Restore = fun state -> make s (parse state) }

        term

    /// The MAS term of the settings: no penalty (Loss None) before its first consolidation; each
    /// consolidation computes Ω on the task just learned (its training inputs, or a subset of them; the
    /// head of the task and its outputs in play), accumulates it and snapshots θ*. Its state is
    /// "importance/…" (Ω) and "anchor/…" (θ*) as named tensors, so that `Restore` of a checkpoint gives
    /// the same term.
    let term (settings: MasSettings) : Term =
        validate settings
        make settings None

    let private stateOf (term: Term) =
        if term.Name <> Name then
            invalidArg (nameof term) $"'{term.Name}' is not a MAS term (its name is '{Name}')"

        parse term.State

    /// The accumulated importance Ω (None before the first consolidation), e.g. for histograms.
    let omegaOf (term: Term) : Params option = stateOf term |> Option.map fst

    /// The anchor θ* that goes with `omegaOf`.
    let anchorOf (term: Term) : Params option = stateOf term |> Option.map snd

    /// The settings of a resolved term kind.
    let settingsOf (s: Settings) : MasSettings =
        let batch = TermSetting.toInt s "batch"
        let samples = TermSetting.toInt s "samples"

        { Lambda = TermSetting.toFloat s "lambda"
          Importance =
            match TermSetting.toChoice s "importance" with
            | "local" -> MasImportance.Local
            | _ -> MasImportance.Global
          Norm =
            match TermSetting.toChoice s "norm" with
            | "l1" -> MasNorm.L1
            | _ -> MasNorm.SquaredL2
          MeanOverOutputs = TermSetting.toBool s "mean_outputs"
          BatchSize = (if batch = 0 then None else Some batch)
          Alpha =
            match TermSetting.toChoice s "accumulate" with
            | "blend" -> Some(TermSetting.toFloat s "alpha")
            | _ -> None
          Samples = (if samples = 0 then None else Some samples) }

    /// MAS as a term kind of a run description: lambda (λ, default 1, the paper's), importance (global
    /// or local), norm (l2: ‖F‖²₂, or l1), mean_outputs, batch (0: per-sample, else the batched form's
    /// batch size), accumulate (sum or blend), alpha (the blend's α, 0.5) and samples (0: all).
    let kind: TermKind =
        { Name = Name
          Doc = "memory aware synapses (Aljundi et al. 2018): λ Σ Ω (θ − θ*)², Ω = mean |∂‖F(x)‖²/∂θ| or Hebbian"
          Settings =
            [ TermSetting.number "lambda" "λ of the penalty" 1.0 "≥ 0" (fun l -> l >= 0.0)
              TermSetting.choice
                  "importance"
                  "global (output-norm gradients) or local (Hebbian)"
                  "global"
                  [ "global"; "local" ]
              TermSetting.choice "norm" "global: l2 (‖F‖²₂) or l1 (‖F‖₁)" "l2" [ "l2"; "l1" ]
              TermSetting.switch "mean_outputs" "global: the norm's mean over outputs instead of its sum" false
              TermSetting.count "batch" "global: the batched form's batch size (0: per-sample, exact)" 0 "≥ 0" (fun n ->
                  n >= 0)
              TermSetting.choice "accumulate" "across tasks: sum (Ω_old + Ω_new) or blend" "sum" [ "sum"; "blend" ]
              TermSetting.number "alpha" "blend: Ω ← α Ω_old + (1 − α) Ω_new" 0.5 "in [0, 1]" (fun a ->
                  a >= 0.0 && a <= 1.0)
              TermSetting.count "samples" "at most this many samples per task for Ω (0: all)" 0 "≥ 0" (fun n -> n >= 0) ]
          AfterTasks = true
          Build = fun s -> term (settingsOf s) }
