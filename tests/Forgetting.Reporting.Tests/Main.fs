/// The Expecto runner: every `[<Tests>]` value of this assembly (`dotnet run`, or the built
/// executable, with Expecto's command-line options: `--filter`, `--summary`, `--junit-summary`, ...).
module Forgetting.Reporting.Tests.Main

open Expecto

[<EntryPoint>]
let main argv =
    Tests.runTestsInAssemblyWithCLIArgs [] argv
