/// `forgetting bench` as a process: the workloads of issue #17 at a small size, and their argument checks.
module Forgetting.Tests.BenchCommandTests

open Expecto
open Forgetting.Tests

[<Tests>]
let tests =
    testList
        "forgetting bench"
        [ test
              "--workload epoch and epoch-forgetting print one JSON line each with a finite loss; --images 0 is refused" {
              for workload in [ "epoch"; "epoch-forgetting" ] do
                  let r =
                      Cli.run
                          [ "bench"
                            "--workload"
                            workload
                            "--images"
                            "512"
                            "--batch"
                            "128"
                            "--reps"
                            "1" ]

                  Expect.equal r.ExitCode 0 $"exit code of {workload}; stderr: {r.Stderr}"
                  let lines = r.Stdout.Trim().Split('\n')
                  Expect.equal lines.Length 1 "one line"

                  let d = System.Text.Json.JsonDocument.Parse(lines[0]).RootElement
                  Expect.equal (d.GetProperty("workload").GetString()) workload "the workload"
                  Expect.equal (d.GetProperty("images").GetInt32()) 512 "the images"
                  Expect.equal (d.GetProperty("batch").GetInt32()) 128 "the batch"
                  Expect.equal (d.GetProperty("reps").GetInt32()) 1 "the epochs"
                  Expect.isGreaterThan (d.GetProperty("ms_per_step_median").GetDouble()) 0.0 "a timing"
                  Expect.isGreaterThan (d.GetProperty("samples_per_s").GetDouble()) 0.0 "a throughput"

                  let loss = d.GetProperty("final_loss").GetDouble()
                  Expect.isTrue (System.Double.IsFinite loss && loss > 0.0) $"a finite loss, got {loss}"

                  // 512 images in batches of 128 are 4 steps; the late window leaves the last one out.
                  Expect.equal (d.GetProperty("alloc_window_steps").GetInt32()) 3 "the allocation window"

                  for field in
                      [ "alloc_bytes_per_step_early"
                        "alloc_bytes_per_step_late"
                        "alloc_bytes_per_step_mean" ] do
                      Expect.isGreaterThan (d.GetProperty(field).GetDouble()) 0.0 field

              let bad = Cli.run [ "bench"; "--workload"; "epoch"; "--images"; "0" ]
              Expect.equal bad.ExitCode 2 "exit code"
              Expect.stringContains bad.Stderr "--images must be at least 1, got 0" "the message"
              Expect.equal (bad.Stderr.Trim().Split('\n').Length) 1 "one line"
          } ]
