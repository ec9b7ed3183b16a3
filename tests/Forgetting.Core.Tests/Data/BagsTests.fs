module Forgetting.Tests.Data.BagsTests

open System
open Xunit
open Forgetting.Data

let private instance (bag: Bag) (features: int) (i: int) =
    bag.Instances[i * features .. (i + 1) * features - 1]

[<Fact>]
let ``bit-pattern bags: the defaults, seeded, signals only in positive bags`` () =
    let o = BitPatternBags.defaults
    let s = BitPatternBags.generate o
    Assert.Equal(1536, s.TrainBags.Bags.Length)
    Assert.Equal(512, s.TestBags.Bags.Length)
    Assert.Equal(8, s.Signals.Length)
    Assert.Equal(8, s.Signals |> Array.distinct |> Array.length)
    Assert.DoesNotContain(s.Signals, fun p -> Array.forall ((=) 0.0f) p)
    let bags = Array.append s.TrainBags.Bags s.TestBags.Bags
    Assert.Equal(1024, bags |> Array.filter (fun b -> b.Label = 1) |> Array.length)

    for bag in bags do
        Assert.Equal(16, bag.Count)
        Assert.Equal(16 * 8, bag.Instances.Length)
        let instances = Array.init 16 (instance bag 8)

        let signalAt =
            instances |> Array.map (fun x -> s.Signals |> Array.exists (fun p -> p = x))

        Assert.DoesNotContain(instances, fun x -> Array.forall ((=) 0.0f) x)

        if bag.Label = 1 then
            Assert.Equal(1, bag.Witnesses.Length)
            Assert.True(signalAt[bag.Witnesses[0]])
            Assert.Equal(1, signalAt |> Array.filter id |> Array.length)
        else
            Assert.Empty bag.Witnesses
            Assert.DoesNotContain(true, signalAt)

    Assert.Equal(s, BitPatternBags.generate o)
    Assert.NotEqual(s, BitPatternBags.generate { o with Seed = 2 })

[<Fact>]
let ``bit-pattern bags with several signals per bag, and bad settings refused`` () =
    let s =
        BitPatternBags.generate
            { BitPatternBags.defaults with
                BagCount = 40
                TrainCount = 30
                SignalsPerBag = 3
                PositiveFraction = 0.25 }

    let bags = Array.append s.TrainBags.Bags s.TestBags.Bags
    Assert.Equal(10, bags |> Array.filter (fun b -> b.Label = 1) |> Array.length)

    for bag in bags |> Array.filter (fun b -> b.Label = 1) do
        Assert.Equal(3, bag.Witnesses |> Array.distinct |> Array.length)

    Assert.Throws<ArgumentException>(fun () ->
        BitPatternBags.generate
            { BitPatternBags.defaults with
                Bits = 3
                SignalCount = 7 }
        |> ignore)
    |> ignore

[<Fact>]
let ``sequence bags: motifs in the witnesses of positive bags, nowhere else`` () =
    let o = SequenceBags.defaults
    let s = SequenceBags.generate o
    Assert.Equal(300, s.TrainBags.Length)
    Assert.Equal(100, s.TestBags.Length)
    Assert.Equal(2, s.Motifs.Length)

    let has (seq: byte[]) =
        s.Motifs |> Array.exists (fun m -> SequenceBags.contains m seq)

    for bag in Array.append s.TrainBags s.TestBags do
        Assert.Equal(100, bag.Sequences.Length)
        Assert.All(bag.Sequences, fun q -> Assert.InRange(q.Length, 12, 18))
        Assert.All(bag.Sequences, fun q -> Assert.All(q, fun c -> Assert.InRange(int c, 0, 19)))

        let carriers =
            bag.Sequences |> Array.indexed |> Array.filter (snd >> has) |> Array.map fst

        if bag.Label = 1 then
            Assert.Equal(5, bag.Witnesses.Length)
            Assert.Equal<int[]>(bag.Witnesses, carriers)
        else
            Assert.Empty carriers

    Assert.Equal(
        200,
        Array.append s.TrainBags s.TestBags
        |> Array.filter (fun b -> b.Label = 1)
        |> Array.length
    )

    Assert.Equal(s, SequenceBags.generate o)
    Assert.Equal("ACDE", SequenceBags.decode [| 0uy; 1uy; 2uy; 3uy |])

[<Fact>]
let ``one-hot sequence bags: one 1 per residue, zeros past the end`` () =
    let s =
        SequenceBags.generate
            { SequenceBags.defaults with
                BagCount = 4
                TrainCount = 2
                SequencesPerBag = 3 }

    let set = SequenceBags.oneHot "seq" 18 s.TrainBags
    Assert.Equal(18 * 20, set.Features)

    for bag, source in Array.zip set.Bags s.TrainBags do
        Assert.Equal(3, bag.Count)

        for i in 0..2 do
            let row = instance bag set.Features i
            let q = source.Sequences[i]
            Assert.Equal(float32 q.Length, Array.sum row)

            for p in 0 .. q.Length - 1 do
                Assert.Equal(1.0f, row[p * 20 + int q[p]])
