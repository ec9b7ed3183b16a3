/// One-line JSON objects for machine-readable output (bench lines, result summaries).
module Forgetting.Cli.Json

open System.IO
open System.Text
open System.Text.Json

type Value =
    | Str of string
    | Int of int
    | Num of float
    | Bool of bool
    | Obj of (string * Value) list
    | Arr of Value list
    /// A JSON node written as it is (a recipe).
    | Raw of Nodes.JsonNode

let rec private write (w: Utf8JsonWriter) (v: Value) =
    match v with
    | Str s -> w.WriteStringValue s
    | Int i -> w.WriteNumberValue i
    // Full round-trip precision: a learning rate of 1e-7 must not be recorded as 0.
    | Num x when System.Double.IsFinite x -> w.WriteNumberValue x
    | Num _ -> w.WriteNullValue()
    | Raw n when isNull n -> w.WriteNullValue()
    | Raw n -> n.WriteTo w
    | Bool b -> w.WriteBooleanValue b
    | Arr items ->
        w.WriteStartArray()
        items |> List.iter (write w)
        w.WriteEndArray()
    | Obj fields ->
        w.WriteStartObject()

        for name, value in fields do
            w.WritePropertyName name
            write w value

        w.WriteEndObject()

/// The value as JSON text; `indented` for files people read, one line for streams. Relaxed escaping:
/// the text is never embedded in HTML, and "0.1.0+abc" should read as written.
let render (indented: bool) (v: Value) =
    use stream = new MemoryStream()

    (use w =
        new Utf8JsonWriter(
            stream,
            JsonWriterOptions(Indented = indented, Encoder = Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)
        )

     write w v)

    Encoding.UTF8.GetString(stream.ToArray())
