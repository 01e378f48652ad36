"""Audio tags (ID3 COMM, Vorbis comments, MP4 text): coordinates written as a parenthesised
decimal pair, as xeno-canto does ("... Washington (47.6766, -122.294), United States ..."),
and the recording date."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from avgeo.perception.meta.types import GpsFix, plausible_latlon

#: A coordinate typed into a form (recordist's map pick), not a receiver fix.
TAG_COORD_ACCURACY_M = 500.0

_PAIR = re.compile(
    r"\(\s*([+-]?\d{1,2}\.(\d{1,8}))\s*[,;]\s*([+-]?\d{1,3}\.(\d{1,8}))\s*\)")
_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?!\d)")
_TIME = re.compile(r"(?<![\d:])([01]?\d|2[0-3]):([0-5]\d)\s*h\b")
# Tags that hold free text worth scanning, in order.
TEXT_KEYS = ("comment", "description", "comm", "location", "title", "album", "lyrics",
             "synopsis")
DATE_KEYS = ("date", "tdrc", "recording_date", "tdor", "year", "creation_time")


@dataclass
class TagInfo:
    gps: GpsFix | None = None
    recorded_local: datetime | None = None  # naive: the recordist's clock
    recorded_date: str | None = None  # 'YYYY-MM-DD' when only a date is given
    notes: list[str] = field(default_factory=list)


def parse_coordinate_pair(text: str | None) -> tuple[float, float] | None:
    """The one plausible '(lat, lon)' pair in the text; None if there is none, or if several
    disagree. Both numbers need a decimal point and one needs ≥2 decimals, so '(1, 2)' or a
    '(3.5, 4)' footnote is not read as a position."""
    if not text:
        return None
    found: list[tuple[float, float]] = []
    for m in _PAIR.finditer(text):
        lat, lon = float(m.group(1)), float(m.group(3))
        if max(len(m.group(2)), len(m.group(4))) < 2:
            continue
        if plausible_latlon(lat, lon):
            found.append((lat, lon))
    if not found:
        return None
    first = found[0]
    if any(abs(a - first[0]) > 1e-3 or abs(b - first[1]) > 1e-3 for a, b in found[1:]):
        return None
    return first


def parse_recording_time(text: str | None) -> tuple[str | None, datetime | None]:
    """('YYYY-MM-DD', local datetime when an 'HH:MMh' time is also given) from free text."""
    if not text:
        return None, None
    dm = _DATE.search(text)
    if not dm:
        return None, None
    date = f"{dm.group(1)}-{dm.group(2)}-{dm.group(3)}"
    tm = _TIME.search(text)
    local = None
    try:
        day = datetime.strptime(date, "%Y-%m-%d")
    except ValueError:
        return None, None
    if tm:
        local = day.replace(hour=int(tm.group(1)), minute=int(tm.group(2)))
    return date, local


def tag_info(tags: dict[str, str]) -> TagInfo:
    """Coordinates and recording time from a container's (lower-cased) tag dict."""
    info = TagInfo()
    texts = [(k, tags[k]) for k in TEXT_KEYS if tags.get(k)]
    texts += [(k, v) for k, v in tags.items() if k.startswith(("comment", "description"))
              and k not in TEXT_KEYS and v]
    for key, text in texts:
        pair = parse_coordinate_pair(text)
        if pair is not None:
            info.gps = GpsFix(lat=pair[0], lon=pair[1], source="tag", accuracy_m=(
                TAG_COORD_ACCURACY_M), notes=[f"coordinates in tag {key!r}"])
            date, local = parse_recording_time(text)
            if date:
                info.recorded_date, info.recorded_local = date, local
            break
    if info.recorded_date is None:
        for key in DATE_KEYS:
            date, local = parse_recording_time(tags.get(key))
            if date:
                info.recorded_date, info.recorded_local = date, local
                info.notes.append(f"date from tag {key!r}")
                break
    if info.recorded_date is None:
        for _key, text in texts:
            date, local = parse_recording_time(text)
            if date:
                info.recorded_date, info.recorded_local = date, local
                break
    return info
