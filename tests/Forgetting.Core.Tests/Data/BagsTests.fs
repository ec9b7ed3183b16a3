module Forgetting.Tests.Data.BagsTests

open System
open Expecto
open Forgetting.Data
open Forgetting.Tests

let private instance (bag: Bag) (features: int) (i: int) =
    bag.Instances[i * features .. (i + 1) * features - 1]

[<Tests>]
let tests =
    testList
        "multiple-instance bags"
        [ test "bit-pattern bags: the defaults, seeded, signals only in positive bags" {
              let o = BitPatternBags.defaults
              let s = BitPatternBags.generate o
              Expect.equal s.TrainBags.Bags.Length 1536 "s.TrainBags.Bags.Length"
              Expect.equal s.TestBags.Bags.Length 512 "s.TestBags.Bags.Length"
              Expect.equal s.Signals.Length 8 "s.Signals.Length"
              Expect.equal (s.Signals |> Array.distinct |> Array.length) 8 "s.Signals |> Array.distinct |> Array.length"
              Expect.all s.Signals (fun p -> not (Array.forall ((=) 0.0f) p)) "no signal is all zeros"
              let bags = Array.append s.TrainBags.Bags s.TestBags.Bags

              Expect.equal
                  (bags |> Array.filter (fun b -> b.Label = 1) |> Array.length)
                  1024
                  "bags |> Array.filter (fun b -> b.Label = 1) |> Array.length"

              for bag in bags do
                  Expect.equal bag.Count 16 "bag.Count"
                  Expect.equal bag.Instances.Length (16 * 8) "bag.Instances.Length"
                  let instances = Array.init 16 (instance bag 8)

                  let signalAt =
                      instances |> Array.map (fun x -> s.Signals |> Array.exists (fun p -> p = x))

                  Expect.all instances (fun x -> not (Array.forall ((=) 0.0f) x)) "no instance is all zeros"

                  if bag.Label = 1 then
                      Expect.equal bag.Witnesses.Length 1 "bag.Witnesses.Length"
                      Expect.isTrue (signalAt[bag.Witnesses[0]]) "signalAt[bag.Witnesses[0]]"

                      Expect.equal
                          (signalAt |> Array.filter id |> Array.length)
                          1
                          "signalAt |> Array.filter id |> Array.length"
                  else
                      Expect.isEmpty bag.Witnesses "bag.Witnesses"
                      Expect.isFalse (Array.contains true signalAt) "no instance of a negative bag is a signal"

              Expect.equal (BitPatternBags.generate o) s "BitPatternBags.generate o"

              Expect.notEqual
                  (BitPatternBags.generate { o with Seed = 2 })
                  s
                  "BitPatternBags.generate ( o with Seed = 2 )"
          }

          test "bit-pattern bags with several signals per bag, and bad settings refused" {
              let s =
                  BitPatternBags.generate
                      { BitPatternBags.defaults with
                          BagCount = 40
                          TrainCount = 30
                          SignalsPerBag = 3
                          PositiveFraction = 0.25 }

              let bags = Array.append s.TrainBags.Bags s.TestBags.Bags

              Expect.equal
                  (bags |> Array.filter (fun b -> b.Label = 1) |> Array.length)
                  10
                  "bags |> Array.filter (fun b -> b.Label = 1) |> Array.length"

              for bag in bags |> Array.filter (fun b -> b.Label = 1) do
                  Expect.equal
                      (bag.Witnesses |> Array.distinct |> Array.length)
                      3
                      "bag.Witnesses |> Array.distinct |> Array.length"

              Expectations.throws<ArgumentException> "more signals than 3 bits can tell apart" (fun () ->
                  BitPatternBags.generate
                      { BitPatternBags.defaults with
                          Bits = 3
                          SignalCount = 7 }
                  |> ignore)
              |> ignore
          }

          test "sequence bags: motifs in the witnesses of positive bags, nowhere else" {
              let o = SequenceBags.defaults
              let s = SequenceBags.generate o
              Expect.equal s.TrainBags.Length 300 "s.TrainBags.Length"
              Expect.equal s.TestBags.Length 100 "s.TestBags.Length"
              Expect.equal s.Motifs.Length 2 "s.Motifs.Length"

              let has (seq: byte[]) =
                  s.Motifs |> Array.exists (fun m -> SequenceBags.contains m seq)

              for bag in Array.append s.TrainBags s.TestBags do
                  Expect.equal bag.Sequences.Length 100 "bag.Sequences.Length"

                  for q in bag.Sequences do
                      Expectations.inRange q.Length 12 18 "the length of a sequence"

                  for q in bag.Sequences do
                      for c in q do
                          Expectations.inRange (int c) 0 19 "a residue code"

                  let carriers =
                      bag.Sequences |> Array.indexed |> Array.filter (snd >> has) |> Array.map fst

                  if bag.Label = 1 then
                      Expect.equal bag.Witnesses.Length 5 "bag.Witnesses.Length"
                      Expect.equal carriers bag.Witnesses "carriers"
                  else
                      Expect.isEmpty carriers "carriers"

              Expect.equal
                  (Array.append s.TrainBags s.TestBags
                   |> Array.filter (fun b -> b.Label = 1)
                   |> Array.length)
                  200
                  "positive bags"

              Expect.equal (SequenceBags.generate o) s "SequenceBags.generate o"

              Expect.equal
                  (SequenceBags.decode [| 0uy; 1uy; 2uy; 3uy |])
                  "ACDE"
                  "SequenceBags.decode [| 0uy; 1uy; 2uy; 3uy |]"
          }

          test "one-hot sequence bags: one 1 per residue, zeros past the end" {
              let s =
                  SequenceBags.generate
                      { SequenceBags.defaults with
                          BagCount = 4
                          TrainCount = 2
                          SequencesPerBag = 3 }

              let set = SequenceBags.oneHot "seq" 18 s.TrainBags
              Expect.equal set.Features (18 * 20) "set.Features"

              for bag, source in Array.zip set.Bags s.TrainBags do
                  Expect.equal bag.Count 3 "bag.Count"

                  for i in 0..2 do
                      let row = instance bag set.Features i
                      let q = source.Sequences[i]
                      Expect.equal (Array.sum row) (float32 q.Length) "Array.sum row"

                      for p in 0 .. q.Length - 1 do
                          Expect.equal (row[p * 20 + int q[p]]) 1.0f "row[p * 20 + int q[p]]"
          } ]
