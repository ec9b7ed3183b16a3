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
