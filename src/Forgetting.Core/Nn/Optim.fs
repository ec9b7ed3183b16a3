namespace Forgetting.Nn

open Forgetting.Tensors

/// An optimizer's state: per-parameter buffers (momentum, Adam's moments) and the step count.
type OptimizerState = { Step: int; Buffers: Params list }

/// A pure optimizer: `Update state params grads` gives the new parameters and state; nothing mutates.
type Optimizer =
    { Name: string
      Init: Params -> OptimizerState
      Update: OptimizerState -> Params -> Params -> Params * OptimizerState }

[<RequireQualifiedAccess>]
module Optim =

    let private zerosLike (p: Params) = Params.map Tensor.zerosLike p

    /// Stochastic gradient descent with optional momentum (PyTorch's form: v ← μv + g, step lr·v),
    /// Nesterov momentum, and L2 weight decay added to the gradient.
    let sgdWith (lr: float) (momentum: float) (nesterov: bool) (weightDecay: float) : Optimizer =
        if lr <= 0.0 || momentum < 0.0 || weightDecay < 0.0 then
            invalidArg
                (nameof lr)
                $"sgd: needs lr > 0, momentum >= 0, weight decay >= 0; got {lr}, {momentum}, {weightDecay}"

        let decayed (p: Params) (g: Params) =
            if weightDecay = 0.0 then
                g
            else
                Params.map2 (fun g w -> Tensor.addScaled g weightDecay w) g p

        { Name = "sgd"
          Init =
            fun p ->
                { Step = 0
                  Buffers = (if momentum = 0.0 then [] else [ zerosLike p ]) }
          Update =
            fun state p g ->
                let g = decayed p g

                match state.Buffers with
                | [] -> Params.map2 (fun w g -> Tensor.addScaled w -lr g) p g, { state with Step = state.Step + 1 }
                | v :: _ ->
                    let v' = Params.map2 (fun v g -> Tensor.addScaled g momentum v) v g

                    let direction =
                        if nesterov then
                            Params.map2 (fun g v -> g + v * momentum) g v'
                        else
                            v'

                    Params.map2 (fun w d -> Tensor.addScaled w -lr d) p direction,
                    { Step = state.Step + 1
                      Buffers = [ v' ] } }

    /// Plain SGD.
    let sgd (lr: float) = sgdWith lr 0.0 false 0.0

    /// Adam with bias correction; `l2` is weight decay added to the gradient (Adam's own), `decoupled`
    /// weight decay shrinks the parameters before the step (AdamW).
    let private adamCore
        (name: string)
        (lr: float)
        (beta1: float)
        (beta2: float)
        (eps: float)
        (l2: float)
        (decoupled: float)
        =
        if
            lr <= 0.0
            || beta1 < 0.0
            || beta1 >= 1.0
            || beta2 < 0.0
            || beta2 >= 1.0
            || eps <= 0.0
            || l2 < 0.0
            || decoupled < 0.0
        then
            invalidArg
                (nameof lr)
                $"{name}: needs lr > 0, betas in [0, 1), eps > 0, weight decay ≥ 0; got {lr}, {beta1}, {beta2}, {eps}, {max l2 decoupled}"

        { Name = name
          Init =
            fun p ->
                { Step = 0
                  Buffers = [ zerosLike p; zerosLike p ] }
          Update =
            fun state p g ->
                let g =
                    if l2 = 0.0 then
                        g
                    else
                        Params.map2 (fun g w -> Tensor.addScaled g l2 w) g p

                match state.Buffers with
                | [ m; v ] ->
                    let t = state.Step + 1
                    let m' = Params.map2 (fun m g -> m * beta1 + g * (1.0 - beta1)) m g
                    let v' = Params.map2 (fun v g -> v * beta2 + Tensor.square g * (1.0 - beta2)) v g
                    let c1, c2 = 1.0 - beta1 ** float t, 1.0 - beta2 ** float t

                    let step = Params.map2 (fun m v -> m / c1 / (Tensor.sqrt (v / c2) + eps) * lr) m' v'

                    let p =
                        if decoupled = 0.0 then
                            p
                        else
                            Params.map (fun w -> w * (1.0 - lr * decoupled)) p

                    Params.map2 (-) p step, { Step = t; Buffers = [ m'; v' ] }
                | _ -> invalidArg "state" $"{name}: the state was not made by {name}'s Init" }

    /// Adam (Kingma & Ba) with bias correction and optional L2 weight decay added to the gradient.
    let adamWith (lr: float) (beta1: float) (beta2: float) (eps: float) (weightDecay: float) : Optimizer =
        adamCore "adam" lr beta1 beta2 eps weightDecay 0.0

    /// AdamW (Loshchilov & Hutter, ICLR 2019, Algorithm 2; torch.optim.AdamW): Adam on the raw gradient,
    /// the parameters shrunk by (1 − lr · weightDecay) before each step.
    let adamW (lr: float) (beta1: float) (beta2: float) (eps: float) (weightDecay: float) : Optimizer =
        adamCore "adamw" lr beta1 beta2 eps 0.0 weightDecay

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
