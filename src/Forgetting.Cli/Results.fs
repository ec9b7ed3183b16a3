/// A run's results directory: a JSON summary with its configuration, seed and versions, CSV series,
/// and figures. Every file is written whole or not at all (temporary name, then rename).
module Forgetting.Cli.Results

open System
open System.IO
open System.Runtime.InteropServices
open Forgetting.Cli.Json

/// What produced a result: the library, the runtime, the machine, the GEMM path and thread count.
let versions () =
    let asm = typeof<Forgetting.Tensors.Tensor>.Assembly

    let informational =
        asm.GetCustomAttributes(typeof<Reflection.AssemblyInformationalVersionAttribute>, false)
        |> Array.tryHead
        |> Option.map (fun a -> (a :?> Reflection.AssemblyInformationalVersionAttribute).InformationalVersion)
        |> Option.defaultValue (string (asm.GetName().Version))

    Obj
        [ "forgetting", Str informational
          "dotnet", Str RuntimeInformation.FrameworkDescription
          "os", Str RuntimeInformation.OSDescription
          "processors", Int Environment.ProcessorCount ]

/// Write text to a file atomically: a temporary file beside it, then a rename over it.
let writeAtomically (path: string) (text: string) =
    let full = Path.GetFullPath path
    let dir = Path.GetDirectoryName full
    Directory.CreateDirectory dir |> ignore
    let temp = Path.Combine(dir, $".{Path.GetFileName full}.{Guid.NewGuid():N}.tmp")

    try
        File.WriteAllText(temp, text)
        File.Move(temp, full, true)
    with _ ->
        if File.Exists temp then
            File.Delete temp

        reraise ()

/// A CSV table: a header and rows, invariant culture, fields quoted when they need it.
let csv (header: string list) (rows: string list list) =
    let field (s: string) =
        if s.IndexOfAny [| ','; '"'; '\n' |] >= 0 then
            "\"" + s.Replace("\"", "\"\"") + "\""
        else
            s

    let line (cells: string list) =
        cells |> List.map field |> String.concat ","

    (line header :: List.map line rows |> String.concat "\n") + "\n"

let num (x: float) =
    x.ToString("R", Globalization.CultureInfo.InvariantCulture)

/// The results directory, created if needed; an error the user can act on if it cannot be.
let prepare (dir: string) =
    try
        Directory.CreateDirectory dir |> ignore
        dir
    with e ->
        raise (UserError($"cannot create the results directory '{dir}': {e.Message}", Exit.input))
