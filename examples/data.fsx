// The data layer from F#: `dotnet fsi examples/data.fsx` after `dotnet fsi build.fsx -t Build` and
// `forgetting data fetch fashion-mnist`. Core references System.Numerics.Tensors, which a script pulls itself.
#r "nuget: System.Numerics.Tensors, 10.0.12"
#r "../src/Forgetting.Core/bin/Release/net10.0/Forgetting.Core.dll"

open System
open Forgetting.Data

let fmnist = Cache.load (Cache.directory None) FashionMnist // verified against manifest.json
printfn "train %d x %A, test %d" (Dataset.count fmnist.Train) fmnist.Train.Shape (Dataset.count fmnist.Test)

let tasks = Tasks.permuted 1 10 true fmnist // 10 tasks, the first unpermuted
let batches = Batches.epoch (Random 1) 128 Keep tasks[1].Train |> Seq.toArray
printfn "task %d: %d batches, the last of %d" tasks[1].Id batches.Length (Array.last batches).Count

let split = Tasks.splitByClasses (Tasks.classGroups 10 2) fmnist
printfn "%s: %d train samples" split[2].Name (DataView.count split[2].Train)

let bags = BitPatternBags.generate BitPatternBags.defaults
printfn "bit-pattern bags: %d train / %d test" bags.TrainBags.Bags.Length bags.TestBags.Bags.Length
