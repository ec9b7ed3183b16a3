module Forgetting.Cli.Program

open System
open Argu
open Forgetting.Cli.Args

/// The informational version, which carries the commit the tool was built from.
let private version =
    let asm = typeof<Command>.Assembly

    match asm.GetCustomAttributes(typeof<Reflection.AssemblyInformationalVersionAttribute>, false) with
    | [| :? Reflection.AssemblyInformationalVersionAttribute as a |] -> a.InformationalVersion
    | _ -> string (asm.GetName().Version)

/// FORGETTING_THREADS and FORGETTING_GEMM, read now rather than at the first kernel, so that a bad
/// value is one line before any work instead of a failure in the middle of a run.
let private checkEnvironment () =
    try
        Forgetting.Tensors.Parallelism.degree () |> ignore
        Forgetting.Tensors.Gemm.provider () |> ignore
    with :? InvalidOperationException as e ->
        raise (UserError(e.Message, Exit.usage))

[<EntryPoint>]
let main argv =
    let parser = ArgumentParser.Create<Command>(programName = "forgetting")

    try
        let results = parser.ParseCommandLine(argv, raiseOnUsage = true)

        if results.Contains Version then
            printfn "forgetting %s" version
            0
        else
            checkEnvironment ()

            match results.TryGetSubCommand() with
            | Some(Sparsity args) ->
                Commands.SparsityCommand.run args
                0
            | Some(Bench args) ->
                Commands.BenchCommand.run args
                0
            | Some(Train args) ->
                Commands.TrainCommand.train args
                0
            | Some(Figure args) ->
                Commands.FigureCommand.run args
                0
            | Some(Report args) ->
                Commands.FigureCommand.report args
                0
            | Some(Compare args) ->
                Commands.TrainCommand.compare args
                0
            | Some(Continual args) ->
                Commands.ContinualCommand.run args
                0
            | Some(Run args) ->
                Commands.ContinualCommand.rerun args
                0
            | Some(Sweep args) ->
                Commands.SweepCommand.dispatch args
                0
            | Some(Importance args) ->
                Commands.ImportanceCommand.run args
                0
            | Some(Data args) ->
                Commands.DataCommand.run args
                0
            | Some(Hopfield args) ->
                Commands.HopfieldCommand.run args
                0
            | _ ->
                eprintfn "forgetting: name a command.\n%s" (parser.PrintUsage())
                Exit.usage
    with
    | :? ArguParseException as e when e.ErrorCode = ErrorCode.HelpText ->
        printfn "%s" e.Message
        0
    | :? ArguParseException as e ->
        // Argu's first line says what is wrong (an unknown option, a value that is no number or
        // overflows an int); the usage it appends is what --help prints.
        let first = (e.Message.Split '\n').[0].Trim()

        let reason =
            if first.StartsWith "ERROR: " then
                first.Substring 7
            else
                first

        eprintfn "forgetting: %s (--help lists the options)" reason
        Exit.usage
    | UserError(message, code) ->
        eprintfn "forgetting: %s" message
        code
    | :? Forgetting.Training.DivergedError as e ->
        eprintfn "forgetting: %s" e.Message
        Exit.diverged
    | :? Forgetting.Data.DataError as e ->
        eprintfn "forgetting: %s" e.Message
        Exit.input
    // Settings the commands pass through unchecked to Core (a t-SNE perplexity too large for the
    // points, sizes that do not fit) come back as ArgumentException with a message that names them.
    | :? ArgumentException as e ->
        eprintfn "forgetting: %s" e.Message
        Exit.usage
    | :? IO.IOException
    | :? UnauthorizedAccessException as e ->
        eprintfn "forgetting: %s" e.Message
        Exit.input
