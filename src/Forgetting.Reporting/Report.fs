namespace Forgetting.Reporting

open System
open System.Collections.Generic
open System.IO
open System.Net
open System.Text
open System.Text.RegularExpressions
open System.Xml.Linq

/// One panel of a figure in a report: its title and the image files drawn for it (at least one of them).
type ReportPanel =
    { Title: string
      Svg: string option
      Png: string option }

/// One figure in a report: what it shows, the command that made it, its panels.
type ReportFigure =
    { Name: string
      Caption: string
      Command: string
      Panels: ReportPanel list }

/// Figures gathered into one self-contained HTML page: every SVG inline, every PNG a data URI, so that the
/// page can be mailed or archived alone.
[<RequireQualifiedAccess>]
module Report =

    let private enc (s: string) = WebUtility.HtmlEncode(Text.clean s)

    /// An SVG document as an element to inline in HTML, its ids prefixed. The XML declaration may not stand
    /// inside HTML, and ids are global to a page: every chart numbers its clip paths from 1, so two charts'
    /// clip paths would otherwise cut each other's data.
    let private inlineSvg (prefix: string) (svg: string) : string =
        let doc = SvgIds.rename (fun _ id -> $"{prefix}-{id}") svg
        doc.Root.ToString(SaveOptions.DisableFormatting)

    let private dataUri (path: string) =
        "data:image/png;base64," + Convert.ToBase64String(File.ReadAllBytes path)

    /// Letters, digits, '-' and '_' of a file's stem, for ids.
    let private idOf (path: string) =
        Regex.Replace(Path.GetFileNameWithoutExtension path, "[^A-Za-z0-9_-]", "_")

    let private style =
        String.concat
            ""
            [ "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;max-width:1360px;margin:2em auto;color:#222}"
              "figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}"
              "figcaption{font-size:.9em;color:#444}"
              "figcaption a{margin-left:.6em;color:#4e79a7}"
              "pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}" ]

    /// The page: a heading, then per figure its name, caption and command, and each panel's SVG inline
    /// (with its PNG as a download) or, without an SVG, its PNG. Raises ArgumentException for a panel
    /// with neither file, and the file system's exceptions for a file that cannot be read.
    let page (heading: string) (figures: ReportFigure list) : string =
        let html = StringBuilder()
        let used = HashSet<string>()

        // A prefix no other panel of the page has.
        let unique (stem: string) =
            Seq.initInfinite (fun k -> if k = 0 then stem else $"{stem}-{k + 1}")
            |> Seq.find used.Add

        let add (s: string) = html.Append(s) |> ignore

        add "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        add $"<title>{enc heading}</title><style>{style}</style></head><body>\n"
        add $"<h1>{enc heading}</h1>\n"

        for f in figures do
            add $"<section><h2>{enc f.Name}</h2>\n<p>{enc f.Caption}</p>\n<pre>{enc f.Command}</pre>\n"

            for p in f.Panels do
                let title = enc p.Title

                match p.Svg, p.Png with
                | Some svg, png ->
                    let body = inlineSvg (unique (idOf svg)) (File.ReadAllText svg)

                    let download =
                        match png with
                        | Some png -> $"<a download=\"{enc (Path.GetFileName png)}\" href=\"{dataUri png}\">PNG</a>"
                        | None -> ""

                    add $"<figure>{body}<figcaption>{title}{download}</figcaption></figure>\n"
                | None, Some png ->
                    add
                        $"<figure><img alt=\"{title}\" src=\"{dataUri png}\"><figcaption>{title}</figcaption></figure>\n"
                | None, None ->
                    invalidArg (nameof figures) $"figure {f.Name}: panel '{p.Title}' has neither an SVG nor a PNG file"

            add "</section>\n"

        add "</body></html>\n"
        html.ToString()
