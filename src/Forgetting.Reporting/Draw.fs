namespace Forgetting.Reporting

open System
open System.Globalization
open ScottPlot
open Forgetting.Experiments

/// Chart descriptions as ScottPlot plots. Each function checks the description first (Charts.validate:
/// ArgumentException naming the chart), skips non-finite values, and returns a new plot for an image of the
/// given size; the caller disposes of it.
[<RequireQualifiedAccess>]
module Draw =

    let private setRange (set: float * float -> unit) (range: (float * float) option) = range |> Option.iter set

    /// Markers a few pixels wide for a handful of points, shrinking as the points grow many so that clouds
    /// (a t-SNE map of thousands) stay readable.
    let private markerSize (points: int) =
        if points > 2000 then 3.0f
        elif points > 300 then 4.5f
        else 7.0f

    /// A line chart: one curve per series in the palette's colours, a translucent ± Sd band behind it where
    /// given, markers when a series has at most 30 points, and a legend when there is more than one series.
    let line (size: ImageSize) (chart: LineChart) : Plot =
        Charts.validate (Lines chart)
        let p = Style.plot size chart.Title chart.XLabel chart.YLabel

        let finite =
            chart.Series
            |> List.map (fun s ->
                [| for i in 0 .. s.X.Length - 1 do
                       if Double.IsFinite s.X[i] && Double.IsFinite s.Y[i] then
                           let sd = s.Sd |> Option.map (fun sd -> sd[i]) |> Option.filter Double.IsFinite
                           s.X[i], s.Y[i], sd |])

        // Bands first, so that no band veils another series' line.
        finite
        |> List.iteri (fun i points ->
            let band =
                points |> Array.choose (fun (x, y, sd) -> sd |> Option.map (fun sd -> x, y, sd))

            if band.Length > 1 then
                let xs = band |> Array.map (fun (x, _, _) -> x)
                let lower = band |> Array.map (fun (_, y, sd) -> y - sd)
                let upper = band |> Array.map (fun (_, y, sd) -> y + sd)
                let fill = p.Add.FillY(xs, lower, upper)
                fill.FillColor <- (Style.colour i).WithAlpha 0.2
                fill.LineWidth <- 0.0f)

        List.zip chart.Series finite
        |> List.iteri (fun i (s, points) ->
            let xs = points |> Array.map (fun (x, _, _) -> x)
            let ys = points |> Array.map (fun (_, y, _) -> y)
            let curve = p.Add.Scatter(xs, ys, Style.colour i)
            curve.LineWidth <- 2.0f
            curve.MarkerSize <- if points.Length <= 30 then 6.0f else 0.0f
            curve.LegendText <- Style.legendLabel size s.Label)

        setRange p.Axes.SetLimitsX chart.XRange
        setRange p.Axes.SetLimitsY chart.YRange

        // Epochs, layers and classes are whole numbers: ticks between them (epoch 2.5) would mean nothing.
        let xs = finite |> Seq.collect (Seq.map (fun (x, _, _) -> x)) |> Seq.toArray

        if
            chart.XRange.IsNone
            && xs |> Array.forall (fun x -> x = round x)
            && Array.max xs - Array.min xs <= 20.0
        then
            p.Axes.Bottom.TickGenerator <- TickGenerators.NumericFixedInterval(1.0)

        Style.legend p chart.Series.Length
        p

    /// A histogram with the count on the y axis: one colour per group, translucent and overlaid, or side by
    /// side within each bin. Bins are equal-width over the chart's range, else over round ends around the
    /// finite values; empty bins draw nothing.
    let histogram (size: ImageSize) (chart: Histogram) : Plot =
        Charts.validate (Histograms chart)
        let p = Style.plot size chart.Title chart.XLabel "count"

        let lo, hi =
            match chart.Range with
            | Some range -> range
            | None ->
                let values =
                    chart.Groups |> Seq.collect snd |> Seq.filter Double.IsFinite |> Seq.toArray

                Bins.niceEnds (Array.min values) (Array.max values)

        let counts = chart.Groups |> List.map (snd >> Bins.counts (lo, hi) chart.Bins)
        let groups = counts.Length
        let binWidth = (hi - lo) / float chart.Bins
        // One group is drawn nearly opaque; overlaid groups must let the others show through.
        let alpha = if groups = 1 then 0.8 else 0.45

        List.zip chart.Groups counts
        |> List.iteri (fun g ((label, _), counts) ->
            let colour = Style.colour g

            let bars =
                [| for b in 0 .. chart.Bins - 1 do
                       if counts[b] > 0 then
                           let position, width =
                               match chart.Layout with
                               | Overlaid -> lo + (float b + 0.5) * binWidth, binWidth
                               | SideBySide ->
                                   let w = binWidth * 0.9 / float groups
                                   lo + float b * binWidth + binWidth * 0.05 + (float g + 0.5) * w, w

                           Bar(
                               Position = position,
                               Value = float counts[b],
                               Size = width,
                               FillColor = colour.WithAlpha alpha,
                               LineColor = colour,
                               LineWidth = 0.8f
                           ) |]

            let plot = p.Add.Bars bars
            plot.LegendText <- Style.legendLabel size label
            // Adding bars paints them in the plot's next colour; the group's colour goes back on afterwards.
            plot.Color <- colour.WithAlpha alpha

            for bar in plot.Bars do
                bar.LineColor <- colour)

        let most = counts |> Seq.collect id |> Seq.fold max 1
        p.Axes.SetLimits(lo, hi, 0.0, float most * 1.08)

        // Counts are whole: a handful of them would otherwise get ticks at 0.2, 0.4, …
        if most <= 10 then
            p.Axes.Left.TickGenerator <- TickGenerators.NumericFixedInterval(1.0)

        Style.legend p groups
        p

    /// A scatter plot: one colour per group (ten distinct colours, then they repeat), translucent markers
    /// that shrink as the points grow many.
    let scatter (size: ImageSize) (chart: Scatter) : Plot =
        Charts.validate (Points chart)
        let p = Style.plot size chart.Title chart.XLabel chart.YLabel

        let finite =
            chart.Groups
            |> List.map (fun (label, points) ->
                label, points |> Array.filter (fun (x, y) -> Double.IsFinite x && Double.IsFinite y))

        let total = finite |> List.sumBy (snd >> Array.length)

        finite
        |> List.iteri (fun g (label, points) ->
            let dots =
                p.Add.ScatterPoints(Array.map fst points, Array.map snd points, (Style.colour g).WithAlpha 0.75)

            dots.MarkerSize <- markerSize total
            dots.LegendText <- Style.legendLabel size label)

        setRange p.Axes.SetLimitsX chart.XRange
        setRange p.Axes.SetLimitsY chart.YRange
        Style.legend p finite.Length
        p

    /// A bar chart: one bar per category from zero to its value, in the palette's colours, with ± error
    /// whiskers where given and the categories named under the bars (slanted when they do not fit).
    let bars (size: ImageSize) (chart: Bars) : Plot =
        Charts.validate (Columns chart)
        let p = Style.plot size chart.Title "" chart.YLabel

        let drawn =
            chart.Bars
            |> List.indexed
            |> List.filter (fun (_, (_, value, _)) -> Double.IsFinite value)

        let plot =
            p.Add.Bars
                [| for i, (_, value, _) in drawn ->
                       Bar(Position = float i, Value = value, Size = 0.6, FillColor = Style.colour i, LineWidth = 0.0f) |]

        // Adding bars paints them in the plot's next colour; each category's colour goes back on afterwards.
        for bar in plot.Bars do
            bar.FillColor <- Style.colour (int bar.Position)

        let whiskers =
            drawn
            |> List.choose (fun (i, (_, value, err)) ->
                err
                |> Option.filter (fun e -> Double.IsFinite e && e > 0.0)
                |> Option.map (fun e -> float i, value, e))

        if not whiskers.IsEmpty then
            let xs, ys, es = List.unzip3 whiskers
            let errors = p.Add.ErrorBar(Array.ofList xs, Array.ofList ys, Array.ofList es)
            errors.Color <- Style.ink
            errors.LineWidth <- 1.5f
            errors.CapSize <- 8.0f

        let labels =
            chart.Bars
            |> List.map (fun (label, _, _) -> snd (Text.fit (Style.typeface false) 200.0f Style.tickSize 9.0f label))
            |> Array.ofList

        p.Axes.Bottom.SetTicks(Array.init labels.Length float, labels)
        p.Axes.Bottom.MajorTickStyle.Length <- 0.0f
        p.Axes.Bottom.MinorTickStyle.Length <- 0.0f
        p.Grid.XAxisStyle.IsVisible <- false
        // The data area is about 0.85 of the width; a label wider than its slot would run into its neighbours.
        let slot = 0.85f * float32 size.Width / float32 labels.Length

        let widest =
            labels
            |> Array.map (Text.width (Style.typeface false) Style.tickSize)
            |> Array.fold max 0.0f

        if widest > 0.95f * slot then
            p.Axes.Bottom.TickLabelStyle.Rotation <- -35.0f
            p.Axes.Bottom.TickLabelStyle.Alignment <- Alignment.MiddleRight
            // sin 35° of the widest label, plus room for the ticks.
            p.Axes.Bottom.MinimumSize <- 0.58f * widest + 20.0f

        let values =
            chart.Bars
            |> List.collect (fun (_, v, err) ->
                let e = err |> Option.filter Double.IsFinite |> Option.defaultValue 0.0
                [ v - e; v + e ])
            |> List.filter Double.IsFinite

        let lo = List.fold min 0.0 values
        let hi = List.fold max 0.0 values
        let pad = if hi > lo then (hi - lo) * 0.08 else 1.0
        // Bars stand on zero: no margin below it unless a bar goes negative.
        p.Axes.SetLimits(-0.6, float labels.Length - 0.4, (if lo < 0.0 then lo - pad else 0.0), hi + pad)

        if lo < 0.0 then
            let zero = p.Add.HorizontalLine(0.0, 1.0f, Color.FromHex "#444444")
            zero.LegendText <- ""

        p

    /// Cell values as text, in the invariant culture, with the decimals that tell apart values a hundredth
    /// of the colour scale apart: two for accuracies on (0, 1), none for counts in the hundreds.
    let private cellText (lo: float, hi: float) (v: float) =
        let decimals = Math.Clamp(2 - int (floor (log10 (hi - lo))), 0, 6)
        let s = v.ToString("F" + string decimals, CultureInfo.InvariantCulture)

        if s.TrimStart('-').Trim('0', '.') = "" then
            s.TrimStart '-'
        else
            s

    /// A heatmap: one cell per value, row 0 at the top, coloured on Viridis (perceptually uniform, readable
    /// in grey) over the chart's range or the finite values, with a labelled colour bar on the right. Each cell
    /// carries its value as text while the matrix is at most 20 × 20; a non-finite cell stays empty.
    let heatmap (size: ImageSize) (chart: Heatmap) : Plot =
        Charts.validate (Matrix chart)
        let p = Style.plot size chart.Title chart.XLabel chart.YLabel
        let rows, columns = chart.Rows.Length, chart.Columns.Length

        let values =
            Array2D.init rows columns (fun r c ->
                let v = chart.Values[r][c]
                if Double.IsFinite v then v else nan)

        let lo, hi =
            match chart.Range with
            | Some range -> range
            | None ->
                let finite = chart.Values |> Array.collect id |> Array.filter Double.IsFinite
                let lo, hi = Array.min finite, Array.max finite
                // A constant matrix still needs a scale to colour it by.
                if lo < hi then lo, hi else Bins.niceEnds lo hi

        let cells = p.Add.Heatmap values
        let colormap = Colormaps.Viridis()
        cells.Colormap <- colormap
        cells.ManualRange <- Nullable(Range(lo, hi))
        cells.NaNCellColor <- Colors.Transparent
        // A bitmap of one pixel per cell would be smoothed into a blur when an SVG viewer scales it up.
        cells.RenderStrategy <- Plottables.Heatmap.RenderStrategies.Rectangles()
        let bar = p.Add.ColorBar(cells, Edge.Right)

        bar.Label <-
            snd (Text.fit (Style.typeface false) (float32 size.Height - 100.0f) Style.labelSize 10.0f chart.ValueLabel)

        bar.LabelStyle.FontSize <- Style.labelSize
        bar.LabelStyle.FontName <- Style.fontFamily.Value
        bar.LabelStyle.Bold <- false
        bar.LabelStyle.ForeColor <- Style.ink
        bar.Axis.TickLabelStyle.FontSize <- Style.tickSize
        bar.Axis.TickLabelStyle.FontName <- Style.fontFamily.Value

        let tick (labels: string list) =
            labels
            |> List.map (fun l -> snd (Text.fit (Style.typeface false) 150.0f Style.tickSize 9.0f l))

        p.Axes.Bottom.SetTicks(Array.init columns float, Array.ofList (tick chart.Columns))
        // Row r is drawn at y = rows - 1 - r, so that row 0 is at the top as in a printed matrix.
        p.Axes.Left.SetTicks(Array.init rows (fun r -> float (rows - 1 - r)), Array.ofList (tick chart.Rows))
        p.HideGrid()
        p.Axes.Margins(0.0, 0.0)

        if rows <= 20 && columns <= 20 then
            let fontSize = if max rows columns <= 10 then 12.0f else 9.0f

            for r in 0 .. rows - 1 do
                for c in 0 .. columns - 1 do
                    let v = values[r, c]

                    if Double.IsFinite v then
                        let position = Math.Clamp((v - lo) / (hi - lo), 0.0, 1.0)
                        let fill = colormap.GetColor position
                        // White on the dark end of the scale, dark grey on the light end.
                        let luminance =
                            0.2126 * float fill.R + 0.7152 * float fill.G + 0.0722 * float fill.B

                        let text = p.Add.Text(cellText (lo, hi) v, float c, float (rows - 1 - r))
                        text.LabelAlignment <- Alignment.MiddleCenter
                        text.LabelFontSize <- fontSize
                        text.LabelFontName <- Style.fontFamily.Value
                        text.LabelFontColor <- if luminance < 128.0 then Colors.White else Style.ink

        p

    /// The plot of any panel.
    let panel (size: ImageSize) (panel: Panel) : Plot =
        match panel with
        | Lines c -> line size c
        | Histograms h -> histogram size h
        | Points s -> scatter size s
        | Columns b -> bars size b
        | Matrix m -> heatmap size m
