namespace Forgetting.Experiments

open Forgetting.Nn
open Forgetting.Mechanisms

/// Every objective term a run description can name, gathered from the mechanisms that declare them:
/// a new mechanism adds its kinds here, and the command line and the C# face offer them with no
/// further change.
[<RequireQualifiedAccess>]
module Catalog =

    let terms: TermKind list =
        Regularizers.kinds @ ActiveForgetting.kinds @ [ Ewc.kind; Si.kind; Mas.kind ]
