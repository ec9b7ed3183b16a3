namespace Forgetting.Experiments

open System

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
        /// Fixed axis range (lo &lt; hi); None fits the axis around the data.
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
        /// The binned range (lo &lt; hi); values outside it are not counted. None takes round ends around the data.
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

/// A matrix of values as coloured cells with a colour bar, e.g. the accuracy on each task (columns) after
/// training through each task (rows) in continual learning.
type Heatmap =
    {
        Title: string
        /// What the columns are, under the x axis.
        XLabel: string
        /// What the rows are, beside the y axis.
        YLabel: string
        /// Row labels, top to bottom.
        Rows: string list
        /// Column labels, left to right.
        Columns: string list
        /// Values[row][column]; a non-finite value leaves its cell empty.
        Values: float[][]
        /// What the colours measure: the colour bar's label.
        ValueLabel: string
        /// The values the colour scale spans (lo &lt; hi), e.g. (0, 1) for accuracies so that matrices compare;
        /// values outside take the end colours. None spans the finite values.
        Range: (float * float) option
    }

/// A panel of a figure: one chart.
type Panel =
    | Lines of LineChart
    | Histograms of Histogram
    | Points of Scatter
    /// A bar chart.
    | Columns of Bars
    /// A heatmap.
    | Matrix of Heatmap

/// What makes a chart description drawable. A renderer checks first: a bad description raises
/// ArgumentException whose message names the chart and the problem; non-finite values are not an error
/// (they are skipped) as long as something finite is left to draw.
[<RequireQualifiedAccess>]
module Charts =

    /// The panel's title.
    let title (panel: Panel) : string =
        match panel with
        | Lines c -> c.Title
        | Histograms h -> h.Title
        | Points p -> p.Title
        | Columns b -> b.Title
        | Matrix m -> m.Title

    /// The kind of chart and its title, as error messages name it: "line chart 'Pruning'".
    let name (panel: Panel) : string =
        let kind =
            match panel with
            | Lines _ -> "line chart"
            | Histograms _ -> "histogram"
            | Points _ -> "scatter plot"
            | Columns _ -> "bar chart"
            | Matrix _ -> "heatmap"

        $"{kind} '{title panel}'"

    let private fail (chart: string) (problem: string) : 'a =
        raise (ArgumentException $"{chart}: {problem}")

    let private require chart condition problem =
        if not condition then
            fail chart problem

    let private checkRange chart axis (range: (float * float) option) =
        match range with
        | Some(lo, hi) when not (Double.IsFinite lo && Double.IsFinite hi && lo < hi) ->
            fail chart $"the {axis} range must be finite with lo < hi, got ({lo}, {hi})"
        | _ -> ()

    let private lineChart name (chart: LineChart) =
        require name (not chart.Series.IsEmpty) "it has no series"

        for s in chart.Series do
            let n = s.X.Length

            require name (n > 0) $"series '{s.Label}' has no points"
            require name (s.Y.Length = n) $"series '{s.Label}' has {n} x values but {s.Y.Length} y values"

            match s.Sd with
            | Some sd when sd.Length <> n -> fail name $"series '{s.Label}' has {n} y values but {sd.Length} sd values"
            | Some sd when Array.exists (fun v -> v < 0.0) sd -> fail name $"series '{s.Label}' has a negative sd"
            | _ -> ()

        let anyFinite =
            chart.Series
            |> List.exists (fun s -> Array.exists2 (fun x y -> Double.IsFinite x && Double.IsFinite y) s.X s.Y)

        require name anyFinite "no point has both x and y finite"
        checkRange name "x" chart.XRange
        checkRange name "y" chart.YRange

    let private histogram name (chart: Histogram) =
        require name (not chart.Groups.IsEmpty) "it has no groups"
        require name (chart.Bins >= 1 && chart.Bins <= 10000) $"it needs between 1 and 10000 bins, got {chart.Bins}"

        for label, values in chart.Groups do
            require name (values.Length > 0) $"group '{label}' has no values"

        checkRange name "binned" chart.Range

        if chart.Range.IsNone then
            let anyFinite = chart.Groups |> List.exists (snd >> Array.exists Double.IsFinite)
            require name anyFinite "there are no finite values to draw"

    let private scatter name (chart: Scatter) =
        require name (not chart.Groups.IsEmpty) "it has no groups"

        for label, points in chart.Groups do
            require name (points.Length > 0) $"group '{label}' has no points"

        let anyFinite =
            chart.Groups
            |> List.exists (snd >> Array.exists (fun (x, y) -> Double.IsFinite x && Double.IsFinite y))

        require name anyFinite "no point has both x and y finite"
        checkRange name "x" chart.XRange
        checkRange name "y" chart.YRange

    let private bars name (chart: Bars) =
        require name (not chart.Bars.IsEmpty) "it has no bars"

        for label, _, err in chart.Bars do
            // `not (e < 0)` lets NaN through: a non-finite error is skipped like any non-finite value.
            require name (err |> Option.forall (fun e -> not (e < 0.0))) $"bar '{label}' has a negative error"

    let private heatmap name (chart: Heatmap) =
        let rows, columns = chart.Rows.Length, chart.Columns.Length
        require name (rows > 0 && columns > 0) $"it needs at least one row and one column, got {rows} × {columns}"
        require name (chart.Values.Length = rows) $"it has {rows} row labels but {chart.Values.Length} rows of values"

        chart.Values
        |> Array.iteri (fun i row ->
            require name (row.Length = columns) $"row {i + 1} has {row.Length} values for {columns} columns")

        checkRange name "colour" chart.Range

        if chart.Range.IsNone then
            let anyFinite = chart.Values |> Array.exists (Array.exists Double.IsFinite)
            require name anyFinite "there are no finite values to draw"

    /// Raise ArgumentException, naming the chart and the problem, unless the panel can be drawn.
    let validate (panel: Panel) : unit =
        let name = name panel

        match panel with
        | Lines c -> lineChart name c
        | Histograms h -> histogram name h
        | Points p -> scatter name p
        | Columns b -> bars name b
        | Matrix m -> heatmap name m
