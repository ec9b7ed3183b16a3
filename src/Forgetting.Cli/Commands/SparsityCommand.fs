/// `forgetting sparsity`: Treves-Rolls sparsity of activations from a CSV file or generated ones.
module Forgetting.Cli.Commands.SparsityCommand

open System
open System.Globalization
open System.IO
open Argu
open Forgetting.Analysis
open Forgetting.Cli

type SparsityArgs =
    | [<Unique>] Csv of path: string
    | [<Unique>] Units of int
    | [<Unique>] Samples of int
    | [<Unique>] Seed of int

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Csv _ -> "activations as CSV: one row per sample, one column per unit (no header)."
            | Units _ -> "without --csv: units in the generated layer (default 256)."
            | Samples _ -> "without --csv: samples drawn per pattern (default 1000)."
            | Seed _ -> "without --csv: the RNG seed (default 1)."

let private readCsv (path: string) : float[,] =
    if not (File.Exists path) then
        Exit.inputError $"no such file: {path}"

    let rows =
        Forgetting.Data.Files.requireContents path

        File.ReadAllLines path
        |> Array.filter (fun l -> l.Trim() <> "")
        |> Array.mapi (fun i line ->
            line.Split ','
            |> Array.mapi (fun j cell ->
                match Double.TryParse(cell.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture) with
                | true, v -> v
                | _ -> Exit.inputError $"{path}: row {i + 1}, column {j + 1}: '{cell.Trim()}' is not a number"))

    if rows.Length = 0 then
        Exit.inputError $"{path}: no rows of activations"

    let width = rows[0].Length

    rows
    |> Array.iteri (fun i r ->
        if r.Length <> width then
            Exit.inputError $"{path}: row {i + 1} has {r.Length} columns, row 1 has {width}")

    Array2D.init rows.Length width (fun i j -> rows[i][j])

/// Activations of a layer in which `active` of `units` units fire (uniform in [0, 1)) and the rest are silent.
let private generate (rng: Random) units samples active =
    let order = Array.init units id
    rng.Shuffle order
    let isActive = Array.zeroCreate units
    order[.. active - 1] |> Array.iter (fun j -> isActive[j] <- true)
    Array2D.init samples units (fun _ j -> if isActive[j] then rng.NextDouble() else 0.0)

let run (args: ParseResults<SparsityArgs>) =
    let sparsityOf acts =
        try
            Sparsity.ofActivations acts
        with :? ArgumentException as e ->
            Exit.inputError e.Message

    let maxGenerated = 100_000_000L

    match args.TryGetResult Csv with
    | Some path ->
        let acts = readCsv path
        printfn "%d samples x %d units: sparsity %.4f" (Array2D.length1 acts) (Array2D.length2 acts) (sparsityOf acts)
    | None ->
        let units = args.GetResult(Units, defaultValue = 256)
        let samples = args.GetResult(Samples, defaultValue = 1000)
        let seed = args.GetResult(Seed, defaultValue = 1)

        if units < 2 then
            raise (UserError($"--units must be at least 2, got {units}", Exit.usage))

        if samples < 1 then
            raise (UserError($"--samples must be at least 1, got {samples}", Exit.usage))

        // The generated layer is held whole: refuse a size that would not fit rather than abort.
        if int64 units * int64 samples > maxGenerated then
            raise (
                UserError(
                    $"--units × --samples is {int64 units * int64 samples} activations, more than the {maxGenerated} a generated layer may hold",
                    Exit.usage
                )
            )

        let rng = Random seed

        printfn
            "Generated layers of %d units, %d samples, seed %d: k units fire, the rest are silent."
            units
            samples
            seed

        printfn "%8s  %9s  %10s" "active k" "sparsity" "(1-k/N)/(1-1/N)"

        for active in List.distinct [ 1; max 1 (units / 16); max 1 (units / 4); units / 2; units ] do
            let s = sparsityOf (generate rng units samples active)
            let ideal = (1.0 - float active / float units) / (1.0 - 1.0 / float units)
            printfn "%8d  %9.4f  %10.4f" active s ideal
