module Forgetting.Reporting.Tests.FigureTests

open System.IO
open System.Xml.Linq
open Expecto
open Forgetting.Experiments
open Forgetting.Reporting
open Forgetting.Reporting.Tests.Fixtures

let private panels = [ for _, panel, _ in everyKind -> panel ]

[<Tests>]
let tests =
    testList
        "figures of several panels"
        [ test "the grid is as square as it gets" {
              let grids = [ for n in [ 1; 2; 3; 4; 5; 6; 7; 10 ] -> Render.grid n ]
              Expect.equal grids [ 1, 1; 2, 1; 2, 2; 2, 2; 3, 2; 3, 2; 3, 3; 4, 3 ] "columns, rows"
          }

          test "a combined SVG holds every panel's title, at the grid's size" {
              let svg = Render.figureSvg Style.panelSize panels
              let root = XDocument.Parse(svg).Root
              // Six panels: three columns, two rows.
              Expect.equal
                  (root.Attribute(XName.Get "width").Value, root.Attribute(XName.Get "height").Value)
                  ("1920", "840")
                  "size"

              let found =
                  XDocument.Parse(svg).Descendants(svgNs + "text")
                  |> Seq.map (fun e -> e.Value.Trim())
                  |> Seq.toList

              // Once per panel (two histograms share one title): a plot's first render draws it twice, and
              // both copies must not reach the SVG.
              for title, count in panels |> List.countBy Charts.title do
                  Expect.equal (found |> List.filter ((=) title) |> List.length) count $"'{title}' once per panel"
          }

          test "a combined PNG is the grid of panels, on white where a cell is free" {
              let png = Render.figurePng { Width = 300; Height = 200 } (List.truncate 3 panels)
              Expect.equal (pngSize png) (600, 400) "two by two"
              // The free fourth cell, 300 × 200, is white.
              Expect.isGreaterThan (pixelsNear "#ffffff" 0 png) (300 * 200) "the free cell is white"
          }

          test "saving writes the panel's files whole, replacing old ones, and leaves no temporary behind" {
              withTempDir (fun dir ->
                  let stem = Path.Combine(dir, "fig")
                  File.WriteAllText(stem + ".svg", "old")
                  Save.figure Style.panelSize stem panels
                  Expect.equal (File.ReadAllText(stem + ".svg")) (Render.figureSvg Style.panelSize panels) "replaced"
                  Expect.equal (pngSize (File.ReadAllBytes(stem + ".png"))) (1920, 840) "the PNG"

                  Expect.sequenceEqual
                      (Directory.GetFiles dir |> Array.sort)
                      [| stem + ".png"; stem + ".svg" |]
                      "only these")
          }

          test "a failed save leaves the old file as it was" {
              withTempDir (fun dir ->
                  let stem = Path.Combine(dir, "bad")
                  File.WriteAllText(stem + ".svg", "old")
                  let bad = Columns { bars with Bars = [] }
                  refusal (fun () -> Save.panel Style.panelSize stem bad) |> ignore
                  Expect.equal (File.ReadAllText(stem + ".svg")) "old" "untouched"
                  Expect.sequenceEqual (Directory.GetFiles dir) [| stem + ".svg" |] "no temporary")
          } ]
