/// These tests run one at a time by default (Main), but `--parallel` runs them side by side, one per
/// core. Almost every test shares nothing with the others: its own data, temporary folder and loopback
/// port. These wrap the few that change state of the whole test process, and say how they are kept
/// apart when tests run in parallel.
module Forgetting.Tests.Sequencing

open Expecto

/// Tests that set the engine's process-wide degree of parallelism (Parallelism.withDegree or setDegree)
/// run one at a time, in one sequenced group: two of them at once would each run under the other's
/// degree, and withDegree, restoring the value it found, could leave the other's degree set for good.
/// The group still runs alongside the other tests, which never set the degree and only read it: every
/// kernel gives bit-identical results at any degree, so they see nothing but a change of speed.
let degreeOfParallelism (test: Test) =
    testSequencedGroup "degree of parallelism" test

/// Tests that set an environment variable of the test process run alone, after every parallel test
/// (Expecto's testSequenced): any code under test may read the environment.
let environment (test: Test) = testSequenced test

/// The OpenBLAS tests run one at a time, as they did in their xunit class: OpenBLAS keeps process-wide
/// state, its thread count, which the engine sets from its own degree before a call without a lock.
let openBlas (test: Test) = testSequencedGroup "OpenBLAS" test
