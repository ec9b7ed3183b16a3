namespace Forgetting.Reporting

open System
open ScottPlot

/// The size of an image, in pixels.
type ImageSize = { Width: int; Height: int }

/// The look every chart shares: size, colours, fonts, and the frame of title, axis labels and legend.
[<RequireQualifiedAccess>]
module Style =

    /// 640 × 420: two charts side by side fit a page of the report and a printed page.
    let panelSize = { Width = 640; Height = 420 }

    /// Tableau 10, designed to stay distinguishable under the common colour-vision deficiencies;
    /// the i-th series or group takes palette[i % 10].
    let palette: string list =
        List.ofArray ("#4e79a7 #f28e2b #e15759 #76b7b2 #59a14f #edc948 #b07aa1 #ff9da7 #9c755f #bab0ac".Split ' ')

    /// The i-th colour of the palette.
    let colour (i: int) : Color =
        Color.FromHex palette[i % palette.Length]

    /// Dark grey for text, axes and error bars: softer than black, still high in contrast on white.
    let ink = Color.FromHex "#222222"

    /// Pixel sizes of the text.
    let titleSize, labelSize, tickSize, legendSize = 16.0f, 14.0f, 12.0f, 12.0f

    /// The first sans-serif family the system has. ScottPlot's own guess here was DejaVu Serif; DejaVu Sans
    /// ships with Debian and covers the Greek letters and symbols of the labels (Ω, ±, λ).
    let fontFamily: Lazy<string> =
        lazy
            ([ "DejaVu Sans"; "Liberation Sans"; "Arial"; "Helvetica"; "Noto Sans" ]
             |> List.tryFind (fun name ->
                 let face = Fonts.GetTypeface(name, false, false)
                 not (isNull face) && face.FamilyName = name)
             |> Option.defaultValue Fonts.Default)

    /// The regular or bold typeface of the family, to measure text with.
    let typeface (bold: bool) =
        Fonts.GetTypeface(fontFamily.Value, bold, false)

    /// A new plot with the shared look, its title and axis labels fitted to the image width. The caller
    /// disposes of it.
    let plot (size: ImageSize) (title: string) (xLabel: string) (yLabel: string) : Plot =
        let p = new Plot()
        p.Font.Set fontFamily.Value |> ignore
        let width = float32 size.Width
        let height = float32 size.Height

        let titleSize, title =
            Text.fit (typeface true) (0.95f * width) titleSize 10.0f title

        p.Title(title, titleSize)
        p.Axes.Title.Label.Bold <- true
        p.Axes.Title.Label.ForeColor <- ink
        // The axes take about 60 pixels of each dimension; the labels run along what is left.
        let xSize, xLabel =
            Text.fit (typeface false) (width - 120.0f) labelSize 10.0f xLabel

        let ySize, yLabel =
            Text.fit (typeface false) (height - 100.0f) labelSize 10.0f yLabel

        p.XLabel(xLabel, xSize)
        p.YLabel(yLabel, ySize)

        for axis in [ p.Axes.Bottom :> IAxis; p.Axes.Left ] do
            axis.Label.Bold <- false
            axis.Label.ForeColor <- ink
            axis.TickLabelStyle.FontSize <- tickSize
            axis.TickLabelStyle.ForeColor <- ink
            axis.FrameLineStyle.Color <- Color.FromHex "#444444"
            axis.MajorTickStyle.Color <- Color.FromHex "#444444"
            axis.MinorTickStyle.Color <- Color.FromHex "#888888"

        p.Grid.MajorLineColor <- Color.FromHex "#e4e4e4"
        p.HideLegend() |> ignore
        p

    /// Legend entries fitted to a third of the image width, so that the legend leaves the data most of it.
    let legendLabel (size: ImageSize) (label: string) : string =
        snd (Text.fit (typeface false) (float32 size.Width / 3.0f) legendSize legendSize label)

    /// A legend to the right of the data area, outside it, where it never covers data; only with two entries
    /// or more, since one entry names nothing the title does not.
    let legend (p: Plot) (entries: int) : unit =
        if entries > 1 then
            p.ShowLegend(Edge.Bottom) |> ignore
            p.Legend.FontSize <- legendSize
            p.Legend.FontName <- fontFamily.Value
            p.Legend.FontColor <- ink
            p.Legend.OutlineColor <- Color.FromHex "#cccccc"
            p.Legend.ShadowColor <- Colors.Transparent
