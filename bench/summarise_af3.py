#!/usr/bin/env python3
"""The two-column re-run of issue 14 as one table, from the files the commands wrote (numpy only).

For each column (a folder prefix: the paper's full model, the setting where the importance claims
hold) and each seed: `forgetting train` wrote <runs>/<column>-s<seed>/ (summary.json, units.csv),
`forgetting figure --figures fig3b --model …` wrote <runs>/fig-<column>-s<seed>/fig3b/fig3b-1.csv and
`forgetting figure --figures fig2 --model …` wrote <runs>/fig2-<column>-s<seed>/fig2/fig2-*.csv.
Prints mean ± sd over the seeds found (sample sd), and which seeds those were.

Usage: python3 bench/summarise_af3.py <runs folder> [column …]   (default columns: paper claims)
"""
import csv
import json
import os
import sys

import numpy as np


def bimodality(x):
    """Sarle's bimodality coefficient, bias-corrected (as Statistics.bimodality)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    m = x.mean()
    m2 = ((x - m) ** 2).mean()
    if m2 <= 1e-24 * max(1.0, m * m):
        return 0.0
    g1 = ((x - m) ** 3).mean() / m2**1.5
    k1 = ((x - m) ** 4).mean() / m2**2 - 3.0
    g = g1 * np.sqrt(n * (n - 1.0)) / (n - 2.0)
    k = ((n + 1.0) * k1 + 6.0) * (n - 1.0) / ((n - 2.0) * (n - 3.0))
    return (g * g + 1.0) / (k + 3.0 * (n - 1.0) ** 2 / ((n - 2.0) * (n - 3.0)))


def rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def series(path, panel):
    out = {}
    for r in rows(path):
        if r["panel"] == panel:
            out.setdefault(r["series"], {})[round(float(r["x"]), 4)] = float(r["y"])
    return out


def ms(values):
    v = np.asarray(values, dtype=np.float64)
    sd = v.std(ddof=1) if v.size > 1 else 0.0
    return f"{v.mean():.3f} ± {sd:.3f}"


def column(runs, name):
    seeds = sorted(
        int(d.split("-s")[-1]) for d in os.listdir(runs) if d.startswith(name + "-s") and os.path.isdir(os.path.join(runs, d))
    )
    acc, bc, extreme, readout = [], {}, {}, set()
    prune = {}
    ablation = {}
    fig2_seeds, fig3b_seeds = [], []
    for s in seeds:
        run = os.path.join(runs, f"{name}-s{s}")
        summary = json.load(open(os.path.join(run, "summary.json"), encoding="utf-8"))
        acc.append(summary["test_accuracy"])
        units = rows(os.path.join(run, "units.csv"))
        for layer in sorted({int(u["layer"]) for u in units}):
            omega = [float(u["importance"]) for u in units if int(u["layer"]) == layer]
            readout.update(u["readout"] for u in units)
            bc.setdefault(layer, []).append(bimodality(omega))
            extreme.setdefault(layer, []).append(np.mean([(o < 0.1) or (o > 0.9) for o in omega]))
        f3 = os.path.join(runs, f"fig-{name}-s{s}", "fig3b", "fig3b-1.csv")
        if os.path.exists(f3):
            fig3b_seeds.append(s)
            for label, ys in series(f3, "Pruning").items():
                for kept in (0.1, 0.2, 0.5):
                    prune.setdefault((label, kept), []).append(ys[kept])
        f2dir = os.path.join(runs, f"fig2-{name}-s{s}", "fig2")
        if os.path.isdir(f2dir):
            fig2_seeds.append(s)
            for f in sorted(os.listdir(f2dir)):
                if not (f.startswith("fig2-") and f.endswith(".csv")):
                    continue
                for r in rows(os.path.join(f2dir, f))[:1]:
                    panel = r["panel"]
                if not (panel.startswith("(a)") or panel.startswith("(b)")):
                    continue
                ys = series(os.path.join(f2dir, f), panel)
                asc = ys["ascending importance"]
                desc = ys["descending importance"]
                rnd = next(v for k, v in ys.items() if k.startswith("random"))
                inner = [round(i / 10, 4) for i in range(1, 10)]
                key = panel.split(" ", 1)[1]
                ablation.setdefault((key, "gain"), []).append(np.mean([asc[x] - rnd[x] for x in inner]))
                for x in (0.1, 0.3, 0.5):
                    ablation.setdefault((key, f"asc {x}"), []).append(asc[x])
                    ablation.setdefault((key, f"desc {x}"), []).append(desc[x])
                    ablation.setdefault((key, f"random {x}"), []).append(rnd[x])
    print(f"== {name}: seeds {seeds} (fig3b: {fig3b_seeds}, fig2: {fig2_seeds}); read-out {', '.join(sorted(readout))}")
    print(f"test accuracy            {ms(acc)}")
    for layer in sorted(bc):
        print(f"layer {layer} bimodality of Ω  {ms(bc[layer])}   share of Ω < 0.1 or > 0.9  {ms(extreme[layer])}")
    for (label, kept), ys in sorted(prune.items()):
        print(f"fig3b {kept:.0%} kept  {label:32s} {ms(ys)}")
    for (panel, what), ys in sorted(ablation.items()):
        print(f"fig2 {panel:20s} {what:12s} {ms(ys)}")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(1)
    for name in sys.argv[2:] or ["paper", "claims"]:
        column(sys.argv[1], name)


if __name__ == "__main__":
    main()
