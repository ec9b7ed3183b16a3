"""The whole continual-learning protocol in PyTorch, beside `forgetting continual` on the same data.

Permuted MNIST (the library's data cache: the npm subset of 8,000 training and 2,000 test digits), 10
tasks, every one permuted; MLP 784-512-256 with a 10-way head per task (Task-IL); SGD, lr 0.01,
momentum 0.9, batch 128, one epoch per task; after each task the true diagonal Fisher of 1,000 of its
training samples (per sample, Σ_y p(y|x) (∂ log p(y|x)/∂θ)², the usual per-sample loop), the anchor
θ*, and the accuracy on every task; EWC's penalty (λ/2) Σ_t F_t (θ − θ*_t)², λ = 100. Prints one
JSON line with the wall time, as `forgetting continual` is timed beside it:

    /usr/bin/python3 bench/torch_protocol.py [--cache DIR] [--threads 2]
    time forgetting continual --scenario permuted --setting task --tasks 10 --methods ewc \
        --fisher-samples 1000 --out /tmp/protocol

A measuring script, not part of the library or its tests.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F


def idx(path):
    with open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(cache):
    d = os.path.join(cache, "mnist")
    x = idx(os.path.join(d, "train-images-idx3-ubyte")).reshape(-1, 784).astype(np.float32) / 255.0
    y = idx(os.path.join(d, "train-labels-idx1-ubyte")).astype(np.int64)
    tx = idx(os.path.join(d, "t10k-images-idx3-ubyte")).reshape(-1, 784).astype(np.float32) / 255.0
    ty = idx(os.path.join(d, "t10k-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(tx), torch.from_numpy(ty)


class Net(torch.nn.Module):
    def __init__(self, tasks):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 512)
        self.fc2 = torch.nn.Linear(512, 256)
        self.heads = torch.nn.ModuleList([torch.nn.Linear(256, 10) for _ in range(tasks)])

    def forward(self, x, task):
        return self.heads[task](F.relu(self.fc2(F.relu(self.fc1(x)))))


def true_fisher(model, x, task):
    fisher = [torch.zeros_like(p) for p in model.parameters()]
    model.eval()
    for i in range(x.shape[0]):
        logp = F.log_softmax(model(x[i: i + 1], task), dim=1)[0]
        p = logp.exp().detach()
        for c in range(logp.shape[0]):
            grads = torch.autograd.grad(logp[c], list(model.parameters()), retain_graph=True, allow_unused=True)
            for f, g in zip(fisher, grads):
                if g is not None:
                    f.add_(p[c] * g * g)
    model.train()
    return [f / x.shape[0] for f in fisher]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.environ.get("FORGETTING_DATA", os.path.expanduser("~/.cache/forgetting")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--lam", type=float, default=100.0)
    ap.add_argument("--fisher-samples", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    x, y, tx, ty = load(args.cache)
    g = torch.Generator().manual_seed(1)
    perms = [torch.randperm(784, generator=g) for _ in range(args.tasks)]
    start = time.perf_counter()
    model = Net(args.tasks)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    anchors = []
    rows = []
    for t in range(args.tasks):
        xt = x[:, perms[t]]
        order = torch.randperm(xt.shape[0], generator=g)
        for b in range(0, xt.shape[0], 128):
            i = order[b: b + 128]
            loss = F.cross_entropy(model(xt[i], t), y[i])
            for fisher, star in anchors:
                loss = loss + args.lam / 2 * sum((f * (p - s) ** 2).sum() for f, p, s in zip(fisher, model.parameters(), star))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sample = torch.randperm(xt.shape[0], generator=g)[: args.fisher_samples]
        anchors.append((true_fisher(model, xt[sample], t), [p.detach().clone() for p in model.parameters()]))
        with torch.no_grad():
            model.eval()
            rows.append([float((model(tx[:, perms[j]], j).argmax(1) == ty).float().mean()) for j in range(args.tasks)])
            model.train()
    seconds = time.perf_counter() - start
    print(json.dumps({"workload": "protocol", "impl": "pytorch", "tasks": args.tasks, "threads": args.threads,
                      "seconds": round(seconds, 3), "acc_final": round(float(np.mean(rows[-1])), 4)}))


if __name__ == "__main__":
    main()
