namespace Forgetting.Data

open System
open System.Buffers
open System.Buffers.Binary
open System.IO
open System.IO.Compression
open System.Numerics.Tensors

/// The IDX format of MNIST and Fashion-MNIST (unsigned bytes only): a big-endian header
/// `0x00 0x00 0x08 <dims>`, one 32-bit size per dimension, then the bytes. Files may be raw or gzip,
/// told apart by their first bytes rather than their names.
[<RequireQualifiedAccess>]
module Idx =

    /// Magic number of an image file: unsigned bytes, 3 dimensions (count × rows × columns).
    [<Literal>]
    let ImagesMagic = 0x00000803

    /// Magic number of a label file: unsigned bytes, 1 dimension (count).
    [<Literal>]
    let LabelsMagic = 0x00000801

    /// Whether the bytes begin like a gzip stream.
    let isGzip (bytes: ReadOnlySpan<byte>) =
        bytes.Length >= 2 && bytes[0] = 0x1fuy && bytes[1] = 0x8buy

    let private fail (path: string) (message: string) : 'a =
        raise (DataError($"{path}: {message}", path))

    /// Turn a decompressor's complaint into a DataError that names the file. (The contents are in memory,
    /// so there is no other I/O to fail.)
    let private guard (path: string) (f: unit -> 'a) : 'a =
        try
            f ()
        with :? InvalidDataException as e ->
            fail path $"corrupt gzip data ({e.Message})"

    let private openContents (bytes: byte[]) : Stream =
        let raw = new MemoryStream(bytes, false)

        if isGzip (ReadOnlySpan bytes) then
            new GZipStream(raw, CompressionMode.Decompress)
        else
            raw

    let private describe magic =
        if magic = ImagesMagic then
            "unsigned-byte images: count × rows × columns"
        else
            "unsigned-byte labels: count"

    /// Read the header; returns the dimension sizes.
    let private readHeader (path: string) (stream: Stream) (expectedMagic: int) : int[] =
        let head = Array.zeroCreate 4
        let got = stream.ReadAtLeast(Span head, 4, false)

        if got < 4 then
            fail
                path
                $"truncated: {got} bytes, too short for an IDX header (magic number 0x{expectedMagic:X8} expected)"

        let magic = BinaryPrimitives.ReadInt32BigEndian(ReadOnlySpan head)

        if magic <> expectedMagic then
            fail path $"wrong magic number 0x{magic:X8}, expected 0x{expectedMagic:X8} ({describe expectedMagic})"

        let dims = int head[3]
        let sizes = Array.zeroCreate (4 * dims)
        let gotSizes = stream.ReadAtLeast(Span sizes, sizes.Length, false)

        if gotSizes < sizes.Length then
            fail path $"truncated: the header declares {dims} dimensions but ends after {gotSizes / 4}"

        Array.init dims (fun d ->
            let s = BinaryPrimitives.ReadInt32BigEndian(ReadOnlySpan(sizes, 4 * d, 4))

            if s < 0 || (d > 0 && s = 0) then
                fail path $"dimension {d} has size {s}, expected a positive size"

            s)

    /// Fail unless the stream has ended.
    let private expectEnd (path: string) (stream: Stream) (declared: string) =
        let probe = Array.zeroCreate 4096
        let mutable extra = 0L
        let mutable n = stream.Read(probe, 0, probe.Length)

        while n > 0 do
            extra <- extra + int64 n
            n <- stream.Read(probe, 0, probe.Length)

        if extra > 0L then
            fail path $"{extra} bytes more than the {declared} its header declares"

    /// The `total` bytes a header declares, read in chunks that grow only as data arrives, so that a
    /// header claiming more than the file holds (a small gzip declaring millions of images) fails as
    /// truncated before anything of the declared size is allocated.
    let private readDeclared (path: string) (stream: Stream) (total: int64) (truncated: int64 -> string) : byte[] =
        let chunks = ResizeArray<byte[]>()
        let mutable filled = 0L

        while filled < total do
            let want = int (min (1L <<< 20) (total - filled))
            let chunk = Array.zeroCreate want
            let got = stream.ReadAtLeast(Span chunk, want, false)
            chunks.Add(if got = want then chunk else Array.sub chunk 0 got)
            filled <- filled + int64 got

            if got < want then
                fail path (truncated filled)

        Array.concat chunks

    /// Images from the contents of an IDX image file (raw or gzip): (count, [| rows; columns |], values
    /// scaled to [0, 1] row-major). `path` names the file in errors.
    let parseImages (path: string) (bytes: byte[]) : int * int[] * float32[] =
        guard path (fun () ->
            use stream = openContents bytes
            let dims = readHeader path stream ImagesMagic
            let count, rows, columns = dims[0], dims[1], dims[2]
            let total = int64 count * int64 rows * int64 columns
            let declared = $"{count} images of {rows}×{columns}"

            if total > int64 Array.MaxLength then
                fail path $"{declared} is more than one array can hold"

            let data =
                readDeclared path stream total (fun filled ->
                    $"truncated: the header declares {declared} ({total} bytes) but the data ends after {filled}")

            let pixels = GC.AllocateUninitializedArray<float32>(data.Length)
            TensorPrimitives.ConvertChecked<byte, float32>(ReadOnlySpan data, Span pixels)
            expectEnd path stream declared
            // Division (not multiplication by 1/255) gives each byte value its correctly rounded float.
            TensorPrimitives.Divide(ReadOnlySpan pixels, 255.0f, Span pixels)
            count, [| rows; columns |], pixels)

    /// Labels from the contents of an IDX label file (raw or gzip), each checked to lie in 0 … classes-1.
    let parseLabels (path: string) (classes: int) (bytes: byte[]) : int[] =
        guard path (fun () ->
            use stream = openContents bytes
            let dims = readHeader path stream LabelsMagic
            let count = dims[0]

            let raw =
                readDeclared path stream (int64 count) (fun got ->
                    $"truncated: the header declares {count} labels but the data ends after {got}")

            expectEnd path stream $"{count} labels"

            raw
            |> Array.iteri (fun i l ->
                if int l >= classes then
                    fail path $"label {l} of item {i} is out of range, expected 0 … {classes - 1}")

            let labels = Array.zeroCreate count
            TensorPrimitives.ConvertChecked<byte, int>(ReadOnlySpan raw, Span labels)
            labels)

    /// A data set from the contents of an image file and a label file (already read, e.g. to check their
    /// checksums); the counts must agree.
    let parseDataset
        (name: string)
        (classes: int)
        (imagesPath: string, imageBytes: byte[])
        (labelsPath: string, labelBytes: byte[])
        : Dataset =
        let count, shape, pixels = parseImages imagesPath imageBytes
        let labels = parseLabels labelsPath classes labelBytes

        if labels.Length <> count then
            raise (
                DataError(
                    $"{labelsPath}: {labels.Length} labels, but {imagesPath} holds {count} images; expected one label per image",
                    labelsPath
                )
            )

        { Name = name
          Images = pixels
          Shape = shape
          Labels = labels
          Classes = classes }

    /// Read an image file (raw or gzip).
    let readImages (path: string) =
        parseImages path (Files.readAllBytes path)

    /// Read a label file (raw or gzip), labels in 0 … classes-1.
    let readLabels (path: string) (classes: int) =
        parseLabels path classes (Files.readAllBytes path)

    /// Read an image file and its label file into a data set.
    let load (name: string) (classes: int) (imagesPath: string) (labelsPath: string) : Dataset =
        parseDataset
            name
            classes
            (imagesPath, Files.readAllBytes imagesPath)
            (labelsPath, Files.readAllBytes labelsPath)

    let private header (magic: int) (sizes: int[]) =
        let h = Array.zeroCreate (4 + 4 * sizes.Length)
        BinaryPrimitives.WriteInt32BigEndian(Span(h, 0, 4), magic)

        sizes
        |> Array.iteri (fun d s -> BinaryPrimitives.WriteInt32BigEndian(Span(h, 4 + 4 * d, 4), s))

        h

    /// Write `count` images of rows × columns bytes as an IDX image file to a stream.
    let writeImages (stream: Stream) (rows: int) (columns: int) (pixels: ReadOnlySpan<byte>) =
        if rows <= 0 || columns <= 0 || pixels.Length % (rows * columns) <> 0 then
            invalidArg (nameof pixels) $"{pixels.Length} pixel bytes are not a whole number of {rows}×{columns} images"

        stream.Write(header ImagesMagic [| pixels.Length / (rows * columns); rows; columns |])
        stream.Write pixels

    /// Write labels as an IDX label file to a stream.
    let writeLabels (stream: Stream) (labels: ReadOnlySpan<byte>) =
        stream.Write(header LabelsMagic [| labels.Length |])
        stream.Write labels
