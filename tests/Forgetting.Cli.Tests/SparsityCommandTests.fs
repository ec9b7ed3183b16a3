module Forgetting.Tests.SparsityCommandTests

open System.IO
open Xunit
open Forgetting.Tests

[<Fact>]
let ``sparsity of a CSV file is printed`` () =
    let csv = Path.Combine(Cli.tempDir (), "acts.csv")
    File.WriteAllText(csv, "2,0,0,0\n0,2,0,0\n")
    let r = Cli.run [ "sparsity"; "--csv"; csv ]
    Assert.Equal(0, r.ExitCode)
    Assert.Equal("2 samples x 4 units: sparsity 0.6667", r.Stdout.Trim())

[<Fact>]
let ``generated activations give the closed-form sparsity for one active unit`` () =
    let r = Cli.run [ "sparsity"; "--units"; "64"; "--samples"; "200"; "--seed"; "3" ]
    Assert.Equal(0, r.ExitCode)
    let rows = r.Stdout.Split('\n') |> Array.map (fun l -> l.Trim())
    Assert.Contains("1     1.0000      1.0000", rows)
    Assert.Contains(rows, fun l -> l.StartsWith "64     0.0")

[<Fact>]
let ``a missing file is one clear line and exit code 1`` () =
    let r = Cli.run [ "sparsity"; "--csv"; "/nonexistent/acts.csv" ]
    Assert.Equal(1, r.ExitCode)
    Assert.Equal("forgetting: no such file: /nonexistent/acts.csv", r.Stderr.Trim())

[<Fact>]
let ``a ragged or non-numeric CSV names the row`` () =
    let dir = Cli.tempDir ()
    let ragged = Path.Combine(dir, "ragged.csv")
    File.WriteAllText(ragged, "1,2\n1\n")
    let r = Cli.run [ "sparsity"; "--csv"; ragged ]
    Assert.Equal(1, r.ExitCode)
    Assert.Contains("row 2 has 1 columns, row 1 has 2", r.Stderr)
    let text = Path.Combine(dir, "text.csv")
    File.WriteAllText(text, "1,x\n")
    let r2 = Cli.run [ "sparsity"; "--csv"; text ]
    Assert.Equal(1, r2.ExitCode)
    Assert.Contains("row 1, column 2: 'x' is not a number", r2.Stderr)

[<Fact>]
let ``negative activations are refused`` () =
    let csv = Path.Combine(Cli.tempDir (), "neg.csv")
    File.WriteAllText(csv, "1,-1\n")
    let r = Cli.run [ "sparsity"; "--csv"; csv ]
    Assert.Equal(1, r.ExitCode)
    Assert.Contains("non-negative", r.Stderr)

[<Fact>]
let ``bad arguments exit 2 with usage and no stack trace`` () =
    let r = Cli.run [ "sparsity"; "--units"; "many" ]
    Assert.Equal(2, r.ExitCode)
    Assert.Contains("--units", r.Stderr)
    Assert.DoesNotContain("   at ", r.Stderr)
    let none = Cli.run []
    Assert.Equal(2, none.ExitCode)
    Assert.Contains("name a command", none.Stderr)
