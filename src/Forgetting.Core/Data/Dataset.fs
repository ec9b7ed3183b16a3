namespace Forgetting.Data

open System

/// A data file or directory that is missing, truncated, corrupt or not what was expected. The message
/// names the file and what was expected; `Path` is that file or directory.
type DataError(message: string, path: string) =
    inherit Exception(message)

    /// The file or directory at fault.
    member _.Path = path

/// Fixed permutations drawn from an explicit, seeded generator.
[<RequireQualifiedAccess>]
module Permutation =

    /// Shuffle in place (Fisher-Yates). Only `Random.Next(int)` is used, whose output for a seeded
    /// `Random` has been fixed since .NET Framework; `Random.Shuffle`'s algorithm carries no such promise,
    /// and the recorded data splits must come out the same on every machine and runtime.
    let shuffleInPlace (rng: Random) (items: 'T[]) =
        for i in items.Length - 1 .. -1 .. 1 do
            let j = rng.Next(i + 1)
            let t = items[i]
            items[i] <- items[j]
            items[j] <- t

    /// 0, 1, …, n-1.
    let identity (n: int) : int[] = Array.init n id

    /// A uniformly random permutation of 0 … n-1.
    let random (rng: Random) (n: int) : int[] =
        let p = identity n
        shuffleInPlace rng p
        p

    /// Whether `p` holds each of 0 … p.Length-1 exactly once.
    let isBijection (p: int[]) =
        let seen = Array.zeroCreate p.Length

        p
        |> Array.forall (fun i ->
            if i < 0 || i >= p.Length || seen[i] then
                false
            else
                seen[i] <- true
                true)

/// Samples with integer labels: `Images` holds `count × features` values row-major, scaled to [0, 1];
/// `Shape` is the shape of one sample (e.g. [|28; 28|]), `features` its product.
type Dataset =
    { Name: string
      Images: float32[]
      Shape: int[]
      Labels: int[]
      Classes: int }

/// A data set's training and test parts.
type TrainTest = { Train: Dataset; Test: Dataset }

[<RequireQualifiedAccess>]
module Dataset =

    /// Number of samples.
    let count (d: Dataset) = d.Labels.Length

    /// Values per sample: the product of the sample shape.
    let features (d: Dataset) = Array.fold (*) 1 d.Shape

    /// A data set from its parts, checked for consistent sizes and labels in 0 … classes-1.
    let create (name: string) (shape: int[]) (classes: int) (images: float32[]) (labels: int[]) : Dataset =
        if shape.Length = 0 || shape |> Array.exists (fun s -> s <= 0) then
            invalidArg (nameof shape) $"{name}: a sample shape needs positive sizes, got %A{shape}"

        if classes < 1 then
            invalidArg (nameof classes) $"{name}: at least one class is needed, got {classes}"

        let f = Array.fold (*) 1 shape

        if int64 images.Length <> int64 labels.Length * int64 f then
            invalidArg
                (nameof images)
                $"{name}: {labels.Length} labels need {int64 labels.Length * int64 f} image values ({f} per sample), got {images.Length}"

        labels
        |> Array.iteri (fun i l ->
            if l < 0 || l >= classes then
                invalidArg (nameof labels) $"{name}: label {l} of sample {i} is outside 0 … {classes - 1}")

        { Name = name
          Images = images
          Shape = shape
          Labels = labels
          Classes = classes }

    /// Sample i's values, without a copy.
    let image (i: int) (d: Dataset) : ReadOnlyMemory<float32> =
        let f = features d
        ReadOnlyMemory<float32>(d.Images, i * f, f)

    /// Number of samples of each class.
    let classCounts (d: Dataset) : int[] =
        let counts = Array.zeroCreate d.Classes

        for l in d.Labels do
            counts[l] <- counts[l] + 1

        counts

    /// Indices of the samples whose label is one of `classes`, in order.
    let indicesOfClasses (classes: int[]) (d: Dataset) : int[] =
        let wanted = Collections.Generic.HashSet<int>(classes)

        [| for i in 0 .. d.Labels.Length - 1 do
               if wanted.Contains d.Labels[i] then
                   yield i |]

    /// The samples at `indices`, in that order. The identity selection returns `d` itself; any
    /// other has to gather the rows into new arrays (a `DataView` selects without copying).
    let subset (indices: int[]) (d: Dataset) : Dataset =
        let n = count d

        indices
        |> Array.iter (fun i ->
            if i < 0 || i >= n then
                invalidArg (nameof indices) $"{d.Name}: sample index {i} is outside 0 … {n - 1}")

        let mutable identity = indices.Length = n
        let mutable k = 0

        while identity && k < n do
            identity <- indices[k] = k
            k <- k + 1

        if identity then
            d
        else
            let f = features d
            let images = Array.zeroCreate (indices.Length * f)

            indices |> Array.iteri (fun k i -> Array.blit d.Images (i * f) images (k * f) f)

            { d with
                Images = images
                Labels = Array.map (fun i -> d.Labels[i]) indices }

    /// Samples start … start+length-1: `d` itself for the whole range, else one block copy.
    let slice (start: int) (length: int) (d: Dataset) : Dataset =
        let n = count d

        if start < 0 || length < 0 || start + length > n then
            invalidArg (nameof length) $"{d.Name}: samples {start} … {start + length - 1} are outside 0 … {n - 1}"

        if start = 0 && length = n then
            d
        else
            let f = features d

            { d with
                Images = Array.sub d.Images (start * f) (length * f)
                Labels = Array.sub d.Labels start length }

/// Some samples of a data set, chosen by index and seen through an optional fixed pixel permutation
/// (output value j of a sample is the source's value `Permutation[j]`). Nothing is copied until a batch
/// or `materialise` asks for the values, so ten permuted tasks share one copy of the images.
type DataView =
    { Source: Dataset
      Indices: int[]
      Permutation: int[] option }

[<RequireQualifiedAccess>]
module DataView =

    /// Every sample of `d`, unpermuted.
    let all (d: Dataset) : DataView =
        { Source = d
          Indices = Permutation.identity (Dataset.count d)
          Permutation = None }

    /// The samples of `d` at `indices`.
    let ofIndices (indices: int[]) (d: Dataset) : DataView =
        let n = Dataset.count d

        indices
        |> Array.iter (fun i ->
            if i < 0 || i >= n then
                invalidArg (nameof indices) $"{d.Name}: sample index {i} is outside 0 … {n - 1}")

        { Source = d
          Indices = indices
          Permutation = None }

    /// The same samples seen through a pixel permutation (replacing any earlier one).
    let permuted (permutation: int[]) (v: DataView) : DataView =
        if
            permutation.Length <> Dataset.features v.Source
            || not (Permutation.isBijection permutation)
        then
            invalidArg
                (nameof permutation)
                $"{v.Source.Name}: a pixel permutation must hold each of 0 … {Dataset.features v.Source - 1} once"

        { v with
            Permutation = Some permutation }

    let count (v: DataView) = v.Indices.Length
    let features (v: DataView) = Dataset.features v.Source

    /// Label of the view's sample i.
    let label (i: int) (v: DataView) = v.Source.Labels[v.Indices[i]]

    /// Labels of all the view's samples.
    let labels (v: DataView) : int[] =
        Array.map (fun i -> v.Source.Labels[i]) v.Indices

    /// The view's samples at `positions` (positions within the view), no copy of the values.
    let subset (positions: int[]) (v: DataView) : DataView =
        { v with
            Indices = Array.map (fun p -> v.Indices[p]) positions }

    /// Write the view's sample i (permuted, if the view is) into `destination` (length `features v`).
    let copySample (i: int) (v: DataView) (destination: Span<float32>) =
        let f = Dataset.features v.Source
        let source = ReadOnlySpan<float32>(v.Source.Images, v.Indices[i] * f, f)

        match v.Permutation with
        | None -> source.CopyTo destination
        | Some p ->
            for j in 0 .. f - 1 do
                destination[j] <- source[p[j]]

    /// The view as a data set of its own (copies the values).
    let materialise (v: DataView) : Dataset =
        match v.Permutation with
        | None -> Dataset.subset v.Indices v.Source
        | Some _ ->
            let f = features v
            let images = Array.zeroCreate (count v * f)

            for i in 0 .. count v - 1 do
                copySample i v (Span<float32>(images, i * f, f))

            { v.Source with
                Images = images
                Labels = labels v }
