"""The metadata engine: reads EXIF, container tags, GoPro GPMF and audio tags from a file
path and turns GPS, capture time, UTC offset and camera into atoms; `read_metadata` gives
the same facts as a plain dict for `avgeo inspect`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from avgeo.atoms import Atom
from avgeo.errors import MediaNotFoundError
from avgeo.perception.meta.exif import ExifInfo, format_utc_offset, infer_utc_offset, read_exif
from avgeo.perception.meta.gpmf import TrackSummary, read_gpmf_track, summarize_track
from avgeo.perception.meta.quicktime import ContainerInfo, read_container
from avgeo.perception.meta.tags import TagInfo, tag_info
from avgeo.perception.meta.timezone import offset_region
from avgeo.perception.meta.types import GpsFix, GpsTrack
from avgeo.reasoning.likelihood import PointLikelihood

#: Smallest sigma given to a GPS point: below this the grid cannot tell the difference.
MIN_SIGMA_KM = 0.005
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"II*\x00", b"MM\x00*", b"GIF8")
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"}
_OFFSET_SUFFIX = re.compile(r"([+-])(\d{2}):?(\d{2})$")


@dataclass
class MetaFacts:
    """Everything the readers found in one file."""

    path: Path
    exif: ExifInfo | None = None
    container: ContainerInfo | None = None
    tags: TagInfo | None = None
    track: GpsTrack | None = None
    track_summary: TrackSummary | None = None
    fixes: list[GpsFix] = field(default_factory=list)
    capture_time_local: datetime | None = None
    capture_time_utc: datetime | None = None
    capture_time_source: str | None = None
    utc_offset_min: int | None = None
    utc_offset_source: str | None = None
    camera: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def best_fix(self) -> GpsFix | None:
        return min(self.fixes, key=lambda f: f.accuracy_m) if self.fixes else None


def _is_image(head: bytes) -> bool:
    if head.startswith(_IMAGE_MAGIC):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def collect(path: str | Path, media: Any = None) -> MetaFacts:
    """Run every reader that fits the file. Unreadable files give empty facts; a missing
    file raises MediaNotFoundError."""
    if media is not None and getattr(media, "path", None) is not None and path is None:
        path = media.path
    path = Path(path)
    if not path.is_file():
        raise MediaNotFoundError(f"no such file: {path}")
    facts = MetaFacts(path=path)
    with open(path, "rb") as fh:
        head = fh.read(32)
    if not head:
        facts.notes.append("empty file: no metadata")
        return facts
    if _is_image(head):
        _from_exif(facts, read_exif(path))
    else:
        _from_container(facts, read_container(path))
    return facts


def _from_exif(facts: MetaFacts, info: ExifInfo | None) -> None:
    facts.exif = info
    if info is None:
        return
    if info.gps is not None:
        facts.fixes.append(info.gps)
    facts.camera = info.camera
    facts.capture_time_local = info.capture_time_local
    facts.capture_time_utc = info.capture_time_utc
    facts.capture_time_source = "EXIF DateTimeOriginal" if info.capture_time_local else (
        "EXIF GPS time" if info.capture_time_utc else None)
    facts.utc_offset_min, facts.utc_offset_source = info.utc_offset_min, info.utc_offset_source
    facts.notes.extend(info.notes)


def _from_container(facts: MetaFacts, info: ContainerInfo | None) -> None:
    facts.container = info
    if info is None:
        return
    if info.gps is not None:
        facts.fixes.append(info.gps)
    facts.camera = info.camera
    facts.tags = tag_info(info.tags)
    if facts.tags.gps is not None:
        facts.fixes.append(facts.tags.gps)
    if info.gpmf_stream is not None:
        facts.track = read_gpmf_track(facts.path, info.gpmf_stream)
        if facts.track is not None:
            facts.track_summary = summarize_track(facts.track)
            if facts.track_summary is not None:
                facts.fixes.append(facts.track_summary.fix)
            if facts.track.device:
                facts.camera = facts.track.device
    apple = info.tags.get("com.apple.quicktime.creationdate")
    m = _OFFSET_SUFFIX.search(apple or "")
    if info.creation_time_utc is not None:
        facts.capture_time_utc = info.creation_time_utc
        facts.capture_time_source = "container creation_time"
    if m:
        off = (int(m.group(2)) * 60 + int(m.group(3))) * (-1 if m.group(1) == "-" else 1)
        if abs(off) <= 14 * 60:
            facts.utc_offset_min, facts.utc_offset_source = off, "QuickTime creationdate"
            if facts.capture_time_utc is not None:
                facts.capture_time_local = (facts.capture_time_utc + timedelta(
                    minutes=off)).replace(tzinfo=None)
    summary = facts.track_summary
    if summary is not None and summary.t_start_utc is not None:
        # Some cameras (GoPro) write local wall-clock time into creation_time as if it were
        # UTC; GPS time is the real UTC, and the difference is the camera's UTC offset.
        if info.creation_time_utc is not None and facts.utc_offset_min is None:
            local = info.creation_time_utc.replace(tzinfo=None)
            off = infer_utc_offset(local, summary.t_start_utc)
            if off:  # 0 cannot tell a UTC-correct clock from a UTC+0 zone
                facts.utc_offset_min, facts.utc_offset_source = off, "camera clock vs GPS"
                facts.capture_time_local = local
        facts.capture_time_utc = summary.t_start_utc
        facts.capture_time_source = "GPS time (GPMF)"
    if facts.capture_time_utc is None and facts.tags.recorded_local is not None:
        facts.capture_time_local = facts.tags.recorded_local
        facts.capture_time_source = "audio tag"


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


def read_metadata(path: str | Path, media: Any = None) -> dict[str, Any]:
    """Plain-dict summary for `avgeo inspect`: gps (best fix) and all fixes, capture time,
    UTC offset, camera and the GoPro track summary."""
    f = collect(path, media)
    best = f.best_fix
    tags = f.tags
    return {
        "gps": None if best is None else best.to_dict(),
        "gps_all": [x.to_dict() for x in f.fixes],
        "capture_time": _iso(f.capture_time_local),
        "capture_time_utc": _iso(f.capture_time_utc),
        "capture_time_source": f.capture_time_source,
        "utc_offset": None if f.utc_offset_min is None else format_utc_offset(
            f.utc_offset_min),
        "utc_offset_source": f.utc_offset_source,
        "camera": f.camera,
        "gopro": None if f.track_summary is None else f.track_summary.to_dict(),
        "recorded_date": None if tags is None else tags.recorded_date,
        "notes": list(f.notes),
    }


def _fmt_time(f: MetaFacts) -> str | None:
    if f.capture_time_local is not None:
        return f.capture_time_local.strftime("%Y-%m-%d %H:%M")
    if f.capture_time_utc is not None:
        return f.capture_time_utc.strftime("%Y-%m-%d %H:%M UTC")
    return None


def _gps_atom(fix: GpsFix, f: MetaFacts) -> Atom:
    where = f"{fix.lat:.5f}, {fix.lon:.5f}"
    extra = ", ".join(x for x in (f.camera, _fmt_time(f)) if x)
    start_s = end_s = None
    if fix.source == "exif":
        evidence = f"EXIF GPS {where}" + (f" ({extra})" if extra else "")
    elif fix.source == "gpmf" and f.track_summary is not None:
        s = f.track_summary
        fix_txt = {3: "3D fix", 2: "2D fix"}.get(s.fix_mode or -1, "fix unknown")
        dop_txt = f", DOP {fix.dop:.2f}" if fix.dop is not None else ""
        evidence = (f"GoPro GPMF {s.key} track: median of {s.n_valid} samples {where} "
                    f"({fix_txt}{dop_txt}, spread {s.spread_m:.0f} m"
                    + (f", {s.device}" if s.device else "") + ")")
        t = f.track.t_s if f.track is not None else None
        if t is not None and len(t):
            start_s, end_s = float(t.min()), float(t.max())
    elif fix.source == "quicktime":
        evidence = f"QuickTime location tag {where}" + (f" ({extra})" if extra else "")
    else:
        evidence = f"Coordinates written in the file's tags {where}"
    value = {**fix.to_dict(), "time": _iso(fix.time_utc)}
    if fix.source == "gpmf" and f.track_summary is not None:
        value.update({k: v for k, v in f.track_summary.to_dict().items() if k not in value})
    sigma_km = max(fix.accuracy_m / 1000.0, MIN_SIGMA_KM)
    return Atom(name=f"gps:{fix.source}", engine="meta", kind="metadata", evidence=evidence,
                confidence=0.99 if fix.source in ("exif", "gpmf", "quicktime") else 0.9,
                start_s=start_s, end_s=end_s, value=value,
                likelihood=PointLikelihood(lat=fix.lat, lon=fix.lon, sigma_km=sigma_km),
                group="gps")


def facts_to_atoms(f: MetaFacts) -> list[Atom]:
    atoms = [_gps_atom(fix, f) for fix in sorted(f.fixes, key=lambda x: x.accuracy_m)]
    time_value = {
        "capture_time_local": _iso(f.capture_time_local),
        "capture_time_utc": _iso(f.capture_time_utc),
        "utc_offset": None if f.utc_offset_min is None else format_utc_offset(
            f.utc_offset_min),
        "source": f.capture_time_source,
    }
    if f.capture_time_local is not None or f.capture_time_utc is not None:
        atoms.append(Atom(name="capture_time", engine="meta", kind="metadata",
                          evidence=f"Captured {_fmt_time(f)} ({f.capture_time_source})",
                          value=time_value))
    if f.utc_offset_min is not None:
        when = f.capture_time_utc or (f.capture_time_local.replace(tzinfo=UTC) - timedelta(
            minutes=f.utc_offset_min) if f.capture_time_local else None)
        region = offset_region(f.utc_offset_min, when)
        off = format_utc_offset(f.utc_offset_min)
        zones = ", ".join([z for z in region.zones if not z.startswith("Etc/")][:4])
        band = (f" (longitudes {region.lon_min:.0f}° to {region.lon_max:.0f}°)"
                if region.lon_min is not None else "")
        inferred = f.utc_offset_source != "exif"
        atoms.append(Atom(
            name="utc_offset", engine="meta", kind="time_zone",
            evidence=f"Camera clock at UTC{off} ({f.utc_offset_source})"
                     + (f": zones such as {zones}" if zones else "") + band,
            confidence=0.7 if inferred else 0.9,
            value={**time_value, "offset_min": f.utc_offset_min,
                   "offset_source": f.utc_offset_source, "zones": region.zones[:20],
                   "lon_min": region.lon_min, "lon_max": region.lon_max,
                   "method": region.method},
            likelihood=region.likelihood))
    if f.camera:
        atoms.append(Atom(name="camera", engine="meta", kind="metadata",
                          evidence=f"Camera: {f.camera}", value={"camera": f.camera}))
    return atoms


class MetadataEngine:
    """Perception engine over file metadata. `atoms(path, media=None)`; also accepts the
    protocol's `atoms(media, ctx)` call shape."""

    name = "meta"
    media_kinds = ("photo", "audio", "video")

    def available(self) -> tuple[bool, str]:
        return True, ""

    def atoms(self, path: Any, media: Any = None) -> list[Atom]:
        from avgeo.perception.base import EngineContext

        ctx = media if isinstance(media, EngineContext) else None
        if ctx is not None:
            media = None
        if ctx is not None and not ctx.use_metadata:
            return []
        if hasattr(path, "path") and not isinstance(path, str | Path):
            media, path = path, path.path
        facts = collect(path, media)
        atoms = facts_to_atoms(facts)
        if ctx is not None and facts.capture_time_utc is not None:
            ctx.capture_time_utc = facts.capture_time_utc
        return atoms
