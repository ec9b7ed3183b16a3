"""PyTorch side of the side-by-side benchmarks (CPU, float32).

Run with Debian's Python, which sees Debian's python3-torch:

    /usr/bin/python3 bench/torch_bench.py \
        --workload gemm|mlp|mlp-forgetting|fisher|mas|ewc-step|bnn|hopfield|vit-epoch|epoch|epoch-forgetting|all \
        [--batch 128] [--steps 200] [--threads 2] [--reps 50] [--samples 1000] [--images 60000]

Prints one JSON object per line and result, in the schema the F# CLI prints.

What is measured:
- gemm: torch.mm(a, b, out=c) for float32 (m,k,n) = (1024,1024,1024) and
  (128,784,256), inputs and output preallocated; 5 warm-up calls, then --reps
  timed calls; ms_median is the median, gflops = 2*m*k*n / median.
- mlp: one training step of an MLP 784-256-256-128-10 (ReLU, PyTorch default
  Linear init): forward, cross-entropy from logits, backward, plain SGD
  (lr 0.01) via torch.optim.SGD; one fixed random batch (seed 0) of --batch
  inputs ~ N(0,1) and labels uniform in 0..9. 10 warm-up steps, then --steps
  steps each timed with time.perf_counter; ms_per_step_median is the median.
  peak_rss_mb is the process's peak RSS (getrusage ru_maxrss).
- mlp-forgetting: the same with a forgetting layer (mechanisms.md section 1)
  after each hidden ReLU: learnable W_f (init 0, so the gate starts at 0.5),
  gate s = sigmoid(rho * h * W_f) (rho = 1), output h + h*s (shortcut on),
  loss = CE + 0.1 * L_inh (ERS, eq. 6) + 1e-4 * L_lat (IRS importance-weighted,
  eq. 8, computed in O(n) per sample).
- fisher: the empirical diagonal Fisher (mean over samples of the squared
  per-sample gradient of log p(y|x)) of --samples inputs ~ N(0,1) with labels
  i mod 10, for the MLP 784-256-256-128-10 in eval mode. Two methods, one line
  each: "loop", one forward and backward pass per sample (the reference
  codes' way), and "vmap", functorch's vmap(grad(...)) over chunks of 256
  samples (the F# side's chunk), when functorch imports. 1 warm-up estimate,
  then --fisher-reps timed estimates (default 3);
  ms_per_step_median is the median time of one estimate.
- mas: global MAS importance (Aljundi et al. 2018, eq. 4), the mean over
  samples of |d ||F(x)||^2 / d theta| with F the logits, of --samples inputs
  uniform in [0, 1) for the same MLP in eval mode; "loop" (one backward pass
  per sample, the official code's way at batch size 1) and "vmap", as for
  fisher; --fisher-reps timed estimates.
- ewc-step: one plain SGD step of the mlp workload and one with an EWC penalty
  (lambda/2) sum F (theta - theta*)^2 (lambda = 100, F the empirical Fisher of
  1000 other inputs, theta* the initial parameters), timed in alternation (the
  order swapped every pair); ms_per_step_median is the EWC step,
  plain_ms_per_step_median the plain one.
- bnn: one training step of the binarized net 784-1024-1024-10 of Laborieux
  et al. 2021 (weights and hidden activations binarized by sign with
  straight-through gradients, the activations' masked where |x| > 1; batch
  norm with batch statistics and learned gamma, beta after every layer, the
  last one's output the logits; hidden weights U(-0.05, 0.05), swapped for
  their signs around the forward pass as the reference code does) with
  metaplastic Adam (m = 1.35, lr 0.005, L2 decay 1e-7 on weight matrices), on
  one fixed batch of 100 inputs uniform in [0, 1) (the reference's batch
  size; --batch overrides it). Timed as mlp.
- hopfield: modern Hopfield retrieval xi_new = softmax(beta xi X^T) X
  (Ramsauer et al. 2021, eq. 3, patterns as rows; one update step) of
  --batch states against 1024 stored patterns of dimension 64, both
  N(0,1), beta = 1/sqrt(64), and the backward pass of sum(xi_new) to X
  and xi: 10 warm-up passes, then --hopfield-reps (default 200) timed.
- vit-epoch: one training epoch of the small vision transformer of
  Experiments/Hopfield.fs (VisionTransformerSettings.Default): 28x28
  images cut into 16 patches of 7x7, a linear patch embedding to width 64,
  a class token and position embeddings N(0, 0.02), 4 pre-norm blocks
  (LayerNorm eps 1e-6; 4-head attention with separate Q, K, V and output
  projections with bias, scale 1/sqrt(16); MLP 64-256-64 with exact GELU),
  a final LayerNorm and a linear head on the class token; cross-entropy,
  AdamW (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.05) with
  clip_grad_norm_(1.0), on --images random inputs uniform in [0, 1) with
  labels i mod 10, a fresh permutation per epoch in batches of --batch
  (the last one partial), loss.item() read every step. 10 warm-up steps,
  then --vit-reps (default 1) timed epochs; ms_per_step_median is the
  median epoch.
- epoch, epoch-forgetting: one training epoch of the mlp (mlp-forgetting)
  workload's MLP with plain SGD (lr 0.01) on --images random inputs uniform
  in [0, 1) with labels i mod 10, in vit-epoch's epoch: a fresh permutation
  per epoch in batches of --batch (the last one partial), each batch indexed
  out of the inputs (x[idx]) before its step, loss.item() read every step.
  10 warm-up steps, then --epoch-reps (default 1) timed epochs.

--threads sets torch.set_num_threads and, because that does not reach
OpenBLAS's own thread pool, openblas_set_num_threads too. --workload all runs
each workload in its own child process so that peak_rss_mb is per workload.

Debian's torch runs two thread pools: libgomp (torch's elementwise ops) and
OpenBLAS's pthreads (matmuls). With libgomp's default spin-waiting the idle
OpenMP workers keep the 2 cores busy and starve OpenBLAS (mlp steps ~1.7x
slower), so this script sets OMP_WAIT_POLICY=PASSIVE unless the caller set
OMP_WAIT_POLICY already (set it to ACTIVE to measure torch's default).
"""
import argparse
import ctypes
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by libgomp when torch loads it

import torch
import torch.nn as nn
import torch.nn.functional as F

WARMUP_STEPS = 10
GEMM_WARMUP = 5
GEMM_SIZES = [(1024, 1024, 1024), (128, 784, 256)]


def _openblas():
    """The OpenBLAS torch loaded, or None (only if it is mapped into this process)."""
    with open("/proc/self/maps") as f:
        if "libopenblas" not in f.read():
            return None
    lib = ctypes.CDLL("libopenblas.so.0")
    lib.openblas_get_config.restype = ctypes.c_char_p
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib


def blas_name():
    """Which BLAS is mapped into this process (torch's BLAS_INFO is just 'generic')."""
    lib = _openblas()
    if lib is not None:
        cfg = lib.openblas_get_config().decode().split()
        core = lib.openblas_get_corename().decode()
        return f"OpenBLAS {cfg[1]} pthread, core {core}"
    with open("/proc/self/maps") as f:
        libs = sorted({l.split()[-1] for l in f if "blas" in l.lower()})
    return "reference/other BLAS: " + ",".join(libs) if libs else "unknown"


def set_threads(n):
    torch.set_num_threads(n)
    lib = _openblas()
    if lib is not None:
        lib.openblas_set_num_threads(n)


def bench_gemm(args):
    for m, k, n in GEMM_SIZES:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(m, k, generator=g)
        b = torch.randn(k, n, generator=g)
        c = torch.empty(m, n)
        for _ in range(GEMM_WARMUP):
            torch.mm(a, b, out=c)
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        yield {"workload": "gemm", "impl": "pytorch", "m": m, "k": k, "n": n,
               "dtype": "float32", "ms_median": round(med * 1e3, 4),
               "gflops": round(2.0 * m * k * n / med / 1e9, 2),
               "threads": args.threads, "blas": blas_name()}


class MLP(nn.Module):
    """784-256-256-128-10 ReLU MLP, optionally with a forgetting layer after each hidden ReLU."""

    def __init__(self, forgetting, sizes=(784, 256, 256, 128, 10), rho=1.0):
        super().__init__()
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-2], sizes[1:-1]))
        self.out = nn.Linear(sizes[-2], sizes[-1])
        self.forgetting, self.rho = forgetting, rho
        if forgetting:  # W_f = 0 -> gate sigmoid(0) = 0.5 at the start
            self.w_f = nn.ParameterList(nn.Parameter(torch.zeros(o)) for o in sizes[1:-1])

    def forward(self, x):
        """Returns logits and, with forgetting layers, the (h, gate) pair of each layer."""
        states = []
        for i, lin in enumerate(self.hidden):
            h = F.relu(lin(x))
            if self.forgetting:
                s = torch.sigmoid(self.rho * h * self.w_f[i])
                states.append((h, s))
                h = h + h * s  # shortcut (eq. 5)
            x = h
        return self.out(x), states


def forgetting_losses(states, eps=1e-8):
    """L_inh (ERS, eq. 6, one denominator over all layers) and L_lat (IRS, eq. 8)."""
    num = den = lat = 0.0
    for h, s in states:
        sbar = s.mean(0)
        num = num + ((1 - sbar) * sbar).sum()
        den = den + (1 - sbar).sum()
        a, b = h * (1 - s), h * s
        lat = lat + a.sum(1) * b.sum(1) - (a * b).sum(1)  # sum_{i != j} a_i b_j per sample
    return num / (den + eps), lat.mean()


def step_line(workload, step, batch, args):
    """WARMUP_STEPS untimed steps, then --steps timed one by one: the line of the median step."""
    for _ in range(WARMUP_STEPS):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss.item()}")
    med = statistics.median(times)
    return {"workload": workload, "impl": "pytorch",
            "batch": batch, "steps": args.steps,
            "ms_per_step_median": round(med * 1e3, 4),
            "samples_per_s": round(batch / med, 1),
            "threads": args.threads, "blas": blas_name(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench_mlp(args, forgetting, lam=0.1, beta=1e-4, lr=0.01):
    torch.manual_seed(0)
    model = MLP(forgetting)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x = torch.randn(args.batch, 784)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        logits, states = model(x)
        loss = F.cross_entropy(logits, y)
        if forgetting:
            l_inh, l_lat = forgetting_losses(states)
            loss = loss + lam * l_inh + beta * l_lat
        loss.backward()
        opt.step()
        return loss

    yield step_line("mlp-forgetting" if forgetting else "mlp", step, args.batch, args)


def empirical_fisher_loop(model, x, y):
    """Mean over samples of the squared gradient of log p(y|x): one backward pass per sample."""
    fisher = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        logits, _ = model(x[i:i + 1])
        F.nll_loss(F.log_softmax(logits, dim=1), y[i:i + 1]).backward()
        for f, p in zip(fisher, model.parameters()):
            f.add_(p.grad.detach() ** 2)
    return [f / x.shape[0] for f in fisher]


def empirical_fisher_vmap(model, x, y, chunk=256):
    """The same with functorch's per-sample gradients, vmap(grad(loss)), chunk by chunk."""
    import functorch
    fmodel, params = functorch.make_functional(model)

    def loss(params, xi, yi):
        logits, _ = fmodel(params, xi.unsqueeze(0))
        return F.nll_loss(F.log_softmax(logits, dim=1), yi.unsqueeze(0))

    per_sample = functorch.vmap(functorch.grad(loss), in_dims=(None, 0, 0))
    fisher = [torch.zeros_like(p) for p in params]
    for start in range(0, x.shape[0], chunk):
        grads = per_sample(params, x[start:start + chunk], y[start:start + chunk])
        for f, g in zip(fisher, grads):
            f.add_((g ** 2).sum(0))
    return [f / x.shape[0] for f in fisher]


def has_functorch():
    try:
        import functorch  # noqa: F401 (shipped with torch 1.13)
        return True
    except ImportError:
        return False


def bench_fisher(args):
    torch.manual_seed(0)
    model = MLP(False).eval()
    x = torch.randn(args.samples, 784)
    y = torch.arange(args.samples) % 10
    methods = [("loop", empirical_fisher_loop)]
    if has_functorch():
        methods.append(("vmap", empirical_fisher_vmap))
    for method, estimate in methods:
        reps = args.fisher_reps
        estimate(model, x, y)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fisher = estimate(model, x, y)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        yield {"workload": "fisher", "impl": "pytorch", "method": method,
               "batch": args.samples, "reps": reps,
               "ms_per_step_median": round(med * 1e3, 4),
               "samples_per_s": round(args.samples / med, 1),
               "fisher_sum": round(float(sum(f.sum() for f in fisher)), 6),
               "threads": args.threads, "blas": blas_name(),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def mas_loop(model, x):
    """Global MAS (Aljundi et al. 2018, eq. 4): the mean over samples of |d ||F(x)||^2 / d theta|,
    F the logits, one backward pass per sample (the exact, per-sample form)."""
    omega = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        logits, _ = model(x[i:i + 1])
        (logits ** 2).sum().backward()
        for o, p in zip(omega, model.parameters()):
            o.add_(p.grad.detach().abs())
    return [o / x.shape[0] for o in omega]


def mas_vmap(model, x, chunk=256):
    """The same with functorch's per-sample gradients, vmap(grad(||F||^2)), chunk by chunk."""
    import functorch
    fmodel, params = functorch.make_functional(model)

    def norm(params, xi):
        logits, _ = fmodel(params, xi.unsqueeze(0))
        return (logits ** 2).sum()

    per_sample = functorch.vmap(functorch.grad(norm), in_dims=(None, 0))
    omega = [torch.zeros_like(p) for p in params]
    for start in range(0, x.shape[0], chunk):
        grads = per_sample(params, x[start:start + chunk])
        for o, g in zip(omega, grads):
            o.add_(g.abs().sum(0))
    return [o / x.shape[0] for o in omega]


def bench_mas(args):
    torch.manual_seed(0)
    model = MLP(False).eval()
    x = torch.rand(args.samples, 784)
    methods = [("loop", mas_loop)]
    if has_functorch():
        methods.append(("vmap", mas_vmap))
    for method, estimate in methods:
        reps = args.fisher_reps
        estimate(model, x)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            omega = estimate(model, x)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        yield {"workload": "mas", "impl": "pytorch", "method": method,
               "batch": args.samples, "reps": reps,
               "ms_per_step_median": round(med * 1e3, 4),
               "samples_per_s": round(args.samples / med, 1),
               "omega_sum": round(float(sum(o.sum() for o in omega)), 6),
               "threads": args.threads, "blas": blas_name(),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench_ewc_step(args, lam=100.0, lr=0.01):
    torch.manual_seed(0)
    plain_model = MLP(False)
    ewc_model = MLP(False)
    ewc_model.load_state_dict(plain_model.state_dict())
    x = torch.randn(args.batch, 784)
    y = torch.randint(0, 10, (args.batch,))
    other = torch.randn(1000, 784)
    fisher = empirical_fisher_loop(ewc_model.eval(), other, torch.arange(1000) % 10)
    ewc_model.train()
    anchor = [p.detach().clone() for p in ewc_model.parameters()]
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=lr)
    ewc_opt = torch.optim.SGD(ewc_model.parameters(), lr=lr)

    def plain_step():
        plain_opt.zero_grad(set_to_none=True)
        logits, _ = plain_model(x)
        F.cross_entropy(logits, y).backward()
        plain_opt.step()

    def ewc_step():
        ewc_opt.zero_grad(set_to_none=True)
        logits, _ = ewc_model(x)
        penalty = sum((f * (p - a) ** 2).sum() for f, p, a in zip(fisher, ewc_model.parameters(), anchor))
        loss = F.cross_entropy(logits, y) + lam / 2 * penalty
        loss.backward()
        ewc_opt.step()
        return penalty

    for _ in range(WARMUP_STEPS):
        plain_step()
        ewc_step()
    def timed(step):
        t0 = time.perf_counter()
        result = step()
        return time.perf_counter() - t0, result

    plain_times, ewc_times = [], []
    for i in range(args.steps):  # the order swaps every pair, as on the F# side
        if i % 2 == 0:
            plain_times.append(timed(plain_step)[0])
            t, penalty = timed(ewc_step)
        else:
            t, penalty = timed(ewc_step)
            plain_times.append(timed(plain_step)[0])
        ewc_times.append(t)
    plain_med, ewc_med = statistics.median(plain_times), statistics.median(ewc_times)
    yield {"workload": "ewc-step", "impl": "pytorch",
           "batch": args.batch, "steps": args.steps,
           "ms_per_step_median": round(ewc_med * 1e3, 4),
           "plain_ms_per_step_median": round(plain_med * 1e3, 4),
           "ratio": round(ewc_med / plain_med, 4),
           "final_penalty": float(lam / 2 * penalty),
           "threads": args.threads, "blas": blas_name(),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench_hopfield(args, stored=1024, dim=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(stored, dim, generator=g).requires_grad_()
    xi = torch.randn(args.batch, dim, generator=g).requires_grad_()
    beta = 1.0 / dim ** 0.5

    def step():
        x.grad = xi.grad = None
        out = torch.softmax(beta * xi @ x.t(), dim=-1) @ x
        loss = out.sum()
        loss.backward()
        return loss

    for _ in range(WARMUP_STEPS):
        step()
    times = []
    for _ in range(args.hopfield_reps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    yield {"workload": "hopfield", "impl": "pytorch", "batch": args.batch, "stored": stored,
           "dim": dim, "reps": args.hopfield_reps,
           "ms_per_step_median": round(med * 1e3, 4),
           "checksum": float(loss + x.grad.sum() + xi.grad.sum()),
           "threads": args.threads, "blas": blas_name(),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


class ViTAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, width)

    def forward(self, x):
        b, t, w = x.shape
        q, k, v = (f(x).reshape(b, t, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(-1, -2) / (w // self.heads) ** 0.5, dim=-1)
        return self.out((a @ v).transpose(1, 2).reshape(b, t, w))


class ViTBlock(nn.Module):
    def __init__(self, width, heads, ratio):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
        self.attention = ViTAttention(width, heads)
        self.fc1, self.fc2 = nn.Linear(width, width * ratio), nn.Linear(width * ratio, width)

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """The vision transformer of Experiments/Hopfield.fs with its default settings."""

    def __init__(self, image=28, patch=7, width=64, blocks=4, heads=4, ratio=4, classes=10):
        super().__init__()
        self.image, self.patch = image, patch
        patches = (image // patch) ** 2
        self.proj = nn.Linear(patch * patch, width)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, patches + 1, width) * 0.02)
        self.blocks = nn.Sequential(*(ViTBlock(width, heads, ratio) for _ in range(blocks)))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        b, p = x.shape[0], self.patch
        cols = F.unfold(x.reshape(b, 1, self.image, self.image), p, stride=p).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(b, -1, -1), self.proj(cols)], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def epoch_line(workload, step, args, reps):
    """WARMUP_STEPS untimed steps, then `reps` timed epochs of step(idx) over a fresh permutation of
    --images (from a seeded generator) in batches of --batch: the line of the median epoch."""
    g = torch.Generator().manual_seed(2)

    def epoch(limit=None):
        batches = torch.randperm(args.images, generator=g).split(args.batch)[:limit]
        total = sum(step(idx) * len(idx) for idx in batches)
        return total / sum(len(idx) for idx in batches)

    epoch(WARMUP_STEPS)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        loss = epoch()
        times.append(time.perf_counter() - t0)
    if not math.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")
    med = statistics.median(times)
    return {"workload": workload, "impl": "pytorch", "batch": args.batch, "images": args.images,
            "reps": reps, "ms_per_step_median": round(med * 1e3, 4),
            "samples_per_s": round(args.images / med, 1), "final_loss": loss,
            "threads": args.threads, "blas": blas_name(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench_vit_epoch(args, lr=1e-3, weight_decay=0.05):
    torch.manual_seed(0)
    model = ViT()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=weight_decay)
    x = torch.rand(args.images, 784)
    y = torch.arange(args.images) % 10

    def step(idx):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    yield epoch_line("vit-epoch", step, args, args.vit_reps)


def bench_epoch(args, forgetting, lam=0.1, beta=1e-4, lr=0.01):
    torch.manual_seed(0)
    model = MLP(forgetting)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x = torch.rand(args.images, 784)
    y = torch.arange(args.images) % 10

    def step(idx):
        opt.zero_grad(set_to_none=True)
        logits, states = model(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        if forgetting:
            l_inh, l_lat = forgetting_losses(states)
            loss = loss + lam * l_inh + beta * l_lat
        loss.backward()
        opt.step()
        return loss.item()

    yield epoch_line("epoch-forgetting" if forgetting else "epoch", step, args, args.epoch_reps)


class SignActivation(torch.autograd.Function):
    """sign(x); the gradient passes where |x| <= 1 (Courbariaux et al. 2016)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sign()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class BinarizeLinear(nn.Linear):
    """A dense layer without bias computing with sign(W_h); W_h is kept in `org` between steps, as the
    reference code of Laborieux et al. 2021 does (the weight's data is swapped for its sign)."""

    def __init__(self, n_in, n_out):
        super().__init__(n_in, n_out, bias=False)
        nn.init.uniform_(self.weight, -0.05, 0.05)
        self.weight.org = self.weight.data.clone()

    def forward(self, x):
        self.weight.data = self.weight.org.sign()
        return F.linear(x, self.weight)


class BNN(nn.Module):
    """784-1024-1024-10: binarized dense, batch norm (affine, batch statistics), sign; the last layer's
    batch-normed output is the logits."""

    def __init__(self, sizes=(784, 1024, 1024, 10)):
        super().__init__()
        self.fcs = nn.ModuleList(BinarizeLinear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(b, affine=True, track_running_stats=False) for b in sizes[1:])

    def forward(self, x):
        for k, (fc, bn) in enumerate(zip(self.fcs, self.bns)):
            x = bn(fc(x))
            if k < len(self.fcs) - 1:
                x = SignActivation.apply(x)
        return x


class MetaAdam(torch.optim.Optimizer):
    """Metaplastic Adam (Laborieux et al. 2021, Algorithm 1): Adam whose step on a weight matrix is
    scaled by 1 - tanh^2(m |W_h|) where it pushes W_h toward zero; vectors get plain Adam."""

    def __init__(self, params, lr=0.005, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-7, meta=1.35):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, meta=meta))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.dim() >= 2 and group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                st = self.state[p]
                if not st:
                    st["step"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["step"] += 1
                m, v, t = st["m"], st["v"], st["step"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / (1 - b2 ** t)).sqrt_().add_(group["eps"])
                step_size = group["lr"] / (1 - b1 ** t)
                if p.dim() >= 2:
                    toward_zero = p.sign() * m > 0
                    f = 1 - torch.tanh(group["meta"] * p.abs()).pow_(2)
                    p.addcdiv_(torch.where(toward_zero, m * f, m), denom, value=-step_size)
                else:
                    p.addcdiv_(m, denom, value=-step_size)


def bench_bnn(args):
    torch.manual_seed(0)
    model = BNN()
    opt = MetaAdam(model.parameters())
    batch = 100 if args.batch == 128 else args.batch  # the reference's batch of 100 unless one is given
    x = torch.rand(batch, 784)
    y = torch.arange(batch) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        for p in model.parameters():  # back to the hidden weights for the update
            if hasattr(p, "org"):
                p.data.copy_(p.org)
        opt.step()
        for p in model.parameters():
            if hasattr(p, "org"):
                p.org.copy_(p.data)
        return loss

    yield step_line("bnn", step, batch, args)


WORKLOADS = {
    "gemm": bench_gemm,
    "mlp": lambda a: bench_mlp(a, forgetting=False),
    "mlp-forgetting": lambda a: bench_mlp(a, forgetting=True),
    "fisher": bench_fisher,
    "mas": bench_mas,
    "ewc-step": bench_ewc_step,
    "bnn": bench_bnn,
    "hopfield": bench_hopfield,
    "vit-epoch": bench_vit_epoch,
    "epoch": lambda a: bench_epoch(a, forgetting=False),
    "epoch-forgetting": lambda a: bench_epoch(a, forgetting=True),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", required=True, choices=[*WORKLOADS, "all"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=200, help="timed training steps (mlp*)")
    p.add_argument("--reps", type=int, default=50, help="timed calls per size (gemm)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--samples", type=int, default=1000, help="samples of one Fisher estimate (fisher)")
    p.add_argument("--fisher-reps", type=int, default=3, help="timed estimates per method (fisher)")
    p.add_argument("--hopfield-reps", type=int, default=200, help="timed passes (hopfield)")
    p.add_argument("--images", type=int, default=60000, help="random images of one epoch (vit-epoch, epoch*)")
    p.add_argument("--vit-reps", type=int, default=1, help="timed epochs (vit-epoch)")
    p.add_argument("--epoch-reps", type=int, default=1, help="timed epochs (epoch*)")
    args = p.parse_args()
    if args.workload == "all":  # one child per workload: separate peak RSS
        for w in WORKLOADS:
            argv = ["--workload", w, "--batch", str(args.batch), "--steps", str(args.steps),
                    "--reps", str(args.reps), "--threads", str(args.threads),
                    "--samples", str(args.samples), "--fisher-reps", str(args.fisher_reps),
                    "--hopfield-reps", str(args.hopfield_reps), "--images", str(args.images),
                    "--vit-reps", str(args.vit_reps), "--epoch-reps", str(args.epoch_reps)]
            subprocess.run([sys.executable, os.path.abspath(__file__), *argv], check=True)
        return
    set_threads(args.threads)
    for result in WORKLOADS[args.workload](args):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
