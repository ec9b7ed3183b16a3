/// `forgetting hopfield`: the bit-pattern multiple-instance task with Hopfield layers, or DeepRC's model
/// on generated immune repertoires, with and without partial forgetting (source 003), models × units ×
/// seeds: test accuracy and forgotten attention mass per run, mean ± sd and the paired difference from
/// no unit per model.
module Forgetting.Cli.Commands.HopfieldCommand

open System
open System.IO
open Argu
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Training
open Forgetting.Experiments
open Forgetting.Cli
open Forgetting.Cli.Json

type HopfieldArgs =
    | Task of string
    | Layers of string list
    | Units of string list
    | Adapted of bool
    | Heads of int
    | Hidden of int
    | Beta of float
    | Update_Steps of int
    | Dropout of float
    | Width of int
    | Blocks of int
    | Median_Scope of string
    | Pfu_Sigma of float
    | Detach_Threshold
    | Pfu_Threshold of string
    | Pfu_Below of string
    | Epochs of int
    | Seeds of int
    | Seed of int
    | Bags of int
    | Witness_Rate of float
    | Lr of float
    | Train_Limit of int
    | Test_Limit of int
    | Cache_Dir of string
    | Out of string
    | Overwrite

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Task _ ->
                "the task: bit-pattern (the default), repertoire (DeepRC's model on generated immune repertoires) or vit (a small vision transformer on Fashion-MNIST from the cache)."
            | Layers _ -> "bit-pattern: layers to compare: hopfield, pooling, lookup (default: pooling)."
            | Units _ -> "partial-forgetting units to compare: none, relu, pfu (default: none relu pfu)."
            | Adapted _ ->
                "bit-pattern: the layer options' defaults: the demo's adapted settings (hidden 8, 8 heads, 4 association steps, β 0.25, dropout 0.5) when true (default), hflayers' defaults (1 head, hidden 8, β 1/√8, 1 step, no dropout) when false."
            | Heads _ -> "bit-pattern: association heads; vit: attention heads, dividing the width (default 4)."
            | Hidden _ -> "bit-pattern: each head's association space (0: 8 bits / heads)."
            | Beta _ -> "bit-pattern: β, the association's inverse temperature (0: 1/√hidden)."
            | Update_Steps _ -> "bit-pattern: association steps (hflayers' update_steps_max + 1)."
            | Dropout _ -> "bit-pattern: dropout on the association matrix in training, in [0, 1)."
            | Width _ -> "vit: the token width (default 64)."
            | Blocks _ -> "vit: transformer blocks (default 4)."
            | Median_Scope _ ->
                "the PFU's median over: call (bit-pattern's default), sample (repertoire's default: one bag), head or query."
            | Pfu_Sigma _ -> "σ of the PFU's threshold noise ε = N(0, 1)·σ² in training (default 0.01)."
            | Detach_Threshold -> "cut the PFU's threshold from the gradient (default: as the reference, not cut)."
            | Pfu_Threshold _ ->
                "the PFU's threshold before its noise: median (the default, over --median-scope) or a fixed number."
            | Pfu_Below _ ->
                "what the PFU gives a score below its threshold: threshold (the default, the reference's) or a fixed number."
            | Epochs _ -> "epochs per run (default: bit-pattern 250, the demo's; repertoire 20)."
            | Seeds _ -> "seeds per layer and unit, 1 … n (default 3)."
            | Seed _ -> "the first seed (default 1)."
            | Bags _ ->
                "bags generated, three quarters train, the rest test (default: bit-pattern 2048, the demo's; repertoire 400)."
            | Witness_Rate _ -> "repertoire: the share of a positive bag's sequences that carry a motif (default 0.05)."
            | Lr _ -> "repertoire: Adam's learning rate (default 1e-4, DeepRC's); vit: AdamW's (default 1e-3)."
            | Train_Limit _ -> "vit: the first n training images only (default: all 60,000)."
            | Test_Limit _ -> "vit: the first n test images only (default: all 10,000)."
            | Cache_Dir _ -> "vit: the data cache holding fashion-mnist (default: $FORGETTING_DATA or the user cache)."
            | Out _ ->
                "results folder: recipe.json (`forgetting run` runs it again), runs.csv, summary.csv, summary.json, figures accuracy and forgotten-mass (SVG, PNG) (default: none, print only)."
            | Overwrite -> "replace the results in --out (refused otherwise)."

/// The study's settings given on the command line, by the names HopfieldStudy.settingsFor takes; the
/// rest are the task's defaults, resolved and checked by the library.
let private given (args: ParseResults<HopfieldArgs>) : (string * SettingValue) list =
    [ for a in args.GetAllResults() do
          match a with
          | Task t -> "task", Choice t
          | Layers l -> "layers", Choice(String.concat "," l)
          | Units u -> "units", Choice(String.concat "," u)
          | Adapted b -> "adapted", Switch b
          | Heads n -> "heads", Count n
          | Hidden n -> "hidden", Count n
          | Beta x -> "beta", Number x
          | Update_Steps n -> "update_steps", Count n
          | Dropout x -> "dropout", Number x
          | Width n -> "width", Count n
          | Blocks n -> "blocks", Count n
          | Median_Scope m -> "median_scope", Choice m
          | Pfu_Sigma x -> "pfu_sigma", Number x
          | Detach_Threshold -> "detach_threshold", Switch true
          | Pfu_Threshold t -> "pfu_threshold", Choice t
          | Pfu_Below t -> "pfu_below", Choice t
          | Epochs n -> "epochs", Count n
          | Seeds n -> "seeds", Count n
          | Seed n -> "first_seed", Count n
          | Bags n -> "bags", Count n
          | Witness_Rate x -> "witness_rate", Number x
          | Lr x -> "lr", Number x
          | Train_Limit n -> "train_limit", Count n
          | Test_Limit n -> "test_limit", Count n
          | Cache_Dir _
          | Out _
          | Overwrite -> () ]

// A mass that is zero up to rounding (1 minus a row of a softmax) shown as 0.0000, not -0.0000.
let private unsigned (v: float) = System.Math.Round(v, 4) + 0.0

/// The study recipe's settings checked again (a recipe file may have been edited): a bad value is one
/// line and exit 2.
let private checkedSettings (recipe: Recipe) =
    match recipe.Study with
    | Some st when st.Kind = HopfieldStudy.Kind ->
        try
            HopfieldStudy.resolve (Map.toList st.Settings)
        with :? ArgumentException as e ->
            raise (UserError(e.Message.Split(" (Parameter '")[0], Exit.usage))
    | _ -> raise (UserError("the recipe is not a Hopfield study", Exit.usage))

/// Run a Hopfield study recipe: print progress and the summary; with `out`, write the results folder as
/// a unit (refused if it holds results, unless `overwrite`).
let execute (overwrite: bool) (cacheDir: string option) (out: string option) (command: string) (recipe: Recipe) =
    let s = checkedSettings recipe
    let task = HopfieldStudy.task s
    let units = HopfieldStudy.units s
    let seeds = HopfieldStudy.seeds s
    let epochs = TermSetting.toInt s "epochs"

    let images =
        lazy
            (let data =
                Forgetting.Data.Cache.load (Forgetting.Data.Cache.directory cacheDir) Forgetting.Data.FashionMnist

             Examples.ofDataset data.Train, Examples.ofDataset data.Test)

    let models = HopfieldStudy.models s images.Force
    let modelNames = models |> List.map fst

    let work (dir: string option) =
        let runs =
            [ for name, runner in models do
                  for unit in units do
                      for seed in seeds -> name, runner, unit, seed ]

        let results =
            Progress.run "hopfield" (fun reporter ->
                runs
                |> List.mapi (fun i (name, runner, unit, seed) ->
                    let label = $"{name} + {unit.Name}, seed {seed}"
                    let sw = Diagnostics.Stopwatch.StartNew()

                    let progress p =
                        match p with
                        | BatchDone(epoch, b, count, _) ->
                            let done' = (float (epoch - 1) + float b / float count) / float epochs
                            reporter.Update ((float i + done') / float runs.Length) $"{label}, epoch {epoch}"
                        | EpochDone m when m.Epoch % 10 = 0 || m.Epoch = epochs ->
                            reporter.Line
                                $"{label}: epoch {m.Epoch}/{epochs}, train loss {m.TrainLoss:F4}, test accuracy {m.TestAccuracy:F4}"
                        | EpochDone _ -> ()

                    let r = runner unit seed progress

                    reporter.Line
                        $"{label}: test accuracy {r.TestAccuracy:F4}, forgotten attention mass {unsigned r.ForgottenMass:F4} ({sw.Elapsed.TotalSeconds:F0} s)"

                    { HopfieldRun.Model = name
                      Unit = unit.Name
                      Seed = seed
                      Result = r
                      Seconds = sw.Elapsed.TotalSeconds }))

        let summary = HopfieldStudy.summary modelNames units results

        printfn ""

        printfn
            "test accuracy over %d seed(s), %d epochs, %s"
            seeds.Length
            epochs
            (match task with
             | "repertoire" -> $"""repertoires, witness rate {TermSetting.toFloat s "witness_rate"}"""
             | "vit" -> "Fashion-MNIST"
             | _ ->
                 let o = HopfieldStudy.layerOptions s

                 let named =
                     if o = BitPatternLayerOptions.Adapted then
                         "adapted settings"
                     elif o = BitPatternLayerOptions.Defaults then
                         "default settings"
                     else
                         "own settings"

                 let hidden = o.HiddenSize |> Option.map string |> Option.defaultValue "8/heads"
                 let beta = o.Scaling |> Option.map string |> Option.defaultValue "1/√hidden"

                 $"{named}: {o.Heads} head(s), hidden {hidden}, β {beta}, {o.UpdateSteps} step(s), dropout {o.Dropout}")

        printfn "%-10s %-6s %-18s %-12s %s" "layer" "unit" "accuracy" "forgotten" "vs none (paired)"

        for row in summary do
            let d =
                match row.PairedDifference with
                | Some(m, sd) -> $"""{(if m >= 0.0 then "+" else "")}{m:F4} ± {sd:F4}"""
                | None -> "-"

            printfn
                "%-10s %-6s %-18s %-12s %s"
                row.Model
                row.Unit
                $"{row.Accuracy:F4} ± {row.AccuracySd:F4}"
                $"{unsigned row.Forgotten:F4}"
                d

        match dir with
        | None -> ()
        | Some dir ->
            Results.writeAtomically (Path.Combine(dir, "recipe.json")) (Recipe.toText recipe + "\n")

            Results.writeAtomically
                (Path.Combine(dir, "runs.csv"))
                (Results.csv
                    [ "layer"; "unit"; "seed"; "test_accuracy"; "forgotten_mass"; "seconds" ]
                    [ for r in results ->
                          [ r.Model
                            r.Unit
                            string r.Seed
                            Results.num r.Result.TestAccuracy
                            Results.num r.Result.ForgottenMass
                            Results.num r.Seconds ] ])

            let paired f (row: HopfieldSummaryRow) =
                row.PairedDifference |> Option.map (f >> Results.num) |> Option.defaultValue ""

            Results.writeAtomically
                (Path.Combine(dir, "summary.csv"))
                (Results.csv
                    [ "layer"
                      "unit"
                      "accuracy_mean"
                      "accuracy_sd"
                      "forgotten_mass_mean"
                      "paired_diff_mean"
                      "paired_diff_sd" ]
                    [ for row in summary ->
                          [ row.Model
                            row.Unit
                            Results.num row.Accuracy
                            Results.num row.AccuracySd
                            Results.num row.Forgotten
                            paired fst row
                            paired snd row ] ])

            let data =
                if task = "vit" then
                    let train, test = HopfieldStudy.vitData s (images.Force())

                    [ "data",
                      Obj
                          [ "dataset", Str "fashion-mnist"
                            "train_images", Int train.Count
                            "test_images", Int test.Count ] ]
                else
                    []

            Results.writeAtomically
                (Path.Combine(dir, "summary.json"))
                (Obj(
                    [ "command", Str command; "recipe", Raw(Recipe.toJson recipe) ]
                    @ data
                    @ [ "versions", Results.versions () ]
                 )
                 |> render true)

            let variants =
                [ for model in modelNames do
                      for unit in units ->
                          $"{model} + {unit.Name}",
                          results
                          |> List.filter (fun r -> r.Model = model && r.Unit = unit.Name)
                          |> List.map (fun r -> r.Result) ]

            for name, panel in List.zip [ "accuracy"; "forgotten-mass" ] (BitPatternTask.panels variants) do
                Forgetting.Reporting.Save.panel Forgetting.Reporting.Style.panelSize (Path.Combine(dir, name)) panel

    match out with
    | None -> work None
    | Some final ->
        Results.staged overwrite false final (fun staging -> work (Some staging))
        printfn "results in %s" final

/// `forgetting run` of a Hopfield study recipe: run it again into `dir` (refused if it holds results,
/// unless `overwrite`).
let rerun (overwrite: bool) (cacheDir: string option) (dir: string) (command: string) (recipe: Recipe) =
    execute overwrite cacheDir (Some dir) command recipe

let run (args: ParseResults<HopfieldArgs>) =
    let recipe =
        try
            HopfieldStudy.recipe (given args)
        with :? ArgumentException as e ->
            raise (UserError(e.Message.Split(" (Parameter '")[0], Exit.usage))

    let command =
        "forgetting hopfield " + String.Join(" ", Environment.GetCommandLineArgs()[2..])

    execute (args.Contains Overwrite) (args.TryGetResult Cache_Dir) (args.TryGetResult Out) command recipe
