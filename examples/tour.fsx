// The F# face: `dotnet fsi examples/tour.fsx` after `dotnet fsi build.fsx -t Build`.
#r "../src/Forgetting.Core/bin/Release/net10.0/Forgetting.Core.dll"
#r "nuget: System.Numerics.Tensors, 10.0.12"

open Forgetting.Tensors
open Forgetting.Nn
open Forgetting.Mechanisms
open Forgetting.Analysis

// A gradient: d/dx Σ tanh(x)·x = tanh x + x (1 − tanh² x).
let x = Tensor.ofFloat64 [| 3 |] [| 1.0; -2.0; 0.5 |]
let value, g = Tensor.valueAndGrad (fun x -> Tensor.sum (Tensor.tanh x * x)) x
printfn "f(x) = %.4f, grad = %A" value.Item (g.ToFloat64Array() |> Array.map (fun v -> round (v * 1e4) / 1e4))

// A model composed as functions, with a forgetting layer after the hidden ReLU.
let model =
    Layer.sequential
        [ "fc1", Layer.dense 4 8
          "relu1", Layer.relu
          "forget1", ActiveForgetting.layer ForgettingLayerConfig.Default 8
          "fc2", Layer.dense 8 3 ]

let p = model.Init (Rng.create 1L) Float32
let batch = Tensor.uniform (Rng.create 2L) Float32 [| 5; 4 |] 0.0 1.0
let logits, trace = model.Forward Mode.Eval p batch
// The trace records activations and gates, and each dense layer's output with how its per-sample
// gradients follow from the gradient there (what EWC's Fisher and MAS read without a loop).
let recorded =
    [ for e in trace ->
          e.Path,
          match e.Kind with
          | Gradient(param, _) -> $"per-sample rule of {param}"
          | kind -> string kind ]

printfn "logits %A; the trace holds %A" logits.Shape recorded

// The forgetting losses read the trace: gates start half open (W_f = 0), so ERS = 1/2.
printfn "ERS = %.4f, IRS = %.4f" (ActiveForgetting.inhibitionLoss trace).Item (ActiveForgetting.lateralLoss trace).Item

// The loss and its gradient over the whole parameter tree.
let loss (q: Params) =
    let out, tr = model.Forward Mode.Eval q batch

    Functional.crossEntropy out [| 0; 1; 2; 0; 1 |]
    + ActiveForgetting.inhibitionLoss tr * 0.1

let l, grads = Params.valueAndGrad loss p
printfn "loss %.4f; gradient tensors: %A" l.Item [ for path, t in Params.flatten grads -> path, t.Shape ]

// Sparsity of the hidden layer's mean activation over the batch.
let hidden = trace |> List.find (fun e -> e.Path = "relu1")
let means = (Tensor.meanAxis 0 false hidden.Value).ToFloat64Array()
printfn "hidden-layer sparsity %.3f" (Sparsity.trevesRolls means)

// A continual run is one value, a recipe: here EWC on 3 permuted MNIST tasks (Task-IL), 2,000 training
// digits per task and 3 epochs each, from the data cache (`forgetting data fetch mnist`).
open Forgetting.Data
open Forgetting.Experiments

let recipe =
    { Methods.apply "ewc" [ ("lambda", Number 100.0) ] Recipe.defaults with
        Scenario =
            { Recipe.defaults.Scenario with
                Tasks = 3
                TrainLimit = 2000 }
        EpochsPerTask = 3 }

let result =
    ContinualRun.run Catalog.terms (Cache.load (Cache.directory None)) ignore None recipe

printfn "R after each task: %A" result.R[1..]

for m in ContinualRun.metrics result do
    printfn "%s = %s" m.Name (m.Value |> Option.map (sprintf "%.4f") |> Option.defaultValue "undefined")
