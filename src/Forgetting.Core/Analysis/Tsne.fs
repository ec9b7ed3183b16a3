namespace Forgetting.Analysis

open System
open Forgetting.Tensors

/// Exact t-SNE (van der Maaten & Hinton 2008): a low-dimensional map of high-dimensional points in which
/// each point's near neighbours stay near, used to plot last-hidden-layer features (Fig. 4c).
///
/// "Exact" means every pair of points enters every gradient, O(N^2) per iteration: a few thousand points
/// take seconds, and the result has no Barnes-Hut approximation error to argue about. Everything is float64
/// and deterministic: the same seed gives the same map, bit for bit, with any number of threads.
[<RequireQualifiedAccess>]
module Tsne =

    /// How the gradient-descent step size is chosen.
    [<RequireQualifiedAccess>]
    type LearningRate =
        /// A fixed step size; 200 is the customary value.
        | Fixed of float
        /// N / early exaggeration, at least 50 (Belkina et al. 2019): larger data sets need larger steps
        /// to untangle in the same number of iterations.
        | Auto

    /// Settings of `Tsne.embed`; start from `Tsne.defaults` and change what you need.
    type Options =
        {
            /// The effective number of neighbours each point's affinities spread over (5 to 50 is usual);
            /// at least 1 and at most N - 1.
            Perplexity: float
            /// Gradient-descent iterations.
            Iterations: int
            /// Step size of gradient descent (each coordinate's step is further scaled by an adaptive gain).
            LearningRate: LearningRate
            /// Factor on P during the first `ExaggerationIterations`, which lets clusters form and move
            /// past each other before the fine structure settles.
            EarlyExaggeration: float
            /// Iterations run with P exaggerated.
            ExaggerationIterations: int
            /// Momentum before `MomentumSwitchIteration`, kept low while the map is still tangled.
            InitialMomentum: float
            /// Momentum from `MomentumSwitchIteration` on.
            FinalMomentum: float
            /// The first iteration run with `FinalMomentum`.
            MomentumSwitchIteration: int
            /// Dimensions of the map (2 for a plot).
            Dimensions: int
            /// Seed of the initial map, Y ~ N(0, 1e-4 I).
            Seed: int64
        }

    /// Perplexity 30, 1000 iterations, learning rate 200, exaggeration 12 for 250 iterations, momentum
    /// 0.5 then 0.8 from iteration 250, a 2-D map, seed 0.
    let defaults: Options =
        { Perplexity = 30.0
          Iterations = 1000
          LearningRate = LearningRate.Fixed 200.0
          EarlyExaggeration = 12.0
          ExaggerationIterations = 250
          InitialMomentum = 0.5
          FinalMomentum = 0.8
          MomentumSwitchIteration = 250
          Dimensions = 2
          Seed = 0L }

    /// Tolerance on each point's entropy, in nats, when searching for its bandwidth.
    [<Literal>]
    let EntropyTolerance = 1e-5

    /// Most bisection steps of the bandwidth search for one point.
    [<Literal>]
    let MaxSearchSteps = 200

    // Rows per parallel tile: one row is only N pair evaluations, too little to be worth a task of its own.
    [<Literal>]
    let private RowsPerTile = 16

    /// Run `body lo hi` on the row blocks [lo, hi) of 0 .. n-1. A row's result must depend on nothing but
    /// its own computation, which is what keeps the output independent of the thread count.
    let private forRowBlocks (n: int) (body: int -> int -> unit) =
        Parallelism.forTiles ((n + RowsPerTile - 1) / RowsPerTile) (fun tile ->
            body (tile * RowsPerTile) (min n ((tile + 1) * RowsPerTile)))

    /// The number of points and features, after checking that the rows form a finite N×D matrix.
    let private checkPoints (name: string) (minPoints: int) (data: float[][]) =
        if isNull data then
            nullArg name

        let n = data.Length

        if n < minPoints then
            invalidArg name $"t-SNE needs at least {minPoints} points (rows), got {n}"

        if isNull data[0] || data[0].Length = 0 then
            invalidArg name "every point needs at least one feature, but row 0 is empty"

        let d = data[0].Length

        for i in 0 .. n - 1 do
            let row = data[i]

            if isNull row then
                invalidArg name $"row {i} is null"

            if row.Length <> d then
                invalidArg
                    name
                    $"row {i} has {row.Length} values but row 0 has {d}: every point needs the same number of features"

            for k in 0 .. d - 1 do
                if not (Double.IsFinite row[k]) then
                    invalidArg name $"row {i}, column {k} is {row[k]}: t-SNE needs finite values"

        n, d

    let private checkPerplexity (n: int) (perplexity: float) =
        if not (Double.IsFinite perplexity) || perplexity < 1.0 then
            invalidArg (nameof perplexity) $"the perplexity must be a finite number >= 1, got {perplexity}"

        if perplexity > float (n - 1) then
            invalidArg
                (nameof perplexity)
                $"the perplexity {perplexity} is too large for {n} points: it must be at most N - 1 = {n - 1}, the number of neighbours each point has"

    /// Squared Euclidean distances, row-major N×N. Each row is computed whole (no use of symmetry) so that
    /// rows are independent tiles; (a-b)^2 = (b-a)^2 exactly, so the matrix is still exactly symmetric.
    let private squaredDistances (data: float[][]) (n: int) (d: int) =
        let dist = Array.zeroCreate<float>(n * n)

        forRowBlocks n (fun lo hi ->
            for i in lo .. hi - 1 do
                let xi = data[i]
                let off = i * n

                for j in 0 .. n - 1 do
                    let xj = data[j]
                    let mutable s = 0.0

                    for k in 0 .. d - 1 do
                        let t = xi[k] - xj[k]
                        s <- s + t * t

                    dist[off + j] <- s)

        // Finite values can still overflow when squared; the bandwidth search would then produce NaN.
        for idx in 0 .. dist.Length - 1 do
            if Double.IsPositiveInfinity dist[idx] then
                invalidArg
                    "data"
                    $"the squared distance between points {idx / n} and {idx % n} overflows: rescale the data"

        dist

    /// Row i of the result is P(j|i), the Gaussian around point i with the bandwidth at which the row's
    /// entropy is log(perplexity), found by bisection on beta = 1/(2 sigma^2).
    let private conditionalOfDistances (dist: float[]) (n: int) (perplexity: float) =
        let target = log perplexity
        let p = Array.zeroCreate<float>(n * n)

        forRowBlocks n (fun lo hi ->
            for i in lo .. hi - 1 do
                let off = i * n
                // Distances are measured from the nearest neighbour's, so the largest term is exp(0) = 1:
                // the normaliser never underflows to 0, however large the distances or beta.
                let mutable nearest = Double.PositiveInfinity

                for j in 0 .. n - 1 do
                    if j <> i && dist[off + j] < nearest then
                        nearest <- dist[off + j]

                let mutable beta = 1.0
                let mutable below = 0.0
                let mutable above = Double.PositiveInfinity
                let mutable sum = 0.0
                let mutable steps = 0
                let mutable searching = true

                while searching do
                    sum <- 0.0
                    let mutable weighted = 0.0

                    for j in 0 .. n - 1 do
                        if j <> i then
                            let shifted = dist[off + j] - nearest
                            let v = exp (-beta * shifted)
                            p[off + j] <- v
                            sum <- sum + v
                            weighted <- weighted + shifted * v

                    let entropy = log sum + beta * weighted / sum
                    let excess = entropy - target
                    steps <- steps + 1

                    if abs excess < EntropyTolerance || steps >= MaxSearchSteps then
                        searching <- false
                    elif excess > 0.0 then
                        // Too flat: narrow the Gaussian.
                        below <- beta

                        beta <-
                            if Double.IsPositiveInfinity above then
                                beta * 2.0
                            else
                                (beta + above) / 2.0
                    else
                        above <- beta
                        beta <- (beta + below) / 2.0

                p[off + i] <- 0.0

                for j in 0 .. n - 1 do
                    p[off + j] <- p[off + j] / sum)

        p

    /// P_ij = (P(j|i) + P(i|j)) / 2N: symmetric, summing to 1, and at least 1/2N for every point's row, so
    /// outliers still pull on the map.
    let private symmetrise (conditional: float[]) (n: int) =
        let p = Array.zeroCreate<float>(n * n)
        let scale = 1.0 / (2.0 * float n)

        forRowBlocks n (fun lo hi ->
            for i in lo .. hi - 1 do
                for j in 0 .. n - 1 do
                    p[i * n + j] <- (conditional[i * n + j] + conditional[j * n + i]) * scale)

        p

    let private toMatrix (flat: float[]) (n: int) =
        Array2D.init n n (fun i j -> flat[i * n + j])

    /// The conditional affinities P(j|i) of t-SNE, before symmetrisation: row i is a Gaussian around point i
    /// whose bandwidth is found by bisection so that the row's entropy is log(perplexity) nats (within
    /// `EntropyTolerance`, in at most `MaxSearchSteps` steps). Each row sums to 1; the diagonal is 0.
    let conditionalAffinities (perplexity: float) (data: float[][]) : float[,] =
        let n, d = checkPoints (nameof data) 2 data
        checkPerplexity n perplexity
        toMatrix (conditionalOfDistances (squaredDistances data n d) n perplexity) n

    /// The joint affinities P of t-SNE: (P(j|i) + P(i|j)) / 2N, symmetric, non-negative, zero on the
    /// diagonal and summing to 1.
    let affinities (perplexity: float) (data: float[][]) : float[,] =
        let n, d = checkPoints (nameof data) 2 data
        checkPerplexity n perplexity
        toMatrix (symmetrise (conditionalOfDistances (squaredDistances data n d) n perplexity) n) n

    let private checkOptions (options: Options) =
        let bad (what: string) =
            invalidArg (nameof options) $"t-SNE options: {what}"

        if options.Iterations < 0 then
            bad $"Iterations must be >= 0, got {options.Iterations}"

        if options.Dimensions < 1 then
            bad $"Dimensions must be >= 1, got {options.Dimensions}"

        match options.LearningRate with
        | LearningRate.Fixed rate when not (Double.IsFinite rate) || rate <= 0.0 ->
            bad $"the learning rate must be finite and positive, got {rate}"
        | _ -> ()

        if
            not (Double.IsFinite options.EarlyExaggeration)
            || options.EarlyExaggeration <= 0.0
        then
            bad $"EarlyExaggeration must be finite and positive, got {options.EarlyExaggeration}"

        if options.ExaggerationIterations < 0 then
            bad $"ExaggerationIterations must be >= 0, got {options.ExaggerationIterations}"

        if options.MomentumSwitchIteration < 0 then
            bad $"MomentumSwitchIteration must be >= 0, got {options.MomentumSwitchIteration}"

        for name, m in
            [ "InitialMomentum", options.InitialMomentum
              "FinalMomentum", options.FinalMomentum ] do
            if not (m >= 0.0 && m < 1.0) then
                bad $"{name} must be in [0, 1), got {m}"

    /// For each row i of the map: the attraction sum_j P_ij q_ij (y_i - y_j), the repulsion
    /// sum_j q_ij^2 (y_i - y_j) and sum_j q_ij, where q_ij = 1 / (1 + |y_i - y_j|^2). Each row's sums run
    /// over j in order on one thread, the rule that makes the gradient independent of the thread count.
    let private pairSums
        (y: float[])
        (p: float[])
        (n: int)
        (dims: int)
        (attraction: float[])
        (repulsion: float[])
        (rowZ: float[])
        =
        if dims = 2 then
            // The plotting case, unrolled: about twice as fast as the general loop.
            forRowBlocks n (fun lo hi ->
                for i in lo .. hi - 1 do
                    let off = i * n
                    let yi0 = y[2 * i]
                    let yi1 = y[2 * i + 1]
                    let mutable a0 = 0.0
                    let mutable a1 = 0.0
                    let mutable r0 = 0.0
                    let mutable r1 = 0.0
                    let mutable z = 0.0

                    for j in 0 .. n - 1 do
                        if j <> i then
                            let d0 = yi0 - y[2 * j]
                            let d1 = yi1 - y[2 * j + 1]
                            let q = 1.0 / (1.0 + d0 * d0 + d1 * d1)
                            let pq = p[off + j] * q
                            let qq = q * q
                            z <- z + q
                            a0 <- a0 + pq * d0
                            a1 <- a1 + pq * d1
                            r0 <- r0 + qq * d0
                            r1 <- r1 + qq * d1

                    attraction[2 * i] <- a0
                    attraction[2 * i + 1] <- a1
                    repulsion[2 * i] <- r0
                    repulsion[2 * i + 1] <- r1
                    rowZ[i] <- z)
        else
            forRowBlocks n (fun lo hi ->
                for i in lo .. hi - 1 do
                    let off = i * n
                    let yo = i * dims
                    let mutable z = 0.0

                    for k in 0 .. dims - 1 do
                        attraction[yo + k] <- 0.0
                        repulsion[yo + k] <- 0.0

                    for j in 0 .. n - 1 do
                        if j <> i then
                            let jo = j * dims
                            let mutable d2 = 0.0

                            for k in 0 .. dims - 1 do
                                let t = y[yo + k] - y[jo + k]
                                d2 <- d2 + t * t

                            let q = 1.0 / (1.0 + d2)
                            let pq = p[off + j] * q
                            let qq = q * q
                            z <- z + q

                            for k in 0 .. dims - 1 do
                                let t = y[yo + k] - y[jo + k]
                                attraction[yo + k] <- attraction[yo + k] + pq * t
                                repulsion[yo + k] <- repulsion[yo + k] + qq * t

                    rowZ[i] <- z)

    /// Minimise KL(P || Q) over the map by gradient descent with momentum and per-coordinate adaptive gains
    /// (the optimiser of the reference implementation), re-centring the map after every step.
    let private optimise (options: Options) (p: float[]) (n: int) =
        let dims = options.Dimensions
        let m = n * dims

        let rate =
            match options.LearningRate with
            | LearningRate.Fixed rate -> rate
            | LearningRate.Auto -> max (float n / options.EarlyExaggeration) 50.0

        // N(0, 1e-4 I) as in the paper: standard deviation 1e-2.
        let y = Rng.normal m (Rng.create options.Seed) |> Array.map (fun v -> v * 1e-2)
        let step = Array.zeroCreate<float> m
        let gains = Array.create m 1.0
        let attraction = Array.zeroCreate<float> m
        let repulsion = Array.zeroCreate<float> m
        let rowZ = Array.zeroCreate<float> n

        let inline sign (v: float) =
            if v > 0.0 then 1
            elif v < 0.0 then -1
            else 0

        for iteration in 0 .. options.Iterations - 1 do
            let exaggeration =
                if iteration < options.ExaggerationIterations then
                    options.EarlyExaggeration
                else
                    1.0

            let momentum =
                if iteration < options.MomentumSwitchIteration then
                    options.InitialMomentum
                else
                    options.FinalMomentum

            pairSums y p n dims attraction repulsion rowZ
            // Z is a sum over all pairs, so it is reduced here, in row order, never across workers.
            let mutable z = 0.0

            for i in 0 .. n - 1 do
                z <- z + rowZ[i]

            for idx in 0 .. m - 1 do
                // dC/dy_i = 4 sum_j (P_ij - q_ij / Z) q_ij (y_i - y_j).
                let g = 4.0 * (exaggeration * attraction[idx] - repulsion[idx] / z)

                // A gradient of the opposite sign to the last step has the sign of the last gradient: the
                // coordinate keeps going the same way downhill, so its gain grows; otherwise it overshot and
                // the gain shrinks (delta-bar-delta, Jacobs 1988, as in the reference implementation).
                gains[idx] <-
                    if sign g <> sign step[idx] then
                        gains[idx] + 0.2
                    else
                        max (gains[idx] * 0.8) 0.01

                step[idx] <- momentum * step[idx] - rate * gains[idx] * g
                y[idx] <- y[idx] + step[idx]

            // The cost does not change under translation; re-centring keeps the map from drifting.
            for k in 0 .. dims - 1 do
                let mutable s = 0.0

                for i in 0 .. n - 1 do
                    s <- s + y[i * dims + k]

                let mean = s / float n

                for i in 0 .. n - 1 do
                    y[i * dims + k] <- y[i * dims + k] - mean

        Array.init n (fun i -> Array.sub y (i * dims) dims)

    /// Embed the points (one row each, all of one length, finite) in `options.Dimensions` dimensions by
    /// exact t-SNE; returns one row of coordinates per point. O(N^2) memory and time per iteration: N = 2000
    /// takes about 100 MB. The same options and data give the same map, bit for bit, with any thread count.
    let embed (options: Options) (data: float[][]) : float[][] =
        checkOptions options
        let n, d = checkPoints (nameof data) 2 data
        checkPerplexity n options.Perplexity

        let p =
            symmetrise (conditionalOfDistances (squaredDistances data n d) n options.Perplexity) n

        optimise options p n

    /// `embed` for points in the rows of a matrix.
    let embedMatrix (options: Options) (data: float[,]) : float[][] =
        if isNull data then
            nullArg (nameof data)

        embed options (Array.init (Array2D.length1 data) (fun i -> data[i, *]))

    /// For each point, the other points ordered by distance (nearer first, ties by index).
    let private neighbourOrder (points: float[][]) (i: int) (distances: float[]) (order: int[]) =
        let n = points.Length
        let xi = points[i]

        for j in 0 .. n - 1 do
            let xj = points[j]
            let mutable s = 0.0

            for k in 0 .. xi.Length - 1 do
                let t = xi[k] - xj[k]
                s <- s + t * t

            distances[j] <- s

        let mutable at = 0

        for j in 0 .. n - 1 do
            if j <> i then
                order[at] <- j
                at <- at + 1

        Array.Sort(
            order,
            0,
            n - 1,
            Collections.Generic.Comparer<int>.Create(fun a b ->
                match compare distances[a] distances[b] with
                | 0 -> compare a b
                | c -> c)
        )

    let private checkNeighbourArgs (data: float[][]) (embedding: float[][]) =
        let n, _ = checkPoints (nameof data) 2 data
        let m, _ = checkPoints (nameof embedding) 2 embedding

        if m <> n then
            invalidArg (nameof embedding) $"the embedding has {m} points but the data has {n}"

        n

    /// Per point, a score from its k nearest neighbours in the data and in the embedding, in parallel
    /// over points and summed in point order.
    let private sumOverPoints (n: int) (data: float[][]) (embedding: float[][]) (score: int[] -> int[] -> float) =
        let perPoint = Array.zeroCreate<float> n

        forRowBlocks n (fun lo hi ->
            let distances = Array.zeroCreate<float> n
            let dataOrder = Array.zeroCreate<int>(n - 1)
            let embeddingOrder = Array.zeroCreate<int>(n - 1)

            for i in lo .. hi - 1 do
                neighbourOrder data i distances dataOrder
                neighbourOrder embedding i distances embeddingOrder
                perPoint[i] <- score dataOrder embeddingOrder)

        let mutable s = 0.0

        for i in 0 .. n - 1 do
            s <- s + perPoint[i]

        s

    /// Trustworthiness T(k) (Venna & Kaski 2001): 1 minus a penalty for every point that is among a point's
    /// k nearest neighbours in the embedding but not in the data, growing with how far down the data's
    /// neighbour ranking it is. 1 when every embedded neighbourhood holds only true neighbours; needs
    /// 1 <= k < N/2. Ties in distance are broken by index.
    let trustworthiness (k: int) (data: float[][]) (embedding: float[][]) : float =
        let n = checkNeighbourArgs data embedding

        if k < 1 || 2 * k >= n then
            invalidArg (nameof k) $"trustworthiness needs 1 <= k < N/2 = {float n / 2.0}, got k = {k}"

        let penalty =
            sumOverPoints n data embedding (fun dataOrder embeddingOrder ->
                // rank[j] = 1 + position of j in the data's neighbour order.
                let rank = Array.zeroCreate<int> n

                for r in 0 .. n - 2 do
                    rank[dataOrder[r]] <- r + 1

                let mutable s = 0
                // Ranks beyond k are exactly the points not among the data's k nearest neighbours.
                for r in 0 .. k - 1 do
                    s <- s + max 0 (rank[embeddingOrder[r]] - k)

                float s)

        let nf = float n
        let kf = float k
        1.0 - 2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0)) * penalty

    /// The mean fraction of each point's k nearest neighbours in the data that are also among its k nearest
    /// neighbours in the embedding; 1 when every neighbourhood is kept. Needs 1 <= k < N. Ties in distance
    /// are broken by index.
    let neighbourPreservation (k: int) (data: float[][]) (embedding: float[][]) : float =
        let n = checkNeighbourArgs data embedding

        if k < 1 || k >= n then
            invalidArg (nameof k) $"neighbour preservation needs 1 <= k < N = {n}, got k = {k}"

        let kept =
            sumOverPoints n data embedding (fun dataOrder embeddingOrder ->
                let inData = Collections.Generic.HashSet<int>(Seq.take k dataOrder)
                let mutable s = 0

                for r in 0 .. k - 1 do
                    if inData.Contains embeddingOrder[r] then
                        s <- s + 1

                float s / float k)

        kept / float n
