/// Shared set-ups of the CLI tests: a data cache filled from a loopback server, and output checks.
module Forgetting.Tests.Fixtures

open System.IO
open Expecto
open Forgetting.Tests
open Forgetting.Tests.TestData

let writeSums (dir: string) (files: Map<string, byte[]>) =
    let path = Path.Combine(dir, "md5sums.txt")
    File.WriteAllText(path, md5sums files)
    path

/// `forgetting data fetch <name>` from a loopback server into `cache`, checked against `sums`.
let fetchNamedFrom (name: string) (cache: string) (server: LoopbackServer) (sums: string) =
    Cli.run
        [ "data"
          "fetch"
          name
          "--cache-dir"
          cache
          "--source"
          "download"
          "--base-url"
          server.BaseUrl
          "--checksums"
          sums ]

/// `forgetting data fetch mnist` from a loopback server into `cache`, checked against `sums`.
let fetchFrom (cache: string) (server: LoopbackServer) (sums: string) =
    fetchNamedFrom "mnist" cache server sums

/// A data cache holding a generated data set `name` ("mnist" or "fashion-mnist": the same published
/// file names) of `train` and `test` 28×28 images.
let cachedAs (name: string) (train: int) (test: int) =
    let dir = Cli.tempDir ()
    let cache = Path.Combine(dir, "cache")
    let files = publishedFiles 5 train test
    use server = new LoopbackServer(files)
    let r = fetchNamedFrom name cache server (writeSums dir files)
    Expect.equal r.ExitCode 0 $"fetch failed: {r.Stderr}"
    cache

/// A data cache holding a generated "mnist" of `train` and `test` 28×28 images.
let cachedMnist (train: int) (test: int) = cachedAs "mnist" train test

/// One line on stderr, prefixed, and no stack trace.
let assertOneLineError (code: int) (r: Cli.Outcome) =
    Expect.equal r.ExitCode code $"exit code (stderr: {r.Stderr})"
    let lines = r.Stderr.Trim().Split '\n'
    Expect.hasLength lines 1 "one line on stderr"
    Expect.stringStarts lines[0] "forgetting: " "the prefix"
    Expectations.stringDoesNotContain r.Stderr "   at " "no stack trace"
