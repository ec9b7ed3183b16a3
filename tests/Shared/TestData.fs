/// Generated data files and a loopback HTTP server, shared by the Core and CLI tests. The IDX writer
/// here is written from the format's description, independently of the library's, so that it can serve
/// as an oracle for the reader.
module Forgetting.Tests.TestData

open System
open System.Collections.Concurrent
open System.IO
open System.IO.Compression
open System.Net
open System.Net.Sockets
open System.Security.Cryptography
open System.Text
open System.Threading

/// A fresh temporary directory for one test's files.
let tempDir () =
    let d =
        Path.Combine(Path.GetTempPath(), "forgetting-tests", Guid.NewGuid().ToString "N")

    Directory.CreateDirectory d |> ignore
    d

let private bigEndian (v: int) =
    [| byte (v >>> 24); byte (v >>> 16); byte (v >>> 8); byte v |]

/// An IDX image file: magic 0x00000803, count, rows, columns, then the pixel bytes.
let idxImages (rows: int) (columns: int) (pixels: byte[]) : byte[] =
    Array.concat
        [ bigEndian 0x803
          bigEndian (pixels.Length / (rows * columns))
          bigEndian rows
          bigEndian columns
          pixels ]

/// An IDX label file: magic 0x00000801, count, then the labels.
let idxLabels (labels: byte[]) : byte[] =
    Array.concat [ bigEndian 0x801; bigEndian labels.Length; labels ]

let gzip (bytes: byte[]) : byte[] =
    use out = new MemoryStream()

    do
        use z = new GZipStream(out, CompressionLevel.Fastest, true)
        z.Write(bytes, 0, bytes.Length)

    out.ToArray()

let md5 (bytes: byte[]) =
    Convert.ToHexStringLower(MD5.HashData bytes)

let sha256 (bytes: byte[]) =
    Convert.ToHexStringLower(SHA256.HashData bytes)

/// Pixels and labels of `count` small images drawn from a seed; labels cycle through the classes so that
/// every class is present.
let images (seed: int) (count: int) (rows: int) (columns: int) (classes: int) : byte[] * byte[] =
    let rng = Random seed
    let pixels = Array.zeroCreate (count * rows * columns)
    rng.NextBytes pixels
    pixels, Array.init count (fun i -> byte (i % classes))

/// The four published file names with gzip IDX contents: a train set of `train` and a test set of `test`
/// 28×28 images.
let publishedFiles (seed: int) (train: int) (test: int) : Map<string, byte[]> =
    let trainPixels, trainLabels = images seed train 28 28 10
    let testPixels, testLabels = images (seed + 1) test 28 28 10

    Map.ofList
        [ "train-images-idx3-ubyte.gz", gzip (idxImages 28 28 trainPixels)
          "train-labels-idx1-ubyte.gz", gzip (idxLabels trainLabels)
          "t10k-images-idx3-ubyte.gz", gzip (idxImages 28 28 testPixels)
          "t10k-labels-idx1-ubyte.gz", gzip (idxLabels testLabels) ]

/// A checksum file in md5sum format.
let md5sums (files: Map<string, byte[]>) =
    files
    |> Map.toList
    |> List.map (fun (name, bytes) -> $"{md5 bytes}  {name}")
    |> String.concat "\n"

/// A minimal HTTP/1.1 server on 127.0.0.1 (an ephemeral port) that serves the given files by name and
/// answers 404 to anything else; it records the paths asked for.
type LoopbackServer(files: Map<string, byte[]>) =
    let listener = new TcpListener(IPAddress.Loopback, 0)
    do listener.Start()
    let port = (listener.LocalEndpoint :?> IPEndPoint).Port
    let stop = new CancellationTokenSource()
    let requests = ConcurrentQueue<string>()

    let serve (client: TcpClient) =
        task {
            use client = client
            use stream = client.GetStream()
            use reader = new StreamReader(stream, Encoding.ASCII, false, 1024, true)
            let! requestLine = reader.ReadLineAsync()
            let mutable header = "-"

            while not (String.IsNullOrEmpty header) do
                let! h = reader.ReadLineAsync()
                header <- h

            let path =
                match requestLine with
                | null -> "/"
                | l -> (l.Split ' ')[1]

            requests.Enqueue path

            let status, body =
                match files.TryFind(path.TrimStart '/') with
                | Some b -> "200 OK", b
                | None -> "404 Not Found", [||]

            let head =
                Encoding.ASCII.GetBytes(
                    $"HTTP/1.1 {status}\r\nContent-Length: {body.Length}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                )

            do! stream.WriteAsync(head, 0, head.Length)
            do! stream.WriteAsync(body, 0, body.Length)
        }

    let accepting =
        task {
            try
                while not stop.IsCancellationRequested do
                    let! client = listener.AcceptTcpClientAsync(stop.Token)
                    serve client |> ignore
            with _ ->
                ()
        }

    /// The server's base URL, ending in '/'.
    member _.BaseUrl = $"http://127.0.0.1:{port}/"

    /// The paths requested so far.
    member _.Requests = List.ofSeq requests

    interface IDisposable with
        member _.Dispose() =
            stop.Cancel()
            listener.Stop()
            accepting.Wait(TimeSpan.FromSeconds 5.0) |> ignore
