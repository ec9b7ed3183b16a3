/// Runs FsCheck properties inside xunit facts: a failing property fails the fact with its counterexample.
module Forgetting.Tests.Checks

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
