module Forgetting.Tests.SparsityCommandTests

open System.IO
open Expecto
open Forgetting.Tests

[<Tests>]
let tests =
    testList
        "forgetting sparsity"
        [ test "sparsity of a CSV file is printed" {
              let csv = Path.Combine(Cli.tempDir (), "acts.csv")
              File.WriteAllText(csv, "2,0,0,0\n0,2,0,0\n")
              let r = Cli.run [ "sparsity"; "--csv"; csv ]
              Expect.equal r.ExitCode 0 "exit code"
              Expect.equal (r.Stdout.Trim()) "2 samples x 4 units: sparsity 0.6667" "the output"
          }

          test "generated activations give the closed-form sparsity for one active unit" {
              let r = Cli.run [ "sparsity"; "--units"; "64"; "--samples"; "200"; "--seed"; "3" ]
              Expect.equal r.ExitCode 0 "exit code"
              let rows = r.Stdout.Split('\n') |> Array.map (fun l -> l.Trim())
              Expect.contains rows "1     1.0000      1.0000" "the row of one active unit"
              Expect.exists rows (fun l -> l.StartsWith "64     0.0") "a row of 64 active units"
          }

          test "a missing file is one clear line and exit code 1" {
              let r = Cli.run [ "sparsity"; "--csv"; "/nonexistent/acts.csv" ]
              Expect.equal r.ExitCode 1 "exit code"
              Expect.equal (r.Stderr.Trim()) "forgetting: no such file: /nonexistent/acts.csv" "stderr"
          }

          test "a ragged or non-numeric CSV names the row" {
              let dir = Cli.tempDir ()
              let ragged = Path.Combine(dir, "ragged.csv")
              File.WriteAllText(ragged, "1,2\n1\n")
              let r = Cli.run [ "sparsity"; "--csv"; ragged ]
              Expect.equal r.ExitCode 1 "exit code of a ragged CSV"
              Expect.stringContains r.Stderr "row 2 has 1 columns, row 1 has 2" "the ragged row"
              let text = Path.Combine(dir, "text.csv")
              File.WriteAllText(text, "1,x\n")
              let r2 = Cli.run [ "sparsity"; "--csv"; text ]
              Expect.equal r2.ExitCode 1 "exit code of a non-numeric CSV"
              Expect.stringContains r2.Stderr "row 1, column 2: 'x' is not a number" "the non-numeric cell"
          }

          test "negative activations are refused" {
              let csv = Path.Combine(Cli.tempDir (), "neg.csv")
              File.WriteAllText(csv, "1,-1\n")
              let r = Cli.run [ "sparsity"; "--csv"; csv ]
              Expect.equal r.ExitCode 1 "exit code"
              Expect.stringContains r.Stderr "non-negative" "the reason"
          }

          test "bad arguments exit 2 with usage and no stack trace" {
              let r = Cli.run [ "sparsity"; "--units"; "many" ]
              Expect.equal r.ExitCode 2 "exit code of a bad --units"
              Expect.stringContains r.Stderr "--units" "the option named"
              Expectations.stringDoesNotContain r.Stderr "   at " "no stack trace"
              let none = Cli.run []
              Expect.equal none.ExitCode 2 "exit code without a command"
              Expect.stringContains none.Stderr "name a command" "the usage hint"
          } ]
