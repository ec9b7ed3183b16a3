/// Runs the built `forgetting` tool as a separate process, as a user would.
module Forgetting.Tests.Cli

open System
open System.Diagnostics
open System.IO

type Outcome =
    { ExitCode: int
      Stdout: string
      Stderr: string }

/// The CLI's build output for the configuration these tests were built in.
let private cliDll =
    let testDir = AppContext.BaseDirectory // .../tests/Forgetting.Cli.Tests/bin/<Configuration>/<tfm>/
    let tfmDir = DirectoryInfo(testDir.TrimEnd(Path.DirectorySeparatorChar))
    let configuration = tfmDir.Parent.Name
    let root = tfmDir.Parent.Parent.Parent.Parent.Parent.FullName
    Path.Combine(root, "src", "Forgetting.Cli", "bin", configuration, tfmDir.Name, "forgetting.dll")

/// A fresh temporary directory for one test's files.
let tempDir () =
    let d =
        Path.Combine(Path.GetTempPath(), "forgetting-tests", Guid.NewGuid().ToString "N")

    Directory.CreateDirectory d |> ignore
    d

/// Run `forgetting args…` in the working directory `cwd` (None: this process's) with extra
/// environment variables, and wait for it (at most two minutes).
let runAt (cwd: string option) (environment: (string * string) list) (args: string list) : Outcome =
    if not (File.Exists cliDll) then
        failwith $"the CLI is not built at {cliDll}"

    let psi =
        ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true)

    psi.ArgumentList.Add cliDll
    cwd |> Option.iter (fun d -> psi.WorkingDirectory <- d)

    for name, value in environment do
        psi.Environment[name] <- value

    args |> List.iter psi.ArgumentList.Add
    use p = Process.Start psi
    let stdout = p.StandardOutput.ReadToEndAsync()
    let stderr = p.StandardError.ReadToEndAsync()

    if not (p.WaitForExit(TimeSpan.FromMinutes 2.0)) then
        p.Kill true
        failwith $"forgetting {String.Join(' ', args)} did not finish in two minutes"

    { ExitCode = p.ExitCode
      Stdout = stdout.Result
      Stderr = stderr.Result }

/// Run `forgetting args…` with extra environment variables and wait for it (at most two minutes).
let runWith (environment: (string * string) list) (args: string list) : Outcome = runAt None environment args

/// Run `forgetting args…` and wait for it (at most two minutes).
let run (args: string list) : Outcome = runWith [] args
