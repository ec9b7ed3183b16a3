namespace Forgetting.Nn

open System
open System.Globalization

/// The value of one setting of a term, as a run description writes it.
type SettingValue =
    | Number of float
    | Count of int
    | Switch of bool
    | Choice of string

    /// The value as text, numbers at full round-trip precision.
    override v.ToString() =
        match v with
        | Number x -> x.ToString("R", CultureInfo.InvariantCulture)
        | Count n -> string n
        | Switch b -> if b then "true" else "false"
        | Choice s -> s

/// One setting a term kind takes: its name, what it means, its default (which also fixes its type),
/// and a check that returns what is wrong with a value, if anything.
type SettingSpec =
    { Name: string
      Doc: string
      Default: SettingValue
      Check: SettingValue -> string option }

/// The settings of one term, every one present (defaults filled in).
type Settings = Map<string, SettingValue>

/// A kind of objective term as a run description names it ("ewc", "si", "l2", "ers"): the settings it
/// takes and how to build the term from them. Each mechanism declares its kinds beside its terms, so
/// that the command line and the C# face can offer every term without knowing any of them.
type TermKind =
    {
        Name: string
        Doc: string
        Settings: SettingSpec list
        /// True for a penalty that adds nothing until a task has been consolidated (EWC, SI): single-task
        /// training refuses it rather than train with a term that never acts.
        AfterTasks: bool
        Build: Settings -> Term
    }

[<RequireQualifiedAccess>]
module TermSetting =

    let private fail (message: string) : 'a = raise (ArgumentException message)

    /// A number setting, checked finite and by `valid` (which says what it wants, e.g. "≥ 0").
    let number (name: string) (doc: string) (value: float) (wants: string) (valid: float -> bool) =
        { Name = name
          Doc = doc
          Default = Number value
          Check =
            function
            | Number x when Double.IsFinite x && valid x -> None
            | v -> Some $"{name} must be {wants}, got {v}" }

    /// A whole-number setting, checked by `valid`.
    let count (name: string) (doc: string) (value: int) (wants: string) (valid: int -> bool) =
        { Name = name
          Doc = doc
          Default = Count value
          Check =
            function
            | Count n when valid n -> None
            | v -> Some $"{name} must be {wants}, got {v}" }

    let switch (name: string) (doc: string) (value: bool) =
        { Name = name
          Doc = doc
          Default = Switch value
          Check = fun _ -> None }

    /// One of the given words.
    let choice (name: string) (doc: string) (value: string) (allowed: string list) =
        { Name = name
          Doc = doc
          Default = Choice value
          Check =
            function
            | Choice s when List.contains s allowed -> None
            | v ->
                let all = String.concat ", " allowed
                Some $"{name} must be one of {all}, got {v}" }

    /// A setting's value read from text, typed by its default.
    let parse (spec: SettingSpec) (text: string) : SettingValue =
        let t = text.Trim()

        match spec.Default with
        | Number _ ->
            match Double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture) with
            | true, x -> Number x
            | _ -> fail $"{spec.Name} takes a number, got '{text}'"
        | Count _ ->
            match Int32.TryParse(t, NumberStyles.Integer, CultureInfo.InvariantCulture) with
            | true, n -> Count n
            | _ -> fail $"{spec.Name} takes a whole number, got '{text}'"
        | Switch _ ->
            match t.ToLowerInvariant() with
            | "true"
            | "on"
            | "yes" -> Switch true
            | "false"
            | "off"
            | "no" -> Switch false
            | _ -> fail $"{spec.Name} takes true or false, got '{text}'"
        | Choice _ -> Choice t

    let private sameType (a: SettingValue) (b: SettingValue) =
        match a, b with
        | Number _, Number _
        | Count _, Count _
        | Switch _, Switch _
        | Choice _, Choice _ -> true
        | _ -> false

    /// The settings of `kind` from the given ones, defaults filled in; an unknown name, a value of the
    /// wrong type or one its check refuses raises ArgumentException with a one-line message.
    let resolve (kindName: string) (specs: SettingSpec list) (given: (string * SettingValue) list) : Settings =
        for name, _ in given do
            if not (specs |> List.exists (fun s -> s.Name = name)) then
                let known = specs |> List.map (fun s -> s.Name) |> String.concat ", "

                fail (
                    if specs.IsEmpty then
                        $"{kindName} takes no settings, got '{name}'"
                    else
                        $"{kindName} has no setting '{name}'; it takes: {known}"
                )

        specs
        |> List.map (fun spec ->
            let value =
                match given |> List.tryFindBack (fun (n, _) -> n = spec.Name) with
                | Some(_, v) ->
                    // A whole number where a number is wanted is that number (JSON does not tell them apart).
                    match spec.Default, v with
                    | Number _, Count n -> Number(float n)
                    | _ when sameType spec.Default v -> v
                    | _ -> fail $"{kindName}: {spec.Name} takes a value like {spec.Default}, got {v}"
                | None -> spec.Default

            match spec.Check value with
            | Some problem -> fail $"{kindName}: {problem}"
            | None -> spec.Name, value)
        |> Map.ofList

    let private get (settings: Settings) (name: string) =
        match settings.TryFind name with
        | Some v -> v
        | None -> invalidArg (nameof name) $"no setting '{name}' (a term kind reads a setting it does not declare)"

    let toFloat (settings: Settings) (name: string) =
        match get settings name with
        | Number x -> x
        | Count n -> float n
        | v -> invalidArg (nameof name) $"setting '{name}' is {v}, not a number"

    let toInt (settings: Settings) (name: string) =
        match get settings name with
        | Count n -> n
        | v -> invalidArg (nameof name) $"setting '{name}' is {v}, not a whole number"

    let toBool (settings: Settings) (name: string) =
        match get settings name with
        | Switch b -> b
        | v -> invalidArg (nameof name) $"setting '{name}' is {v}, not true or false"

    let toChoice (settings: Settings) (name: string) =
        match get settings name with
        | Choice s -> s
        | v -> invalidArg (nameof name) $"setting '{name}' is {v}, not a word"

/// One term of a run's objective as a run description names it: its kind and settings, resolved
/// (every setting present).
type TermSpec = { Kind: string; Settings: Settings }

/// Settings given by hand for a term kind, some of them: `kind:setting=value,…` on a command line.
type TermOverride =
    { Kind: string
      Given: (string * SettingValue) list }

[<RequireQualifiedAccess>]
module TermKind =

    /// A kind with one setting, its weight, for the stateless terms whose only knob is how much they count.
    let weighted (name: string) (doc: string) (defaultWeight: float) (build: float -> Term) =
        { Name = name
          Doc = doc
          Settings = [ TermSetting.number "weight" $"the weight of {name}" defaultWeight "≥ 0" (fun w -> w >= 0.0) ]
          AfterTasks = false
          Build = fun s -> build (TermSetting.toFloat s "weight") }

    /// The term of `kind` with the given settings (defaults filled in, every value checked).
    let build (kind: TermKind) (given: (string * SettingValue) list) =
        kind.Build(TermSetting.resolve kind.Name kind.Settings given)

    let private find (kinds: TermKind list) (name: string) =
        match kinds |> List.tryFind (fun k -> k.Name = name) with
        | Some k -> k
        | None ->
            let known = kinds |> List.map (fun k -> k.Name) |> String.concat ", "
            raise (ArgumentException $"unknown term '{name}'; known: {known}")

    /// The spec of a term of kind `name` from some settings (the others take their defaults).
    let spec (kinds: TermKind list) (name: string) (given: (string * SettingValue) list) : TermSpec =
        let kind = find kinds name

        { Kind = name
          Settings = TermSetting.resolve name kind.Settings given }

    /// The term a spec describes.
    let ofSpec (kinds: TermKind list) (spec: TermSpec) : Term =
        (find kinds spec.Kind).Build spec.Settings

    /// `kind` or `kind:setting=value,setting=value`, each value read by its setting's type; an unknown
    /// kind or setting, or a value that is not of its type, raises ArgumentException with a one-line message.
    let parseOverride (kinds: TermKind list) (text: string) : TermOverride =
        let name, rest =
            match text.IndexOf ':' with
            | -1 -> text.Trim(), ""
            | i -> text.Substring(0, i).Trim(), text.Substring(i + 1)

        let kind = find kinds name

        let given =
            rest.Split(',', StringSplitOptions.RemoveEmptyEntries)
            |> Array.map (fun pair ->
                match pair.Split('=', 2) with
                | [| setting; value |] ->
                    let setting = setting.Trim()

                    match kind.Settings |> List.tryFind (fun s -> s.Name = setting) with
                    | Some spec -> setting, TermSetting.parse spec value
                    | None ->
                        let known = kind.Settings |> List.map (fun s -> s.Name) |> String.concat ", "
                        raise (ArgumentException $"{name}: no setting '{setting}'; it takes: {known}")
                | _ -> raise (ArgumentException $"{name}: '{pair}' is not setting=value"))
            |> List.ofArray

        // Checked now, so that a bad value is refused before any work.
        TermSetting.resolve name kind.Settings given |> ignore
        { Kind = name; Given = given }

    /// Terms with overrides applied: a term of an overridden kind takes the given settings over its
    /// own; an override of a kind not among the terms adds that term.
    let apply (kinds: TermKind list) (overrides: TermOverride list) (terms: TermSpec list) : TermSpec list =
        let changed =
            terms
            |> List.map (fun t ->
                match overrides |> List.filter (fun o -> o.Kind = t.Kind) with
                | [] -> t
                | os -> spec kinds t.Kind (Map.toList t.Settings @ List.collect (fun o -> o.Given) os))

        let added =
            overrides
            |> List.filter (fun o -> not (terms |> List.exists (fun t -> t.Kind = o.Kind)))
            |> List.groupBy (fun o -> o.Kind)
            |> List.map (fun (kind, os) -> spec kinds kind (List.collect (fun o -> o.Given) os))

        changed @ added
