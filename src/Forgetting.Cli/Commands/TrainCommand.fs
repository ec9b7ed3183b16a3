/// `forgetting train`: one variant, one seed; `forgetting compare`: several variants over seeds.
module Forgetting.Cli.Commands.TrainCommand

open System
open System.IO
open Argu
open Forgetting.Data
open Forgetting.Experiments
open Forgetting.Training
open Forgetting.Cli
open Forgetting.Cli.Json
open Forgetting.Cli.Commands.RunArgs

let private pct (x: float) = 100.0 * x

/// Run one recipe with a progress display; milestones are one line per epoch.
let private runWithProgress (title: string) (recipe: Recipe) (d: SingleData) =
    let epochs = recipe.EpochsPerTask

    Progress.run title (fun report ->
        Classification.run
            recipe
            (function
            | BatchDone(epoch, batch, batches, loss) ->
                let fraction = (float (epoch - 1) + float batch / float batches) / float epochs
                report.Update fraction $"epoch {epoch}/{epochs}, loss {loss:F4}"
            | EpochDone m ->
                report.Line
                    $"{title}  epoch {m.Epoch, 2}/{epochs}  train loss {m.TrainLoss:F4}  test loss {m.TestLoss:F4}  test accuracy {pct m.TestAccuracy:F2}%%  ({m.Seconds:F1} s)")
            d.Train
            d.Test)

let private layersJson (r: RunResult) =
    r.Layers
    |> List.map (fun l ->
        Obj
            [ "layer", Int l.Layer
              "sparsity", Num l.Sparsity
              "mean_activation", Num(Array.average l.MeanActivation)
              "mean_importance",
              (match l.Importance with
               | Some imp -> Num(Array.average imp)
               | None -> Str "no forgetting layer")
              "readout", Str(if l.Readout = "" then "none" else l.Readout)
              "mean_firing_rate", Num(Array.average l.FiringRate) ])
    |> Arr

let private summaryJson (command: string) (data: Value) (r: RunResult) =
    Obj
        [ "command", Str command
          "variant", Str r.Config.Label
          "recipe", Raw(Recipe.toJson r.Config)
          "data", data
          "versions", Results.versions ()
          "test_accuracy", Num r.Test.Accuracy
          "test_loss", Num r.Test.Loss
          "layers", layersJson r
          "epochs",
          Arr(
              r.History
              |> List.map (fun m ->
                  Obj
                      [ "epoch", Int m.Epoch
                        "train_loss", Num m.TrainLoss
                        "test_loss", Num m.TestLoss
                        "test_accuracy", Num m.TestAccuracy
                        "seconds", Num m.Seconds ])
          ) ]

let private epochsCsv (r: RunResult) =
    Results.csv
        [ "epoch"; "train_loss"; "test_loss"; "test_accuracy"; "seconds" ]
        [ for m in r.History ->
              [ string m.Epoch
                Results.num m.TrainLoss
                Results.num m.TestLoss
                Results.num m.TestAccuracy
                Results.num m.Seconds ] ]

let private unitsCsv (r: RunResult) =
    Results.csv
        [ "layer"
          "unit"
          "mean_activation"
          "sd_activation"
          "importance"
          "readout"
          "firing_rate"
          "wf"
          "gate_mean" ]
        [ for l in r.Layers do
              let cell (values: float[] option) (u: int) =
                  match values with
                  | Some v -> Results.num v[u]
                  | None -> ""

              for u in 0 .. l.MeanActivation.Length - 1 ->
                  [ string l.Layer
                    string u
                    Results.num l.MeanActivation[u]
                    Results.num l.SdActivation[u]
                    cell l.Importance u
                    l.Readout
                    Results.num l.FiringRate[u]
                    cell l.Wf u
                    cell l.GateMean u ] ]

/// Train a single-task recipe on its data, writing straight into `dir` (recipe.json first, which
/// `forgetting run` re-runs, then summary.json, epochs.csv, units.csv); a divergence leaves
/// recipe.json and diverged.json. `compare` writes its runs this way inside its own staged folder.
let private trainInto (title: string) (d: SingleData) (dir: string) (command: string) (recipe: Recipe) =
    let dir = Results.prepare dir
    Results.writeAtomically (Path.Combine(dir, "recipe.json")) (Recipe.toText recipe + "\n")

    let r =
        try
            runWithProgress title recipe d
        with :? DivergedError as e ->
            Results.markDiverged dir e.Message
            reraise ()

    Results.writeAtomically (Path.Combine(dir, "recipe.json")) (Recipe.toText r.Config + "\n")

    // The trained parameters, in the safetensors format of the continual runner's checkpoints, with
    // the recipe that made them in its metadata; before the summary, which marks the folder complete.
    Forgetting.Training.Checkpoint.write
        (Path.Combine(dir, "model.safetensors"))
        (Forgetting.Training.Checkpoint.ofParams r.Params)
        (Map [ "recipe", Recipe.toText r.Config ])

    Results.writeAtomically (Path.Combine(dir, "summary.json")) (render true (summaryJson command (dataJson d) r))

    Results.writeAtomically (Path.Combine(dir, "epochs.csv")) (epochsCsv r)
    Results.writeAtomically (Path.Combine(dir, "units.csv")) (unitsCsv r)
    r

/// Train a single-task recipe on its data into the folder `dir`, written as a unit (Results.staged):
/// `dir` appears whole, or stays as it was. A `dir` that holds results is refused unless `overwrite`.
let execute (overwrite: bool) (title: string) (d: SingleData) (dir: string) (command: string) (recipe: Recipe) =
    Results.staged overwrite false dir (fun staging -> trainInto title d staging command recipe)

let private report (d: SingleData) (dir: string) (r: RunResult) =
    printfn "%s on %s: test accuracy %.2f%%" r.Config.Label (KnownDataset.name d.Dataset) (pct r.Test.Accuracy)

    for l in r.Layers do
        let importance =
            match l.Importance with
            | Some imp -> $", mean importance (%s{l.Readout}) %.3f{Array.average imp}"
            | None -> ""

        printfn "  hidden layer %d: sparsity %.3f%s" l.Layer l.Sparsity importance

    printfn "results in %s" dir

/// `forgetting run` of a single-task recipe: train it again into `dir` (refused if it holds results,
/// unless `overwrite`).
let rerun (overwrite: bool) (cacheDir: string option) (dir: string) (command: string) (recipe: Recipe) =
    let recipe = Classification.validate Catalog.terms recipe
    let d = loadSingle cacheDir recipe
    execute overwrite recipe.Label d dir command recipe |> report d dir

let private commandLine (name: string) =
    $"forgetting {name} " + String.Join(" ", Environment.GetCommandLineArgs()[2..])

let train (args: ParseResults<RunArgs>) =
    only "train" args

    let v = variantWith args (terms args) (variantName args)
    checkVariants [ v ] args

    let r = recipe args v (seed args)
    let d = dataset args r

    let dir =
        outDir args $"train-{KnownDataset.name d.Dataset}-{v.Name}-seed{r.Seed}-{Recipe.hash [ r ]}"

    execute (overwrite args) v.Name d dir (commandLine "train") r |> report d dir

/// Run every recipe of a comparison into `dir` and write its tables there.
let private compareInto
    (dir: string)
    (d: SingleData)
    (command: string)
    (variants: Variant list)
    (seeds: int)
    (first: int)
    (recipes: Recipe list list)
    =
    // Every run in a folder of its own, a whole `train` results folder that `forgetting run` re-runs.
    let runs =
        [ for rs in recipes do
              for r in rs ->
                  let title = $"{r.Label} seed {r.Seed}"
                  let folder = Path.Combine(dir, $"{r.Label}-seed{r.Seed}")
                  r.Label, int r.Seed, trainInto title d folder command r ]

    let hidden = recipes.Head.Head.Model.Hidden.Length

    let rows =
        [ for v in variants ->
              let mine =
                  runs
                  |> List.filter (fun (n, _, _) -> n = v.Name)
                  |> List.map (fun (_, _, r) -> r)

              let acc =
                  Forgetting.Analysis.Statistics.meanSd (mine |> List.map (fun r -> pct r.Test.Accuracy))

              let sparsity =
                  [ for k in 0 .. hidden - 1 ->
                        Forgetting.Analysis.Statistics.meanSd (mine |> List.map (fun r -> r.Layers[k].Sparsity)) ]

              v.Name, acc, sparsity ]

    let header =
        [ sprintf "%-22s" "variant"; sprintf "%16s" "test accuracy %" ]
        @ [ for k in 1..hidden -> sprintf "%15s" $"sparsity h{k}" ]

    let table =
        [ yield String.concat "  " header
          for name, (am, asd), sparsity in rows ->
              String.concat
                  "  "
                  ([ sprintf "%-22s" name; sprintf "%16s" $"%.2f{am} ± %.2f{asd}" ]
                   @ [ for m, sd in sparsity -> sprintf "%15s" $"%.3f{m} ± %.3f{sd}" ]) ]

    let summary =
        Obj
            [ "command", Str command
              "data", dataJson d
              "versions", Results.versions ()
              "seeds", Arr [ for k in 0 .. seeds - 1 -> Int(first + k) ]
              "variants",
              Arr
                  [ for name, (am, asd), sparsity in rows ->
                        Obj
                            [ "variant", Str name
                              "test_accuracy_mean", Num am
                              "test_accuracy_sd", Num asd
                              "sparsity_mean", Arr [ for m, _ in sparsity -> Num m ]
                              "sparsity_sd", Arr [ for _, sd in sparsity -> Num sd ] ] ]
              "runs", Arr [ for _, _, r in runs -> summaryJson command (Str(KnownDataset.name d.Dataset)) r ] ]

    Results.writeAtomically (Path.Combine(dir, "compare.json")) (render true summary)

    Results.writeAtomically
        (Path.Combine(dir, "runs.csv"))
        (Results.csv
            ([ "variant"; "seed"; "test_accuracy" ]
             @ [ for k in 1..hidden -> $"sparsity_h{k}" ])
            [ for name, seed, r in runs ->
                  [ name; string seed; Results.num r.Test.Accuracy ]
                  @ [ for l in r.Layers -> Results.num l.Sparsity ] ])

    Results.writeAtomically (Path.Combine(dir, "table.txt")) (String.concat "\n" table + "\n")
    printfn "%s, %d examples for training, %d seeds:" (KnownDataset.name d.Dataset) d.Train.Count seeds
    table |> List.iter (printfn "%s")

let compare (args: ParseResults<RunArgs>) =
    only "compare" args
    let overrides = terms args

    let names =
        args.GetResult(Variants, defaultValue = [ "sgd"; "l1"; "l2"; "lateral_inhibition" ])

    if names.IsEmpty then
        raise (UserError("--variants needs at least one variant name", Exit.usage))

    let variants = names |> List.map (variantWith args overrides)
    checkVariants variants args
    let seeds = args.GetResult(Seeds, defaultValue = 3) |> Check.atMost "seeds" 1000

    if seeds < 1 then
        raise (UserError($"--seeds must be at least 1, got {seeds}", Exit.usage))

    let first = seed args

    let recipes =
        [ for v in variants -> [ for k in 0 .. seeds - 1 -> recipe args v (first + k) ] ]

    let d = dataset args recipes.Head.Head

    let hash = Recipe.hash (List.concat recipes)
    let dir = outDir args $"compare-{KnownDataset.name d.Dataset}-{hash}"
    let command = commandLine "compare"

    // The whole comparison is one unit: its runs' folders and its tables appear together.
    Results.staged (overwrite args) false dir (fun stage -> compareInto stage d command variants seeds first recipes)
    printfn "results in %s" dir
