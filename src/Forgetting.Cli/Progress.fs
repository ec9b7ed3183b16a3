/// Progress of long runs: a live bar on a terminal, plain lines when output is redirected (logs, CI).
module Forgetting.Cli.Progress

open System
open Spectre.Console

/// How a long run reports: `Update` often (the bar: fraction done and what is running), `Line` at
/// milestones (an epoch's metrics), printed in both modes.
type Reporter =
    { Update: float -> string -> unit
      Line: string -> unit }

let private interactive () =
    not Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive

/// Run `work` with a reporter.
let run (title: string) (work: Reporter -> 'a) : 'a =
    if not (interactive ()) then
        work
            { Update = fun _ _ -> ()
              Line = fun line -> printfn "%s" line }
    else
        AnsiConsole
            .Progress()
            .AutoClear(true)
            .Columns(TaskDescriptionColumn(), ProgressBarColumn(), PercentageColumn(), ElapsedTimeColumn())
            .Start(fun ctx ->
                let task = ctx.AddTask(Markup.Escape title, maxValue = 1.0)

                work
                    { Update =
                        fun fraction description ->
                            task.Value <- Math.Clamp(fraction, 0.0, 1.0)
                            task.Description <- Markup.Escape $"{title}: {description}"
                      Line = fun line -> AnsiConsole.WriteLine line })
