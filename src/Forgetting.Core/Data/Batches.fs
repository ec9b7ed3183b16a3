namespace Forgetting.Data

open System

/// What to do with the samples left over when the batch size does not divide the count.
type LastBatch =
    /// A smaller last batch: every sample is seen once per epoch.
    | Keep
    /// No partial batch: every batch has the full size; the leftovers (a different few each epoch when
    /// shuffled) are not seen in that epoch.
    | Drop

/// A mini-batch: `Count` samples, `Images` (Count × features, row-major) and `Labels`, materialised in
/// fresh arrays that belong to the batch (the engine's tensors are immutable and may take them without
/// a copy). `Positions` are the samples' positions in the view: a slice of the epoch's order, not a copy.
type Batch =
    { Index: int
      Count: int
      Images: float32[]
      Labels: int[]
      Positions: ReadOnlyMemory<int> }

/// Mini-batches over a data view: an epoch is a seeded permutation of the view's positions, cut into
/// index ranges; only the batch being handed out is materialised.
[<RequireQualifiedAccess>]
module Batches =

    /// Number of batches of an epoch.
    let count (batchSize: int) (last: LastBatch) (samples: int) =
        match last with
        | Keep -> (samples + batchSize - 1) / batchSize
        | Drop -> samples / batchSize

    /// The (start, length) ranges of an epoch's batches within its order.
    let ranges (batchSize: int) (last: LastBatch) (samples: int) : (int * int)[] =
        if batchSize < 1 then
            invalidArg (nameof batchSize) $"the batch size must be at least 1, got {batchSize}"

        Array.init (count batchSize last samples) (fun b ->
            let start = b * batchSize
            start, min batchSize (samples - start))

    /// Gather the view's samples at `positions` into caller-owned buffers (to reuse one buffer across
    /// batches): `images` needs positions.Length × features values, `labels` positions.Length.
    let gather (view: DataView) (positions: ReadOnlySpan<int>) (images: Span<float32>) (labels: Span<int>) =
        let f = DataView.features view

        if images.Length < positions.Length * f || labels.Length < positions.Length then
            invalidArg (nameof images) $"buffers for {positions.Length} samples of {f} values are too small"

        for k in 0 .. positions.Length - 1 do
            DataView.copySample positions[k] view (images.Slice(k * f, f))
            labels[k] <- DataView.label positions[k] view

    let private batchesOf (view: DataView) (order: int[]) (batchSize: int) (last: LastBatch) : Batch seq =
        let f = DataView.features view

        ranges batchSize last order.Length
        |> Seq.mapi (fun b (start, length) ->
            let positions = ReadOnlyMemory<int>(order, start, length)
            let images = Array.zeroCreate (length * f)
            let labels = Array.zeroCreate length
            gather view positions.Span (Span images) (Span labels)

            { Index = b
              Count = length
              Images = images
              Labels = labels
              Positions = positions })

    /// The order of one epoch: a permutation of 0 … samples-1 drawn from `rng`.
    let order (rng: Random) (samples: int) : int[] = Permutation.random rng samples

    /// One shuffled epoch. The order is drawn from `rng` when this is called (not when the sequence is
    /// enumerated), so the same seed and the same calls give the same batches, whatever else runs.
    let epoch (rng: Random) (batchSize: int) (last: LastBatch) (view: DataView) : Batch seq =
        if batchSize < 1 then
            invalidArg (nameof batchSize) $"the batch size must be at least 1, got {batchSize}"

        batchesOf view (order rng (DataView.count view)) batchSize last

    /// The view in its own order (for evaluation), the last batch kept.
    let inOrder (batchSize: int) (view: DataView) : Batch seq =
        if batchSize < 1 then
            invalidArg (nameof batchSize) $"the batch size must be at least 1, got {batchSize}"

        batchesOf view (Permutation.identity (DataView.count view)) batchSize Keep
