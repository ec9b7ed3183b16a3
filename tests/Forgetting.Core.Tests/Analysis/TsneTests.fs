module Forgetting.Tests.Analysis.TsneTests

open System
open Expecto
open FsCheck.FSharp
open Forgetting.Tensors
open Forgetting.Analysis
open Forgetting.Tests

/// n points of d standard normal features from a seed.
let private gaussian (n: int) (d: int) (seed: int64) =
    let v = Rng.normal (n * d) (Rng.create seed)
    Array.init n (fun i -> Array.sub v (i * d) d)

/// `perClusters` points around each of `clusters` centres in d dimensions: centres ~ N(0, 8^2 I), points
/// ~ N(centre, I), so clusters are about 50 apart and about 6 across in 20-D. Returns points and labels.
let private clustered (clusters: int) (perCluster: int) (d: int) (seed: int64) =
    let centres = gaussian clusters d seed
    let noise = gaussian (clusters * perCluster) d (seed + 1L)
    let labels = Array.init (clusters * perCluster) (fun i -> i / perCluster)
    Array.init labels.Length (fun i -> Array.init d (fun k -> 8.0 * centres[labels[i]][k] + noise[i][k])), labels

/// A random data set and a perplexity it can reach: 5 to 40 points of 1 to 8 features.
let private dataAndPerplexity =
    gen {
        let! n = Gen.choose (5, 40)
        let! d = Gen.choose (1, 8)
        let! seed = Gen.choose (0, 100000)
        let! fraction = Gen.choose (0, 1000)
        // Perplexities below 2 are reachable only when the nearest neighbour is unique; random
        // continuous data make that almost sure, but the property should not rest on it.
        let perplexity = 2.0 + float (n - 3) * float fraction / 1000.0
        return gaussian n d (int64 seed), perplexity
    }

let private rows (m: float[,]) =
    Array.init (Array2D.length1 m) (fun i -> m[i, *])

let private throwsMentioning (words: string) (f: unit -> 'a) =
    let e =
        Expectations.throwsAny<ArgumentException> $"an ArgumentException about {words}" (fun () -> f () |> ignore)

    Expect.stringContains e.Message words "the message"

[<Tests>]
let tests =
    testList
        "t-SNE and neighbourhood measures"
        [ Checks.forAll
              "each conditional row sums to 1 and has entropy log(perplexity)"
              100
              dataAndPerplexity
              (fun (data, perplexity) ->
                  let p = Tsne.conditionalAffinities perplexity data

                  rows p
                  |> Array.mapi (fun i row ->
                      let entropy = row |> Array.sumBy (fun v -> if v > 0.0 then -v * log v else 0.0)

                      row[i] = 0.0
                      && Array.forall (fun v -> v >= 0.0) row
                      && abs (Array.sum row - 1.0) < 1e-12
                      && abs (entropy - log perplexity) < Tsne.EntropyTolerance + 1e-9)
                  |> Array.forall id)

          Checks.forAll
              "joint affinities are symmetric, non-negative, zero on the diagonal and sum to 1"
              100
              dataAndPerplexity
              (fun (data, perplexity) ->
                  let p = Tsne.affinities perplexity data
                  let n = data.Length
                  let mutable ok = true
                  let mutable sum = 0.0

                  for i in 0 .. n - 1 do
                      ok <- ok && p[i, i] = 0.0

                      for j in 0 .. n - 1 do
                          ok <- ok && p[i, j] = p[j, i] && p[i, j] >= 0.0
                          sum <- sum + p[i, j]

                  ok && abs (sum - 1.0) < 1e-12)

          test "joint affinities are the averaged conditionals over 2N" {
              let data = gaussian 30 5 11L
              let c = Tsne.conditionalAffinities 10.0 data
              let p = Tsne.affinities 10.0 data

              for i in 0..29 do
                  for j in 0..29 do
                      Expectations.equalRounded 15 p[i, j] ((c[i, j] + c[j, i]) / 60.0) $"p[{i}, {j}]"
          }

          test "the bandwidth search does not depend on the scale of the data" {
              // Bisection from beta = 1 has to climb or descend many octaves for tiny or huge distances.
              let data = gaussian 50 4 3L

              for scale in [ 1e-6; 1.0; 1e6 ] do
                  let p =
                      Tsne.conditionalAffinities 15.0 (data |> Array.map (Array.map (fun v -> v * scale)))

                  for row in rows p do
                      let entropy = row |> Array.sumBy (fun v -> if v > 0.0 then -v * log v else 0.0)

                      Expect.isTrue
                          (abs (entropy - log 15.0) < Tsne.EntropyTolerance + 1e-9)
                          $"scale {scale}: H = {entropy}"
          }

          test "well-separated clusters in 20-D stay separated in 2-D" {
              let data, labels = clustered 3 40 20 5L
              let y = Tsne.embed Tsne.defaults data
              let n = data.Length

              let dist (a: float[]) (b: float[]) =
                  Array.fold2 (fun s u v -> s + (u - v) * (u - v)) 0.0 a b |> sqrt

              for i in 0 .. n - 1 do
                  let nearest =
                      [ 0 .. n - 1 ] |> List.filter ((<>) i) |> List.minBy (fun j -> dist y[i] y[j])

                  Expect.isTrue
                      (labels[nearest] = labels[i])
                      $"point {i}'s nearest embedded neighbour {nearest} is in another cluster"

              let centroid c =
                  let members = Array.init n id |> Array.filter (fun i -> labels[i] = c)
                  Array.init 2 (fun k -> members |> Array.averageBy (fun i -> y[i][k])), members

              let spread c =
                  let centre, members = centroid c
                  members |> Array.map (fun i -> dist y[i] centre) |> Array.max

              for a in 0..2 do
                  for b in a + 1 .. 2 do
                      let gap = dist (fst (centroid a)) (fst (centroid b))
                      Expect.isTrue (gap > spread a + spread b) $"clusters {a} and {b}: centroids {gap} apart"

              Expect.isTrue (Tsne.trustworthiness 5 data y > 0.9) "trustworthiness of 5 neighbours above 0.9"
          }

          test "the same seed gives the same embedding, another seed another" {
              let data, _ = clustered 3 20 10 9L

              let options =
                  { Tsne.defaults with
                      Perplexity = 10.0
                      Iterations = 200
                      Seed = 42L }

              let a = Tsne.embed options data
              let b = Tsne.embed options data
              let c = Tsne.embed { options with Seed = 43L } data
              Expect.equal b a "two embeddings with seed 42"
              Expect.notEqual c a "embeddings with seeds 42 and 43"
          }

          Sequencing.degreeOfParallelism
          <| test "the embedding is bit-identical with 1 and 2 threads" {
              // 120 points make several row tiles, so two workers really do split the rows.
              let data, _ = clustered 3 40 20 13L

              for dims in [ 2; 3 ] do
                  let options =
                      { Tsne.defaults with
                          Iterations = 300
                          Dimensions = dims
                          Seed = 7L }

                  let one = Parallelism.withDegree 1 (fun () -> Tsne.embed options data)
                  let two = Parallelism.withDegree 2 (fun () -> Tsne.embed options data)
                  Expect.equal two one $"{dims}-D: the embedding on 2 threads"

                  for row in one do
                      Expect.equal row.Length dims $"{dims}-D: the length of a row"
          }

          test "the auto learning rate and the matrix form give finite embeddings" {
              let data, _ = clustered 2 15 6 17L

              let options =
                  { Tsne.defaults with
                      Perplexity = 5.0
                      Iterations = 100
                      LearningRate = Tsne.LearningRate.Auto }

              let y = Tsne.embed options data

              for row in y do
                  Expect.isTrue (Array.forall Double.IsFinite row) "a finite row"

              let matrix = Array2D.init data.Length 6 (fun i k -> data[i][k])
              Expect.equal (Tsne.embedMatrix options matrix) y "the embedding of the matrix form"
          }

          test "no iterations give the initial map, centred near 0 with spread 1e-2" {
              let y =
                  Tsne.embed
                      { Tsne.defaults with
                          Perplexity = 5.0
                          Iterations = 0 }
                      (gaussian 400 3 1L)

              let values = Array.concat y
              let mean = Array.average values
              let sd = values |> Array.averageBy (fun v -> (v - mean) * (v - mean)) |> sqrt
              Expectations.inRange (abs mean) 0.0 2e-3 "|mean|"
              Expectations.inRange sd 0.9e-2 1.1e-2 "the sd"
          }

          test "bad input raises ArgumentException naming the problem" {
              let good = gaussian 10 3 1L

              let embed data =
                  Tsne.embed { Tsne.defaults with Perplexity = 3.0 } data

              throwsMentioning "at least 2 points" (fun () -> embed [| [| 1.0; 2.0 |] |])
              throwsMentioning "at least 2 points" (fun () -> embed [||])

              Expectations.throwsAny<ArgumentException> "embed null" (fun () -> embed null |> ignore)
              |> ignore

              throwsMentioning "same number of features" (fun () -> embed (Array.append good [| [| 1.0 |] |]))
              throwsMentioning "at least one feature" (fun () -> embed [| [||]; [||] |])

              for bad in [ nan; infinity; -infinity ] do
                  let data = good |> Array.map Array.copy
                  data[4][2] <- bad
                  throwsMentioning "row 4, column 2" (fun () -> embed data)

              throwsMentioning "overflows" (fun () -> embed (Array.init 5 (fun i -> [| 1e200 * float (i - 2) |])))

              for perplexity in [ 9.5; 10.0; 50.0; 0.5; nan ] do
                  throwsMentioning "perplexity" (fun () ->
                      Tsne.embed
                          { Tsne.defaults with
                              Perplexity = perplexity }
                          good)

                  throwsMentioning "perplexity" (fun () -> Tsne.affinities perplexity good)
                  throwsMentioning "perplexity" (fun () -> Tsne.conditionalAffinities perplexity good)

              let options = { Tsne.defaults with Perplexity = 3.0 }
              throwsMentioning "Iterations" (fun () -> Tsne.embed { options with Iterations = -1 } good)
              throwsMentioning "Dimensions" (fun () -> Tsne.embed { options with Dimensions = 0 } good)

              throwsMentioning "learning rate" (fun () ->
                  Tsne.embed
                      { options with
                          LearningRate = Tsne.LearningRate.Fixed 0.0 }
                      good)

              throwsMentioning "EarlyExaggeration" (fun () -> Tsne.embed { options with EarlyExaggeration = 0.0 } good)
              throwsMentioning "FinalMomentum" (fun () -> Tsne.embed { options with FinalMomentum = 1.0 } good)
          }

          test "trustworthiness and neighbour preservation match a hand-worked example" {
              // Points on a line with all distances from any point distinct; the map swaps the two end points.
              let data = [| 0.0; 1.0; 3.0; 7.0; 15.0; 31.0 |] |> Array.map (fun v -> [| v |])
              let swapped = [| 31.0; 1.0; 3.0; 7.0; 15.0; 0.0 |] |> Array.map (fun v -> [| v |])
              // k = 1: points 0 and 5 each take a false nearest neighbour of data rank 4 and 5: penalty 3 + 4 + 3 = 10
              // over the normaliser N k (2N - 3k - 1) / 2 = 24.
              Expectations.equalRounded
                  12
                  (Tsne.trustworthiness 1 data swapped)
                  (1.0 - 10.0 / 24.0)
                  "trustworthiness, k = 1"

              Expectations.equalRounded
                  12
                  (Tsne.trustworthiness 2 data swapped)
                  (1.0 - 12.0 / 30.0)
                  "trustworthiness, k = 2"

              Expectations.equalRounded
                  12
                  (Tsne.neighbourPreservation 1 data swapped)
                  0.5
                  "neighbour preservation, k = 1"

              Expectations.equalRounded
                  12
                  (Tsne.neighbourPreservation 2 data swapped)
                  0.5
                  "neighbour preservation, k = 2"
          }

          Checks.forAll
              "a map that keeps every distance scores 1"
              100
              (Gen.zip (Gen.choose (6, 40)) (Gen.choose (0, 1000)))
              (fun (n, seed) ->
                  let data = gaussian n 3 (int64 seed)
                  // Rotating and translating keeps every neighbourhood.
                  let moved = data |> Array.map (fun r -> [| r[1] + 5.0; -r[0]; r[2] |])
                  let k = (n - 1) / 2

                  Tsne.trustworthiness k data moved > 1.0 - 1e-12
                  && Tsne.neighbourPreservation k data moved > 1.0 - 1e-12)

          test "neighbour measures reject bad k and mismatched point counts" {
              let data = gaussian 10 3 1L
              throwsMentioning "k" (fun () -> Tsne.trustworthiness 0 data data)
              throwsMentioning "k" (fun () -> Tsne.trustworthiness 5 data data)
              throwsMentioning "k" (fun () -> Tsne.neighbourPreservation 10 data data)
              throwsMentioning "embedding has 9 points" (fun () -> Tsne.trustworthiness 2 data data[1..])
          } ]
