/// Order statistics without a full sort.
module Forgetting.Tensors.Select

open System

/// The k-th smallest (from 0) of `values`, which it reorders in place; `values` must hold no NaN.
/// Quickselect with a three-way partition, so that runs of equal values (ReLU's zeros, masked
/// scores) end a round instead of slowing it, and a median-of-three pivot; after 2·log₂ n + 8 rounds
/// the rest of the range is sorted, which bounds the worst case by a sort's n log n.
let kth (k: int) (values: float[]) =
    if k < 0 || k >= values.Length then
        invalidArg (nameof k) $"rank {k} is outside 0 … {values.Length - 1}"

    let swap i j =
        let t = values[i]
        values[i] <- values[j]
        values[j] <- t

    let limit = 2 * int (Math.Log2(float values.Length)) + 8
    let mutable lo = 0
    let mutable hi = values.Length - 1
    let mutable rounds = 0
    let mutable result = nan

    while Double.IsNaN result do
        if hi - lo < 16 || rounds > limit then
            Array.Sort(values, lo, hi - lo + 1)
            result <- values[k]
        else
            let a, b, c = values[lo], values[lo + (hi - lo) / 2], values[hi]
            let pivot = Math.Max(Math.Min(a, b), Math.Min(Math.Max(a, b), c))
            // [lo, lt) < pivot, [lt, i) = pivot, (gt, hi] > pivot.
            let mutable lt = lo
            let mutable i = lo
            let mutable gt = hi

            while i <= gt do
                let x = values[i]

                if x < pivot then
                    swap lt i
                    lt <- lt + 1
                    i <- i + 1
                elif x > pivot then
                    swap i gt
                    gt <- gt - 1
                else
                    i <- i + 1

            if k < lt then hi <- lt - 1
            elif k > gt then lo <- gt + 1
            else result <- pivot

            rounds <- rounds + 1

    result
