namespace Forgetting.Data

open System

/// One task of a continual-learning sequence. `Id` counts from 0 in the order the tasks are learned and
/// picks the head of a multi-head net; `Classes` are the labels the task's samples carry (labels stay
/// those of the source data set; `Tasks.localLabel` maps them to 0 … Classes.Length-1 for a task's head).
type LearningTask =
    { Id: int
      Name: string
      Classes: int[]
      Train: DataView
      Test: DataView }

/// Task sequences for continual learning, as views over shared data (nothing is copied).
[<RequireQualifiedAccess>]
module Tasks =

    let private baseName (d: Dataset) =
        let slash = d.Name.LastIndexOf '/'
        if slash > 0 then d.Name.Substring(0, slash) else d.Name

    let private allClasses (d: Dataset) = Array.init d.Classes id

    /// Permuted tasks: task t sees every image through its own fixed pixel permutation, the t-th drawn
    /// from `Random(seed)`. With `keepFirst`, task 0 sees the images unpermuted; the later tasks'
    /// permutations are the same either way, and do not depend on `count`.
    let permuted (seed: int) (count: int) (keepFirst: bool) (data: TrainTest) : LearningTask[] =
        if count < 1 then
            invalidArg (nameof count) $"permuted tasks: at least one task, got {count}"

        if Dataset.features data.Train <> Dataset.features data.Test then
            invalidArg (nameof data) "permuted tasks: train and test samples differ in size"

        let rng = Random seed
        let name = baseName data.Train

        Array.init count (fun t ->
            let p = Permutation.random rng (Dataset.features data.Train)

            let view d =
                if keepFirst && t = 0 then
                    DataView.all d
                else
                    DataView.permuted p (DataView.all d)

            { Id = t
              Name = $"{name} permutation {t + 1}"
              Classes = allClasses data.Train
              Train = view data.Train
              Test = view data.Test })

    /// Consecutive groups of `size` classes: {0, 1}, {2, 3}, … (the last may be smaller).
    let classGroups (classes: int) (size: int) : int[][] =
        if size < 1 then
            invalidArg (nameof size) $"class groups need at least one class each, got {size}"

        Array.init classes id |> Array.chunkBySize size

    /// Split tasks: task t holds the samples of the classes in `groups[t]`.
    let splitByClasses (groups: int[][]) (data: TrainTest) : LearningTask[] =
        let seen = Collections.Generic.Dictionary<int, int>()

        groups
        |> Array.iteri (fun t g ->
            if g.Length = 0 then
                invalidArg (nameof groups) $"split tasks: group {t} is empty"

            for c in g do
                if c < 0 || c >= data.Train.Classes then
                    invalidArg
                        (nameof groups)
                        $"split tasks: class {c} of group {t} is outside 0 … {data.Train.Classes - 1}"

                match seen.TryGetValue c with
                | true, other -> invalidArg (nameof groups) $"split tasks: class {c} is in groups {other} and {t}"
                | _ -> seen[c] <- t)

        let name = baseName data.Train

        groups
        |> Array.mapi (fun t g ->
            let classes = Array.copy g

            { Id = t
              Name = $"""{name} classes {String.Join(",", classes)}"""
              Classes = classes
              Train = DataView.ofIndices (Dataset.indicesOfClasses classes data.Train) data.Train
              Test = DataView.ofIndices (Dataset.indicesOfClasses classes data.Test) data.Test })

    /// One task per data set, in order (e.g. MNIST, then Fashion-MNIST).
    let sequence (datasets: TrainTest list) : LearningTask[] =
        datasets
        |> List.mapi (fun t d ->
            { Id = t
              Name = baseName d.Train
              Classes = allClasses d.Train
              Train = DataView.all d.Train
              Test = DataView.all d.Test })
        |> Array.ofList

    /// A stream: the training samples, shuffled by `Random(seed)`, cut into `count` parts of near-equal
    /// size (the first `n mod count` one larger), learned one after another; every part is tested on
    /// the whole test set.
    let stream (seed: int) (count: int) (data: TrainTest) : LearningTask[] =
        let n = Dataset.count data.Train

        if count < 1 || count > n then
            invalidArg (nameof count) $"a stream of {n} samples can be cut into 1 … {n} parts, not {count}"

        let order = Permutation.random (Random seed) n
        let name = baseName data.Train
        let small = n / count
        let larger = n % count

        Array.init count (fun t ->
            let start = t * small + min t larger
            let size = small + (if t < larger then 1 else 0)

            { Id = t
              Name = $"{name} part {t + 1}/{count}"
              Classes = allClasses data.Train
              Train = DataView.ofIndices order[start .. start + size - 1] data.Train
              Test = DataView.all data.Test })

    /// A label's index within the task's classes (for the task's own head).
    let localLabel (task: LearningTask) (label: int) : int =
        match Array.IndexOf(task.Classes, label) with
        | -1 -> invalidArg (nameof label) $"label {label} is not one of task {task.Id}'s classes"
        | i -> i
