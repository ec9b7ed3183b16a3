namespace Forgetting.Tensors

open System

/// Shapes (row-major, contiguous) and the errors that name the op and the shapes involved.
[<RequireQualifiedAccess>]
module Shape =

    let show (shape: int[]) = "[" + String.Join(", ", shape) + "]"

    /// Raise an ArgumentException whose message starts with the op's name.
    let fail (op: string) (message: string) : 'a =
        raise (ArgumentException $"{op}: {message}")

    let numel (shape: int[]) = Array.fold (*) 1 shape

    /// Row-major strides: the step in elements along each axis.
    let strides (shape: int[]) =
        let s = Array.zeroCreate shape.Length
        let mutable acc = 1

        for i in shape.Length - 1 .. -1 .. 0 do
            s[i] <- acc
            acc <- acc * shape[i]

        s

    let validate (op: string) (shape: int[]) =
        if shape |> Array.exists (fun d -> d < 0) then
            fail op $"negative dimension in shape {show shape}"

    /// An axis counted from the end when negative; an error naming the op when out of range.
    let axis (op: string) (shape: int[]) (axis: int) =
        let a = if axis < 0 then axis + shape.Length else axis

        if a < 0 || a >= shape.Length then
            fail op $"axis {axis} is out of range for shape {show shape}"

        a

    /// NumPy broadcasting of two shapes: aligned from the right, a dimension of 1 stretches.
    let broadcast (op: string) (a: int[]) (b: int[]) =
        let n = max a.Length b.Length

        Array.init n (fun i ->
            let da = if i < n - a.Length then 1 else a[i - (n - a.Length)]
            let db = if i < n - b.Length then 1 else b[i - (n - b.Length)]

            if da = db || db = 1 then
                da
            elif da = 1 then
                db
            else
                fail op $"shapes {show a} and {show b} cannot be broadcast together")

    /// Strides for reading a tensor of `shape` as if it had the (broadcast) shape `target`:
    /// 0 along the axes it is stretched over.
    let broadcastStrides (shape: int[]) (target: int[]) =
        let s = strides shape
        let lead = target.Length - shape.Length

        Array.init target.Length (fun i ->
            if i < lead then 0
            elif shape[i - lead] = 1 && target[i] <> 1 then 0
            else s[i - lead])

    /// The shape with the axis removed (or kept as 1).
    let reduce (shape: int[]) (axis: int) (keepDim: bool) =
        if keepDim then
            shape |> Array.mapi (fun i d -> if i = axis then 1 else d)
        else
            Array.removeAt axis shape

    /// A reshape target with at most one -1, resolved against the element count.
    let resolve (op: string) (numel': int) (target: int[]) =
        let unknown = target |> Array.filter (fun d -> d = -1) |> Array.length

        if unknown > 1 || target |> Array.exists (fun d -> d < -1) then
            fail op $"bad target shape {show target}"

        let known = target |> Array.filter (fun d -> d <> -1) |> numel

        let resolved =
            if unknown = 1 && known > 0 && numel' % known = 0 then
                target |> Array.map (fun d -> if d = -1 then numel' / known else d)
            else
                target

        if numel resolved <> numel' || Array.contains -1 resolved then
            fail op $"cannot reshape {numel'} elements into shape {show target}"

        resolved
