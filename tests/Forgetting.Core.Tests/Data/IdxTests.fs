module Forgetting.Tests.Data.IdxTests

open System
open System.IO
open FsCheck.FSharp
open Xunit
open Forgetting.Data
open Forgetting.Tests
open Forgetting.Tests.TestData

/// Small image sets: (rows, columns, pixels, labels).
let private smallSets =
    gen {
        let! rows = Gen.choose (1, 6)
        let! columns = Gen.choose (1, 6)
        let! count = Gen.choose (0, 20)
        let! seed = Gen.choose (0, 10000)
        let pixels, labels = images seed count rows columns 10
        return rows, columns, pixels, labels
    }

let private write (dir: string) (name: string) (bytes: byte[]) =
    let path = Path.Combine(dir, name)
    File.WriteAllBytes(path, bytes)
    path

let private expectError (f: unit -> 'a) : DataError =
    Assert.Throws<DataError>(fun () -> f () |> ignore)

[<Fact>]
let ``images and labels round-trip through raw and gzip files`` () =
    let dir = tempDir ()

    LegacyChecks.forAll smallSets (fun (rows, columns, pixels, labels) ->
        let expected = pixels |> Array.map (fun b -> float32 b / 255.0f)

        [ id; gzip ]
        |> List.forall (fun encode ->
            let imagesPath = write dir "images" (encode (idxImages rows columns pixels))
            let labelsPath = write dir "labels" (encode (idxLabels labels))
            let d = Idx.load "generated" 10 imagesPath labelsPath

            d.Images = expected
            && d.Shape = [| rows; columns |]
            && d.Labels = Array.map int labels
            && Dataset.count d = labels.Length))

[<Fact>]
let ``the writer produces what the format describes`` () =
    LegacyChecks.forAll smallSets (fun (rows, columns, pixels, labels) ->
        use images = new MemoryStream()
        Idx.writeImages images rows columns (ReadOnlySpan pixels)
        use labelStream = new MemoryStream()
        Idx.writeLabels labelStream (ReadOnlySpan labels)

        images.ToArray() = idxImages rows columns pixels
        && labelStream.ToArray() = idxLabels labels)

[<Fact>]
let ``pixel bytes are scaled to [0, 1] with 0 and 255 exact`` () =
    let _, _, values =
        Idx.parseImages "all-bytes" (idxImages 16 16 (Array.init 256 byte))

    Assert.Equal(0.0f, values[0])
    Assert.Equal(1.0f, values[255])
    Assert.Equal(128.0f / 255.0f, values[128])

[<Fact>]
let ``a wrong magic number names the file and the expected number`` () =
    let e = expectError (fun () -> Idx.parseImages "labels.idx" (idxLabels [| 1uy |]))

    Assert.Equal(
        "labels.idx: wrong magic number 0x00000801, expected 0x00000803 (unsigned-byte images: count × rows × columns)",
        e.Message
    )

    Assert.Equal("labels.idx", e.Path)

    let e2 =
        expectError (fun () -> Idx.parseLabels "images.idx" 10 (idxImages 2 2 [| 0uy; 1uy; 2uy; 3uy |]))

    Assert.Contains("wrong magic number 0x00000803, expected 0x00000801", e2.Message)
    let text = expectError (fun () -> Idx.parseImages "notes.txt" ("hello world"B))
    Assert.Contains("notes.txt: wrong magic number 0x68656C6C", text.Message)

[<Fact>]
let ``truncated files are refused, raw or gzip`` () =
    let pixels, labels = images 1 5 4 4 10
    let full = idxImages 4 4 pixels
    let cut = full[.. full.Length - 7]
    let raw = expectError (fun () -> Idx.parseImages "cut.idx" cut)

    Assert.Equal(
        "cut.idx: truncated: the header declares 5 images of 4×4 (80 bytes) but the data ends after 74",
        raw.Message
    )

    let zipped = expectError (fun () -> Idx.parseImages "cut.idx.gz" (gzip cut))
    Assert.Contains("cut.idx.gz: truncated", zipped.Message)
    let header = expectError (fun () -> Idx.parseImages "tiny" [| 0uy; 0uy |])
    Assert.Contains("tiny: truncated: 2 bytes, too short for an IDX header", header.Message)
    let sizes = expectError (fun () -> Idx.parseImages "sizes" full[..9])
    Assert.Contains("sizes: truncated: the header declares 3 dimensions but ends after 1", sizes.Message)
    let labelFile = idxLabels labels
    let fewLabels = expectError (fun () -> Idx.parseLabels "labels" 10 labelFile[..10])
    Assert.Contains("labels: truncated: the header declares 5 labels but the data ends after 3", fewLabels.Message)

[<Fact>]
let ``a gzip stream cut short of its data is refused, wherever the cut`` () =
    let pixels, _ = images 2 50 8 8 10
    let zipped = gzip (idxImages 8 8 pixels)

    // The last 8 bytes are the gzip trailer (CRC and size); a cut there leaves the data whole, and the
    // file's checksum, not the reader, is what notices it.
    for cut in [ 5; 20; zipped.Length / 2; zipped.Length - 12 ] do
        let e = expectError (fun () -> Idx.parseImages "cut.gz" zipped[.. cut - 1])
        Assert.StartsWith("cut.gz: ", e.Message)

[<Fact>]
let ``corrupt gzip data is refused`` () =
    let pixels, _ = images 3 50 8 8 10
    let zipped = gzip (idxImages 8 8 pixels)
    let bad = Array.copy zipped
    // Past the 10-byte gzip header, into the deflate stream: a block type that does not exist.
    bad[10] <- 0xFFuy
    bad[11] <- 0xFFuy
    let e = expectError (fun () -> Idx.parseImages "bad.gz" bad)
    Assert.StartsWith("bad.gz: ", e.Message)

[<Fact>]
let ``bytes beyond the declared size are refused`` () =
    let pixels, _ = images 4 3 2 2 10

    let e =
        expectError (fun () -> Idx.parseImages "long" (Array.append (idxImages 2 2 pixels) [| 1uy; 2uy |]))

    Assert.Equal("long: 2 bytes more than the 3 images of 2×2 its header declares", e.Message)

[<Fact>]
let ``labels out of range name the item`` () =
    let e =
        expectError (fun () -> Idx.parseLabels "labels" 10 (idxLabels [| 0uy; 9uy; 3uy; 10uy |]))

    Assert.Equal("labels: label 10 of item 3 is out of range, expected 0 … 9", e.Message)

[<Fact>]
let ``images and labels must agree in number`` () =
    let dir = tempDir ()
    let pixels, labels = images 5 4 2 2 10
    let imagesPath = write dir "images" (idxImages 2 2 pixels)
    let labelsPath = write dir "labels" (idxLabels labels[..2])
    let e = expectError (fun () -> Idx.load "x" 10 imagesPath labelsPath)
    Assert.Equal($"{labelsPath}: 3 labels, but {imagesPath} holds 4 images; expected one label per image", e.Message)

[<Fact>]
let ``a missing file is a data error that names it`` () =
    let missing = Path.Combine(tempDir (), "nothing-here")
    let e = expectError (fun () -> Idx.readImages missing)
    Assert.Equal($"{missing}: no such file", e.Message)
