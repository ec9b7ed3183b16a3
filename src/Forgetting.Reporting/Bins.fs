namespace Forgetting.Reporting

open System

/// The bins of a histogram: round ends around the data and the count in each bin.
[<RequireQualifiedAccess>]
module Bins =

    /// The smallest step m × 10^k (m in 1, 2, 2.5, 5) that splits span into at most `intervals` parts.
    let niceStep (span: float) (intervals: int) : float =
        let raw = span / float intervals
        let magnitude = 10.0 ** floor (log10 raw)
        // 10 catches a magnitude that log10's rounding put one decade low.
        let m = [| 1.0; 2.0; 2.5; 5.0; 10.0 |] |> Array.find (fun m -> m * magnitude >= raw)
        m * magnitude

    /// Round ends around [lo, hi]: multiples of a nice step (niceStep over five intervals) at or below lo and
    /// at or above hi, so that bin edges fall on round numbers. A single value (lo = hi) is widened by 10%
    /// of its size, or by 1 around zero.
    let niceEnds (lo: float) (hi: float) : float * float =
        if not (Double.IsFinite lo && Double.IsFinite hi) || lo > hi then
            invalidArg (nameof lo) $"round ends need a finite range with lo <= hi, got [{lo}, {hi}]"

        let lo, hi =
            if lo < hi then
                lo, hi
            else
                // Below 1e-300 a 10% pad would underflow to nothing.
                let d = if abs lo < 1e-300 then 1.0 else abs lo * 0.1
                lo - d, hi + d

        if not (Double.IsFinite(hi - lo)) then
            invalidArg (nameof lo) $"the range [{lo}, {hi}] is too wide to bin"

        let step = niceStep (hi - lo) 5
        // floor and ceil of a rounded quotient can land one step inside the range; step back out.
        let first = floor (lo / step)
        let first = if first * step > lo then first - 1.0 else first
        let last = ceil (hi / step)
        let last = if last * step < hi then last + 1.0 else last
        first * step, last * step

    /// Counts of the finite values in each of `bins` equal-width bins over [lo, hi]; hi itself falls in the
    /// last bin, and values outside the range are not counted.
    let counts (lo: float, hi: float) (bins: int) (values: float[]) : int[] =
        if bins < 1 || not (Double.IsFinite lo && Double.IsFinite hi && lo < hi) then
            invalidArg (nameof bins) $"binning needs at least one bin and a finite lo < hi, got {bins} on ({lo}, {hi})"

        let counts = Array.zeroCreate bins

        for v in values do
            if v >= lo && v <= hi then
                let b = min (bins - 1) (int ((v - lo) / (hi - lo) * float bins))
                counts[b] <- counts[b] + 1

        counts
