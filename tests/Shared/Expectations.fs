/// Expectations that Expecto's `Expect` does not have, each with the semantics of the xunit assertion
/// it replaced, so that converted tests check exactly what they checked before.
module Forgetting.Tests.Expectations

open System
open System.Collections.Generic
open Expecto

let private thrown (f: unit -> unit) : exn option =
    try
        f ()
        None
    with e ->
        Some e

/// `f` throws an exception of exactly the type 'T (not a subtype), which is returned (xunit's
/// Assert.Throws).
[<RequiresExplicitTypeArguments>]
let throws<'T when 'T :> exn> (message: string) (f: unit -> unit) : 'T =
    match thrown f with
    | Some e when e.GetType() = typeof<'T> -> e :?> 'T
    | Some e ->
        failtestf "%s. Expected %s, but %s was thrown: %s" message typeof<'T>.FullName (e.GetType().FullName) e.Message
    | None -> failtestf "%s. Expected %s, but nothing was thrown." message typeof<'T>.FullName

/// `f` throws an exception of the type 'T or of a subtype, which is returned (xunit's Assert.ThrowsAny).
[<RequiresExplicitTypeArguments>]
let throwsAny<'T when 'T :> exn> (message: string) (f: unit -> unit) : 'T =
    match thrown f with
    | Some(:? 'T as e) -> e
    | Some e ->
        failtestf
            "%s. Expected %s or a subtype, but %s was thrown: %s"
            message
            typeof<'T>.FullName
            (e.GetType().FullName)
            e.Message
    | None -> failtestf "%s. Expected %s, but nothing was thrown." message typeof<'T>.FullName

/// `f` is refused with an ArgumentException (or a subtype) whose message contains `words`: how Core
/// refuses a bad value, in one line that says what to give instead.
let refused (f: unit -> 'a) (words: string) =
    let e =
        throwsAny<System.ArgumentException> $"refused ({words})" (fun () -> f () |> ignore)

    Expect.stringContains e.Message words "the message"

/// `subject` does not contain `substring` (xunit's Assert.DoesNotContain on strings).
let stringDoesNotContain (subject: string) (substring: string) (message: string) =
    if subject.Contains substring then
        failtestf "%s. Expected '%s' not to contain '%s'." message subject substring

/// `actual` and `expected` are equal once both are rounded to `digits` decimal places (xunit's
/// Assert.Equal(expected, actual, precision)).
let equalRounded (digits: int) (actual: float) (expected: float) (message: string) =
    let a, e = Math.Round(actual, digits), Math.Round(expected, digits)

    if not (Object.Equals(a, e)) then
        failtestf
            "%s. Values are not equal to %d decimal places: expected %.17g (rounded from %.17g), actual %.17g (rounded from %.17g)."
            message
            digits
            e
            expected
            a
            actual

/// low <= actual <= high by the type's default comparer, NaN below every number (xunit's Assert.InRange).
let inRange (actual: 'a) (low: 'a) (high: 'a) (message: string) =
    let c = Comparer<'a>.Default

    if c.Compare(low, actual) > 0 || c.Compare(actual, high) > 0 then
        failtestf "%s. Expected %A to lie in [%A, %A]." message actual low high

/// `actual` and `expected` are the same object (xunit's Assert.Same).
let same (actual: 'a) (expected: 'a) (message: string) =
    if not (obj.ReferenceEquals(actual, expected)) then
        failtestf "%s. Expected the same object, got another one." message
