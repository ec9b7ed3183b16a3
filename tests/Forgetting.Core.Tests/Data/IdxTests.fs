module Forgetting.Tests.Data.IdxTests

open System
open System.IO
open Expecto
open FsCheck.FSharp
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
    Expectations.throws<DataError> "a DataError" (fun () -> f () |> ignore)

/// The folder of the round-trip property's files, made when it first runs.
let private roundTripDir = lazy (tempDir ())

[<Tests>]
let tests =
    testList
        "IDX files"
        [ Checks.forAll
              "images and labels round-trip through raw and gzip files"
              100
              smallSets
              (fun (rows, columns, pixels, labels) ->
                  let dir = roundTripDir.Value
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

          Checks.forAll
              "the writer produces what the format describes"
              100
              smallSets
              (fun (rows, columns, pixels, labels) ->
                  use images = new MemoryStream()
                  Idx.writeImages images rows columns (ReadOnlySpan pixels)
                  use labelStream = new MemoryStream()
                  Idx.writeLabels labelStream (ReadOnlySpan labels)

                  images.ToArray() = idxImages rows columns pixels
                  && labelStream.ToArray() = idxLabels labels)

          test "pixel bytes are scaled to [0, 1] with 0 and 255 exact" {
              let _, _, values =
                  Idx.parseImages "all-bytes" (idxImages 16 16 (Array.init 256 byte))

              Expect.equal values[0] 0.0f "byte 0"
              Expect.equal values[255] 1.0f "byte 255"
              Expect.equal values[128] (128.0f / 255.0f) "byte 128"
          }

          test "a wrong magic number names the file and the expected number" {
              let e = expectError (fun () -> Idx.parseImages "labels.idx" (idxLabels [| 1uy |]))

              Expect.equal
                  e.Message
                  "labels.idx: wrong magic number 0x00000801, expected 0x00000803 (unsigned-byte images: count × rows × columns)"
                  "the message"

              Expect.equal e.Path "labels.idx" "the path"

              let e2 =
                  expectError (fun () -> Idx.parseLabels "images.idx" 10 (idxImages 2 2 [| 0uy; 1uy; 2uy; 3uy |]))

              Expect.stringContains e2.Message "wrong magic number 0x00000803, expected 0x00000801" "e2: the message"
              let text = expectError (fun () -> Idx.parseImages "notes.txt" ("hello world"B))
              Expect.stringContains text.Message "notes.txt: wrong magic number 0x68656C6C" "text: the message"
          }

          test "a header claiming more items than the file holds is refused before their size is allocated" {
              let pixels, labels = images 1 5 28 28 10
              // The header says 2,700,000 images (about 8.5 GB as floats); the file holds 5.
              let images = idxImages 28 28 pixels
              images[4..7] <- [| 0x00uy; 0x29uy; 0x32uy; 0xE0uy |]
              let labelFile = idxLabels labels
              labelFile[4..7] <- [| 0x7Fuy; 0xFFuy; 0xFFuy; 0xFFuy |]
              let before = GC.GetAllocatedBytesForCurrentThread()
              let e = expectError (fun () -> Idx.parseImages "big.gz" (gzip images))
              Expect.stringContains e.Message "big.gz: truncated: the header declares 2700000 images" "images"
              let l = expectError (fun () -> Idx.parseLabels "labels" 10 labelFile)
              Expect.stringContains l.Message "labels: truncated: the header declares 2147483647 labels" "labels"
              let allocated = GC.GetAllocatedBytesForCurrentThread() - before
              Expect.isLessThan allocated 50_000_000L $"allocated {allocated} bytes, not the declared size"
          }

          test "truncated files are refused, raw or gzip" {
              let pixels, labels = images 1 5 4 4 10
              let full = idxImages 4 4 pixels
              let cut = full[.. full.Length - 7]
              let raw = expectError (fun () -> Idx.parseImages "cut.idx" cut)

              Expect.equal
                  raw.Message
                  "cut.idx: truncated: the header declares 5 images of 4×4 (80 bytes) but the data ends after 74"
                  "raw: the message"

              let zipped = expectError (fun () -> Idx.parseImages "cut.idx.gz" (gzip cut))
              Expect.stringContains zipped.Message "cut.idx.gz: truncated" "zipped: the message"
              let header = expectError (fun () -> Idx.parseImages "tiny" [| 0uy; 0uy |])

              Expect.stringContains
                  header.Message
                  "tiny: truncated: 2 bytes, too short for an IDX header"
                  "header: the message"

              let sizes = expectError (fun () -> Idx.parseImages "sizes" full[..9])

              Expect.stringContains
                  sizes.Message
                  "sizes: truncated: the header declares 3 dimensions but ends after 1"
                  "sizes: the message"

              let labelFile = idxLabels labels
              let fewLabels = expectError (fun () -> Idx.parseLabels "labels" 10 labelFile[..10])

              Expect.stringContains
                  fewLabels.Message
                  "labels: truncated: the header declares 5 labels but the data ends after 3"
                  "fewLabels: the message"
          }

          test "a gzip stream cut short of its data is refused, wherever the cut" {
              let pixels, _ = images 2 50 8 8 10
              let zipped = gzip (idxImages 8 8 pixels)

              // The last 8 bytes are the gzip trailer (CRC and size); a cut there leaves the data whole, and the
              // file's checksum, not the reader, is what notices it.
              for cut in [ 5; 20; zipped.Length / 2; zipped.Length - 12 ] do
                  let e = expectError (fun () -> Idx.parseImages "cut.gz" zipped[.. cut - 1])
                  Expect.stringStarts e.Message "cut.gz: " "the message"
          }

          test "corrupt gzip data is refused" {
              let pixels, _ = images 3 50 8 8 10
              let zipped = gzip (idxImages 8 8 pixels)
              let bad = Array.copy zipped
              // Past the 10-byte gzip header, into the deflate stream: a block type that does not exist.
              bad[10] <- 0xFFuy
              bad[11] <- 0xFFuy
              let e = expectError (fun () -> Idx.parseImages "bad.gz" bad)
              Expect.stringStarts e.Message "bad.gz: " "the message"
          }

          test "bytes beyond the declared size are refused" {
              let pixels, _ = images 4 3 2 2 10

              let e =
                  expectError (fun () -> Idx.parseImages "long" (Array.append (idxImages 2 2 pixels) [| 1uy; 2uy |]))

              Expect.equal e.Message "long: 2 bytes more than the 3 images of 2×2 its header declares" "the message"
          }

          test "labels out of range name the item" {
              let e =
                  expectError (fun () -> Idx.parseLabels "labels" 10 (idxLabels [| 0uy; 9uy; 3uy; 10uy |]))

              Expect.equal e.Message "labels: label 10 of item 3 is out of range, expected 0 … 9" "the message"
          }

          test "images and labels must agree in number" {
              let dir = tempDir ()
              let pixels, labels = images 5 4 2 2 10
              let imagesPath = write dir "images" (idxImages 2 2 pixels)
              let labelsPath = write dir "labels" (idxLabels labels[..2])
              let e = expectError (fun () -> Idx.load "x" 10 imagesPath labelsPath)

              Expect.equal
                  e.Message
                  ($"{labelsPath}: 3 labels, but {imagesPath} holds 4 images; expected one label per image")
                  "the message"
          }

          test "a missing file is a data error that names it" {
              let missing = Path.Combine(tempDir (), "nothing-here")
              let e = expectError (fun () -> Idx.readImages missing)
              Expect.equal e.Message ($"{missing}: no such file") "the message"
          } ]
