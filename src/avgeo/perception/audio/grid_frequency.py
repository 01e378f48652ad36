"""Nominal mains frequency (50 or 60 Hz) of every country's electricity grid, with Japan's
east/west split by longitude; the lookup that turns a detected hum into geography.

Source: Wikipedia, "Mains electricity by country" (table of voltage and frequency per
country and territory), cross-checked with the IEC "World Plugs" list, as read in
November 2025. Countries whose grid is split without a usable geographic rule are "both";
uninhabited territories with no public grid are None.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

GridHz = Literal[50, 60, "both"]

#: 60 Hz grids: most of the Americas, Korea, Taiwan, the Philippines, Saudi Arabia,
#: Liberia and the US Pacific territories.
HZ_60: frozenset[str] = frozenset({
    "AG", "AI", "AS", "AW", "BL", "BM", "BR", "BS", "BZ", "CA", "CO", "CR", "CU", "DO",
    "EC", "FM", "GT", "GU", "HN", "HT", "KN", "KP", "KR", "KY", "LR", "MF", "MH", "MP",
    "MS", "MX", "NI", "PA", "PE", "PF", "PH", "PR", "PW", "SA", "SR", "SV", "SX", "TC",
    "TT", "TW", "UM", "US", "VE", "VG", "VI",
})

#: Split grids. JP is resolved by longitude (`japan_grid_hz`); the others are not:
#: BQ (Bonaire 50 Hz, Saba and Sint Eustatius 60 Hz), GY (Georgetown 50 Hz, most of the
#: rest 60 Hz), IO (Diego Garcia base supply of both kinds).
BOTH: frozenset[str] = frozenset({"BQ", "GY", "IO", "JP"})

#: No public grid (uninhabited, or research stations only).
NO_GRID: frozenset[str] = frozenset({"AQ", "BV", "GS", "HM", "TF"})

#: 50 Hz grids: Europe, Africa, most of Asia and Oceania, the Southern Cone of South
#: America, and Caribbean islands with British/French/Dutch-era grids.
HZ_50: frozenset[str] = frozenset({
    "AD", "AE", "AF", "AL", "AM", "AO", "AR", "AT", "AU", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BN", "BO", "BT", "BW", "BY", "CC", "CD", "CF",
    "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ",
    "DK", "DM", "DZ", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FO", "FR",
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR",
    "GW", "HK", "HR", "HU", "ID", "IE", "IL", "IM", "IN", "IQ", "IR", "IS", "IT", "JE",
    "JM", "JO", "KE", "KG", "KH", "KI", "KM", "KW", "KZ", "LA", "LB", "LC", "LI", "LK",
    "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MG", "MK", "ML", "MM", "MN",
    "MO", "MQ", "MR", "MT", "MU", "MV", "MW", "MY", "MZ", "NA", "NC", "NE", "NF", "NG",
    "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PG", "PK", "PL", "PM", "PN", "PS", "PT",
    "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SB", "SC", "SD", "SE", "SG", "SH", "SI",
    "SJ", "SK", "SL", "SM", "SN", "SO", "SS", "ST", "SY", "SZ", "TD", "TG", "TH", "TJ",
    "TK", "TL", "TM", "TN", "TO", "TR", "TV", "TZ", "UA", "UG", "UY", "UZ", "VA", "VC",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
})

# Japan's 50/60 Hz boundary runs from Itoigawa (Niigata) on the Sea of Japan to the mouth
# of the Fuji River (Shizuoka) on the Pacific: east of it (Tokyo, Tohoku, Hokkaido) is
# 50 Hz, west (Nagoya, Kansai, Kyushu, Okinawa) is 60 Hz. A straight line between the two
# ends is good to a few tens of km, which is finer than the grid cells it is rendered on.
_ITOIGAWA = (37.04, 137.86)  # (lat, lon)
_FUJI_MOUTH = (35.12, 138.63)


def japan_boundary_lon(lat):
    """Longitude of the 50/60 Hz boundary at `lat` (held constant beyond its two ends)."""
    (lat_n, lon_n), (lat_s, lon_s) = _ITOIGAWA, _FUJI_MOUTH
    t = np.clip((lat_n - np.asarray(lat, dtype=np.float64)) / (lat_n - lat_s), 0.0, 1.0)
    return lon_n + t * (lon_s - lon_n)


def japan_grid_hz(lat, lon) -> np.ndarray:
    """50 or 60 per point in Japan (vectorised over arrays of lat/lon)."""
    east = np.asarray(lon, dtype=np.float64) >= japan_boundary_lon(lat)
    return np.where(east, 50, 60)


def grid_hz(country: str) -> GridHz | None:
    """Nominal mains frequency of a country (ISO 3166-1 alpha-2), "both" for split grids,
    None for places without a grid or unknown codes."""
    code = country.upper()
    if code in BOTH:
        return "both"
    if code in HZ_60:
        return 60
    if code in HZ_50:
        return 50
    return None


def countries_on(nominal_hz: int) -> list[str]:
    """Countries whose whole grid runs at `nominal_hz` (split grids excluded)."""
    if nominal_hz == 50:
        return sorted(HZ_50)
    if nominal_hz == 60:
        return sorted(HZ_60)
    raise ValueError(f"nominal_hz must be 50 or 60, got {nominal_hz}")
