"""Country → continent in the 7-continent model (AF AN AS EU NA OC SA), and short names.

Source: GeoNames countryInfo (`continent`, `Country` columns; CC-BY 4.0), vendored as
assets/geo/country_continent.csv by scripts/build_continent_table.py. Transcontinental
states follow GeoNames (RU, CY → Europe; TR, GE, AZ, AM, KZ → Asia; EG → Africa).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

TABLE_FILE = Path(__file__).resolve().parents[1] / "assets" / "geo" / "country_continent.csv"

CONTINENT_NAMES = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}


@lru_cache(maxsize=1)
def _rows() -> list[dict[str, str]]:
    with open(TABLE_FILE, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@lru_cache(maxsize=1)
def continent_code_table() -> dict[str, str]:
    """ISO alpha-2 → continent code."""
    return {r["alpha2"]: r["continent"] for r in _rows() if r["continent"] in CONTINENT_NAMES}


@lru_cache(maxsize=1)
def short_country_names() -> dict[str, str]:
    """ISO alpha-2 → GeoNames short English name ('Russia', 'South Korea', 'Kosovo')."""
    return {r["alpha2"]: r["name"] for r in _rows()}
