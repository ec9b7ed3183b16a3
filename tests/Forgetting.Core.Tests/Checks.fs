/// FsCheck properties as Expecto tests: every property states its number of cases and runs from a
/// fixed, replayable seed, so that a failure prints its shrunk counter-example and the seed that
/// replays it, and a green run is the same run on every machine.
module Forgetting.Tests.Checks

open System
open System.Text.RegularExpressions
open Expecto
open FsCheck
open FsCheck.FSharp

/// The replay seed of a property: a stable hash of its name (FNV-1a), so that adding a property does
/// not change the cases of the others. FsCheck 3 wants an odd gamma in the replay pair.
let seedOf (name: string) : uint64 * uint64 * int option =
    let mutable h = 14695981039346656037UL

    for c in name do
        h <- (h ^^^ uint64 c) * 1099511628211UL

    h, (h * 6364136223846793005UL + 1442695040888963407UL) ||| 1UL, None

/// The environment variable that replays one failing case: the three numbers of the failure's
/// "Focus on error" line (seed, gamma and size), pasted as they are or as "seed,gamma,size". It applies
/// to every property that runs, so run it with `--filter` on the one that failed.
[<Literal>]
let ReplayVariable = "FORGETTING_REPLAY"

let private replayFromEnvironment =
    lazy
        (match Environment.GetEnvironmentVariable ReplayVariable with
         | null -> None
         | text when String.IsNullOrWhiteSpace text -> None
         | text ->
             match [ for m in Regex.Matches(text, @"\d+") -> m.Value ] with
             | [ seed; gamma; size ] -> Some(UInt64.Parse seed, UInt64.Parse gamma, Some(int size))
             | _ -> failwith $"{ReplayVariable}='{text}': expected the seed, gamma and size of a failure's replay hint")

/// Expecto's FsCheck settings for `cases` cases, replaying from the property's own seed (or from the
/// failing case that FORGETTING_REPLAY names).
let config (name: string) (cases: int) =
    { FsCheckConfig.defaultConfig with
        maxTest = cases
        replay = Some(replayFromEnvironment.Force() |> Option.defaultValue (seedOf name)) }

// Expecto ends a failure with "Focus on error: etestPropertyWithConfig (seed, gamma, Some size) name".
let private focusHint =
    Regex(@"Focus on error:\s*\S+ \((\d+)UL, (\d+)UL, Some (\d+)\)")

/// The property test with a last line on failure that says how to replay the failing case alone.
let private withReplayLine (name: string) (test: Test) =
    let replayLine (message: string) =
        let m = focusHint.Match message

        if m.Success then
            let seed, gamma, size = m.Groups[1].Value, m.Groups[2].Value, m.Groups[3].Value
            $"\nReplay this case alone: {ReplayVariable}={seed},{gamma},{size} with --filter-test-case \"{name}\""
        else
            ""

    match test with
    | TestLabel(label, TestCase(AsyncFsCheck(testConfig, stressConfig, run), focus), state) ->
        let run' (c: FsCheckConfig) =
            async {
                try
                    return! run c
                with :? FailedException as e ->
                    return raise (FailedException(e.Message + replayLine e.Message))
            }

        TestLabel(label, TestCase(AsyncFsCheck(testConfig, stressConfig, run'), focus), state)
    | other -> other

/// A property over FsCheck's generated arguments of `body`, on `cases` cases.
let property (name: string) (cases: int) (body: 'a) =
    testPropertyWithConfig (config name cases) name body |> withReplayLine name

/// A property that `body` holds for every value drawn from `gen`, on `cases` cases.
let forAll (name: string) (cases: int) (gen: Gen<'a>) (body: 'a -> bool) =
    testPropertyWithConfig (config name cases) name (Prop.forAll (Arb.fromGen gen) body)
    |> withReplayLine name
