/// The Expecto runner: every `[<Tests>]` value of this assembly (`dotnet run`, or the built
/// executable, with Expecto's command-line options: `--filter`, `--summary`, `--junit-summary`, ...).
module Forgetting.Tests.Main

open Expecto

/// Sequenced by default (`--parallel` overrides it): the engine's kernels already spread their work
/// over every core (Parallelism.forTiles), and tests running side by side only make them wait for
/// each other's thread-pool threads. On 2 idle cores the suite took 13 s one test at a time against
/// 20 s with Expecto's default of one test per core (and as long either way when other work kept the
/// cores busy). Run with `--parallel`, the few tests that change process-wide state still keep apart
/// (Sequencing).
[<EntryPoint>]
let main argv =
    Tests.runTestsInAssemblyWithCLIArgs [ Sequenced ] argv
