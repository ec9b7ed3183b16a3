namespace Forgetting.Cli

/// A failure the user can fix: printed as one line, then the process exits with the code.
exception UserError of message: string * exitCode: int

module Exit =
    /// Exit code for bad arguments (Argu's usage errors use it too).
    let usage = 2
    /// Exit code for bad input data or files.
    let input = 1
    /// Exit code for a run whose training diverged (a loss that is no longer finite).
    let diverged = 3

    let inputError message = raise (UserError(message, input))

/// Checks of command-line values shared by every command.
module Check =
    /// A float option's value, refused with a usage error when NaN or ±∞ (Argu parses "nan",
    /// "Infinity" and 1e309 as floats).
    let finite (name: string) (v: float) =
        if not (System.Double.IsFinite v) then
            raise (UserError($"--{name} must be a finite number, got {v}", Exit.usage))

        v

    /// A count option's value, refused with a usage error above `limit`: a count of 2^31 − 1 would
    /// otherwise be attempted and end in an out-of-memory abort.
    let atMost (name: string) (limit: int) (v: int) =
        if v > limit then
            raise (UserError($"--{name} must be at most {limit}, got {v}", Exit.usage))

        v

    /// Refuse a net whose parameters, gradients and optimizer state (four copies of every weight, as
    /// float32) would not fit in the memory this process may use.
    let modelFits (inputs: int) (hidden: int list) (outputs: int) =
        let sizes = inputs :: hidden @ [ outputs ]

        let weights =
            List.pairwise sizes |> List.sumBy (fun (a, b) -> (int64 a + 1L) * int64 b)

        let needed = 16L * weights
        let available = System.GC.GetGCMemoryInfo().TotalAvailableMemoryBytes

        if needed > available / 2L then
            raise (
                UserError(
                    $"a net of hidden sizes {hidden} has {weights} weights, about {needed / 1_000_000L} MB to train, more than half the {available / 1_000_000L} MB available; use smaller --hidden sizes",
                    Exit.usage
                )
            )
