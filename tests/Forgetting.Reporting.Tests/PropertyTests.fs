module Forgetting.Reporting.Tests.PropertyTests

open System.Xml.Linq
open Expecto
open FsCheck
open FsCheck.FSharp
open Forgetting.Experiments
open Forgetting.Reporting
open Forgetting.Reporting.Tests.Fixtures
open Forgetting.Tests

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
            Lines
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

/// Every kind of chart, drawn from random descriptions that are valid.
let private anyPanel: Gen<Panel> =
    Gen.oneof
        [ lineCharts
          gen {
              let! gs = groups values
              let! title, label = Gen.zip labels labels
              let! bins = Gen.choose (1, 40)
              let! r = range
              let! layout = Gen.elements [ Overlaid; SideBySide ]

              return
                  Histograms
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
                  Points
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
                  Columns
                      { Title = title
                        YLabel = yLabel
                        Bars = List.init n (fun i -> names[i], vs[i], errs[i]) }
          }
          gen {
              let! rows = Gen.choose (1, 25)
              let! columns = Gen.choose (1, 25)
              let! rowLabels = Gen.listOfLength rows labels
              let! columnLabels = Gen.listOfLength columns labels
              let! cells = Gen.arrayOfLength rows (values columns)
              let! title, xLabel, yLabel = Gen.zip3 labels labels labels
              let! valueLabel = labels
              let! r = range

              return
                  Matrix
                      { Title = title
                        XLabel = xLabel
                        YLabel = yLabel
                        Rows = rowLabels
                        Columns = columnLabels
                        Values = cells
                        ValueLabel = valueLabel
                        Range = r }
          } ]

[<Tests>]
let tests =
    testList
        "any chart"
        [ Checks.forAll "every chart is an SVG document that holds no non-finite number" 120 anyPanel (fun panel ->
              let svg = Render.svg Style.panelSize panel
              let root = XDocument.Parse(svg).Root

              root.Name = svgNs + "svg"
              && not (svg.Contains "NaN")
              && not (svg.Contains "Infinity")
              && not (svg.Contains "∞"))

          Checks.forAll "every chart is a PNG of the requested size" 40 anyPanel (fun panel ->
              pngSize (Render.png { Width = 320; Height = 240 } panel) = (320, 240)) ]
