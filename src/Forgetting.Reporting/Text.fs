namespace Forgetting.Reporting

open System
open System.Text
open System.Xml
open SkiaSharp

/// Labels made safe to draw: any string a caller passes must give a well-formed SVG of readable size.
[<RequireQualifiedAccess>]
module Text =

    /// The string with the characters XML 1.0 cannot hold (control characters, lone surrogates) as U+FFFD,
    /// and null as empty: ScottPlot's SVG writer copies text as it is, and one such character would make the
    /// whole file unreadable.
    let clean (s: string) : string =
        let s = if isNull s then "" else s
        let sb = StringBuilder(s.Length)
        let mutable i = 0

        while i < s.Length do
            if i + 1 < s.Length && XmlConvert.IsXmlSurrogatePair(s[i + 1], s[i]) then
                sb.Append(s, i, 2) |> ignore
                i <- i + 2
            else
                sb.Append(if XmlConvert.IsXmlChar s[i] then s[i] else '\uFFFD') |> ignore
                i <- i + 1

        sb.ToString()

    /// The width of text in pixels, in the typeface at the size.
    let width (typeface: SKTypeface) (size: float32) (text: string) : float32 =
        use font = new SKFont(typeface, size)
        font.MeasureText text

    /// A font size (between minSize and size) and the cleaned text at which it fits maxWidth pixels: the text
    /// shrinks first, then loses its end to an ellipsis. ScottPlot draws a label whole, however long, so a long
    /// title would otherwise run off the image.
    let fit (typeface: SKTypeface) (maxWidth: float32) (size: float32) (minSize: float32) (text: string) =
        let text = clean text
        let natural = width typeface size text

        if natural <= maxWidth then
            size, text
        else
            let shrunk = max minSize (size * maxWidth / natural)

            if width typeface shrunk text <= maxWidth then
                shrunk, text
            else
                // Cut whole text elements, so that a surrogate pair or a combining mark is never split.
                let info = Globalization.StringInfo text

                let cut k =
                    (if k = 0 then "" else info.SubstringByTextElements(0, k)) + "…"

                let k =
                    seq { info.LengthInTextElements - 1 .. -1 .. 0 }
                    |> Seq.tryFind (fun k -> width typeface shrunk (cut k) <= maxWidth)
                    |> Option.defaultValue 0

                shrunk, cut k
