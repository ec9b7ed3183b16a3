namespace Forgetting.Reporting

open System
open System.Globalization
open System.IO
open System.Text
open ScottPlot
open SkiaSharp
open Forgetting.Experiments

/// Panels as images, headless: SVG text and PNG bytes, one panel or a figure's panels on a grid.
/// Bad descriptions raise ArgumentException naming the chart (Charts.validate).
[<RequireQualifiedAccess>]
module Render =

    /// ScottPlot formats tick labels in the current culture; a figure must read the same on every machine
    /// ("0.5", never "0,5"), so drawing runs in the invariant culture.
    let private invariant (draw: unit -> 'a) : 'a =
        let saved = CultureInfo.CurrentCulture
        CultureInfo.CurrentCulture <- CultureInfo.InvariantCulture

        try
            draw ()
        finally
            CultureInfo.CurrentCulture <- saved

    let private check (size: ImageSize) =
        if
            size.Width < 100
            || size.Height < 100
            || size.Width > 20000
            || size.Height > 20000
        then
            invalidArg (nameof size) $"an image must be 100 to 20000 pixels each way, got {size.Width} × {size.Height}"

    /// The panel as a standalone SVG document: text stays text (titles, labels, legend entries).
    let svg (size: ImageSize) (panel: Panel) : string =
        check size

        invariant (fun () ->
            use plot = Draw.panel size panel
            SvgIds.normalise (plot.GetSvgXml(size.Width, size.Height)))

    /// The panel as a PNG image.
    let png (size: ImageSize) (panel: Panel) : byte[] =
        check size

        invariant (fun () ->
            use plot = Draw.panel size panel
            plot.GetImageBytes(size.Width, size.Height, ImageFormat.Png))

    /// Columns and rows of the grid a figure's panels take: as square as it gets, filled row by row.
    let grid (panels: int) : int * int =
        let columns = int (ceil (sqrt (float (max 1 panels))))
        columns, (max 1 panels + columns - 1) / columns

    /// Draw every panel into its cell of the grid on one canvas, on white.
    let private drawGrid (size: ImageSize) (panels: Panel list) (canvas: SKCanvas) =
        let columns, _ = grid panels.Length
        canvas.Clear SKColors.White

        panels
        |> List.iteri (fun k panel ->
            use plot = Draw.panel size panel
            // A plot clears the whole canvas it is drawn on unless told not to.
            plot.RenderManager.ClearCanvasBeforeEachRender <- false
            // A plot's first render draws it twice, to settle its layout: on an SVG canvas both copies would
            // stay, so the first goes to a throwaway bitmap.
            (plot.GetImage(size.Width, size.Height)).Dispose()
            let left = float32 (k % columns * size.Width)
            let top = float32 (k / columns * size.Height)
            plot.Render(canvas, PixelRect(left, left + float32 size.Width, top + float32 size.Height, top)))

    let private figureSize (size: ImageSize) (panels: Panel list) =
        if panels.IsEmpty then
            invalidArg (nameof panels) "a figure needs at least one panel"

        check size
        // Every panel is checked before any is drawn.
        List.iter Charts.validate panels
        let columns, rows = grid panels.Length
        columns * size.Width, rows * size.Height

    /// A figure's panels on one SVG, each `size` large, on the grid of `grid`.
    let figureSvg (size: ImageSize) (panels: Panel list) : string =
        let width, height = figureSize size panels

        invariant (fun () ->
            use stream = new MemoryStream()

            do
                // The SVG is complete only once the canvas is disposed.
                use canvas =
                    SKSvgCanvas.Create(SKRect(0.0f, 0.0f, float32 width, float32 height), stream)

                drawGrid size panels canvas

            SvgIds.normalise (Encoding.UTF8.GetString(stream.ToArray())))

    /// A figure's panels on one PNG, each `size` large, on the grid of `grid`.
    let figurePng (size: ImageSize) (panels: Panel list) : byte[] =
        let width, height = figureSize size panels

        invariant (fun () ->
            use surface = SKSurface.Create(SKImageInfo(width, height))
            drawGrid size panels surface.Canvas
            use image = surface.Snapshot()
            use data = image.Encode(SKEncodedImageFormat.Png, 100)
            data.ToArray())
