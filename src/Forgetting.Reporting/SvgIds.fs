namespace Forgetting.Reporting

open System.Collections.Generic
open System.Text.RegularExpressions
open System.Xml.Linq

/// The ids of an SVG document and the references to them (url(#id), href="#id"), renamed together.
[<RequireQualifiedAccess>]
module internal SvgIds =

    let private references = Regex(@"url\(#([^)]+)\)", RegexOptions.Compiled)

    /// The document parsed with its whitespace, each id renamed to `name k id` (k counts the ids from 1
    /// in document order) and every reference to it with it.
    let rename (name: int -> string -> string) (svg: string) : XDocument =
        let doc = XDocument.Parse(svg, LoadOptions.PreserveWhitespace)
        let renamed = Dictionary<string, string>()

        for e in doc.Descendants() do
            match e.Attribute(XName.Get "id") with
            | null -> ()
            | id ->
                renamed[id.Value] <- name (renamed.Count + 1) id.Value
                id.Value <- renamed[id.Value]

        let target (id: string) =
            match renamed.TryGetValue id with
            | true, name -> name
            | _ -> id

        for e in doc.Descendants() do
            for a in e.Attributes() do
                if a.Name.LocalName = "href" && a.Value.StartsWith "#" then
                    a.Value <- "#" + target (a.Value.Substring 1)
                elif a.Value.Contains "url(#" then
                    a.Value <- references.Replace(a.Value, fun m -> $"url(#{target m.Groups[1].Value})")

        doc

    /// Skia numbers the clip paths and images of every SVG it writes from one counter for the whole process,
    /// so the same chart drawn twice would differ; numbered from 1 in document order, it does not.
    let normalise (svg: string) : string =
        let doc = rename (fun k id -> Regex.Match(id, "^[A-Za-z]*").Value + string k) svg

        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        + doc.Root.ToString(SaveOptions.DisableFormatting)
        + "\n"
