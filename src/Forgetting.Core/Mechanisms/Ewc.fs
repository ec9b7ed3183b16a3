namespace Forgetting.Mechanisms

open Forgetting.Tensors
open Forgetting.Nn

/// Elastic weight consolidation: which penalty, on which Fisher.
type EwcSettings =
    {
        /// λ ≥ 0 of the penalty (λ/2) Σ_t Σ_i F_t,i (θ_i − θ*_t,i)² (Kirkpatrick et al. 2017, eq. 3). An
        /// MLP's Fisher is tiny: published λ run from 1e2 (permuted MNIST) to 1e7 (split MNIST, Task-IL),
        /// so set it per scenario. Avalanche's penalty has no ½: its λ is half this one's for the same
        /// penalty, and results compared with it must say so.
        Lambda: float
        /// The Fisher's labels: the true Fisher (the default), the empirical one, or sampled labels.
        Fisher: FisherKind
        /// At most this many samples of a task for its Fisher (a random subset drawn from the
        /// consolidation's key; van de Ven et al. use 1000 for permuted MNIST); None: the whole task.
        Samples: int option
        /// None: one penalty term per past task ("separate", Kirkpatrick et al. 2017). Some γ, γ ∈ [0, 1]:
        /// online EWC (Schwarz et al. 2018), one term with F ← γF + F_new anchored at the latest θ*;
        /// γ = 1 sums the Fishers.
        Online: float option
        /// Online EWC only: multiply the penalty by γ once more, (λ/2) γ Σ F (θ − θ*)², as van de Ven et
        /// al.'s reference code does (its issue #9). Off by default.
        GammaInPenalty: bool
        /// Anchor the penalty of every weight matrix at its signs, sign(θ*), instead of θ* (vectors at
        /// θ*): a binarized net computes with the signs of its hidden weights, and the reference code of
        /// Laborieux et al. 2021 anchors its EWC baseline there. Off by default.
        BinaryAnchor: bool
    }

    /// Separate EWC with λ = 1 on the true Fisher of whole tasks: set λ for the scenario.
    static member Default =
        { Lambda = 1.0
          Fisher = FisherKind.True
          Samples = None
          Online = None
          GammaInPenalty = false
          BinaryAnchor = false }

/// Elastic weight consolidation (Kirkpatrick et al. 2017) and its online form (Schwarz et al. 2018) as
/// an objective term named "ewc": after each task, the diagonal Fisher F of the task just learned and
/// a copy θ* of the parameters; while learning later tasks, the penalty (λ/2) Σ_t Σ_i F_t,i (θ_i − θ*_t,i)².
[<RequireQualifiedAccess>]
module Ewc =

    /// The name of the term (and the prefix of its state in checkpoints).
    [<Literal>]
    let Name = "ewc"

    /// Refuses settings no EWC can run with, with a one-line message saying what to give instead.
    let validate (s: EwcSettings) =
        if not (s.Lambda >= 0.0) || System.Double.IsInfinity s.Lambda then
            invalidArg "Lambda" $"EWC's λ must be a finite number ≥ 0, got {s.Lambda}"

        match s.Online with
        | Some gamma when not (gamma >= 0.0 && gamma <= 1.0) ->
            invalidArg "Online" $"online EWC's γ must be in [0, 1], got {gamma}"
        | None when s.GammaInPenalty ->
            invalidArg
                "GammaInPenalty"
                "γ in the penalty applies to online EWC only: set Online = Some γ, or GammaInPenalty = false"
        | _ -> ()

        match s.Samples with
        | Some n when n < 1 ->
            invalidArg
                "Samples"
                $"EWC's Fisher sample cap must be at least 1, got {n}: give a positive count, or None for the whole task"
        | _ -> ()

    /// The (F_t, θ*_t) pairs of a state: "fisher1/…", "anchor1/…", … for separate EWC; "fisher/…",
    /// "anchor/…" for online EWC. Empty before the first consolidation.
    let private parse (online: bool option) (state: (string * Tensor) list) =
        let heads = state |> List.map (fun (name, _) -> name.Split('/')[0]) |> List.distinct
        let isOnline = heads |> List.exists (fun h -> h = "fisher" || h = "anchor")

        match online with
        | Some true when not isOnline && not heads.IsEmpty ->
            let found = String.concat ", " heads

            invalidArg
                "state"
                $"this EWC term is online, but the state holds separate terms ({found}): restore it into separate EWC"
        | Some false when isOnline ->
            invalidArg
                "state"
                "this EWC term is separate, but the state holds online EWC's one term: restore it into online EWC"
        | _ -> ()

        let pair (fisher: string) (anchor: string) =
            match NamedTensors.toParams fisher state, NamedTensors.toParams anchor state with
            | Some f, Some a -> f, a
            | _ -> invalidArg "state" $"the EWC state has '{fisher}' without '{anchor}' or the reverse: it needs both"

        let pairs, known =
            if isOnline then
                [ pair "fisher" "anchor" ], [ "fisher"; "anchor" ]
            else
                let ks = NamedTensors.numbered "fisher" state

                if ks <> List.init ks.Length (fun i -> i + 1) then
                    invalidArg "state" $"the EWC state's tasks are numbered {ks}: expected fisher1 … fisherT"

                [ for k in ks -> pair $"fisher{k}" $"anchor{k}" ],
                [ for k in ks do
                      yield $"fisher{k}"
                      yield $"anchor{k}" ]

        match heads |> List.filter (fun h -> not (List.contains h known)) with
        | [] -> pairs
        | unknown ->
            let names = String.concat ", " unknown
            invalidArg "state" $"the EWC state has entries it does not know: {names}"

    let private stateOf (online: bool) (pairs: (Params * Params) list) =
        if online then
            [ for f, a in pairs do
                  yield! NamedTensors.ofParams "fisher" f
                  yield! NamedTensors.ofParams "anchor" a ]
        else
            [ for t, (f, a) in List.indexed pairs do
                  yield! NamedTensors.ofParams $"fisher{t + 1}" f
                  yield! NamedTensors.ofParams $"anchor{t + 1}" a ]

    let rec private make (s: EwcSettings) (pairs: (Params * Params) list) : Term =
        let penalty =
            match pairs with
            | [] -> None
            | _ -> Some(Quadratic.ofTerms pairs)

        let scale =
            match s.Online with
            | Some gamma when s.GammaInPenalty -> s.Lambda / 2.0 * gamma
            | _ -> s.Lambda / 2.0

        let rec term =
            { Name = Name
              Loss =
                fun view ->
                    match penalty with
                    | Some q when s.Lambda <> 0.0 -> Some(Quadratic.loss scale q view.Params)
                    | _ -> None
              ObservesSteps = false
              Observe = fun _ -> term
              Consolidate =
                fun c ->
                    let fisher = Fisher.diagonal s.Fisher s.Samples c

                    let anchor =
                        c.Params
                        |> Params.map (fun t ->
                            if s.BinaryAnchor && t.Rank >= 2 then
                                Tensor.sign t
                            else
                                Tensor.stopGradient t)

                    match s.Online, pairs with
                    | None, _ -> make s (pairs @ [ fisher, anchor ])
                    | Some gamma, [ old, _ ] -> make s [ Params.map2 (fun o f -> o * gamma + f) old fisher, anchor ]
                    | Some _, _ -> make s [ fisher, anchor ]
              State = stateOf s.Online.IsSome pairs
              Restore = fun state -> make s (parse (Some s.Online.IsSome) state) }

        term

    /// The EWC term of the settings: no penalty (Loss None) before its first consolidation; each
    /// consolidation computes the Fisher of the task just learned (`Fisher.diagonal`, the model in
    /// evaluation mode on the task's head and outputs in play) and snapshots θ*. Its state is the
    /// (F, θ*) trees as named tensors, "fisher1/fc1/weight", "anchor1/fc1/weight", … per past task, or
    /// "fisher/…", "anchor/…" for online EWC, so that `Restore` of a checkpoint gives the same term.
    let term (settings: EwcSettings) : Term =
        validate settings
        make settings []

    let private pairsOf (term: Term) =
        if term.Name <> Name then
            invalidArg (nameof term) $"'{term.Name}' is not an EWC term (its name is '{Name}')"

        parse None term.State

    /// The Fisher of each past task (separate EWC, in task order) or the one running Fisher (online EWC),
    /// e.g. for histograms of parameter importance; empty before the first consolidation.
    let fisherOf (term: Term) : Params list = pairsOf term |> List.map fst

    /// The anchors θ* that go with `fisherOf`.
    let anchorsOf (term: Term) : Params list = pairsOf term |> List.map snd

    /// EWC as a term kind of a run description: lambda (λ, default 1: set it per scenario), fisher
    /// (true, empirical or sampled), samples (at most this many per task, 0 for all), online (one
    /// γ-decayed Fisher instead of one term per task), gamma (γ of online EWC) and gamma_in_penalty.
    let kind: TermKind =
        { Name = Name
          Doc = "elastic weight consolidation (Kirkpatrick et al. 2017): (λ/2) Σ_t Σ F_t (θ − θ*_t)²"
          Settings =
            [ TermSetting.number "lambda" "λ of the penalty" 1.0 "≥ 0" (fun l -> l >= 0.0)
              TermSetting.choice "fisher" "the Fisher's labels" "true" [ "true"; "empirical"; "sampled" ]
              TermSetting.count "samples" "at most this many samples per task for the Fisher (0: all)" 0 "≥ 0" (fun n ->
                  n >= 0)
              TermSetting.switch "online" "online EWC (Schwarz et al. 2018): F ← γF + F_new, one anchor" false
              TermSetting.number "gamma" "online EWC's decay γ" 1.0 "in [0, 1]" (fun g -> g >= 0.0 && g <= 1.0)
              TermSetting.switch "gamma_in_penalty" "online EWC: γ once more in the penalty" false
              TermSetting.switch "binary_anchor" "anchor weight matrices at sign(θ*) (binarized nets)" false ]
          AfterTasks = true
          Build =
            fun s ->
                let samples = TermSetting.toInt s "samples"

                term
                    { Lambda = TermSetting.toFloat s "lambda"
                      Fisher =
                        match TermSetting.toChoice s "fisher" with
                        | "empirical" -> FisherKind.Empirical
                        | "sampled" -> FisherKind.Sampled
                        | _ -> FisherKind.True
                      Samples = (if samples = 0 then None else Some samples)
                      Online =
                        if TermSetting.toBool s "online" then
                            Some(TermSetting.toFloat s "gamma")
                        else
                            None
                      GammaInPenalty = TermSetting.toBool s "gamma_in_penalty"
                      BinaryAnchor = TermSetting.toBool s "binary_anchor" } }
