/// The command line: one sub-command per experiment family (Argu).
module Forgetting.Cli.Args

open Argu
open Forgetting.Cli.Commands

type Command =
    | [<CliPrefix(CliPrefix.None)>] Sparsity of ParseResults<SparsityCommand.SparsityArgs>
    | [<CliPrefix(CliPrefix.None)>] Bench of ParseResults<BenchCommand.BenchArgs>
    | [<CliPrefix(CliPrefix.None)>] Data of ParseResults<DataCommand.DataArgs>
    | [<CliPrefix(CliPrefix.None)>] Train of ParseResults<RunArgs.RunArgs>
    | [<CliPrefix(CliPrefix.None)>] Compare of ParseResults<RunArgs.RunArgs>
    | [<CliPrefix(CliPrefix.None)>] Figure of ParseResults<RunArgs.RunArgs>
    | [<CliPrefix(CliPrefix.None)>] Report of ParseResults<FigureCommand.ReportArgs>
    | [<CliPrefix(CliPrefix.None)>] Continual of ParseResults<ContinualCommand.ContinualArgs>
    | [<CliPrefix(CliPrefix.None)>] Run of ParseResults<ContinualCommand.RunRecipeArgs>
    | [<CliPrefix(CliPrefix.None)>] Sweep of ParseResults<SweepCommand.SweepArgs>
    | [<CliPrefix(CliPrefix.None)>] Importance of ParseResults<ImportanceCommand.ImportanceArgs>
    | [<CliPrefix(CliPrefix.None)>] Hopfield of ParseResults<HopfieldCommand.HopfieldArgs>
    | [<AltCommandLine("-V"); Unique>] Version

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Sparsity _ -> "Treves-Rolls sparsity of a layer's activations (CSV, or generated)."
            | Bench _ -> "time the engine's workloads; one JSON object per line."
            | Train _ -> "train one MLP variant (forgetting layer or a baseline) on MNIST or Fashion-MNIST."
            | Figure _ -> "re-run the paper's figures (1e, 2a-d, 3b, 3c, 4a-c): JSON, CSV, SVG and PNG per figure."
            | Report _ -> "gather a directory of figures into one HTML page."
            | Compare _ -> "train several variants over seeds; print accuracy and sparsity (Fig. 3a)."
            | Continual _ -> "learn a task sequence with continual-learning methods over seeds: R and its metrics."
            | Run _ -> "run a recipe.json from a results folder again."
            | Sweep _ ->
                "a grid of runs over seeds and settings, locally or as a SLURM job array; collected into one table."
            | Importance _ ->
                "parameter importance (MAS, local MAS, EWC's Fisher) of a trained model (continual or train) on a task: summary, values, agreement, histogram."
            | Hopfield _ ->
                "Hopfield layers with and without partial forgetting (LwPF): bit-pattern bags, immune repertoires (DeepRC), a vision transformer; over seeds."
            | Data _ -> "the data-set cache: fetch MNIST or Fashion-MNIST, list or show what it holds."
            | Version -> "print the version and exit."
