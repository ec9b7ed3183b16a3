namespace Forgetting.Analysis

open System

/// A number derived from the accuracy matrix R of a continual-learning run, with its definition written
/// out so that wherever it is printed its definition can be printed beside it.
type Metric =
    {
        /// A short name ("BWT").
        Name: string
        /// The definition in terms of R, with its source.
        Definition: string
        /// The value for an accuracy matrix (see `Metrics`), None where the definition needs more tasks
        /// than the run has.
        Compute: float[][] -> float option
    }

/// A metric's value for one run, with its name and definition.
type MetricValue =
    { Name: string
      Definition: string
      Value: float option }

/// Metrics of the accuracy matrix R of a run of T tasks, given as T + 1 rows of T accuracies in [0, 1]:
/// `r[0]` at initialisation (before any training), `r[i]` after training on the i-th task (i = 1 … T);
/// the column of the j-th task is `j − 1` (task ids count from 0). The definitions below write R[i, j]
/// with tasks counted from 1, as the papers do: R[i, j] = `r[i][j − 1]`. Every mean is unweighted over
/// tasks. With a single task (T = 1) nothing has been learned after a task or before one, so BWT, both
/// forgettings and FWT are undefined: None (never NaN, which would print as a number).
[<RequireQualifiedAccess>]
module Metrics =

    let private fail (message: string) : 'a = raise (ArgumentException message)

    /// The number of tasks T of an accuracy matrix, after checking it: T + 1 rows of T values (T ≥ 1),
    /// each an accuracy in [0, 1].
    let tasks (r: float[][]) : int =
        if isNull r || r.Length < 2 then
            let rows = if isNull r then 0 else r.Length

            fail
                $"an accuracy matrix has T + 1 rows (row 0 at initialisation, row i after task i) for T ≥ 1 tasks, got {rows} rows"

        let t = r.Length - 1

        r
        |> Array.iteri (fun i row ->
            if isNull row || row.Length <> t then
                let got = if isNull row then 0 else row.Length

                fail
                    $"an accuracy matrix of {r.Length} rows has {t} columns (one per task) in every row, row {i} has {got}"

            row
            |> Array.iteri (fun c v ->
                if not (v >= 0.0 && v <= 1.0) then
                    fail
                        $"the accuracy matrix holds {v} at row {i}, column {c} (task {c + 1}): an accuracy lies in [0, 1]"))

        t

    /// R as rows from a 2-D array of T + 1 rows and T columns.
    let ofArray2D (r: float[,]) : float[][] =
        Array.init (Array2D.length1 r) (fun i -> Array.init (Array2D.length2 r) (fun j -> r[i, j]))

    /// ACC_i = mean_{j ≤ i} R[i, j] for i = 1 … T: the average accuracy over the tasks learned so far,
    /// after each task (element i − 1 is ACC_i).
    let averageAccuracies (r: float[][]) : float[] =
        let t = tasks r
        Array.init t (fun k -> Array.average (r[k + 1][..k]))

    /// mean over j = 1 … T − 1 of f j, None when T = 1.
    let private overEarlierTasks (t: int) (f: int -> float) =
        if t < 2 then
            None
        else
            Some(Array.init (t - 1) (fun k -> f (k + 1)) |> Array.average)

    /// R[i, j] with tasks counted from 1.
    let private at (r: float[][]) (i: int) (j: int) = r[i][j - 1]

    /// The average accuracy after the last task, ACC_T.
    let averageAccuracy: Metric =
        { Name = "ACC"
          Definition =
            "average accuracy after the last task: ACC = ACC_T = mean_{j ≤ T} R[T, j], where ACC_i = mean_{j ≤ i} R[i, j] (Lopez-Paz & Ranzato 2017)"
          Compute = fun r -> Some(Array.last (averageAccuracies r)) }

    /// Backward transfer (Lopez-Paz & Ranzato 2017, GEM).
    let backwardTransfer: Metric =
        { Name = "BWT"
          Definition =
            "backward transfer: BWT = mean_{j < T} (R[T, j] − R[j, j]), the final accuracy on each earlier task minus its accuracy just after it was learned; negative when tasks are forgotten (Lopez-Paz & Ranzato 2017)"
          Compute =
            fun r ->
                let t = tasks r
                overEarlierTasks t (fun j -> at r t j - at r j j) }

    /// Forgetting of Chaudhry et al. (2018, RWalk): per earlier task, the best accuracy it had after it
    /// was learned and before the last task, minus its final accuracy. The paper writes the maximum over
    /// l ∈ {1 … T − 1}; for l < j task j has not been learned yet, and the paper's intent (the knowledge
    /// once gained about task j) and its single-head setting, where an unlearned task scores 0, both
    /// read l ∈ {j … T − 1}: that is the definition here. It never counts forward transfer or chance
    /// accuracy before task j (and never row 0, the initialisation) as knowledge forgotten, and it is never
    /// below Avalanche's forgetting, since l = j is one of the candidates.
    let forgettingChaudhry: Metric =
        { Name = "forgetting (Chaudhry)"
          Definition =
            "forgetting (Chaudhry et al. 2018): mean_{j < T} (max_{j ≤ l < T} R[l, j] − R[T, j]), the best accuracy on each earlier task after it was learned and before the last, minus its final accuracy"
          Compute =
            fun r ->
                let t = tasks r

                overEarlierTasks t (fun j ->
                    let best = Seq.init (t - j) (fun k -> at r (j + k) j) |> Seq.max
                    best - at r t j) }

    /// Forgetting as Avalanche computes it: the accuracy just after learning, minus the final one.
    let forgettingAvalanche: Metric =
        { Name = "forgetting (Avalanche)"
          Definition =
            "forgetting (Avalanche): mean_{j < T} (R[j, j] − R[T, j]), the accuracy on each earlier task just after it was learned minus its final accuracy (= −BWT)"
          Compute =
            fun r ->
                let t = tasks r
                overEarlierTasks t (fun j -> at r j j - at r t j) }

    /// Forward transfer (Lopez-Paz & Ranzato 2017, GEM), R[0, j] (the initialisation) standing for their
    /// accuracy b̄_j of a randomly initialised model.
    let forwardTransfer: Metric =
        { Name = "FWT"
          Definition =
            "forward transfer: FWT = mean_{2 ≤ j ≤ T} (R[j − 1, j] − R[0, j]), the accuracy on each later task just before it is learned minus its accuracy at initialisation (Lopez-Paz & Ranzato 2017)"
          Compute =
            fun r ->
                let t = tasks r
                overEarlierTasks t (fun k -> at r k (k + 1) - at r 0 (k + 1)) }

    /// Every metric, in the order they are printed.
    let all: Metric list =
        [ averageAccuracy
          backwardTransfer
          forgettingChaudhry
          forgettingAvalanche
          forwardTransfer ]

    /// Every metric's value for R, with its name and definition.
    let evaluate (r: float[][]) : MetricValue list =
        tasks r |> ignore

        all
        |> List.map (fun m ->
            { Name = m.Name
              Definition = m.Definition
              Value = m.Compute r })
