namespace Forgetting.Reporting

open System
open System.Globalization

/// Axis layout for charts: "nice" tick values (1, 2, 2.5 or 5 × 10^k apart) and their labels.
[<RequireQualifiedAccess>]
module Axis =

    /// The range itself when lo &lt; hi; a single value (lo = hi) is widened by 10% of its size
    /// (or by 1 around zero) so that an axis can still be drawn around it.
    let padded (lo: float, hi: float) : float * float =
        if lo < hi then
            lo, hi
        else
            // Below 1e-300 a 10% pad would underflow to nothing.
            let d = if abs lo < 1e-300 then 1.0 else abs lo * 0.1
            lo - d, hi + d

    /// The smallest step m × 10^k (m in 1, 2, 2.5, 5) that splits span into at most `intervals` parts.
    let niceStep (span: float) (intervals: int) : float =
        let raw = span / float intervals
        let magnitude = 10.0 ** floor (log10 raw)
        // 10 catches a magnitude that log10's rounding put one decade low.
        let m = [| 1.0; 2.0; 2.5; 5.0; 10.0 |] |> Array.find (fun m -> m * magnitude >= raw)
        m * magnitude

    /// Evenly spaced nice ticks, about five intervals, whose first tick is at or below lo and whose last
    /// is at or above hi. A degenerate range (lo = hi) is padded first.
    let niceTicks (lo: float) (hi: float) : float[] =
        if not (Double.IsFinite lo && Double.IsFinite hi) || lo > hi then
            invalidArg (nameof lo) $"ticks need a finite range with lo <= hi, got [{lo}, {hi}]"

        let lo, hi = padded (lo, hi)

        if not (Double.IsFinite(hi - lo)) then
            invalidArg (nameof lo) $"the range [{lo}, {hi}] is too wide to draw"

        let step = niceStep (hi - lo) 5
        // floor and ceil of a rounded quotient can land one step inside the range; step back out.
        let first = floor (lo / step)
        let first = if first * step > lo then first - 1.0 else first
        let last = ceil (hi / step)
        let last = if last * step < hi then last + 1.0 else last
        Array.init (int (last - first) + 1) (fun i -> (first + float i) * step)

    /// The nice ticks that fall inside a fixed range [lo, hi] (lo &lt; hi).
    let ticksWithin (lo: float) (hi: float) : float[] =
        let ticks = niceTicks lo hi
        let slack = (ticks[1] - ticks[0]) * 1e-9
        ticks |> Array.filter (fun t -> t >= lo - slack && t <= hi + slack)

    /// Labels for evenly spaced ticks, all with the decimals their step needs, in the invariant culture.
    let tickLabels (ticks: float[]) : string[] =
        let step =
            match ticks with
            | [||] -> 1.0
            | [| t |] -> max (abs t) 1.0
            | _ -> ticks[1] - ticks[0]

        let decimals =
            seq { 0..15 }
            |> Seq.tryFind (fun d -> abs (Math.Round(step, d) - step) <= step * 1e-6)
            |> Option.defaultValue 15

        let scientific = decimals > 6 || ticks |> Array.exists (fun t -> abs t >= 1e6)
        // (k * step) can miss zero by rounding error, which would print as "-0.0" or "1E-17".
        let ticks = ticks |> Array.map (fun t -> if abs t < step * 1e-9 then 0.0 else t)

        let format (pattern: string) =
            ticks |> Array.map (fun t -> t.ToString(pattern, CultureInfo.InvariantCulture))

        if scientific then
            // As many mantissa digits as it takes to tell the ticks apart.
            seq { 1..15 }
            |> Seq.map (fun d -> format ("0." + String('#', d) + "E+0"))
            |> Seq.tryFind (fun labels -> Array.distinct labels = labels)
            |> Option.defaultWith (fun () -> format "R")
            |> Array.map (fun l -> if l = "0E+0" then "0" else l)
        else
            format ("F" + string decimals)
