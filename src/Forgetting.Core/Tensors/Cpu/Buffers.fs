namespace Forgetting.Tensors.Cpu

open System
open System.Collections.Generic

// Why a pool: a training step makes the same arrays every time, most of them larger than the
// large-object threshold (85 kB: a [128, 256] float32 activation is 128 kB). Fresh ones go to the
// large-object heap, and each few megabytes of them cost a full collection; the profiles in
// bench/RESULTS.md put that memory management ahead of the matrix products in attention models. The
// tape knows when a gradient it made is dead (every rule that read it has run, and nothing it
// returns shares it), so it hands those arrays back here, and the next op of the same length reuses
// one. An array is only ever taken back from the scope that allocated it, so a tensor a caller can
// still see (an input, a parameter, a forward activation, a returned gradient) is never reused.

/// The free arrays of one element type, on this thread (no locks: a training loop runs on one thread;
/// a worker thread that allocates simply gets fresh arrays).
type internal FreeArrays<'T> private () =
    [<ThreadStatic; DefaultValue>]
    static val mutable private byLength: Dictionary<int, Stack<'T[]>>

    /// A free array of exactly this length, or null.
    static member Take(length: int) : 'T[] =
        let d = FreeArrays<'T>.byLength

        if isNull d then
            null
        else
            match d.TryGetValue length with
            | true, s when s.Count > 0 -> s.Pop()
            | _ -> null

    /// Keep `a` for reuse; false when this length already has its share.
    static member Give(a: 'T[], perLength: int) =
        if isNull FreeArrays<'T>.byLength then
            FreeArrays<'T>.byLength <- Dictionary()

        let s =
            match FreeArrays<'T>.byLength.TryGetValue a.Length with
            | true, s -> s
            | _ ->
                let s = Stack()
                FreeArrays<'T>.byLength[ a.Length ] <- s
                s

        if s.Count < perLength then
            s.Push a
            true
        else
            false

/// The arrays of the CPU backend: fresh ones, or ones the tape has finished with.
[<AbstractClass; Sealed>]
type internal Buffers private () =
    // Arrays shorter than this are left to the young generation, which collects them almost for free.
    static let minLength = 1024
    // At most this many free arrays of one length, and this many bytes in all, per thread.
    static let perLength = 32
    static let maxBytes = 256L * 1024L * 1024L

    /// The arrays allocated on this thread since the innermost open scope began (null when none is).
    [<ThreadStatic; DefaultValue>]
    static val mutable private born: HashSet<obj>

    [<ThreadStatic; DefaultValue>]
    static val mutable private held: int64

    [<ThreadStatic; DefaultValue>]
    static val mutable private reused: int64

    static member private Reuse<'T>(length: int) : 'T[] =
        let free =
            if length >= minLength then
                FreeArrays<'T>.Take length
            else
                null

        if not (isNull free) then
            Buffers.held <- Buffers.held - int64 length * int64 sizeof<'T>
            Buffers.reused <- Buffers.reused + 1L

        free

    static member private Record(a: 'T[]) =
        if a.Length >= minLength && not (isNull Buffers.born) then
            Buffers.born.Add a |> ignore

        a

    /// An array of this length whose every element the caller will write: a free one when there is one.
    static member Uninit<'T>(length: int) : 'T[] =
        match Buffers.Reuse<'T> length with
        | null -> Buffers.Record(GC.AllocateUninitializedArray<'T> length)
        | a -> Buffers.Record a

    /// An array of zeros (a fresh one is zero already; a reused one is cleared).
    static member Zeros<'T>(length: int) : 'T[] =
        match Buffers.Reuse<'T> length with
        | null -> Buffers.Record(Array.zeroCreate<'T> length)
        | a ->
            Array.Clear a
            Buffers.Record a

    /// Begin recording the arrays allocated on this thread; the result ends it. Scopes nest: what an
    /// inner scope allocated and did not give back counts as allocated by the enclosing one, which may
    /// give it back later (the gradients a backward pass returns, after the optimizer has read them).
    static member Open() =
        let previous = Buffers.born
        let mine = HashSet<obj>(HashIdentity.Reference)
        Buffers.born <- mine

        { new IDisposable with
            member _.Dispose() =
                if Object.ReferenceEquals(Buffers.born, mine) then
                    Buffers.born <- previous

                    if not (isNull previous) then
                        previous.UnionWith mine }

    static member private Keep(a: 'T[]) =
        let bytes = int64 a.Length * int64 sizeof<'T>

        if Buffers.held + bytes <= maxBytes && FreeArrays<'T>.Give(a, perLength) then
            Buffers.held <- Buffers.held + bytes

    /// Give back an array that nothing will read again, if the open scope allocated it (any other
    /// array is left alone: it may be an input, a parameter or an activation someone still holds).
    static member Release(a: obj) =
        if not (isNull Buffers.born) && Buffers.born.Remove a then
            match a with
            | :? (float32[]) as f -> Buffers.Keep f
            | :? (float[]) as d -> Buffers.Keep d
            | _ -> ()

    /// Give back every array the open scope allocated and has not given back, except those `keep` holds.
    static member ReleaseAllocated(keep: obj -> bool) =
        if not (isNull Buffers.born) then
            for a in Seq.toArray Buffers.born do
                if not (keep a) then
                    Buffers.Release a

    /// Arrays reused on this thread so far (for tests of the pool itself).
    static member Reused = Buffers.reused
