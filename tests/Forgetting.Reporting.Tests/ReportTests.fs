module Forgetting.Reporting.Tests.ReportTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto
open Forgetting.Experiments
open Forgetting.Reporting
open Forgetting.Reporting.Tests.Fixtures

/// Two figures drawn into dir as the CLI draws them: fig-a with every kind of panel, fig-b with one.
let private drawFigures (dir: string) =
    let figure name (panels: Panel list) =
        let figDir = Directory.CreateDirectory(Path.Combine(dir, name)).FullName

        { Name = name
          Caption = $"Caption of {name} <b>&</b>"
          Command = $"forgetting figure --figures {name}"
          Panels =
            [ for k, panel in List.indexed panels ->
                  let stem = Path.Combine(figDir, $"{name}-{k + 1}")
                  Save.panel Style.panelSize stem panel

                  { Title = Charts.title panel
                    Svg = Some(stem + ".svg")
                    Png = Some(stem + ".png") } ] }

    [ figure "fig-a" [ for _, panel, _ in everyKind -> panel ]
      figure "fig-b" [ Lines lineChart ] ]

let private matches (pattern: string) (html: string) =
    [ for m in Regex.Matches(html, pattern) -> m.Groups[1].Value ]

[<Tests>]
let tests =
    testList
        "the HTML report"
        [ test "the report is one page that holds every figure and needs no other file" {
              withTempDir (fun dir ->
                  let figures = drawFigures dir
                  let page = Path.Combine(dir, "report.html")
                  Save.text page (Report.page "Figures <re-run>" figures)
                  // The page must stand alone: without the figure directories it still has everything.
                  for f in figures do
                      Directory.Delete(Path.Combine(dir, f.Name), true)

                  Expect.sequenceEqual (Directory.GetFileSystemEntries dir) [| page |] "one file"
                  let html = File.ReadAllText page
                  let panels = figures |> List.sumBy (fun f -> f.Panels.Length)
                  Expect.equal (html.Split("<svg").Length - 1) panels "every panel's SVG inline"

                  Expect.equal
                      (html.Split("data:image/png;base64,").Length - 1 - 1)
                      panels
                      "every PNG embedded, and the heatmap's colour bar once"

                  Expect.isFalse (html.Contains "<?xml") "no XML declaration inside HTML"

                  let external =
                      matches "(?:src|href)\\s*=\\s*\"([^\"]*)\"" html
                      |> List.filter (fun target -> not (target.StartsWith "data:" || target.StartsWith "#"))

                  Expect.isEmpty external "no link to another file"
                  Expect.isFalse (Regex.IsMatch(html, "url\\((?!#)")) "no url() outside the page"

                  for title in
                      [ "Accuracy &lt;&amp;&gt; fraction"
                        "Final accuracy"
                        "Accuracy after each task" ] do
                      Expect.stringContains html title "panel titles, escaped"

                  Expect.stringContains html "Caption of fig-a &lt;b&gt;&amp;&lt;/b&gt;" "captions, escaped"
                  Expect.stringContains html "<h1>Figures &lt;re-run&gt;</h1>" "the heading"
                  Expect.stringContains html "<pre>forgetting figure --figures fig-b</pre>" "the command")
          }

          test "every id is unique in the page and every reference finds its id" {
              withTempDir (fun dir ->
                  let html = Report.page "Figures" (drawFigures dir)
                  let ids = matches "\\sid=\"([^\"]+)\"" html
                  Expect.isNonEmpty ids "the charts have clip paths"
                  Expect.equal (List.distinct ids) ids "no id twice"
                  let known = set ids

                  let references =
                      matches "url\\(#([^)]+)\\)" html @ matches "href=\"#([^\"]+)\"" html

                  Expect.isNonEmpty references "the charts use their clip paths"

                  for r in references do
                      Expect.isTrue (known.Contains r) $"#{r} is defined in the page")
          }

          test "a panel with only a PNG is embedded as an image, and one with neither file is refused" {
              withTempDir (fun dir ->
                  let stem = Path.Combine(dir, "only")
                  Save.bytes (stem + ".png") (Render.png Style.panelSize (Columns bars))

                  let figure panels =
                      { Name = "f"
                        Caption = ""
                        Command = ""
                        Panels = panels }

                  let html =
                      Report.page
                          "r"
                          [ figure
                                [ { Title = "only a PNG"
                                    Svg = None
                                    Png = Some(stem + ".png") } ] ]

                  Expect.stringContains
                      html
                      "<img alt=\"only a PNG\" src=\"data:image/png;base64,iVBORw0KGgo"
                      "an image"

                  Expect.isFalse (html.Contains "<svg") "no SVG"

                  let message =
                      refusal (fun () ->
                          Report.page
                              "r"
                              [ figure
                                    [ { Title = "nothing"
                                        Svg = None
                                        Png = None } ] ])

                  Expect.stringContains message "panel 'nothing' has neither an SVG nor a PNG" "named")
          } ]
