module Forgetting.Reporting.Tests.ValidationTests

open Expecto
open Forgetting.Experiments
open Forgetting.Reporting
open Forgetting.Reporting.Tests.Fixtures

/// Both renderers refuse the panel with a message holding every expected part.
let private refuses (expected: string list) (panel: Panel) =
    for render in [ Render.svg Style.panelSize >> ignore; Render.png Style.panelSize >> ignore ] do
        let message = refusal (fun () -> render panel)

        for part in expected do
            Expect.stringContains message part "the message names the chart and the problem"

[<Tests>]
let tests =
    let s = lineChart.Series.Head

    testList
        "bad descriptions"
        [ test "a line chart is refused without series, with uneven arrays, a bad sd or nothing finite" {
              refuses [ "line chart 'Accuracy <&> fraction'"; "has no series" ] (Lines { lineChart with Series = [] })

              refuses
                  [ "series 'random <&>' has 11 x values but 2 y values" ]
                  (Lines
                      { lineChart with
                          Series = [ { s with Y = [| 1.0; 2.0 |] } ] })

              refuses
                  [ "11 y values but 1 sd values" ]
                  (Lines
                      { lineChart with
                          Series = [ { s with Sd = Some [| 1.0 |] } ] })

              refuses
                  [ "series 'random <&>' has a negative sd" ]
                  (Lines
                      { lineChart with
                          Series =
                              [ { s with
                                    Sd = Some(Array.create 11 -0.1) } ] })

              refuses
                  [ "no point has both x and y finite" ]
                  (Lines
                      { lineChart with
                          Series = [ { s with Y = Array.create 11 nan } ] })

              refuses
                  [ "y range must be finite with lo < hi" ]
                  (Lines
                      { lineChart with
                          YRange = Some(1.0, 1.0) })

              refuses
                  [ "x range must be finite with lo < hi" ]
                  (Lines
                      { lineChart with
                          XRange = Some(0.0, nan) })
          }

          test "a histogram is refused with bad bins, an empty group, a bad range or nothing finite" {
              let h =
                  { histogram with
                      Title = "h"
                      Groups = [ "a", [| 1.0 |] ]
                      Range = None }

              refuses [ "histogram 'h'"; "bins, got 0" ] (Histograms { h with Bins = 0 })
              refuses [ "histogram 'h'"; "bins, got 10001" ] (Histograms { h with Bins = 10001 })
              refuses [ "group 'a' has no values" ] (Histograms { h with Groups = [ "a", [||] ] })
              refuses [ "has no groups" ] (Histograms { h with Groups = [] })
              refuses [ "binned range must be finite with lo < hi" ] (Histograms { h with Range = Some(2.0, 1.0) })

              refuses
                  [ "no finite values" ]
                  (Histograms
                      { h with
                          Groups = [ "a", [| nan; infinity |] ] })
          }

          test "a scatter plot is refused with an empty group or nothing finite" {
              let p = { scatter with Title = "s" }
              refuses [ "scatter plot 's'"; "group 'g' has no points" ] (Points { p with Groups = [ "g", [||] ] })
              refuses [ "scatter plot 's'"; "has no groups" ] (Points { p with Groups = [] })

              refuses
                  [ "no point has both x and y finite" ]
                  (Points
                      { p with
                          Groups = [ "g", [| nan, 1.0 |] ] })
          }

          test "a bar chart is refused without bars or with a negative error" {
              let b = { bars with Title = "b" }

              refuses
                  [ "bar chart 'b'"; "bar 'x' has a negative error" ]
                  (Columns
                      { b with
                          Bars = [ "x", 1.0, Some -0.1 ] })

              refuses [ "bar chart 'b'"; "has no bars" ] (Columns { b with Bars = [] })
          }

          test "a heatmap is refused when its labels and values disagree, or with a bad colour range" {
              let m = { heatmap with Title = "m" }
              refuses [ "heatmap 'm'"; "at least one row and one column" ] (Matrix { m with Rows = []; Values = [||] })
              refuses [ "heatmap 'm'"; "4 row labels but 3 rows of values" ] (Matrix { m with Values = m.Values[0..2] })

              refuses
                  [ "heatmap 'm'"; "row 2 has 3 values for 4 columns" ]
                  (Matrix
                      { m with
                          Values = m.Values |> Array.mapi (fun i r -> if i = 1 then r[0..2] else r) })

              refuses
                  [ "heatmap 'm'"; "colour range must be finite with lo < hi" ]
                  (Matrix { m with Range = Some(1.0, 0.0) })

              refuses
                  [ "heatmap 'm'"; "no finite values" ]
                  (Matrix
                      { m with
                          Range = None
                          Values = Array.init 4 (fun _ -> Array.create 4 nan) })
          }

          test "a figure checks every panel before drawing any, and needs one" {
              let bad = Columns { bars with Title = "b"; Bars = [] }

              let message =
                  refusal (fun () -> Render.figurePng Style.panelSize [ Lines lineChart; bad ])

              Expect.stringContains message "bar chart 'b'" "the bad panel is named"

              Expect.stringContains
                  (refusal (fun () -> Render.figureSvg Style.panelSize []))
                  "at least one panel"
                  "none"
          }

          test "an image size outside 100 to 20000 pixels is refused" {
              let message =
                  refusal (fun () -> Render.png { Width = 10; Height = 400 } (Lines lineChart))

              Expect.stringContains message "10 × 400" "the size is named"
          } ]
