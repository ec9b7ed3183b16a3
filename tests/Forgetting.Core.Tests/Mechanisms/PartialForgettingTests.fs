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
                  for options in
                      [ Forgetting.Experiments.BitPatternLayerOptions.Defaults
                        Forgetting.Experiments.BitPatternLayerOptions.Adapted ] do
                      let s =
                          { Forgetting.Experiments.BitPatternSettings.Default with
                              Layer = layer
                              Options = options
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
                      Options = Forgetting.Experiments.BitPatternLayerOptions.Defaults
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

[<Tests>]
let studyTests =
    testList
        "Hopfield study recipes"
        [ test "each task's defaults are filled in, the given values kept, and the recipe survives JSON" {
              let settings (given: (string * SettingValue) list) =
                  (Forgetting.Experiments.HopfieldStudy.recipe given).Study.Value.Settings

              let bits = settings []
              Expect.equal bits["task"] (Choice "bit-pattern") "the default task"
              Expect.equal bits["epochs"] (Count 250) "the demo's 250 epochs"
              Expect.equal bits["median_scope"] (Choice "call") "the median over the call"
              Expect.equal bits["units"] (Choice "none,relu,pfu") "every unit"
              let rep = settings [ "task", Choice "repertoire"; "witness_rate", Number 0.01 ]
              Expect.equal rep["median_scope"] (Choice "sample") "DeepRC's median per bag"
              Expect.equal rep["lr"] (Number 1e-4) "DeepRC's learning rate"
              Expect.equal rep["witness_rate"] (Number 0.01) "as given"
              let vit = settings [ "task", Choice "vit" ]
              Expect.equal (vit["weight_decay"], vit["batch"]) (Number 0.05, Count 128) "timm's decay, batch 128"
              Expect.isFalse (vit.ContainsKey "bags") "no bags for the ViT"

              let r =
                  Forgetting.Experiments.HopfieldStudy.recipe [ "units", Choice "relu"; "seeds", Count 5 ]

              let back =
                  Forgetting.Experiments.Recipe.ofJson
                      Forgetting.Experiments.Catalog.terms
                      (System.Text.Json.Nodes.JsonNode.Parse(Forgetting.Experiments.Recipe.toText r))

              Expect.equal
                  (Forgetting.Experiments.HopfieldStudy.resolve (Map.toList back.Study.Value.Settings))
                  r.Study.Value.Settings
                  "resolved again from JSON"

              Expect.equal (Forgetting.Experiments.HopfieldStudy.seeds r.Study.Value.Settings) [ 1..5 ] "seeds 1 … 5"
          }

          test "the layer's and the PFU's options reach the runs: adapted or hflayers' defaults, each overridable" {
              let options given =
                  Forgetting.Experiments.HopfieldStudy.layerOptions (Forgetting.Experiments.HopfieldStudy.resolve given)

              Expect.equal (options []) Forgetting.Experiments.BitPatternLayerOptions.Adapted "the demo's adapted"

              Expect.equal
                  (options [ "adapted", Switch false ])
                  Forgetting.Experiments.BitPatternLayerOptions.Defaults
                  "hflayers' defaults"

              Expect.equal
                  (options [ "adapted", Switch false; "beta", Number 2.0; "update_steps", Count 3 ])
                  { Forgetting.Experiments.BitPatternLayerOptions.Defaults with
                      Scaling = Some 2.0
                      UpdateSteps = 3 }
                  "β and the steps overridden, the rest hflayers'"

              let pfu given =
                  Forgetting.Experiments.HopfieldStudy.units (
                      Forgetting.Experiments.HopfieldStudy.resolve ([ "units", Choice "pfu" ] @ given)
                  )

              Expect.equal (pfu []) [ Pfu PfuSettings.Default ] "the reference's PFU"

              Expect.equal
                  (pfu [ "pfu_threshold", Choice "0.25"; "pfu_below", Choice "-1e4" ])
                  [ Pfu
                        { PfuSettings.Default with
                            Threshold = Fixed 0.25
                            Below = Some -1e4 } ]
                  "a fixed threshold and a constant below it"

              let vit =
                  Forgetting.Experiments.HopfieldStudy.resolve [ "task", Choice "vit"; "width", Count 32 ]

              Expect.equal (vit["width"], vit["heads"], vit["blocks"]) (Count 32, Count 4, Count 4) "the ViT's shape"
          }

          test "a study the layer would refuse is refused when it is resolved, before any run" {
              for given, says in
                  [ [ "heads", Count 3; "hidden", Count 0 ], "3 heads do not divide the 8 bits"
                    [ "task", Choice "vit"; "heads", Count 3 ], "3 heads do not divide the width 64"
                    [ "pfu_threshold", Choice "half" ], "pfu_threshold must be median or a number"
                    [ "dropout", Number 1.0 ], "dropout must be in [0, 1)"
                    [ "beta", Number -0.5 ], "beta must be ≥ 0" ] do
                  let message =
                      try
                          Forgetting.Experiments.HopfieldStudy.resolve given |> ignore
                          failtest $"{given} accepted"
                      with :? ArgumentException as e ->
                          e.Message

                  Expect.stringContains message says $"the message for {given}"
          }

          test "unknown tasks, units, layers and scopes and values out of range are refused in one line" {
              for given, says in
                  [ [ "task", Choice "mnist" ], "unknown task 'mnist'"
                    [ "units", Choice "none,gelu" ], "unknown partial-forgetting unit 'gelu'"
                    [ "layers", Choice "conv" ], "unknown Hopfield layer 'conv'"
                    [ "median_scope", Choice "batch" ], "unknown median scope 'batch'"
                    [ "pfu_sigma", Number -1.0 ], "pfu_sigma must be ≥ 0"
                    [ "bags", Count 4 ], "bags must be at least 8"
                    [ "task", Choice "vit"; "layers", Choice "pooling" ], "hopfield has no setting 'layers'"
                    [ "epochs", Number 2.5 ], "epochs takes a value like" ] do
                  let message =
                      try
                          Forgetting.Experiments.HopfieldStudy.recipe given |> ignore
                          failtest $"{given} accepted"
                      with :? ArgumentException as e ->
                          e.Message

                  Expect.stringContains message says $"the message for {given}"
                  Expect.isFalse (message.Contains '\n') "one line"
          } ]

[<Tests>]
let earlyStopTests =
    let eval = Mode.Eval

    testList
        "Hopfield update steps with hflayers' early stop (update_steps_eps)"
        [ test "ε above every change stops after the second step; ε below every change runs every step" {
              let q = tensor 1 [| 2; 3; 4; 5 |] -1.0 1.0 0.0
              let k = tensor 2 [| 2; 3; 6; 5 |] -1.0 1.0 0.0
              let v = tensor 3 [| 2; 3; 6; 2 |] -1.0 1.0 0.0
              let out (a: Association) = a.Output.ToFloat64Array()

              let fixedSteps n =
                  out (PartialForgetting.associate 0.5 n ReluUnit 0.0 None eval q k v)

              let until eps =
                  out (PartialForgetting.associateUntil (Some eps) 0.5 5 ReluUnit 0.0 None eval q k v)

              Expect.equal (until 1e6) (fixedSteps 2) "the first comparison (after step 2) stops every head"
              Expect.equal (until 1e-300) (fixedSteps 5) "no head converges exactly: all 5 steps"
          }

          test "a head that has converged keeps its association while the others go on (a direct loop)" {
              // Head 0: the query is a stored pattern at large β, so p is one-hot from the first step and
              // p_2 − p_1 = 0: it stops after step 2. Head 1: a spread, slowly moving association.
              let d = 3

              let k =
                  Tensor.ofFloat64
                      [| 1; 2; 3; d |]
                      [| 10.0
                         0.0
                         0.0
                         0.0
                         10.0
                         0.0
                         0.0
                         0.0
                         10.0
                         0.3
                         0.1
                         -0.2
                         -0.1
                         0.2
                         0.4
                         0.2
                         -0.3
                         0.1 |]

              let q = Tensor.ofFloat64 [| 1; 2; 1; d |] [| 10.0; 0.0; 0.0; 0.5; -0.4; 0.3 |]

              let v = k
              let steps, beta, eps = 6, 1.0, 1e-9

              let a =
                  PartialForgetting.associateUntil (Some eps) beta steps NoUnit 0.0 None eval q k v

              // The direct loop, head by head: p = softmax(β ξ kᵀ), ξ ← p k, stopping once ‖Δp‖ ≤ ε.
              let head h =
                  let kh = (Tensor.index h (Tensor.index 0 k)).ToFloat64Array() |> Array.chunkBySize d
                  let mutable xi = (Tensor.index h (Tensor.index 0 q)).ToFloat64Array()
                  let mutable p: float[] = [||]
                  let mutable go = true
                  let mutable t = 0

                  while go do
                      let s =
                          kh
                          |> Array.map (fun row -> beta * Array.fold2 (fun acc x y -> acc + x * y) 0.0 row xi)

                      let m = Array.max s
                      let e = s |> Array.map (fun x -> exp (x - m))
                      let pNew = e |> Array.map (fun x -> x / Array.sum e)

                      let change =
                          if t = 0 then
                              infinity
                          else
                              sqrt (Array.fold2 (fun acc a b -> acc + (a - b) * (a - b)) 0.0 pNew p)

                      p <- pNew
                      t <- t + 1

                      if t = steps || change <= eps then
                          go <- false
                      else
                          xi <-
                              Array.init d (fun j ->
                                  Array.fold2 (fun acc pk (row: float[]) -> acc + pk * row[j]) 0.0 p kh)

                  Array.init d (fun j -> Array.fold2 (fun acc pk (row: float[]) -> acc + pk * row[j]) 0.0 p kh), t

              let out = a.Output.ToFloat64Array()
              let o0, t0 = head 0
              let o1, t1 = head 1
              Expect.equal t0 2 "head 0 stops after its second step"
              Expect.isGreaterThan t1 2 "head 1 goes on"

              for j in 0 .. d - 1 do
                  Expect.floatClose Accuracy.veryHigh out[j] o0[j] $"head 0, component {j}"
                  Expect.floatClose Accuracy.veryHigh out[d + j] o1[j] $"head 1, component {j}"
          }

          test "gradients through the early stop, away from its switching points, in float64" {
              let q = tensor 7 [| 2; 2; 3; 4 |] -1.0 1.0 0.0
              let k = tensor 8 [| 2; 2; 5; 4 |] -1.0 1.0 0.0
              let v = tensor 9 [| 2; 2; 5; 3 |] -1.0 1.0 0.0

              let f (ts: Tensor[]) =
                  let a =
                      PartialForgetting.associateUntil (Some 1e-3) 0.7 4 ReluUnit 0.0 None eval ts[0] ts[1] ts[2]

                  a.Output * tensor 10 a.Output.Shape 0.5 1.5 0.0 |> Tensor.sum

              Expect.isNone (compare f [| q; k; v |]) "reverse mode against finite differences"
          }

          test "a non-positive ε is refused" {
              let q = tensor 1 [| 1; 1; 2; 3 |] -1.0 1.0 0.0

              Expect.throwsT<ArgumentException>
                  (fun () ->
                      PartialForgetting.associateUntil (Some 0.0) 1.0 2 NoUnit 0.0 None eval q q q
                      |> ignore)
                  "ε = 0"
          } ]

[<Tests>]
let headScalingTests =
    let eval = Mode.Eval

    /// Head h of [B, H, N, D] as [B, 1, N, D].
    let headOf (h: int) (t: Tensor) =
        let s = t.Shape

        Tensor.permute [| 1; 0; 2; 3 |] t
        |> Tensor.index h
        |> Tensor.reshape [| s[0]; 1; s[2]; s[3] |]

    testList
        "Hopfield β per head"
        [ test "each head with its own β equals that head run alone with it (2 steps, ReLU)" {
              let q = tensor 1 [| 2; 3; 4; 5 |] -1.0 1.0 0.0
              let k = tensor 2 [| 2; 3; 6; 5 |] -1.0 1.0 0.0
              let v = tensor 3 [| 2; 3; 6; 2 |] -1.0 1.0 0.0
              let betas = [| 0.3; 1.0; 2.5 |]

              let all = PartialForgetting.associateWith None betas 2 ReluUnit 0.0 None eval q k v

              for h in 0..2 do
                  let alone =
                      PartialForgetting.associate
                          betas[h]
                          2
                          ReluUnit
                          0.0
                          None
                          eval
                          (headOf h q)
                          (headOf h k)
                          (headOf h v)

                  let a, b = (headOf h all.Output).ToFloat64Array(), alone.Output.ToFloat64Array()

                  for i in 0 .. a.Length - 1 do
                      Expect.floatClose Accuracy.veryHigh a[i] b[i] $"head {h}, element {i}"
          }

          test "gradients with a β per head, in float64" {
              let q = tensor 4 [| 2; 2; 3; 4 |] -1.0 1.0 0.0
              let k = tensor 5 [| 2; 2; 5; 4 |] -1.0 1.0 0.0
              let v = tensor 6 [| 2; 2; 5; 3 |] -1.0 1.0 0.0

              let f (ts: Tensor[]) =
                  let a =
                      PartialForgetting.associateWith None [| 0.5; 1.7 |] 2 NoUnit 0.0 None eval ts[0] ts[1] ts[2]

                  a.Output * tensor 7 a.Output.Shape 0.5 1.5 0.0 |> Tensor.sum

              Expect.isNone (compare f [| q; k; v |]) "reverse mode against finite differences"
          }

          test "a layer with a β per head uses them; a wrong count or a non-positive β is refused" {
              let s =
                  { HopfieldSettings.Default with
                      Heads = 2
                      HeadScaling = [ 0.5; 2.0 ] }

              let layer = PartialForgetting.pooling s 4 1
              let p = layer.Init (Rng.create 3L) Float64
              let bag = tensor 4 [| 2; 5; 4 |] -1.0 1.0 0.0
              let y = Layer.apply layer eval p bag

              let same =
                  Layer.apply (PartialForgetting.pooling { s with HeadScaling = [] } 4 1) eval p bag

              Expect.notEqual (y.ToFloat64Array()) (same.ToFloat64Array()) "β per head changes the output"

              Expect.throwsT<ArgumentException>
                  (fun () ->
                      Layer.apply (PartialForgetting.pooling { s with HeadScaling = [ 1.0 ] } 4 1) eval p bag
                      |> ignore)
                  "one β for two heads"

              Expect.throwsT<ArgumentException>
                  (fun () ->
                      Layer.apply (PartialForgetting.pooling { s with HeadScaling = [ 1.0; 0.0 ] } 4 1) eval p bag
                      |> ignore)
                  "β = 0"
          } ]

[<Tests>]
let biasKvTests =
    let settings =
        { HopfieldSettings.Default with
            Heads = 2
            AddBiasKv = true }

    testList
        "Hopfield add_bias_kv"
        [ test "every real key masked: each query retrieves the bias value, through the output projection" {
              let layer =
                  PartialForgetting.hopfieldMasked settings 4 4 (Some(Tensor.zeros Float64 [| 1; 1; 1; 5 |]))

              let p = layer.Init (Rng.create 3L) Float64
              let state = tensor 1 [| 2; 3; 4 |] -1.0 1.0 0.0
              let stored = tensor 2 [| 2; 5; 4 |] -1.0 1.0 0.0
              let z, _ = layer.Forward Mode.Eval p state stored
              let bv = Params.tensor "bias_v" p
              Expect.equal bv.Shape [| 4 |] "one value of 2 per head"
              Expect.equal (Params.tensor "bias_k" p).Shape [| 4 |] "one key of 2 per head"

              let expected =
                  (Tensor.matmul (Tensor.reshape [| 1; 4 |] bv) (Params.tensor "out/weight" p)
                   + Params.tensor "out/bias" p)
                      .ToFloat64Array()

              let got = z.ToFloat64Array()

              for i in 0 .. got.Length - 1 do
                  Expect.floatClose Accuracy.veryHigh got[i] expected[i % 4] $"element {i}"

              let plain =
                  (PartialForgetting.hopfield HopfieldSettings.Default 4 4).Init (Rng.create 3L) Float64

              Expect.isFalse
                  (Params.flatten plain |> List.exists (fun (path, _) -> path.Contains "bias_k"))
                  "off by default"
          }

          test "gradients through a layer with add_bias_kv and a PFU, in float64" {
              let layer =
                  PartialForgetting.hopfield
                      { settings with
                          Unit = Pfu { PfuSettings.Default with Sigma = 0.0 } }
                      4
                      4

              let p = layer.Init (Rng.create 5L) Float64
              let state = tensor 3 [| 2; 3; 4 |] -1.0 1.0 0.0
              let stored = tensor 4 [| 2; 5; 4 |] -1.0 1.0 0.0

              let f (ts: Tensor[]) =
                  let z, _ = layer.Forward Mode.Eval (Params.withTensors p ts) state stored
                  z * tensor 6 z.Shape 0.5 1.5 0.0 |> Tensor.sum

              let ts = Params.tensors p |> Array.map (fun t -> t * 20.0)
              Expect.isNone (compare f ts) "reverse mode against finite differences"
          } ]

/// A layer's parameters replaced by draws in [−1, 1] (its initial biases are 0 and its γ 1: drawn, every
/// term of the hand computation matters).
let private drawn (seed: int) (p: Params) =
    Params.tensors p
    |> Array.mapi (fun i t -> tensor (seed + 100 + i) t.Shape -1.0 1.0 0.0)
    |> Params.withTensors p

/// The association matrix a layer recorded, [B, H, Q, K].
let private associationOf trace =
    (Trace.tagged PartialForgetting.AssociationTag trace |> List.exactlyOne).Value

[<Tests>]
let zeroAssociationTests =
    let plain =
        { HopfieldSettings.Plain 0.8 with
            AddZeroAssociation = true }

    let layerSizes =
        gen {
            let! b, h = Gen.zip (Gen.choose (1, 3)) (Gen.choose (1, 3))
            let! q, k, d = Gen.zip3 (Gen.choose (1, 4)) (Gen.choose (1, 5)) (Gen.choose (1, 4))
            let! seed = seeds
            return b, h, q, k, d, seed
        }

    testList
        "Hopfield add_zero_association"
        [ Checks.forAll
              "unprojected: the steps of softmax over [β ξ·y, β ξ·0] with a zero value, by a direct loop"
              50
              (Gen.zip layerSizes (Gen.choose (1, 3)))
              (fun ((b, _, q, k, d, seed), steps) ->
                  let layer = PartialForgetting.hopfield { plain with UpdateSteps = steps } d d
                  let p = layer.Init (Rng.create 1L) Float64
                  let state = tensor seed [| b; q; d |] -1.0 1.0 0.0
                  let stored = tensor (seed + 1) [| b; k; d |] -1.0 1.0 0.0
                  let z, trace = layer.Forward eval p state stored
                  let a = associationOf trace
                  let xs, ys = state.ToFloat64Array(), stored.ToFloat64Array()

                  // hflayers' loop with the zero pattern as key k and value k: ξ ← Σ_j p_j y_j, p over K + 1.
                  let expectedZ = Array.zeroCreate (b * q * d)
                  let expectedA = Array.zeroCreate (b * q * (k + 1))

                  for bi in 0 .. b - 1 do
                      for i in 0 .. q - 1 do
                          let mutable xi = Array.init d (fun c -> xs[(bi * q + i) * d + c])
                          let mutable weights = [||]

                          for _ in 1..steps do
                              let e =
                                  Array.init (k + 1) (fun j ->
                                      if j = k then
                                          exp 0.0
                                      else
                                          exp (
                                              0.8
                                              * Seq.sum (
                                                  seq { for c in 0 .. d - 1 -> xi[c] * ys[(bi * k + j) * d + c] }
                                              )
                                          ))

                              let total = Array.sum e
                              weights <- e |> Array.map (fun x -> x / total)

                              xi <-
                                  Array.init d (fun c ->
                                      Seq.sum (seq { for j in 0 .. k - 1 -> weights[j] * ys[(bi * k + j) * d + c] }))

                          for c in 0 .. d - 1 do
                              expectedZ[(bi * q + i) * d + c] <- xi[c]

                          for j in 0..k do
                              expectedA[(bi * q + i) * (k + 1) + j] <- weights[j]

                  let close (x: float[]) (y: float[]) =
                      x.Length = y.Length
                      && Array.forall2 (fun (u: float) v -> abs (u - v) < 1e-12) x y

                  a.Shape = [| b; 1; q; k + 1 |]
                  && close (z.ToFloat64Array()) expectedZ
                  && close (a.ToFloat64Array()) expectedA
                  && rowSums a |> Array.forall (fun s -> abs (s - 1.0) < 1e-12)
                  // Over the real keys alone: less than 1, the rest went to the zero pattern.
                  && Array.chunkBySize (k + 1) (a.ToFloat64Array())
                     |> Array.forall (fun row -> Array.sum row[.. k - 1] < 1.0 && row[k] > 0.0))

          Checks.forAll
              "projected, several heads: the real keys' weights renormalised are the layer's without it, the output scaled by their mass"
              50
              layerSizes
              (fun (b, h, q, k, d, seed) ->
                  let s =
                      { HopfieldSettings.Default with
                          Heads = h
                          HiddenSize = Some d
                          OutProjection = false }

                  let without = PartialForgetting.hopfield s 4 3
                  let p = drawn seed (without.Init (Rng.create 2L) Float64)
                  let state = tensor seed [| b; q; 4 |] -1.0 1.0 0.0
                  let stored = tensor (seed + 1) [| b; k; 3 |] -1.0 1.0 0.0
                  let z0, trace0 = without.Forward eval p state stored

                  let z1, trace1 =
                      (PartialForgetting.hopfield { s with AddZeroAssociation = true } 4 3).Forward eval p state stored

                  let a0 = (associationOf trace0).ToFloat64Array()
                  let a1 = (associationOf trace1).ToFloat64Array()
                  let rows0, rows1 = Array.chunkBySize k a0, Array.chunkBySize (k + 1) a1

                  // Rows are (b, head, query); the real keys' mass of row (bi, hi, i) scales head hi of z.
                  let mass = rows1 |> Array.map (fun r -> Array.sum r[.. k - 1])
                  let z0s, z1s = z0.ToFloat64Array(), z1.ToFloat64Array()

                  let outputs =
                      Seq.forall
                          (fun (bi, i, hi, c) ->
                              let at = ((bi * q + i) * h + hi) * d + c
                              abs (z1s[at] - mass[(bi * h + hi) * q + i] * z0s[at]) < 1e-12)
                          (seq {
                              for bi in 0 .. b - 1 do
                                  for i in 0 .. q - 1 do
                                      for hi in 0 .. h - 1 do
                                          for c in 0 .. d - 1 -> bi, i, hi, c
                          })

                  outputs
                  && Array.forall2
                      (fun (r0: float[]) (r1: float[]) ->
                          let m = Array.sum r1[.. k - 1]

                          m < 1.0
                          && Array.forall2 (fun (x: float) y -> abs (x / m - y) < 1e-12) r1[.. k - 1] r0)
                      rows0
                      rows1)

          test "a masked layer keeps the zero pattern, beside add_bias_kv; no parameters of its own" {
              let s =
                  { HopfieldSettings.Default with
                      Heads = 2
                      AddBiasKv = true
                      AddZeroAssociation = true }

              // Every real key masked: the bias and the zero pattern remain, both kept.
              let layer =
                  PartialForgetting.hopfieldMasked s 4 4 (Some(Tensor.zeros Float64 [| 1; 1; 1; 5 |]))

              let p = layer.Init (Rng.create 3L) Float64
              let state = tensor 1 [| 2; 3; 4 |] -1.0 1.0 0.0
              let stored = tensor 2 [| 2; 5; 4 |] -1.0 1.0 0.0
              let _, trace = layer.Forward eval p state stored
              let a = associationOf trace
              Expect.equal a.Shape [| 2; 2; 3; 7 |] "5 keys, the bias pattern, the zero pattern"

              for row in Array.chunkBySize 7 (a.ToFloat64Array()) do
                  Expect.equal row[..4] (Array.zeroCreate 5) "the real keys are masked"
                  Expect.floatClose Accuracy.veryHigh (row[5] + row[6]) 1.0 "the bias and zero patterns share the row"

              let names (s: HopfieldSettings) =
                  (PartialForgetting.hopfield s 4 4).Init (Rng.create 3L) Float64
                  |> Params.flatten
                  |> List.map fst

              Expect.equal
                  (names { s with AddBiasKv = false })
                  (names HopfieldSettings.Default)
                  "no parameters of its own"
          } ]

[<Tests>]
let hopfieldSpaceTests =
    let settings =
        { HopfieldSettings.Default with
            NormalizeStored = false
            NormalizeState = false
            NormalizeProjection = false
            NormalizeHopfieldSpace = true }

    /// Layer normalisation of one row by hand, ε = 1e-5 (biased variance, as torch).
    let normRow (gamma: float[]) (beta: float[]) (x: float[]) =
        let mean = Array.average x
        let var = x |> Array.averageBy (fun v -> (v - mean) * (v - mean))
        Array.init x.Length (fun c -> (x[c] - mean) / sqrt (var + 1e-5) * gamma[c] + beta[c])

    testList
        "Hopfield normalize_hopfield_space"
        [ Checks.forAll
              "the association is softmax(β LN(r W_Q + b_Q) · LN(y W_K + b_K)) per head, by a direct loop"
              50
              (Gen.zip3 seeds (Gen.choose (1, 3)) (Gen.elements [ false; true ]))
              (fun (seed, h, affine) ->
                  let b, q, k, dr, dy, hidden = 2, 3, 4, 5, 3, 3

                  let s =
                      { settings with
                          Heads = h
                          HiddenSize = Some hidden
                          NormalizeHopfieldSpaceAffine = affine }

                  let layer = PartialForgetting.hopfield s dr dy
                  let p = drawn seed (layer.Init (Rng.create 1L) Float64)
                  let state = tensor seed [| b; q; dr |] -2.0 2.0 0.0
                  let stored = tensor (seed + 1) [| b; k; dy |] -2.0 2.0 0.0
                  let _, trace = layer.Forward eval p state stored
                  let a = (associationOf trace).ToFloat64Array()
                  let arr (name: string) = (Params.tensor name p).ToFloat64Array()

                  let gamma, beta =
                      if affine then
                          arr "norm_hopfield/gamma", arr "norm_hopfield/beta"
                      else
                          Array.create hidden 1.0, Array.zeroCreate hidden

                  // Row n of x [B·N, f] through weight [f, H·hidden] and bias, head hi's slice, normalised.
                  let projected (x: float[]) (f: int) (w: float[]) (bias: float[]) (n: int) (hi: int) =
                      Array.init hidden (fun c ->
                          let col = hi * hidden + c

                          bias[col]
                          + Seq.sum (seq { for i in 0 .. f - 1 -> x[n * f + i] * w[i * h * hidden + col] }))
                      |> normRow gamma beta

                  let xs, ys = state.ToFloat64Array(), stored.ToFloat64Array()
                  let beta0 = 1.0 / sqrt (float hidden)

                  seq {
                      for bi in 0 .. b - 1 do
                          for hi in 0 .. h - 1 do
                              for i in 0 .. q - 1 do
                                  let qn = projected xs dr (arr "q/weight") (arr "q/bias") (bi * q + i) hi

                                  let e =
                                      Array.init k (fun j ->
                                          let kn = projected ys dy (arr "k/weight") (arr "k/bias") (bi * k + j) hi
                                          exp (beta0 * Array.fold2 (fun acc u v -> acc + u * v) 0.0 qn kn))

                                  let total = Array.sum e

                                  for j in 0 .. k - 1 ->
                                      abs (a[((bi * h + hi) * q + i) * k + j] - e[j] / total) < 1e-12
                  }
                  |> Seq.forall id)

          Checks.forAll
              "without affine the layer is invariant to shifting and rescaling each head's queries and keys"
              50
              seeds
              (fun seed ->
                  // LN(c x + m) = LN(x) for c > 0 and m a constant of the row: exactly for a shift; for a
                  // scale up to ε = 1e-5 against c² times the rows' variance, so two large scales are
                  // compared (ε's share below 1e-11 / the row's variance). A shift or scale per head would change a
                  // normalisation over the whole [H·hidden] row: only one per head passes.
                  let h, hidden = 2, 3

                  let layer =
                      PartialForgetting.hopfield
                          { settings with
                              Heads = h
                              HiddenSize = Some hidden }
                          4
                          4

                  let p = drawn seed (layer.Init (Rng.create 1L) Float64)

                  let perHead (values: float[]) =
                      Tensor.ofFloat64 [| h * hidden |] (Array.init (h * hidden) (fun i -> values[i / hidden]))

                  let moved (f: string -> Tensor -> Tensor) =
                      Params.flatten p
                      |> List.map (fun (path, t) -> f path t)
                      |> Array.ofList
                      |> Params.withTensors p

                  let shifted =
                      moved (fun path t ->
                          match path with
                          | "q/bias" -> t + perHead [| 3.0; -5.0 |]
                          | "k/bias" -> t + perHead [| -2.0; 0.5 |]
                          | _ -> t)

                  let scaled (cq: float[]) (ck: float[]) =
                      moved (fun path t ->
                          match path with
                          | "q/weight"
                          | "q/bias" -> t * perHead cq
                          | "k/weight"
                          | "k/bias" -> t * perHead ck
                          | _ -> t)

                  let state = tensor seed [| 2; 3; 4 |] -2.0 2.0 0.0
                  let stored = tensor (seed + 1) [| 2; 5; 4 |] -2.0 2.0 0.0
                  let run (q: Params) = fst (layer.Forward eval q state stored)
                  let z = run p
                  let large = run (scaled [| 1000.0; 8000.0 |] [| 6000.0; 1500.0 |])

                  maxAbsDiff z (run shifted) < 1e-12
                  && maxAbsDiff large (run (scaled [| 8000.0; 2000.0 |] [| 1500.0; 9000.0 |])) < 1e-5)

          test "its parameters: γ, β of the head dimension with affine, none without; affine alone is refused" {
              let names (s: HopfieldSettings) =
                  (PartialForgetting.hopfield s 8 6).Init (Rng.create 1L) Float64
                  |> Params.flatten
                  |> List.map (fun (n, t) -> n, List.ofArray t.Shape)
                  |> List.filter (fun (n, _) -> n.StartsWith "norm_hopfield")

              let s = { settings with Heads = 2 }
              Expect.equal (names s) [] "no parameters without affine"

              Expect.equal
                  (names
                      { s with
                          NormalizeHopfieldSpaceAffine = true })
                  [ "norm_hopfield/beta", [ 4 ]; "norm_hopfield/gamma", [ 4 ] ]
                  "one pair of the head dimension 8 / 2, shared by queries, keys and heads"

              let message =
                  oneLine (fun () ->
                      PartialForgetting.hopfield
                          { HopfieldSettings.Default with
                              NormalizeHopfieldSpaceAffine = true }
                          4
                          4
                      |> ignore)

              Expect.stringContains message "NormalizeHopfieldSpace" "names the missing option"
          } ]

[<Tests>]
let associationActivationTests =
    testList
        "Hopfield association_activation"
        [ Checks.forAll "the layer's output through the activation, elementwise, for each layer" 30 seeds (fun seed ->
              let s =
                  { HopfieldSettings.Default with
                      Heads = 2 }

              let bag = tensor seed [| 2; 5; 4 |] -1.0 1.0 0.0

              AssociationActivation.All
              |> List.forall (fun act ->
                  let withAct =
                      { s with
                          AssociationActivation = Some act }

                  let pairs: (Layer * Layer) list =
                      [ PartialForgetting.pooling s 4 2, PartialForgetting.pooling withAct 4 2
                        PartialForgetting.lookup s 4 3 false, PartialForgetting.lookup withAct 4 3 false
                        Layer2.self (PartialForgetting.hopfield s 4 4),
                        Layer2.self (PartialForgetting.hopfield withAct 4 4) ]

                  pairs
                  |> List.forall (fun (plain, activated) ->
                      let p = drawn seed (plain.Init (Rng.create 1L) Float64)
                      let y = Layer.apply plain eval p bag

                      maxAbsDiff (act.Apply y) (Layer.apply activated eval p bag) = 0.0
                      && AssociationActivation.Parse act.Name = act)))

          test "an unknown activation is refused, naming the known ones" {
              let message = oneLine (fun () -> AssociationActivation.Parse "softmax" |> ignore)
              Expect.stringContains message "relu, tanh, sigmoid" "the known names"
          }

          test "gradients through a layer with every new option and a PFU, in float64" {
              let s =
                  { HopfieldSettings.Default with
                      Heads = 2
                      UpdateSteps = 2
                      AddBiasKv = true
                      AddZeroAssociation = true
                      NormalizeHopfieldSpace = true
                      NormalizeHopfieldSpaceAffine = true
                      AssociationActivation = Some AssociationActivation.Tanh
                      Unit = Pfu { PfuSettings.Default with Sigma = 0.0 } }

              let layer = PartialForgetting.hopfield s 4 4
              let p = drawn 7 (layer.Init (Rng.create 5L) Float64)
              let state = tensor 3 [| 2; 3; 4 |] -1.0 1.0 0.0
              let stored = tensor 4 [| 2; 5; 4 |] -1.0 1.0 0.0

              let f (ts: Tensor[]) =
                  let z, _ = layer.Forward eval (Params.withTensors p ts) state stored
                  z * tensor 6 z.Shape 0.5 1.5 0.0 |> Tensor.sum

              Expect.isNone (compare f (Params.tensors p)) "reverse mode against finite differences"
          }

          test "gradients through pooling with the Hopfield space normalised, without affine, and a zero association" {
              let s =
                  { HopfieldSettings.Default with
                      Heads = 2
                      NormalizeHopfieldSpace = true
                      AddZeroAssociation = true
                      AssociationActivation = Some AssociationActivation.Sigmoid }

              let layer = PartialForgetting.pooling s 4 2
              let p = drawn 9 (layer.Init (Rng.create 3L) Float64)
              let bag = tensor 4 [| 2; 5; 4 |] -1.0 1.0 0.0

              let f (ts: Tensor[]) =
                  let y = Layer.apply layer eval (Params.withTensors p ts) bag
                  y * tensor 6 y.Shape 0.5 1.5 0.0 |> Tensor.sum

              Expect.isNone (compare f (Params.tensors p)) "reverse mode against finite differences"
          } ]
