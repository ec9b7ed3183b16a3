namespace Forgetting.Reporting

open System
open System.Globalization
open System.IO
open System.Text
open System.Xml

/// One curve of a line chart: Y over X, joined in the given order, with an optional ± Sd band.
type Series =
    {
        Label: string
        X: float[]
        Y: float[]
        /// Standard deviation at each point (non-negative), drawn as a shaded band Y ± Sd.
        Sd: float[] option
    }

/// Curves over a shared x axis, e.g. accuracy against the fraction of units removed, or training loss.
type LineChart =
    {
        Title: string
        XLabel: string
        YLabel: string
        Series: Series list
        /// Fixed axis range (lo &lt; hi); None fits nice ticks around the data.
        XRange: (float * float) option
        YRange: (float * float) option
    }

/// How a histogram draws several groups.
type HistogramLayout =
    /// Every group spans the whole bin, translucent, one over the other.
    | Overlaid
    /// The groups share each bin, next to each other.
    | SideBySide

/// Counts of values in equal-width bins, for one or more groups (e.g. importance of units per method).
type Histogram =
    {
        Title: string
        XLabel: string
        Groups: (string * float[]) list
        Bins: int
        /// The binned range (lo &lt; hi); values outside it are not counted. None takes nice ticks around the data.
        Range: (float * float) option
        Layout: HistogramLayout
    }

/// Points coloured by group, e.g. sparsity against accuracy per method, or an embedding per class.
type Scatter =
    { Title: string
      XLabel: string
      YLabel: string
      Groups: (string * (float * float)[]) list
      XRange: (float * float) option
      YRange: (float * float) option }

/// One bar per category: (label, value, optional ± error).
type Bars =
    { Title: string
      YLabel: string
      Bars: (string * float * float option) list }

/// Charts as SVG text: pure functions from a chart description to a standalone SVG document.
/// Non-finite values are skipped; bad descriptions raise ArgumentException naming the chart.
[<RequireQualifiedAccess>]
module Svg =

    /// Width of every chart, in pixels.
    let width = 640.0

    /// Height of every chart, in pixels.
    let height = 420.0

    /// Tableau 10, designed to stay distinguishable under the common colour-vision deficiencies;
    /// the i-th series or group takes palette[i % 10].
    let palette: string list =
        List.ofArray ("#4e79a7 #f28e2b #e15759 #76b7b2 #59a14f #edc948 #b07aa1 #ff9da7 #9c755f #bab0ac".Split ' ')

    let private colour i = palette[i % palette.Length]

    let private fail (chart: string) (problem: string) : 'a =
        raise (ArgumentException $"{chart}: {problem}")

    let private require chart condition problem =
        if not condition then
            fail chart problem

    let private num (v: float) =
        let s = Math.Round(v, 2).ToString("0.##", CultureInfo.InvariantCulture)
        if s = "-0" then "0" else s

    /// Characters XML 1.0 cannot hold (control characters, lone surrogates) become U+FFFD.
    let private clean (s: string) =
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

    let private escape (s: string) =
        s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;")

    // No font metrics here: 0.6 em per character is a little wider than Helvetica or DejaVu Sans on average,
    // so estimates err towards more room.
    let private textWidth (size: float) (s: string) = 0.6 * size * float s.Length

    /// Shrink text towards minSize until it fits maxWidth, then cut it with an ellipsis.
    let private fit (maxWidth: float) (size: float) (minSize: float) (text: string) =
        let s = clean text
        let size = max minSize (min size (maxWidth / textWidth 1.0 (s + " ")))
        let room = int (maxWidth / textWidth size "x")

        if s.Length <= room then
            size, s
        else
            let cut = max 0 (room - 1)

            let cut =
                if cut > 0 && Char.IsHighSurrogate s[cut - 1] then
                    cut - 1
                else
                    cut

            size, s.Substring(0, cut) + "…"

    let private add (sb: StringBuilder) (element: string) =
        sb.Append(element).Append('\n') |> ignore

    let private text sb (x: float) (y: float) (size: float) (anchor: string) (extra: string) s =
        add
            sb
            $"""<text x="{num x}" y="{num y}" font-size="{num size}" text-anchor="{anchor}"{extra}>{escape s}</text>"""

    let private line sb x1 y1 x2 y2 (style: string) =
        add sb $"""<line x1="{num x1}" y1="{num y1}" x2="{num x2}" y2="{num y2}" {style}/>"""

    let private rect sb x y w h (style: string) =
        add sb $"""<rect x="{num x}" y="{num y}" width="{num w}" height="{num h}" {style}/>"""

    /// An axis in data coordinates: its range and labelled tick positions.
    type private Scale =
        { Lo: float
          Hi: float
          Ticks: (float * string)[]
          Grid: bool }

    let private labelled grid lo hi ticks =
        { Lo = lo
          Hi = hi
          Ticks = Array.zip ticks (Axis.tickLabels ticks)
          Grid = grid }

    /// A fixed range as given, else nice ticks around the finite values.
    let private numeric chart axis (range: (float * float) option) (values: float seq) =
        match range with
        | Some(lo, hi) ->
            require
                chart
                (Double.IsFinite lo && Double.IsFinite hi && lo < hi)
                $"the {axis} range must be finite with lo < hi, got ({lo}, {hi})"

            labelled true lo hi (Axis.ticksWithin lo hi)
        | None ->
            let finite = values |> Seq.filter Double.IsFinite |> Seq.toArray

            require chart (finite.Length > 0) $"there are no finite {axis} values to draw"

            let ticks = Axis.niceTicks (Array.min finite) (Array.max finite)
            labelled true ticks[0] ticks[ticks.Length - 1] ticks

    type private Swatch =
        | Line of band: bool
        | Box
        | Dot

    /// Maps data coordinates to pixels inside the plot area.
    type private Plot =
        { X: float -> float
          Y: float -> float
          Left: float
          Top: float
          Width: float
          Height: float }

    /// The frame every chart shares: title, grid, axes, tick labels, axis labels and a legend to the right
    /// of the plot (there it never covers data); `body` draws the data, clipped to the plot area.
    let private render title xLabel yLabel (xs: Scale) (ys: Scale) (legend: (string * Swatch) list) body =
        let tickSize, labelSize, legendSize = 11.0, 13.0, 12.0

        let widest size (labels: string seq) =
            Seq.fold (fun w s -> max w (textWidth size s)) 0.0 labels

        let yTickWidth = ys.Ticks |> Seq.map snd |> widest tickSize
        let legendItems = if legend.Length > 1 then legend else []

        let legendWidth =
            min 170.0 (legendItems |> Seq.map (fst >> clean) |> widest legendSize)

        let top = if String.IsNullOrEmpty title then 16.0 else 44.0
        let left = 36.0 + yTickWidth
        let right = if legendItems.IsEmpty then 20.0 else 56.0 + legendWidth
        let plotWidth = width - left - right
        let span (s: Scale) = s.Hi - s.Lo

        let tickSpacing =
            if xs.Ticks.Length < 2 then
                plotWidth
            else
                plotWidth * (fst xs.Ticks[1] - fst xs.Ticks[0]) / span xs

        // Labels too wide for their spacing wrap onto two lines at a space; failing that they slant.
        let wrap (s: string) =
            match
                Seq.indexed s
                |> Seq.filter (snd >> (=) ' ')
                |> Seq.sortBy (fun (i, _) -> abs (2 * i - s.Length))
                |> Seq.tryHead
            with
            | Some(i, _) -> [ s.Substring(0, i); s.Substring(i + 1) ]
            | None -> [ s ]

        let fits lines =
            lines
            |> List.forall (fun l -> textWidth tickSize (clean l) <= 0.95 * tickSpacing)

        let flat = xs.Ticks |> Array.forall (fun (_, l) -> fits [ l ])
        let wrapped = not flat && xs.Ticks |> Array.forall (snd >> wrap >> fits)
        let slanted = not flat && not wrapped
        let slantRoom = min 200.0 (xs.Ticks |> Seq.map snd |> widest tickSize)

        let xTickDepth =
            if slanted then 0.58 * slantRoom + 22.0
            elif wrapped then 35.0
            else 22.0

        let bottom = xTickDepth + (if String.IsNullOrEmpty xLabel then 12.0 else 30.0)
        let plotHeight = height - top - bottom

        let p =
            { X = fun v -> left + (v - xs.Lo) / span xs * plotWidth
              Y = fun v -> top + plotHeight - (v - ys.Lo) / span ys * plotHeight
              Left = left
              Top = top
              Width = plotWidth
              Height = plotHeight }

        let sb = StringBuilder()
        let line = line sb
        let size = $"width=\"{num width}\" height=\"{num height}\""

        add
            sb
            $"""<svg xmlns="http://www.w3.org/2000/svg" {size} viewBox="0 0 {num width} {num height}" font-family="Helvetica, Arial, sans-serif" fill="#222">"""

        add sb $"<title>{escape (clean title)}</title>"
        add sb $"""<rect {size} fill="white"/>"""

        let grid = "stroke=\"#e4e4e4\" stroke-width=\"1\""

        for (y, _) in ys.Ticks do
            line left (p.Y y) (left + plotWidth) (p.Y y) grid

        if xs.Grid then
            for (x, _) in xs.Ticks do
                line (p.X x) top (p.X x) (top + plotHeight) grid

        // A few pixels of slack keep markers and bars that sit on the axes whole.
        add sb """<clipPath id="plot-area">"""
        rect sb (left - 5.0) (top - 5.0) (plotWidth + 10.0) (plotHeight + 10.0) ""
        add sb """</clipPath><g clip-path="url(#plot-area)">"""
        body p sb
        add sb "</g>"
        let axisStyle = "stroke=\"#444\" stroke-width=\"1\""
        line left (top + plotHeight) (left + plotWidth) (top + plotHeight) axisStyle
        line left top left (top + plotHeight) axisStyle

        for (y, label) in ys.Ticks do
            line (left - 4.0) (p.Y y) left (p.Y y) axisStyle
            text sb (left - 7.0) (p.Y y + 4.0) tickSize "end" "" label

        for (x, label) in xs.Ticks do
            let bottomY = top + plotHeight
            line (p.X x) bottomY (p.X x) (bottomY + 4.0) axisStyle

            if slanted then
                // cos 35° = 0.82: a slanted label may not run past the left edge of the chart.
                let x, y = p.X x + 4.0, bottomY + 12.0
                let _, label = fit (min slantRoom ((x - 4.0) / 0.82)) tickSize tickSize label
                text sb x y tickSize "end" $" transform=\"rotate(-35 {num x} {num y})\"" label
            else
                (if wrapped then wrap label else [ label ])
                |> List.iteri (fun i line ->
                    let _, line = fit tickSpacing tickSize tickSize line
                    text sb (p.X x) (bottomY + 18.0 + 13.0 * float i) tickSize "middle" "" line)

        let titleSize, title = fit (width - 20.0) 16.0 11.0 title
        text sb (width / 2.0) 26.0 titleSize "middle" " font-weight=\"bold\"" title
        let xLabelSize, xLabel = fit plotWidth labelSize 10.0 xLabel
        text sb (left + plotWidth / 2.0) (height - 12.0) xLabelSize "middle" "" xLabel
        let yLabelSize, yLabel = fit plotHeight labelSize 10.0 yLabel
        let yMid = top + plotHeight / 2.0
        text sb 20.0 yMid yLabelSize "middle" $" transform=\"rotate(-90 20 {num yMid})\"" yLabel

        let gap = min 20.0 (plotHeight / float (max 1 legendItems.Length))
        let lx = left + plotWidth + 18.0

        legendItems
        |> List.iteri (fun i (label, swatch) ->
            let y = top + 8.0 + float i * gap
            let c = colour i

            match swatch with
            | Line band ->
                if band then
                    rect sb lx (y - 5.0) 20.0 10.0 $"fill=\"{c}\" fill-opacity=\"0.2\""

                line lx y (lx + 20.0) y $"stroke=\"{c}\" stroke-width=\"2\""
            | Box -> rect sb (lx + 3.0) (y - 6.0) 14.0 12.0 $"fill=\"{c}\" fill-opacity=\"0.7\" stroke=\"{c}\""
            | Dot -> add sb $"""<circle cx="{num (lx + 10.0)}" cy="{num y}" r="4" fill="{c}"/>"""

            let _, label = fit legendWidth legendSize legendSize label
            text sb (lx + 26.0) (y + 4.0) legendSize "start" "" label)

        add sb "</svg>"
        sb.ToString()

    let private path (points: (float * float) seq) =
        points
        |> Seq.mapi (fun i (x, y) -> $"""{(if i = 0 then "M" else "L")}{num x},{num y}""")
        |> String.concat " "

    /// A line chart: one coloured curve per series, a shaded ± Sd band where given, markers when a series
    /// has at most 30 points, and a legend when there is more than one series.
    let lineChart (chart: LineChart) : string =
        let name = $"line chart '{chart.Title}'"
        require name (not chart.Series.IsEmpty) "it has no series"

        for s in chart.Series do
            let n = s.X.Length

            require name (n > 0) $"series '{s.Label}' has no points"
            require name (s.Y.Length = n) $"series '{s.Label}' has {n} x values but {s.Y.Length} y values"

            match s.Sd with
            | Some sd when sd.Length <> n -> fail name $"series '{s.Label}' has {n} y values but {sd.Length} sd values"
            | Some sd when Array.exists (fun v -> v < 0.0) sd -> fail name $"series '{s.Label}' has a negative sd"
            | _ -> ()

        let finite (s: Series) =
            [| for i in 0 .. s.X.Length - 1 do
                   if Double.IsFinite s.X[i] && Double.IsFinite s.Y[i] then
                       let sd = s.Sd |> Option.map (fun sd -> sd[i]) |> Option.filter Double.IsFinite
                       s.X[i], s.Y[i], sd |]

        let points = chart.Series |> List.map finite
        let all = Seq.concat points
        require name (not (Seq.isEmpty all)) "no point has both x and y finite"
        let xs = numeric name "x" chart.XRange (all |> Seq.map (fun (x, _, _) -> x))

        let ys =
            numeric
                name
                "y"
                chart.YRange
                (all
                 |> Seq.collect (fun (_, y, sd) -> [ y - defaultArg sd 0.0; y + defaultArg sd 0.0 ]))

        let legend = chart.Series |> List.map (fun s -> s.Label, Line s.Sd.IsSome)

        render chart.Title chart.XLabel chart.YLabel xs ys legend (fun p sb ->
            // Bands first, so that no band veils another series' line.
            points
            |> List.iteri (fun i pts ->
                let band =
                    pts |> Array.choose (fun (x, y, sd) -> sd |> Option.map (fun sd -> x, y, sd))

                if band.Length > 1 then
                    let upper = band |> Seq.map (fun (x, y, sd) -> p.X x, p.Y(y + sd))
                    let lower = band |> Seq.rev |> Seq.map (fun (x, y, sd) -> p.X x, p.Y(y - sd))

                    add sb $"""<path d="{path (Seq.append upper lower)} Z" fill="{colour i}" fill-opacity="0.2"/>""")

            points
            |> List.iteri (fun i pts ->
                let xy = pts |> Array.map (fun (x, y, _) -> p.X x, p.Y y)

                let c = colour i
                add sb $"""<path d="{path xy}" fill="none" stroke="{c}" stroke-width="2" stroke-linejoin="round"/>"""

                if xy.Length <= 30 then
                    for (x, y) in xy do
                        add sb $"""<circle cx="{num x}" cy="{num y}" r="3" fill="{c}"/>"""))

    /// Counts of the finite values in each of `bins` equal-width bins over [lo, hi]; hi itself falls in the
    /// last bin, and values outside the range are not counted.
    let binCounts (lo: float, hi: float) (bins: int) (values: float[]) : int[] =
        if bins < 1 || not (Double.IsFinite lo && Double.IsFinite hi && lo < hi) then
            invalidArg (nameof bins) $"binning needs at least one bin and a finite lo < hi, got {bins} on ({lo}, {hi})"

        let counts = Array.zeroCreate bins

        for v in values do
            if v >= lo && v <= hi then
                let b = min (bins - 1) (int ((v - lo) / (hi - lo) * float bins))
                counts[b] <- counts[b] + 1

        counts

    /// A histogram: one colour per group, overlaid translucently or side by side within each bin, with the
    /// count on the y axis. Each bar carries its count in a data-count attribute.
    let histogram (chart: Histogram) : string =
        let name = $"histogram '{chart.Title}'"
        require name (not chart.Groups.IsEmpty) "it has no groups"
        require name (chart.Bins >= 1 && chart.Bins <= 10000) $"it needs between 1 and 10000 bins, got {chart.Bins}"

        for (label, values) in chart.Groups do
            require name (values.Length > 0) $"group '{label}' has no values"

        let values =
            chart.Groups |> Seq.collect snd |> Seq.filter Double.IsFinite |> Seq.toArray

        let lo, hi =
            match chart.Range with
            | Some(lo, hi) when Double.IsFinite lo && Double.IsFinite hi && lo < hi -> lo, hi
            | Some(lo, hi) -> fail name $"the range must be finite with lo < hi, got ({lo}, {hi})"
            | None when values.Length = 0 -> fail name "there are no finite values to draw"
            | None ->
                // Nice ends give the bins round edges too.
                let ticks = Axis.niceTicks (Array.min values) (Array.max values)
                ticks[0], ticks[ticks.Length - 1]

        let counts = chart.Groups |> List.map (snd >> binCounts (lo, hi) chart.Bins)
        let most = counts |> Seq.collect id |> Seq.fold max 1
        let ys = numeric name "count" None [ 0.0; float most ]
        let xs = labelled true lo hi (Axis.ticksWithin lo hi)
        let legend = chart.Groups |> List.map (fun (label, _) -> label, Box)
        let groups = counts.Length
        let opacity = if groups = 1 then "0.8" else "0.45"

        render chart.Title chart.XLabel "count" xs ys legend (fun p sb ->
            let binWidth = p.Width / float chart.Bins

            counts
            |> List.iteri (fun g counts ->
                counts
                |> Array.iteri (fun b n ->
                    if n > 0 then
                        let x, w =
                            match chart.Layout with
                            | Overlaid -> p.Left + float b * binWidth, binWidth
                            | SideBySide ->
                                let w = binWidth * 0.9 / float groups
                                p.Left + float b * binWidth + binWidth * 0.05 + float g * w, w

                        let c = colour g

                        let style =
                            $"fill=\"{c}\" fill-opacity=\"{opacity}\" stroke=\"{c}\" stroke-width=\"0.8\""

                        rect sb x (p.Y(float n)) w (p.Y 0.0 - p.Y(float n)) $"{style} data-count=\"{n}\"")))

    /// A scatter plot: one colour per group (up to ten distinct colours), dots shrinking as points grow many.
    let scatter (chart: Scatter) : string =
        let name = $"scatter plot '{chart.Title}'"
        require name (not chart.Groups.IsEmpty) "it has no groups"

        for (label, points) in chart.Groups do
            require name (points.Length > 0) $"group '{label}' has no points"

        let finite =
            chart.Groups
            |> List.map (fun (_, pts) -> pts |> Array.filter (fun (x, y) -> Double.IsFinite x && Double.IsFinite y))

        let all = Seq.concat finite
        require name (not (Seq.isEmpty all)) "no point has both x and y finite"
        let xs = numeric name "x" chart.XRange (Seq.map fst all)
        let ys = numeric name "y" chart.YRange (Seq.map snd all)
        let total = Seq.length all

        let radius =
            if total > 2000 then 1.6
            elif total > 300 then 2.4
            else 4.0

        let legend = chart.Groups |> List.map (fun (label, _) -> label, Dot)

        render chart.Title chart.XLabel chart.YLabel xs ys legend (fun p sb ->
            finite
            |> List.iteri (fun g pts ->
                add sb $"""<g fill="{colour g}" fill-opacity="0.75">"""

                for (x, y) in pts do
                    add sb $"""<circle cx="{num (p.X x)}" cy="{num (p.Y y)}" r="{num radius}"/>"""

                add sb "</g>"))

    /// A bar chart: one coloured bar per category from zero to its value, with ± error whiskers where given.
    let bars (chart: Bars) : string =
        let name = $"bar chart '{chart.Title}'"
        require name (not chart.Bars.IsEmpty) "it has no bars"

        for (label, _, err) in chart.Bars do
            require name (err |> Option.forall (fun e -> not (e < 0.0))) $"bar '{label}' has a negative error"

        let n = chart.Bars.Length

        let ys =
            chart.Bars
            |> Seq.collect (fun (_, v, err) ->
                let e = err |> Option.filter Double.IsFinite |> Option.defaultValue 0.0
                [ v - e; v + e ])
            |> Seq.append [ 0.0 ]
            |> numeric name "y" None

        let xs =
            { Lo = 0.0
              Hi = float n
              Ticks =
                chart.Bars
                |> Seq.mapi (fun i (label, _, _) -> float i + 0.5, label)
                |> Seq.toArray
              Grid = false }

        render chart.Title "" chart.YLabel xs ys [] (fun p sb ->
            let slot = p.Width / float n

            chart.Bars
            |> List.iteri (fun i (_, v, err) ->
                if Double.IsFinite v then
                    let x = p.X(float i + 0.5)
                    let y0, y1 = p.Y 0.0, p.Y v

                    rect sb (x - 0.3 * slot) (min y0 y1) (0.6 * slot) (abs (y0 - y1)) $"fill=\"{colour i}\""

                    match err with
                    | Some e when Double.IsFinite e && e > 0.0 ->
                        let lo, hi = p.Y(v - e), p.Y(v + e)
                        let cap = min 8.0 (0.15 * slot)

                        for (x1, y1, x2, y2) in [ x, lo, x, hi; x - cap, lo, x + cap, lo; x - cap, hi, x + cap, hi ] do
                            line sb x1 y1 x2 y2 "stroke=\"#222\" stroke-width=\"1.5\""
                    | _ -> ())

            if ys.Lo < 0.0 then
                line sb p.Left (p.Y 0.0) (p.Left + p.Width) (p.Y 0.0) "stroke=\"#444\"")

    /// Write svg to path atomically: a temporary file in the same directory, then a rename over path, so that
    /// a reader never sees half a chart. The directory must exist.
    let save (path: string) (svg: string) : unit =
        let full = Path.GetFullPath path

        let temp =
            Path.Combine(Path.GetDirectoryName full, $".{Path.GetFileName full}.{Guid.NewGuid():N}.tmp")

        try
            File.WriteAllText(temp, svg, UTF8Encoding(false))
            File.Move(temp, full, true)
        with _ ->
            File.Delete temp
            reraise ()
