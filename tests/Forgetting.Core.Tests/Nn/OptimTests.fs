/// The optimizers against direct loops over their published update rules, in float64: SGD (momentum
/// in PyTorch's form, Nesterov, L2 decay), Adam (Kingma & Ba, Algorithm 1) and AdamW (Loshchilov &
/// Hutter, Algorithm 2); their named state; and running statistics left alone.
module Forgetting.Tests.Nn.OptimTests

open Expecto
open Forgetting.Tensors
open Forgetting.Nn

let private vec (xs: float[]) = Tensor.ofFloat64 [| xs.Length |] xs

let private tree (w: float[]) (m: float[]) =
    Forgetting.Training.Checkpoint.toParams [ "layer/weight", Tensor.ofFloat64 [| 2; 2 |] m; "layer/bias", vec w ]

/// `steps` updates of `optimizer` from p0 with the gradient `grad k p` at step k.
let private run (optimizer: Optimizer) (steps: int) (grad: int -> Params -> Params) (p0: Params) =
    let mutable p, s = p0, optimizer.Init p0

    for k in 1..steps do
        let p', s' = optimizer.Update s p (grad k p)
        p <- p'
        s <- s'

    p, s

let private values (p: Params) =
    Params.tensors p |> Array.collect (fun t -> t.ToFloat64Array())

/// A gradient that changes from step to step and with the parameters: g = sin(k + 3i) + 0.5 θ.
let private grad (k: int) (p: Params) =
    p
    |> Params.map (fun t ->
        let v = t.ToFloat64Array()
        Tensor.ofFloat64 t.Shape (v |> Array.mapi (fun i x -> sin (float k + 3.0 * float i) + 0.5 * x)))

let private gradAt (k: int) (i: int) (x: float) = sin (float k + 3.0 * float i) + 0.5 * x

let private close (tolerance: float) (got: float[]) (expected: float[]) (what: string) =
    Expect.equal got.Length expected.Length $"{what}: lengths"

    for i in 0 .. got.Length - 1 do
        Expect.isTrue
            (abs (got[i] - expected[i]) <= tolerance * (1.0 + abs expected[i]))
            $"{what}: element {i}: got {got[i]}, expected {expected[i]}"

let private p0 = tree [| 0.3; -0.7 |] [| 1.0; -2.0; 0.5; 0.0 |]

/// Each scalar parameter through `steps` steps of a per-element rule, as a direct loop.
let private loop (steps: int) (rule: int -> int -> float -> float -> float) =
    let flat = values p0
    // The gradient's index is the element's within its own tensor.
    let within = Params.tensors p0 |> Array.collect (fun t -> Array.init t.Numel id)

    flat
    |> Array.mapi (fun i x0 ->
        let mutable x = x0

        for k in 1..steps do
            x <- rule k i x (gradAt k within[i] x)

        x)

[<Tests>]
let tests =
    testList
        "optimizers"
        [ test "SGD with momentum, Nesterov and L2 decay follows PyTorch's update, element by element" {
              let lr, mu, wd = 0.1, 0.9, 0.01

              for nesterov in [ false; true ] do
                  let got, _ =
                      run (Optim.sgdWith lr mu nesterov wd) 5 grad p0 |> fun (p, s) -> values p, s

                  let velocity = Array.zeroCreate 6

                  let expected =
                      loop 5 (fun _ i x g ->
                          let g = g + wd * x
                          velocity[i] <- mu * velocity[i] + g
                          let d = if nesterov then g + mu * velocity[i] else velocity[i]
                          x - lr * d)

                  close 1e-14 got expected $"SGD, Nesterov {nesterov}"
          }

          test "plain SGD keeps no buffers and steps by −lr·g" {
              let p, s = run (Optim.sgd 0.5) 1 grad p0
              Expect.isEmpty s.Buffers "no momentum, no buffer"
              Expect.equal s.Step 1 "one step counted"
              close 1e-15 (values p) (loop 1 (fun _ _ x g -> x - 0.5 * g)) "one step"
          }

          test "Adam follows Kingma & Ba's Algorithm 1 with bias correction" {
              let lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
              let m, v = Array.zeroCreate 6, Array.zeroCreate 6

              let expected =
                  loop 7 (fun k i x g ->
                      m[i] <- b1 * m[i] + (1.0 - b1) * g
                      v[i] <- b2 * v[i] + (1.0 - b2) * g * g
                      let mhat = m[i] / (1.0 - b1 ** float k)
                      let vhat = v[i] / (1.0 - b2 ** float k)
                      x - lr * mhat / (sqrt vhat + eps))

              let p, _ = run (Optim.adamWith lr b1 b2 eps 0.0) 7 grad p0
              close 1e-12 (values p) expected "Adam after 7 steps"
          }

          test "AdamW shrinks the parameter by (1 − lr·wd) before Adam's step on the raw gradient" {
              let lr, b1, b2, eps, wd = 0.01, 0.9, 0.99, 1e-8, 0.1
              let m, v = Array.zeroCreate 6, Array.zeroCreate 6

              let expected =
                  loop 4 (fun k i x g ->
                      m[i] <- b1 * m[i] + (1.0 - b1) * g
                      v[i] <- b2 * v[i] + (1.0 - b2) * g * g
                      let mhat = m[i] / (1.0 - b1 ** float k)
                      let vhat = v[i] / (1.0 - b2 ** float k)
                      x * (1.0 - lr * wd) - lr * mhat / (sqrt vhat + eps))

              let p, _ = run (Optim.adamW lr b1 b2 eps wd) 4 grad p0
              close 1e-12 (values p) expected "AdamW after 4 steps"
          }

          test "the state names every buffer by rule and parameter" {
              let _, s = run (Optim.adam 0.01) 2 grad p0

              Expect.equal
                  (s.Buffers |> Map.toList |> List.map fst)
                  [ "m/layer/bias"; "m/layer/weight"; "v/layer/bias"; "v/layer/weight" ]
                  "Adam's m and v per parameter"

              Expect.equal s.Step 2 "two steps"
              Expect.equal s.Buffers["m/layer/weight"].Shape [| 2; 2 |] "a buffer has its parameter's shape"
          }

          test "per-parameter rules: each parameter follows the rule chosen for its path" {
              let optimizer =
                  Optim.ofRules "mixed" (fun path _ ->
                      if path.EndsWith "weight" then
                          Rule.sgd 0.1 0.0 false 0.0
                      else
                          Rule.adam 0.01 0.9 0.999 1e-8 0.0)

              let p, s = run optimizer 3 grad p0
              let sgdOnly, _ = run (Optim.sgd 0.1) 3 grad p0
              let adamOnly, _ = run (Optim.adam 0.01) 3 grad p0

              Expect.equal
                  ((Params.tensor "layer/weight" p).ToFloat64Array())
                  ((Params.tensor "layer/weight" sgdOnly).ToFloat64Array())
                  "the weight as under SGD"

              Expect.equal
                  ((Params.tensor "layer/bias" p).ToFloat64Array())
                  ((Params.tensor "layer/bias" adamOnly).ToFloat64Array())
                  "the bias as under Adam"

              Expect.equal
                  (s.Buffers |> Map.toList |> List.map fst)
                  [ "m/layer/bias"; "v/layer/bias" ]
                  "Adam's buffers only"
          }

          test "a running statistic is never trained, whatever the optimizer" {
              let p =
                  Forgetting.Training.Checkpoint.toParams
                      [ "bn/running_mean", vec [| 1.0; 2.0 |]; "bn/gamma", vec [| 1.0; 1.0 |] ]

              for optimizer in [ Optim.sgdWith 0.1 0.9 false 0.1; Optim.adamWith 0.1 0.9 0.999 1e-8 0.1 ] do
                  let after, s = run optimizer 3 grad p
                  Expect.equal ((Params.tensor "bn/running_mean" after).ToFloat64Array()) [| 1.0; 2.0 |] optimizer.Name
                  Expect.notEqual ((Params.tensor "bn/gamma" after).ToFloat64Array()) [| 1.0; 1.0 |] "γ is trained"

                  Expect.isFalse
                      (s.Buffers.Keys |> Seq.exists (fun k -> k.EndsWith "running_mean"))
                      "no buffer for a statistic"
          }

          test "a state of another optimizer is refused in one line" {
              let sgd = Optim.sgdWith 0.1 0.9 false 0.0
              let adam = Optim.adam 0.01

              Expect.throwsT<System.ArgumentException>
                  (fun () -> adam.Update (sgd.Init p0) p0 (grad 1 p0) |> ignore)
                  "Adam on SGD's state (no m, v)"
          }

          test "bad hyper-parameters are refused" {
              Expect.throwsT<System.ArgumentException> (fun () -> Optim.sgd -0.1 |> ignore) "lr < 0"

              Expect.throwsT<System.ArgumentException>
                  (fun () -> Optim.sgdWith 0.1 0.0 true 0.0 |> ignore)
                  "Nesterov without momentum"

              Expect.throwsT<System.ArgumentException>
                  (fun () -> Optim.adamWith 0.1 1.0 0.999 1e-8 0.0 |> ignore)
                  "β₁ = 1"
          } ]
