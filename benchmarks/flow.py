"""Flow-matching speed on this machine: sampling (1,000 points × 32 RK4 steps), exact NLL cost,
and training throughput in points/s, for the shipped prior's network shape."""

from __future__ import annotations

import sys
import time

import torch

from avgeo.precision.path import GeodesicPath
from avgeo.precision.train import load_flow
from avgeo.precision.weights import default_prior_path


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    print(f"# {sys.executable} benchmarks/flow.py  (torch threads: {torch.get_num_threads()})")
    model, meta = load_flow(default_prior_path())
    cfg = meta["config"]
    print(f"prior: hidden {cfg['hidden']} depth {cfg['depth']} n_freq {cfg['n_freq']} "
          f"base {cfg['base']} K={cfg['base_components']}")
    g = torch.Generator().manual_seed(0)
    for method in ("rk4", "midpoint", "euler"):
        s = best_of(lambda m=method: model.sample(1000, steps=32, method=m, generator=g))
        print(f"sample 1,000 × 32 {method:8s} steps: {s:.3f} s  (goal < 0.3 s for rk4)")
    x = model.sample(1000, steps=32, generator=g)
    s = best_of(lambda: model.log_prob(x, steps=32), repeats=2)
    print(f"exact NLL 1,000 points × 32 rk4 steps (3×3 Jacobian): {s:.3f} s "
          f"({1000 / s:.0f} points/s)")
    net = model.net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    path = GeodesicPath()
    data = model.base.sample(4096, g)

    def step() -> None:
        x0 = model.base.couple(data.double(), g).float()
        ps = path.sample(x0, data, torch.rand(4096, generator=g))
        loss = ((net(ps.x_t, ps.t) - ps.dx_t) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    s = best_of(step, repeats=3)
    print(f"training: {4096 / s:,.0f} points/s (batch 4096, coupling included)")


if __name__ == "__main__":
    main()
