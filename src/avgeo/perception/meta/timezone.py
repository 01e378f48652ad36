"""UTC offset → where on Earth that offset was in force on the capture date: a likelihood
over H3 cells from timezonefinder's zone polygons (cells whose zone had the offset then),
with a longitude-band fallback (offset·15° ± 20°) when the zone data is unavailable."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from avgeo.reasoning.likelihood import CellLikelihood, Likelihood, LongitudeBand

#: Resolution of the zone lookup: res-3 cells (~12,000 km², ~110 km across) follow zone
#: borders well enough for evidence that is rarely decisive on its own.
TZ_RES = 3
#: Relative likelihood of cells whose zone disagrees: camera clocks are often left on the
#: home zone when travelling, so a mismatch is unlikely but far from impossible.
MISMATCH = 0.05
#: Cells one hour off (a DST switch the camera missed, or a wrong summer/winter guess).
ONE_HOUR_OFF = 0.3


@dataclass
class OffsetRegion:
    """Where an offset applies: the likelihood, zone names and a summary longitude band."""

    likelihood: Likelihood
    offset_min: int
    zones: list[str]
    lon_min: float | None
    lon_max: float | None
    n_cells: int
    method: str


@functools.lru_cache(maxsize=4)
def _cell_zones(res: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cells, lon, zone index per cell, zone names) for every cell of the global grid."""
    from timezonefinder import TimezoneFinder

    from avgeo.geo.grid import global_grid

    grid = global_grid(res)
    tf = TimezoneFinder()
    names: dict[str, int] = {}
    idx = np.empty(len(grid), dtype=np.int32)
    for i, (la, lo) in enumerate(zip(grid.lat, grid.lon, strict=True)):
        name = tf.timezone_at(lng=float(lo), lat=float(la)) or ""
        idx[i] = names.setdefault(name, len(names))
    zone_names = np.array(list(names), dtype=object)
    return grid.cells, grid.lon, idx, zone_names


def _zone_offset_min(name: str, when: datetime) -> int | None:
    try:
        off = when.astimezone(ZoneInfo(name)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError, KeyError):
        return None
    return None if off is None else round(off.total_seconds() / 60.0)


def covering_band(lons: np.ndarray) -> tuple[float, float]:
    """Smallest longitude arc covering all values (may wrap the antimeridian)."""
    s = np.sort(np.mod(np.asarray(lons, dtype=np.float64) + 180.0, 360.0) - 180.0)
    if s.size == 1:
        return float(s[0]), float(s[0])
    gaps = np.diff(np.concatenate([s, [s[0] + 360.0]]))
    k = int(np.argmax(gaps))
    lo, hi = s[(k + 1) % s.size], s[k]
    return float(lo), float(hi)


def band_for_offset(offset_min: int, half_width_deg: float = 20.0) -> LongitudeBand:
    """Principled fallback: solar-time longitude of the offset ± political slack."""
    centre = offset_min / 4.0  # 15° per hour = 0.25° per minute
    lo = (centre - half_width_deg + 180.0) % 360.0 - 180.0
    hi = (centre + half_width_deg + 180.0) % 360.0 - 180.0
    return LongitudeBand(lon_min=lo, lon_max=hi, soft_deg=5.0, floor=MISMATCH)


def offset_region(offset_min: int, when_utc: datetime | None = None,
                  res: int = TZ_RES) -> OffsetRegion:
    """Cells whose time zone had `offset_min` at `when_utc` (any time of year if None:
    January or July). Falls back to a longitude band without timezonefinder."""
    try:
        cells, lon, idx, names = _cell_zones(res)
    except ImportError:
        band = band_for_offset(offset_min)
        return OffsetRegion(band, offset_min, [], band.lon_min, band.lon_max, 0, "band")
    if when_utc is None:
        year = datetime.now(UTC).year
        moments = [datetime(year, 1, 15, tzinfo=UTC), datetime(year, 7, 15, tzinfo=UTC)]
    else:
        moments = [when_utc if when_utc.tzinfo else when_utc.replace(tzinfo=UTC)]
    zone_ll = np.full(len(names), np.log(MISMATCH))
    matched: list[str] = []
    for z, name in enumerate(names):
        offs = [o for o in (_zone_offset_min(str(name), m) for m in moments) if o is not None]
        if not offs:
            continue
        best = min(abs(o - offset_min) for o in offs)
        if best == 0:
            zone_ll[z] = 0.0
            matched.append(str(name))
        elif best <= 60:
            zone_ll[z] = max(zone_ll[z], np.log(ONE_HOUR_OFF))
    cell_ll = zone_ll[idx]
    keep = cell_ll > np.log(MISMATCH)
    like = CellLikelihood(res=res, cells=cells[keep], logl=cell_ll[keep],
                          default=float(np.log(MISMATCH)),
                          label=f"UTC{'+' if offset_min >= 0 else '-'}"
                                f"{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}")
    exact = cell_ll == 0.0
    lo, hi = covering_band(lon[exact]) if exact.any() else (None, None)
    # Report land zones first: "Asia/Tokyo" says more to a reader than "Etc/GMT-9".
    counts = {n: int(np.sum(exact & (names[idx] == n))) for n in matched}
    zones = sorted(matched, key=lambda n: (n.startswith("Etc/"), -counts.get(n, 0)))
    return OffsetRegion(like, offset_min, zones, lo, hi, int(exact.sum()), "tz-polygons")
