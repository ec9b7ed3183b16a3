namespace Forgetting.Experiments

open System
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open Forgetting.Nn

/// One axis of a sweep: what it varies and the values it takes, in order.
type SweepAxis =
    {
        /// "variant" (a single-task recipe's variant, Variant.ofName), "method" (a task sequence's method,
        /// Methods.apply), "seed", or a path into the recipe's JSON: keys joined by dots, a list entry by
        /// its index or, in the list of terms, by its kind ("optimizer.lr", "scenario.setting",
        /// "terms.ewc.settings.lambda").
        Path: string
        Values: JsonNode list
    }

/// A grid of runs: a base recipe, the axes to vary (the grid is their product, the first axis slowest),
/// and the folder the runs go under.
type SweepSpec =
    {
        Base: Recipe
        Axes: SweepAxis list
        Output: string
        /// The largest grid run without being asked to confirm (`--yes`).
        MaxRuns: int
    }

/// One point of a grid: the axes' values (as JSON text, in axis order), the recipe they resolve to,
/// and its stable id, a short hash of the resolved recipe: the same settings always get the same folder.
type SweepRun =
    { Index: int
      Id: string
      Values: (string * string) list
      Recipe: Recipe }

[<RequireQualifiedAccess>]
module Sweep =

    let private fail (message: string) : 'a = raise (ArgumentException message)

    /// The default MaxRuns.
    let defaultMaxRuns = 1000

    /// The stable id of a resolved recipe: the first 12 hex digits of the SHA-256 of its JSON text.
    let id (r: Recipe) = (Recipe.digest [ r ]).Substring(0, 12)

    let private text (n: JsonNode) =
        if isNull n then "null" else n.ToJsonString()

    /// Set the value at a dotted path of a recipe's JSON, or say what is there instead.
    let private setPath (root: JsonNode) (path: string) (value: JsonNode) =
        let keys = path.Split('.')

        let rec go (node: JsonNode) (i: int) (where: string) =
            let key = keys[i]
            let last = i = keys.Length - 1
            let here = if where = "" then key else $"{where}.{key}"

            match node with
            | :? JsonObject as o ->
                let mutable child: JsonNode = null

                if not (o.TryGetPropertyValue(key, &child)) then
                    let known = o |> Seq.map (fun kv -> kv.Key) |> String.concat ", "
                    let at = if where = "" then "the recipe" else where
                    fail $"axis '{path}': {at} has no field '{key}'; it has: {known}"

                if last then
                    o[key] <- (if isNull value then null else value.DeepClone())
                else
                    go child (i + 1) here
            | :? JsonArray as a ->
                let index =
                    match Int32.TryParse key with
                    | true, k when k >= 0 && k < a.Count -> k
                    | true, k -> fail $"axis '{path}': {where} has {a.Count} entries, no entry {k}"
                    | _ ->
                        let byKind =
                            a
                            |> Seq.tryFindIndex (fun e ->
                                match e with
                                | :? JsonObject as o ->
                                    let mutable kind: JsonNode = null

                                    o.TryGetPropertyValue("kind", &kind)
                                    && not (isNull kind)
                                    && kind.GetValueKind() = JsonValueKind.String
                                    && kind.GetValue<string>() = key
                                | _ -> false)

                        match byKind with
                        | Some k -> k
                        | None -> fail $"axis '{path}': {where} has no entry of kind '{key}'"

                if last then
                    a[index] <- (if isNull value then null else value.DeepClone())
                else
                    go a[index] (i + 1) here
            | _ -> fail $"axis '{path}': {where} is a value, not an object or a list"

        go root 0 ""

    let private word (axis: string) (n: JsonNode) =
        if not (isNull n) && n.GetValueKind() = JsonValueKind.String then
            n.GetValue<string>()
        else
            fail $"axis '{axis}' takes names, got {text n}"

    /// The recipe at one point of the grid: variant or method first (they replace terms), then the
    /// seed and the paths, in axis order; resolved by Recipe.ofJson (the terms' settings typed and
    /// checked) and by the runner it goes to.
    let private resolve (baseRecipe: Recipe) (point: (string * JsonNode) list) =
        let structural, fields =
            point |> List.partition (fun (p, _) -> p = "variant" || p = "method")

        let r =
            (baseRecipe, structural)
            ||> List.fold (fun r (p, v) ->
                let name = word p v

                match p with
                | "variant" ->
                    if r.Scenario.Kind <> "single" then
                        fail
                            $"axis 'variant' varies a single-task run; the base is a '{r.Scenario.Kind}' scenario: vary 'method'"

                    if not (List.contains name Variant.names) then
                        let known = String.concat ", " Variant.names
                        fail $"axis 'variant': unknown variant '{name}'; known: {known}"

                    let rho =
                        r.Model.Forgetting
                        |> Option.map (fun f -> f.Rho)
                        |> Option.defaultValue Forgetting.Mechanisms.ForgettingLayerConfig.Default.Rho

                    Recipe.withVariant (Variant.ofName rho [] name) r
                | _ ->
                    if r.Scenario.Kind = "single" then
                        fail "axis 'method' varies a task sequence; the base is a single-task run: vary 'variant'"

                    if not (List.contains name Methods.names) then
                        let known = String.concat ", " Methods.names
                        fail $"axis 'method': unknown method '{name}'; known: {known}"

                    Methods.apply name [] r)

        let json = Recipe.toJson r

        for p, v in fields do
            setPath json p v

        let r = Recipe.ofJson Catalog.terms (JsonNode.Parse(json.ToJsonString()))

        if r.Study.IsSome then
            fail
                "a sweep varies training runs; a figure is drawn by 'forgetting figure' (its study has seeds of its own)"

        if r.Scenario.Kind = "single" then
            Classification.validate Catalog.terms r
        else
            ContinualRun.validate Catalog.terms r

    /// The grid's size: the product of the axes' lengths.
    let size (s: SweepSpec) =
        s.Axes |> List.fold (fun n a -> n * int64 a.Values.Length) 1L

    /// Every run of the grid, resolved and checked, or an ArgumentException naming the axis or the
    /// point that fails. Two points that resolve to the same run are refused: they would share a folder.
    let expand (s: SweepSpec) : SweepRun list =
        let rec product (axes: SweepAxis list) =
            match axes with
            | [] -> [ [] ]
            | a :: rest ->
                let tails = product rest

                [ for v in a.Values do
                      for t in tails -> (a.Path, v) :: t ]

        let runs =
            product s.Axes
            |> List.mapi (fun i point ->
                let r =
                    try
                        resolve s.Base point
                    with :? ArgumentException as e ->
                        let at = point |> List.map (fun (p, v) -> $"{p}={text v}") |> String.concat ", "
                        fail $"run {i} ({at}): {e.Message}"

                { Index = i
                  Id = id r
                  Values = point |> List.map (fun (p, v) -> p, text v)
                  Recipe = r })

        match
            runs
            |> List.groupBy (fun r -> r.Id)
            |> List.tryFind (fun (_, g) -> g.Length > 1)
        with
        | Some(_, a :: b :: _) ->
            let show (r: SweepRun) =
                r.Values |> List.map (fun (p, v) -> $"{p}={v}") |> String.concat ", "

            fail
                $"runs {a.Index} ({show a}) and {b.Index} ({show b}) are the same run and would share one folder; remove the repeated value"
        | _ -> runs

    // ------------------------------------------------------------------ the sweep file

    let private asObject (where: string) (n: JsonNode) =
        match n with
        | :? JsonObject as o -> o
        | _ -> fail $"{where} must be an object"

    /// A sweep from JSON: `base` (a recipe object, or the path of a recipe.json, relative to `dir`),
    /// `axes` (an object: each field an axis path with its list of values, in the order given;
    /// `"seeds": N` is the axis `seed` over 1 … N), `output` (relative to `dir`), and optionally
    /// `max_runs`. A malformed one raises ArgumentException with a one-line message.
    let ofJson (dir: string) (node: JsonNode) : SweepSpec =
        let root = asObject "the sweep" node

        let get (name: string) =
            let mutable v: JsonNode = null

            if root.TryGetPropertyValue(name, &v) then Some v else None

        for kv in root do
            if not (List.contains kv.Key [ "base"; "axes"; "output"; "max_runs" ]) then
                fail $"the sweep has no field '{kv.Key}'; it takes: base, axes, output, max_runs"

        let baseRecipe =
            match get "base" with
            | None -> fail "the sweep: 'base' is missing (a recipe, or the path of a recipe.json)"
            | Some n when not (isNull n) && n.GetValueKind() = JsonValueKind.String ->
                let path = Path.Combine(dir, n.GetValue<string>())

                try
                    Recipe.load Catalog.terms path
                with :? Forgetting.Data.DataError as e ->
                    fail $"the sweep's base: {e.Message}"
            | Some n -> Recipe.ofJson Catalog.terms n

        let axes =
            match get "axes" with
            | None -> fail "the sweep: 'axes' is missing (an object of axis paths and their values)"
            | Some n ->
                [ for kv in asObject "the sweep's axes" n do
                      match kv.Key, kv.Value with
                      | "seeds", v when not (isNull v) && v.GetValueKind() = JsonValueKind.Number ->
                          let count =
                              match v.AsValue().TryGetValue<int>() with
                              | true, c when c >= 1 -> c
                              | _ -> fail $"axes: 'seeds' must be a whole number of seeds, at least 1, got {text v}"

                          { Path = "seed"
                            Values = [ for s in 1..count -> JsonValue.Create s :> JsonNode ] }
                      | path, (:? JsonArray as values) ->
                          if values.Count = 0 then
                              fail $"axis '{path}' has no values: an empty axis makes an empty grid"

                          { Path = path
                            Values = [ for v in values -> if isNull v then null else v.DeepClone() ] }
                      | path, v -> fail $"axis '{path}' must be a list of values, got {text v}" ]

        if axes.IsEmpty then
            fail "the sweep has no axes: name at least one field to vary"

        match axes |> List.countBy (fun a -> a.Path) |> List.tryFind (fun (_, n) -> n > 1) with
        | Some(p, _) -> fail $"axis '{p}' is given twice"
        | None -> ()

        let output =
            match get "output" with
            | Some n when not (isNull n) && n.GetValueKind() = JsonValueKind.String ->
                Path.Combine(dir, n.GetValue<string>())
            | _ -> fail "the sweep: 'output' is missing (the folder the runs go under)"

        let maxRuns =
            match get "max_runs" with
            | None -> defaultMaxRuns
            | Some n ->
                match (if isNull n then JsonValueKind.Null else n.GetValueKind()), n with
                | JsonValueKind.Number, n when fst (n.AsValue().TryGetValue<int>()) && n.GetValue<int>() >= 1 ->
                    n.GetValue<int>()
                | _ -> fail $"the sweep: 'max_runs' must be a whole number, at least 1, got {text n}"

        { Base = baseRecipe
          Axes = axes
          Output = Path.GetFullPath output
          MaxRuns = maxRuns }

    /// A sweep from its file; a missing, unreadable or malformed one raises DataError naming the file.
    let load (path: string) =
        Recipe.readFile "sweep" (ofJson (Path.GetDirectoryName(Path.GetFullPath path))) path

    /// The folder of one run of a sweep.
    let folder (s: SweepSpec) (r: SweepRun) = Path.Combine(s.Output, "runs", r.Id)

    // ------------------------------------------------------------------ collection

    /// The axes that tell configurations apart: every axis but the seed.
    let configurationAxes (s: SweepSpec) =
        s.Axes |> List.map (fun a -> a.Path) |> List.filter (fun p -> p <> "seed")

    /// One configuration of a collected sweep: its axes' values, how many runs (seeds) it has, and
    /// each metric's mean and sample standard deviation over them (None where no run defines it).
    type Row =
        { Values: (string * string) list
          Runs: int
          Metrics: (string * (float * float) option) list }

    /// The runs' metrics (each run's in one order, named) grouped by configuration, in grid order:
    /// mean ± sample sd (n − 1) over the seeds of each.
    let table (s: SweepSpec) (results: (SweepRun * (string * float option) list) list) : Row list =
        let axes = configurationAxes s

        let key (r: SweepRun) =
            r.Values |> List.filter (fun (p, _) -> List.contains p axes)

        results
        |> List.groupBy (fst >> key)
        |> List.map (fun (values, group) ->
            let names = group.Head |> snd |> List.map fst

            { Values = values
              Runs = group.Length
              Metrics =
                [ for name in names ->
                      let xs =
                          group
                          |> List.choose (fun (_, ms) ->
                              ms |> List.tryFind (fun (n, _) -> n = name) |> Option.bind snd)

                      name,
                      if xs.IsEmpty then
                          None
                      else
                          Some(Forgetting.Analysis.Statistics.meanSd xs) ] })

    /// One chart per metric. When the first axis that tells configurations apart takes numbers (a
    /// learning rate, λ), the metric against it: a line per combination of the other axes, with a band
    /// of ± the sample sd over the seeds. Otherwise a bar per configuration, labelled by its axes'
    /// values, with its sd as the error bar.
    let panels (rows: Row list) : Panel list =
        let number (v: string) =
            match Double.TryParse(v, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
            | true, x when Double.IsFinite x -> Some x
            | _ -> None

        let show (values: (string * string) list) =
            values |> List.map (fun (_, v) -> v.Trim('"')) |> String.concat ", "

        let metricOf (name: string) (r: Row) =
            r.Metrics |> List.tryFind (fun (n, _) -> n = name) |> Option.bind snd

        match rows with
        | [] -> []
        | first :: _ ->
            let numericAxis =
                match first.Values with
                | (axis, _) :: _ when rows |> List.forall (fun r -> number (snd r.Values.Head) |> Option.isSome) ->
                    Some axis
                | _ -> None

            [ for name, _ in first.Metrics do
                  match numericAxis with
                  | Some axis ->
                      let series =
                          rows
                          |> List.groupBy (fun r -> r.Values.Tail)
                          |> List.choose (fun (others, group) ->
                              let points =
                                  group
                                  |> List.choose (fun r ->
                                      metricOf name r
                                      |> Option.map (fun (m, sd) -> (number (snd r.Values.Head)).Value, m, sd, r.Runs))
                                  |> List.sortBy (fun (x, _, _, _) -> x)

                              if points.IsEmpty then
                                  None
                              else
                                  Some
                                      { Label = (if others.IsEmpty then name else show others)
                                        X = points |> List.map (fun (x, _, _, _) -> x) |> Array.ofList
                                        Y = points |> List.map (fun (_, m, _, _) -> m) |> Array.ofList
                                        Sd =
                                          if points |> List.forall (fun (_, _, _, n) -> n > 1) then
                                              Some(points |> List.map (fun (_, _, sd, _) -> sd) |> Array.ofList)
                                          else
                                              None })

                      if not series.IsEmpty then
                          Lines
                              { Title = $"{name} against {axis}, mean ± sd over seeds"
                                XLabel = axis
                                YLabel = name
                                Series = series
                                XRange = None
                                YRange = None }
                  | None ->
                      let bars =
                          [ for r in rows do
                                match metricOf name r with
                                | Some(m, sd) ->
                                    (if r.Values.IsEmpty then "all runs" else show r.Values),
                                    m,
                                    (if r.Runs > 1 then Some sd else None)
                                | None -> () ]

                      if not bars.IsEmpty then
                          Columns
                              { Title = $"{name}, mean ± sd over seeds"
                                YLabel = name
                                Bars = bars } ]
