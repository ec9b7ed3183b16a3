namespace Forgetting.Mechanisms

open System
open Forgetting.Tensors
open Forgetting.Nn

// Learning with partial forgetting (LwPF; source 003: Ota et al., "Learning with Partial Forgetting in
// Modern Hopfield Networks", AISTATS 2023) on modern Hopfield layers (Ramsauer et al., "Hopfield
// Networks is All You Need", ICLR 2021, and their code ml-jku/hopfield-layers, "hflayers"). The formulas
// and the reference code's defaults and pitfalls are in shared/design/mechanisms.md §5, which this file
// follows; the sources held here are the abstract of 003 and the two reference codes, so comments cite
// the formula by name and §5 rather than by an equation number of the paper.

/// Over which scores the PFU's median is taken, for scores s of shape [B, H, Q, K] (batch, heads,
/// queries, keys).
type MedianScope =
    /// All the scores of one forward call: B × H × Q × K (hflayers and the ViT of the reference).
    | WholeCall
    /// Each sample's scores, H × Q × K (one bag's scores in DeepRC).
    | PerSample
    /// Each sample's and head's scores, Q × K.
    | PerHead
    /// Each query's scores over the keys, K.
    | PerQuery

    /// The first axis of the scope on [B, H, Q, K].
    member s.FromAxis =
        match s with
        | WholeCall -> 0
        | PerSample -> 1
        | PerHead -> 2
        | PerQuery -> 3

    member s.Name =
        match s with
        | WholeCall -> "call"
        | PerSample -> "sample"
        | PerHead -> "head"
        | PerQuery -> "query"

    static member All = [ WholeCall; PerSample; PerHead; PerQuery ]

    /// A scope by its name (call, sample, head, query); an unknown name is refused in one line.
    static member Parse(name: string) =
        match MedianScope.All |> List.tryFind (fun s -> s.Name = name) with
        | Some s -> s
        | None ->
            let known = MedianScope.All |> List.map (fun s -> s.Name) |> String.concat ", "
            invalidArg (nameof name) $"unknown median scope '{name}': known are {known}"

/// The PFU's threshold a before its noise ε.
type PfuThreshold =
    /// The lower median of the scores over the scope (torch.median's convention), per call.
    | Median of MedianScope
    /// A constant.
    | Fixed of float

/// The partial-forgetting unit (PFU, source 003; `lagrangian_units.PFU` of Toshihiro-Ota/lwpf):
/// D(s) = s where s > a, else b; D'(s) = 1[s > a]; a = threshold + ε.
type PfuSettings =
    {
        /// The threshold before noise; the reference's `mu = 'dmedian'` is `Median WholeCall`.
        Threshold: PfuThreshold
        /// ε = N(0, 1) · σ², one scalar draw per call of the unit, in training only (σ = 0.01 in the
        /// reference's usage). 0 switches the noise off.
        Sigma: float
        /// Cut the threshold from the tape. The reference does not: the gradient of every forgotten entry
        /// (D(s) = a there) flows into a, and through the median to the picked element.
        Detach: bool
        /// The value b below the threshold; None: the threshold itself (the reference's `bias = 'mu'`).
        /// A constant b passes no gradient to the threshold.
        Below: float option
    }

    /// As the reference's usage: `PFU(bias='mu', mu='dmedian', sigma=0.01)`.
    static member Default =
        { Threshold = Median WholeCall
          Sigma = 0.01
          Detach = false
          Below = None }

/// The element-wise, non-bijective projection D applied to the association scores before the softmax,
/// with its indicator D' applied after it (mechanisms.md §5): A = D'(s) ⊙ softmax(D(s)), unnormalised.
type ForgettingUnit =
    /// No partial forgetting: D = identity, D' = 1, A = softmax(s).
    | NoUnit
    /// D(s) = max(s, 0), D'(s) = 1[s > 0].
    | ReluUnit
    /// See `PfuSettings`.
    | Pfu of PfuSettings

    member u.Name =
        match u with
        | NoUnit -> "none"
        | ReluUnit -> "relu"
        | Pfu _ -> "pfu"

    /// A unit by its name (none, relu, pfu, the PFU with its default settings); unknown names are refused.
    static member Parse(name: string) =
        match name with
        | "none" -> NoUnit
        | "relu" -> ReluUnit
        | "pfu" -> Pfu PfuSettings.Default
        | _ -> invalidArg (nameof name) $"unknown partial-forgetting unit '{name}': known are none, relu, pfu"

/// What one association computed: the output A·V and the association matrix A that produced it.
type Association =
    {
        /// [B, H, Q, Dv].
        Output: Tensor
        /// A = D'(s) ⊙ softmax(D(s)) of the last update step, before dropout, [B, H, Q, K]: its rows sum
        /// to 1 without a unit and to at most 1 with one.
        Weights: Tensor
        /// The scores s = β ξ Kᵀ of the last update step, [B, H, Q, K].
        Scores: Tensor
    }

/// hflayers' `association_activation`: a function of torch applied elementwise to the layer's output
/// (after the output projection). The reference takes any torch function by name and silently applies
/// none for a name torch lacks; here the elementwise ones of one argument, and an unknown name is refused.
[<RequireQualifiedAccess>]
type AssociationActivation =
    | Relu
    | Tanh
    | Sigmoid

    member a.Name =
        match a with
        | Relu -> "relu"
        | Tanh -> "tanh"
        | Sigmoid -> "sigmoid"

    member a.Apply(x: Tensor) =
        match a with
        | Relu -> Tensor.relu x
        | Tanh -> Tensor.tanh x
        | Sigmoid -> Tensor.sigmoid x

    static member All = [ Relu; Tanh; Sigmoid ]

    static member Parse(name: string) =
        match AssociationActivation.All |> List.tryFind (fun a -> a.Name = name) with
        | Some a -> a
        | None -> invalidArg (nameof name) $"unknown association activation '{name}': known are relu, tanh, sigmoid"

/// The options of a Hopfield layer, named and defaulted as hflayers' `Hopfield` (mechanisms.md §5).
type HopfieldSettings =
    {
        /// Association heads.
        Heads: int
        /// The dimension of each head's association space; None: the state size / heads.
        HiddenSize: int option
        /// The dimension of each head's retrieved patterns (values); None: the hidden size.
        PatternSize: int option
        /// The output projection's width; None: the state size.
        OutputSize: int option
        /// β; None: 1/√hidden (1 when every projection is off, as hflayers' static execution).
        Scaling: float option
        /// One β per head (hflayers' `scaling` given per head), overriding `Scaling`; empty: `Scaling` for
        /// every head.
        HeadScaling: float list
        /// Association steps ≥ 1 (hflayers' `update_steps_max` = k runs k + 1 steps).
        UpdateSteps: int
        /// hflayers' early stop `update_steps_eps`: a head stops updating once its association changes by
        /// at most ε (PartialForgetting.associateUntil). None: every step runs. hflayers' default is 1e-4;
        /// here None is the default, so that the recorded runs (fixed step counts) stay as they were.
        UpdateStepsEps: float option
        /// Layer normalisation of the stored patterns, the state patterns and the pattern projection
        /// (values' input), each over its last axis, with affine γ, β when `NormalizeAffine`.
        NormalizeStored: bool
        NormalizeState: bool
        NormalizeProjection: bool
        NormalizeAffine: bool
        /// Without a projection ("as static" in hflayers): the patterns enter each head unprojected.
        StoredAsStatic: bool
        StateAsStatic: bool
        ProjectionAsStatic: bool
        /// Biases on the Q, K, V projections and the output projection.
        Bias: bool
        /// hflayers' `add_bias_kv`, which its public layers call `concat_bias_pattern` (as torch's
        /// MultiheadAttention): a learned key and a learned value appended to every head's stored
        /// patterns after their projections (initialised xavier-normal, N(0, 1/size), as torch); a mask
        /// gains a kept column for them. The reference's core tests its boolean static flags against None
        /// before appending, so there it is never appended (mechanisms.md §5): built as the option intends.
        AddBiasKv: bool
        /// hflayers' `add_zero_association` (torch's `add_zero_attn`): a zero key and a zero value
        /// appended to every head's stored patterns after the projections and the bias pattern, never
        /// masked. Its score is β ξ·0 = 0 in every step, so a query can put weight on "nothing": the
        /// weights over the real keys sum to less than 1 and the zero value adds nothing to the output.
        AddZeroAssociation: bool
        /// hflayers' `normalize_hopfield_space`: layer normalisation (ε = 1e-5) over each head's hidden
        /// dimension of the projected state patterns and stored patterns (queries and keys, not the
        /// values), after the projections and before β, the bias pattern and the zero association; only
        /// the first step's state, as the reference (later states ξ = p k are not normalised again).
        NormalizeHopfieldSpace: bool
        /// hflayers' `normalize_hopfield_space_affine`: a learned γ, β [hidden] ("norm_hopfield"), one pair
        /// shared by the queries, the keys and every head, as the reference. Needs `NormalizeHopfieldSpace`.
        NormalizeHopfieldSpaceAffine: bool
        /// hflayers' `association_activation`, applied to the layer's output; None: no activation.
        AssociationActivation: AssociationActivation option
        /// The output projection W_O.
        OutProjection: bool
        /// Dropout on the association matrix, in training.
        Dropout: float
        /// The partial-forgetting unit on the scores.
        Unit: ForgettingUnit
    }

    /// hflayers' defaults: one head, LayerNorm (affine) on stored, state and projected patterns, Q, K, V
    /// and output projections with bias (initialised N(0, 0.02), biases 0), β = 1/√hidden, one step,
    /// no dropout; no unit.
    static member Default =
        { Heads = 1
          HiddenSize = None
          PatternSize = None
          OutputSize = None
          Scaling = None
          UpdateSteps = 1
          UpdateStepsEps = None
          HeadScaling = []
          NormalizeStored = true
          NormalizeState = true
          NormalizeProjection = true
          NormalizeAffine = true
          StoredAsStatic = false
          StateAsStatic = false
          ProjectionAsStatic = false
          Bias = true
          AddBiasKv = false
          AddZeroAssociation = false
          NormalizeHopfieldSpace = false
          NormalizeHopfieldSpaceAffine = false
          AssociationActivation = None
          OutProjection = true
          Dropout = 0.0
          Unit = NoUnit }

    /// Plain retrieval ξ_new = X softmax(β Xᵀ ξ): one head, no normalisation, no projection.
    static member Plain(beta: float) =
        { HopfieldSettings.Default with
            Scaling = Some beta
            NormalizeStored = false
            NormalizeState = false
            NormalizeProjection = false
            StoredAsStatic = true
            StateAsStatic = true
            ProjectionAsStatic = true
            OutProjection = false }

/// The sizes a Hopfield layer is built for: features of the state patterns, of the stored patterns and
/// of the pattern projection (the values' input).
type HopfieldSizes =
    { State: int
      Stored: int
      Projection: int }

/// The functions and layers of LwPF.
[<RequireQualifiedAccess>]
module PartialForgetting =

    /// The tag of a layer's association matrix A in the trace ([B, H, Q, K]).
    [<Literal>]
    let AssociationTag = "hopfield/association"

    let private fail (what: string) = invalidArg "hopfield" what

    // ------------------------------------------------------------------ the units

    /// D(s) and, unless D is the identity, its indicator D'(s) (a constant 0/1 tensor of s's shape).
    /// `among` marks the scores that take part (the unmasked ones, of s's shape): the PFU's median is
    /// taken over them only. `rng` draws the PFU's ε when `training`.
    let forget (unit: ForgettingUnit) (training: bool) (rng: Rng) (among: Tensor option) (s: Tensor) =
        match unit with
        | NoUnit -> s, None
        | ReluUnit -> Tensor.relu s, Some(Tensor.greater s (Tensor.scalar s.DType 0.0))
        | Pfu p ->
            let threshold =
                match p.Threshold with
                | Median scope ->
                    if s.Rank <> 4 then
                        fail $"the PFU's median scope needs scores [B, H, Q, K], got {Shape.show s.Shape}"

                    Tensor.medianFrom scope.FromAxis true among s
                | Fixed a -> Tensor.scalar s.DType a

            let eps =
                if training && p.Sigma <> 0.0 then
                    (Rng.normal 1 rng)[0] * p.Sigma * p.Sigma
                else
                    0.0

            let a = threshold + eps
            let a = if p.Detach then Tensor.stopGradient a else a
            let keep = Tensor.greater s a

            let below =
                match p.Below with
                | None -> a
                | Some b -> Tensor.scalar s.DType b

            Tensor.where keep s below, Some keep

    // ------------------------------------------------------------------ masks

    /// A key-padding mask from the number of valid keys per sample: [B, 1, 1, K], 1 where key k < length.
    let paddingMask (dtype: DType) (keys: int) (lengths: int[]) =
        lengths
        |> Array.iter (fun l ->
            if l < 1 || l > keys then
                fail $"a sample with {l} valid keys of {keys}: need 1 … {keys}")

        Tensor.create
            dtype
            [| lengths.Length; 1; 1; keys |]
            [| for l in lengths do
                   for k in 0 .. keys - 1 -> if k < l then 1.0 else 0.0 |]

    /// A causal mask [1, 1, Q, K]: query i attends keys 0 … i (+ K − Q, when there are more keys).
    let causalMask (dtype: DType) (queries: int) (keys: int) =
        Tensor.create
            dtype
            [| 1; 1; queries; keys |]
            [| for i in 0 .. queries - 1 do
                   for k in 0 .. keys - 1 -> if k <= i + keys - queries then 1.0 else 0.0 |]

    // ------------------------------------------------------------------ association

    /// Modern Hopfield association with partial forgetting, on head-split patterns: states ξ = q
    /// [B, H, Q, D], keys k [B, H, K, D], values v [B, H, K, Dv]. Each step t = 1 … steps computes
    /// s = β ξ kᵀ, then D(s) and D'(s), masks D(s) (−∞ where `mask`, a constant 0/1 tensor broadcasting
    /// to [B, H, Q, K], is 0: after D, so that no unit lets a masked key back into the denominator, unlike
    /// the reference, which applies D after the mask), p = softmax(D(s)) over the keys, and, before the
    /// last step, the next state ξ = p k (hflayers' update). As the reference, every step applies D but
    /// the next step gets the unmasked p: only the last step's D' reaches the output,
    /// A = D'(s) ⊙ dropout(p), out = A v; no renormalisation (mechanisms.md §5).
    ///
    /// With `eps` = Some ε, hflayers' early stop (`update_steps_eps`, functional.py's stopping criterion):
    /// after each step t ≥ 1 a head stays active only while max over the batch of ‖p_t − p_(t−1)‖_F (over
    /// queries × keys) exceeds ε; a head that stops keeps its state, scores, p and D' from then on (the
    /// reference no longer updates them), and the loop ends when no head is active or after `steps`
    /// steps. None: every head runs all `steps` steps.
    ///
    /// `betas`: one β for every head, or one per head (hflayers' `scaling` as a tensor of one entry per
    /// head), s = β_h ξ kᵀ in head h.
    let associateWith
        (eps: float option)
        (betas: float[])
        (steps: int)
        (unit: ForgettingUnit)
        (dropout: float)
        (mask: Tensor option)
        (mode: Mode)
        (q: Tensor)
        (k: Tensor)
        (v: Tensor)
        =
        for beta in betas do
            if not (beta > 0.0) || Double.IsInfinity beta then
                fail $"β must be a finite number > 0, got {beta}"

        if steps < 1 then
            fail $"a Hopfield association needs at least one update step, got {steps}"

        match eps with
        | Some e when not (e > 0.0) || Double.IsInfinity e ->
            fail $"the update-step threshold ε must be a finite number > 0, got {e}"
        | _ -> ()

        if not (dropout >= 0.0 && dropout < 1.0) then
            fail $"the association dropout must lie in [0, 1), got {dropout}"

        if q.Rank <> 4 || k.Rank <> 4 || v.Rank <> 4 then
            fail
                $"association needs q [B, H, Q, D], k [B, H, K, D], v [B, H, K, Dv], got {Shape.show q.Shape}, {Shape.show k.Shape}, {Shape.show v.Shape}"

        let sq, sk, sv = q.Shape, k.Shape, v.Shape

        if betas.Length <> 1 && betas.Length <> sq[1] then
            fail $"{betas.Length} values of β for {sq[1]} heads: give one, or one per head"

        if sq[0] <> sk[0] || sq[1] <> sk[1] || sq[3] <> sk[3] then
            fail
                $"state patterns {Shape.show sq} and stored patterns {Shape.show sk} differ in batch, heads or pattern dimension"

        if sv[0] <> sk[0] || sv[1] <> sk[1] || sv[2] <> sk[2] then
            fail $"values {Shape.show sv} do not match the stored patterns {Shape.show sk}"

        let scoreShape = [| sq[0]; sq[1]; sq[2]; sk[2] |]

        let among =
            mask
            |> Option.map (fun m ->
                if Shape.broadcast "hopfield mask" m.Shape scoreShape <> scoreShape then
                    fail
                        $"a mask of shape {Shape.show m.Shape} does not broadcast to the scores {Shape.show scoreShape}"

                Tensor.broadcastTo scoreShape (Tensor.stopGradient m))

        let keys = Rng.splitN (steps + 1) mode.Rng
        let minusInf = Tensor.scalar q.DType Double.NegativeInfinity

        let heads = sq[1]

        // One β: the product with a number; one per head: with a [1, H, 1, 1] constant.
        let scale =
            if betas.Length = 1 then
                None
            else
                Some(Tensor.ofFloat64 [| 1; heads; 1; 1 |] betas |> Tensor.cast q.DType)

        // Per head, 1 while it updates, 0 once it has stopped, as [1, H, 1, 1] (broadcast by where).
        let headMask (active: bool[]) =
            Tensor.ofFloat64 [| 1; heads; 1; 1 |] (active |> Array.map (fun a -> if a then 1.0 else 0.0))
            |> Tensor.cast q.DType

        // The stopped heads' values kept from before: where(active, now, before).
        let merge (keep: Tensor) (now: Tensor) (before: Tensor) = Tensor.where keep now before

        let rec step (t: int) (xi: Tensor) (previous: (Tensor * Tensor * Tensor option * bool[]) option) =
            let s =
                match scale with
                | None -> Tensor.matmulTransposed xi k * betas[0]
                | Some b -> Tensor.matmulTransposed xi k * b

            let d, indicator = forget unit mode.Training keys[t] among s

            let d =
                match among with
                | Some m -> Tensor.where m d minusInf
                | None -> d

            let p = Tensor.softmax -1 d

            let s, p, indicator, active =
                match previous, eps with
                | Some(s0, p0, ind0, active0), Some e ->
                    let keep = headMask active0
                    let p = merge keep p p0

                    // max over the batch of ‖p_t − p_(t−1)‖_F per head, on the values (no gradient).
                    let change =
                        Tensor.sumAxis -1 false (Tensor.sumAxis -1 false (Tensor.square (Tensor.stopGradient (p - p0))))
                        |> Tensor.sqrt
                        |> Tensor.maxAxis 0 false

                    let change = change.ToFloat64Array()

                    merge keep s s0,
                    p,
                    Option.map2 (merge keep) indicator ind0,
                    Array.init heads (fun h -> active0[h] && change[h] > e)
                | _ -> s, p, indicator, Array.create heads true

            if t < steps - 1 && Array.exists id active then
                let next = Tensor.matmul p k

                let next =
                    if Array.forall id active then
                        next
                    else
                        merge (headMask active) next xi

                step (t + 1) next (Some(s, p, indicator, active))
            else
                s, p, indicator

        let s, p, indicator = step 0 q None

        let forgetting (x: Tensor) =
            match indicator with
            | Some ind -> x * ind
            | None -> x

        let dropped =
            if mode.Training && dropout > 0.0 then
                Functional.dropout keys[steps] dropout p
            else
                p

        { Output = Tensor.matmul (forgetting dropped) v
          Weights = forgetting p
          Scores = s }

    /// associateWith one β for every head.
    let associateUntil
        (eps: float option)
        (beta: float)
        (steps: int)
        (unit: ForgettingUnit)
        (dropout: float)
        (mask: Tensor option)
        (mode: Mode)
        (q: Tensor)
        (k: Tensor)
        (v: Tensor)
        =
        associateWith eps [| beta |] steps unit dropout mask mode q k v

    /// associateUntil without the early stop: every step runs.
    let associate
        (beta: float)
        (steps: int)
        (unit: ForgettingUnit)
        (dropout: float)
        (mask: Tensor option)
        (mode: Mode)
        (q: Tensor)
        (k: Tensor)
        (v: Tensor)
        =
        associateUntil None beta steps unit dropout mask mode q k v

    /// The attention mass a unit forgot per query: 1 − Σ_k A, [B, H, Q] (0 without a unit).
    let forgottenMass (weights: Tensor) = 1.0 - Tensor.sumAxis -1 false weights

    /// Pure retrieval ξ_new = X softmax(β Xᵀ ξ) (Ramsauer et al. 2021, the update rule of the modern
    /// Hopfield network; mechanisms.md §5), written with patterns as rows: stored X [N, d] or [B, N, d],
    /// states ξ [Q, d] or [B, Q, d]; `steps` updates; the result has the states' shape. With a unit:
    /// ξ_new = X (D'(s) ⊙ softmax(D(s))), s = β Xᵀ ξ.
    let retrieve (beta: float) (steps: int) (unit: ForgettingUnit) (mode: Mode) (stored: Tensor) (state: Tensor) =
        let batched (name: string) (t: Tensor) =
            match t.Rank with
            | 2 -> Tensor.reshape [| 1; 1; t.Shape[0]; t.Shape[1] |] t
            | 3 -> Tensor.reshape [| t.Shape[0]; 1; t.Shape[1]; t.Shape[2] |] t
            | _ -> fail $"retrieve needs {name} patterns [N, d] or [B, N, d], got {Shape.show t.Shape}"

        if stored.Rank <> state.Rank then
            fail $"stored patterns {Shape.show stored.Shape} and states {Shape.show state.Shape} differ in rank"

        let x = batched "stored" stored
        let xi = batched "state" state

        if x.Shape[3] <> xi.Shape[3] then
            fail $"stored patterns have dimension {x.Shape[3]}, states {xi.Shape[3]}"

        let r = associate beta steps unit 0.0 None mode xi x x
        Tensor.reshape state.Shape r.Output

    // ------------------------------------------------------------------ layers

    /// The resolved dimensions of a Hopfield layer.
    type private Dims =
        { Hidden: int
          Pattern: int
          Output: int
          Beta: float }

    let private dimsOf (s: HopfieldSettings) (sizes: HopfieldSizes) =
        if s.Heads < 1 then
            fail $"a Hopfield layer needs at least one head, got {s.Heads}"

        if sizes.State < 1 || sizes.Stored < 1 || sizes.Projection < 1 then
            fail
                $"pattern sizes must be positive, got state {sizes.State}, stored {sizes.Stored}, projection {sizes.Projection}"

        let hidden =
            match s.HiddenSize with
            | Some h when h < 1 -> fail $"the hidden size must be positive, got {h}"
            | Some h -> h
            | None when s.StateAsStatic -> sizes.State
            | None when s.StoredAsStatic -> sizes.Stored
            | None ->
                if sizes.State % s.Heads <> 0 then
                    fail $"the state size {sizes.State} is not divisible by {s.Heads} heads: give a hidden size"

                sizes.State / s.Heads

        if s.StateAsStatic && sizes.State <> hidden then
            fail $"unprojected state patterns of size {sizes.State} need hidden size {sizes.State}, got {hidden}"

        if s.StoredAsStatic && sizes.Stored <> hidden then
            fail $"unprojected stored patterns of size {sizes.Stored} need hidden size {sizes.Stored}, got {hidden}"

        let pattern =
            match s.PatternSize with
            | Some d when d < 1 -> fail $"the pattern size must be positive, got {d}"
            | Some d -> d
            | None when s.ProjectionAsStatic -> sizes.Projection
            | None -> hidden

        if s.ProjectionAsStatic && sizes.Projection <> pattern then
            fail
                $"an unprojected pattern projection of size {sizes.Projection} needs pattern size {sizes.Projection}, got {pattern}"

        if s.NormalizeHopfieldSpaceAffine && not s.NormalizeHopfieldSpace then
            fail "an affine normalisation of the Hopfield space needs the normalisation itself (NormalizeHopfieldSpace)"

        // hflayers' static execution (β = 1 by default) also needs the Hopfield space unnormalised.
        let allStatic =
            s.StateAsStatic
            && s.StoredAsStatic
            && s.ProjectionAsStatic
            && not s.OutProjection
            && not s.NormalizeHopfieldSpace

        let beta =
            match s.Scaling with
            | Some b when not (b > 0.0) || Double.IsInfinity b -> fail $"β must be a finite number > 0, got {b}"
            | Some b -> b
            | None -> if allStatic then 1.0 else 1.0 / sqrt (float hidden)

        if not s.HeadScaling.IsEmpty && s.HeadScaling.Length <> s.Heads then
            fail $"{s.HeadScaling.Length} values of β for {s.Heads} heads: give one per head"

        for b in s.HeadScaling do
            if not (b > 0.0) || Double.IsInfinity b then
                fail $"β must be a finite number > 0, got {b}"

        if s.UpdateSteps < 1 then
            fail $"a Hopfield layer needs at least one update step, got {s.UpdateSteps}"

        if not (s.Dropout >= 0.0 && s.Dropout < 1.0) then
            fail $"the association dropout must lie in [0, 1), got {s.Dropout}"

        { Hidden = hidden
          Pattern = pattern
          Output = s.OutputSize |> Option.defaultValue sizes.State
          Beta = beta }

    /// hflayers' initialisation: projection weights N(0, 0.02), biases 0, LayerNorm γ = 1, β = 0.
    let private initOf (s: HopfieldSettings) (sizes: HopfieldSizes) (d: Dims) (rng: Rng) (dtype: DType) =
        let keys = Rng.splitN 4 rng

        let projection (key: Rng) (inputs: int) (outputs: int) =
            Params.ofTensors
                [ yield "weight", Tensor.normal key dtype [| inputs; outputs |] 0.0 0.02
                  if s.Bias then
                      yield "bias", Tensor.zeros dtype [| outputs |] ]

        let norm (size: int) =
            Params.ofTensors [ "gamma", Tensor.ones dtype [| size |]; "beta", Tensor.zeros dtype [| size |] ]

        let h = s.Heads

        Params.ofList
            [ if s.NormalizeStored && s.NormalizeAffine then
                  yield "norm_stored", norm sizes.Stored
              if s.NormalizeState && s.NormalizeAffine then
                  yield "norm_state", norm sizes.State
              if s.NormalizeProjection && s.NormalizeAffine then
                  yield "norm_projection", norm sizes.Projection
              if s.NormalizeHopfieldSpaceAffine then
                  yield "norm_hopfield", norm d.Hidden
              if not s.StateAsStatic then
                  yield "q", projection keys[0] sizes.State (h * d.Hidden)
              if not s.StoredAsStatic then
                  yield "k", projection keys[1] sizes.Stored (h * d.Hidden)
              if not s.ProjectionAsStatic then
                  yield "v", projection keys[2] sizes.Projection (h * d.Pattern)
              if s.OutProjection then
                  yield "out", projection keys[3] (h * d.Pattern) d.Output
              if s.AddBiasKv then
                  // Keys derived from the output projection's, which stays as it was.
                  let kk, kv = Rng.split (snd (Rng.split keys[3]))
                  let sizeK, sizeV = h * d.Hidden, h * d.Pattern
                  yield "bias_k", Leaf(Tensor.normal kk dtype [| sizeK |] 0.0 (1.0 / sqrt (float sizeK)))
                  yield "bias_v", Leaf(Tensor.normal kv dtype [| sizeV |] 0.0 (1.0 / sqrt (float sizeV))) ]

    /// x [B, N, in] × w [in, out] as one [B·N, in] × [in, out] product (the engine's 2-D GEMM, faster
    /// than its batch-of-matrices path against a shared matrix), reshaped back to [B, N, out].
    let tokenwise (x: Tensor) (w: Tensor) =
        let b, n = x.Shape[0], x.Shape[1]

        Tensor.matmul (Tensor.reshape [| b * n; x.Shape[2] |] x) w
        |> Tensor.reshape [| b; n; w.Shape[1] |]

    let private checkPatterns (what: string) (size: int) (t: Tensor) =
        if t.Rank <> 3 then
            fail $"{what} patterns must be [batch, count, features], got {Shape.show t.Shape}"

        if t.Shape[2] <> size then
            fail $"{what} patterns have {t.Shape[2]} features, the layer expects {size}"

    /// The core of every layer: state R [B, Q, dR], stored Y [B, K, dY], projection P [B, K, dP] →
    /// [B, Q, out] (or [B, Q, H·pattern] without an output projection), with the association matrix in the
    /// trace. Z = softmax(β (R W_Q)(Y W_K)ᵀ) (P W_V) W_O per head with the optional LayerNorms before
    /// (mechanisms.md §5; hflayers' `Hopfield` with separate projections). In the reference's order: the
    /// patterns' LayerNorms, the projections, the Hopfield space's LayerNorm of queries and keys, the bias
    /// pattern, the zero association, the association, the output projection, the activation.
    let private core (s: HopfieldSettings) (sizes: HopfieldSizes) =
        let d = dimsOf s sizes
        let h = s.Heads

        let forward
            (mode: Mode)
            (p: Params)
            (mask: Tensor option)
            (state: Tensor)
            (stored: Tensor)
            (projection: Tensor)
            =
            checkPatterns "state" sizes.State state
            checkPatterns "stored" sizes.Stored stored
            checkPatterns "projected" sizes.Projection projection

            if stored.Shape[0] <> state.Shape[0] || projection.Shape[0] <> state.Shape[0] then
                fail
                    $"state {Shape.show state.Shape}, stored {Shape.show stored.Shape} and projected {Shape.show projection.Shape} patterns differ in batch size"

            if projection.Shape[1] <> stored.Shape[1] then
                fail $"{stored.Shape[1]} stored patterns but {projection.Shape[1]} projected ones"

            let normalize (on: bool) (name: string) (x: Tensor) =
                if not on then
                    x
                elif s.NormalizeAffine then
                    let n = Params.get name p
                    Functional.layerNorm 1e-5 (Params.tensor "gamma" n) (Params.tensor "beta" n) x
                else
                    let size = x.Shape[2]
                    Functional.layerNorm 1e-5 (Tensor.ones x.DType [| size |]) (Tensor.zeros x.DType [| size |]) x

            let project (isStatic: bool) (name: string) (width: int) (x: Tensor) =
                let b, n = x.Shape[0], x.Shape[1]

                if isStatic then
                    // The same unprojected patterns in every head.
                    Tensor.reshape [| b; 1; n; width |] x |> Tensor.broadcastTo [| b; h; n; width |]
                else
                    let w = Params.get name p
                    let y = tokenwise x (Params.tensor "weight" w)
                    let y = if s.Bias then y + Params.tensor "bias" w else y
                    y |> Tensor.reshape [| b; n; h; width |] |> Tensor.permute [| 0; 2; 1; 3 |]

            let r = normalize s.NormalizeState "norm_state" state
            let y = normalize s.NormalizeStored "norm_stored" stored
            let pp = normalize s.NormalizeProjection "norm_projection" projection
            let q = project s.StateAsStatic "q" d.Hidden r
            let k = project s.StoredAsStatic "k" d.Hidden y
            let v = project s.ProjectionAsStatic "v" d.Pattern pp

            // normalize_hopfield_space: each head's query and key rows over the hidden axis, before the
            // bias pattern and the zero association join the keys (the reference's order).
            let q, k =
                if not s.NormalizeHopfieldSpace then
                    q, k
                else
                    let gamma, beta =
                        if s.NormalizeHopfieldSpaceAffine then
                            let n = Params.get "norm_hopfield" p
                            Params.tensor "gamma" n, Params.tensor "beta" n
                        else
                            Tensor.ones q.DType [| d.Hidden |], Tensor.zeros q.DType [| d.Hidden |]

                    Functional.layerNorm 1e-5 gamma beta q, Functional.layerNorm 1e-5 gamma beta k

            // A mask for one more key, kept: a column of ones (a mask broadcast over the keys stays).
            let keepOneMore (m: Tensor) =
                let ms = m.Shape

                if ms.Length = 0 || ms[ms.Length - 1] = 1 then
                    m
                else
                    let column = Array.copy ms
                    column[ms.Length - 1] <- 1
                    Tensor.concat (ms.Length - 1) [ m; Tensor.ones m.DType column ]

            // add_bias_kv: one more key and value per head, never masked.
            let k, v, mask =
                if s.AddBiasKv then
                    let b = k.Shape[0]

                    let bias (name: string) (width: int) =
                        Params.tensor name p
                        |> Tensor.reshape [| 1; h; 1; width |]
                        |> Tensor.broadcastTo [| b; h; 1; width |]

                    Tensor.concat 2 [ k; bias "bias_k" d.Hidden ],
                    Tensor.concat 2 [ v; bias "bias_v" d.Pattern ],
                    Option.map keepOneMore mask
                else
                    k, v, mask

            // add_zero_association: one more key and value per head, zero, never masked (the reference
            // pads its masks with a kept column).
            let k, v, mask =
                if s.AddZeroAssociation then
                    let zero (t: Tensor) =
                        Tensor.zeros t.DType [| t.Shape[0]; h; 1; t.Shape[3] |]

                    Tensor.concat 2 [ k; zero k ], Tensor.concat 2 [ v; zero v ], Option.map keepOneMore mask
                else
                    k, v, mask

            let a =
                associateWith
                    s.UpdateStepsEps
                    (if s.HeadScaling.IsEmpty then
                         [| d.Beta |]
                     else
                         Array.ofList s.HeadScaling)
                    s.UpdateSteps
                    s.Unit
                    s.Dropout
                    mask
                    mode
                    q
                    k
                    v

            let b, nq = state.Shape[0], state.Shape[1]

            let z =
                a.Output
                |> Tensor.permute [| 0; 2; 1; 3 |]
                |> Tensor.reshape [| b; nq; h * d.Pattern |]

            let z =
                if s.OutProjection then
                    let o = Params.get "out" p
                    let z = tokenwise z (Params.tensor "weight" o)
                    if s.Bias then z + Params.tensor "bias" o else z
                else
                    z

            let z =
                match s.AssociationActivation with
                | Some act -> act.Apply z
                | None -> z

            z,
            [ { Path = ""
                Kind = Tagged AssociationTag
                Value = a.Weights } ]

        d, initOf s sizes d, forward

    let private unitName (s: HopfieldSettings) =
        match s.Unit with
        | NoUnit -> ""
        | u -> $" + {u.Name}"

    /// Hopfield: state patterns R [B, Q, state] against stored patterns Y [B, K, stored], which also
    /// give the values (hflayers' `Hopfield` called with stored = projection). `mask` (a constant 0/1
    /// tensor broadcasting to [B, H, Q, K]) hides keys: padding, causal.
    let hopfieldMasked (s: HopfieldSettings) (stateSize: int) (storedSize: int) (mask: Tensor option) : Layer2 =
        let _, init, forward =
            core
                s
                { State = stateSize
                  Stored = storedSize
                  Projection = storedSize }

        { Layer2.Name = $"hopfield {stateSize}×{storedSize}{unitName s}"
          Init = init
          Forward = fun mode p state stored -> forward mode p mask state stored stored }

    /// Hopfield without a mask.
    let hopfield (s: HopfieldSettings) (stateSize: int) (storedSize: int) =
        hopfieldMasked s stateSize storedSize None

    /// Multi-head attention (scaled dot product, β = 1/√head): Q, K, V and output projections with bias,
    /// no normalisation; queries [B, Q, width] against keys and values [B, K, width]. `Layer2.self` makes
    /// it self-attention.
    let attention (heads: int) (width: int) (unit: ForgettingUnit) (dropout: float) (mask: Tensor option) =
        let s =
            { HopfieldSettings.Default with
                Heads = heads
                NormalizeStored = false
                NormalizeState = false
                NormalizeProjection = false
                Dropout = dropout
                Unit = unit }

        hopfieldMasked s width width mask

    /// The core's parameters and, under each name, learned patterns [quantity, size] drawn N(0, 0.02)
    /// (hflayers' initialisation of pooling, lookup and target weights).
    let private withLearned (names: string list) (quantity: int) (size: int) init (rng: Rng) (dtype: DType) =
        let keys = Rng.splitN (names.Length + 1) rng

        match init keys[0] dtype with
        | Branch children ->
            names
            |> List.indexed
            |> List.fold
                (fun (acc: Map<string, Params>) (i, name) ->
                    acc.Add(name, Leaf(Tensor.normal keys[i + 1] dtype [| quantity; size |] 0.0 0.02)))
                children
            |> Branch
        | Leaf _ -> fail "unreachable: a Hopfield core's parameters are a tree"

    /// Learned patterns [quantity, size] broadcast over a batch of b: [b, quantity, size].
    let private expanded (name: string) (b: int) (p: Params) =
        let t = Params.tensor name p

        Tensor.reshape (Array.append [| 1 |] t.Shape) t
        |> Tensor.broadcastTo (Array.append [| b |] t.Shape)

    /// HopfieldPooling: `quantity` learned state patterns (parameter "pooling" [quantity, input],
    /// N(0, 0.02)) look up a bag [B, K, input] (stored patterns and values), output flattened
    /// [B, quantity · out]. Invariant to permuting a bag's instances (in evaluation; dropout draws per
    /// position).
    let pooling (s: HopfieldSettings) (inputSize: int) (quantity: int) : Layer =
        if quantity < 1 then
            fail $"pooling needs at least one state pattern, got {quantity}"

        let _, init, forward =
            core
                s
                { State = inputSize
                  Stored = inputSize
                  Projection = inputSize }

        { Layer.Name = $"hopfield pooling {inputSize}, {quantity} state patterns{unitName s}"
          Init = withLearned [ "pooling" ] quantity inputSize init
          Forward =
            fun mode p bag ->
                checkPatterns "stored" inputSize bag
                let z, trace = forward mode p None (expanded "pooling" bag.Shape[0] p) bag bag
                Tensor.flatten z, trace }

    /// HopfieldLayer: the input [B, Q, input] is the state; `quantity` learned stored patterns
    /// ("lookup" [quantity, input], N(0, 0.02)) serve as keys and, unless `separateTargets`, as values
    /// too (else learned "targets" [quantity, input]). Output [B, Q, out].
    let lookup (s: HopfieldSettings) (inputSize: int) (quantity: int) (separateTargets: bool) : Layer =
        if quantity < 1 then
            fail $"a lookup layer needs at least one stored pattern, got {quantity}"

        let _, init, forward =
            core
                s
                { State = inputSize
                  Stored = inputSize
                  Projection = inputSize }

        let names =
            if separateTargets then
                [ "lookup"; "targets" ]
            else
                [ "lookup" ]

        { Layer.Name = $"hopfield lookup {inputSize}, {quantity} stored patterns{unitName s}"
          Init = withLearned names quantity inputSize init
          Forward =
            fun mode p x ->
                checkPatterns "state" inputSize x
                let stored = expanded "lookup" x.Shape[0] p

                let targets =
                    if separateTargets then
                        expanded "targets" x.Shape[0] p
                    else
                        stored

                forward mode p None x stored targets }
