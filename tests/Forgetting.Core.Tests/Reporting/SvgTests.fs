module Forgetting.Tests.Reporting.SvgTests

open System
open System.Globalization
open System.IO
open System.Threading
open System.Xml.Linq
open Expecto
open FsCheck
open FsCheck.FSharp
open Forgetting.Reporting
open Forgetting.Tests

let private svgNs = XNamespace.Get "http://www.w3.org/2000/svg"

let private texts (svg: string) =
    XDocument.Parse(svg).Descendants(svgNs + "text")
    |> Seq.map (fun e -> e.Value)
    |> Set.ofSeq

/// Any string FsCheck makes: null, empty, control characters, lone surrogates, markup.
let private labels =
    Gen.frequency [ 3, ArbMap.generate<string> ArbMap.defaults; 1, Gen.constant "<a & b>\"'" ]

/// Mostly finite values across magnitudes, sometimes NaN or infinite.
let private value =
    let finite =
        Gen.map2 (fun m e -> float m / 100.0 * 10.0 ** float e) (Gen.choose (-1000, 1000)) (Gen.choose (-6, 6))

    Gen.frequency [ 8, finite; 1, Gen.constant nan; 1, Gen.elements [ infinity; -infinity ] ]

/// n values of which the first is finite, so that every chart has something to draw.
let private values n =
    Gen.map2
        (fun first rest -> Array.append [| first |] rest)
        (Gen.choose (-100, 100) |> Gen.map float)
        (Gen.arrayOfLength (n - 1) value)

let private range =
    Gen.optionOf (Gen.map2 (fun lo span -> float lo, float lo + float span) (Gen.choose (-50, 50)) (Gen.choose (1, 50)))

let private lineCharts =
    gen {
        let! series =
            Gen.listOfLength
                4
                (gen {
                    let! n = Gen.choose (1, 40)
                    let! label = labels
                    let! x = values n
                    let! y = values n

                    let! sd =
                        Gen.optionOf (Gen.arrayOfLength n (Gen.choose (0, 10) |> Gen.map (fun i -> float i / 10.0)))

                    return { Label = label; X = x; Y = y; Sd = sd }
                })

        let! k = Gen.choose (1, 4)
        let! title, xLabel, yLabel = Gen.zip3 labels labels labels
        let! xRange, yRange = Gen.zip range range

        return
            { Title = title
              XLabel = xLabel
              YLabel = yLabel
              Series = List.truncate k series
              XRange = xRange
              YRange = yRange }
    }

let private groups (items: int -> Gen<'a[]>) =
    gen {
        let! k = Gen.choose (1, 12)
        return! Gen.listOfLength k (Gen.zip labels (Gen.choose (1, 60) |> Gen.bind items))
    }

/// Every kind of chart, drawn from random descriptions.
let private anyChart: Gen<string> =
    Gen.oneof
        [ lineCharts |> Gen.map Svg.lineChart
          gen {
              let! gs = groups values
              let! title, label = Gen.zip labels labels
              let! bins = Gen.choose (1, 40)
              let! r = range
              let! layout = Gen.elements [ Overlaid; SideBySide ]

              return
                  Svg.histogram
                      { Title = title
                        XLabel = label
                        Groups = gs
                        Bins = bins
                        Range = r
                        Layout = layout }
          }
          gen {
              let! gs = groups (fun n -> Gen.map2 Array.zip (values n) (values n))
              let! title, xLabel, yLabel = Gen.zip3 labels labels labels
              let! xRange, yRange = Gen.zip range range

              return
                  Svg.scatter
                      { Title = title
                        XLabel = xLabel
                        YLabel = yLabel
                        Groups = gs
                        XRange = xRange
                        YRange = yRange }
          }
          gen {
              let! n = Gen.choose (1, 15)
              let! names = Gen.arrayOfLength n labels
              let! vs = Gen.arrayOfLength n value

              let! errs =
                  Gen.arrayOfLength n (Gen.optionOf (Gen.choose (0, 100) |> Gen.map (fun i -> float i / 50.0)))

              let! title, yLabel = Gen.zip labels labels

              return
                  Svg.bars
                      { Title = title
                        YLabel = yLabel
                        Bars = List.init n (fun i -> names[i], vs[i], errs[i]) }
          } ]

let private accuracy =
    { Title = "Accuracy <&> fraction"
      XLabel = "fraction removed"
      YLabel = "accuracy"
      Series =
        [ { Label = "random <&>"
            X = [| 0.0; 0.5; 1.0 |]
            Y = [| 0.9; 0.6; 0.1 |]
            Sd = Some [| 0.01; 0.02; 0.03 |] }
          { Label = "MAS"
            X = [| 0.0; 0.5; 1.0 |]
            Y = [| 0.9; 0.8; 0.2 |]
            Sd = None } ]
      XRange = None
      YRange = Some(0.0, 1.0) }

/// Ranges over many magnitudes whose span is not lost in the rounding of their ends.
let private ranges =
    gen {
        let! e = Gen.choose (-8, 8)
        let! spanE = Gen.choose (e - 5, e + 3)
        let! lo = Gen.choose (-1000, 1000)
        let! span = Gen.frequency [ 1, Gen.constant 0; 9, Gen.choose (1, 1000) ]
        let lo = float lo / 100.0 * 10.0 ** float e
        return lo, lo + float span / 100.0 * 10.0 ** float spanE
    }

/// Values, a number of bins and a range of values.
let private binCases =
    gen {
        let! n = Gen.choose (1, 200)
        let! vs = Gen.arrayOfLength n value
        let! bins = Gen.choose (1, 50)

        let! lo, hi =
            Gen.map2 (fun a b -> float a, float a + float b) (Gen.choose (-100, 100)) (Gen.choose (1, 200))

        return vs, bins, lo, hi
    }

[<Tests>]
let tests =
    testList
        "SVG charts"
        [ Checks.forAll "every chart parses as XML and holds no non-finite number" 100 anyChart (fun svg ->
              let root = XDocument.Parse(svg).Root

              root.Name = svgNs + "svg"
              && not (svg.Contains "NaN")
              && not (svg.Contains "Infinity")
              && not (svg.Contains "∞"))

          test "titles, axis labels and legend entries come back through the XML parser unescaped" {
              let found = texts (Svg.lineChart accuracy)

              for expected in [ "Accuracy <&> fraction"; "fraction removed"; "accuracy"; "random <&>"; "MAS" ] do
                  Expect.contains found expected "a text of the line chart"

              let bars =
                  Svg.bars
                      { Title = "Final"
                        YLabel = "acc"
                        Bars = [ "a < b", 1.0, Some 0.1; "c & d", 2.0, None ] }

              Expect.isTrue
                  (Set.isSubset (set [ "Final"; "acc"; "a < b"; "c & d" ]) (texts bars))
                  "the texts of the bar chart"
          }

          test "a single series has no legend" {
              let one =
                  { accuracy with
                      Series = [ accuracy.Series.Head ] }

              Expect.isFalse (Set.contains "random <&>" (texts (Svg.lineChart one))) "the series' label is not drawn"
          }

          // The culture is set on this test's thread only (and flows only into what it calls), so tests
          // running alongside see none of it.
          Checks.forAll "output is deterministic and does not depend on the current culture" 30 lineCharts (fun chart ->
              let invariant = Svg.lineChart chart
              let saved = Thread.CurrentThread.CurrentCulture

              try
                  Thread.CurrentThread.CurrentCulture <- CultureInfo "de-DE"
                  let german = Svg.lineChart chart
                  Thread.CurrentThread.CurrentCulture <- CultureInfo "ar-SA"
                  invariant = Svg.lineChart chart && invariant = german
              finally
                  Thread.CurrentThread.CurrentCulture <- saved)

          Checks.forAll "nice ticks cover the range with 1, 2, 2.5 or 5 times 10^k steps" 100 ranges (fun (lo, hi) ->
              let ticks = Axis.niceTicks lo hi
              let step = ticks[1] - ticks[0]
              // The measured step can sit a hair below 10^k; 0.01 decades stops floor dropping a decade.
              let mantissa = step / 10.0 ** floor (log10 step + 0.01)
              // Tick values carry rounding error of a few ulps of their magnitude, not just of the step.
              let slack = step * 1e-9 + (ticks |> Array.map abs |> Array.max) * 1e-15

              ticks.Length >= 3
              && ticks.Length <= 8
              && ticks[0] <= lo + slack
              && ticks[ticks.Length - 1] >= hi - slack
              && ticks
                 |> Array.pairwise
                 |> Array.forall (fun (a, b) -> abs (b - a - step) <= slack)
              && [ 1.0; 2.0; 2.5; 5.0 ] |> List.exists (fun m -> abs (mantissa - m) < 1e-6))

          Checks.forAll "tick labels are distinct and never use a comma" 100 ranges (fun (lo, hi) ->
              let labels = Axis.tickLabels (Axis.niceTicks lo hi)

              Array.distinct labels = labels
              && labels |> Array.forall (fun l -> not (l.Contains ',')))

          test "a degenerate range is padded around its value" {
              for v in [ 0.0; 3.0; -2e-7; 1e9 ] do
                  let ticks = Axis.niceTicks v v
                  Expect.isTrue (ticks[0] < v && ticks[ticks.Length - 1] > v) $"{v}: %A{ticks}"

              let flat =
                  Svg.scatter
                      { Title = "flat"
                        XLabel = "x"
                        YLabel = "y"
                        Groups = [ "g", [| 2.0, 5.0; 2.0, 5.0 |] ]
                        XRange = None
                        YRange = None }

              Expect.contains (texts flat) "5.0" "a tick label of the flat axis"
          }

          test "non-finite points are skipped, not drawn" {
              let chart =
                  { accuracy with
                      Series =
                          [ { Label = "gaps"
                              X = [| 0.0; 0.25; 0.5; 0.75; 1.0 |]
                              Y = [| 0.9; nan; 0.5; infinity; 0.1 |]
                              Sd = None } ] }

              let doc = XDocument.Parse(Svg.lineChart chart)

              Expect.equal (doc.Descendants(svgNs + "circle") |> Seq.length) 3 "markers drawn"

              let d =
                  doc.Descendants(svgNs + "path")
                  |> Seq.exactlyOne
                  |> (fun p -> p.Attribute(XName.Get "d").Value)

              Expect.equal (d.Split(' ').Length) 3 "segments of the path"
          }

          Checks.forAll "bin counts add up to the finite values in range" 100 binCases (fun (vs, bins, lo, hi) ->
              let counts = Svg.binCounts (lo, hi) bins vs

              counts.Length = bins
              && Array.sum counts = (vs |> Array.filter (fun v -> v >= lo && v <= hi) |> Array.length))

          test "the histogram's bars are the bin counts" {
              let a = [| 0.0; 0.1; 0.15; 0.5; 0.99; 1.0; nan; 2.0 |]
              let b = [| 0.3; 0.35; 0.3 |]

              for layout in [ Overlaid; SideBySide ] do
                  let svg =
                      Svg.histogram
                          { Title = "importance"
                            XLabel = "importance"
                            Groups = [ "a", a; "b", b ]
                            Bins = 4
                            Range = Some(0.0, 1.0)
                            Layout = layout }

                  let drawn =
                      XDocument.Parse(svg).Descendants(svgNs + "rect")
                      |> Seq.choose (fun r -> r.Attribute(XName.Get "data-count") |> Option.ofObj)
                      |> Seq.map (fun c -> int c.Value)
                      |> Seq.toList

                  let expected =
                      [ a; b ]
                      |> List.collect (fun vs -> Svg.binCounts (0.0, 1.0) 4 vs |> Array.filter ((<) 0) |> Array.toList)

                  Expect.equal expected [ 3; 1; 2; 3 ] $"{layout}: the bin counts"
                  Expect.equal drawn expected $"{layout}: the bars drawn"
          }

          test "bad input is refused with a message that names the chart and the problem" {
              let refuses (expected: string list) (draw: unit -> string) =
                  let e =
                      Expectations.throws<ArgumentException> $"an ArgumentException: %A{expected}" (fun () ->
                          draw () |> ignore)

                  for part in expected do
                      Expect.stringContains e.Message part "the message"

              let s = accuracy.Series.Head

              refuses [ "line chart 'Accuracy <&> fraction'"; "has no series" ] (fun () ->
                  Svg.lineChart { accuracy with Series = [] })

              refuses [ "series 'random <&>' has 3 x values but 2 y values" ] (fun () ->
                  Svg.lineChart
                      { accuracy with
                          Series = [ { s with Y = [| 1.0; 2.0 |] } ] })

              refuses [ "3 y values but 1 sd values" ] (fun () ->
                  Svg.lineChart
                      { accuracy with
                          Series = [ { s with Sd = Some [| 1.0 |] } ] })

              refuses [ "no point has both x and y finite" ] (fun () ->
                  Svg.lineChart
                      { accuracy with
                          Series = [ { s with Y = Array.create 3 nan } ]
                          YRange = None })

              refuses [ "y range must be finite with lo < hi" ] (fun () ->
                  Svg.lineChart
                      { accuracy with
                          YRange = Some(1.0, 1.0) })

              let histogram =
                  { Title = "h"
                    XLabel = "x"
                    Groups = [ "a", [| 1.0 |] ]
                    Bins = 0
                    Range = None
                    Layout = Overlaid }

              refuses [ "histogram 'h'"; "bins, got 0" ] (fun () -> Svg.histogram histogram)

              refuses [ "group 'a' has no values" ] (fun () ->
                  Svg.histogram
                      { histogram with
                          Bins = 3
                          Groups = [ "a", [||] ] })

              refuses [ "scatter plot 's'"; "group 'g' has no points" ] (fun () ->
                  Svg.scatter
                      { Title = "s"
                        XLabel = "x"
                        YLabel = "y"
                        Groups = [ "g", [||] ]
                        XRange = None
                        YRange = None })

              refuses [ "bar chart 'b'"; "bar 'x' has a negative error" ] (fun () ->
                  Svg.bars
                      { Title = "b"
                        YLabel = "y"
                        Bars = [ "x", 1.0, Some -0.1 ] })

              refuses [ "bar chart 'b'"; "has no bars" ] (fun () -> Svg.bars { Title = "b"; YLabel = "y"; Bars = [] })
          }

          test "save replaces the file and leaves no temporary behind" {
              let dir = Directory.CreateTempSubdirectory("svg-save")

              try
                  let path = Path.Combine(dir.FullName, "chart.svg")
                  Svg.save path "old"
                  let svg = Svg.lineChart accuracy
                  Svg.save path svg
                  Expect.equal (File.ReadAllText path) svg "the saved file"
                  Expect.equal (Directory.GetFiles dir.FullName) [| path |] "no temporary file is left"
              finally
                  dir.Delete true
          } ]
