namespace Forgetting.Data

open System
open System.IO
open System.Security.Cryptography

/// A checksum a file must match: the published MD5 of a download, or a SHA-256 recorded by this library.
type Checksum =
    | Md5 of hex: string
    | Sha256 of hex: string

[<RequireQualifiedAccess>]
module Checksum =

    let hex (c: Checksum) =
        match c with
        | Md5 h
        | Sha256 h -> h

    let algorithm (c: Checksum) =
        match c with
        | Md5 _ -> "MD5"
        | Sha256 _ -> "SHA-256"

    /// The same kind of checksum, of `bytes`.
    let compute (kind: Checksum) (bytes: ReadOnlySpan<byte>) : Checksum =
        match kind with
        | Md5 _ -> Md5(Convert.ToHexStringLower(MD5.HashData bytes))
        | Sha256 _ -> Sha256(Convert.ToHexStringLower(SHA256.HashData bytes))

    /// A checksum from its hex text: 32 digits are MD5, 64 are SHA-256.
    let tryParse (text: string) : Checksum option =
        let t = text.Trim().ToLowerInvariant()

        if t |> Seq.forall Uri.IsHexDigit |> not then None
        elif t.Length = 32 then Some(Md5 t)
        elif t.Length = 64 then Some(Sha256 t)
        else None

    /// Throw a DataError unless `bytes` (the contents of `path`) match `expected`.
    let verify (path: string) (expected: Checksum) (bytes: ReadOnlySpan<byte>) =
        let actual = compute expected bytes |> hex

        if not (String.Equals(actual, hex expected, StringComparison.OrdinalIgnoreCase)) then
            raise (
                DataError(
                    $"{path}: checksum mismatch: {algorithm expected} is {actual}, expected {hex expected}; "
                    + "the file is corrupt or is not the one expected",
                    path
                )
            )

/// File helpers of the data cache.
[<RequireQualifiedAccess>]
module Files =

    /// SHA-256 of bytes, as lower-case hex.
    let sha256 (bytes: ReadOnlySpan<byte>) =
        Convert.ToHexStringLower(SHA256.HashData bytes)

    /// Write a file so that it is either absent or complete: the contents go to a temporary name in the
    /// same directory (so that the rename stays on one file system and is atomic), then replace `path`.
    let writeAtomically (path: string) (write: Stream -> unit) =
        let full = Path.GetFullPath path
        let dir = Path.GetDirectoryName full
        Directory.CreateDirectory dir |> ignore

        let temp = Path.Combine(dir, $".{Path.GetFileName full}.{Guid.NewGuid():N}.partial")

        try
            do
                use stream =
                    new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 <<< 16)

                write stream
                stream.Flush true

            File.Move(temp, full, true)
        with _ ->
            File.Delete temp
            reraise ()

    /// Write bytes atomically (see `writeAtomically`).
    let writeAllBytesAtomically (path: string) (bytes: byte[]) =
        writeAtomically path (fun s -> s.Write(bytes, 0, bytes.Length))

    /// Refuse, with a DataError naming it, a file of length 0: an empty file holds nothing to read,
    /// and a pipe or a device (which report length 0) would block the read or never end it.
    let requireContents (path: string) =
        let info = FileInfo path

        if info.Exists && info.Length = 0L then
            raise (DataError($"{path}: empty, or not a regular file (a pipe or a device is not read)", path))

    /// Read a whole file, turning a missing, empty (or non-regular) or unreadable file into a DataError
    /// that names it.
    let readAllBytes (path: string) : byte[] =
        requireContents path

        try
            File.ReadAllBytes path
        with
        | :? FileNotFoundException
        | :? DirectoryNotFoundException -> raise (DataError($"{path}: no such file", path))
        | :? IOException
        | :? UnauthorizedAccessException as e -> raise (DataError($"{path}: cannot be read: {e.Message}", path))
