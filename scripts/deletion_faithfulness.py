"""Deletion faithfulness of the rationale: remove each file's top-contributing atom group
and check that the answer moves or loses confidence.

Run: .venv/bin/python scripts/deletion_faithfulness.py MANIFEST.csv [--with-metadata]
A case counts as faithful when, without its top atom, the chosen country changes, its
probability drops, or the point estimate moves more than 1 km.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avgeo.data.manifest import read_manifest
from avgeo.errors import AvgeoError
from avgeo.pipeline import locate


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--with-metadata", action="store_true")
    ap.add_argument("--engines", default="all")
    args = ap.parse_args()
    print("command:", " ".join([".venv/bin/python", *sys.argv]))
    df = read_manifest(args.manifest)
    n = faithful = 0
    for row in df.itertuples():
        try:
            pred = locate(row.file, engines=args.engines, use_metadata=args.with_metadata,
                          explain=True)
        except AvgeoError as exc:
            print(f"{Path(row.file).name}: skipped ({exc.message})")
            continue
        chain = {c.level: c for c in pred.chain}
        if not pred.counterfactuals or "country" not in chain:
            print(f"{Path(row.file).name:34s} no geographic atoms: not a case")
            continue
        cf = pred.counterfactuals[0]
        before = chain["country"]
        moved = cf.country != before.code or cf.country_probability < before.probability - 1e-6 \
            or cf.moved_km > 1.0
        n += 1
        faithful += moved
        print(f"{Path(row.file).name:34s} {before.code} {before.probability:5.1%} → without "
              f"{cf.removed!r}: {cf.country or '-'} {cf.country_probability:5.1%}, moved "
              f"{cf.moved_km:8.1f} km  {'ok' if moved else 'NOT FAITHFUL'}")
    if n:
        print(f"faithful: {faithful}/{n} = {faithful / n:.0%} (goal ≥ 90 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
