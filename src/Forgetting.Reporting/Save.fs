namespace Forgetting.Reporting

open System
open System.IO
open System.Text
open Forgetting.Experiments

/// Images written to files whole or not at all: a reader never sees half a chart.
[<RequireQualifiedAccess>]
module Save =

    /// Write bytes to path atomically: a temporary file in the same directory, then a rename over path.
    /// The directory must exist.
    let bytes (path: string) (content: byte[]) : unit =
        let full = Path.GetFullPath path

        let temp =
            Path.Combine(Path.GetDirectoryName full, $".{Path.GetFileName full}.{Guid.NewGuid():N}.tmp")

        try
            File.WriteAllBytes(temp, content)
            File.Move(temp, full, true)
        with _ ->
            File.Delete temp
            reraise ()

    /// Write text to path atomically, as UTF-8 without a byte-order mark.
    let text (path: string) (content: string) : unit =
        bytes path (UTF8Encoding(false).GetBytes content)

    /// The panel as `stem`.svg and `stem`.png, each `size` large.
    let panel (size: ImageSize) (stem: string) (panel: Panel) : unit =
        text (stem + ".svg") (Render.svg size panel)
        bytes (stem + ".png") (Render.png size panel)

    /// A figure's panels on one grid (Render.grid) as `stem`.svg and `stem`.png, each panel `size` large.
    let figure (size: ImageSize) (stem: string) (panels: Panel list) : unit =
        text (stem + ".svg") (Render.figureSvg size panels)
        bytes (stem + ".png") (Render.figurePng size panels)
