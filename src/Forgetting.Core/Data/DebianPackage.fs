namespace Forgetting.Data

open System
open System.Buffers.Binary
open System.Diagnostics
open System.IO
open System.Text

/// Data sets shipped as Debian packages: fetch the .deb with `apt-get download`, unpack it with
/// `dpkg-deb -x` (neither needs root), and give back the published files it holds.
[<RequireQualifiedAccess>]
module DebianPackage =

    type private Ran =
        { ExitCode: int
          Stdout: string
          Stderr: string }

    /// The lines of a program's output, trimmed, without empty ones.
    let private lines (text: string) =
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)

    /// The line of a failed run that says why: apt's last error ("E: …"), else the last line of stderr,
    /// else of stdout.
    let private reason (r: Ran) =
        let err = lines r.Stderr

        err
        |> Array.filter (fun l -> l.StartsWith("E: ", StringComparison.Ordinal))
        |> Array.tryLast
        |> Option.orElse (Array.tryLast err)
        |> Option.orElse (Array.tryLast (lines r.Stdout))
        |> Option.defaultValue "no message"

    /// Run a program found through PATH, with these arguments, in `directory`, its output captured and
    /// its messages in English (they are read); killed after `timeout`.
    let private run (program: string) (arguments: string list) (directory: string) (timeout: TimeSpan) : Ran =
        let psi = ProcessStartInfo program

        for a in arguments do
            psi.ArgumentList.Add a

        psi.WorkingDirectory <- directory
        psi.RedirectStandardOutput <- true
        psi.RedirectStandardError <- true
        psi.RedirectStandardInput <- true
        psi.UseShellExecute <- false
        psi.Environment["LC_ALL"] <- "C"
        let command = String.Join(" ", program :: arguments)

        use p =
            try
                Process.Start psi
            with :? ComponentModel.Win32Exception as e ->
                // ENOENT (and ERROR_FILE_NOT_FOUND on Windows): no such program on PATH.
                let what =
                    if e.NativeErrorCode = 2 then
                        $"{program} is not on PATH"
                    else
                        $"{program} could not be started ({e.Message})"

                raise (
                    DataError(
                        $"{what}: the Debian source needs apt-get and dpkg-deb, as on Debian or Ubuntu; "
                        + "on other systems use the other sources",
                        directory
                    )
                )

        p.StandardInput.Close()
        let stdout = p.StandardOutput.ReadToEndAsync()
        let stderr = p.StandardError.ReadToEndAsync()

        if not (p.WaitForExit timeout) then
            p.Kill true
            p.WaitForExit(TimeSpan.FromSeconds 10.0) |> ignore
            raise (DataError($"{command} did not finish in {timeout.TotalSeconds:F0} s", directory))

        // The exit has been seen; this waits for the output to be read to its end.
        p.WaitForExit()

        { ExitCode = p.ExitCode
          Stdout = stdout.Result
          Stderr = stderr.Result }

    /// Run `apt-get download <package>` in `directory` (created if need be); returns the .deb's path.
    let download (source: DebianSource) (directory: string) (timeout: TimeSpan) : string =
        Directory.CreateDirectory directory |> ignore
        let r = run "apt-get" [ "download"; source.Package ] directory timeout
        let command = $"apt-get download {source.Package}"

        if r.ExitCode <> 0 then
            let why = reason r

            if why.Contains("Unable to locate package", StringComparison.Ordinal) then
                raise (
                    DataError(
                        $"{command}: apt knows no such package ({why}): its package lists are empty (as on a fresh "
                        + "machine) or lack it; run 'apt-get update' as root, then fetch again",
                        directory
                    )
                )

            raise (
                DataError(
                    $"{command} failed with exit code {r.ExitCode}: {why}; check that a Debian mirror is reachable, "
                    + "or run 'apt-get update' as root if the lists are out of date",
                    directory
                )
            )

        match Directory.GetFiles(directory, "*.deb") with
        | [| deb |] -> deb
        | [||] -> raise (DataError($"{command} left no .deb in {directory}", directory))
        | several ->
            raise (DataError($"{command} left {several.Length} .deb files in {directory}, expected one", directory))

    /// The package name and version of a .deb (`dpkg-deb --field`).
    let fields (deb: string) (timeout: TimeSpan) : string * string =
        let dir = Path.GetDirectoryName(Path.GetFullPath deb)
        let r = run "dpkg-deb" [ "--field"; deb; "Package"; "Version" ] dir timeout

        if r.ExitCode <> 0 then
            raise (DataError($"{deb}: not a readable Debian package (dpkg-deb: {reason r})", deb))

        let field (name: string) =
            lines r.Stdout
            |> Array.tryPick (fun l ->
                if l.StartsWith(name + ":", StringComparison.Ordinal) then
                    Some(l.Substring(name.Length + 1).Trim())
                else
                    None)
            |> Option.defaultWith (fun () -> raise (DataError($"{deb}: its control file has no {name}", deb)))

        field "Package", field "Version"

    /// Unpack a .deb into `directory` (`dpkg-deb -x`).
    let extract (deb: string) (directory: string) (timeout: TimeSpan) =
        Directory.CreateDirectory directory |> ignore
        let r = run "dpkg-deb" [ "-x"; deb; directory ] directory timeout

        if r.ExitCode <> 0 then
            raise (DataError($"{deb}: dpkg-deb -x failed with exit code {r.ExitCode}: {reason r}", deb))

    /// Where an unpacked package holds a file: in the source's folder, else the only file of that name
    /// anywhere in it.
    let locate (source: DebianSource) (root: string) (name: string) : string =
        let expected = Path.Combine(root, source.Folder, name)

        if File.Exists expected then
            expected
        else
            match Directory.GetFiles(root, name, SearchOption.AllDirectories) |> Array.sort with
            | [| found |] -> found
            | [||] ->
                raise (DataError($"{source.Package} holds no {name} (looked in /{source.Folder}/ and beyond)", root))
            | several ->
                raise (
                    DataError(
                        $"""{source.Package} holds {several.Length} files named {name}, none in /{source.Folder}/: {String.Join(", ", several |> Array.map (fun f -> "/" + Path.GetRelativePath(root, f)))}""",
                        root
                    )
                )

    /// Where a gzip file's compressed data begins: the length of its member header (RFC 1952), or None
    /// if the bytes are not a gzip file with deflate data.
    let gzipHeaderLength (bytes: byte[]) : int option =
        // What follows the header: the compressed data, then CRC32 and ISIZE.
        let limit = bytes.Length - 8
        let flagged (flag: byte) = bytes[3] &&& flag <> 0uy

        let afterZero (i: int) =
            if i >= limit then
                limit + 1
            else
                match Array.IndexOf(bytes, 0uy, i, limit - i) with
                | -1 -> limit + 1
                | z -> z + 1

        if
            bytes.Length < 18
            || bytes[0] <> 0x1fuy
            || bytes[1] <> 0x8buy
            || bytes[2] <> 8uy
            || bytes[3] &&& 0xe0uy <> 0uy
        then
            None
        else
            let mutable i = 10

            if flagged 4uy then
                i <-
                    if i + 2 <= limit then
                        i + 2 + (int bytes[i] ||| (int bytes[i + 1] <<< 8))
                    else
                        limit + 1

            if flagged 8uy then
                i <- afterZero i

            if flagged 16uy then
                i <- afterZero i

            if flagged 2uy then
                i <- i + 2

            if i <= limit then Some i else None

    /// The same gzip data under a header like the published files': FLG = FNAME, `mtime`, XFL 0,
    /// OS 3 (Unix), then `fileName`. None if `bytes` are not gzip.
    let withPublishedHeader (fileName: string) (mtime: uint32) (bytes: byte[]) : byte[] option =
        gzipHeaderLength bytes
        |> Option.map (fun start ->
            let name = Encoding.Latin1.GetBytes fileName
            let header = Array.zeroCreate (10 + name.Length + 1)
            header[0] <- 0x1fuy
            header[1] <- 0x8buy
            header[2] <- 8uy
            header[3] <- 8uy
            BinaryPrimitives.WriteUInt32LittleEndian(Span(header, 4, 4), mtime)
            header[9] <- 3uy
            Array.blit name 0 header 10 name.Length
            Array.append header bytes[start..])

    /// The published file from a package's copy of it: the bytes as they are if they match `expected`,
    /// else with the published gzip header put back (see `DebianSource.PublishedMtimes`) if that matches;
    /// with whether the header was put back. Throws a DataError naming `origin` if neither matches.
    let asPublished
        (source: DebianSource)
        (origin: string)
        (name: string)
        (expected: Checksum)
        (bytes: byte[])
        : byte[] * bool =
        let matches (b: byte[]) =
            String.Equals(
                Checksum.compute expected (ReadOnlySpan b) |> Checksum.hex,
                Checksum.hex expected,
                StringComparison.OrdinalIgnoreCase
            )

        if matches bytes then
            bytes, false
        else
            let restored =
                source.PublishedMtimes
                |> List.tryFind (fun (n, _) -> n = name)
                |> Option.bind (fun (_, mtime) ->
                    withPublishedHeader (Path.GetFileNameWithoutExtension name) mtime bytes)

            match restored with
            | Some r when matches r -> r, true
            | _ ->
                let actual = Checksum.compute expected (ReadOnlySpan bytes) |> Checksum.hex

                let also =
                    match restored with
                    | Some r ->
                        $" ({Checksum.compute expected (ReadOnlySpan r) |> Checksum.hex} with the published gzip header put back)"
                    | None -> ""

                raise (
                    DataError(
                        $"{origin}: checksum mismatch: {Checksum.algorithm expected} is {actual}{also}, expected "
                        + $"{Checksum.hex expected}; the package does not hold the published file, use another source",
                        origin
                    )
                )
