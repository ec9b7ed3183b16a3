/// The Expecto runner: every `[<Tests>]` value of this assembly (`dotnet run`, or the built
/// executable, with Expecto's command-line options: `--filter`, `--summary`, `--junit-summary`, ...).
module Forgetting.Cli.Tests.Main

open Expecto

/// In parallel, Expecto's default of one test per core: each test starts the tool in processes of its
/// own and shares nothing with the others. Its files go to a fresh temporary folder (Cli.tempDir), its
/// loopback server listens on a port the system picks (TestData.LoopbackServer), and the environment
/// variables it sets (Cli.runWith) go to its child process only, never to this one. Most of a test's
/// time is a child process starting, so two at a time halve the run: about 20 s against 36 s sequenced
/// on 2 cores.
[<EntryPoint>]
let main argv =
    Tests.runTestsInAssemblyWithCLIArgs [] argv
