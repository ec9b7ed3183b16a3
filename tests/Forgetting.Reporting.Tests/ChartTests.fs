module Forgetting.Reporting.Tests.ChartTests

open System
open System.Globalization
open System.IO
open System.Threading
open System.Xml.Linq
open Expecto
open Forgetting.Experiments
open Forgetting.Reporting
open Forgetting.Reporting.Tests.Fixtures

let private attribute (name: string) (e: XElement) =
    match e.Attribute(XName.Get name) with
    | null -> None
    | a -> Some a.Value

/// One test per chart kind: both files are written, the SVG is XML with every expected text, the PNG
/// is a PNG of the panel size.
let private files =
    [ for name, panel, expected in everyKind ->
          test $"a {name} is written as SVG and PNG, with its title, axis labels and legend" {
              withTempDir (fun dir ->
                  let stem = Path.Combine(dir, "panel")
                  Save.panel Style.panelSize stem panel
                  let svg = File.ReadAllText(stem + ".svg")
                  let found = texts svg

                  for text in expected do
                      Expect.contains found text $"'{text}' is drawn as text"

                  Expect.equal (XDocument.Parse(svg).Root.Name) (svgNs + "svg") "an SVG document"
                  Expect.equal (pngSize (File.ReadAllBytes(stem + ".png"))) (640, 420) "the panel size"

                  Expect.sequenceEqual
                      (Directory.GetFiles dir |> Array.sort)
                      [| stem + ".png"; stem + ".svg" |]
                      "no temporary left")
          } ]

let private sizes =
    [ for name, panel, _ in everyKind ->
          test $"a {name} takes the requested size" {
              let size = { Width = 500; Height = 360 }
              Expect.equal (pngSize (Render.png size panel)) (500, 360) "PNG"
              let root = XDocument.Parse(Render.svg size panel).Root
              Expect.equal (attribute "width" root, attribute "height" root) (Some "500", Some "360") "SVG"
          } ]

[<Tests>]
let tests =
    testList
        "charts"
        [ yield! files
          yield! sizes

          test "a single series names nothing in a legend" {
              let one =
                  { lineChart with
                      Series = [ lineChart.Series.Head ] }

              Expect.isFalse (texts (Render.svg Style.panelSize (Lines one)) |> Set.contains "random <&>") "no legend"
          }

          test "the sd band is translucent and drawn behind the curves" {
              let svg = Render.svg Style.panelSize (Lines lineChart)
              let paths = elements "path" svg

              let band =
                  paths
                  |> List.tryFindIndex (fun p ->
                      attribute "fill" p |> Option.exists (fun f -> f.ToLowerInvariant() = "#4e79a7")
                      && attribute "fill-opacity" p
                         |> Option.exists (fun o -> Double.Parse(o, CultureInfo.InvariantCulture) < 0.5))

              let curve =
                  paths
                  |> List.tryFindIndex (fun p ->
                      attribute "stroke" p
                      |> Option.exists (fun s -> s.ToLowerInvariant() = "#4e79a7")
                      && attribute "fill" p = Some "none")

              Expect.isSome band "a translucent band in the first series' colour"
              Expect.isSome curve "the first series' curve"
              Expect.isLessThan band.Value curve.Value "the band comes before the curve"
          }

          test "non-finite points are skipped, not drawn" {
              let chart =
                  { lineChart with
                      Title = "gaps"
                      Series =
                          [ { Label = "gaps"
                              X = [| 0.0; 0.25; 0.5; 0.75; 1.0; nan |]
                              Y = [| 0.9; nan; 0.5; infinity; 0.1; 0.3 |]
                              Sd = None } ] }

              let svg = Render.svg Style.panelSize (Lines chart)
              Expect.equal (elements "ellipse" svg).Length 3 "one marker per finite point"

              let curve =
                  elements "path" svg
                  |> List.filter (fun p ->
                      attribute "stroke" p
                      |> Option.exists (fun s -> s.ToLowerInvariant() = "#4e79a7"))
                  |> List.exactlyOne

              let d = (attribute "d" curve).Value
              Expect.equal (d.Split([| 'M'; 'L' |], StringSplitOptions.RemoveEmptyEntries).Length) 3 "three vertices"

              for bad in [ "NaN"; "Infinity"; "∞" ] do
                  Expect.isFalse (svg.Contains bad) $"no {bad} in the SVG"
          }

          test "a heatmap has its colour bar: the scale's label, its ends and its gradient" {
              let svg = Render.svg Style.panelSize (Matrix heatmap)
              let found = texts svg
              Expect.contains found "test accuracy" "the colour bar's label"
              Expect.contains found "0" "the low end of the scale"
              Expect.contains found "1" "the high end of the scale"
              Expect.isNonEmpty (elements "image" svg) "the gradient"
              // No cell is below 0.5, so Viridis' dark purple end can only come from the colour bar.
              let png = Render.png Style.panelSize (Matrix heatmap)
              Expect.isGreaterThan (pixelsNear "#440154" 24 png) 100 "the dark end of the bar"
              Expect.isGreaterThan (pixelsNear "#fde725" 24 png) 100 "the bright end, in bar and cells"
          }

          test "a heatmap writes the finite values in their cells and leaves the others empty" {
              let found = texts (Render.svg Style.panelSize (Matrix heatmap))

              for v in [ "0.98"; "0.88"; "0.78"; "0.68" ] do
                  Expect.contains found v $"{v} in its cell"

              Expect.isFalse (found |> Set.exists (fun t -> t.Contains "NaN")) "no NaN written"
          }

          test "a bar chart draws error bars where given, and negative bars" {
              let chart =
                  { bars with
                      Bars =
                          [ "up", 0.5, Some 0.1
                            "down", -0.3, Some 0.05
                            "bare", 0.2, None
                            "gap", nan, None ] }

              let svg = Render.svg Style.panelSize (Columns chart)
              Expect.isTrue (Set.isSubset (set [ "up"; "down"; "bare"; "gap" ]) (texts svg)) "every category is named"
              // Skia writes the ink colour #222222 in its short form.
              let ink =
                  elements "path" svg
                  |> List.filter (fun p -> attribute "stroke" p = Some "#222" && attribute "fill" p = Some "none")

              Expect.isNonEmpty ink "error bars in dark grey"
          }

          test "a chart whose values are all one is drawn around them" {
              let flat =
                  { scatter with
                      Groups = [ "g", [| 2.0, 5.0; 2.0, 5.0 |] ] }

              let found = texts (Render.svg Style.panelSize (Points flat))
              Expect.contains found "5" "a tick at the value"
              Expect.contains found "2" "a tick at the value"
          }

          test "a title too long for the image is shortened with an ellipsis" {
              let long = String.replicate 40 "very long title "

              let found = texts (Render.svg Style.panelSize (Columns { bars with Title = long }))

              Expect.isTrue
                  (found |> Set.exists (fun t -> t.EndsWith "…" && long.StartsWith(t.TrimEnd '…')))
                  "shortened"
          }

          test "output is deterministic and does not depend on the current culture" {
              let saved = Thread.CurrentThread.CurrentCulture

              let draw () =
                  [ for _, panel, _ in everyKind -> Render.svg Style.panelSize panel ]

              try
                  let invariant = draw ()
                  Thread.CurrentThread.CurrentCulture <- CultureInfo "de-DE"
                  let german = draw ()
                  Thread.CurrentThread.CurrentCulture <- CultureInfo "ar-SA"
                  let arabic = draw ()
                  Expect.equal german invariant "the same under de-DE"
                  Expect.equal arabic invariant "the same under ar-SA"
                  Expect.contains (texts invariant.Head) "0.5" "a decimal point, not a comma"
                  Expect.equal Thread.CurrentThread.CurrentCulture.Name "ar-SA" "the caller's culture is restored"
              finally
                  Thread.CurrentThread.CurrentCulture <- saved
          } ]
