namespace Forgetting.Bench

open System
open System.Diagnostics
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Training
open Forgetting.Mechanisms
open Forgetting.Experiments

/// Timings of one workload: per-repetition milliseconds and what the memory did.
type Timing =
    {
        Milliseconds: float[]
        /// Managed heap after a full collection, early in the run and at its end (MB).
        HeapEarlyMb: float
        HeapEndMb: float
        PeakWorkingSetMb: float
    }

    member t.Median =
        let s = Array.sort t.Milliseconds
        let n = s.Length

        if n % 2 = 1 then
            s[n / 2]
        else
            (s[n / 2 - 1] + s[n / 2]) / 2.0

/// Bytes allocated on the managed heap per training step (all threads, from the batch's gather to the
/// end of its step) in one epoch: early and late alike means the steps' allocations do not grow as the
/// epoch goes on.
type StepAllocation =
    {
        /// Mean over the epoch's first `Window` steps.
        EarlyBytesPerStep: float
        /// Mean over the `Window` steps before the epoch's last one.
        LateBytesPerStep: float
        /// Mean over all the epoch's steps.
        MeanBytesPerStep: float
        Window: int
    }

/// The benchmark workloads of `forgetting bench`: whole-workload timings, medians over repetitions
/// after a warm-up, compared against bench/torch_bench.py on the same machine.
[<RequireQualifiedAccess>]
module Workloads =

    let private heapMb () =
        float (GC.GetTotalMemory true) / 1048576.0

    /// Run `step` warm-up times untimed, then `reps` times timed one by one.
    let time (warmup: int) (reps: int) (step: int -> unit) =
        for i in 0 .. warmup - 1 do
            step i

        let early = ref 0.0
        let sw = Stopwatch()

        let ms =
            Array.init reps (fun i ->
                if i = min 10 (reps - 1) then
                    early.Value <- heapMb ()

                sw.Restart()
                step (warmup + i)
                sw.Stop()
                sw.Elapsed.TotalMilliseconds)

        { Milliseconds = ms
          HeapEarlyMb = early.Value
          HeapEndMb = heapMb ()
          PeakWorkingSetMb = float (Process.GetCurrentProcess().PeakWorkingSet64) / 1048576.0 }

    /// C = A·B for float32 m×k by k×n, timed two ways: by `Gemm.gemm` into one C kept for every call,
    /// as torch.mm(a, b, out=c) in bench/torch_bench.py, and by `Tensor.matmul`, which allocates each
    /// product. Returns the first timing, its GFLOP/s at the median, and the second timing.
    let gemm (m: int) (k: int) (n: int) (reps: int) =
        let rng = Rng.create 1L
        let ka, kb = Rng.split rng
        let a = Tensor.uniform ka Float32 [| m; k |] -1.0 1.0
        let b = Tensor.uniform kb Float32 [| k; n |] -1.0 1.0
        let aData, bData = a.ToArray(), b.ToArray()
        let c = Array.zeroCreate<float32>(m * n)

        let into =
            time 3 reps (fun _ -> Gemm.gemm false false m n k 1.0f aData 0 k bData 0 n 0.0f c 0 n)

        let allocating = time 3 reps (fun _ -> Tensor.matmul a b |> ignore)
        into, 2.0 * float m * float k * float n / (into.Median * 1e6), allocating

    /// One plain SGD step (forward, backward, update, lr 0.01) of the MLP 784-256-256-128-10 with ReLU
    /// and cross-entropy on a fixed random batch, as in bench/torch_bench.py: `sgd` for the plain net,
    /// `lateral_inhibition` for the net with a forgetting layer after each hidden ReLU (shortcut on,
    /// ρ = 1, λ = 0.1, β = 1e-4). Returns the timing and the final loss.
    let mlp (variantName: string) (batch: int) (steps: int) =
        let variant = Variant.byName variantName
        let model = Variant.mlp variant [ 784; 256; 256; 128; 10 ]
        let objective = Variant.objective variant
        let kp, kx = Rng.split (Rng.create 1L)
        let x = Tensor.uniform kx Float32 [| batch; 784 |] 0.0 1.0
        let labels = Array.init batch (fun i -> i % 10)
        let sgd = Optim.sgd 0.01

        let batchOf =
            { Inputs = x
              Labels = labels
              Task = 0
              Outputs = 10 }

        let key = Rng.create 2L
        let mutable state = Step.init sgd objective (model.Init kp Float32)

        let t = time 10 steps (fun _ -> state <- fst (Step.run model sgd key state batchOf))

        t, (Objective.loss objective (Step.view model Mode.Eval state.Params batchOf)).Item

    /// The MLP 784-256-256-128-10 with ReLU of `mlp`, its float32 parameters, and `count` random inputs
    /// uniform in [0, 1) with labels i mod 10, as `mlp` draws them.
    let private mlpAndData (count: int) =
        let model = Variant.mlp (Variant.byName "sgd") [ 784; 256; 256; 128; 10 ]

        let kp, kx = Rng.split (Rng.create 1L)
        let x = Tensor.uniform kx Float32 [| count; 784 |] 0.0 1.0
        model, model.Init kp Float32, x, Array.init count (fun i -> i % 10)

    /// The empirical diagonal Fisher (per-sample squared gradients, `Fisher.diagonal`) of `samples`
    /// random inputs for the MLP 784-256-256-128-10, float32, as bench/torch_bench.py's `fisher`:
    /// `reps` timed estimates after two untimed ones. Returns the timing and Σ F (a checksum).
    let fisher (samples: int) (reps: int) =
        let model, p, x, labels = mlpAndData samples

        let c =
            { Model = model
              Params = p
              Task = 0
              Inputs = x
              Labels = labels
              Outputs = 10
              Rng = Rng.create 3L }

        let mutable f = Params.empty
        let t = time 2 reps (fun _ -> f <- Fisher.diagonal FisherKind.Empirical None c)
        t, Params.tensors f |> Array.sumBy (fun t -> (Tensor.sum t).Item)

    /// Global per-sample MAS (Aljundi et al. 2018, eq. 4: Ω = (1/N) Σ_k |∂‖F(x_k)‖²/∂θ|, `Mas.globalImportance`,
    /// one |A|ᵀ|G| product per dense layer) of `samples` random inputs for the MLP 784-256-256-128-10,
    /// float32, as bench/torch_bench.py's `mas`: `reps` timed estimates after two untimed ones; with
    /// `loop`, the exact per-sample loop (`SampleGradients.loop`, one forward and backward pass per sample)
    /// instead. Returns the timing and Σ Ω (a checksum).
    let mas (loop: bool) (samples: int) (reps: int) =
        let model, p, x, _ = mlpAndData samples

        let estimate () =
            if loop then
                SampleGradients.loop
                    SampleMap.Abs
                    model
                    Mode.Eval
                    (fun _ f ->
                        [ { Values = Mas.outputNorm MasNorm.SquaredL2 false f
                            Weights = None } ])
                    p
                    x
                |> Params.map (fun t -> t / float samples)
            else
                Mas.globalImportance model 0 p x

        let mutable omega = Params.empty
        let t = time (if loop then 1 else 2) reps (fun _ -> omega <- estimate ())
        t, Params.tensors omega |> Array.sumBy (fun t -> (Tensor.sum t).Item)

    /// One plain SGD step (lr 0.01) of the MLP 784-256-256-128-10 on a fixed random batch, and the same
    /// step with an EWC penalty (λ = 100, the empirical Fisher of 1000 other random inputs, anchored at
    /// the initial parameters), timed in alternation (the order swapped every pair) so that both see
    /// the same load and the same share of garbage collections. Returns the plain and the EWC timings
    /// and the EWC run's final penalty.
    let ewcStep (batch: int) (steps: int) =
        let model, p, x, labels = mlpAndData (batch + 1000)
        let sgd = Optim.sgd 0.01

        let batchOf =
            { Inputs = Tensor.slice 0 batch x
              Labels = labels[.. batch - 1]
              Task = 0
              Outputs = 10 }

        let ewc =
            (Ewc.term
                { EwcSettings.Default with
                    Lambda = 100.0
                    Fisher = FisherKind.Empirical })
                .Consolidate
                { Model = model
                  Params = p
                  Task = 0
                  Inputs = Tensor.slice batch 1000 x
                  Labels = labels[batch..]
                  Outputs = 10
                  Rng = Rng.create 3L }

        let key = Rng.create 2L
        let mutable plain = Step.init sgd Objective.taskOnly p
        let mutable penalised = Step.init sgd (Objective.ofTerms [ ewc ]) p
        let plainMs, ewcMs = ResizeArray(), ResizeArray()
        let sw = Stopwatch()
        let mutable early = 0.0

        let timed (step: unit -> unit) =
            sw.Restart()
            step ()
            sw.Stop()
            sw.Elapsed.TotalMilliseconds

        let plainStep () =
            plain <- fst (Step.run model sgd key plain batchOf)

        let ewcStep () =
            penalised <- fst (Step.run model sgd key penalised batchOf)

        for i in 0 .. 10 + steps - 1 do
            if i = 10 + min 10 (steps - 1) then
                early <- heapMb ()

            // The order swaps every pair: both steps allocate alike, and a fixed order would lock the
            // garbage collections onto one of them.
            let first, second =
                if i % 2 = 0 then
                    timed plainStep, timed ewcStep
                else
                    let e = timed ewcStep
                    timed plainStep, e

            if i >= 10 then
                plainMs.Add first
                ewcMs.Add second

        let timing (ms: ResizeArray<float>) =
            { Milliseconds = ms.ToArray()
              HeapEarlyMb = early
              HeapEndMb = heapMb ()
              PeakWorkingSetMb = float (Process.GetCurrentProcess().PeakWorkingSet64) / 1048576.0 }

        let view = Step.view model Mode.Eval penalised.Params batchOf

        timing plainMs,
        timing ewcMs,
        penalised.Objective.Terms
        |> List.choose (fun t -> t.Loss view)
        |> List.sumBy (fun t -> t.Item)

    /// Modern Hopfield retrieval ξ_new = X softmax(β Xᵀ ξ) (Ramsauer et al., ICLR 2021, eq. 3; one update
    /// step of `PartialForgetting.retrieve`, no unit) of `queries` states against `stored` patterns of
    /// dimension `dim`, both float32 N(0, 1), β = 1/√dim, forward and the backward pass of Σ ξ_new to
    /// the stored patterns and the states, as bench/torch_bench.py's `hopfield`: `reps` timed passes
    /// after ten untimed ones. Returns the timing and Σ ξ_new + Σ ∂/∂X + Σ ∂/∂ξ of the last pass (a checksum).
    let hopfield (stored: int) (queries: int) (dim: int) (reps: int) =
        let ks, kq = Rng.split (Rng.create 1L)
        let x = Tensor.normal ks Float32 [| stored; dim |] 0.0 1.0
        let xi = Tensor.normal kq Float32 [| queries; dim |] 0.0 1.0
        let beta = 1.0 / sqrt (float dim)

        let pass () =
            Tensor.valueAndGrads
                (fun ts -> Tensor.sum (PartialForgetting.retrieve beta 1 NoUnit Mode.Eval ts[0] ts[1]))
                [| x; xi |]

        let mutable last = pass ()
        let t = time 10 reps (fun _ -> last <- pass ())
        let y, g = last
        t, y.Item + (g |> Array.sumBy (fun t -> (Tensor.sum t).Item))

    /// `reps` timed training epochs of `model` from `state` over `x` and its `labels`, after ten untimed
    /// steps: each epoch a seeded permutation in batches of `batch` (the last one partial), each batch
    /// gathered from `x` when its step comes, through `Trainer.steps` (the trainer's own epoch, with its
    /// divergence checks). Returns the timing, the last epoch's mean training loss and what its steps
    /// allocated.
    let private timedEpochs
        (model: Layer)
        (optimizer: Optimizer)
        (state: TrainState)
        (x: Tensor)
        (labels: int[])
        (batch: int)
        (reps: int)
        =
        let images = labels.Length
        let count = (images + batch - 1) / batch
        let keys = Rng.splitN (reps + 1) (Rng.create 2L)
        // The managed heap's running total (all threads: the engine's workers allocate too) when each
        // step's gather starts and when its step is done; the non-precise count is off by at most the
        // threads' unfilled allocation contexts (kilobytes), against megabytes per step.
        let starts, ends = Array.zeroCreate<int64> count, Array.zeroCreate<int64> count

        let batchAt (order: int[][]) (b: int) =
            starts[b] <- GC.GetTotalAllocatedBytes false

            { Inputs = Tensor.gather order[b] x
              Labels = order[b] |> Array.map (fun i -> labels[i])
              Task = 0
              Outputs = 10 }

        let progress =
            function
            | BatchDone(_, b, _, _) -> ends[b - 1] <- GC.GetTotalAllocatedBytes false
            | EpochDone _ -> ()

        let epoch (e: int) (limit: int option) (state: TrainState) =
            let shuffleKey, dropoutKey = Rng.split keys[e]
            let order = Trainer.batches shuffleKey images batch
            let n = defaultArg limit order.Length

            let state, lossSum, _ =
                Trainer.steps model optimizer dropoutKey (e + 1) progress None state n (batchAt order)

            state, lossSum / float (Array.sumBy Array.length order[.. n - 1])

        let mutable state, loss = epoch 0 (Some(min 10 count)) state

        let t =
            time 0 reps (fun i ->
                let s, l = epoch (i + 1) None state
                state <- s
                loss <- l)

        // The epoch's last step is left out of the late window: it may be a partial batch, and it
        // alone also copies every parameter for the trainer's finiteness scan.
        let bytes = Array.init count (fun b -> float (ends[b] - starts[b]))
        let usable = max 1 (count - 1)
        let window = min 50 usable

        t,
        loss,
        { EarlyBytesPerStep = Array.average bytes[.. window - 1]
          LateBytesPerStep = Array.average bytes[usable - window .. usable - 1]
          MeanBytesPerStep = Array.average bytes
          Window = window }

    /// One training epoch of the small vision transformer (`VisionTransformer.model` with its default
    /// settings: 28×28 images in 16 patches of 7×7, width 64, 4 blocks of 4 heads, MLP ratio 4, no unit)
    /// on `images` random float32 images uniform in [0, 1) with labels i mod 10 (Fashion-MNIST's sizes at
    /// 60,000): AdamW (lr 1e-3, weight decay 0.05, gradients clipped to norm 1, as `forgetting hopfield
    /// --task vit`) over a seeded permutation in batches of `batch`, through `Trainer.steps` (the trainer's
    /// own epoch, with its divergence checks), as bench/torch_bench.py's `vit-epoch`: `reps` timed epochs
    /// after ten untimed steps. Returns the timing, the last epoch's mean training loss and what its
    /// steps allocated.
    let vitEpoch (images: int) (batch: int) (reps: int) =
        let net = VisionTransformer.model VisionTransformerSettings.Default
        let kp, kx = Rng.split (Rng.create 1L)
        let x = Tensor.uniform kx Float32 [| images; 784 |] 0.0 1.0
        let optimizer = Optim.adamW 1e-3 0.9 0.999 1e-8 0.05 |> Optim.clipped 1.0
        let state = Step.init optimizer Objective.taskOnly (net.Init kp Float32)
        timedEpochs net optimizer state x (Array.init images (fun i -> i % 10)) batch reps

    /// One training epoch of the MLP 784-256-256-128-10 of `mlp` (`sgd` plain, `lateral_inhibition` with
    /// a forgetting layer after each hidden ReLU) with plain SGD (lr 0.01) on `images` random float32
    /// inputs uniform in [0, 1) with labels i mod 10 (Fashion-MNIST's sizes at 60,000), in the epoch of
    /// `vitEpoch`: a seeded permutation in batches of `batch`, each batch gathered when its step comes,
    /// through `Trainer.steps`, as bench/torch_bench.py's `epoch` and `epoch-forgetting`; `reps` timed
    /// epochs after ten untimed steps. Unlike `mlp`'s fixed batch, it pays for the gathers and the
    /// trainer's checks. Returns the timing, the last epoch's mean training loss and what its steps
    /// allocated.
    let epoch (variantName: string) (images: int) (batch: int) (reps: int) =
        let variant = Variant.byName variantName
        let model = Variant.mlp variant [ 784; 256; 256; 128; 10 ]
        let kp, kx = Rng.split (Rng.create 1L)
        let x = Tensor.uniform kx Float32 [| images; 784 |] 0.0 1.0
        let sgd = Optim.sgd 0.01
        let state = Step.init sgd (Variant.objective variant) (model.Init kp Float32)
        timedEpochs model sgd state x (Array.init images (fun i -> i % 10)) batch reps

    /// The `mlp` step of the plain net and of the net with forgetting layers (`lateral_inhibition`),
    /// in one process and timed in alternation (the order swapped every pair), so that both see the
    /// same load: on a shared machine the ratio of the two is steadier than that of two processes.
    /// Returns the plain and the forgetting-layer timings.
    let mlpPair (batch: int) (steps: int) =
        let setup (variantName: string) =
            let variant = Variant.byName variantName
            let model = Variant.mlp variant [ 784; 256; 256; 128; 10 ]
            let kp, kx = Rng.split (Rng.create 1L)
            let x = Tensor.uniform kx Float32 [| batch; 784 |] 0.0 1.0
            let sgd = Optim.sgd 0.01

            let batchOf =
                { Inputs = x
                  Labels = Array.init batch (fun i -> i % 10)
                  Task = 0
                  Outputs = 10 }

            let mutable state =
                Step.init sgd (Variant.objective variant) (model.Init kp Float32)

            fun () -> state <- fst (Step.run model sgd (Rng.create 2L) state batchOf)

        let plainStep, forgettingStep = setup "sgd", setup "lateral_inhibition"
        let plainMs, forgettingMs = ResizeArray(), ResizeArray()
        let sw = Stopwatch()
        let mutable early = 0.0

        let timed (step: unit -> unit) =
            sw.Restart()
            step ()
            sw.Stop()
            sw.Elapsed.TotalMilliseconds

        for i in 0 .. 10 + steps - 1 do
            if i = 10 + min 10 (steps - 1) then
                early <- heapMb ()

            let first, second =
                if i % 2 = 0 then
                    let p = timed plainStep
                    p, timed forgettingStep
                else
                    let f = timed forgettingStep
                    timed plainStep, f

            if i >= 10 then
                plainMs.Add first
                forgettingMs.Add second

        let timing (ms: ResizeArray<float>) =
            { Milliseconds = ms.ToArray()
              HeapEarlyMb = early
              HeapEndMb = heapMb ()
              PeakWorkingSetMb = float (Process.GetCurrentProcess().PeakWorkingSet64) / 1048576.0 }

        timing plainMs, timing forgettingMs

    /// One training step of the binarized net 784-1024-1024-10 of Laborieux et al. 2021 (sign weights
    /// and activations, batch norm with batch statistics and learned γ, β after every layer) with
    /// metaplastic Adam (m = 1.35, lr 0.005, L2 decay 1e-7) on a fixed random batch of `batch` inputs
    /// uniform in [0, 1), as bench/torch_bench.py's `bnn`. Returns the timing and the final loss.
    let bnn (batch: int) (steps: int) =
        let spec = Recipe.binarized [ 1024; 1024 ]
        let model = ContinualRun.model spec 784 [ 10 ]
        let optimizer = (Recipe.metaplastic [ 1.35 ]).BuildFor(ContinualRun.layerOf spec)
        let kp, kx = Rng.split (Rng.create 1L)
        let x = Tensor.uniform kx Float32 [| batch; 784 |] 0.0 1.0

        let batchOf =
            { Inputs = x
              Labels = Array.init batch (fun i -> i % 10)
              Task = 0
              Outputs = 10 }

        let key = Rng.create 2L
        let mutable state = Step.init optimizer Objective.taskOnly (model.Init kp Float32)

        let t =
            time 10 steps (fun _ -> state <- fst (Step.run model optimizer key state batchOf))

        t, (Objective.loss Objective.taskOnly (Step.view model Mode.Eval state.Params batchOf)).Item
