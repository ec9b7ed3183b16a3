/// How many cores the engine's kernels use, and the one way they split work across them.
///
/// The rule that keeps the engine deterministic: a kernel splits its work by output tiles, each
/// written by exactly one worker, and never splits a reduction (a sum over k, a mean over a batch)
/// across workers. Every output element is then computed by the same sequence of floating-point
/// operations whatever the thread count, so results are bit-identical with 1 thread or 64.
[<RequireQualifiedAccess>]
module Forgetting.Tensors.Parallelism

open System
open System.Runtime.ExceptionServices
open System.Threading
open System.Threading.Tasks

/// The environment variable that sets the default degree of parallelism.
[<Literal>]
let EnvironmentVariable = "FORGETTING_THREADS"

let private fromEnvironment () =
    match Environment.GetEnvironmentVariable EnvironmentVariable with
    | null -> Environment.ProcessorCount
    | text when String.IsNullOrWhiteSpace text -> Environment.ProcessorCount
    | text ->
        match Int32.TryParse(text.Trim()) with
        | true, n when n >= 1 -> n
        | _ -> invalidOp $"{EnvironmentVariable}='{text}' is not a thread count: expected an integer >= 1"

// Read lazily, so that a bad value is reported at the first parallel kernel, not while loading the
// assembly; a failed read is cached and every later use reports it again.
let private initial = lazy (fromEnvironment ())

// 0 until set explicitly: then the environment (or the processor count) decides.
let mutable private explicitDegree = 0

/// The current degree of parallelism: the most workers a kernel runs at once.
let degree () : int =
    match Volatile.Read &explicitDegree with
    | 0 -> initial.Force()
    | n -> n

/// Set the degree of parallelism for every later kernel (overrides FORGETTING_THREADS).
let setDegree (n: int) : unit =
    if n < 1 then
        invalidArg (nameof n) $"the degree of parallelism must be >= 1, got {n}"

    Volatile.Write(&explicitDegree, n)

/// Run `body` with the degree set to `n`, restoring the previous setting afterwards.
let withDegree (n: int) (body: unit -> 'a) : 'a =
    let previous = Volatile.Read &explicitDegree
    setDegree n

    try
        body ()
    finally
        Volatile.Write(&explicitDegree, previous)

/// One call of forTiles handed to the crew: its tiles are claimed one at a time from `next`, so a
/// crew member that wakes after the last tile was claimed (or after the call returned) finds none
/// and touches nothing else.
[<Sealed; AllowNullLiteral>]
type private CrewJob(body: int -> unit, count: int, helpers: int) =
    [<DefaultValue>]
    val mutable Next: int

    [<DefaultValue>]
    val mutable Remaining: int

    [<DefaultValue>]
    val mutable Failure: exn

    member _.Helpers = helpers

    /// Claim and run tiles until none is left; the last tile to finish sets Remaining to 0.
    member job.Work() =
        let mutable tile = Interlocked.Increment &job.Next - 1

        while tile < count do
            try
                body tile
            with e ->
                Interlocked.CompareExchange(&job.Failure, e, null) |> ignore

            Interlocked.Decrement &job.Remaining |> ignore
            tile <- Interlocked.Increment &job.Next - 1

/// Threads that stay awake for a while after a kernel, waiting for the next one. A training step
/// runs many kernels of 50-500 us each with short single-threaded gaps between them; waking a
/// sleeping thread-pool thread for each one cost 50-100 us on the 2-vCPU VMs measured
/// (bench/RESULTS.md), as much as the second core saved. A crew member spins on the job counter
/// for 1 ms after its last job before it blocks, as OpenBLAS's threads do: long enough to bridge
/// the single-threaded gaps of a training step (its batch's labels, the loss's read-out, a
/// collection), short enough not to hold a core through a pause.
[<Sealed>]
type private Crew(size: int) =
    static let spinTicks = Diagnostics.Stopwatch.Frequency / 1000L

    let mutable owned = 0
    let mutable generation = 0L
    let mutable current: CrewJob = null
    let asleep = Array.zeroCreate<int> size
    let wake = Array.init size (fun _ -> new SemaphoreSlim(0))

    let run (member': int) =
        let mutable seen = 0L

        while true do
            let started = Diagnostics.Stopwatch.GetTimestamp()
            let mutable spins = 0

            while Volatile.Read &generation = seen
                  && (spins < 64 || Diagnostics.Stopwatch.GetTimestamp() - started < spinTicks) do
                Thread.SpinWait 8
                spins <- spins + 1

            if Volatile.Read &generation = seen then
                // Announce the sleep, then look again: a caller that bumped the generation before
                // seeing the announcement has not released us, one that saw it will (or has).
                Interlocked.Exchange(&asleep[member'], 1) |> ignore

                if Volatile.Read &generation = seen then
                    wake[member'].Wait()
                elif Interlocked.Exchange(&asleep[member'], 0) = 0 then
                    // The caller took the announcement back and released us: consume it.
                    wake[member'].Wait()

            seen <- Volatile.Read &generation
            let job = Volatile.Read &current

            if not (isNull job) && member' < job.Helpers then
                job.Work()

    do
        for m in 0 .. size - 1 do
            let thread =
                Thread((fun () -> run m), IsBackground = true, Name = $"forgetting-crew-{m}")

            thread.Start()

    member _.Size = size

    /// Run the job's tiles on the calling thread and up to job.Helpers crew members; false when
    /// another call owns the crew (a concurrent or nested forTiles), which then runs elsewhere.
    member _.TryRun(job: CrewJob) : bool =
        if Interlocked.CompareExchange(&owned, 1, 0) <> 0 then
            false
        else
            try
                Volatile.Write(&current, job)
                Interlocked.Increment &generation |> ignore

                for m in 0 .. job.Helpers - 1 do
                    if Interlocked.Exchange(&asleep[m], 0) = 1 then
                        wake[m].Release() |> ignore

                job.Work()
                let mutable wait = SpinWait()

                // Never Sleep(1) while waiting for the last tile: a millisecond is longer than most kernels.
                while Volatile.Read &job.Remaining > 0 do
                    wait.SpinOnce(-1)

                true
            finally
                Volatile.Write(&owned, 0)

// Created at the first parallel kernel, with one member per core beyond the caller's.
let private crew = lazy (Crew(max 1 (Environment.ProcessorCount - 1)))

/// Run `body` on every tile index 0 .. count-1, over at most `degree ()` workers; inline on the
/// calling thread when there is one worker or one tile. Each index must write only its own outputs.
let forTiles (count: int) (body: int -> unit) : unit =
    if count < 0 then
        invalidArg (nameof count) $"the tile count must be >= 0, got {count}"

    let workers = min (degree ()) count

    if workers <= 1 then
        for tile in 0 .. count - 1 do
            body tile
    else
        let crew = crew.Force()
        let job = CrewJob(body, count, min crew.Size (workers - 1))
        job.Remaining <- count

        if crew.TryRun job then
            if not (isNull job.Failure) then
                ExceptionDispatchInfo.Capture(job.Failure).Throw()
        else
            try
                Parallel.For(0, count, ParallelOptions(MaxDegreeOfParallelism = workers), Action<int> body)
                |> ignore
            with :? AggregateException as e when e.InnerExceptions.Count = 1 ->
                // A kernel's own exception (an argument check, a native failure) is more useful to
                // the caller than the wrapper Parallel.For puts around it.
                ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw()

// Below about this many elements of work a hand-off to a crew member (about a microsecond) costs
// more than the second core saves on a streaming kernel: a product of two float32 arrays of 8,192
// elements took 6.6 us on one thread and 2.6 us on two, 4,096 elements 3.0 and 2.6 us.
let private rangeThreshold = 1L <<< 14

/// Run `body start stop` over consecutive ranges that together cover 0 .. count-1, one range per
/// worker, when count · elementsPerIndex is large enough for a hand-off to pay; else one range on the
/// calling thread. For kernels whose indices (rows, chunks) are independent: each index must write
/// only its own outputs, so the split does not change any result.
let forRanges (count: int) (elementsPerIndex: int) (body: int -> int -> unit) : unit =
    let workers =
        if int64 count * int64 elementsPerIndex < rangeThreshold then
            1
        else
            min (degree ()) count

    if workers <= 1 then
        body 0 count
    else
        forTiles workers (fun w ->
            body (int (int64 count * int64 w / int64 workers)) (int (int64 count * int64 (w + 1) / int64 workers)))
