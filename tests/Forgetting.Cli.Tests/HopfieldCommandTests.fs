module Forgetting.Tests.HopfieldCommandTests

open System.IO
open Expecto
open Forgetting.Tests

[<Tests>]
let tests =
    testList
        "forgetting hopfield"
        [ test "a small run prints the summary and writes settings, runs and summary" {
              let dir = Path.Combine(Cli.tempDir (), "hopfield")

              let r =
                  Cli.run
                      [ "hopfield"
                        "--units"
                        "none"
                        "pfu"
                        "--adapted"
                        "false"
                        "--epochs"
                        "1"
                        "--seeds"
                        "2"
                        "--bags"
                        "64"
                        "--out"
                        dir ]

              Expect.equal r.ExitCode 0 $"exit code; stderr: {r.Stderr}"
              Expect.stringContains r.Stdout "test accuracy over 2 seed(s), 1 epochs, default settings" "the summary"
              Expect.stringContains r.Stdout "pooling    pfu" "a row per layer and unit"

              for f in
                  [ "settings.json"
                    "runs.csv"
                    "summary.csv"
                    "accuracy.svg"
                    "accuracy.png"
                    "forgotten-mass.svg"
                    "forgotten-mass.png" ] do
                  Expect.isTrue (File.Exists(Path.Combine(dir, f))) $"{f} written"

              let runs = File.ReadAllLines(Path.Combine(dir, "runs.csv"))
              Expect.equal runs.Length 5 "a header and 2 units × 2 seeds"
              let summary = File.ReadAllLines(Path.Combine(dir, "summary.csv"))
              Expect.stringContains summary[2] "pooling,pfu," "the PFU's row"
          }

          test "the repertoire task runs DeepRC's model with each unit" {
              let dir = Path.Combine(Cli.tempDir (), "repertoire")

              let r =
                  Cli.run
                      [ "hopfield"
                        "--task"
                        "repertoire"
                        "--units"
                        "none"
                        "pfu"
                        "--epochs"
                        "1"
                        "--seeds"
                        "1"
                        "--bags"
                        "16"
                        "--out"
                        dir ]

              Expect.equal r.ExitCode 0 $"exit code; stderr: {r.Stderr}"
              Expect.stringContains r.Stdout "repertoires, witness rate 0.05" "the summary's setting"
              Expect.stringContains r.Stdout "deeprc     pfu" "the PFU's row"
              let settings = File.ReadAllText(Path.Combine(dir, "settings.json"))
              Expect.stringContains settings "\"median_scope\": \"sample\"" "the PFU's median per bag, DeepRC's scope"
          }

          test "unknown units, layers, scopes and tasks are one line and exit 2" {
              for args, says in
                  [ [ "--units"; "gelu" ], "unknown partial-forgetting unit 'gelu'"
                    [ "--layers"; "conv" ], "unknown Hopfield layer 'conv'"
                    [ "--median-scope"; "batch" ], "unknown median scope 'batch'"
                    [ "--task"; "mnist" ], "unknown task 'mnist': bit-pattern, repertoire or vit"
                    [ "--epochs"; "0" ], "--epochs ≥ 1"
                    [ "--task"; "repertoire"; "--witness-rate"; "0" ], "--witness-rate in (0, 1]" ] do
                  let r = Cli.run ("hopfield" :: args)
                  Expect.equal r.ExitCode 2 $"exit code of {args}"
                  Expect.stringContains r.Stderr says "the message"
                  Expect.equal (r.Stderr.Trim().Split('\n').Length) 1 "one line"
          } ]
