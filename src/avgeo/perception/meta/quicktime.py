"""Container metadata through PyAV (QuickTime/MP4 location tags, creation time, make/model,
audio tags) with the bounded box walker as a fallback for MP4 location boxes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from avgeo.perception.meta.iso6709 import parse_iso6709
from avgeo.perception.meta.mp4boxes import read_mp4_location_tags
from avgeo.perception.meta.types import GpsFix, camera_name

#: Floor on the error of a position stored as text: phones round to 4 decimals (~11 m) and
#: the fix behind it is rarely better than this.
DEFAULT_TAG_ACCURACY_M = 30.0
_M_PER_DEG = 111_195.0

# Keys that carry an ISO 6709 point, in order of preference.
LOCATION_KEYS = (
    "com.apple.quicktime.location.iso6709",
    "location",
    "location-eng",
    "©xyz",
    "loci",
)


@dataclass
class ContainerInfo:
    """What a PyAV-readable container's tags say. `tags` has lower-cased keys."""

    format_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    stream_tags: list[dict[str, str]] = field(default_factory=list)
    gps: GpsFix | None = None
    creation_time_utc: datetime | None = None
    make: str | None = None
    model: str | None = None
    gpmf_stream: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def camera(self) -> str | None:
        return camera_name(self.make, self.model)


def parse_iso_time(text: str | None) -> datetime | None:
    """ISO 8601 tag value → aware UTC datetime (naive values are taken as UTC, as the MP4
    spec says); None for junk or the 1904/1970 epoch placeholders of unset clocks."""
    if not text:
        return None
    s = str(text).strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt if dt.year > 1970 else None


def location_fix(tags: dict[str, str], source: str) -> GpsFix | None:
    """First parseable ISO 6709 value among the location keys."""
    for key in LOCATION_KEYS:
        if key not in tags:
            continue
        pt = parse_iso6709(tags[key])
        if pt is None:
            continue
        step_m = pt.step_deg * _M_PER_DEG / 2.0
        return GpsFix(lat=pt.lat, lon=pt.lon, alt_m=pt.alt_m, source=source,
                      accuracy_m=max(DEFAULT_TAG_ACCURACY_M, step_m),
                      notes=[f"from tag {key!r} = {tags[key]!r}"])
    return None


def _clean(tags: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in dict(tags or {}).items():
        key = str(k).strip().lower()
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        out[key] = str(v).replace("\x00", "").strip()
    return out


def read_container(path: str | Path) -> ContainerInfo | None:
    """Tags of any PyAV-readable file; None when PyAV cannot open it."""
    import av

    path = Path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception:  # PyAV raises many error classes on junk; the reader stays quiet
        return None
    info = ContainerInfo()
    try:
        info.format_name = container.format.name
        info.tags = _clean(container.metadata)
        for stream in container.streams:
            st = _clean(stream.metadata)
            info.stream_tags.append(st)
            handler = st.get("handler_name", "")
            if stream.type == "data" and "gopro met" in handler.lower():
                info.gpmf_stream = stream.index
    finally:
        with contextlib.suppress(Exception):
            container.close()
    tags = dict(info.tags)
    # PyAV surfaces ©xyz as 'location'; the box walker covers what it drops (e.g. 'loci').
    if not any(k in tags for k in LOCATION_KEYS) and info.format_name and "mp4" in (
            info.format_name):
        tags.update({k.lower(): v for k, v in read_mp4_location_tags(path).items()})
    info.gps = location_fix(tags, source="quicktime")
    info.creation_time_utc = parse_iso_time(tags.get("creation_time") or tags.get(
        "com.apple.quicktime.creationdate"))
    info.make = tags.get("com.apple.quicktime.make") or tags.get("make")
    info.model = tags.get("com.apple.quicktime.model") or tags.get("model")
    if info.make is None and info.gpmf_stream is not None:
        info.make = "GoPro"
    return info
