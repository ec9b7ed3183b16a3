namespace Forgetting.Training

open System
open System.Buffers.Binary
open System.Collections.Generic
open System.IO
open System.Runtime.InteropServices
open System.Text
open System.Text.Json
open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Data

/// Named tensors and string metadata, as a safetensors file holds them.
type Checkpoint =
    {
        /// The tensors, sorted by name (byte order of their UTF-8).
        Tensors: (string * Tensor) list
        /// The file's "__metadata__" map (empty when the file has none).
        Metadata: Map<string, string>
    }

/// Checkpoints in the safetensors format (Hugging Face), as PyTorch's `safetensors` writes and reads
/// them: 8 bytes holding N, the length of the header, as an unsigned little-endian 64-bit integer; N
/// bytes of UTF-8 JSON that start with '{', padded with spaces to a multiple of 8 bytes, mapping each
/// tensor's name to {"dtype", "shape", "data_offsets": [begin, end]} and the optional key "__metadata__"
/// to a map of strings; then the byte buffer, every tensor's elements little-endian in row-major order,
/// at its offsets relative to the start of the buffer. The tensors must cover the buffer exactly, with
/// neither gaps nor overlaps. Written as the reference writer does: tensors sorted by dtype, widest
/// first (F64 before F32), then by name; compact JSON, "__metadata__" first (its keys sorted) and left
/// out when empty; then the tensors in that order. A scalar has shape []; a tensor with a 0-sized
/// dimension holds no bytes. Only F32 and F64 tensors are read and written.
[<RequireQualifiedAccess>]
module Checkpoint =

    /// The reference reader's limit on the header.
    let private maxHeader = 100_000_000L

    let private metadataKey = "__metadata__"

    let private argFail (message: string) : 'a = raise (ArgumentException message)

    let private fileFail (path: string) (message: string) : 'a =
        raise (DataError($"{path}: {message}", path))

    let private dtypeName (d: DType) =
        match d with
        | Float32 -> "F32"
        | Float64 -> "F64"

    let private dtypeSize (d: DType) =
        match d with
        | Float32 -> 4
        | Float64 -> 8

    /// The other dtypes of the format, refused as unsupported rather than unknown.
    let private otherDtypes =
        set
            [ "BOOL"
              "U8"
              "I8"
              "F8_E5M2"
              "F8_E4M3"
              "F8_E8M0"
              "F4"
              "F6_E2M3"
              "F6_E3M2"
              "I16"
              "U16"
              "F16"
              "BF16"
              "I32"
              "U32"
              "I64"
              "U64"
              "C64" ]

    let private utf8 = UTF8Encoding(false, true)

    /// Names in the reference writer's order: byte order of their UTF-8.
    let private compareNames (a: string) (b: string) =
        ReadOnlySpan<byte>(utf8.GetBytes a).SequenceCompareTo(ReadOnlySpan<byte>(utf8.GetBytes b))

    /// A JSON string as serde_json writes it: quotes, backslash and control characters escaped, the rest
    /// as it is.
    let private jsonString (out: StringBuilder) (s: string) =
        out.Append '"' |> ignore

        for ch in s do
            match ch with
            | '"' -> out.Append "\\\"" |> ignore
            | '\\' -> out.Append "\\\\" |> ignore
            | '\b' -> out.Append "\\b" |> ignore
            | '\f' -> out.Append "\\f" |> ignore
            | '\n' -> out.Append "\\n" |> ignore
            | '\r' -> out.Append "\\r" |> ignore
            | '\t' -> out.Append "\\t" |> ignore
            | c when c < ' ' -> out.Append("\\u00").Append((int c).ToString "x2") |> ignore
            | c -> out.Append c |> ignore

        out.Append '"' |> ignore

    let private bytesOf (t: Tensor) : byte[] =
        match t.DType with
        | Float32 ->
            let values = t.ToArray()

            if BitConverter.IsLittleEndian then
                MemoryMarshal.AsBytes(ReadOnlySpan<float32> values).ToArray()
            else
                let bytes = Array.zeroCreate (values.Length * 4)

                values
                |> Array.iteri (fun i v -> BinaryPrimitives.WriteSingleLittleEndian(Span<byte>(bytes, i * 4, 4), v))

                bytes
        | Float64 ->
            let values = t.ToFloat64Array()

            if BitConverter.IsLittleEndian then
                MemoryMarshal.AsBytes(ReadOnlySpan<float> values).ToArray()
            else
                let bytes = Array.zeroCreate (values.Length * 8)

                values
                |> Array.iteri (fun i v -> BinaryPrimitives.WriteDoubleLittleEndian(Span<byte>(bytes, i * 8, 8), v))

                bytes

    /// The bytes of a safetensors file holding `tensors` and `metadata`. Names must be non-empty,
    /// distinct, and not "__metadata__".
    let serialize (tensors: (string * Tensor) list) (metadata: Map<string, string>) : byte[] =
        let seen = HashSet<string>()

        for name, _ in tensors do
            if String.IsNullOrEmpty name then
                argFail "a checkpoint's tensors need non-empty names"

            if name = metadataKey then
                argFail $"a tensor cannot be named '{metadataKey}': safetensors keeps that key for the metadata"

            if not (seen.Add name) then
                argFail $"a checkpoint names tensor '{name}' twice"

        let ordered =
            tensors
            |> List.sortWith (fun (a, x) (b, y) ->
                match compare (dtypeSize y.DType) (dtypeSize x.DType) with
                | 0 -> compareNames a b
                | c -> c)

        let header = StringBuilder()
        header.Append '{' |> ignore
        let mutable first = true

        let comma () =
            if not first then
                header.Append ',' |> ignore

            first <- false

        if not metadata.IsEmpty then
            comma ()
            jsonString header metadataKey
            header.Append ":{" |> ignore

            metadata
            |> Map.toList
            |> List.sortWith (fun (a, _) (b, _) -> compareNames a b)
            |> List.iteri (fun i (k, v) ->
                if i > 0 then
                    header.Append ',' |> ignore

                jsonString header k
                header.Append ':' |> ignore
                jsonString header v)

            header.Append '}' |> ignore

        let data = ordered |> List.map (fun (_, t) -> bytesOf t)
        let mutable offset = 0L

        for (name, t), bytes in List.zip ordered data do
            comma ()
            jsonString header name

            header.Append(":{\"dtype\":\"").Append(dtypeName t.DType).Append("\",\"shape\":[")
            |> ignore

            header.Append(String.Join(",", t.Shape)).Append("],\"data_offsets\":[")
            |> ignore

            header.Append(offset).Append(',').Append(offset + int64 bytes.Length).Append("]}")
            |> ignore

            offset <- offset + int64 bytes.Length

        header.Append '}' |> ignore
        let json = utf8.GetBytes(header.ToString())
        let padded = Array.append json (Array.create ((8 - json.Length % 8) % 8) (byte ' '))
        let out = Array.zeroCreate (8 + padded.Length + int offset)
        BinaryPrimitives.WriteUInt64LittleEndian(Span<byte>(out, 0, 8), uint64 padded.Length)
        Array.blit padded 0 out 8 padded.Length
        let mutable at = 8 + padded.Length

        for bytes in data do
            Array.blit bytes 0 out at bytes.Length
            at <- at + bytes.Length

        out

    /// One tensor's entry in the header.
    type private Entry =
        { Name: string
          DType: DType
          Shape: int[]
          Begin: int64
          End: int64 }

    let private oneLine (s: string) = s.Replace('\r', ' ').Replace('\n', ' ')

    let private entry (path: string) (name: string) (value: JsonElement) =
        let bad what =
            fileFail path $"tensor '{name}': {what}"

        if value.ValueKind <> JsonValueKind.Object then
            bad "its header entry is not an object"

        let field (key: string) =
            match value.TryGetProperty key with
            | true, v -> v
            | _ -> bad $"its header entry has no \"{key}\""

        let integers (key: string) (v: JsonElement) =
            if v.ValueKind <> JsonValueKind.Array then
                bad $"\"{key}\" is not a list of integers"

            [| for x in v.EnumerateArray() do
                   match x.ValueKind, x.TryGetInt64() with
                   | JsonValueKind.Number, (true, n) when n >= 0L -> yield n
                   | _ -> bad $"\"{key}\" holds {x.GetRawText()}, not a non-negative integer" |]

        let dtype =
            let d = field "dtype"

            match
                (if d.ValueKind = JsonValueKind.String then
                     d.GetString()
                 else
                     d.GetRawText())
            with
            | "F32" -> Float32
            | "F64" -> Float64
            | other when otherDtypes.Contains other -> bad $"dtype {other} is not supported (only F32 and F64 are)"
            | other -> bad $"unknown dtype {other}"

        let shape = integers "shape" (field "shape")

        for s in shape do
            if s > int64 Int32.MaxValue then
                bad $"its shape [{String.Join(',', shape)}] has a dimension too large"

        let offsets = integers "data_offsets" (field "data_offsets")

        if offsets.Length <> 2 then
            bad $"\"data_offsets\" holds {offsets.Length} numbers, not [begin, end]"

        if offsets[1] < offsets[0] then
            bad $"its data_offsets [{offsets[0]}, {offsets[1]}] end before they begin"

        { Name = name
          DType = dtype
          Shape = shape |> Array.map int
          Begin = offsets[0]
          End = offsets[1] }

    let private tensorOf (e: Entry) (file: byte[]) (dataStart: int) =
        let bytes = ReadOnlySpan<byte>(file, dataStart + int e.Begin, int (e.End - e.Begin))

        match e.DType with
        | Float32 ->
            let values = Array.zeroCreate<float32>(bytes.Length / 4)

            for i in 0 .. values.Length - 1 do
                values[i] <- BinaryPrimitives.ReadSingleLittleEndian(bytes.Slice(i * 4, 4))

            Tensor.wrap32 e.Shape values
        | Float64 ->
            let values = Array.zeroCreate<float>(bytes.Length / 8)

            for i in 0 .. values.Length - 1 do
                values[i] <- BinaryPrimitives.ReadDoubleLittleEndian(bytes.Slice(i * 8, 8))

            Tensor.ofFloat64 e.Shape values

    /// The checkpoint in the bytes of a safetensors file; `path` names the file in error messages. Refused
    /// with a one-line DataError naming the file: too short for the header length, a header length
    /// beyond the file or above 100 MB, a header that is not UTF-8 JSON starting with '{', a malformed
    /// entry, a name given twice, a dtype other than F32 and F64, data offsets beyond the byte buffer,
    /// overlapping or leaving a gap, a shape whose elements do not fill its offsets, and bytes after the
    /// last tensor.
    let deserialize (path: string) (bytes: byte[]) : Checkpoint =
        let bad message = fileFail path message

        if bytes.Length < 8 then
            bad $"a safetensors file starts with an 8-byte header length, the file has {bytes.Length} bytes"

        let n = BinaryPrimitives.ReadUInt64LittleEndian(ReadOnlySpan<byte>(bytes, 0, 8))

        if n > uint64 bytes.Length - 8UL then
            bad $"the header length {n} goes beyond the end of the file ({bytes.Length} bytes: truncated?)"

        if n > uint64 maxHeader then
            bad $"the header length {n} is above the format's limit of {maxHeader} bytes"

        let n = int n

        let text =
            try
                utf8.GetString(bytes, 8, n)
            with :? DecoderFallbackException ->
                bad "the header is not valid UTF-8"

        if not (text.StartsWith '{') then
            bad "the header does not start with '{'"

        use doc =
            try
                JsonDocument.Parse text
            with :? JsonException as e ->
                bad $"the header is not valid JSON ({oneLine e.Message})"

        if doc.RootElement.ValueKind <> JsonValueKind.Object then
            bad "the header is not a JSON object"

        let names = HashSet<string>()
        let mutable metadata = Map.empty
        let entries = List<Entry>()

        for p in doc.RootElement.EnumerateObject() do
            if not (names.Add p.Name) then
                bad $"the header names '{p.Name}' twice"

            if p.Name = metadataKey then
                if p.Value.ValueKind <> JsonValueKind.Object then
                    bad $"\"{metadataKey}\" is not a map of strings"

                for m in p.Value.EnumerateObject() do
                    if metadata.ContainsKey m.Name then
                        bad $"\"{metadataKey}\" names '{m.Name}' twice"

                    if m.Value.ValueKind <> JsonValueKind.String then
                        bad $"\"{metadataKey}\" maps '{m.Name}' to {m.Value.GetRawText()}, not a string"

                    metadata <- metadata.Add(m.Name, m.Value.GetString())
            else
                entries.Add(entry path p.Name p.Value)

        let bufferLength = int64 bytes.Length - 8L - int64 n

        for e in entries do
            if e.End > bufferLength then
                bad
                    $"tensor '{e.Name}' has data_offsets [{e.Begin}, {e.End}] beyond the {bufferLength} bytes of data (truncated?)"

            let numel =
                try
                    e.Shape |> Array.fold (fun acc s -> Checked.(*) acc (int64 s)) 1L
                with :? OverflowException ->
                    bad
                        $"tensor '{e.Name}': its shape [{String.Join(',', e.Shape)}] has more elements than a file can hold"

            let needed = numel * int64 (dtypeSize e.DType)

            if needed <> e.End - e.Begin then
                bad
                    $"tensor '{e.Name}' of shape [{String.Join(',', e.Shape)}] and dtype {dtypeName e.DType} needs {needed} bytes, its data_offsets [{e.Begin}, {e.End}] hold {e.End - e.Begin}"

        let byOffset = entries |> Seq.sortBy (fun e -> e.Begin, e.End) |> Array.ofSeq
        let mutable covered = 0L
        let mutable previous = ""

        for e in byOffset do
            if e.Begin < covered then
                bad
                    $"tensors '{previous}' and '{e.Name}' overlap (their data runs to {covered}, then starts at {e.Begin})"

            if e.Begin > covered then
                bad $"bytes {covered} … {e.Begin - 1L} of the data belong to no tensor (before tensor '{e.Name}')"

            covered <- e.End
            previous <- e.Name

        if covered <> bufferLength then
            bad $"bytes {covered} … {bufferLength - 1L} of the data, after the last tensor, belong to no tensor"

        let tensors =
            entries
            |> Seq.sortWith (fun a b -> compareNames a.Name b.Name)
            |> Seq.map (fun e -> e.Name, e)
            |> List.ofSeq
            |> List.map (fun (name, e) -> name, tensorOf e bytes (8 + n))

        { Tensors = tensors
          Metadata = metadata }

    /// Write `tensors` and `metadata` as a safetensors file at `path`, atomically: into a temporary file
    /// in the same folder, flushed to disk, then renamed over `path`, so that a reader sees either the
    /// old file or the whole new one.
    let write (path: string) (tensors: (string * Tensor) list) (metadata: Map<string, string>) : unit =
        let bytes = serialize tensors metadata
        let full = Path.GetFullPath path
        let folder = Path.GetDirectoryName full

        let temporary =
            Path.Combine(folder, $".{Path.GetFileName full}.{Guid.NewGuid():N}.tmp")

        try
            do
                use stream =
                    new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None)

                stream.Write(bytes, 0, bytes.Length)
                stream.Flush true

            File.Move(temporary, full, true)
        with _ ->
            if File.Exists temporary then
                File.Delete temporary

            reraise ()

    /// The checkpoint in the safetensors file at `path` (see `deserialize` for what is refused).
    let read (path: string) : Checkpoint =
        if not (File.Exists path) then
            fileFail path "no such checkpoint file"

        deserialize path (File.ReadAllBytes path)

    /// A parameter tree's tensors named by their paths in the tree ("block1/dense/weight").
    let ofParams (p: Params) : (string * Tensor) list =
        match p with
        | Leaf _ -> argFail "a checkpoint of parameters needs a tree of named tensors, not a single tensor"
        | Branch _ -> Params.flatten p

    /// The parameter tree whose paths are the tensors' names, each split at '/'.
    let toParams (tensors: (string * Tensor) list) : Params =
        let rec build (prefix: string) (items: (string list * Tensor) list) =
            items
            |> List.groupBy (fun (parts, _) -> List.head parts)
            |> List.map (fun (name, group) ->
                let path = if prefix = "" then name else prefix + "/" + name

                match group with
                | [ [ _ ], t ] -> name, Leaf t
                | _ when group |> List.exists (fun (parts, _) -> parts.Length = 1) ->
                    argFail $"'{path}' is both a tensor and a folder of tensors"
                | _ -> name, build path (group |> List.map (fun (parts, t) -> List.tail parts, t)))
            |> Params.ofList

        tensors
        |> List.map (fun (name, t) ->
            let parts = name.Split '/' |> List.ofArray

            if parts |> List.exists String.IsNullOrEmpty then
                argFail $"'{name}' is not a parameter path (names separated by single '/')"

            parts, t)
        |> build ""

    /// Write a parameter tree (names = its paths) and metadata as a safetensors file, atomically.
    let writeParams (path: string) (p: Params) (metadata: Map<string, string>) : unit = write path (ofParams p) metadata

    /// A parameter tree and the metadata from a safetensors file.
    let readParams (path: string) : Params * Map<string, string> =
        let c = read path

        let p =
            try
                toParams c.Tensors
            with :? ArgumentException as e ->
                fileFail path e.Message

        p, c.Metadata

    /// A parameter tree of the same structure, shapes and dtypes as `like` from a safetensors file (a
    /// model's parameters restored), and the metadata; a file that does not fit is refused naming the
    /// first difference.
    let readParamsLike (like: Params) (path: string) : Params * Map<string, string> =
        let c = read path
        let stored = dict c.Tensors
        let expected = Params.flatten like

        let tensors =
            expected
            |> List.map (fun (name, t) ->
                match stored.TryGetValue name with
                | true, s when s.Shape = t.Shape && s.DType = t.DType -> s
                | true, s ->
                    fileFail
                        path
                        $"tensor '{name}' is {dtypeName s.DType} [{String.Join(',', s.Shape)}], the model's is {dtypeName t.DType} [{String.Join(',', t.Shape)}]"
                | _ -> fileFail path $"the file has no tensor '{name}'")

        let known = expected |> List.map fst |> set

        match c.Tensors |> List.tryFind (fun (name, _) -> not (known.Contains name)) with
        | Some(name, _) -> fileFail path $"tensor '{name}' is not one of the model's parameters"
        | None -> Params.withTensors like (Array.ofList tensors), c.Metadata
