// A naive reference GEMM (row-major, BLAS argument order): correct but slow; the blocked kernel replaces it.
module Forgetting.Tensors.Gemm

let inline private gemm
    transA
    transB
    m
    n
    k
    (alpha: ^T)
    (a: ^T[])
    aOff
    lda
    (b: ^T[])
    bOff
    ldb
    (beta: ^T)
    (c: ^T[])
    cOff
    ldc
    =
    for i in 0 .. m - 1 do
        for j in 0 .. n - 1 do
            let mutable acc = LanguagePrimitives.GenericZero

            for p in 0 .. k - 1 do
                let av =
                    if transA then
                        a[aOff + p * lda + i]
                    else
                        a[aOff + i * lda + p]

                let bv =
                    if transB then
                        b[bOff + j * ldb + p]
                    else
                        b[bOff + p * ldb + j]

                acc <- acc + av * bv

            let ci = cOff + i * ldc + j

            c[ci] <-
                alpha * acc
                + (if beta = LanguagePrimitives.GenericZero then
                       LanguagePrimitives.GenericZero
                   else
                       beta * c[ci])

let sgemm
    (transA: bool)
    (transB: bool)
    (m: int)
    (n: int)
    (k: int)
    (alpha: float32)
    (a: float32[])
    (aOffset: int)
    (lda: int)
    (b: float32[])
    (bOffset: int)
    (ldb: int)
    (beta: float32)
    (c: float32[])
    (cOffset: int)
    (ldc: int)
    : unit =
    gemm transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc

let dgemm
    (transA: bool)
    (transB: bool)
    (m: int)
    (n: int)
    (k: int)
    (alpha: float)
    (a: float[])
    (aOffset: int)
    (lda: int)
    (b: float[])
    (bOffset: int)
    (ldb: int)
    (beta: float)
    (c: float[])
    (cOffset: int)
    (ldc: int)
    : unit =
    gemm transA transB m n k alpha a aOffset lda b bOffset ldb beta c cOffset ldc
