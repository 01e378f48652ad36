"""ISO 6709 point strings as QuickTime/MP4 store them (`©xyz`, `location`,
`com.apple.quicktime.location.ISO6709`): ±DD.DD, ±DDMM.MM and ±DDMMSS.SS forms."""

from __future__ import annotations

import re
from dataclasses import dataclass

from avgeo.perception.meta.types import plausible_latlon

_NUM = r"([+-])(\d+)(\.\d*)?"
_RE = re.compile(
    r"^\s*" + _NUM + _NUM + r"(?:([+-]\d+(?:\.\d*)?))?\s*(?:CRS[A-Za-z0-9_:.-]*)?\s*/?\s*$"
)


@dataclass(frozen=True)
class Iso6709Point:
    lat: float
    lon: float
    alt_m: float | None
    #: Size of the last written digit in degrees (0.0001 for ±DD.DDDD): the rounding step.
    step_deg: float


def _angle(sign: str, whole: str, frac: str | None, deg_digits: int) -> tuple[float, float] | None:
    """Digits before the point select the form: deg_digits → degrees, +2 → minutes, +4 →
    seconds. Writers that drop leading zeros (e.g. "-73.98") give fewer degree digits."""
    frac_v = float(frac) if frac and len(frac) > 1 else 0.0
    n_frac = len(frac) - 1 if frac else 0
    n = len(whole)
    if n <= deg_digits:
        value, step = float(whole) + frac_v, 10.0**-n_frac
    elif n == deg_digits + 2:
        deg, minutes = int(whole[:-2]), float(whole[-2:]) + frac_v
        if minutes >= 60.0:
            return None
        value, step = deg + minutes / 60.0, 10.0**-n_frac / 60.0
    elif n == deg_digits + 4:
        deg, minutes = int(whole[:-4]), int(whole[-4:-2])
        seconds = float(whole[-2:]) + frac_v
        if minutes >= 60 or seconds >= 60.0:
            return None
        value, step = deg + minutes / 60.0 + seconds / 3600.0, 10.0**-n_frac / 3600.0
    else:
        return None
    return (-value if sign == "-" else value), step


def parse_iso6709(text: str | bytes | None) -> Iso6709Point | None:
    """Parse one point; None for anything that is not a plausible position."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip().strip("\x00")
    if len(text) > 100:
        return None
    m = _RE.match(text)
    if not m:
        return None
    lat_s, lat_w, lat_f, lon_s, lon_w, lon_f, alt = m.groups()
    lat = _angle(lat_s, lat_w, lat_f, 2)
    lon = _angle(lon_s, lon_w, lon_f, 3)
    if lat is None or lon is None:
        return None
    if not plausible_latlon(lat[0], lon[0]):
        return None
    alt_m = None
    if alt:
        try:
            alt_m = float(alt)
        except ValueError:
            alt_m = None
    return Iso6709Point(lat=lat[0], lon=lon[0], alt_m=alt_m, step_deg=max(lat[1], lon[1]))
