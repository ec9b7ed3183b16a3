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
