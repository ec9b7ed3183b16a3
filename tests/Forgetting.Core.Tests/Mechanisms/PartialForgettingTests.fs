/// Learning with partial forgetting (source 003; mechanisms.md §5) on modern Hopfield layers: retrieval,
/// the association matrix A = D'(s) ⊙ softmax(D(s)) and its row sums, the ReLU and PFU units, masks
/// after D, the layers' invariants and parameters, gradients against finite differences, refusals.
module Forgetting.Tests.Mechanisms.PartialForgettingTests

open System
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Tests
open Forgetting.Data
open Forgetting.Tests.Tensors.GradCheck

let private eval = Mode.Eval

let private pfuEval = Pfu { PfuSettings.Default with Sigma = 0.0 }

let private units = [ NoUnit; ReluUnit; Pfu PfuSettings.Default ]

/// q [B, H, Q, D], k and v [B, H, K, D] from a seed, in float64.
let private qkv (seed: int) (b: int) (h: int) (q: int) (k: int) (d: int) =
    tensor seed [| b; h; q; d |] -1.0 1.0 0.0,
    tensor (seed + 1) [| b; h; k; d |] -1.0 1.0 0.0,
    tensor (seed + 2) [| b; h; k; d |] -1.0 1.0 0.0

let private sizes =
    gen {
        let! b, h = Gen.zip (Gen.choose (1, 3)) (Gen.choose (1, 3))
        let! q, k, d = Gen.zip3 (Gen.choose (1, 4)) (Gen.choose (2, 6)) (Gen.choose (1, 4))
        let! seed = seeds
        return b, h, q, k, d, seed
    }

let private rowSums (a: Tensor) =
    (Tensor.sumAxis -1 false a).ToFloat64Array()

/// Random ±1 patterns [n, d] from a seed: nearly orthogonal for d ≫ n, so well separated.
let private signs (seed: int) (n: int) (d: int) =
    Rng.uniform (n * d) (Rng.create (int64 seed))
    |> Array.map (fun u -> if u < 0.5 then -1.0 else 1.0)
    |> Tensor.ofFloat64 [| n; d |]

let private maxAbsDiff (a: Tensor) (b: Tensor) =
    Array.map2 (fun (x: float) y -> abs (x - y)) (a.ToFloat64Array()) (b.ToFloat64Array())
    |> Array.max

let private oneLine (f: unit -> unit) =
    let e =
        try
            f ()
            failtest "expected an error, none was raised"
        with :? ArgumentException as e ->
            e

    Expect.isFalse (e.Message.Contains '\n') $"a one-line error, got: {e.Message}"
    e.Message

[<Tests>]
let tests =
    testList
        "Hopfield layers and partial forgetting"
        [ Checks.forAll "Hopfield retrieval: a noisy stored pattern is restored at large β" 50 seeds (fun seed ->
              // 8 patterns of 64 ±1 entries; the query flips 8 of one pattern's entries.
              let x = signs seed 8 64
              let target = seed % 8
              let flips = Rng.permutation 64 (Rng.create (int64 seed + 1L)) |> Array.take 8
              let noisy = (Tensor.index target x).ToFloat64Array()

              for i in flips do
                  noisy[i] <- -noisy[i]

              let xi = Tensor.ofFloat64 [| 1; 64 |] noisy
              let retrieved = PartialForgetting.retrieve 1.0 1 NoUnit eval x xi
              maxAbsDiff retrieved (Tensor.reshape [| 1; 64 |] (Tensor.index target x)) < 1e-6)

          Checks.forAll "Hopfield retrieval: stored patterns are fixed points at large β" 50 seeds (fun seed ->
              let x = signs seed 6 64
              let once = PartialForgetting.retrieve 1.0 1 NoUnit eval x x
              let thrice = PartialForgetting.retrieve 1.0 3 NoUnit eval x x
              maxAbsDiff once x < 1e-6 && maxAbsDiff thrice x < 1e-6)

          test "retrieval is X softmax(β Xᵀ ξ), by hand" {
              // Two stored patterns (columns of X) (1, 0) and (0, 1), ξ = (2, 0), β = 0.5: scores (1, 0).
              let x = Tensor.ofFloat64 [| 2; 2 |] [| 1.0; 0.0; 0.0; 1.0 |]
              let xi = Tensor.ofFloat64 [| 1; 2 |] [| 2.0; 0.0 |]
              let r = (PartialForgetting.retrieve 0.5 1 NoUnit eval x xi).ToFloat64Array()
              let e = exp 1.0 / (exp 1.0 + 1.0)
              Expect.floatClose Accuracy.veryHigh r[0] e "weight of the first pattern"
              Expect.floatClose Accuracy.veryHigh r[1] (1.0 - e) "weight of the second"
              // Two steps: the second starts from the first's result.
              let r2 = (PartialForgetting.retrieve 0.5 2 NoUnit eval x xi).ToFloat64Array()
              let s0, s1 = 0.5 * e, 0.5 * (1.0 - e)
              let e2 = exp s0 / (exp s0 + exp s1)
              Expect.floatClose Accuracy.veryHigh r2[0] e2 "two steps, first entry"
          }

          Checks.forAll
              "rows of A sum to 1 without a unit and to at most 1 with one"
              100
              sizes
              (fun (b, h, q, k, d, seed) ->
                  let qt, kt, vt = qkv seed b h q k d

                  units
                  |> List.forall (fun u ->
                      let a =
                          PartialForgetting.associate 1.0 1 u 0.0 None (Mode.Train(Rng.create 1L)) qt kt vt

                      let sums = rowSums a.Weights

                      match u with
                      | NoUnit -> sums |> Array.forall (fun s -> abs (s - 1.0) < 1e-12)
                      | _ -> sums |> Array.forall (fun s -> s <= 1.0 + 1e-12 && s >= 0.0)))

          Checks.forAll "with D = identity a layer is plain softmax attention" 50 sizes (fun (b, h, q, k, d, seed) ->
              let qt, kt, vt = qkv seed b h q k d
              let beta = 0.7
              let a = PartialForgetting.associate beta 1 NoUnit 0.0 None eval qt kt vt
              let plain = Tensor.softmax -1 (Tensor.matmul qt (Tensor.transpose kt) * beta)
              // ReLU is the identity where every score is positive: shift the keys so that q·k > 0.
              let qp, kp = Tensor.abs qt + 0.1, Tensor.abs kt + 0.1
              let relu = PartialForgetting.associate beta 1 ReluUnit 0.0 None eval qp kp vt
              let plainPos = PartialForgetting.associate beta 1 NoUnit 0.0 None eval qp kp vt

              maxAbsDiff a.Weights plain < 1e-12
              && maxAbsDiff a.Output (Tensor.matmul plain vt) < 1e-12
              && maxAbsDiff relu.Output plainPos.Output < 1e-12)

          Checks.forAll
              "ReLU forgets every score ≤ 0 and keeps the rest unrenormalised"
              100
              sizes
              (fun (b, h, q, k, d, seed) ->
                  let qt, kt, vt = qkv seed b h q k d
                  let a = PartialForgetting.associate 1.0 1 ReluUnit 0.0 None eval qt kt vt
                  let s = a.Scores.ToFloat64Array()
                  let w = a.Weights.ToFloat64Array()
                  // softmax(max(s, 0)) by hand, row by row.
                  let expected =
                      Array.init s.Length (fun i ->
                          let row = i / k
                          let e j = exp (max s[row * k + j] 0.0)
                          let z = Seq.sum (seq { for j in 0 .. k - 1 -> e j })
                          if s[i] > 0.0 then e (i % k) / z else 0.0)

                  Array.forall2 (fun (x: float) y -> abs (x - y) < 1e-12) w expected)

          Checks.forAll
              "the PFU forgets the scores up to its threshold, the lower median: about half"
              100
              sizes
              (fun (b, h, q, k, d, seed) ->
                  let qt, kt, vt = qkv seed b h q k d

                  [ WholeCall; PerSample; PerHead; PerQuery ]
                  |> List.forall (fun scope ->
                      let unit =
                          Pfu
                              { PfuSettings.Default with
                                  Threshold = Median scope
                                  Sigma = 0.0 }

                      let a = PartialForgetting.associate 1.0 1 unit 0.0 None eval qt kt vt
                      let groupSize = Shape.numel a.Scores.Shape[scope.FromAxis ..]
                      let s = a.Scores.ToFloat64Array()
                      let w = a.Weights.ToFloat64Array()

                      Seq.chunkBySize groupSize (Seq.zip s w)
                      |> Seq.forall (fun group ->
                          let sorted = group |> Array.map fst |> Array.sort
                          let median = sorted[(sorted.Length - 1) / 2]
                          let forgotten = group |> Array.filter (fun (_, w) -> w = 0.0) |> Array.length
                          // Ties aside (random scores have none), the lower median and everything below it.
                          forgotten = (groupSize - 1) / 2 + 1
                          && group |> Array.forall (fun (s, w) -> (w = 0.0) = (s <= median)))))

          test "the PFU's options: a fixed threshold, a constant below it, noise only in training" {
              let qt, kt, vt = qkv 3 2 2 3 5 4

              let fixedAt c =
                  Pfu
                      { PfuSettings.Default with
                          Threshold = Fixed c
                          Sigma = 0.0 }

              let a = PartialForgetting.associate 1.0 1 (fixedAt 0.1) 0.0 None eval qt kt vt
              let s, w = a.Scores.ToFloat64Array(), a.Weights.ToFloat64Array()
              Expect.isTrue (Array.forall2 (fun s w -> (w = 0.0) = (s <= 0.1)) s w) "forgotten exactly at s ≤ 0.1"
              // A constant below: D(s) = −5 where forgotten; the kept weights change, the pattern does not.
              let below =
                  Pfu
                      { PfuSettings.Default with
                          Threshold = Fixed 0.1
                          Sigma = 0.0
                          Below = Some -5.0 }

              let b = PartialForgetting.associate 1.0 1 below 0.0 None eval qt kt vt
              let wb = b.Weights.ToFloat64Array()
              Expect.isTrue (Array.forall2 (fun w wb -> (w = 0.0) = (wb = 0.0)) w wb) "the same entries forgotten"

              Expect.isTrue
                  (Array.forall2 (fun w wb -> w = 0.0 || wb >= w) w wb)
                  "exp(−5) < exp(0.1) in the denominator"
              // Noise: ε = N(0,1)·σ² in training only.
              let noisy = Pfu { PfuSettings.Default with Sigma = 0.5 }
              let e1 = PartialForgetting.associate 1.0 1 noisy 0.0 None eval qt kt vt
              let e2 = PartialForgetting.associate 1.0 1 pfuEval 0.0 None eval qt kt vt
              Expect.equal (e1.Weights.ToFloat64Array()) (e2.Weights.ToFloat64Array()) "no noise at evaluation"

              let t1 =
                  PartialForgetting.associate 1.0 1 noisy 0.0 None (Mode.Train(Rng.create 4L)) qt kt vt

              let t2 =
                  PartialForgetting.associate 1.0 1 noisy 0.0 None (Mode.Train(Rng.create 4L)) qt kt vt

              Expect.equal (t1.Weights.ToFloat64Array()) (t2.Weights.ToFloat64Array()) "the same key, the same ε"
          }

          test "a masked key gets weight 0 under every unit, and masking equals removing the key" {
              // One sample, keys 0 … 4, the last two padded.
              let qt, kt, vt = qkv 11 1 2 3 5 4
              let mask = PartialForgetting.paddingMask Float64 5 [| 3 |]

              let cut (t: Tensor) =
                  t
                  |> Tensor.permute [| 2; 0; 1; 3 |]
                  |> Tensor.slice 0 3
                  |> Tensor.permute [| 1; 2; 0; 3 |]

              for u in [ NoUnit; ReluUnit; pfuEval ] do
                  let a = PartialForgetting.associate 1.0 1 u 0.0 (Some mask) eval qt kt vt
                  let w = a.Weights.ToFloat64Array()

                  for i in 0 .. w.Length - 1 do
                      if i % 5 >= 3 then
                          Expect.equal w[i] 0.0 $"{u.Name}: weight {i} of a padded key"

                  let r = PartialForgetting.associate 1.0 1 u 0.0 None eval qt (cut kt) (cut vt)

                  Expect.isLessThan
                      (maxAbsDiff a.Output r.Output)
                      1e-12
                      $"{u.Name}: as if the padded keys were not there"

              // Causal: query i sees keys 0 … i.
              let causal = PartialForgetting.causalMask Float64 3 3
              let qc, kc, vc = qkv 12 1 1 3 3 2

              for u in [ NoUnit; ReluUnit; pfuEval ] do
                  let w =
                      (PartialForgetting.associate 1.0 1 u 0.0 (Some causal) eval qc kc vc).Weights.ToFloat64Array()

                  for i in 0..2 do
                      for j in i + 1 .. 2 do
                          Expect.equal w[i * 3 + j] 0.0 $"{u.Name}: query {i} must not see key {j}"
          }

          Checks.forAll "gradients of the association with each unit, away from the kinks" 30 seeds (fun seed ->
              // Scores s = q kᵀ with q = 1 and k the given values: distinct, 0.1 apart, none near 0, so that
              // no finite-difference step crosses a kink of ReLU or the PFU, nor changes the median.
              let k = 6

              let scores =
                  Rng.permutation (2 * k) (Rng.create (int64 seed))
                  |> Array.map (fun i -> float i / 10.0 - 0.55)

              let kt = Tensor.ofFloat64 [| 1; 2; k; 1 |] scores
              let q = Tensor.ones Float64 [| 1; 2; 1; 1 |]
              let v = tensor seed [| 1; 2; k; 3 |] -1.0 1.0 0.0

              [ NoUnit
                ReluUnit
                pfuEval
                Pfu PfuSettings.Default
                Pfu
                    { PfuSettings.Default with
                        Below = Some -1.0
                        Threshold = Median PerHead } ]
              |> List.forall (fun u ->
                  agrees
                      (fun xs ->
                          let a =
                              PartialForgetting.associate 1.3 1 u 0.0 None (Mode.Train(Rng.create 2L)) q xs[0] xs[1]

                          a.Output * tensor 5 a.Output.Shape 0.5 1.5 0.0 |> Tensor.sum)
                      [| kt; v |]))

          test "the PFU's threshold passes gradient to the median element unless detached" {
              // One head, one query, scores 0.1 … 0.5 (q = 1): the median 0.3 and below are forgotten,
              // D = a = 0.3 there; the gradient of those entries flows into a, and from a to the median's key.
              let kt = Tensor.ofFloat64 [| 1; 1; 5; 1 |] [| 0.3; 0.1; 0.5; 0.2; 0.4 |]
              let q = Tensor.ones Float64 [| 1; 1; 1; 1 |]
              let v = tensor 3 [| 1; 1; 5; 2 |] -1.0 1.0 0.0

              let gradOf unit =
                  let g =
                      Tensor.grad
                          (fun k ->
                              let a = PartialForgetting.associate 1.0 1 unit 0.0 None eval q k v
                              a.Output * tensor 5 a.Output.Shape 0.5 1.5 0.0 |> Tensor.sum)
                          kt

                  g.ToFloat64Array()

              let attached = gradOf pfuEval

              let detached =
                  gradOf (
                      Pfu
                          { PfuSettings.Default with
                              Sigma = 0.0
                              Detach = true }
                  )

              Expect.notEqual attached[0] 0.0 "the median's key gets gradient through the threshold"
              Expect.equal detached[0] 0.0 "detached: the forgotten median's key gets none"
              Expect.equal detached[1] 0.0 "forgotten keys get none"
              Expect.equal attached[1] 0.0 "forgotten keys get none, attached or not"
              Expect.equal attached[2] detached[2] "kept keys: the same gradient"
          }

          test "gradients through a layer with a PFU and several update steps, in float64" {
              let s =
                  { HopfieldSettings.Default with
                      Heads = 2
                      UpdateSteps = 2
                      Unit = Pfu PfuSettings.Default }

              let layer = PartialForgetting.pooling s 4 2
              let p = layer.Init (Rng.create 3L) Float64
              let bag = tensor 4 [| 2; 5; 4 |] -1.0 1.0 0.0
              let mode = Mode.Train(Rng.create 5L)

              let f (ts: Tensor[]) =
                  let y = Layer.apply layer mode (Params.withTensors p ts) bag
                  y * tensor 6 y.Shape 0.5 1.5 0.0 |> Tensor.sum

              // Initial weights N(0, 0.02) make the scores tiny: scale the parameters up to spread them.
              let ts = Params.tensors p |> Array.map (fun t -> t * 20.0)
              Expect.isNone (compare f ts) "reverse mode against finite differences"
          }

          Checks.forAll "HopfieldPooling is invariant to permuting a bag's instances" 50 seeds (fun seed ->
              let s =
                  { HopfieldSettings.Default with
                      Heads = 2
                      UpdateSteps = 2 }

              units
              |> List.forall (fun u ->
                  let layer = PartialForgetting.pooling { s with Unit = u } 6 3
                  let p = layer.Init (Rng.create (int64 seed)) Float64
                  let bag = tensor seed [| 2; 7; 6 |] -1.0 1.0 0.0
                  let perm = Rng.permutation 7 (Rng.create (int64 seed + 9L))

                  let shuffled =
                      bag
                      |> Tensor.permute [| 1; 0; 2 |]
                      |> Tensor.gather perm
                      |> Tensor.permute [| 1; 0; 2 |]

                  let y = Layer.apply layer eval p bag

                  y.Shape = [| 2; 18 |]
                  && maxAbsDiff y (Layer.apply layer eval p shuffled) < 1e-12))

          test "the layers have hflayers' parameters, defaults and shapes" {
              let h =
                  PartialForgetting.hopfield
                      { HopfieldSettings.Default with
                          Heads = 2 }
                      8
                      6

              let p = h.Init (Rng.create 1L) Float32

              let shapes = Params.flatten p |> List.map (fun (n, t) -> n, List.ofArray t.Shape)

              Expect.equal
                  shapes
                  [ "k/bias", [ 8 ]
                    "k/weight", [ 6; 8 ]
                    "norm_projection/beta", [ 6 ]
                    "norm_projection/gamma", [ 6 ]
                    "norm_state/beta", [ 8 ]
                    "norm_state/gamma", [ 8 ]
                    "norm_stored/beta", [ 6 ]
                    "norm_stored/gamma", [ 6 ]
                    "out/bias", [ 8 ]
                    "out/weight", [ 8; 8 ]
                    "q/bias", [ 8 ]
                    "q/weight", [ 8; 8 ]
                    "v/bias", [ 8 ]
                    "v/weight", [ 6; 8 ] ]
                  "hidden 8 / 2 heads = 4 per head; output 8 = the state size"

              let w = (Params.tensor "q/weight" p).ToFloat64Array()
              let sd = sqrt (Array.averageBy (fun x -> x * x) w)
              Expect.isTrue (sd > 0.01 && sd < 0.03) $"projections N(0, 0.02), got sd {sd}"
              let state = Tensor.uniform (Rng.create 2L) Float32 [| 3; 4; 8 |] 0.0 1.0
              let stored = Tensor.uniform (Rng.create 3L) Float32 [| 3; 5; 6 |] 0.0 1.0
              let y, trace = h.Forward eval p state stored
              Expect.equal y.Shape [| 3; 4; 8 |] "[B, Q, out]"
              let a = Trace.tagged PartialForgetting.AssociationTag trace
              Expect.equal (a |> List.map (fun e -> e.Value.Shape)) [ [| 3; 2; 4; 5 |] ] "A in the trace, [B, H, Q, K]"

              let lookup = PartialForgetting.lookup HopfieldSettings.Default 8 5 true
              let lp = lookup.Init (Rng.create 1L) Float32
              Expect.equal (Params.tensor "lookup" lp).Shape [| 5; 8 |] "learned stored patterns"
              Expect.equal (Params.tensor "targets" lp).Shape [| 5; 8 |] "separate learned targets"
              Expect.equal (Layer.apply lookup eval lp state).Shape [| 3; 4; 8 |] "lookup output [B, Q, out]"

              let pool = PartialForgetting.pooling HopfieldSettings.Default 6 2
              let pp = pool.Init (Rng.create 1L) Float32
              Expect.equal (Layer.apply pool eval pp stored).Shape [| 3; 12 |] "pooling output [B, quantity · out]"

              let mha = PartialForgetting.attention 2 6 ReluUnit 0.1 None |> Layer2.self
              let mp = mha.Init (Rng.create 1L) Float32
              Expect.equal (Layer.apply mha (Mode.Train(Rng.create 1L)) mp stored).Shape [| 3; 5; 6 |] "self-attention"

              Expect.isFalse
                  (Params.flatten mp |> List.exists (fun (n, _) -> n.StartsWith "norm"))
                  "attention has no LayerNorm"

              // Plain retrieval through the layer: the same as `retrieve`.
              let plain = PartialForgetting.hopfield (HopfieldSettings.Plain 2.0) 6 6
              let x = Tensor.uniform (Rng.create 4L) Float32 [| 2; 5; 6 |] -1.0 1.0
              let xi = Tensor.uniform (Rng.create 5L) Float32 [| 2; 3; 6 |] -1.0 1.0

              Expect.isLessThan
                  (maxAbsDiff
                      (Layer2.apply plain eval (plain.Init (Rng.create 1L) Float32) xi x)
                      (PartialForgetting.retrieve 2.0 1 NoUnit eval x xi))
                  1e-6
                  "HopfieldSettings.Plain is retrieval"

              Expect.equal (plain.Init (Rng.create 1L) Float32) Params.empty "plain retrieval has no parameters"
          }

          test "two-input layers compose with sequential through Layer2.self and Layer2.withStored" {
              let h =
                  PartialForgetting.hopfield
                      { HopfieldSettings.Default with
                          Heads = 2 }
                      4
                      4

              let memory = Tensor.uniform (Rng.create 1L) Float32 [| 2; 3; 4 |] 0.0 1.0
              let x = Tensor.uniform (Rng.create 2L) Float32 [| 2; 5; 4 |] 0.0 1.0

              let net =
                  Layer.sequential [ "self", Layer2.self h; "memory", Layer2.withStored memory h ]

              let p = net.Init (Rng.create 3L) Float32
              let y, trace = net.Forward eval p x
              Expect.equal y.Shape [| 2; 5; 4 |] "shape kept"
              let first = Layer2.apply h eval (Params.get "self" p) x x
              let second = Layer2.apply h eval (Params.get "memory" p) first memory
              Expect.equal (y.ToFloat64Array()) (second.ToFloat64Array()) "the same as applying both by hand"

              Expect.equal
                  (Trace.tagged PartialForgetting.AssociationTag trace
                   |> List.map (fun e -> e.Path))
                  [ "self"; "memory" ]
                  "each layer's association under its own path"
          }

          test "bad input gets a one-line error" {
              let qt, kt, vt = qkv 1 1 1 2 3 2

              let m1 =
                  oneLine (fun () -> PartialForgetting.associate 0.0 1 NoUnit 0.0 None eval qt kt vt |> ignore)

              Expect.stringContains m1 "β" "β ≤ 0"

              oneLine (fun () -> PartialForgetting.associate 1.0 0 NoUnit 0.0 None eval qt kt vt |> ignore)
              |> ignore

              let wrongD = tensor 1 [| 1; 1; 3; 5 |] -1.0 1.0 0.0

              let m2 =
                  oneLine (fun () -> PartialForgetting.associate 1.0 1 NoUnit 0.0 None eval qt wrongD vt |> ignore)

              Expect.stringContains m2 "pattern dimension" "mismatched pattern dimensions"

              let m3 =
                  oneLine (fun () ->
                      PartialForgetting.retrieve
                          1.0
                          1
                          NoUnit
                          eval
                          (Tensor.zeros Float64 [| 3; 4 |])
                          (Tensor.zeros Float64 [| 2; 5 |])
                      |> ignore)

              Expect.stringContains m3 "dimension 4" "retrieval with mismatched dimensions"
              let m4 = oneLine (fun () -> ForgettingUnit.Parse "gelu" |> ignore)
              Expect.stringContains m4 "none, relu, pfu" "an unknown unit names the known ones"
              let m5 = oneLine (fun () -> MedianScope.Parse "batch" |> ignore)
              Expect.stringContains m5 "call, sample, head, query" "an unknown scope names the known ones"
              let h = PartialForgetting.hopfield HopfieldSettings.Default 4 4
              let p = h.Init (Rng.create 1L) Float64

              let m6 =
                  oneLine (fun () ->
                      Layer2.apply h eval p (Tensor.zeros Float64 [| 1; 2; 3 |]) (Tensor.zeros Float64 [| 1; 2; 4 |])
                      |> ignore)

              Expect.stringContains m6 "3 features" "state patterns of the wrong size"

              oneLine (fun () ->
                  PartialForgetting.hopfield
                      { HopfieldSettings.Default with
                          Scaling = Some -1.0 }
                      4
                      4
                  |> ignore)
              |> ignore

              oneLine (fun () ->
                  PartialForgetting.hopfield
                      { HopfieldSettings.Default with
                          Heads = 3 }
                      4
                      4
                  |> ignore)
              |> ignore

              Expect.equal (ForgettingUnit.Parse "pfu") (Pfu PfuSettings.Default) "pfu by name"
              Expect.equal (MedianScope.Parse "query") PerQuery "a scope by name"
          } ]

/// The optimizer the bit-pattern demo uses (AdamW with gradient clipping) and the task itself.
[<Tests>]
let bitPatternTests =
    testList
        "Hopfield bit-pattern task"
        [ test "AdamW shrinks the parameters before Adam's step; clipping bounds the gradient's norm" {
              let p = Params.ofTensors [ "w", Tensor.ofFloat64 [| 2 |] [| 1.0; -2.0 |] ]
              let g = Params.ofTensors [ "w", Tensor.ofFloat64 [| 2 |] [| 3.0; 4.0 |] ]
              let adamw = Optim.adamW 0.1 0.9 0.999 1e-8 0.5
              let p1, _ = adamw.Update (adamw.Init p) p g
              // Step 1: m̂ = g, v̂ = g², so Adam's step is lr · g / (|g| + ε) ≈ 0.1 · sign(g); decay first.
              let expected = [| 1.0 * (1.0 - 0.05) - 0.1; -2.0 * (1.0 - 0.05) - 0.1 |]
              let got = (Params.tensor "w" p1).ToFloat64Array()
              Expect.isTrue (Array.forall2 (fun (a: float) b -> abs (a - b) < 1e-7) got expected) $"got {got}"

              let adam = Optim.adamWith 0.1 0.9 0.999 1e-8 0.0
              let pa, _ = adam.Update (adam.Init p) p g
              let gotAdam = (Params.tensor "w" pa).ToFloat64Array()

              Expect.isTrue
                  (Array.forall2 (fun (a: float) b -> abs (a - b) < 1e-7) gotAdam [| 0.9; -2.1 |])
                  $"Adam's first step is lr · sign(g), no decay: got {gotAdam}"

              // ‖g‖ = 5, clipped to 1: the optimizer sees g / 5 (to within PyTorch's 1e-6).
              let seen = ref Params.empty

              let spy =
                  { Name = "spy"
                    Init = fun _ -> { Step = 0; Buffers = Map.empty }
                    Update =
                      fun s p g ->
                          seen.Value <- g
                          p, s }

              Optim.clipped 1.0 spy |> fun o -> o.Update (o.Init p) p g |> ignore
              let clippedG = (Params.tensor "w" seen.Value).ToFloat64Array()
              Expect.isTrue (abs (clippedG[0] - 0.6) < 1e-6 && abs (clippedG[1] - 0.8) < 1e-6) $"got {clippedG}"
              Optim.clipped 10.0 spy |> fun o -> o.Update (o.Init p) p g |> ignore
              Expect.equal ((Params.tensor "w" seen.Value).ToFloat64Array()) [| 3.0; 4.0 |] "below the bound: unchanged"
          }

          test "the classifiers of every layer give two logits whose cross-entropy is the BCE of the read-out" {
              let data =
                  BitPatternBags.generate
                      { BitPatternBags.defaults with
                          BagCount = 40
                          TrainCount = 30 }

              let train = Forgetting.Experiments.BitPatternTask.examples data.TrainBags

              let distinct =
                  Forgetting.Experiments.BitPatternTask.distinctInstances data.TrainBags

              Expect.isTrue (distinct > 8 && distinct <= 256) $"distinct 8-bit instances: {distinct}"

              for layer in Forgetting.Experiments.BitPatternLayer.All do
                  for adapted in [ false; true ] do
                      let s =
                          { Forgetting.Experiments.BitPatternSettings.Default with
                              Layer = layer
                              Adapted = adapted
                              Unit = ReluUnit }

                      let net = Forgetting.Experiments.BitPatternTask.model s 16 8 distinct
                      let p = net.Init (Rng.create 1L) Float32
                      let logits, trace = net.Forward eval p (Tensor.slice 0 4 train.Inputs)
                      Expect.equal logits.Shape [| 4; 2 |] $"{layer.Name}: two logits"
                      let l = logits.ToFloat64Array()
                      Expect.isTrue (l[0] = 0.0 && l[2] = 0.0) "the first logit is 0"

                      Expect.isNonEmpty
                          (Trace.tagged PartialForgetting.AssociationTag trace)
                          $"{layer.Name}: the association in the trace"

                      let ce = (Functional.crossEntropy logits train.Labels[..3]).Item

                      let bce =
                          Array.init 4 (fun i ->
                              let z = l[2 * i + 1]
                              let y = float train.Labels[i]
                              -(y * log (1.0 / (1.0 + exp -z)) + (1.0 - y) * log (1.0 - 1.0 / (1.0 + exp -z))))
                          |> Array.average

                      Expect.floatClose Accuracy.medium ce bce $"{layer.Name}: CE over (0, z) = BCE of z"
          }

          test "a short run is deterministic, and its PFU forgets about half the attention mass" {
              let s =
                  { Forgetting.Experiments.BitPatternSettings.Default with
                      Epochs = 3
                      Adapted = false
                      Unit = Pfu PfuSettings.Default
                      Data =
                          { BitPatternBags.defaults with
                              BagCount = 256
                              TrainCount = 192 } }

              let a = Forgetting.Experiments.BitPatternTask.run s ignore
              let b = Forgetting.Experiments.BitPatternTask.run s ignore
              Expect.equal a.TestAccuracy b.TestAccuracy "the same seed, the same accuracy"

              Expect.equal
                  (a.History |> List.map (fun h -> h.TrainLoss))
                  (b.History |> List.map (fun h -> h.TrainLoss))
                  "and losses"

              Expect.isTrue
                  (a.ForgottenMass > 0.3 && a.ForgottenMass < 0.7)
                  $"the PFU forgets about half the mass: {a.ForgottenMass}"

              Expect.isTrue (a.History.Length = 3) "one entry per epoch"
          } ]

[<Tests>]
let bitPatternFigureTests =
    testList
        "Hopfield bit-pattern figures"
        [ test "accuracy bars with the seeds' sd and the forgotten mass per row, as valid panels" {
              let run acc rows : Forgetting.Experiments.BitPatternResult =
                  { History = []
                    TestAccuracy = acc
                    ForgottenMass = Array.average rows
                    ForgottenPerRow = rows }

              let panels =
                  Forgetting.Experiments.BitPatternTask.panels
                      [ "pooling + none", [ run 0.6 [| 0.0; 0.0 |]; run 0.8 [| 0.0; 0.0 |] ]
                        "pooling + pfu", [ run 0.7 [| 0.5; 0.4 |]; run 0.7 [| 0.6; 0.5 |] ] ]

              match panels with
              | [ Forgetting.Experiments.Columns bars; Forgetting.Experiments.Histograms h ] ->
                  let _, m, sd = bars.Bars.Head
                  Expect.floatClose Accuracy.veryHigh m 0.7 "mean over seeds"
                  Expect.floatClose Accuracy.veryHigh sd.Value (sqrt 0.02) "sample sd over seeds"
                  Expect.equal (h.Groups |> List.map (snd >> Array.length)) [ 4; 4 ] "every row of every run"

                  for p in panels do
                      Forgetting.Experiments.Charts.validate p
              | _ -> failtest "two panels: bars and a histogram"
          } ]

[<Tests>]
let repertoireTests =
    let small =
        { SequenceBags.defaults with
            BagCount = 24
            SequencesPerBag = 10
            TrainCount = 16
            WitnessRate = 0.2 }

    testList
        "Hopfield repertoire task (DeepRC)"
        [ test "encoding: one-hot letters and position ramps that sum to 1, zero past the end" {
              let x =
                  Forgetting.Experiments.RepertoireTask.encode 6 [| 0uy; 3uy; 19uy; 2uy; 5uy |]

              let at f i = x[f * 6 + i]
              Expect.equal (at 0 0, at 3 1, at 19 2) (1.0f, 1.0f, 1.0f) "the letters"

              for i in 0..4 do
                  Expect.floatClose Accuracy.high (float (at 20 i + at 21 i + at 22 i)) 1.0 $"position {i}"

              Expect.equal (at 20 0, at 21 2, at 22 4) (1.0f, 1.0f, 1.0f) "begin, centre, end"
              Expect.isTrue (Array.init 23 (fun f -> at f 5) |> Array.forall ((=) 0.0f)) "nothing past the end"
          }

          test "the model pools a bag invariantly to the order of its sequences; the PFU forgets half a bag" {
              let data = SequenceBags.generate small
              let train = Forgetting.Experiments.RepertoireTask.examples small data.TrainBags

              let s =
                  { Forgetting.Experiments.RepertoireSettings.Default with
                      Data = small
                      Unit =
                          Pfu
                              { PfuSettings.Default with
                                  Threshold = Median PerSample } }

              let net = Forgetting.Experiments.RepertoireTask.model s
              let p = net.Init (Rng.create 1L) Float64
              let x = Tensor.cast Float64 (Tensor.slice 0 3 train.Inputs)
              let y, trace = net.Forward eval p x
              Expect.equal y.Shape [| 3; 2 |] "two logits per bag"

              let a =
                  (Trace.tagged Forgetting.Experiments.RepertoireTask.AttentionTag trace).Head.Value

              Expect.equal a.Shape [| 3; 1; 1; 10 |] "attention over each bag's 10 sequences"

              for row in Array.chunkBySize 10 (a.ToFloat64Array()) do
                  Expect.equal (row |> Array.filter ((=) 0.0) |> Array.length) 5 "the lower median and below: 5 of 10"

              // Reverse the order of each bag's sequences.
              let perSequence = 23 * small.MaxLength

              let reversed =
                  x
                  |> Tensor.reshape [| 3; 10; perSequence |]
                  |> Tensor.permute [| 1; 0; 2 |]
                  |> Tensor.gather (Array.init 10 (fun i -> 9 - i))
                  |> Tensor.permute [| 1; 0; 2 |]
                  |> Tensor.reshape [| 3; -1 |]

              Expect.isLessThan (maxAbsDiff y (Layer.apply net eval p reversed)) 1e-12 "order of sequences"
          }

          test "a short run is deterministic" {
              let s =
                  { Forgetting.Experiments.RepertoireSettings.Default with
                      Data = small
                      Epochs = 2
                      LearningRate = 1e-3
                      Unit = ReluUnit }

              let a = Forgetting.Experiments.RepertoireTask.run s ignore
              let b = Forgetting.Experiments.RepertoireTask.run s ignore
              Expect.equal a.TestAccuracy b.TestAccuracy "the same seed, the same accuracy"
              Expect.equal a.History.Length 2 "one entry per epoch"
          } ]

[<Tests>]
let visionTransformerTests =
    testList
        "Hopfield vision transformer"
        [ test "Fashion-MNIST-sized: logits per image, an association per block, the PFU in every block" {
              let s =
                  { Forgetting.Experiments.VisionTransformerSettings.Default with
                      Unit = Pfu { PfuSettings.Default with Sigma = 0.0 } }

              let vit = Forgetting.Experiments.VisionTransformer.model s
              let p = vit.Init (Rng.create 1L) Float32
              let x = Tensor.uniform (Rng.create 2L) Float32 [| 3; 784 |] 0.0 1.0
              let y, trace = vit.Forward eval p x
              Expect.equal y.Shape [| 3; 10 |] "ten logits per image"
              let a = Trace.tagged PartialForgetting.AssociationTag trace

              Expect.equal
                  (a |> List.map (fun e -> e.Path))
                  [ for i in 1..4 -> $"block{i}/attention/attention" ]
                  "one association per block"

              for e in a do
                  Expect.equal e.Value.Shape [| 3; 4; 17; 17 |] "4 heads over the class token and 16 patches"
                  let w = e.Value.ToFloat64Array()
                  let forgotten = w |> Array.filter ((=) 0.0) |> Array.length
                  // The lower median of the call's 3·4·17·17 = 3468 scores and all below: 1734.
                  Expect.equal forgotten 1734 $"{e.Path}: half the scores forgotten"
          }

          test "gradients of a tiny transformer against finite differences, in float64" {
              let s =
                  { Forgetting.Experiments.VisionTransformerSettings.Default with
                      ImageSize = 4
                      PatchSize = 2
                      Width = 4
                      Blocks = 1
                      Heads = 2
                      MlpRatio = 1
                      Classes = 2 }

              let vit = Forgetting.Experiments.VisionTransformer.model s
              let p = vit.Init (Rng.create 3L) Float64
              let x = tensor 4 [| 2; 16 |] 0.0 1.0 0.0
              // Spread the small initial embeddings so that the attention is not uniform.
              let ts = Params.tensors p |> Array.map (fun t -> t * 3.0)

              let f (ts: Tensor[]) =
                  Functional.crossEntropy (Layer.apply vit eval (Params.withTensors p ts) x) [| 0; 1 |]

              Expect.isNone (compare f ts) "reverse mode against finite differences"
          }

          test "patches that do not tile the image are refused" {
              oneLine (fun () ->
                  Forgetting.Experiments.VisionTransformer.model
                      { Forgetting.Experiments.VisionTransformerSettings.Default with
                          PatchSize = 5 }
                  |> ignore)
              |> ignore
          } ]
