"""Calibration of the shipped flow prior's credible regions on its held-out MP-16 test split:
the share of test coordinates inside the 50 % and 90 % highest-density regions on the H3
grid, from the exact density at cell centres, from samples, and from the prior map the
pipeline's `flow` engine uses; with a vMF-mixture baseline fitted on the same train split.

    .venv/bin/python scripts/flow_calibration.py --res 3 --samples 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_flow_prior import split

from avgeo.geo.grid import global_grid
from avgeo.precision import manifold as S2
from avgeo.precision.regions import (
    cell_probs_from_log_density,
    cell_probs_from_samples,
    credible_region,
    density_on_grid,
)

LEVELS = (0.5, 0.9)


def coverage(grid, probs: np.ndarray, truth_cells: np.ndarray) -> str:
    parts = []
    for q in LEVELS:
        cr = credible_region(grid, probs, q)
        cov = float(np.isin(truth_cells, cr.cells).mean())
        parts.append(f"{q:.0%}: {cov:.3f} ({cr.area_km2 / 1e6:,.1f} M km²)")
    return "   ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=16, help="ODE steps (density and samples)")
    ap.add_argument("--baseline-k", type=int, default=256, help="vMF mixture K (0: skip)")
    args = ap.parse_args()
    print(f"# python scripts/flow_calibration.py {' '.join(sys.argv[1:])}")

    from avgeo.precision.prior_map import flow_prior
    from avgeo.precision.train import load_flow
    from avgeo.precision.weights import default_prior_path

    data = split()
    test = data["test"]
    lat, lon = (t.numpy() for t in S2.to_latlon(test.double()))
    grid = global_grid(args.res)
    pos = grid.locate(lat, lon)
    truth = grid.cells[pos[pos >= 0]]
    print(f"held-out: {len(truth)} MP-16 test coordinates (deduplicated, split seed 0); "
          f"grid res {args.res}, {len(grid):,} cells")
    model, _ = load_flow(default_prior_path())
    model.eval()
    rows = []
    t0 = time.perf_counter()
    with torch.no_grad():
        logd = density_on_grid(grid, lambda x: model.log_prob(x, steps=args.steps))
    rows.append((f"flow, exact density at centres ({args.steps} RK4 steps)",
                 cell_probs_from_log_density(grid, logd), time.perf_counter() - t0))
    t0 = time.perf_counter()
    with torch.no_grad():
        xs = model.sample(args.samples, steps=args.steps, method="rk4",
                          generator=torch.Generator().manual_seed(1))
    slat, slon = (t.numpy() for t in S2.to_latlon(xs.double()))
    rows.append((f"flow, {args.samples:,} samples histogram",
                 cell_probs_from_samples(grid, slat, slon), time.perf_counter() - t0))
    t0 = time.perf_counter()
    lp = flow_prior(grid)
    rows.append(("flow prior map (engine `flow`, KDE of samples)", np.exp(lp - lp.max()),
                 time.perf_counter() - t0))
    if args.baseline_k:
        from avgeo.precision.baselines import VMFMixture

        t0 = time.perf_counter()
        mix = VMFMixture.fit(data["train"], k=args.baseline_k, iters=200)
        with torch.no_grad():
            ld = density_on_grid(grid, mix.log_prob)
        rows.append((f"vMF mixture K={args.baseline_k} (baseline), density",
                     cell_probs_from_log_density(grid, ld), time.perf_counter() - t0))
    print("\ncoverage of held-out truths by the highest-density region (its area)")
    for label, probs, secs in rows:
        print(f"  {label:<52} {coverage(grid, probs / probs.sum(), truth)}   [{secs:.0f} s]")


if __name__ == "__main__":
    main()
