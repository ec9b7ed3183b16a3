/// Issue #15 as processes: diverging runs say so, results folders are written as a unit (staging,
/// lock, --overwrite, names that tell runs apart), the recorded settings are exact, `report` never
/// crashes, and bad values and environment variables are refused before any work.
module Forgetting.Tests.ReliabilityTests

open System.IO
open System.Text.Json
open Expecto
open Forgetting.Tests
open Forgetting.Tests.Fixtures

let private quick =
    [ "--dataset"
      "mnist"
      "--hidden"
      "16"
      "8"
      "--epochs"
      "2"
      "--batch"
      "16" ]

let private continualQuick =
    [ "--scenario"
      "split"
      "--classes-per-task"
      "5"
      "--hidden"
      "8"
      "--batch"
      "16" ]

/// The file a fetch of `dataset` into `cache` locks (Cache.lockPath): in the temporary folder, named
/// by the SHA-256 of the cache's full path and the data set's name.
let private fetchLock (cache: string) (dataset: string) =
    let key = $"{Path.GetFullPath cache}\n{dataset}"

    let hash =
        System.Convert.ToHexStringLower(
            System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes key)
        )

    Path.Combine(Path.GetTempPath(), "forgetting-locks", $"{dataset}-{hash.Substring(0, 16)}.lock")

/// The names in a folder, hidden ones (staging folders, locks) included, sorted.
let private entries (dir: string) =
    Directory.GetFileSystemEntries dir |> Array.map Path.GetFileName |> Array.sort

let private train (cache: string) (out: string) (extra: string list) =
    Cli.run ([ "train"; "--cache-dir"; cache; "--out"; out ] @ quick @ extra)

[<Tests>]
let tests =
    testList
        "reliability"
        [ test "a diverging run stops with one line naming the epoch and step, exit 3, and its folder says diverged" {
              let cache = cachedMnist 64 32
              let parent = Cli.tempDir ()
              let out = Path.Combine(parent, "run")
              // A loss that explodes while still finite (1e7 and more), not only one that is NaN.
              let r = train cache out [ "--lr"; "1000" ]
              assertOneLineError 3 r
              Expect.stringContains r.Stderr "training diverged at epoch 1, step" "where"
              Expect.stringContains r.Stderr "try a smaller learning rate" "what to try"

              Expect.equal
                  (entries out)
                  [| "diverged.json"; "recipe.json" |]
                  "the recipe and the divergence, no summary"

              use json = JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "diverged.json")))
              Expect.isTrue (json.RootElement.GetProperty("diverged").GetBoolean()) "diverged"
              Expect.equal (entries parent) [| ".run.lock"; "run" |] "no staging folder left"

              let cmp = Path.Combine(Cli.tempDir (), "cmp")

              let c =
                  Cli.run (
                      [ "compare"
                        "--cache-dir"
                        cache
                        "--out"
                        cmp
                        "--variants"
                        "sgd"
                        "--seeds"
                        "1"
                        "--lr"
                        "1000" ]
                      @ quick
                  )

              assertOneLineError 3 c
              Expect.isTrue (File.Exists(Path.Combine(cmp, "diverged.json"))) "compare's folder says diverged"
              Expect.isTrue (File.Exists(Path.Combine(cmp, "sgd-seed1", "diverged.json"))) "and so does the run's"
              Expect.isFalse (File.Exists(Path.Combine(cmp, "compare.json"))) "no summary"

              let cl = Path.Combine(Cli.tempDir (), "cl")

              let k =
                  Cli.run (
                      [ "continual"
                        "--cache-dir"
                        cache
                        "--out"
                        cl
                        "--methods"
                        "none"
                        "--lr"
                        "1000" ]
                      @ continualQuick
                  )

              Expect.equal k.ExitCode 3 $"continual's exit code ({k.Stderr})"
              Expect.stringContains k.Stderr "training diverged" "continual's message"

              Expect.isTrue
                  (File.Exists(Path.Combine(cl, "none-seed1", "diverged.json")))
                  "the run's folder says diverged"

              Expect.isFalse (File.Exists(Path.Combine(cl, "none-seed1", "metrics.json"))) "no metrics"
          }

          test "every float option refuses NaN and ±∞ with one line, before any folder is made" {
              let cache = cachedMnist 16 8
              let out = Path.Combine(Cli.tempDir (), "never")
              let common = [ "--cache-dir"; cache; "--out"; out ]

              for command, option, value in
                  [ "train", "--lr", "Infinity"
                    "train", "--lr", "1e309"
                    "train", "--lr", "-Infinity"
                    "train", "--momentum", "NaN"
                    "train", "--rho", "Infinity"
                    "compare", "--lr", "NaN"
                    "compare", "--rho", "1e309"
                    "figure", "--noise", "NaN"
                    "figure", "--lr", "Infinity"
                    "continual", "--rho", "Infinity"
                    "continual", "--momentum", "-Infinity"
                    "continual", "--si-c", "1e309" ] do
                  let extra =
                      if command = "continual" then
                          [ "--forgetting-layer"; "--methods"; "si" ]
                      else
                          []

                  let r = Cli.run ([ command ] @ common @ extra @ [ option; value ])
                  assertOneLineError 2 r
                  Expect.stringContains r.Stderr $"{option} must be a finite number" $"{command} {option} {value}"

              Expect.isFalse (Directory.Exists out) "no folder"
              // A recipe.json whose learning rate overflows to ∞ is refused as well.
              let good = Path.Combine(Cli.tempDir (), "good")
              Expect.equal (train cache good []).ExitCode 0 "a run to take the recipe from"
              let recipe = Path.Combine(Cli.tempDir (), "recipe.json")

              let text =
                  System.Text.RegularExpressions.Regex.Replace(
                      File.ReadAllText(Path.Combine(good, "recipe.json")),
                      "\"lr\": [^,\n]+",
                      "\"lr\": 1e309"
                  )

              File.WriteAllText(recipe, text)
              let r = Cli.run [ "run"; recipe; "--cache-dir"; cache; "--out"; out ]
              assertOneLineError 2 r
              Expect.stringContains r.Stderr "lr" "names the value"
              Expect.isFalse (Directory.Exists out) "no folder for the recipe either"
          }

          test "a folder that holds results is refused unless --overwrite, which replaces it whole" {
              let cache = cachedMnist 32 16
              let out = Path.Combine(Cli.tempDir (), "run")
              Expect.equal (train cache out [ "--seed"; "1" ]).ExitCode 0 "the first run"
              let before = File.ReadAllText(Path.Combine(out, "summary.json"))
              let again = train cache out [ "--seed"; "2" ]
              assertOneLineError 2 again
              Expect.stringContains again.Stderr "--overwrite" "the way out"
              Expect.equal (File.ReadAllText(Path.Combine(out, "summary.json"))) before "the old results untouched"
              let replaced = train cache out [ "--seed"; "2"; "--overwrite" ]
              Expect.equal replaced.ExitCode 0 $"with --overwrite ({replaced.Stderr})"

              use recipe = JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "recipe.json")))
              Expect.equal (recipe.RootElement.GetProperty("seed").GetInt32()) 2 "the new run's recipe"

              // A folder that is not a run's results is never replaced, --overwrite or not.
              let other = Cli.tempDir ()
              File.WriteAllText(Path.Combine(other, "notes.txt"), "mine")
              let refused = train cache other [ "--overwrite" ]
              assertOneLineError 2 refused
              Expect.stringContains refused.Stderr "not a run's results" "the reason"
              Expect.equal (File.ReadAllText(Path.Combine(other, "notes.txt"))) "mine" "left as it was"

              // An empty folder is no results: it is used as it is.
              let empty = Cli.tempDir ()
              Expect.equal (train cache empty []).ExitCode 0 "an empty --out"
              // A file where the folder should be is named as such.
              let file = Path.Combine(Cli.tempDir (), "a-file")
              File.WriteAllText(file, "")
              let onFile = train cache file []
              assertOneLineError 1 onFile
              Expect.stringContains onFile.Stderr "it is a file" "the reason"
          }

          test "a failure between the writes or at the rename leaves the old folder or none, never a mix" {
              let cache = cachedMnist 32 16
              let parent = Cli.tempDir ()
              let out = Path.Combine(parent, "run")

              let failAt point extra =
                  Cli.runWith
                      [ "FORGETTING_FAIL_AT", point ]
                      ([ "train"; "--cache-dir"; cache; "--out"; out ] @ quick @ extra)

              let first = failAt "write:summary.json" []
              assertOneLineError 1 first
              Expect.equal (entries parent) [| ".run.lock" |] "no folder, no staging folder"
              Expect.equal (train cache out [ "--seed"; "1" ]).ExitCode 0 "a complete run"

              let old =
                  entries out |> Array.map (fun f -> f, File.ReadAllText(Path.Combine(out, f)))

              for point in [ "write:units.csv"; "rename" ] do
                  let r = failAt point [ "--seed"; "2"; "--overwrite" ]
                  assertOneLineError 1 r
                  Expect.stringContains r.Stderr "failure injected" point

                  Expect.equal
                      (entries out |> Array.map (fun f -> f, File.ReadAllText(Path.Combine(out, f))))
                      old
                      $"{point}: the old folder, whole"

                  Expect.equal (entries parent) [| ".run.lock"; "run" |] $"{point}: nothing else left"
          }

          test "a second run into a locked folder is refused before any work" {
              let cache = cachedMnist 16 8
              let parent = Cli.tempDir ()
              let out = Path.Combine(parent, "run")

              // The lock a running `forgetting` holds on its folder.
              use held =
                  new FileStream(
                      Path.Combine(parent, ".run.lock"),
                      FileMode.Create,
                      FileAccess.ReadWrite,
                      FileShare.None
                  )

              let r = train cache out []
              assertOneLineError 1 r
              Expect.stringContains r.Stderr "another run is writing into" "the reason"
              Expect.isFalse (Directory.Exists out) "no folder"
          }

          test "a staging folder left by a killed run is removed and reported" {
              let cache = cachedMnist 16 8
              let parent = Cli.tempDir ()
              let out = Path.Combine(parent, "run")
              let stale = Path.Combine(parent, ".run.partial")
              Directory.CreateDirectory stale |> ignore
              File.WriteAllText(Path.Combine(stale, "epochs.csv"), "half a file")
              let r = train cache out []
              Expect.equal r.ExitCode 0 $"exit code ({r.Stderr})"
              Expect.stringContains r.Stderr $"removed {stale}" "reported"
              Expect.isFalse (Directory.Exists stale) "removed"
              Expect.notEqual (File.ReadAllText(Path.Combine(out, "epochs.csv"))) "half a file" "not mixed in"
          }

          test "default folder names tell runs of other settings apart" {
              let cache = cachedMnist 16 8
              let cwd = Cli.tempDir ()

              let run extra =
                  let r = Cli.runAt (Some cwd) [] ([ "train"; "--cache-dir"; cache ] @ quick @ extra)
                  Expect.equal r.ExitCode 0 $"exit code ({r.Stderr})"

              run [ "--lr"; "0.01" ]
              run [ "--lr"; "0.02" ]

              let folders =
                  Directory.GetDirectories(Path.Combine(cwd, "results"))
                  |> Array.map Path.GetFileName

              Expect.hasLength folders 2 $"two folders: {folders}"

              for f in folders do
                  Expect.stringStarts f "train-mnist-lateral_inhibition-seed1-" "the name, then a hash"
          }

          test "a continual run that stops resumes from its checkpoints; a complete one is not redone" {
              let cache = cachedMnist 64 32
              let parent = Cli.tempDir ()
              let out = Path.Combine(parent, "cl")

              let args =
                  [ "continual"; "--cache-dir"; cache; "--out"; out; "--methods"; "none" ]
                  @ continualQuick

              // Stopped after its checkpoints were written, before its metrics: nothing in place yet.
              let stopped = Cli.runWith [ "FORGETTING_FAIL_AT", "write:metrics.json" ] args
              assertOneLineError 1 stopped
              Expect.isFalse (Directory.Exists out) "no folder in place"
              let again = Cli.run args
              Expect.equal again.ExitCode 0 $"the same command again ({again.Stderr})"
              Expect.stringContains again.Stdout "resumed from its checkpoint after task 2" "it resumes"
              let fresh = Path.Combine(Cli.tempDir (), "cl")

              let whole =
                  Cli.run (
                      [ "continual"; "--cache-dir"; cache; "--out"; fresh; "--methods"; "none" ]
                      @ continualQuick
                  )

              Expect.equal whole.ExitCode 0 "an unbroken run"

              Expect.equal
                  (File.ReadAllText(Path.Combine(out, "none-seed1", "R.csv")))
                  (File.ReadAllText(Path.Combine(fresh, "none-seed1", "R.csv")))
                  "the same R as an unbroken run"

              Expect.equal (entries parent) [| ".cl.lock"; "cl" |] "no staging folder left"
              assertOneLineError 2 (Cli.run args)
          }

          test "FORGETTING_THREADS and FORGETTING_GEMM are checked at start-up" {
              let cache = cachedMnist 16 8
              let out = Path.Combine(Cli.tempDir (), "never")

              for name, value in
                  [ "FORGETTING_THREADS", "0"
                    "FORGETTING_THREADS", "-1"
                    "FORGETTING_THREADS", "abc"
                    "FORGETTING_GEMM", "bogus" ] do
                  let r =
                      Cli.runWith [ name, value ] ([ "train"; "--cache-dir"; cache; "--out"; out ] @ quick)

                  assertOneLineError 2 r
                  Expect.stringContains r.Stderr name $"{name}={value} named"

              Expect.isFalse (Directory.Exists out) "no folder"
          }

          test "the GEMM path and the thread count are recorded" {
              let cache = cachedMnist 16 8
              let out = Path.Combine(Cli.tempDir (), "run")

              let r =
                  Cli.runWith
                      [ "FORGETTING_THREADS", "1"; "FORGETTING_GEMM", "managed" ]
                      ([ "train"; "--cache-dir"; cache; "--out"; out ] @ quick)

              Expect.equal r.ExitCode 0 "exit code"

              use summary =
                  JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "summary.json")))

              let versions = summary.RootElement.GetProperty "versions"
              Expect.equal (versions.GetProperty("threads").GetInt32()) 1 "threads"
              Expect.equal (versions.GetProperty("gemm").GetString()) "Managed" "gemm"
          }

          test "huge counts and sizes are refused with one line before any work" {
              let cache = cachedMnist 16 8
              let out = Path.Combine(Cli.tempDir (), "never")
              let big = "2147483647"

              for args in
                  [ [ "train"; "--epochs"; big ]
                    // Past int's range: Argu's message, on one line.
                    [ "train"; "--epochs"; "99999999999" ]
                    [ "train"; "--hidden"; "1000000"; "1000000" ]
                    [ "train"; "--hidden"; "1" ]
                    [ "compare"; "--seeds"; big ]
                    [ "figure"; "--figures"; "fig2"; "--draws"; big ]
                    [ "figure"; "--figures"; "fig4b"; "--repeats"; big ]
                    [ "figure"; "--figures"; "fig4c"; "--tsne-points"; big ]
                    [ "figure"; "--figures"; "fig3c"; "--seeds"; big ]
                    [ "continual"; "--epochs"; big ]
                    [ "continual"; "--tasks"; big ]
                    [ "continual"; "--seeds"; big ]
                    [ "continual"; "--hidden"; big ] ] do
                  let r = Cli.run (args @ [ "--cache-dir"; cache; "--out"; out ])
                  assertOneLineError 2 r

              Expect.isFalse (Directory.Exists out) "no folder"

              for args in [ [ "sparsity"; "--units"; big ]; [ "sparsity"; "--samples"; big ] ] do
                  assertOneLineError 2 (Cli.run args)

              // A file where the data cache, a folder, should be.
              let file = Path.Combine(Cli.tempDir (), "a-file")
              File.WriteAllText(file, "")
              let onFile = Cli.run [ "train"; "--cache-dir"; file ]
              assertOneLineError 1 onFile
              Expect.stringContains onFile.Stderr "must be a folder" "the reason"
          }

          test "data that training cannot use is refused at load, naming the file" {
              let cached (files: Map<string, byte[]>) =
                  let dir = Cli.tempDir ()
                  let cache = Path.Combine(dir, "cache")
                  use server = new TestData.LoopbackServer(files)
                  let fetched = fetchFrom cache server (writeSums dir files)
                  Expect.equal fetched.ExitCode 0 $"fetch ({fetched.Stderr})"
                  cache

              let files (trainCount: int) (testCount: int) (testSide: int) =
                  let trainPixels, trainLabels = TestData.images 1 trainCount 28 28 10
                  let testPixels, testLabels = TestData.images 2 testCount testSide testSide 10

                  Map.ofList
                      [ "train-images-idx3-ubyte.gz", TestData.gzip (TestData.idxImages 28 28 trainPixels)
                        "train-labels-idx1-ubyte.gz", TestData.gzip (TestData.idxLabels trainLabels)
                        "t10k-images-idx3-ubyte.gz", TestData.gzip (TestData.idxImages testSide testSide testPixels)
                        "t10k-labels-idx1-ubyte.gz", TestData.gzip (TestData.idxLabels testLabels) ]

              for name, data, expected in
                  [ "an empty test split", files 16 0 28, "t10k-images-idx3-ubyte.gz: holds no images"
                    "an empty training split", files 0 8 28, "train-images-idx3-ubyte.gz: holds no images"
                    "test images of another size", files 16 8 14, "images of 14×14, but the training images are 28×28" ] do
                  let out = Path.Combine(Cli.tempDir (), "never")
                  let r = train (cached data) out []
                  assertOneLineError 1 r
                  Expect.stringContains r.Stderr expected name
                  Expect.isFalse (Directory.Exists out) $"{name}: no folder"
          }

          test "data fetch --base-url takes only an http or https URL" {
              let cache = Path.Combine(Cli.tempDir (), "cache")

              for url in [ "ftp://example.org/mnist/"; "not a url"; "file:///etc/" ] do
                  let r =
                      Cli.run [ "data"; "fetch"; "mnist"; "--cache-dir"; cache; "--base-url"; url ]

                  assertOneLineError 2 r
                  Expect.stringContains r.Stderr "--base-url must be an http or https URL" url

              Expect.isFalse (Directory.Exists cache) "no cache made"
          }

          test "figure refuses too few t-SNE points before any figure is computed" {
              let cache = cachedMnist 16 8
              let out = Path.Combine(Cli.tempDir (), "figs")

              let r =
                  Cli.run (
                      [ "figure"
                        "--cache-dir"
                        cache
                        "--out"
                        out
                        "--figures"
                        "fig1e"
                        "fig4c"
                        "--tsne-points"
                        "20" ]
                      @ quick
                  )

              assertOneLineError 2 r
              Expect.stringContains r.Stderr "--tsne-points" "names the option"
              Expect.equal r.Stdout "" "fig1e was not computed first"
              Expect.isFalse (Directory.Exists out) "no folder"
          }

          test "a fetch cleans what a killed fetch left, and puts back a data set it had moved aside" {
              let cache = cachedMnist 16 8
              let target = Path.Combine(cache, "mnist")
              let stale = Path.Combine(cache, ".mnist.0123456789abcdef.partial")
              Directory.CreateDirectory stale |> ignore
              File.WriteAllText(Path.Combine(stale, "train-images-idx3-ubyte.gz"), "half a download")
              // A kill between the two renames of a forced fetch's commit.
              let aside = Path.Combine(cache, ".mnist.fedcba9876543210.old")
              Directory.Move(target, aside)
              let r = Cli.run [ "data"; "fetch"; "mnist"; "--cache-dir"; cache ]
              Expect.equal r.ExitCode 0 $"exit code ({r.Stderr})"
              Expect.stringContains r.Stdout $"removed {stale}" "the staging folder"
              Expect.stringContains r.Stdout $"put back {target}" "the data set"
              Expect.stringContains r.Stdout "already in" "and it is the cached copy"
              Expect.isFalse (Directory.Exists stale) "no staging folder"
              Expect.isFalse (Directory.Exists aside) "nothing aside"
          }

          test "a fetch that waits for another one takes the copy it left" {
              let cache = cachedMnist 16 8

              // Another fetch of mnist, holding its lock for four seconds: longer than a fetch that finds
              // the data set cached takes without waiting.
              let held =
                  new FileStream(fetchLock cache "mnist", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)

              let waiting =
                  async { return Cli.run [ "data"; "fetch"; "mnist"; "--cache-dir"; cache ] }
                  |> Async.StartAsTask

              System.Threading.Thread.Sleep 4000
              Expect.isFalse waiting.IsCompleted "it waits"
              held.Dispose()
              let r = waiting.Result
              Expect.equal r.ExitCode 0 $"exit code ({r.Stderr})"
              Expect.stringContains r.Stdout "already in" "the copy the other fetch left"
          }

          test "a pipe where a file is expected is refused, not read forever" {
              let fifo (path: string) =
                  use p = System.Diagnostics.Process.Start("mkfifo", [ path ])
                  p.WaitForExit()
                  Expect.equal p.ExitCode 0 "mkfifo"

              let dir = Cli.tempDir ()
              let pipe = Path.Combine(dir, "pipe")
              fifo pipe
              assertOneLineError 1 (Cli.run [ "sparsity"; "--csv"; pipe ])
              assertOneLineError 1 (Cli.run [ "run"; pipe ])
              let cache = cachedMnist 16 8
              let images = Path.Combine(cache, "mnist", "train-images-idx3-ubyte.gz")
              File.Delete images
              fifo images
              let r = train cache (Path.Combine(dir, "never")) []
              assertOneLineError 1 r
              Expect.stringContains r.Stderr "not a regular file" "the reason"
          }

          test "learning rates are recorded exactly, and summary.json's losses are epochs.csv's, to the bit" {
              let cache = cachedMnist 16 8
              // Random doubles from 1e-9 to 1 (a fixed seed, so a failure repeats), every bit of the
              // mantissa in play, and the value that 6 decimals used to record as 0.
              let rng = System.Random 15

              let rates =
                  1e-7
                  :: [ for _ in 1..4 -> System.Math.Pow(10.0, -9.0 * rng.NextDouble()) * (1.0 - rng.NextDouble() / 3.0) ]

              for lr in rates do
                  let out = Path.Combine(Cli.tempDir (), "run")
                  let text = lr.ToString("R", System.Globalization.CultureInfo.InvariantCulture)
                  let r = train cache out [ "--lr"; text ]
                  Expect.equal r.ExitCode 0 $"exit code ({r.Stderr})"

                  use recipe = JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "recipe.json")))

                  let recorded =
                      recipe.RootElement.GetProperty("optimizer").GetProperty("lr").GetDouble()

                  Expect.equal recorded lr $"recipe.json's lr {text}"

                  use summary =
                      JsonDocument.Parse(File.ReadAllText(Path.Combine(out, "summary.json")))

                  let fromJson =
                      [ for e in summary.RootElement.GetProperty("epochs").EnumerateArray() ->
                            e.GetProperty("train_loss").GetDouble() ]

                  let fromCsv =
                      File.ReadAllLines(Path.Combine(out, "epochs.csv"))[1..]
                      |> Array.map (fun l -> float (l.Split(',')[1]))
                      |> List.ofArray

                  Expect.equal fromJson fromCsv $"lr {text}: the same doubles in JSON and CSV"
          }

          test "compare --variants with no names is one line" {
              assertOneLineError 2 (Cli.run [ "compare"; "--variants" ])
          }

          test "report leaves out a malformed figure or one whose panels lie outside its folder, and makes the page" {
              let dir = Cli.tempDir ()

              let figure (name: string) (json: string) =
                  let d = Path.Combine(dir, name)
                  Directory.CreateDirectory d |> ignore

                  File.WriteAllText(
                      Path.Combine(d, "a.svg"),
                      "<svg xmlns=\"http://www.w3.org/2000/svg\"><rect id=\"r\"/></svg>"
                  )

                  File.WriteAllText(Path.Combine(d, "figure.json"), json)

              let panel (svg: string) =
                  $"{{\"figure\": \"f\", \"caption\": \"c\", \"command\": \"x\", \"panels\": [{{\"title\": \"t\", \"svg\": \"{svg}\"}}]}}"

              figure "good" (panel "a.svg")
              figure "truncated" ((panel "a.svg").Substring(0, 30))
              figure "incomplete" "{\"figure\": \"f\"}"
              figure "absolute" (panel "/etc/passwd")
              figure "climbing" (panel "../good/a.svg")
              figure "wrong" "[1, 2]"
              let r = Cli.run [ "report"; dir ]
              Expect.equal r.ExitCode 0 $"exit code ({r.Stderr})"
              Expect.stringStarts r.Stdout "1 figures gathered into" "the good figure"
              let lines = r.Stderr.Trim().Split '\n'
              Expect.hasLength lines 5 $"a line per figure left out: {r.Stderr}"

              for l in lines do
                  Expect.stringStarts l "forgetting: left out " "the prefix"

              Expectations.stringDoesNotContain r.Stderr "   at " "no stack trace"
              Expect.stringContains r.Stderr "outside the figure's folder" "the reason for a path outside"
              let html = File.ReadAllText(Path.Combine(dir, "report.html"))
              Expectations.stringDoesNotContain html "root:" "no file from outside"
          } ]
