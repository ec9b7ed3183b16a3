"""Medians over the rounds of `dotnet fsi build.fsx -t Bench` (bench/last-run.jsonl), as a Markdown table.

Usage: python3 bench/summarise.py [bench/last-run.jsonl]
"""
import json
import statistics
import sys
from collections import defaultdict

path = sys.argv[1] if len(sys.argv) > 1 else "bench/last-run.jsonl"
runs = defaultdict(list)
allocs = defaultdict(list)  # the F# epochs' managed bytes per step, early and late in the epoch
for line in open(path):
    line = line.strip()
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    impl = d["impl"] + ("" if d["impl"] == "pytorch" else f" ({d['gemm']})")
    if "method" in d:  # fisher: the batched sums, PyTorch's per-sample loop or its vmap
        impl += f" {d['method']}"
    if d["workload"] == "gemm":
        key = (f"gemm {d['m']}x{d['k']}x{d['n']}", impl)
        runs[key].append((d["ms_median"], d["gflops"]))
    else:
        # The variant is in the workload's name (mlp / mlp-forgetting, epoch / epoch-forgetting), so each
        # gets its own rows; the epochs also by their data-set size, so a small run stays apart.
        workload = f"{d['workload']} batch {d['batch']}" + (f" images {d['images']}" if "images" in d else "")
        runs[(workload, impl)].append((d["ms_per_step_median"], d.get("peak_rss_mb")))
        if "alloc_bytes_per_step_early" in d:
            allocs[(workload, impl)].append((d["alloc_bytes_per_step_early"], d["alloc_bytes_per_step_late"]))

print("| workload | implementation | rounds | ms (median of round medians) | GFLOP/s or peak RSS MB |")
print("| --- | --- | --- | --- | --- |")
for (workload, impl), values in sorted(runs.items()):
    ms = statistics.median(v[0] for v in values)
    other = [v[1] for v in values if v[1] is not None]
    extra = f"{statistics.median(other):.1f}" if other else ""
    print(f"| {workload} | {impl} | {len(values)} | {ms:.3f} | {extra} |")

if allocs:
    print()
    print("| workload | implementation | rounds | MB allocated per step, early | late |")
    print("| --- | --- | --- | --- | --- |")
    for (workload, impl), values in sorted(allocs.items()):
        early = statistics.median(v[0] for v in values) / 1048576
        late = statistics.median(v[1] for v in values) / 1048576
        print(f"| {workload} | {impl} | {len(values)} | {early:.2f} | {late:.2f} |")
