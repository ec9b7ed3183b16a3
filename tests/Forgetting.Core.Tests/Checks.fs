/// FsCheck properties as Expecto tests: every property states its number of cases and runs from a
/// fixed, replayable seed, so that a failure prints its shrunk counter-example and the seed that
/// replays it, and a green run is the same run on every machine.
module Forgetting.Tests.Checks

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

/// Expecto's FsCheck settings for `cases` cases, replaying from the property's own seed.
let config (name: string) (cases: int) =
    { FsCheckConfig.defaultConfig with
        maxTest = cases
        replay = Some(seedOf name) }

/// A property over FsCheck's generated arguments of `body`, on `cases` cases.
let property (name: string) (cases: int) (body: 'a) =
    testPropertyWithConfig (config name cases) name body

/// A property that `body` holds for every value drawn from `gen`, on `cases` cases.
let forAll (name: string) (cases: int) (gen: Gen<'a>) (body: 'a -> bool) =
    testPropertyWithConfig (config name cases) name (Prop.forAll (Arb.fromGen gen) body)
