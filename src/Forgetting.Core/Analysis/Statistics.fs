namespace Forgetting.Analysis

/// Summaries of repeated measurements (seeds, random draws).
[<RequireQualifiedAccess>]
module Statistics =

    /// The mean and the sample standard deviation (n − 1 in the denominator; 0 for a single value).
    let meanSd (xs: float seq) =
        let xs = Array.ofSeq xs

        if xs.Length = 0 then
            invalidArg (nameof xs) "a mean needs at least one value"

        let m = Array.average xs

        let sd =
            if xs.Length < 2 then
                0.0
            else
                sqrt (Array.sumBy (fun x -> (x - m) * (x - m)) xs / float (xs.Length - 1))

        m, sd

    /// The ranks of the values, 1 … n, ties sharing the mean of the ranks they span (fractional ranking).
    let ranks (xs: float[]) =
        if xs |> Array.exists System.Double.IsNaN then
            invalidArg (nameof xs) "ranks need numbers: the values hold a NaN"

        let order = Array.init xs.Length id |> Array.sortBy (fun i -> xs[i])
        let r = Array.zeroCreate xs.Length
        let mutable k = 0

        while k < order.Length do
            let mutable e = k

            while e + 1 < order.Length && xs[order[e + 1]] = xs[order[k]] do
                e <- e + 1

            // Positions k … e (0-based) hold one value: each gets the mean rank (k + 1 + e + 1) / 2.
            let mean = float (k + e + 2) / 2.0

            for p in k..e do
                r[order[p]] <- mean

            k <- e + 1

        r

    /// Spearman's rank correlation ρ of paired values: Pearson's correlation of their fractional ranks
    /// (ties averaged), in [−1, 1]; NaN when either side is constant (its ranks have no spread).
    let spearman (xs: float[]) (ys: float[]) =
        if xs.Length <> ys.Length then
            invalidArg (nameof ys) $"a rank correlation needs pairs: {xs.Length} values against {ys.Length}"

        if xs.Length < 2 then
            invalidArg (nameof xs) $"a rank correlation needs at least 2 pairs, got {xs.Length}"

        let rx, ry = ranks xs, ranks ys
        let mx, my = Array.average rx, Array.average ry
        let mutable sxy, sxx, syy = 0.0, 0.0, 0.0

        for i in 0 .. rx.Length - 1 do
            let dx, dy = rx[i] - mx, ry[i] - my
            sxy <- sxy + dx * dy
            sxx <- sxx + dx * dx
            syy <- syy + dy * dy

        if sxx = 0.0 || syy = 0.0 then
            nan
        else
            sxy / sqrt (sxx * syy)

    /// Sarle's bimodality coefficient of a sample (SAS Institute 1990; Pfister et al. 2013, eq. 1):
    /// BC = (g² + 1) / (k + 3(n−1)² / ((n−2)(n−3))), g the sample skewness and k the sample excess
    /// kurtosis, both bias-corrected. BC lies in (0, 1]; a uniform distribution gives 5/9, so values
    /// above 5/9 point to two modes (a normal sample gives about 1/3). A sample with no spread (every
    /// value equal: one mode) gives 0. Needs at least 4 values.
    let bimodality (xs: float[]) =
        let n = xs.Length

        if n < 4 then
            invalidArg (nameof xs) $"the bimodality coefficient needs at least 4 values, got {n}"

        let nf = float n
        let m = Array.average xs

        let moment p =
            (xs |> Array.sumBy (fun x -> pown (x - m) p)) / nf

        let m2 = moment 2

        if m2 <= 1e-24 * max 1.0 (m * m) then
            0.0
        else
            let g1 = moment 3 / (m2 ** 1.5)
            let k1 = moment 4 / (m2 * m2) - 3.0
            // Bias-corrected skewness G1 and excess kurtosis G2.
            let g = g1 * sqrt (nf * (nf - 1.0)) / (nf - 2.0)
            let k = ((nf + 1.0) * k1 + 6.0) * (nf - 1.0) / ((nf - 2.0) * (nf - 3.0))
            (g * g + 1.0) / (k + 3.0 * (nf - 1.0) * (nf - 1.0) / ((nf - 2.0) * (nf - 3.0)))
