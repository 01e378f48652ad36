"""Benchmark of the shared training loop: time per step of `avgeo.training.fit` against a bare
PyTorch loop on the same small task, without and with the metrics log and checkpoints (best of 3).

Run: .venv/bin/python benchmarks/training.py [--steps N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch import nn

from avgeo.training import DistEnv, Task, TrainerConfig, fit, shard


class Mlp(Task):
    """Regression by a 2-layer MLP (64 → 256 → 1) on fixed random data, batch 256."""

    def __init__(self, steps: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(steps * 256, 64, generator=g)
        self.y = torch.randn(steps * 256, 1, generator=g)
        self.steps = steps

    def build(self, ctx):
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1))

    def configure_optimizer(self, model, ctx):
        return torch.optim.AdamW(model.parameters(), lr=1e-3)

    def batches(self, epoch, env):
        for i in range(self.steps):
            sl = slice(i * 256, (i + 1) * 256)
            yield shard(self.x[sl], env), shard(self.y[sl], env)

    def loss(self, model, batch):
        x, y = batch
        return (model(x) - y).pow(2).mean()


def bare(task: Mlp) -> float:
    torch.manual_seed(0)
    model = task.build(None)
    opt = task.configure_optimizer(model, None)
    t0 = time.perf_counter()
    for batch in task.batches(0, DistEnv()):
        loss = task.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        float(loss.detach())
    return time.perf_counter() - t0


def with_fit(task: Mlp, **kw) -> float:
    t0 = time.perf_counter()
    res = fit(task, TrainerConfig(epochs=1, **kw), log=lambda s: None)
    assert res.step == task.steps
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.steps
    print(f"# python benchmarks/training.py --steps {n}  (torch {torch.__version__}, 1 thread)")
    task = Mlp(n)
    bare(task)  # warm-up

    def best(fn, *a, **kw) -> float:  # best of 3: the machine may be shared
        return min(fn(*a, **kw) for _ in range(3))

    rows = [("bare PyTorch loop", best(bare, task)), ("fit, no run folder", best(with_fit, task))]
    with tempfile.TemporaryDirectory() as d:
        rows.append(("fit + metrics.csv every 10 steps",
                     best(with_fit, task, run_dir=d + "/a", tensorboard=False)))
        rows.append(("fit + csv + TensorBoard every 10 steps",
                     best(with_fit, task, run_dir=d + "/b", tensorboard=True)))
        rows.append(("fit + csv + checkpoint every 100 steps",
                     best(with_fit, task, run_dir=d + "/c", tensorboard=False,
                          checkpoint_every=100)))
    base = rows[0][1] / n
    print(f"{'setup':42s} {'ms/step':>8s} {'overhead':>9s}")
    for name, sec in rows:
        print(f"{name:42s} {1e3 * sec / n:8.3f} {100 * (sec / n / base - 1):+8.1f}%")


if __name__ == "__main__":
    main()
