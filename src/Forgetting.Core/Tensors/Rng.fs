namespace Forgetting.Tensors

open System

/// An explicit, splittable random key: there is no global random state anywhere in the library.
/// Values are counter-based (the i-th draw is a hash of the key and i, SplitMix64's finaliser), so a
/// draw of any size is the same on any machine and thread count, and splitting never reuses a stream.
[<Struct>]
type Rng =
    { Key: uint64 }

    override r.ToString() = $"Rng(0x{r.Key:x16})"

[<RequireQualifiedAccess>]
module Rng =
    let private golden = 0x9E3779B97F4A7C15UL

    let private mix (z: uint64) =
        let z = (z ^^^ (z >>> 30)) * 0xBF58476D1CE4E5B9UL
        let z = (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
        z ^^^ (z >>> 31)

    /// The key for a seed.
    let create (seed: int64) = { Key = mix (uint64 seed + golden) }

    /// The i-th 64 random bits of a key.
    let bits (r: Rng) (i: int64) = mix (r.Key + uint64 (i + 1L) * golden)

    /// Two independent keys from one; use one and split the other again.
    let split (r: Rng) =
        { Key = mix (bits r -1L ^^^ 0x6A09E667F3BCC909UL) }, { Key = mix (bits r -2L ^^^ 0xBB67AE8584CAA73BUL) }

    /// n independent keys.
    let splitN (n: int) (r: Rng) =
        Array.init n (fun i -> { Key = mix (bits r (-3L - int64 i) ^^^ 0x3C6EF372FE94F82BUL) })

    /// n draws uniform in [0, 1), 53 random bits each.
    let uniform (n: int) (r: Rng) =
        Array.init n (fun i -> float (bits r (int64 i) >>> 11) * (1.0 / 9007199254740992.0))

    /// n standard normal draws (Box-Muller on consecutive pairs of uniforms).
    let normal (n: int) (r: Rng) =
        let u = uniform (n + n % 2) r

        Array.init n (fun i ->
            let pair = i / 2
            let radius = sqrt (-2.0 * log (1.0 - u[2 * pair]))
            let angle = 2.0 * Math.PI * u[2 * pair + 1]
            if i % 2 = 0 then radius * cos angle else radius * sin angle)

    /// An integer in [0, bound).
    let below (bound: int) (r: Rng) =
        if bound <= 0 then
            invalidArg (nameof bound) $"Rng.below needs a positive bound, got {bound}"

        int ((bits r 0L >>> 1) % uint64 bound)

    /// A uniformly random permutation of 0 .. n-1 (Fisher-Yates driven by the key).
    let permutation (n: int) (r: Rng) =
        let p = Array.init n id

        for i in n - 1 .. -1 .. 1 do
            let j = int ((bits r (int64 i) >>> 1) % uint64 (i + 1))
            let t = p[i]
            p[i] <- p[j]
            p[j] <- t

        p
