"""EXIF reader: GPS position (with N/S/E/W refs, altitude, DOP, GPS time), capture time,
UTC offset and camera make/model, via Pillow with exifread as a fallback."""

from __future__ import annotations

import contextlib
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from avgeo.perception.meta.types import UERE_M, GpsFix, camera_name, plausible_latlon

#: Position error assumed for an EXIF fix that states neither DOP nor horizontal error.
DEFAULT_EXIF_ACCURACY_M = 30.0

# EXIF GPS IFD tag numbers (EXIF 2.32 / CIPA DC-008).
_LAT_REF, _LAT, _LON_REF, _LON, _ALT_REF, _ALT = 1, 2, 3, 4, 5, 6
_TIMESTAMP, _STATUS, _DOP, _DATESTAMP, _HPOS_ERR = 7, 9, 11, 29, 31
_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769
_MAKE, _MODEL, _DATETIME = 271, 272, 306
_DT_ORIGINAL, _DT_DIGITIZED, _OFFSET, _OFFSET_ORIGINAL, _OFFSET_DIGITIZED = (
    36867, 36868, 36880, 36881, 36882)

_OFFSET_RE = re.compile(r"^\s*([+-])(\d{1,2}):?(\d{2})\s*$")


@dataclass
class ExifInfo:
    """What EXIF says. `capture_time_local` is the camera clock (naive); `utc_offset_min`
    comes from OffsetTimeOriginal, else is inferred from camera clock minus GPS time."""

    gps: GpsFix | None = None
    capture_time_local: datetime | None = None
    capture_time_utc: datetime | None = None
    utc_offset_min: int | None = None
    utc_offset_source: str | None = None
    make: str | None = None
    model: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def camera(self) -> str | None:
        return camera_name(self.make, self.model)


def _float(v: Any) -> float:
    """A rational/number as float; nan for zero denominators and junk."""
    try:
        if isinstance(v, tuple) and len(v) == 2:  # raw (num, den)
            num, den = v
            return float(num) / float(den) if float(den) != 0 else math.nan
        if hasattr(v, "num") and hasattr(v, "den"):  # exifread Ratio
            return float(v.num) / float(v.den) if v.den else math.nan
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return math.nan
    return f


def _dms(v: Any) -> float:
    """Degrees from 1-3 values (deg[, min[, sec]]); nan for junk or out-of-range parts."""
    if v is None:
        return math.nan
    parts = [_float(x) for x in v] if isinstance(v, list | tuple) else [_float(v)]
    if not 1 <= len(parts) <= 3 or any(not math.isfinite(p) for p in parts):
        return math.nan
    if len(parts) >= 2 and not 0 <= parts[1] < 60.0 + 1e-9:
        return math.nan
    if len(parts) == 3 and not 0 <= parts[2] < 60.0 + 1e-6:
        return math.nan
    deg = parts[0]
    sign = -1.0 if deg < 0 else 1.0
    total = abs(deg) + sum(p / 60.0**i for i, p in enumerate(parts[1:], start=1))
    return sign * total


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("ascii", "replace")
    s = str(v).replace("\x00", "").strip()
    return s or None


def _ref_sign(ref: Any, neg: str) -> float:
    s = (_text(ref) or "").upper()
    return -1.0 if s[:1] == neg else 1.0


def _exif_datetime(v: Any) -> datetime | None:
    s = _text(v)
    if not s:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            dt = datetime.strptime(s[:19], fmt)
        except ValueError:
            continue
        return dt if dt.year >= 1900 else None  # "0000:00:00 00:00:00" is a blank clock
    return None


def parse_utc_offset(v: Any) -> int | None:
    """'+09:00' / '-0700' → minutes east of UTC; None for junk or out-of-range offsets."""
    m = _OFFSET_RE.match(_text(v) or "")
    if not m:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    if int(m.group(3)) >= 60 or minutes > 14 * 60:
        return None
    return -minutes if m.group(1) == "-" else minutes


def format_utc_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def infer_utc_offset(local: datetime, utc: datetime, max_residual_min: float = 5.0) -> int | None:
    """Camera clock minus GPS time, snapped to the 15-minute grid of real UTC offsets. A few
    minutes of clock drift are tolerated; a one-day disagreement is folded away because some
    cameras write the wrong GPS date stamp while the time of day is right."""
    diff_min = (local - utc.replace(tzinfo=None)).total_seconds() / 60.0
    candidates = [c for c in (diff_min, diff_min - 1440.0, diff_min + 1440.0)
                  if -12 * 60 - max_residual_min <= c <= 14 * 60 + max_residual_min]
    if not candidates:
        return None
    best = min(candidates, key=abs)  # prefer |offset| <= 12 h when two fit
    snapped = round(best / 15.0) * 15
    if abs(best - snapped) > max_residual_min:
        return None
    return int(snapped)


def _gps_time(date_v: Any, time_v: Any) -> datetime | None:
    d = _text(date_v)
    if not d or time_v is None or not isinstance(time_v, list | tuple) or len(time_v) != 3:
        return None
    try:
        day = datetime.strptime(d[:10].replace("-", ":"), "%Y:%m:%d")
    except ValueError:
        return None
    h, mi, s = (_float(x) for x in time_v)
    if not all(math.isfinite(x) for x in (h, mi, s)) or not (
            0 <= h < 24 and 0 <= mi < 60 and 0 <= s < 61):
        return None
    return (day + timedelta(hours=h, minutes=mi, seconds=s)).replace(tzinfo=UTC)


def _from_tables(ifd0: dict, exif_ifd: dict, gps: dict) -> ExifInfo:
    """Build ExifInfo from plain tag-number → value dicts (shared by both backends)."""
    info = ExifInfo(make=_text(ifd0.get(_MAKE)), model=_text(ifd0.get(_MODEL)))
    local = (_exif_datetime(exif_ifd.get(_DT_ORIGINAL)) or _exif_datetime(
        exif_ifd.get(_DT_DIGITIZED)) or _exif_datetime(ifd0.get(_DATETIME)))
    info.capture_time_local = local
    offset = None
    for tag in (_OFFSET_ORIGINAL, _OFFSET_DIGITIZED, _OFFSET):
        offset = parse_utc_offset(exif_ifd.get(tag))
        if offset is not None:
            info.utc_offset_min, info.utc_offset_source = offset, "exif"
            break
    gps_time = _gps_time(gps.get(_DATESTAMP), gps.get(_TIMESTAMP))
    if local is not None and offset is not None:
        info.capture_time_utc = (local - timedelta(minutes=offset)).replace(tzinfo=UTC)
    elif gps_time is not None:
        info.capture_time_utc = gps_time
        if local is not None:
            inferred = infer_utc_offset(local, gps_time)
            if inferred is not None:
                info.utc_offset_min, info.utc_offset_source = inferred, "camera clock vs GPS"
                info.capture_time_utc = (local - timedelta(minutes=inferred)).replace(
                    tzinfo=UTC)
    lat = _dms(gps.get(_LAT))
    lon = _dms(gps.get(_LON))
    if gps.get(_LAT) is not None or gps.get(_LON) is not None:
        lat = abs(lat) * _ref_sign(gps.get(_LAT_REF), "S") if gps.get(_LAT_REF) else lat
        lon = abs(lon) * _ref_sign(gps.get(_LON_REF), "W") if gps.get(_LON_REF) else lon
        if plausible_latlon(lat, lon):
            info.gps = _gps_fix(lat, lon, gps, gps_time)
        else:
            info.notes.append("EXIF GPS present but not a plausible position; ignored")
    return info


def _gps_fix(lat: float, lon: float, gps: dict, gps_time: datetime | None) -> GpsFix:
    alt = _float(gps.get(_ALT)) if gps.get(_ALT) is not None else math.nan
    alt_ref = gps.get(_ALT_REF)
    if isinstance(alt_ref, bytes):
        alt_ref = alt_ref[:1] == b"\x01"
    else:
        alt_ref = str(alt_ref).strip() in ("1", "b'\\x01'")
    alt_m = (-abs(alt) if alt_ref else alt) if math.isfinite(alt) and abs(alt) < 1e5 else None
    dop = _float(gps.get(_DOP)) if gps.get(_DOP) is not None else math.nan
    dop_v = dop if math.isfinite(dop) and 0 < dop < 100 else None
    herr = _float(gps.get(_HPOS_ERR)) if gps.get(_HPOS_ERR) is not None else math.nan
    if math.isfinite(herr) and 0 < herr < 1e5:
        accuracy, how = herr, "GPSHPositioningError"
    elif dop_v is not None:
        accuracy, how = max(dop_v * UERE_M, 3.0), "DOP"
    else:
        accuracy, how = DEFAULT_EXIF_ACCURACY_M, "default"
    fix = GpsFix(lat=lat, lon=lon, alt_m=alt_m, dop=dop_v, time_utc=gps_time, source="exif",
                 accuracy_m=float(accuracy), notes=[f"accuracy from {how}"])
    if (_text(gps.get(_STATUS)) or "").upper().startswith("V"):
        fix.notes.append("GPSStatus V (measurement void): position may be stale")
        fix.accuracy_m = max(fix.accuracy_m, 1000.0)
    return fix


def _read_pillow(path: Path) -> ExifInfo | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            ifd0 = dict(exif.items())
            gps = dict(exif.get_ifd(_GPS_IFD).items()) if _GPS_IFD in ifd0 else {}
            sub = dict(exif.get_ifd(_EXIF_IFD).items()) if _EXIF_IFD in ifd0 else {}
    except Exception:  # any decoder complaint (bomb, truncation, junk IFD): try exifread
        return None
    return _from_tables(ifd0, sub, gps)


def _read_exifread(path: Path) -> ExifInfo | None:
    try:
        import exifread
    except ImportError:
        return None
    log = logging.getLogger("exifread")
    level = log.level
    # exifread logs "File format not recognized." for every non-EXIF file; not our user's news.
    log.setLevel(logging.CRITICAL)
    try:
        with open(path, "rb") as fh:
            tags = exifread.process_file(fh, details=False)
    except Exception:  # exifread raises assorted errors on junk
        return None
    finally:
        log.setLevel(level)
    if not tags:
        return None
    ifd0: dict[int, Any] = {}
    sub: dict[int, Any] = {}
    gps: dict[int, Any] = {}
    for name, tag in tags.items():
        group = name.split(" ", 1)[0]
        table = {"Image": ifd0, "EXIF": sub, "GPS": gps}.get(group)
        if table is None:
            continue
        vals = tag.values
        if isinstance(vals, list) and len(vals) == 1:
            vals = vals[0]
        table[tag.tag] = vals
    return _from_tables(ifd0, sub, gps)


def read_exif(path: str | Path) -> ExifInfo | None:
    """EXIF facts of an image (JPEG, TIFF, PNG, WebP, HEIC); None when there is no EXIF or the
    file cannot be parsed. Never decodes pixels."""
    path = Path(path)
    with contextlib.suppress(ImportError):
        import pillow_heif

        pillow_heif.register_heif_opener()
    info = _read_pillow(path)
    if info is None or (info.gps is None and info.capture_time_local is None
                        and info.make is None):
        alt = _read_exifread(path)
        if alt is not None and (info is None or alt.gps is not None):
            info = alt
    return info
