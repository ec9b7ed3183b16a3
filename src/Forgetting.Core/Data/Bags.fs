namespace Forgetting.Data

open System

/// A bag for multiple-instance learning: `Count` instances of the set's `Features` values each, row-major
/// in `Instances`, one label for the whole bag. `Witnesses` are the instances that carry the signal
/// (empty in a negative bag): the ground truth an attention read-out can be checked against.
type Bag =
    { Instances: float32[]
      Count: int
      Label: int
      Witnesses: int[] }

/// Bags with instances of one size.
type BagSet =
    { Name: string
      Features: int
      Bags: Bag[] }

/// Settings of the bit-pattern bags (mechanisms.md §4).
type BitPatternOptions =
    {
        BagCount: int
        InstancesPerBag: int
        Bits: int
        /// Distinct signal patterns; a positive bag holds `SignalsPerBag` of them (drawn with replacement).
        SignalCount: int
        SignalsPerBag: int
        /// Share of positive bags (rounded up).
        PositiveFraction: float
        /// The first `TrainCount` bags train, the rest test.
        TrainCount: int
        Seed: int
    }

/// Generated bit-pattern bags and the signal patterns they were built around.
type BitPatternSet =
    {
        /// Each signal as `Bits` values 0/1.
        Signals: float32[][]
        TrainBags: BagSet
        TestBags: BagSet
    }

/// Bit-pattern bags for multiple-instance learning: bags of random bit patterns, of which the positive
/// ones hold an implanted signal pattern. As in the Hopfield-layers reference data: signals are distinct
/// and not all zero; background instances are never all zero nor equal to a signal, so a bag is positive
/// exactly when it holds a signal.
[<RequireQualifiedAccess>]
module BitPatternBags =

    /// 2,048 bags of 16 instances of 8 bits, 8 signals, one per positive bag, half the bags positive,
    /// 1,536 train / 512 test.
    let defaults: BitPatternOptions =
        { BagCount = 2048
          InstancesPerBag = 16
          Bits = 8
          SignalCount = 8
          SignalsPerBag = 1
          PositiveFraction = 0.5
          TrainCount = 1536
          Seed = 1 }

    let private pattern (rng: Random) (bits: int) = rng.Next(1 <<< bits)

    let private toValues (bits: int) (p: int) =
        Array.init bits (fun b -> float32 ((p >>> (bits - 1 - b)) &&& 1))

    /// Generate the bags (all choices from `Random(o.Seed)`).
    let generate (o: BitPatternOptions) : BitPatternSet =
        if o.Bits < 1 || o.Bits > 24 then
            invalidArg (nameof o) $"bits per instance must be 1 … 24, got {o.Bits}"

        if o.SignalCount < 1 || int64 o.SignalCount >= (1L <<< o.Bits) - 1L then
            invalidArg
                (nameof o)
                $"{o.SignalCount} signals of {o.Bits} bits: need 1 … 2^bits - 2, leaving background patterns"

        if
            o.InstancesPerBag < 1
            || o.SignalsPerBag < 0
            || o.SignalsPerBag > o.InstancesPerBag
        then
            invalidArg
                (nameof o)
                $"{o.SignalsPerBag} signals in bags of {o.InstancesPerBag} instances: need 0 … instances per bag"

        if o.BagCount < 1 || o.TrainCount < 0 || o.TrainCount > o.BagCount then
            invalidArg (nameof o) $"{o.TrainCount} training bags of {o.BagCount}: need 0 … {o.BagCount}"

        if not (o.PositiveFraction > 0.0 && o.PositiveFraction < 1.0) then
            invalidArg (nameof o) $"the positive fraction must lie in (0, 1), got {o.PositiveFraction}"

        let rng = Random o.Seed
        let signals = Collections.Generic.List<int>()

        while signals.Count < o.SignalCount do
            let s = pattern rng o.Bits

            if s <> 0 && not (signals.Contains s) then
                signals.Add s

        let isSignal = Collections.Generic.HashSet<int>(signals)

        let positives =
            min o.BagCount (max 1 (int (ceil (float o.BagCount * o.PositiveFraction))))

        let labels = Array.init o.BagCount (fun i -> if i < positives then 1 else 0)
        Permutation.shuffleInPlace rng labels

        let bags =
            labels
            |> Array.map (fun label ->
                let patterns =
                    Array.init o.InstancesPerBag (fun _ ->
                        let mutable p = pattern rng o.Bits

                        while p = 0 || isSignal.Contains p do
                            p <- pattern rng o.Bits

                        p)

                let witnesses =
                    if label = 1 then
                        let positions = Permutation.random rng o.InstancesPerBag
                        let chosen = Array.sort positions[.. o.SignalsPerBag - 1]

                        for w in chosen do
                            patterns[w] <- signals[rng.Next signals.Count]

                        chosen
                    else
                        [||]

                { Instances = patterns |> Array.collect (toValues o.Bits)
                  Count = o.InstancesPerBag
                  Label = label
                  Witnesses = witnesses })

        let set name (bags: Bag[]) =
            { Name = name
              Features = o.Bits
              Bags = bags }

        { Signals = signals.ToArray() |> Array.map (toValues o.Bits)
          TrainBags = set "bit-patterns/train" bags[.. o.TrainCount - 1]
          TestBags = set "bit-patterns/test" bags[o.TrainCount ..] }

/// Settings of the DeepRC-style sequence bags.
type SequenceBagOptions =
    {
        BagCount: int
        SequencesPerBag: int
        MinLength: int
        MaxLength: int
        MotifCount: int
        MotifLength: int
        /// Share of a positive bag's sequences that carry a motif (at least one sequence).
        WitnessRate: float
        PositiveFraction: float
        TrainCount: int
        Seed: int
    }

/// A bag of amino-acid sequences (a repertoire), each sequence as letter codes 0 … 19 (see
/// `SequenceBags.Alphabet`). `Witnesses` are the sequences with an implanted motif.
type SequenceBag =
    { Sequences: byte[][]
      Label: int
      Witnesses: int[] }

/// Generated sequence bags and their motifs.
type SequenceBagSet =
    { Motifs: byte[][]
      TrainBags: SequenceBag[]
      TestBags: SequenceBag[] }

/// Immune-repertoire-like bags in the style of DeepRC's simulated data: bags of random amino-acid
/// sequences; in a positive bag a share of the sequences carries one of a few implanted motifs, and the
/// label is whether a motif is present. Background sequences are redrawn until they hold no motif, so
/// negative bags hold none.
[<RequireQualifiedAccess>]
module SequenceBags =

    /// The 20 amino acids, one letter each; a sequence's codes index this string.
    [<Literal>]
    let Alphabet = "ACDEFGHIKLMNPQRSTVWY"

    /// 400 bags of 100 sequences of 12 to 18 residues, 2 motifs of 4 residues, 5% witnesses in the
    /// positive half, 300 train / 100 test.
    let defaults: SequenceBagOptions =
        { BagCount = 400
          SequencesPerBag = 100
          MinLength = 12
          MaxLength = 18
          MotifCount = 2
          MotifLength = 4
          WitnessRate = 0.05
          PositiveFraction = 0.5
          TrainCount = 300
          Seed = 1 }

    /// A sequence as letters.
    let decode (sequence: byte[]) =
        String(sequence |> Array.map (fun c -> Alphabet[int c]))

    /// Whether `sequence` holds `motif` anywhere.
    let contains (motif: byte[]) (sequence: byte[]) =
        ReadOnlySpan(sequence).IndexOf(ReadOnlySpan motif) >= 0

    /// Generate the bags (all choices from `Random(o.Seed)`).
    let generate (o: SequenceBagOptions) : SequenceBagSet =
        if o.MotifLength < 1 || o.MinLength < o.MotifLength || o.MaxLength < o.MinLength then
            invalidArg
                (nameof o)
                $"sequence lengths {o.MinLength} … {o.MaxLength} must hold motifs of {o.MotifLength} residues"

        if o.MotifCount < 1 || o.SequencesPerBag < 1 || o.BagCount < 1 then
            invalidArg (nameof o) "at least one motif, one sequence per bag and one bag are needed"

        if o.TrainCount < 0 || o.TrainCount > o.BagCount then
            invalidArg (nameof o) $"{o.TrainCount} training bags of {o.BagCount}: need 0 … {o.BagCount}"

        if not (o.PositiveFraction > 0.0 && o.PositiveFraction < 1.0) then
            invalidArg (nameof o) $"the positive fraction must lie in (0, 1), got {o.PositiveFraction}"

        if not (o.WitnessRate > 0.0 && o.WitnessRate <= 1.0) then
            invalidArg (nameof o) $"the witness rate must lie in (0, 1], got {o.WitnessRate}"

        let rng = Random o.Seed

        let letters n =
            Array.init n (fun _ -> byte (rng.Next Alphabet.Length))

        let motifs = Collections.Generic.List<byte[]>()

        while motifs.Count < o.MotifCount do
            let m = letters o.MotifLength

            if not (motifs.Exists(fun x -> x.AsSpan().SequenceEqual(ReadOnlySpan m))) then
                motifs.Add m

        let background () =
            let mutable s = letters (rng.Next(o.MinLength, o.MaxLength + 1))

            while motifs.Exists(fun m -> contains m s) do
                s <- letters s.Length

            s

        let positives =
            min o.BagCount (max 1 (int (ceil (float o.BagCount * o.PositiveFraction))))

        let labels = Array.init o.BagCount (fun i -> if i < positives then 1 else 0)
        Permutation.shuffleInPlace rng labels

        let witnessCount = max 1 (int (Math.Round(o.WitnessRate * float o.SequencesPerBag)))

        let bags =
            labels
            |> Array.map (fun label ->
                let sequences = Array.init o.SequencesPerBag (fun _ -> background ())

                let witnesses =
                    if label = 1 then
                        let order = Permutation.random rng o.SequencesPerBag
                        let chosen = Array.sort order[.. witnessCount - 1]

                        for w in chosen do
                            let m = motifs[rng.Next motifs.Count]
                            let at = rng.Next(sequences[w].Length - m.Length + 1)
                            Array.blit m 0 sequences[w] at m.Length

                        chosen
                    else
                        [||]

                { Sequences = sequences
                  Label = label
                  Witnesses = witnesses })

        { Motifs = motifs.ToArray()
          TrainBags = bags[.. o.TrainCount - 1]
          TestBags = bags[o.TrainCount ..] }

    /// The bags with each sequence one-hot encoded: `maxLength` × 20 values per instance, positions past
    /// a sequence's end left zero.
    let oneHot (name: string) (maxLength: int) (bags: SequenceBag[]) : BagSet =
        let width = maxLength * Alphabet.Length

        let encode (bag: SequenceBag) =
            let values = Array.zeroCreate (bag.Sequences.Length * width)

            bag.Sequences
            |> Array.iteri (fun i s ->
                if s.Length > maxLength then
                    invalidArg (nameof maxLength) $"a sequence of {s.Length} residues exceeds the length {maxLength}"

                s
                |> Array.iteri (fun p c -> values[i * width + p * Alphabet.Length + int c] <- 1.0f))

            { Instances = values
              Count = bag.Sequences.Length
              Label = bag.Label
              Witnesses = bag.Witnesses }

        { Name = name
          Features = width
          Bags = Array.map encode bags }
