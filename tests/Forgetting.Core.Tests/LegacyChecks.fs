/// Transitional: xunit-era property runner, removed once every test file is on Expecto.
module Forgetting.Tests.LegacyChecks

open FsCheck
open FsCheck.FSharp

/// Check a property with FsCheck's defaults (100 cases), throwing on failure.
let check (property: 'p) =
    Check.One(Config.QuickThrowOnFailure, property)

/// Check a property on n cases.
let checkN (n: int) (property: 'p) =
    Check.One(Config.QuickThrowOnFailure.WithMaxTest n, property)

/// Check `body` for every value drawn from `gen`.
let forAll (gen: Gen<'a>) (body: 'a -> bool) =
    check (Prop.forAll (Arb.fromGen gen) body)
