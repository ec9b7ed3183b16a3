namespace Forgetting.Nn

open Forgetting.Tensors

/// An optimizer's state: the step count and its named buffers, one tensor per buffer and parameter,
/// keyed "<buffer>/<parameter path>" ("m/fc1/weight", "momentum/out/bias"), so that a checkpoint can
/// store them by name and a parameter's rule finds its own.
type OptimizerState =
    { Step: int
      Buffers: Map<string, Tensor> }

/// How one parameter tensor is updated: the rule's name and hyper-parameters (as data, for records),
/// the buffers it keeps for that parameter, and the update itself. `Apply t w g buffers` is step t
/// (1, 2, …) of the parameter w with gradient g, giving the new w and its buffers.
type Rule =
    { Name: string
      Settings: (string * float) list
      Buffers: string list
      Apply: int -> Tensor -> Tensor -> Map<string, Tensor> -> Tensor * Map<string, Tensor> }

/// A pure optimizer: `Update state params grads` gives the new parameters and state; nothing mutates.
type Optimizer =
    { Name: string
      Init: Params -> OptimizerState
      Update: OptimizerState -> Params -> Params -> Params * OptimizerState }

[<RequireQualifiedAccess>]
module Rule =

    /// A parameter left as it is (a layer's running statistics, which it updates itself).
    let frozen =
        { Name = "frozen"
          Settings = []
          Buffers = []
          Apply = fun _ w _ buffers -> w, buffers }

    /// SGD with optional momentum (PyTorch's form: v ← μv + g, step lr·v), Nesterov momentum (step
    /// lr·(g + μv)), and L2 weight decay added to the gradient.
    let sgd (lr: float) (momentum: float) (nesterov: bool) (weightDecay: float) =
        if lr <= 0.0 || momentum < 0.0 || weightDecay < 0.0 then
            invalidArg
                (nameof lr)
                $"sgd: needs lr > 0, momentum >= 0, weight decay >= 0; got {lr}, {momentum}, {weightDecay}"

        if nesterov && momentum = 0.0 then
            invalidArg (nameof nesterov) "sgd: Nesterov momentum needs a momentum > 0"

        { Name = "sgd"
          Settings =
            [ "lr", lr
              "momentum", momentum
              "nesterov", (if nesterov then 1.0 else 0.0)
              "weight_decay", weightDecay ]
          Buffers = (if momentum = 0.0 then [] else [ "momentum" ])
          Apply =
            fun _ w g buffers ->
                let g =
                    if weightDecay = 0.0 then
                        g
                    else
                        Tensor.addScaled g weightDecay w

                if momentum = 0.0 then
                    Tensor.addScaled w -lr g, buffers
                else
                    let v = Tensor.addScaled g momentum buffers["momentum"]
                    let direction = if nesterov then g + v * momentum else v
                    Tensor.addScaled w -lr direction, Map.add "momentum" v buffers }

    /// Adam's moments after step t and its bias-corrected step, before any change to the step's size.
    let adamMoments (beta1: float) (beta2: float) (t: int) (g: Tensor) (buffers: Map<string, Tensor>) =
        let m = buffers["m"] * beta1 + g * (1.0 - beta1)
        let v = buffers["v"] * beta2 + Tensor.square g * (1.0 - beta2)
        m, v, 1.0 - beta1 ** float t, 1.0 - beta2 ** float t

    let internal checkAdam (name: string) (lr: float) (beta1: float) (beta2: float) (eps: float) (decay: float) =
        if
            lr <= 0.0
            || beta1 < 0.0
            || beta1 >= 1.0
            || beta2 < 0.0
            || beta2 >= 1.0
            || eps <= 0.0
            || decay < 0.0
        then
            invalidArg
                (nameof lr)
                $"{name}: needs lr > 0, betas in [0, 1), eps > 0, weight decay ≥ 0; got {lr}, {beta1}, {beta2}, {eps}, {decay}"

    /// Adam (Kingma & Ba, Algorithm 1) with bias correction; `l2` is weight decay added to the gradient
    /// (Adam's own), `decoupled` shrinks the parameter by (1 − lr·decoupled) before the step (AdamW).
    let private adamCore (name: string) (lr: float) (beta1: float) (beta2: float) (eps: float) l2 decoupled =
        checkAdam name lr beta1 beta2 eps (max l2 decoupled)

        { Name = name
          Settings =
            [ "lr", lr
              "beta1", beta1
              "beta2", beta2
              "eps", eps
              "weight_decay", max l2 decoupled ]
          Buffers = [ "m"; "v" ]
          Apply =
            fun t w g buffers ->
                let g = if l2 = 0.0 then g else Tensor.addScaled g l2 w
                let m, v, c1, c2 = adamMoments beta1 beta2 t g buffers
                let step = m / c1 / (Tensor.sqrt (v / c2) + eps) * lr
                let w = if decoupled = 0.0 then w else w * (1.0 - lr * decoupled)
                w - step, buffers |> Map.add "m" m |> Map.add "v" v }

    let adam (lr: float) (beta1: float) (beta2: float) (eps: float) (weightDecay: float) =
        adamCore "adam" lr beta1 beta2 eps weightDecay 0.0

    let adamW (lr: float) (beta1: float) (beta2: float) (eps: float) (weightDecay: float) =
        adamCore "adamw" lr beta1 beta2 eps 0.0 weightDecay

[<RequireQualifiedAccess>]
module Optim =

    let private key (buffer: string) (path: string) = buffer + "/" + path

    /// An optimizer from a rule per parameter, chosen by its path and tensor (so that a weight matrix and
    /// a bias can be treated differently). A running statistic (Params.isStatistic) is never trained:
    /// it gets Rule.frozen whatever `ruleFor` says.
    let ofRules (name: string) (ruleFor: string -> Tensor -> Rule) : Optimizer =
        let rule path w =
            if Params.isStatistic path then
                Rule.frozen
            else
                ruleFor path w

        { Name = name
          Init =
            fun p ->
                { Step = 0
                  Buffers =
                    Map
                        [ for path, w in Params.flatten p do
                              for b in (rule path w).Buffers -> key b path, Tensor.zerosLike w ] }
          Update =
            fun state p g ->
                let t = state.Step + 1
                let grads = Params.flatten g
                let mutable buffers = state.Buffers

                let updated =
                    List.map2
                        (fun (path, w) (gpath, grad) ->
                            if path <> gpath then
                                invalidArg "grads" "the gradient tree differs from the parameter tree"

                            let r = rule path w

                            let own =
                                Map
                                    [ for b in r.Buffers ->
                                          match state.Buffers.TryFind(key b path) with
                                          | Some v -> b, v
                                          | None ->
                                              invalidArg
                                                  "state"
                                                  $"{name}: no buffer '{key b path}': the state was not made by this optimizer's Init" ]

                            let w', own' = r.Apply t w grad own

                            for KeyValue(b, v) in own' do
                                buffers <- Map.add (key b path) v buffers

                            w')
                        (Params.flatten p)
                        grads

                Params.withTensors p (Array.ofList updated), { Step = t; Buffers = buffers } }

    /// One rule for every parameter.
    let uniform (rule: Rule) = ofRules rule.Name (fun _ _ -> rule)

    /// Stochastic gradient descent with optional momentum (PyTorch's form: v ← μv + g, step lr·v),
    /// Nesterov momentum, and L2 weight decay added to the gradient.
    let sgdWith (lr: float) (momentum: float) (nesterov: bool) (weightDecay: float) : Optimizer =
        uniform (Rule.sgd lr momentum nesterov weightDecay)

    /// Plain SGD.
    let sgd (lr: float) = sgdWith lr 0.0 false 0.0

    /// Adam (Kingma & Ba) with bias correction and optional L2 weight decay added to the gradient.
    let adamWith (lr: float) (beta1: float) (beta2: float) (eps: float) (weightDecay: float) : Optimizer =
        uniform (Rule.adam lr beta1 beta2 eps weightDecay)

    /// AdamW (Loshchilov & Hutter, ICLR 2019, Algorithm 2; torch.optim.AdamW): Adam on the raw gradient,
    /// the parameters shrunk by (1 − lr · weightDecay) before each step.
    let adamW (lr: float) (beta1: float) (beta2: float) (eps: float) (weightDecay: float) : Optimizer =
        uniform (Rule.adamW lr beta1 beta2 eps weightDecay)

    /// The optimizer on gradients rescaled to a global L2 norm of at most `maxNorm` (as PyTorch's
    /// clip_grad_norm_: the factor maxNorm / (‖g‖ + 1e-6) where it is below 1).
    let clipped (maxNorm: float) (optimizer: Optimizer) : Optimizer =
        if not (maxNorm > 0.0) then
            invalidArg (nameof maxNorm) $"the gradient-norm bound must be > 0, got {maxNorm}"

        { optimizer with
            Name = $"{optimizer.Name}, gradient norm ≤ {maxNorm}"
            Update =
                fun state p g ->
                    let norm =
                        Params.tensors g
                        |> Array.sumBy (fun t -> (Tensor.sum (Tensor.square t)).Item)
                        |> sqrt

                    let factor = maxNorm / (norm + 1e-6)

                    let g =
                        if factor < 1.0 then
                            Params.map (fun t -> t * factor) g
                        else
                            g

                    optimizer.Update state p g }

    let adam (lr: float) = adamWith lr 0.9 0.999 1e-8 0.0
