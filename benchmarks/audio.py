"""Audio path benchmark: decode → BirdNET windows (+ embeddings) → species atoms and their
range maps on the res-3 grid (+ the mains-hum engine when present), per stage as × realtime
(wall and CPU), plus the one-off costs: model load and cold species-range table builds.

    python benchmarks/audio.py [--repeats 3] [--overlap 0 1.5] [--full-build] [--res3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "media"
FILES = ["seattle_xc563936.mp3", "colombia_spinetail.wav", "jura_dawn_0600.wav",
         "jfk_speech.flac"]


class Clock:
    """Wall and process-CPU seconds of a block (CPU is robust to a busy shared machine)."""

    def __enter__(self) -> Clock:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def _best(fn, repeats: int) -> tuple[float, float, object]:
    best_w = best_c = float("inf")
    out = None
    for _ in range(repeats):
        with Clock() as c:
            out = fn()
        best_w, best_c = min(best_w, c.wall), min(best_c, c.cpu)
    return best_w, best_c, out


def _row(name: str, dur_s: float, wall: float, cpu: float) -> str:
    return (f"  {name:<28} {wall * 1000:9.1f} ms wall {dur_s / max(wall, 1e-9):8.1f}× rt"
            f"   {cpu * 1000:9.1f} ms cpu {dur_s / max(cpu, 1e-9):8.1f}× rt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--overlap", type=float, nargs="+", default=[0.0, 1.5])
    ap.add_argument("--full-build", action="store_true",
                    help="build all 48 weekly tables + year-round (res 2) and report size")
    ap.add_argument("--res3", action="store_true", help="also time a res-3 year-round table")
    ap.add_argument("--cache", type=Path, default=None,
                    help="cache dir (default: a fresh temp dir, so cold costs are real)")
    args = ap.parse_args()

    print("$ python " + shlex.join(["benchmarks/audio.py", *sys.argv[1:]]))
    cache = args.cache or Path(tempfile.mkdtemp(prefix="avgeo_bench_audio_"))
    os.environ["AVGEO_CACHE_DIR"] = str(cache)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, cache {cache}")

    import numpy as np

    from avgeo.geo.grid import global_grid
    from avgeo.media import open_media
    from avgeo.perception.audio import birdnet as bn
    from avgeo.perception.audio import species_range as sr
    from avgeo.perception.base import EngineContext

    try:
        from avgeo.perception.audio.hum import HumEngine
    except ImportError:
        HumEngine = None

    grid = global_grid(3)
    print("\n## one-off costs")
    with Clock() as c:
        bn.classifier()
    print(f"  classifier load (cold: rewrites the model with its embedding output once) "
          f"{c.wall:.2f} s")
    bn.classifier.cache_clear()
    with Clock() as c:
        bn.classifier()
    print(f"  classifier load (warm, rewritten model cached on disk) {c.wall:.2f} s")
    with Clock() as c:
        t = sr.range_table(sr.YEAR_ROUND)
    size = sr.table_path(sr.YEAR_ROUND, sr.DEFAULT_RES).stat().st_size
    print(f"  range table res {sr.DEFAULT_RES} year-round, cold build {c.wall:.2f} s "
          f"(cpu {c.cpu:.2f} s): {t.occ_q.size:,} entries, {size / 1e6:.2f} MB on disk, "
          f"{t.nbytes / 1e6:.1f} MB in memory")
    sr._TABLES.clear()
    with Clock() as c:
        sr.range_table(sr.YEAR_ROUND)
    print(f"  range table load from disk {c.wall * 1000:.0f} ms")
    if args.res3:
        with Clock() as c:
            t3 = sr.range_table(sr.YEAR_ROUND, 3)
        size3 = sr.table_path(sr.YEAR_ROUND, 3).stat().st_size
        print(f"  range table res 3 year-round, cold build {c.wall:.2f} s: "
              f"{t3.occ_q.size:,} entries, {size3 / 1e6:.1f} MB on disk")
    if args.full_build:
        total = 0
        with Clock() as c:
            for w in range(1, 49):
                sr.range_table(w)
                total += sr.table_path(w, sr.DEFAULT_RES).stat().st_size
        total += size
        print(f"  all 48 weeks + year-round at res {sr.DEFAULT_RES}: {c.wall:.1f} s "
              f"(cpu {c.cpu:.1f} s), {total / 1e6:.1f} MB on disk")
    else:
        with Clock() as c:
            sr.range_table(11)
        print(f"  one weekly table (week 11), cold build {c.wall:.2f} s; all 48 weeks "
              f"≈ {48 * c.wall:.0f} s (built lazily, one per week first used)")

    for name in FILES:
        path = args.data / name
        if not path.is_file():
            print(f"\n## {name}: missing, skipped")
            continue
        media = open_media(path)
        dur = float(media.duration_s)
        print(f"\n## {name} ({dur:.1f} s)")

        def decode(media=media):
            return [ch.samples for ch in media.audio_chunks(sample_rate=48000, chunk_s=30.0)]

        w, cp, chunks = _best(decode, args.repeats)
        print(_row("decode → 48 kHz mono", dur, w, cp))
        totals_w, totals_c = w, cp
        for ov in args.overlap:
            def infer(chunks=chunks, ov=ov):
                return bn.analyze_windows(bn.iter_windows(chunks, bn.WINDOW_S - ov))

            w, cp, result = _best(infer, args.repeats)
            print(_row(f"BirdNET windows, overlap {ov:g} s", dur, w, cp)
                  + f"   ({result.n_windows} windows, {len(result.detections)} det.)")
            if ov == args.overlap[0]:
                totals_w, totals_c, first = totals_w + w, totals_c + cp, result

        def maps(result=first):
            atoms = bn.detections_to_atoms(result)
            per = {a.pool_key: a for a in atoms if a.likelihood is not None}
            # A fresh likelihood per call: time the render, not the memo.
            for a in per.values():
                a.likelihood._memo.clear()
                a.likelihood.log_map(grid)
            return atoms

        w, cp, atoms = _best(maps, args.repeats)
        n_sp = len({a.pool_key for a in atoms if a.kind == "species"})
        print(_row("atoms + range maps (res 3)", dur, w, cp) + f"   ({n_sp} species)")
        totals_w, totals_c = totals_w + w, totals_c + cp
        if HumEngine is not None:
            hum = HumEngine()
            if hum.available()[0]:
                w, cp, _ = _best(lambda hum=hum, media=media: hum.atoms(media, EngineContext()),
                                 args.repeats)
                print(_row("hum engine (own decode)", dur, w, cp))
                totals_w, totals_c = totals_w + w, totals_c + cp
        print(_row("whole audio path", dur, totals_w, totals_c))
        assert np.isfinite(totals_w)


if __name__ == "__main__":
    main()
