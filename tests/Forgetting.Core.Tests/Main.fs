/// The Expecto runner: every `[<Tests>]` value of this assembly (`dotnet run`, or the built
/// executable, with Expecto's command-line options: `--filter`, `--summary`, `--junit-summary`, ...).
module Forgetting.Tests.Main

open Expecto

/// Sequenced by default (`--parallel` overrides it): the engine's kernels already spread their work
/// over every core (Parallelism.forTiles), and tests running side by side only make them wait for
/// each other's thread-pool threads. On 2 cores the suite takes about 13 s one test at a time and
/// 20 s with Expecto's default of one test per core. Run with `--parallel`, the few tests that change
/// process-wide state still keep apart (Sequencing).
[<EntryPoint>]
let main argv =
    Tests.runTestsInAssemblyWithCLIArgs [ Sequenced ] argv
