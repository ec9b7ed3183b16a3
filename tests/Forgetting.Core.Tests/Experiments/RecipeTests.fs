/// Recipes of every kind of run: a single task, a study (a figure), a task sequence; what each runner
/// accepts, and what survives JSON.
module Forgetting.Tests.RecipeTests

open System
open System.Text.Json.Nodes
open Expecto
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Experiments

let private roundTrip (r: Recipe) =
    Recipe.ofJson Catalog.terms (JsonNode.Parse(Recipe.toText r))

[<Tests>]
let tests =
    testList
        "recipes of every kind of run"
        [ test "a single-task recipe of a variant survives JSON exactly" {
              let r =
                  { Recipe.withVariant (Variant.byName "lateral_inhibition") Recipe.single with
                      Seed = 12L
                      Scenario =
                          { Recipe.single.Scenario with
                              TrainLimit = 500 } }
                  |> Classification.validate Catalog.terms

              Expect.equal (roundTrip r) r "the same recipe"
              Expect.equal (Recipe.variant r) (Variant.byName "lateral_inhibition") "the variant it trains"
          }

          test "a study recipe survives JSON, its settings resolved again by its figure" {
              let baseRecipe =
                  { Recipe.single with
                      Terms = [ TermKind.spec Catalog.terms "ers" [ "weight", Number 0.25 ] ] }

              let r =
                  Figures.recipe "fig4b" [ "noise", Number 1.0; "repeats", Count 3 ] baseRecipe

              let st = r.Study.Value
              Expect.equal st.Settings["noise"] (Number 1.0) "noise as given"
              Expect.equal st.Settings["perturb_layer"] (Count 1) "the default layer"
              Expect.equal r.Label "fig4b" "the label"
              let back = roundTrip r

              Expect.equal
                  (Figures.recipe back.Study.Value.Kind (Map.toList back.Study.Value.Settings) back)
                  r
                  "resolved again"
          }

          test "a recipe written before labels and studies reads as one without them" {
              let node = Recipe.toJson Recipe.defaults :?> JsonObject
              node.Remove "label" |> ignore
              node.Remove "study" |> ignore
              let r = Recipe.ofJson Catalog.terms node
              Expect.equal r { Recipe.defaults with Label = "" } "no label, no study"
          }

          test "a Hopfield study's recipe is its label and study alone, and one written in full still reads" {
              let r = HopfieldStudy.recipe [ "task", Choice "repertoire"; "seeds", Count 2 ]
              let node = Recipe.toJson r :?> JsonObject

              Expect.sequenceEqual
                  [ for KeyValue(k, _) in node -> k ]
                  [ "label"; "study" ]
                  "no scenario, model, terms or optimizer the study does not read"

              Expect.equal (roundTrip r) r "the same recipe"
              Expect.contains Recipe.selfContainedStudies HopfieldStudy.Kind "the study is self-contained"

              // Folders written before this form hold every field, the defaults among them.
              let full = Recipe.toJson { r with Study = None } :?> JsonObject
              full["study"] <- node["study"].DeepClone()
              Expect.equal (Recipe.ofJson Catalog.terms full) r "read in full"
          }

          test "each runner refuses the recipes of the others, in one line" {
              let single = Recipe.single
              let sequence = Methods.apply "ewc" [] Recipe.defaults
              Expectations.refused (fun () -> Classification.validate Catalog.terms sequence) "is a continual run"
              Expectations.refused (fun () -> ContinualRun.validate Catalog.terms single) "not a task sequence"

              Expectations.refused
                  (fun () -> ContinualRun.validate Catalog.terms (Figures.recipe "fig3c" [] sequence))
                  "a continual run has no study"

              Expectations.refused
                  (fun () ->
                      Classification.validate
                          Catalog.terms
                          { single with
                              Terms = [ TermKind.spec Catalog.terms "ewc" [] ] })
                  "a single-task run has no earlier task"

              Expectations.refused
                  (fun () -> Classification.validate Catalog.terms { single with Training = "joint" })
                  "sequential"

              Expectations.refused
                  (fun () ->
                      Classification.validate
                          Catalog.terms
                          { single with
                              Terms = [ TermKind.spec Catalog.terms "ers" [] ] })
                  "ers acts on forgetting layers, and 'sgd' has none"
          }

          test "a figure's settings are checked when its recipe is made" {
              Expectations.refused (fun () -> Figures.recipe "fig9" [] Recipe.single) "unknown figure 'fig9'"

              Expectations.refused
                  (fun () -> Figures.recipe "fig2" [ "draws", Count 0 ] Recipe.single)
                  "draws must be at least 1"

              Expectations.refused
                  (fun () -> Figures.recipe "fig2" [ "noise", Number 1.0 ] Recipe.single)
                  "no setting 'noise'"

              Expectations.refused
                  (fun () -> Figures.recipe "fig4b" [ "perturb_layer", Count 4 ] Recipe.single)
                  "1 to 3, got 4"
          }

          test "a bad value anywhere in a recipe is named in one line" {
              let o = Recipe.single.Optimizer
              let check r = Classification.validate Catalog.terms r

              Expectations.refused
                  (fun () ->
                      check
                          { Recipe.single with
                              Optimizer = { o with Lr = nan } })
                  "--lr must be positive"

              Expectations.refused
                  (fun () ->
                      check
                          { Recipe.single with
                              Optimizer = { o with Lr = infinity } })
                  "--lr must be positive"

              Expectations.refused
                  (fun () ->
                      check
                          { Recipe.single with
                              Optimizer = { o with Momentum = 1.0 } })
                  "[0, 1)"

              Expectations.refused (fun () -> check { Recipe.single with EpochsPerTask = 0 }) "--epochs"

              Expectations.refused
                  (fun () ->
                      check
                          { Recipe.single with
                              Scenario =
                                  { Recipe.single.Scenario with
                                      Data = [ "cifar" ] } })
                  "unknown data set 'cifar'"
          }

          test "a recipe of every preset survives JSON exactly, the layer's and optimizer's new fields with it" {
              for p in Presets.all do
                  let v = Variant.ofLayer p.Layer p.Shortcut p.Terms p.Variant

                  let r =
                      { Recipe.withVariant v Recipe.single with
                          Optimizer = p.Optimizer }
                      |> Classification.validate Catalog.terms

                  Expect.equal (roundTrip r) r $"the {p.Name} recipe"

              Expect.equal Presets.mil.Layer.RhoGrowth 1.018 "MiL's ρ growth"
              Expect.equal Presets.mil.Optimizer.Schedule "cosine" "MiL's schedule"
          }

          test "a recipe written before read-outs, W_f init, ρ growth and schedules reads with today's behaviour" {
              let r =
                  Recipe.withVariant (Variant.byName "lateral_inhibition") Recipe.single
                  |> Classification.validate Catalog.terms

              let node = Recipe.toJson r :?> JsonObject
              let layer = node["model"]["forgetting_layer"] :?> JsonObject

              for name in [ "wf_init_sd"; "rho_growth"; "readout" ] do
                  layer.Remove name |> ignore

              (node["optimizer"] :?> JsonObject).Remove "schedule" |> ignore

              for t in node["terms"] :?> JsonArray do
                  let settings = t["settings"] :?> JsonObject
                  settings.Remove "denominator" |> ignore
                  settings.Remove "on" |> ignore

              Expect.equal (Recipe.ofJson Catalog.terms node) r "the defaults of before"
          }

          test "an option the optimizer ignores or a bad new value is refused in one line" {
              let check r =
                  Classification.validate Catalog.terms r |> ignore

              let o = Recipe.single.Optimizer
              let layer = ForgettingLayerConfig.Default

              let withLayer f =
                  { Recipe.withVariant (Variant.byName "lateral_inhibition") Recipe.single with
                      Model =
                          { Recipe.single.Model with
                              Forgetting = Some f } }

              Expectations.refused
                  (fun () ->
                      check
                          { Recipe.single with
                              Optimizer =
                                  { o with
                                      Kind = "adam"
                                      Nesterov = true } })
                  "--nesterov is an option of sgd"

              Expectations.refused
                  (fun () ->
                      check
                          { Recipe.single with
                              Optimizer = { o with Schedule = "step" } })
                  "unknown learning-rate schedule 'step'"

              Expectations.refused (fun () -> check (withLayer { layer with RhoGrowth = 0.0 })) "--rho-growth"
              Expectations.refused (fun () -> check (withLayer { layer with WfInitSd = -1.0 })) "--wf-init-sd"

              Expectations.refused
                  (fun () -> check (withLayer { layer with Readout = "mean" }))
                  "unknown read-out 'mean'"
          }

          test "the cosine schedule steps per epoch from lr down to near 0; constant keeps lr" {
              let o =
                  { Recipe.single.Optimizer with
                      Lr = 0.04
                      Schedule = "cosine" }

              Expect.equal (o.LrAt 1 10) 0.04 "the first epoch at lr"
              Expect.floatClose Accuracy.veryHigh (o.LrAt 6 10) 0.02 "half way, half"
              Expect.floatClose Accuracy.veryHigh (o.LrAt 10 10) (0.02 * (1.0 + cos (Math.PI * 0.9))) "the last epoch"
              Expect.equal ({ o with Schedule = "constant" }.LrAt 7 10) 0.04 "constant"
          } ]
