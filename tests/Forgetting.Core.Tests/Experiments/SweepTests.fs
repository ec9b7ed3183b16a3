/// Sweeps as values: the grid a sweep file expands to, the ids of its runs, and its collection.
module Forgetting.Tests.SweepTests

open System
open System.Text.Json.Nodes
open Expecto
open Forgetting.Nn
open Forgetting.Experiments

let private sweepOf (baseRecipe: Recipe) (axes: string) =
    let node =
        JsonNode.Parse($$"""{ "base": {{Recipe.toText baseRecipe}}, "axes": {{axes}}, "output": "out" }""")

    Sweep.ofJson "/tmp" node

[<Tests>]
let tests =
    testList
        "sweeps"
        [ test "a grid is the product of its axes, the first slowest, each point resolved and checked" {
              let s =
                  sweepOf Recipe.single """{ "variant": ["sgd", "l2"], "optimizer.lr": [0.1, 0.2], "seeds": 2 }"""

              let runs = Sweep.expand s
              Expect.equal (Sweep.size s) 8L "2 × 2 × 2"

              Expect.equal
                  (runs |> List.map (fun r -> r.Recipe.Label))
                  [ for v in [ "sgd"; "l2" ] do
                        for _ in 1..4 -> v ]
                  "variants slowest"

              Expect.equal
                  (runs |> List.map (fun r -> r.Recipe.Seed))
                  [ for _ in 1..4 do
                        yield! [ 1L; 2L ] ]
                  "seeds fastest"

              Expect.equal runs[2].Recipe.Optimizer.Lr 0.2 "the learning rate"
              Expect.equal (runs[4].Recipe.Terms |> List.map (fun t -> t.Kind)) [ "l2" ] "l2's term"
              Expect.equal (runs |> List.map (fun r -> r.Id) |> List.distinct).Length 8 "an id per run"
              Expect.equal (Sweep.expand s |> List.map (fun r -> r.Id)) (runs |> List.map (fun r -> r.Id)) "stable ids"
              Expect.equal runs[0].Id (Sweep.id runs[0].Recipe) "the id is the recipe's hash"
              Expect.equal runs[0].Id.Length 12 "12 hex digits"
          }

          test "a path reaches a term by its kind, after the method that adds it" {
              let s =
                  sweepOf Recipe.defaults """{ "method": ["ewc"], "terms.ewc.settings.lambda": [10, 1000] }"""

              let runs = Sweep.expand s

              Expect.equal
                  (runs |> List.map (fun r -> r.Recipe.Terms.Head.Settings["lambda"]))
                  [ Number 10.0; Number 1000.0 ]
                  "λ"

              Expect.equal runs.Head.Recipe.Label "ewc" "the method's label"
          }

          test "what a grid cannot be is refused, naming the axis" {
              Expectations.refused
                  (fun () -> Sweep.expand (sweepOf Recipe.single """{ "optimizer.lrr": [1] }"""))
                  "optimizer has no field 'lrr'"

              Expectations.refused
                  (fun () -> Sweep.expand (sweepOf Recipe.single """{ "terms.ewc.settings.lambda": [1] }"""))
                  "no entry of kind 'ewc'"

              Expectations.refused
                  (fun () -> Sweep.expand (sweepOf Recipe.single """{ "optimizer.lr": ["fast"] }"""))
                  "'lr' must be a number"

              Expectations.refused
                  (fun () -> Sweep.expand (sweepOf Recipe.single """{ "optimizer.lr": [-1] }"""))
                  "--lr must be positive"

              Expectations.refused
                  (fun () -> Sweep.expand (sweepOf Recipe.single """{ "method": ["ewc"] }"""))
                  "vary 'variant'"

              Expectations.refused
                  (fun () -> Sweep.expand (sweepOf Recipe.defaults """{ "variant": ["sgd"] }"""))
                  "vary 'method'"

              Expectations.refused
                  (fun () -> Sweep.expand (sweepOf Recipe.single """{ "seed": [3, 3] }"""))
                  "are the same run"

              Expectations.refused
                  (fun () -> sweepOf Recipe.single """{ "seed": [] }""")
                  "an empty axis makes an empty grid"

              Expectations.refused (fun () -> sweepOf Recipe.single """{ }""") "the sweep has no axes"
              Expectations.refused (fun () -> sweepOf Recipe.single """{ "seeds": 0 }""") "at least 1"
          }

          test "collection: mean ± sample sd over the seeds per configuration, and a chart per metric" {
              let s =
                  sweepOf Recipe.single """{ "optimizer.lr": [0.1, 0.2], "variant": ["sgd", "l2"], "seeds": 2 }"""

              let runs = Sweep.expand s
              // A made-up metric: 10 × lr + the seed, so the mean and sd are known.
              let results =
                  [ for r in runs -> r, [ "m", Some(10.0 * r.Recipe.Optimizer.Lr + float r.Recipe.Seed); "none", None ] ]

              let rows = Sweep.table s results
              Expect.hasLength rows 4 "lr × variant"
              Expect.equal rows.Head.Values [ "optimizer.lr", "0.1"; "variant", "\"sgd\"" ] "the axes' values"
              Expect.equal rows.Head.Runs 2 "two seeds"
              let mean, sd = (snd rows.Head.Metrics.Head).Value
              Expect.floatClose Accuracy.veryHigh mean 2.5 "mean of 2 and 3"
              Expect.floatClose Accuracy.veryHigh sd (sqrt 0.5) "sample sd of 2 and 3"
              Expect.isNone (snd rows.Head.Metrics[1]) "a metric no run defines"

              match Sweep.panels rows with
              | [ Lines l ] ->
                  Expect.equal l.XLabel "optimizer.lr" "the metric against the numeric axis"
                  Expect.equal (l.Series |> List.map (fun x -> x.Label)) [ "sgd"; "l2" ] "a line per variant"
                  Expect.equal l.Series.Head.X [| 0.1; 0.2 |] "the axis' values"
              | other -> failtest $"one line chart, got {other}"

              let byVariant = sweepOf Recipe.single """{ "variant": ["sgd", "l2"], "seeds": 2 }"""

              let results =
                  [ for r in Sweep.expand byVariant -> r, [ "m", Some(float r.Recipe.Seed) ] ]

              match Sweep.panels (Sweep.table byVariant results) with
              | [ Columns b ] ->
                  Expect.equal (b.Bars |> List.map (fun (l, _, _) -> l)) [ "sgd"; "l2" ] "a bar per variant"
              | other -> failtest $"one bar chart, got {other}"
          } ]
