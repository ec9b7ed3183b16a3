namespace Forgetting.Tensors.Cpu

open Forgetting.Tensors

/// The CPU backend's element storage: one contiguous row-major array per tensor.
type Storage =
    | F32 of float32[]
    | F64 of float[]

    member s.Length =
        match s with
        | F32 a -> a.Length
        | F64 a -> a.Length

    member s.DType =
        match s with
        | F32 _ -> Float32
        | F64 _ -> Float64

module Storage =

    /// An array whose every element the caller will write: not zeroed, which saves a pass.
    let uninit (dtype: DType) (n: int) =
        match dtype with
        | Float32 -> F32(Buffers.Uninit<float32> n)
        | Float64 -> F64(Buffers.Uninit<float> n)

    let zeros (dtype: DType) (n: int) =
        match dtype with
        | Float32 -> F32(Buffers.Zeros<float32> n)
        | Float64 -> F64(Buffers.Zeros<float> n)

    let full (dtype: DType) (n: int) (value: float) =
        match dtype with
        | Float32 -> F32(Array.create n (float32 value))
        | Float64 -> F64(Array.create n value)

    let ofFloat64 (dtype: DType) (data: float[]) =
        match dtype with
        | Float32 -> F32(Array.map float32 data)
        | Float64 -> F64(Array.copy data)

    let toFloat64 (s: Storage) =
        match s with
        | F32 a -> Array.map float a
        | F64 a -> Array.copy a

    let toFloat32 (s: Storage) =
        match s with
        | F32 a -> Array.copy a
        | F64 a -> Array.map float32 a

    let cast (dtype: DType) (s: Storage) =
        match dtype, s with
        | Float32, F32 _
        | Float64, F64 _ -> s
        | Float32, F64 a -> F32(Array.map float32 a)
        | Float64, F32 a -> F64(Array.map float a)

    /// Element i as a float64 (for scalar read-outs, not for kernels).
    let item (s: Storage) (i: int) =
        match s with
        | F32 a -> float a[i]
        | F64 a -> a[i]
