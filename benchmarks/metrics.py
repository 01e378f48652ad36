"""Metric cost over 1M random predictions: vectorised `distance_metrics` vs a pure-Python loop
(run on a 20k subset and extrapolated), plus reading and joining a 1M-row CSV pair.

Run: .venv/bin/python benchmarks/metrics.py [--n 1000000] [--naive-n 20000] [--no-io]
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from avgeo.eval import distance_metrics, load_pairs
from avgeo.eval.metrics import THRESHOLDS_KM
from avgeo.geo.sphere import EARTH_RADIUS_KM


def naive_metrics(plat, plon, tlat, tlon) -> dict[str, float]:
    """The textbook per-row loop: haversine, threshold counts, sorted median, mean, GeoScore."""
    dists = []
    for a, b, c, d in zip(plat, plon, tlat, tlon, strict=True):
        p1, p2 = math.radians(a), math.radians(c)
        h = (math.sin((p2 - p1) / 2) ** 2
             + math.cos(p1) * math.cos(p2) * math.sin(math.radians(d - b) / 2) ** 2)
        dists.append(2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h))))
    out = {f"acc_{t:g}": sum(1 for x in dists if x <= t) / len(dists) for t in THRESHOLDS_KM}
    out["median_km"] = statistics.median(dists)
    out["mean_km"] = statistics.fmean(dists)
    out["geoscore_mean"] = statistics.fmean(5000 * math.exp(-x / 1492.7) for x in dists)
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--naive-n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-io", action="store_true", help="skip the CSV read/join timing")
    args = ap.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))

    rng = np.random.default_rng(0)
    n = args.n
    tlat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    tlon = rng.uniform(-180, 180, n)
    plat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    plon = rng.uniform(-180, 180, n)

    t_vec = best_of(lambda: distance_metrics(plat, plon, tlat, tlon), args.repeat)
    m = distance_metrics(plat, plon, tlat, tlon)

    k = min(args.naive_n, n)
    sub = [x[:k].tolist() for x in (plat, plon, tlat, tlon)]
    t_naive_sub = best_of(lambda: naive_metrics(*sub), 1)
    t_naive = t_naive_sub * n / k
    # Same numbers on the subset: the loop is a reference, not just a timer.
    ref = naive_metrics(*sub)
    chk = distance_metrics(*sub)
    assert abs(ref["mean_km"] - chk.mean_km) < 1e-6 * chk.mean_km
    assert all(abs(ref[f"acc_{t:g}"] - chk.acc[t]) < 1e-12 for t in THRESHOLDS_KM)

    print(f"n = {n:,} random prediction/truth pairs (uniform on the sphere)")
    print(f"vectorised distance_metrics: {t_vec:.3f} s  (best of {args.repeat})  "
          f"goal < 2 s: {'met' if t_vec < 2 else 'MISSED'}")
    print(f"naive Python loop: {t_naive_sub:.3f} s on {k:,} rows -> {t_naive:.2f} s "
          f"extrapolated to {n:,}")
    print(f"speed-up: {t_naive / t_vec:.1f}x")
    print(f"check: median {m.median_km:.1f} km (uniform pairs: ~{math.pi / 2 * 6371:.0f}), "
          f"acc@2500 {m.acc[2500.0]:.4f}")

    if args.no_io:
        return
    with tempfile.TemporaryDirectory() as tmp:
        ids = np.char.add("img", np.arange(n).astype(str))
        perm = rng.permutation(n)  # predictions in a different order than the truth
        pd.DataFrame({"id": ids[perm], "lat": plat[perm], "lon": plon[perm]}).to_csv(
            f"{tmp}/pred.csv", index=False)
        pd.DataFrame({"id": ids, "lat": tlat, "lon": tlon}).to_csv(f"{tmp}/truth.csv",
                                                                    index=False)
        t0 = time.perf_counter()
        pairs = load_pairs(f"{tmp}/pred.csv", f"{tmp}/truth.csv")
        t_io = time.perf_counter() - t0
        assert len(pairs) == n
    print(f"read + validate + join two {n:,}-row CSVs (load_pairs): {t_io:.2f} s")


if __name__ == "__main__":
    main()
