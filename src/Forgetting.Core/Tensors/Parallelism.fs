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
        try
            Parallel.For(0, count, ParallelOptions(MaxDegreeOfParallelism = workers), Action<int> body)
            |> ignore
        with :? AggregateException as e when e.InnerExceptions.Count = 1 ->
            // A kernel's own exception (an argument check, a native failure) is more useful to the
            // caller than the wrapper Parallel.For puts around it.
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw()

// Below about this many elements of work a hand-off to another worker (some microseconds) costs more
// than the second core saves on a streaming kernel.
let private rangeThreshold = 1L <<< 16

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
