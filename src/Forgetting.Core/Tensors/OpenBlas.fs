/// The system OpenBLAS (Debian: libopenblas0-pthread), bound at run time so that the library loads
/// and works without it: when it is absent, `available` is false and nothing else is touched.
[<RequireQualifiedAccess>]
module Forgetting.Tensors.OpenBlas

open System
open System.Runtime.CompilerServices
open System.Runtime.InteropServices

// CBLAS enum values (cblas.h).
[<Literal>]
let private RowMajor = 101

[<Literal>]
let private NoTrans = 111

[<Literal>]
let private Trans = 112

// Function pointers from NativeLibrary.GetExport are called through delegates: F# has no syntax to
// call an unmanaged function pointer, and a DllImportResolver is one per assembly, which a single
// binding should not claim. The signatures are blittable, so the marshalling stub is a plain call.
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private SgemmNative =
    delegate of
        order: int *
        transA: int *
        transB: int *
        m: int *
        n: int *
        k: int *
        alpha: float32 *
        a: nativeint *
        lda: int *
        b: nativeint *
        ldb: int *
        beta: float32 *
        c: nativeint *
        ldc: int ->
            unit

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private DgemmNative =
    delegate of
        order: int *
        transA: int *
        transB: int *
        m: int *
        n: int *
        k: int *
        alpha: float *
        a: nativeint *
        lda: int *
        b: nativeint *
        ldb: int *
        beta: float *
        c: nativeint *
        ldc: int ->
            unit

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private SetNumThreadsNative = delegate of threads: int -> unit

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private GetConfigNative = delegate of unit -> nativeint

type private Library =
    { Name: string
      Sgemm: SgemmNative
      Dgemm: DgemmNative
      SetNumThreads: SetNumThreadsNative option
      Config: string }

/// The names tried, in order: the SONAME Debian installs, then the development symlink (and the
/// usual names on other systems, so that a locally built OpenBLAS is found the same way).
let libraryNames =
    [ "libopenblas.so.0"
      "libopenblas.so"
      "libopenblas.dylib"
      "libopenblas.dll"
      "openblas" ]

let private export<'d when 'd :> Delegate> (handle: nativeint) (name: string) : 'd option =
    match NativeLibrary.TryGetExport(handle, name) with
    | true, address -> Some(Marshal.GetDelegateForFunctionPointer<'d> address)
    | _ -> None

let private tryLoad (name: string) : Library option =
    match NativeLibrary.TryLoad name with
    | false, _ -> None
    | true, handle ->
        match export<SgemmNative> handle "cblas_sgemm", export<DgemmNative> handle "cblas_dgemm" with
        | Some sgemm, Some dgemm ->
            let config =
                match export<GetConfigNative> handle "openblas_get_config" with
                | Some getConfig ->
                    match Marshal.PtrToStringAnsi(getConfig.Invoke()) with
                    | null -> ""
                    | text -> text.Trim()
                | None -> ""

            Some
                { Name = name
                  Sgemm = sgemm
                  Dgemm = dgemm
                  SetNumThreads = export<SetNumThreadsNative> handle "openblas_set_num_threads"
                  Config = config }
        | _ ->
            // A library of that name without CBLAS is of no use; let it go.
            NativeLibrary.Free handle
            None

let private library = lazy (libraryNames |> List.tryPick tryLoad)

/// Whether OpenBLAS (with CBLAS sgemm and dgemm) could be loaded.
let available () : bool = library.Force().IsSome

/// The name OpenBLAS was loaded by and its build configuration (openblas_get_config), if loaded.
let describe () : string option =
    library.Force()
    |> Option.map (fun l -> if l.Config = "" then l.Name else $"{l.Name}: {l.Config}")

let private get (op: string) =
    match library.Force() with
    | Some l -> l
    | None ->
        let tried = String.concat ", " libraryNames
        invalidOp $"{op}: OpenBLAS is not loadable (tried {tried}); on Debian install libopenblas0-pthread"

// OpenBLAS keeps one process-wide thread count; set it only when the engine's degree changes, as
// the call takes a lock inside OpenBLAS.
let mutable private threadsSet = 0

let private syncThreads (l: Library) =
    let degree = Parallelism.degree ()

    if degree <> threadsSet then
        l.SetNumThreads |> Option.iter (fun set -> set.Invoke degree)
        threadsSet <- degree

let private transpose flag = if flag then Trans else NoTrans

/// cblas_sgemm (float32) or cblas_dgemm (float64), row-major, on pinned, offset pointers and
/// arguments already checked by the caller: OpenBLAS reports bad arguments by printing to stderr and
/// returning, which must never be reached. The two routines differ only in the element type, so the
/// call is the one place that tells them apart: the type test folds per instantiation, and BitCast
/// hands alpha and beta over as the float32 or float64 they are, without boxing.
let internal gemm transA transB m n k (alpha: 'T) a lda b ldb (beta: 'T) c ldc : unit =
    let single = Type.op_Equality (typeof<'T>, typeof<float32>)

    if not single && not (Type.op_Equality (typeof<'T>, typeof<float>)) then
        raise (NotSupportedException $"OpenBLAS GEMM over {typeof<'T>}")

    let l = get (if single then "sgemm" else "dgemm")
    syncThreads l
    let ta, tb = transpose transA, transpose transB

    if single then
        let alpha, beta =
            Unsafe.BitCast<'T, float32> alpha, Unsafe.BitCast<'T, float32> beta

        l.Sgemm.Invoke(RowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else
        let alpha, beta = Unsafe.BitCast<'T, float> alpha, Unsafe.BitCast<'T, float> beta
        l.Dgemm.Invoke(RowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
