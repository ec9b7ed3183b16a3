namespace Forgetting.Training

open Forgetting.Tensors
open Forgetting.Data

/// Labelled examples held in memory as one tensor: inputs [N, features] (float32) and labels.
type Examples =
    { Inputs: Tensor
      Labels: int[]
      Classes: int }

    member e.Count = e.Labels.Length

[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Examples =

    /// A data set as one tensor, flattened to [N, features], without copying the images: a data set's
    /// arrays are never written after loading.
    let ofDataset (d: Dataset) =
        let n = d.Labels.Length

        { Inputs = Tensor.wrap32 [| n; (if n = 0 then 0 else d.Images.Length / n) |] d.Images
          Labels = d.Labels
          Classes = d.Classes }

    /// A task's view (a subset, perhaps permuted), copied out once.
    let ofView (v: DataView) = ofDataset (DataView.materialise v)

    /// The first `count` examples (all when count ≥ N), for quick runs.
    let take (count: int) (e: Examples) =
        if count >= e.Count then
            e
        else
            { e with
                Inputs = Tensor.slice 0 count e.Inputs
                Labels = e.Labels[.. count - 1] }
