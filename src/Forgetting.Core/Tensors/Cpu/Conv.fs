/// Image kernels: im2col / col2im (convolution becomes one GEMM) and 2-D max pooling.
module internal Forgetting.Tensors.Cpu.Conv

open Forgetting.Tensors

let outSize (size: int) (k: int) (stride: int) (padding: int) = (size + 2 * padding - k) / stride + 1

/// The walk im2col and col2im share: for each image b, column-matrix row (channel, kernel offset)
/// and output position, the index into the column matrix and, when the receptive field's pixel is
/// inside the image, the index into the image (`inside`), else only the column index (`outside`).
/// Rows of output positions that fall wholly above or below the image are reported through
/// `outside` too, unless `skipOutside` says the caller has nothing to do there.
let inline private walk
    n
    c
    h
    w
    kh
    kw
    stride
    padding
    (skipOutside: bool)
    ([<InlineIfLambda>] inside: int -> int -> unit)
    ([<InlineIfLambda>] outside: int -> unit)
    =
    let ho, wo = outSize h kh stride padding, outSize w kw stride padding
    let rows = c * kh * kw

    for b in 0 .. n - 1 do
        for row in 0 .. rows - 1 do
            let ch, ki, kj = row / (kh * kw), (row / kw) % kh, row % kw
            let col = (b * rows + row) * ho * wo
            let image = (b * c + ch) * h * w

            for oi in 0 .. ho - 1 do
                let i = oi * stride - padding + ki

                if i >= 0 && i < h || not skipOutside then
                    for oj in 0 .. wo - 1 do
                        let j = oj * stride - padding + kj

                        if i >= 0 && i < h && j >= 0 && j < w then
                            inside (col + oi * wo + oj) (image + i * w + j)
                        else
                            outside (col + oi * wo + oj)

let inline private im2colLoop (x: ^T[]) n c h w kh kw stride padding (r: ^T[]) =
    walk n c h w kh kw stride padding false (fun at from -> r[at] <- x[from]) (fun at ->
        r[at] <- LanguagePrimitives.GenericZero)

let inline private col2imLoop (cols: ^T[]) n c h w kh kw stride padding (r: ^T[]) =
    walk n c h w kh kw stride padding true (fun from at -> r[at] <- r[at] + cols[from]) (fun _ -> ())

let im2col (x: Storage) (shape: int[]) kh kw stride padding =
    let n, c, h, w = shape[0], shape[1], shape[2], shape[3]
    let ho, wo = outSize h kh stride padding, outSize w kw stride padding
    let r = Storage.uninit x.DType (n * c * kh * kw * ho * wo)

    match x, r with
    | F32 x, F32 r -> im2colLoop x n c h w kh kw stride padding r
    | F64 x, F64 r -> im2colLoop x n c h w kh kw stride padding r
    | _ -> ()

    r

let col2im (cols: Storage) (imageShape: int[]) kh kw stride padding =
    let n, c, h, w = imageShape[0], imageShape[1], imageShape[2], imageShape[3]
    let r = Storage.zeros cols.DType (n * c * h * w)

    match cols, r with
    | F32 x, F32 r -> col2imLoop x n c h w kh kw stride padding r
    | F64 x, F64 r -> col2imLoop x n c h w kh kw stride padding r
    | _ -> ()

    r

let inline private maxPoolLoop (x: ^T[]) n c h w k stride (r: ^T[]) (idx: int[]) =
    let ho, wo = outSize h k stride 0, outSize w k stride 0

    for plane in 0 .. n * c - 1 do
        let src = plane * h * w

        for oi in 0 .. ho - 1 do
            for oj in 0 .. wo - 1 do
                let mutable best = src + oi * stride * w + oj * stride

                for di in 0 .. k - 1 do
                    for dj in 0 .. k - 1 do
                        let at = src + (oi * stride + di) * w + oj * stride + dj

                        if x[at] > x[best] then
                            best <- at

                let o = (plane * ho + oi) * wo + oj
                r[o] <- x[best]
                idx[o] <- best

let maxPool2d (x: Storage) (shape: int[]) k stride =
    let n, c, h, w = shape[0], shape[1], shape[2], shape[3]
    let count = n * c * outSize h k stride 0 * outSize w k stride 0
    let r = Storage.uninit x.DType count
    let idx = Array.zeroCreate count

    match x, r with
    | F32 x, F32 r -> maxPoolLoop x n c h w k stride r idx
    | F64 x, F64 r -> maxPoolLoop x n c h w k stride r idx
    | _ -> ()

    r, idx
