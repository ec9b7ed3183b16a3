/// `forgetting bench`: whole-workload timings, one JSON object per line, to set beside
/// bench/torch_bench.py's lines for the same workloads on the same machine.
module Forgetting.Cli.Commands.BenchCommand

open Argu
open Forgetting.Bench
open Forgetting.Cli
open Forgetting.Cli.Json

type Workload =
    | Gemm
    | Mlp
    | [<CustomCommandLine("mlp-forgetting")>] Mlp_Forgetting
    | Fisher
    | Mas
    | [<CustomCommandLine("ewc-step")>] Ewc_Step
    /// Not part of `all`: the plain and the forgetting-layer step alternated in one process.
    | [<CustomCommandLine("mlp-pair")>] Mlp_Pair
    | Bnn
    | Hopfield
    | [<CustomCommandLine("vit-epoch")>] Vit_Epoch
    | Epoch
    | [<CustomCommandLine("epoch-forgetting")>] Epoch_Forgetting
    | All

type BenchArgs =
    | [<Unique>] Workload of Workload
    | [<Unique>] Batch of int
    | [<Unique>] Steps of int
    | [<Unique>] Reps of int
    | [<Unique>] Samples of int
    | [<Unique>] Images of int

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Workload _ -> "what to time (default all)."
            | Batch _ ->
                "mlp, ewc-step, vit-epoch, epoch: the batch size (default 128); hopfield: the queries (default 128); bnn: the batch size (default 100, the reference's)."
            | Steps _ -> "mlp, ewc-step: timed training steps (default 200)."
            | Reps _ ->
                "gemm: timed products per size (default 50); fisher, mas: timed estimates (default 10); hopfield: timed passes (default 200); vit-epoch, epoch: timed epochs (default 1)."
            | Samples _ -> "fisher, mas: the samples of one estimate (default 1000)."
            | Images _ ->
                "vit-epoch, epoch: the random 28×28 images of one epoch (default 60000, Fashion-MNIST's training set)."

let private positive name (v: int) =
    if v < 1 then
        raise (UserError($"--{name} must be at least 1, got {v}", Exit.usage))

    v

/// Which GEMM path and how many threads the timings used.
let private engine () =
    [ "gemm",
      Str(
          match Forgetting.Tensors.Gemm.provider () with
          | Forgetting.Tensors.Gemm.Managed -> "managed"
          | Forgetting.Tensors.Gemm.OpenBlas -> "openblas"
      )
      "threads", Int(Forgetting.Tensors.Parallelism.degree ()) ]

let private memory (t: Timing) =
    [ "peak_rss_mb", Num t.PeakWorkingSetMb
      "heap_early_mb", Num t.HeapEarlyMb
      "heap_end_mb", Num t.HeapEndMb ]

let private gemmLines reps =
    for m, k, n in [ 1024, 1024, 1024; 128, 784, 256 ] do
        let t, gflops, allocating = Workloads.gemm m k n reps

        Obj(
            [ "workload", Str "gemm"
              "impl", Str "forgetting"
              "m", Int m
              "k", Int k
              "n", Int n
              "dtype", Str "float32"
              "ms_median", Num t.Median
              "gflops", Num gflops
              "ms_median_allocating", Num allocating.Median ]
            @ engine ()
        )
        |> render false
        |> printfn "%s"

/// One timed training step's line: the median, the throughput and the final loss.
let private stepLine (workload: string) batch steps ((t: Timing), (loss: float)) =
    Obj(
        [ "workload", Str workload
          "impl", Str "forgetting"
          "batch", Int batch
          "steps", Int steps
          "ms_per_step_median", Num t.Median
          "samples_per_s", Num(float batch / (t.Median / 1000.0))
          "final_loss", Num loss ]
        @ engine ()
        @ memory t
    )
    |> render false
    |> printfn "%s"

let private mlpLine (workload: string) (variant: string) batch steps =
    Workloads.mlp variant batch steps |> stepLine workload batch steps

/// The empirical per-sample Fisher of `samples` inputs: one line, the time per estimate.
let private fisherLine samples reps =
    let t, checksum = Workloads.fisher samples reps

    Obj(
        [ "workload", Str "fisher"
          "impl", Str "forgetting"
          "method", Str "batched"
          "batch", Int samples
          "reps", Int reps
          "ms_per_step_median", Num t.Median
          "samples_per_s", Num(float samples / (t.Median / 1000.0))
          "fisher_sum", Num checksum ]
        @ engine ()
        @ memory t
    )
    |> render false
    |> printfn "%s"

/// Global per-sample MAS of `samples` inputs: one line for the batched |A|ᵀ|G| pass, one for the exact
/// per-sample loop of the same engine (fewer repetitions: it is slow), and their ratio.
let private masLines samples reps =
    let batched, checksum = Workloads.mas false samples reps
    let looped, loopChecksum = Workloads.mas true samples (max 1 (reps / 5))

    for method, (t: Timing), sum in [ "batched", batched, checksum; "loop", looped, loopChecksum ] do
        Obj(
            [ "workload", Str "mas"
              "impl", Str "forgetting"
              "method", Str method
              "batch", Int samples
              "reps", Int t.Milliseconds.Length
              "ms_per_step_median", Num t.Median
              "samples_per_s", Num(float samples / (t.Median / 1000.0))
              "omega_sum", Num sum ]
            @ (if method = "batched" then
                   [ "ratio_to_loop", Num(batched.Median / looped.Median) ]
               else
                   [])
            @ engine ()
            @ memory t
        )
        |> render false
        |> printfn "%s"

/// One step of the binarized 784-1024-1024-10 net with metaplastic Adam: one line.
let private bnnLine batch steps =
    Workloads.bnn batch steps |> stepLine "bnn" batch steps

/// One SGD step with an EWC penalty beside the plain step, timed in alternation: one line.
let private ewcLine batch steps =
    let plain, ewc, penalty = Workloads.ewcStep batch steps

    Obj(
        [ "workload", Str "ewc-step"
          "impl", Str "forgetting"
          "batch", Int batch
          "steps", Int steps
          "ms_per_step_median", Num ewc.Median
          "plain_ms_per_step_median", Num plain.Median
          "ratio", Num(ewc.Median / plain.Median)
          "final_penalty", Num penalty ]
        @ engine ()
        @ memory ewc
    )
    |> render false
    |> printfn "%s"

/// Modern Hopfield retrieval, forward and backward, of `queries` states against 1024 stored patterns of
/// dimension 64: one line.
let private hopfieldLine queries reps =
    let stored, dim = 1024, 64
    let t, checksum = Workloads.hopfield stored queries dim reps

    Obj(
        [ "workload", Str "hopfield"
          "impl", Str "forgetting"
          "batch", Int queries
          "stored", Int stored
          "dim", Int dim
          "reps", Int reps
          "ms_per_step_median", Num t.Median
          "checksum", Num checksum ]
        @ engine ()
        @ memory t
    )
    |> render false
    |> printfn "%s"

/// What the steps of the last timed epoch allocated: early against late shows growth from step to step.
let private allocation (a: StepAllocation) =
    [ "alloc_bytes_per_step_early", Num a.EarlyBytesPerStep
      "alloc_bytes_per_step_late", Num a.LateBytesPerStep
      "alloc_bytes_per_step_mean", Num a.MeanBytesPerStep
      "alloc_window_steps", Int a.Window ]

/// One timed epoch's line: the median epoch, the throughput, the final loss and the allocations.
let private epochLine (workload: string) images batch reps ((t: Timing), (loss: float), a) =
    Obj(
        [ "workload", Str workload
          "impl", Str "forgetting"
          "batch", Int batch
          "images", Int images
          "reps", Int reps
          "ms_per_step_median", Num t.Median
          "samples_per_s", Num(float images / (t.Median / 1000.0))
          "final_loss", Num loss ]
        @ engine ()
        @ memory t
        @ allocation a
    )
    |> render false
    |> printfn "%s"

/// One training epoch of the small vision transformer on `images` random images: one line.
let private vitLine images batch reps =
    Workloads.vitEpoch images batch reps |> epochLine "vit-epoch" images batch reps

/// One training epoch of the MLP (`sgd` plain, `lateral_inhibition` with forgetting layers) on `images`
/// random inputs, the gather of each batch included: one line.
let private mlpEpochLine (workload: string) (variant: string) images batch reps =
    Workloads.epoch variant images batch reps
    |> epochLine workload images batch reps

/// The plain and the forgetting-layer MLP steps alternated in one process: one line with both medians
/// and their ratio (the goal of issue #14: under 1.3).
let private mlpPairLine batch steps =
    let plain, forgetting = Workloads.mlpPair batch steps

    Obj(
        [ "workload", Str "mlp-pair"
          "impl", Str "forgetting"
          "batch", Int batch
          "steps", Int steps
          "ms_per_step_median", Num forgetting.Median
          "plain_ms_per_step_median", Num plain.Median
          "plain_ms_per_step_min", Num(Array.min plain.Milliseconds)
          "ms_per_step_min", Num(Array.min forgetting.Milliseconds)
          "ratio", Num(forgetting.Median / plain.Median) ]
        @ engine ()
        @ memory forgetting
    )
    |> render false
    |> printfn "%s"

let run (args: ParseResults<BenchArgs>) =
    let batch = args.GetResult(Batch, defaultValue = 128) |> positive "batch"
    let steps = args.GetResult(Steps, defaultValue = 200) |> positive "steps"
    let reps = args.TryGetResult Reps |> Option.map (positive "reps")
    let samples = args.GetResult(Samples, defaultValue = 1000) |> positive "samples"
    let bnnBatch = args.GetResult(Batch, defaultValue = 100) |> positive "batch"
    let images = args.GetResult(Images, defaultValue = 60000) |> positive "images"

    let gemmReps = reps |> Option.defaultValue 50
    let fisherReps = reps |> Option.defaultValue 10
    let hopfieldReps = reps |> Option.defaultValue 200
    let epochReps = reps |> Option.defaultValue 1

    match args.GetResult(Workload, defaultValue = All) with
    | Gemm -> gemmLines gemmReps
    | Mlp -> mlpLine "mlp" "sgd" batch steps
    | Mlp_Forgetting -> mlpLine "mlp-forgetting" "lateral_inhibition" batch steps
    | Fisher -> fisherLine samples fisherReps
    | Mas -> masLines samples fisherReps
    | Ewc_Step -> ewcLine batch steps
    | Mlp_Pair -> mlpPairLine batch steps
    | Bnn -> bnnLine bnnBatch steps
    | Hopfield -> hopfieldLine batch hopfieldReps
    | Vit_Epoch -> vitLine images batch epochReps
    | Epoch -> mlpEpochLine "epoch" "sgd" images batch epochReps
    | Epoch_Forgetting -> mlpEpochLine "epoch-forgetting" "lateral_inhibition" images batch epochReps
    | All ->
        gemmLines gemmReps
        mlpLine "mlp" "sgd" batch steps
        mlpLine "mlp-forgetting" "lateral_inhibition" batch steps
        fisherLine samples fisherReps
        masLines samples fisherReps
        ewcLine batch steps
        bnnLine bnnBatch steps
        hopfieldLine batch hopfieldReps
        vitLine images batch epochReps
        mlpEpochLine "epoch" "sgd" images batch epochReps
        mlpEpochLine "epoch-forgetting" "lateral_inhibition" images batch epochReps
