/// `forgetting importance`: the parameter importance of a trained model (a continual run's checkpoint,
/// or a single-task run's model.safetensors) on
/// a task's training data, by MAS, local MAS or EWC's Fisher: a per-tensor summary, the raw values, the
/// rank agreement of the methods per tensor, and a histogram of log10 importance (the forgetting
/// paper's Fig. 5c).
module Forgetting.Cli.Commands.ImportanceCommand

open System
open System.IO
open Argu
open Forgetting.Nn
open Forgetting.Data
open Forgetting.Training
open Forgetting.Experiments
open Forgetting.Cli

type ImportanceArgs =
    | [<MainCommand; ExactlyOnce>] Run of folder: string
    | After of int
    | Task of int
    | On of string
    | Methods of string list
    | Samples of int
    | Seed of int
    | Cache_Dir of string
    | Out of string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Run _ ->
                "the folder of one continual run (its recipe.json and checkpoints), e.g. results/x/mas-seed1, or of a train run (its recipe.json and model.safetensors)."
            | After _ -> "the model after this task, 1-based (default: the latest checkpoint)."
            | Task _ -> "the task whose inputs the importance is taken on, 1-based (default 1)."
            | On _ -> "the task's train (default) or test inputs."
            | Methods _ -> "mas (global, per sample), mas-local (Hebbian), ewc (true Fisher) (default: all three)."
            | Samples _ -> "at most this many of the task's samples, a random subset (default: all)."
            | Seed _ -> "the key of the subset (default 1)."
            | Cache_Dir _ -> "the data cache (default $FORGETTING_DATA or the per-user cache)."
            | Out _ -> "results directory (default: <run>/importance-task<T>-after<N>)."

let private usage message : 'a = raise (UserError(message, Exit.usage))

let run (args: ParseResults<ImportanceArgs>) =
    let folder = args.GetResult Run
    let methods = args.GetResult(Methods, defaultValue = Importance.methods)
    let task = args.GetResult(Task, defaultValue = 1)

    if methods.IsEmpty then
        usage "--methods needs at least one of mas, mas-local, ewc"

    for m in methods do
        if not (List.contains m Importance.methods) then
            let known = String.concat ", " Importance.methods

            if m = "si" then
                usage "SI's importance is a path integral over training: it cannot be read off a trained model"
            else
                usage $"unknown importance '{m}'; known: {known}"

    if task < 1 then
        usage $"--task must be at least 1, got {task}"

    let samples =
        match args.TryGetResult Samples with
        | Some n when n < 1 -> usage $"--samples must be at least 1, got {n} (leave it out for the whole task)"
        | s -> s

    let onTest =
        match args.GetResult(On, defaultValue = "train") with
        | "train" -> false
        | "test" -> true
        | other -> usage $"--on takes train or test, got '{other}'"

    let cache = Cache.directory (args.TryGetResult Cache_Dir)
    let load (d: KnownDataset) = Cache.load cache d

    let _, after, c =
        Importance.ofRun
            load
            folder
            (args.TryGetResult After)
            (task - 1)
            onTest
            samples
            (int64 (args.GetResult(Seed, defaultValue = 1)))

    let dir =
        args.GetResult(Out, defaultValue = Path.Combine(folder, $"importance-task{task}-after{after}"))
        |> Results.prepare

    let omegas = [ for m in methods -> m, Importance.compute m c ]

    for m, omega in omegas do
        Checkpoint.writeParams (Path.Combine(dir, $"values-{m}.safetensors")) omega (Map.ofList [ "method", m ])

    let rows =
        [ for m, omega in omegas do
              for s in Importance.summary omega ->
                  [ m
                    s.Tensor
                    string s.Count
                    Results.num s.Mean
                    Results.num s.Median
                    Results.num s.Max
                    Results.num s.Zeros ] ]

    Results.writeAtomically
        (Path.Combine(dir, "summary.csv"))
        (Results.csv [ "method"; "tensor"; "count"; "mean"; "median"; "max"; "zeros" ] rows)

    let pairs =
        [ for i, (a, oa) in List.indexed omegas do
              for b, ob in List.skip (i + 1) omegas -> a, b, Importance.agreement oa ob ]

    Results.writeAtomically
        (Path.Combine(dir, "agreement.csv"))
        (Results.csv
            [ "method_a"; "method_b"; "tensor"; "spearman"; "spearman_nonzero" ]
            [ for a, b, rhos in pairs do
                  for tensor, rho, live in rhos -> [ a; b; tensor; Results.num rho; Results.num live ] ])

    let panel =
        Importance.histogram $"parameter importance on task {task}, model after task {after}" omegas

    Forgetting.Reporting.Save.panel Forgetting.Reporting.Style.panelSize (Path.Combine(dir, "histogram")) panel

    printfn
        "importance on task %d's %d %s samples, the model after task %d of %s"
        task
        c.Inputs.Shape[0]
        (if onTest then "test" else "training")
        after
        folder

    printfn "%-10s %-22s %9s %12s %12s %12s %7s" "method" "tensor" "count" "mean" "median" "max" "zeros"

    for r in rows do
        match r with
        | [ m; t; n; mean; median; mx; z ] ->
            let f (s: string) =
                Double.Parse(s, Globalization.CultureInfo.InvariantCulture)

            printfn "%-10s %-22s %9s %12.4g %12.4g %12.4g %7.3f" m t n (f mean) (f median) (f mx) (f z)
        | _ -> ()

    for a, b, rhos in pairs do
        printfn
            "Spearman's rank correlation, %s against %s, per tensor (all entries; entries where either is non-zero):"
            a
            b

        for tensor, rho, live in rhos do
            printfn "  %-22s %7.3f %7.3f" tensor rho live

    printfn "results in %s" (Path.GetFullPath dir)
