/// Parallelism.forTiles over its crew of waiting threads: every tile runs exactly once whatever the
/// degree, a tile's exception reaches the caller as itself, and calls that find the crew busy (nested
/// in a tile, or from another thread at the same time) still run all their tiles.
module Forgetting.Tests.Tensors.ParallelismTests

open System
open System.Threading
open Expecto
open Forgetting.Tensors
open Forgetting.Tests

/// How many times each tile index ran, for `count` tiles at degree `degree`.
let private runs (degree: int) (count: int) =
    let hits = Array.zeroCreate<int> count

    Parallelism.withDegree degree (fun () ->
        Parallelism.forTiles count (fun tile -> Interlocked.Increment &hits[tile] |> ignore))

    hits

type private TileFailure(tile: int) =
    inherit Exception($"tile {tile} failed")
    member _.Tile = tile

// Busy for about `microseconds`, without sleeping: a tile long enough for a second thread to join.
let private spin (microseconds: int) =
    let until =
        Diagnostics.Stopwatch.GetTimestamp()
        + Diagnostics.Stopwatch.Frequency * int64 microseconds / 1_000_000L

    while Diagnostics.Stopwatch.GetTimestamp() < until do
        Thread.SpinWait 16

[<Tests>]
let tests =
    testList
        "parallelism"
        [ Sequencing.degreeOfParallelism
          <| testList
              "forTiles and its callers"
              [ testCase "runs every tile exactly once at degrees 1, 2 and 3"
                <| fun () ->
                    for degree in [ 1; 2; 3 ] do
                        for count in [ 0; 1; 2; 3; 7; 64; 1000 ] do
                            let hits = runs degree count

                            Expect.isTrue
                                (Array.forall ((=) 1) hits)
                                $"degree {degree}, {count} tiles: every tile once, got {hits |> Array.countBy id}"

                testCase "a second thread takes tiles, also after the crew has gone to sleep"
                <| fun () ->
                    // Between calls the crew spins for 1 ms, then blocks: the 5 ms pauses make
                    // it block, so each call also exercises its wake-up.
                    let twoThreads =
                        [ for _ in 1..20 ->
                              Thread.Sleep 5
                              let threads = Collections.Concurrent.ConcurrentDictionary<int, unit>()

                              Parallelism.withDegree 2 (fun () ->
                                  Parallelism.forTiles 4 (fun _ ->
                                      threads[Environment.CurrentManagedThreadId] <- ()
                                      spin 2000))

                              threads.Count ]

                    Expect.exists twoThreads (fun n -> n = 2) $"tiles ran on two threads in some call: {twoThreads}"

                testCase "a tile's exception reaches the caller unwrapped, and the crew works afterwards"
                <| fun () ->
                    for _ in 1..10 do
                        let thrown =
                            Expect.throwsC
                                (fun () ->
                                    Parallelism.withDegree 2 (fun () ->
                                        Parallelism.forTiles 8 (fun tile ->
                                            spin 200
                                            raise (TileFailure tile))))
                                id

                        Expect.isTrue (thrown :? TileFailure) $"the tile's own exception, got {thrown.GetType().Name}"

                    Expect.isTrue (Array.forall ((=) 1) (runs 2 100)) "every tile once after the failures"

                testCase "a forTiles nested in a tile runs all of its tiles"
                <| fun () ->
                    let hits = Array2D.zeroCreate<int> 6 50

                    Parallelism.withDegree 2 (fun () ->
                        Parallelism.forTiles 6 (fun outer ->
                            Parallelism.forTiles 50 (fun inner -> Interlocked.Increment &hits[outer, inner] |> ignore)))

                    Expect.isTrue (Seq.forall ((=) 1) (Seq.cast<int> hits)) "every (outer, inner) pair once"

                testCase "two threads calling at once each run all of their tiles"
                <| fun () ->
                    Parallelism.withDegree 2 (fun () ->
                        let results = Array.zeroCreate<int[]> 2

                        let callers =
                            [| for c in 0..1 ->
                                   Thread(fun () ->
                                       let hits = Array.zeroCreate<int> 300

                                       for _ in 1..20 do
                                           Parallelism.forTiles 150 (fun tile ->
                                               Interlocked.Increment &hits[tile] |> ignore)

                                       results[c] <- hits) |]

                        callers |> Array.iter (fun t -> t.Start())
                        callers |> Array.iter (fun t -> t.Join())

                        for c in 0..1 do
                            let hits = results[c]
                            Expect.isTrue (Array.forall ((=) 20) hits[0..149]) $"caller {c}: each tile 20 times"
                            Expect.isTrue (Array.forall ((=) 0) hits[150..]) $"caller {c}: no tile beyond the count")
                testCase "a gather split over threads copies every row it names"
                <| fun () ->
                    // 300 rows of 97: far above the split threshold of 2^14 elements.
                    let x = Tensor.uniform (Rng.create 11L) Float32 [| 500; 97 |] -1.0 1.0
                    let indices = Array.init 300 (fun i -> (i * 37 + 11) % 500)
                    let all = x.ToFloat64Array()

                    let expected =
                        [| for i in indices do
                               yield! all[i * 97 .. i * 97 + 96] |]

                    for degree in [ 1; 2 ] do
                        let g = Parallelism.withDegree degree (fun () -> Tensor.gather indices x)
                        Expect.equal g.Shape [| 300; 97 |] "the gathered shape"
                        Expect.equal (g.ToFloat64Array()) expected $"the named rows, in order, at degree {degree}" ] ]
