/// One chart of every kind, and what the tests read back from images: SVG text, PNG size and pixels.
module Forgetting.Reporting.Tests.Fixtures

open System
open System.IO
open System.Xml.Linq
open Expecto
open SkiaSharp
open Forgetting.Experiments

let svgNs = XNamespace.Get "http://www.w3.org/2000/svg"

/// Every text element of an SVG, as the XML parser reads it back (unescaped), without the indentation
/// ScottPlot puts around it.
let texts (svg: string) : Set<string> =
    XDocument.Parse(svg).Descendants(svgNs + "text")
    |> Seq.map (fun e -> e.Value.Trim())
    |> Set.ofSeq

/// The elements of an SVG with the given local name.
let elements (name: string) (svg: string) =
    XDocument.Parse(svg).Descendants(svgNs + name) |> Seq.toList

/// Width and height from a PNG's header, after checking its 8-byte signature.
let pngSize (png: byte[]) : int * int =
    let signature = [| 0x89uy; 0x50uy; 0x4Euy; 0x47uy; 0x0Duy; 0x0Auy; 0x1Auy; 0x0Auy |]
    Expect.isGreaterThan png.Length 24 "a PNG has at least its signature and header"
    Expect.sequenceEqual png[0..7] signature "the PNG signature"
    // The IHDR chunk comes first: length, type, then width and height as big-endian 32-bit integers.
    let int32At i =
        (int png[i] <<< 24)
        ||| (int png[i + 1] <<< 16)
        ||| (int png[i + 2] <<< 8)
        ||| int png[i + 3]

    Expect.equal (Text.Encoding.ASCII.GetString(png, 12, 4)) "IHDR" "the header chunk comes first"
    int32At 16, int32At 20

/// How many pixels of a PNG lie within `tolerance` of a colour on each channel.
let pixelsNear (hex: string) (tolerance: int) (png: byte[]) : int =
    use bitmap = SKBitmap.Decode png
    let target = SKColor.Parse hex
    let near (a: byte) (b: byte) = abs (int a - int b) <= tolerance

    Seq.sum
        [ for y in 0 .. bitmap.Height - 1 do
              for x in 0 .. bitmap.Width - 1 do
                  let c = bitmap.GetPixel(x, y)

                  if near c.Red target.Red && near c.Green target.Green && near c.Blue target.Blue then
                      1 ]

/// A directory of its own for one test, deleted after it.
let withTempDir (body: string -> unit) =
    let dir = Directory.CreateTempSubdirectory "forgetting-reporting"

    try
        body dir.FullName
    finally
        dir.Delete true

let fractions = [| for i in 0..10 -> float i / 10.0 |]

/// Two curves, one with a ± sd band, with markup in its labels.
let lineChart: LineChart =
    { Title = "Accuracy <&> fraction"
      XLabel = "fraction removed"
      YLabel = "accuracy"
      Series =
        [ { Label = "random <&>"
            X = fractions
            Y = fractions |> Array.map (fun f -> 0.9 - 0.6 * f)
            Sd = Some(Array.create fractions.Length 0.03) }
          { Label = "MAS"
            X = fractions
            Y = fractions |> Array.map (fun f -> 0.9 - 0.2 * f * f)
            Sd = None } ]
      XRange = None
      YRange = Some(0.0, 1.0) }

let histogram: Histogram =
    { Title = "Neuron importance"
      XLabel = "importance Ω"
      Groups =
        [ "layer 1", Array.init 100 (fun i -> float (i % 37) / 100.0)
          "layer 2", Array.init 100 (fun i -> 0.3 + float (i % 41) / 100.0) ]
      Bins = 20
      Range = Some(0.0, 1.0)
      Layout = Overlaid }

let scatter: Scatter =
    { Title = "Sparsity and accuracy"
      XLabel = "test accuracy"
      YLabel = "mean sparsity"
      Groups =
        [ for g, name in List.indexed [ "sgd"; "l1"; "lateral_inhibition" ] ->
              name, Array.init 10 (fun i -> 0.8 + 0.01 * float (i + g), 0.2 * float g + 0.01 * float i) ]
      XRange = None
      YRange = None }

let bars: Bars =
    { Title = "Final accuracy"
      YLabel = "test accuracy"
      Bars =
        [ "a < b", 0.87, Some 0.02
          "c & d", 0.85, None
          "lateral_inhibition", 0.9, Some 0.01 ] }

/// A lower-triangular accuracy matrix of continual learning; the cells above the diagonal are NaN.
let heatmap: Heatmap =
    { Title = "Accuracy after each task"
      XLabel = "evaluated on task"
      YLabel = "trained through task"
      Rows = [ for t in 1..4 -> $"after {t}" ]
      Columns = [ for t in 1..4 -> $"task {t}" ]
      Values = Array.init 4 (fun i -> Array.init 4 (fun j -> if j > i then nan else 0.98 - 0.1 * float (i - j)))
      ValueLabel = "test accuracy"
      Range = Some(0.0, 1.0) }

/// One panel of every kind with a name for the test, and the texts its image must carry: title, axis
/// labels, legend entries (bar categories, heatmap rows and columns, the colour bar's label).
let everyKind: (string * Panel * string list) list =
    [ "line chart", Lines lineChart, [ "Accuracy <&> fraction"; "fraction removed"; "accuracy"; "random <&>"; "MAS" ]
      "overlaid histogram", Histograms histogram, [ "Neuron importance"; "importance Ω"; "count"; "layer 1"; "layer 2" ]
      "side-by-side histogram",
      Histograms { histogram with Layout = SideBySide },
      [ "Neuron importance"; "importance Ω"; "count"; "layer 1"; "layer 2" ]
      "scatter plot",
      Points scatter,
      [ "Sparsity and accuracy"
        "test accuracy"
        "mean sparsity"
        "sgd"
        "l1"
        "lateral_inhibition" ]
      "bar chart", Columns bars, [ "Final accuracy"; "test accuracy"; "a < b"; "c & d"; "lateral_inhibition" ]
      "heatmap",
      Matrix heatmap,
      [ "Accuracy after each task"
        "evaluated on task"
        "trained through task"
        "after 1"
        "task 4"
        "test accuracy"
        "0.98" ] ]

/// The message of the ArgumentException that `f` raises.
let refusal (f: unit -> 'a) : string =
    try
        f () |> ignore
        failtest "expected an ArgumentException"
    with :? ArgumentException as e ->
        e.Message
