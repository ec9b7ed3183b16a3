namespace Forgetting.Mechanisms

open Forgetting.Tensors
open Forgetting.Nn

/// Synaptic intelligence's settings (Zenke et al. 2017).
type SiSettings =
    {
        /// c ≥ 0 of the surrogate loss c Σ_i Ω_i (θ_i − θ*_i)² (eq. 4; no ½, as in the paper and in van de
        /// Ven et al.'s reference code).
        Strength: float
        /// ξ > 0 of Ω = ω / ((Δθ)² + ξ) (eq. 5): bounds Ω where a parameter hardly moved during a task.
        Damping: float
    }

    /// c = 1, ξ = 0.1 (the paper's damping): set c for the scenario.
    static member Default = { Strength = 1.0; Damping = 0.1 }

/// Synaptic intelligence (Zenke et al., ICML 2017) as an objective term named "si". While a task is
/// learned, the path integral ω_i = Σ_steps −g_i Δθ_i (eq. 3, with g the gradient of the task loss alone,
/// as the paper's code takes it; van de Ven et al.'s code takes the gradient of the total loss, the
/// surrogate included), over the actual parameter updates, whatever the optimizer. After the task,
/// Ω_i += ω_i / ((θ_i,end − θ_i,start)² + ξ) (eq. 5, accumulated over tasks), ω is reset and θ* = θ_end;
/// while learning later tasks the penalty is c Σ_i Ω_i (θ_i − θ*_i)² (eq. 4). θ_start is the previous
/// task's θ* (for the first task, the parameters before its first observed step). Ω is not clipped: a
/// task whose steps raised the loss on balance gives a parameter a negative Ω, as in both reference codes.
[<RequireQualifiedAccess>]
module Si =

    /// The name of the term (and the prefix of its state in checkpoints).
    [<Literal>]
    let Name = "si"

    /// Refuses settings SI cannot run with, with a one-line message.
    let validate (s: SiSettings) =
        if not (s.Strength >= 0.0) || System.Double.IsInfinity s.Strength then
            invalidArg "Strength" $"SI's strength c must be a finite number ≥ 0, got {s.Strength}"

        if not (s.Damping > 0.0) || System.Double.IsInfinity s.Damping then
            invalidArg
                "Damping"
                $"SI's damping ξ must be a finite number > 0, got {s.Damping}: it bounds Ω where a parameter hardly moved (Zenke et al. use 0.1)"

    /// What SI carries: the running path integral ω of the current task, the parameters at its start,
    /// the importance Ω accumulated over past tasks and the anchor θ*.
    type private State =
        { Path: Params option
          Start: Params option
          Importance: Params option
          Anchor: Params option }

    let private empty =
        { Path = None
          Start = None
          Importance = None
          Anchor = None }

    let private names = [ "path"; "start"; "importance"; "anchor" ]

    let private stateOf (st: State) =
        [ for name, tree in List.zip names [ st.Path; st.Start; st.Importance; st.Anchor ] do
              match tree with
              | Some p -> yield! NamedTensors.ofParams name p
              | None -> () ]

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
            invalidArg "state" $"the SI state has entries it does not know: {found}"

        let st =
            { Path = NamedTensors.toParams "path" state
              Start = NamedTensors.toParams "start" state
              Importance = NamedTensors.toParams "importance" state
              Anchor = NamedTensors.toParams "anchor" state }

        if st.Importance.IsSome <> st.Anchor.IsSome then
            invalidArg "state" "the SI state has 'importance' without 'anchor' or the reverse: it needs both"

        st

    let rec private make (s: SiSettings) (st: State) : Term =
        let penalty =
            match st.Importance, st.Anchor with
            | Some omega, Some anchor -> Some(Quadratic.ofTerms [ omega, anchor ])
            | _ -> None

        { Name = Name
          Loss =
            fun view ->
                match penalty with
                | Some q when s.Strength <> 0.0 -> Some(Quadratic.loss s.Strength q view.Params)
                | _ -> None
          ObservesSteps = true
          Observe =
            fun o ->
                let start = st.Start |> Option.orElse st.Anchor |> Option.defaultValue o.Before

                // ω −= g ⊙ (θ_after − θ_before), per step (eq. 3).
                let contribution =
                    Params.map2 (fun g d -> g * d) o.TaskGradient (Params.map2 (-) o.After o.Before)

                let path =
                    match st.Path with
                    | None -> Params.map (fun c -> -c) contribution
                    | Some w -> Params.map2 (-) w contribution

                make
                    s
                    { st with
                        Path = Some path
                        Start = Some start }
          Consolidate =
            fun c ->
                let theta = Params.map Tensor.stopGradient c.Params

                let start = st.Start |> Option.orElse st.Anchor |> Option.defaultValue theta

                let omega =
                    st.Path |> Option.defaultWith (fun () -> Params.map Tensor.zerosLike theta)

                // Ω += ω / ((θ_end − θ_start)² + ξ) (eq. 5).
                let added =
                    Params.map2 (fun w d -> w / (Tensor.square d + s.Damping)) omega (Params.map2 (-) theta start)

                make
                    s
                    { Path = None
                      Start = Some theta
                      Importance =
                        Some(
                            match st.Importance with
                            | None -> added
                            | Some old -> Params.map2 (+) old added
                        )
                      Anchor = Some theta }
          State = stateOf st
          Restore = fun state -> make s (parse state) }

    /// The SI term of the settings: no penalty (Loss None) before its first consolidation. Its state
    /// is "importance/…" (Ω), "anchor/…" (θ*), and while a task is under way "path/…" (ω) and
    /// "start/…" (θ_start), as named tensors, so that `Restore` of a checkpoint gives the same term.
    let term (settings: SiSettings) : Term =
        validate settings
        make settings empty

    /// The importance Ω accumulated over past tasks (None before the first consolidation), e.g. for
    /// histograms of parameter importance.
    let importanceOf (term: Term) : Params option =
        if term.Name <> Name then
            invalidArg (nameof term) $"'{term.Name}' is not an SI term (its name is '{Name}')"

        (parse term.State).Importance

    /// SI as a term kind of a run description: c (default 1: set it per scenario) and damping (ξ, 0.1).
    let kind: TermKind =
        { Name = Name
          Doc = "synaptic intelligence (Zenke et al. 2017): c Σ Ω (θ − θ*)², Ω from the path integral"
          Settings =
            [ TermSetting.number "c" "c of the penalty" 1.0 "≥ 0" (fun c -> c >= 0.0)
              TermSetting.number "damping" "ξ of Ω = ω / ((Δθ)² + ξ)" 0.1 "> 0" (fun x -> x > 0.0) ]
          AfterTasks = true
          Build =
            fun s ->
                term
                    { Strength = TermSetting.toFloat s "c"
                      Damping = TermSetting.toFloat s "damping" } }
