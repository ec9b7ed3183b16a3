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
          "processors", Int Environment.ProcessorCount
          // The GEMM path and the thread count decide the last bits of every number OpenBLAS computes.
          "gemm", Str(string (Forgetting.Tensors.Gemm.provider ()))
          "threads", Int(Forgetting.Tensors.Parallelism.degree ()) ]

/// The environment variable that makes a results commit fail at a named point ("write:<file>" when
/// that file is written, "rename" when the staged folder is renamed into place), so that tests can
/// show what a failure there leaves on disk.
[<Literal>]
let FaultVariable = "FORGETTING_FAIL_AT"

let private fault (point: string) =
    if Environment.GetEnvironmentVariable FaultVariable = point then
        raise (IOException $"failure injected at {point} ({FaultVariable})")

/// Write text to a file atomically: a temporary file beside it, then a rename over it.
let writeAtomically (path: string) (text: string) =
    let full = Path.GetFullPath path
    let dir = Path.GetDirectoryName full
    Directory.CreateDirectory dir |> ignore
    let temp = Path.Combine(dir, $".{Path.GetFileName full}.{Guid.NewGuid():N}.tmp")

    try
        File.WriteAllText(temp, text)
        fault $"write:{Path.GetFileName full}"
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

/// The results directory, created if needed; an error the user can act on if it cannot be (a file
/// where the folder should be, no permission).
let prepare (dir: string) =
    if File.Exists dir then
        raise (UserError($"cannot use '{dir}' as the results directory: it is a file", Exit.input))

    try
        Directory.CreateDirectory dir |> ignore
        dir
    with e ->
        raise (UserError($"cannot create the results directory '{dir}': {e.Message}", Exit.input))

/// A results folder being written as a unit: its files go into `Staging`, a hidden folder beside
/// `Final`, renamed into place by `commit`; `Lock` keeps a second run from writing the same folder.
/// A kill, a full disk or a failure leaves `Final` as it was (absent, or the old complete folder).
type Staged =
    { Final: string
      Staging: string
      Lock: FileStream
      LockPath: string }

let private beside (final: string) (suffix: string) =
    Path.Combine(Path.GetDirectoryName final, $".{Path.GetFileName final}.{suffix}")

/// The hidden folder beside `final` that a run writes into before it is renamed into place.
let stagingOf (final: string) =
    beside (Path.GetFullPath final) "partial"

let private asideOf (final: string) = beside final "old"

// flock(2) through FileShare.None: held until the process ends, however it ends (a killed run leaves
// no lock behind, only the empty file). The file stays: deleting it on release would let a run lock a
// file that is already unlinked while another locks its successor.
let private lock (final: string) =
    let path = beside final "lock"

    try
        new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None), path
    with :? IOException when File.Exists path ->
        raise (
            UserError(
                $"another run is writing into {final} (it holds {path}); wait for it, or give another --out",
                Exit.input
            )
        )

/// Release a folder's lock.
let release (s: Staged) = s.Lock.Dispose()

let private isEmptyDir (dir: string) =
    Directory.EnumerateFileSystemEntries dir |> Seq.isEmpty

/// Whether `dir` holds a run's results (its recipe.json or diverged.json), or folders that do (compare,
/// continual): what --overwrite may replace. Any other folder (a home, a source tree) is never
/// replaced, since replacing deletes it.
let private holdsResults (dir: string) =
    let isRun (d: string) =
        File.Exists(Path.Combine(d, "recipe.json"))
        || File.Exists(Path.Combine(d, "diverged.json"))

    isRun dir || Directory.EnumerateDirectories dir |> Seq.exists isRun

/// Begin writing the results folder `final`: take its lock, put back an old folder that an
/// interrupted commit left aside, refuse a non-empty folder unless `overwrite`, and make the staging
/// folder. A staging folder left by an interrupted run is kept when `resume` (a continual run goes on
/// from its checkpoints there) and otherwise removed, with a line on stderr saying so.
let start (overwrite: bool) (resume: bool) (final: string) : Staged =
    let final = Path.GetFullPath final

    if File.Exists final then
        raise (UserError($"cannot use '{final}' as the results directory: it is a file", Exit.input))

    prepare (Path.GetDirectoryName final) |> ignore
    let stream, lockPath = lock final

    let s =
        { Final = final
          Staging = stagingOf final
          Lock = stream
          LockPath = lockPath }

    try
        let aside = asideOf final

        if Directory.Exists aside then
            if Directory.Exists final then
                Directory.Delete(aside, true)
            else
                Directory.Move(aside, final)
                eprintfn "forgetting: put back %s, which an interrupted run had moved aside" final

        if Directory.Exists final && not (isEmptyDir final) && not (holdsResults final) then
            raise (
                UserError(
                    $"{final} holds files that are not a run's results (no recipe.json); give an empty or new --out",
                    Exit.usage
                )
            )

        if Directory.Exists final && not (isEmptyDir final) && not overwrite then
            raise (
                UserError(
                    $"{final} already holds results; give --overwrite to replace them, or another --out",
                    Exit.usage
                )
            )

        if Directory.Exists s.Staging && not resume then
            Directory.Delete(s.Staging, true)
            eprintfn "forgetting: removed %s, left by an interrupted run" s.Staging

        Directory.CreateDirectory s.Staging |> ignore
        s
    with e ->
        release s

        match e with
        | UserError _ -> reraise ()
        | :? IOException
        | :? UnauthorizedAccessException ->
            raise (UserError($"cannot prepare the results directory '{final}': {e.Message}", Exit.input))
        | _ -> reraise ()

/// Put the staged folder in place of `Final`: an old one is moved aside first, and put back if the
/// rename fails (or, after a kill, by the next `start`).
let private commit (s: Staged) =
    let aside = asideOf s.Final
    let replacing = Directory.Exists s.Final

    if replacing then
        Directory.Move(s.Final, aside)

    try
        fault "rename"
        Directory.Move(s.Staging, s.Final)
    with _ ->
        if replacing && not (Directory.Exists s.Final) then
            Directory.Move(aside, s.Final)

        reraise ()

    if replacing then
        Directory.Delete(aside, true)

/// Give up a started folder (one whose work will not run): remove its staging folder, unless it is
/// kept to resume from, and release its lock.
let abandon (keep: bool) (s: Staged) =
    try
        if not keep && Directory.Exists s.Staging then
            Directory.Delete(s.Staging, true)
    finally
        release s

/// Record in `dir` that the run writing it diverged, with the message: a folder of a diverged run
/// holds `diverged.json` and no summary, so nothing reads it as a complete run.
let markDiverged (dir: string) (message: string) =
    writeAtomically
        (Path.Combine(dir, "diverged.json"))
        (render true (Obj [ "diverged", Bool true; "message", Str message ]))

/// Finish a started folder as a unit: `work` writes into the staging folder it is given, which is
/// renamed into place when it returns. A divergence is committed too, marked (markDiverged), so that
/// what the run wrote says it diverged; any other failure leaves the old folder (or none), and the
/// staging folder is removed unless `keep` (a continual run resumes from it).
let within (keep: bool) (s: Staged) (work: string -> 'a) : 'a =
    try
        try
            let result =
                try
                    work s.Staging
                with :? Forgetting.Training.DivergedError as e ->
                    markDiverged s.Staging e.Message
                    commit s
                    reraise ()

            commit s
            result
        with _ ->
            // Not committed (or committed as diverged, and then there is no staging folder left).
            if not keep && Directory.Exists s.Staging then
                Directory.Delete(s.Staging, true)

            reraise ()
    finally
        release s

/// Write the folder `final` as a unit (start, then within).
let staged (overwrite: bool) (keep: bool) (final: string) (work: string -> 'a) : 'a =
    within keep (start overwrite keep final) work
