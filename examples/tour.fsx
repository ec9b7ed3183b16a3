// The F# face: `dotnet fsi examples/tour.fsx` after `dotnet fsi build.fsx -t Build`.
#r "../src/Forgetting.Core/bin/Release/net10.0/Forgetting.Core.dll"

open Forgetting.Analysis

// Mean activations of four units: one carries all the activity, then all share it.
printfn "one unit active: S = %.3f" (Sparsity.trevesRolls [| 0.0; 2.0; 0.0; 0.0 |])
printfn "all units alike: S = %.3f" (Sparsity.trevesRolls [| 0.5; 0.5; 0.5; 0.5 |])
