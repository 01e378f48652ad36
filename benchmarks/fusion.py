"""Fusion cost: 50 atoms over all resolution-3 cells, vectorised vs a naive per-cell loop.

Run: .venv/bin/python benchmarks/fusion.py
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from avgeo.atoms import Atom
from avgeo.geo.grid import global_grid
from avgeo.reasoning.fusion import FusionWeights, fuse, group_atoms, group_map
from avgeo.reasoning.likelihood import LongitudeBand, PointLikelihood


def make_atoms(n: int, rng: np.random.Generator) -> list[Atom]:
    atoms = []
    for i in range(n):
        if i % 5 == 4:
            lo = float(rng.uniform(-180, 180))
            lik = LongitudeBand(lo, lo + 30.0)
        else:
            lik = PointLikelihood(float(rng.uniform(-60, 70)), float(rng.uniform(-180, 180)),
                                  float(rng.uniform(50, 2000)))
        atoms.append(Atom(name=f"a{i}", engine=f"e{i % 4}", kind="metadata", evidence="",
                          confidence=float(rng.uniform(0.3, 1.0)), likelihood=lik))
    return atoms


def naive_fuse(maps: list[np.ndarray], prior: np.ndarray) -> np.ndarray:
    """Per-cell Python loop: the baseline."""
    n = len(prior)
    out = [0.0] * n
    for c in range(n):
        s = prior[c]
        for m in maps:
            s += m[c]
        out[c] = s
    mx = max(out)
    z = mx + math.log(sum(math.exp(v - mx) for v in out))
    return np.array([v - z for v in out])


def best_of(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    print("command:", " ".join([".venv/bin/python", *sys.argv]))
    rng = np.random.default_rng(0)
    grid = global_grid(3)
    atoms = make_atoms(50, rng)
    weights = FusionWeights(prior="uniform")
    fuse(atoms, weights, fine_res=3)  # warm caches

    groups = group_atoms(atoms, weights)
    maps = [group_map(g, grid) for g in groups]
    prior = np.log(grid.area_km2 / grid.area_km2.sum())

    def vec() -> np.ndarray:
        lp = prior + np.sum(maps, axis=0)
        return lp - np.logaddexp.reduce(lp)

    t_sum = best_of(vec)
    t_naive = best_of(lambda: naive_fuse(maps, prior), repeat=1)
    np.testing.assert_allclose(vec(), naive_fuse(maps, prior), atol=1e-8)
    t_maps = best_of(lambda: [group_map(g, grid) for g in groups], repeat=3)
    t_full = best_of(lambda: fuse(atoms, weights, fine_res=3), repeat=3)
    t_refined = best_of(lambda: fuse(atoms, weights), repeat=3)
    print(f"cells: {len(grid)} (H3 res 3), atoms: {len(atoms)}")
    print(f"fusion of 50 precomputed maps, vectorised : {t_sum * 1e3:8.2f} ms")
    print(f"fusion of 50 precomputed maps, naive loop : {t_naive * 1e3:8.2f} ms "
          f"(×{t_naive / t_sum:,.0f} slower)")
    print(f"rendering 50 atom maps                     : {t_maps * 1e3:8.2f} ms")
    print(f"fuse() end to end, res 3 (render + fuse)   : {t_full * 1e3:8.2f} ms  (goal < 100 ms)")
    print(f"fuse() with res-5 refinement               : {t_refined * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
