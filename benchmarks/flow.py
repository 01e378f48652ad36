"""Flow-matching speed on this machine: sampling 1,000 points × 32 steps with the generic
autograd-capable field (reference) against the sampling fast path (same network, float32) and
its opt-in bfloat16-GEMM variant, with how far their samples move; exact NLL cost; training
throughput in points/s, for the shipped prior's network shape.

Timings are the best of interleaved repeats (other processes on a shared CPU inflate single
runs). `--threads N` sets torch's thread count; `--repeats N` the repeats per variant."""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from avgeo.precision import manifold as S2
from avgeo.precision.model import bf16_gemm_available, resolve_gemm_dtype
from avgeo.precision.path import GeodesicPath
from avgeo.precision.solver import odeint
from avgeo.precision.train import load_flow
from avgeo.precision.weights import default_prior_path

GOAL_S = 0.3
N, STEPS = 1000, 32


def best_of(fns: dict, repeats: int) -> dict[str, float]:
    """Best wall time per function, the functions interleaved so load spikes hit all alike."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def km(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return S2.dist(a.double(), b.double()) * 6371.0088


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {sys.executable} benchmarks/flow.py  (torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, load avg {load:.1f}, bf16 GEMM in hardware: "
          f"{bf16_gemm_available()}; `avgeo sample --dtype auto` uses "
          f"{resolve_gemm_dtype('auto') or 'float32'})")
    model, meta = load_flow(default_prior_path())
    cfg = meta["config"]
    print(f"prior: hidden {cfg['hidden']} depth {cfg['depth']} n_freq {cfg['n_freq']} "
          f"base {cfg['base']} K={cfg['base_components']}")
    x0 = model.base.sample(N, torch.Generator().manual_seed(0))
    bf16 = torch.bfloat16
    for method in ("rk4", "midpoint", "euler"):
        fns = {
            "generic": lambda m=method: odeint(model.field(), x0, 0.0, 1.0, STEPS, m),
            "fast": lambda m=method: odeint(model.inference_field(), x0, 0.0, 1.0, STEPS, m),
            "bf16": lambda m=method: odeint(model.inference_field(gemm_dtype=bf16), x0, 0.0,
                                            1.0, STEPS, m),
        }
        t = best_of(fns, args.repeats)
        goal = f"  (goal < {GOAL_S} s)" if method == "rk4" else ""
        print(f"sample {N:,} × {STEPS} {method:8s}: generic {t['generic']:.3f} s | fast "
              f"{t['fast']:.3f} s ({t['generic'] / t['fast']:.2f}×) | bf16 GEMM "
              f"{t['bf16']:.3f} s ({t['generic'] / t['bf16']:.2f}×){goal}")
    ref = odeint(model.field(), x0, steps=STEPS)[0]
    fast = odeint(model.inference_field(), x0, steps=STEPS)[0]
    low = odeint(model.inference_field(gemm_dtype=bf16), x0, steps=STEPS)[0]
    half = odeint(model.inference_field(), x0, steps=STEPS // 2)[0]
    move, d_fast, d_low, d_half = km(x0, fast), km(ref, fast), km(fast, low), km(fast, half)
    print(f"samples move {float(move.median()):.1f} km (median) from their base draws; "
          f"fast vs generic: max {float(d_fast.max()) * 1000:.2f} m; "
          f"bf16 vs fast: median {float(d_low.median()) * 1000:.0f} m, "
          f"p99 {float(d_low.quantile(0.99)) * 1000:.0f} m, max {float(d_low.max()) * 1000:.0f} m;"
          f" for scale, {STEPS // 2} vs {STEPS} rk4 steps: max {float(d_half.max()) * 1000:.1f} m")
    # Integration error of each solver at STEPS (float32 fast path, and bf16 GEMMs) against a
    # 256-step RK4 solve of the same draws: what a cheaper solver or precision costs.
    truth = odeint(model.inference_field(), x0, steps=256)[0]
    parts = []
    for method in ("rk4", "midpoint", "euler"):
        for tag, dt in (("", None), (" bf16", bf16)):
            d = km(truth, odeint(model.inference_field(gemm_dtype=dt), x0, 0.0, 1.0, STEPS,
                                 method)[0]) * 1000
            parts.append(f"{method}{tag} {float(d.median()):.0f}/{float(d.max()):.0f}")
    print(f"error vs 256-step rk4, median/max m: {'; '.join(parts)}")
    t0 = time.perf_counter()
    model.log_prob(fast, steps=STEPS)
    s = time.perf_counter() - t0
    print(f"exact NLL {N:,} points × {STEPS} rk4 steps (3×3 Jacobian): {s:.3f} s "
          f"({N / s:.0f} points/s)")
    net = model.net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    path = GeodesicPath()
    g = torch.Generator().manual_seed(1)
    data = model.base.sample(4096, g)

    def step() -> None:
        x0b = model.base.couple(data.double(), g).float()
        ps = path.sample(x0b, data, torch.rand(4096, generator=g))
        loss = ((net(ps.x_t, ps.t) - ps.dx_t) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    s = best_of({"step": step}, 3)["step"]
    print(f"training: {4096 / s:,.0f} points/s (batch 4096, coupling included)")


if __name__ == "__main__":
    main()
