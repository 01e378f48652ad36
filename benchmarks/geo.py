"""Reverse geocoding (continent, country, admin-1, place) of random land+sea points against
baselines measured in the same run, plus H3 grid, cell-label and prior build times.

Run: .venv/bin/python benchmarks/geo.py [--n 100000] [--naive-n 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time

import numpy as np


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """Median wall time (s) over `repeat` runs and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def random_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the sphere, so ~29% land as on Earth."""
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return lat, rng.uniform(-180.0, 180.0, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--naive-n", type=int, default=300,
                    help="points for the naive per-polygon shapely loop (extrapolated)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print("$ " + shlex.join([os.path.relpath(sys.executable), *sys.argv]))

    # Cold builds go to a private cache so that the numbers are real first-use costs.
    cold_dir = tempfile.mkdtemp(prefix="avgeo-bench-cache-")
    os.environ["AVGEO_CACHE_DIR"] = cold_dir
    from avgeo.geo import grid as grid_mod
    from avgeo.geo import priors, regions

    print(f"cache (cold builds): {cold_dir}")
    print("\n## first use (cold cache)")
    t, _ = timed(regions._countries)
    print(f"country polygons + border raster build   {t:8.2f} s")
    t, _ = timed(regions._gazetteer)
    print(f"gazetteer (rg cities1000 + population)   {t:8.2f} s")
    regions._countries.cache_clear()
    regions._gazetteer.cache_clear()
    t1, _ = timed(regions._countries)
    t2, _ = timed(regions._gazetteer)
    print(f"... same, from the disk cache            {t1 + t2:8.2f} s")

    lat, lon = random_points(args.n)
    print(f"\n## reverse geocoding {args.n:,} random points (uniform on the sphere)")
    t_cc, cc = timed(lambda: regions.country_of_points(lat, lon), args.repeat)
    t_chain, df = timed(lambda: regions.chain_of_region(lat, lon), args.repeat)
    land = df["country_code"].to_numpy() != ""
    print(f"avgeo country_of_points                  {t_cc:8.3f} s   ({land.mean():.1%} land)")
    print(f"avgeo chain_of_region (continent, country, admin-1, place, population)"
          f"\n                                         {t_chain:8.3f} s   (goal <= 0.3 s)")
    print(f"   admin-1 found on land {np.mean(df['admin1'].to_numpy()[land] != ''):.1%}, "
          f"ISO 3166-2 mapped {np.mean(df['admin1_code'].to_numpy()[land] != ''):.1%}, "
          f"place population known {np.mean(np.isfinite(df['city_population'])[land]):.1%}")

    import reverse_geocoder as rg

    t_load, geocoder = timed(lambda: rg.RGeocoder(mode=1, verbose=False))
    coords = list(zip(lat.tolist(), lon.tolist(), strict=True))
    t_rg, rg_out = timed(lambda: geocoder.query(coords), 1)
    print(f"baseline reverse_geocoder (mode=1, single process): load {t_load:.2f} s, "
          f"query {t_rg:.3f} s  -> avgeo chain is {t_rg / t_chain:.1f}x faster than the query "
          "alone (and rg answers every sea point with its nearest town)")
    agree = np.mean([r["cc"] == c for r, c in zip(rg_out, cc, strict=True) if c])
    print(f"   on land, rg's nearest-town country equals the polygon country for {agree:.1%}")

    # Naive: test every polygon part for every point (no index), on a subset.
    import shapely

    c = regions._countries()
    sub = slice(0, args.naive_n)

    def naive() -> list[str]:
        out = []
        for a, b in zip(lat[sub], lon[sub], strict=True):
            p = shapely.Point(b, a)
            hit = ""
            for g, k in zip(c.geoms, c.poly_code, strict=True):
                if g.contains(p):
                    hit = str(c.codes[k])
                    break
            out.append(hit)
        return out

    t_naive, naive_cc = timed(naive)
    per_n = t_naive / args.naive_n * args.n
    fast_nc = regions.country_of_points(lat[sub], lon[sub], coast_km=0.0)
    print(f"baseline naive shapely loop over {len(c.geoms)} polygons: {t_naive:.2f} s for "
          f"{args.naive_n} points -> {per_n:.0f} s extrapolated to {args.n:,}; "
          f"avgeo country is {per_n / t_cc:,.0f}x faster; same answers on the subset: "
          f"{np.array_equal(np.asarray(naive_cc), fast_nc)}")

    print("\n## H3 grids")
    for res in range(5):
        grid_mod.global_grid.cache_clear()
        t, g = timed(lambda r=res: grid_mod.global_grid(r))
        print(f"global_grid({res}) {len(g):>9,} cells       {t:8.3f} s")
    for res in (2, 3):
        g = grid_mod.global_grid(res)
        t_cold, _ = timed(lambda g=g: regions.cell_countries(g))
        regions._CELL_COUNTRIES.clear()
        t_disk, _ = timed(lambda g=g: regions.cell_countries(g))
        t_mem, _ = timed(lambda g=g: regions.cell_countries(g), args.repeat)
        print(f"cell_countries res {res}: build {t_cold:6.2f} s, from disk {t_disk * 1e3:6.2f} ms, "
              f"in memory {t_mem * 1e6:6.1f} us (goal warm res 3 < 50 ms)")
        for name in ("population_prior", "photo_prior"):
            fn = getattr(priors, name)
            t_cold, _ = timed(lambda g=g, fn=fn: fn(g))
            priors._MEMO.clear()
            t_disk, _ = timed(lambda g=g, fn=fn: fn(g))
            print(f"{name:>16} res {res}: build {t_cold:6.2f} s, from disk {t_disk * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
