namespace Forgetting.Tensors

/// Element type: float32 is the default; float64 serves gradient checks.
type DType =
    | Float32
    | Float64

/// Elementwise functions of one tensor.
type UnaryOp =
    | Neg
    | Exp
    | Log
    | Sqrt
    | Abs
    | Sign
    | Tanh
    | Sigmoid
    | Relu
    /// 1 where x > 0, else 0.
    | Step
    | Square
    | Reciprocal
    /// The error function erf(x) = 2/√π ∫₀ˣ exp(−t²) dt.
    | Erf

/// Elementwise functions of two tensors, with NumPy broadcasting.
type BinaryOp =
    | Add
    | Sub
    | Mul
    | Div
    | Pow
    | Maximum
    | Minimum
    /// 1 where a > b, else 0.
    | Greater
    /// 1 where a = b, else 0.
    | Equal

    /// The op's name in error messages (a constant: `string` on a union would format by reflection).
    member op.Name =
        match op with
        | Add -> "Add"
        | Sub -> "Sub"
        | Mul -> "Mul"
        | Div -> "Div"
        | Pow -> "Pow"
        | Maximum -> "Maximum"
        | Minimum -> "Minimum"
        | Greater -> "Greater"
        | Equal -> "Equal"

/// Reductions along one axis.
type ReduceOp =
    | Sum
    | Max
    | Min

/// The backend seam: raw, immutable tensors with no autodiff. Every op the engine differentiates is
/// written against this class only, so another backend (a GPU one) is one more subclass. The CPU
/// backend (Cpu/CpuTensor.fs) is the reference that defines the semantics.
[<AbstractClass; AllowNullLiteral>]
type RawTensor(shape: int[], dtype: DType) =
    member _.Shape = shape
    member _.DType = dtype
    member _.Rank = shape.Length
    member _.Numel = Shape.numel shape

    /// A copy of the elements, row-major, converted to float32 / float64.
    abstract ToFloat32: unit -> float32[]
    abstract ToFloat64: unit -> float[]

    abstract Backend: IBackend

    /// The buffer that holds the elements, by identity: tensors that share one (a reshape shares its
    /// input's) return the same object, which is how the tape knows a gradient is no longer read.
    abstract Buffer: obj

    abstract Cast: dtype: DType -> RawTensor
    abstract Reshape: shape: int[] -> RawTensor
    abstract Permute: axes: int[] -> RawTensor
    /// Rows start .. start + length - 1 along axis 0.
    abstract Slice: start: int * length: int -> RawTensor
    /// Rows picked by index along axis 0 (repeats allowed).
    abstract Gather: indices: int[] -> RawTensor
    /// Sum of rows into an [count, ...] tensor at the given indices: the adjoint of Gather.
    abstract ScatterAdd: indices: int[] * count: int -> RawTensor
    abstract Concat: others: RawTensor[] * axis: int -> RawTensor
    /// Broadcast to a larger shape (materialised).
    abstract Expand: shape: int[] -> RawTensor
    /// Sum over the axes along which this tensor was broadcast from `shape`: the adjoint of Expand.
    abstract SumTo: shape: int[] -> RawTensor

    abstract Unary: op: UnaryOp -> RawTensor
    abstract Binary: op: BinaryOp * other: RawTensor -> RawTensor
    /// op(this, scalar), or op(scalar, this) when `scalarFirst`.
    abstract BinaryScalar: op: BinaryOp * scalar: float * scalarFirst: bool -> RawTensor
    /// Elementwise `this <> 0 ? a : b`, broadcasting all three.
    abstract Where: a: RawTensor * b: RawTensor -> RawTensor
    abstract Clamp: lo: float * hi: float -> RawTensor

    /// Reduction along an axis, the axis kept with size 1.
    abstract Reduce: op: ReduceOp * axis: int -> RawTensor
    abstract SumAll: unit -> float
    /// Index of the first maximum along the axis, per position of the other axes.
    abstract ArgMax: axis: int -> int[]
    abstract Median: unit -> float

    /// Matrix product of the last two axes, batched over a leading axis when rank 3:
    /// op(this) × op(other), op = transpose when the flag is set.
    abstract MatMul: transposeThis: bool * other: RawTensor * transposeOther: bool -> RawTensor

    /// op(this) × op(other) + addend for matrices, where the caller gives `addend` up: a backend may
    /// write the sum into it (a matrix product with β = 1) and return it.
    abstract MatMulAdd: transposeThis: bool * other: RawTensor * transposeOther: bool * addend: RawTensor -> RawTensor

    default x.MatMulAdd(transposeThis, other, transposeOther, addend) =
        addend.AddMany [ x.MatMul(transposeThis, other, transposeOther) ]

    /// Numerically stable softmax / log-softmax along an axis.
    abstract Softmax: axis: int -> RawTensor
    abstract LogSoftmax: axis: int -> RawTensor

    /// Image patches as columns: [N, C, H, W] → [N, C·kh·kw, Ho·Wo].
    abstract Im2Col: kh: int * kw: int * stride: int * padding: int -> RawTensor
    /// The adjoint of Im2Col: columns summed back into an image of the given shape.
    abstract Col2Im: imageShape: int[] * kh: int * kw: int * stride: int * padding: int -> RawTensor
    /// Max pooling over k×k windows: the pooled tensor and the flat input index of each maximum.
    abstract MaxPool2d: k: int * stride: int -> RawTensor * int[]

    // Fused kernels of hot composites that any model uses. Each default composes the ops above, so a
    // new backend works without them; a backend overrides them with single passes over memory. A
    // kernel of one mechanism's op (the forgetting layer's) lives with that op instead (Fused.fs),
    // so that no backend has to implement a mechanism.

    /// this + alpha · other, elementwise, same shapes (the SGD update, gradient accumulation).
    abstract AddScaled: other: RawTensor * alpha: float -> RawTensor

    default x.AddScaled(other, alpha) =
        x.Binary(Add, other.BinaryScalar(Mul, alpha, false))

    /// The sum of this and the others, all of this shape: one buffer instead of one per addition.
    abstract AddMany: others: RawTensor list -> RawTensor

    default x.AddMany others =
        others |> List.fold (fun acc t -> acc.Binary(Add, t)) x

    /// g ⊙ 1[this > 0]: the gradient through a ReLU whose input was this.
    abstract ReluBackward: g: RawTensor -> RawTensor

    default x.ReluBackward g = g.Binary(Mul, x.Unary Step)

    /// this ⊙ (g − Σ_axis g ⊙ this): the gradient through a softmax along `axis` whose output was
    /// this. Attention takes it of every score matrix, where the composition made three full-size
    /// intermediates.
    abstract SoftmaxBackward: g: RawTensor * axis: int -> RawTensor

    default x.SoftmaxBackward(g, axis) =
        let dot = g.Binary(Mul, x).Reduce(Sum, axis)
        x.Binary(Mul, g.Binary(Sub, dot))

/// Where raw tensors come from. The arrays passed in are owned by the new tensor from then on.
and IBackend =
    abstract Name: string
    abstract OfFloat32: shape: int[] * data: float32[] -> RawTensor
    abstract OfFloat64: shape: int[] * data: float[] -> RawTensor
    abstract Full: shape: int[] * dtype: DType * value: float -> RawTensor

    /// Begin a scope in which the backend records the buffers it allocates on this thread (the tape
    /// opens one for a backward pass); disposing the result ends it.
    abstract OpenScope: unit -> System.IDisposable

    /// The tape will not read this tensor's buffer again, nor has it given it to anyone: the backend
    /// may reuse it, if the open scope allocated it (any other buffer must be left alone).
    abstract Release: RawTensor -> unit

    /// Release every buffer the innermost open scope allocated and has not been given back, except
    /// those for which `keep` holds (RawTensor.Buffer identities).
    abstract ReleaseAllocated: keep: (obj -> bool) -> unit
