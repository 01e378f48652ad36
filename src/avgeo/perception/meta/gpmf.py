"""GoPro GPMF telemetry: a KLV parser (nested DEVC/STRM, TYPE structs, SCAL), GPS extraction
(GPS5, GPS9, GPSF, GPSP, GPSU and Karma-drone GPRI/GLPI) and a track summary.

KLV layout (gopro/gpmf-parser README): 4-byte FourCC, 1-byte type char, 1-byte struct size,
2-byte big-endian repeat; payload size × repeat bytes, padded to 32 bits; type 0 = nested.
GPS layouts:
  GPS5  lat, lon (deg), alt (m), 2D speed, 3D speed (m/s); SCAL per element; ~18 Hz.
        GPSF (fix 0/2/3), GPSP (DOP × 100) and GPSU (UTC yymmddhhmmss.sss) once per payload.
  GPS9  lat, lon, alt, 2D speed, 3D speed, days since 2000-01-01, seconds since midnight
        (ms precision), DOP, fix — HERO11/13, MAX2; per-sample time, DOP and fix.
  GPRI  Karma "GPS RAW", TYPE "JlllSSSSBB": time (µs), lat, lon (deg), alt (m), eph, epv,
        speed (m/s), course (deg), fix type, satellites — MAVLink GPS_RAW_INT order, so eph is
        HDOP (its UNIT says m; we read it as a DOP, the MAVLink meaning).
  GLPI  Karma "Position", TYPE "LllllsssS": time (ms), lat, lon (deg), alt, relative alt (m),
        vx, vy, vz (m/s), heading (deg) — MAVLink GLOBAL_POSITION_INT order; no fix/DOP.
"""

from __future__ import annotations

import contextlib
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from avgeo.geo.sphere import haversine_km
from avgeo.perception.meta.types import UERE_M, GpsFix, GpsTrack

#: Telemetry per file is ~1-10 MB/hour; stop reading well past anything real.
MAX_GPMF_BYTES = 64 * 1024 * 1024
_MAX_DEPTH = 8

# type char → (numpy big-endian dtype, element size)
_NUMERIC = {
    "b": (">i1", 1), "B": (">u1", 1), "s": (">i2", 2), "S": (">u2", 2), "l": (">i4", 4),
    "L": (">u4", 4), "f": (">f4", 4), "d": (">f8", 8), "j": (">i8", 8), "J": (">u8", 8),
    "q": (">i4", 4), "Q": (">i8", 8),
}
_Q_SCALE = {"q": 65536.0, "Q": 4294967296.0}
_GPS_KEYS = ("GPS5", "GPS9", "GPRI", "GLPI")


@dataclass
class Klv:
    key: str
    type: str  # "\x00" for nested
    size: int
    repeat: int
    raw: bytes = b""
    children: list[Klv] = field(default_factory=list)

    @property
    def nested(self) -> bool:
        return self.type == "\x00"


def parse_klv(buf: bytes, depth: int = 0) -> list[Klv]:
    """Parse a GPMF byte string into a KLV tree; stops quietly at truncated or junk data."""
    out: list[Klv] = []
    pos, n = 0, len(buf)
    while pos + 8 <= n:
        key_b = buf[pos:pos + 4]
        if key_b == b"\x00\x00\x00\x00":  # padding at the end of a payload
            break
        try:
            key = key_b.decode("ascii")
        except UnicodeDecodeError:
            break
        typ = chr(buf[pos + 4])
        size, repeat = buf[pos + 5], struct.unpack_from(">H", buf, pos + 6)[0]
        length = size * repeat
        padded = (length + 3) & ~3
        if pos + 8 + length > n:
            break
        raw = buf[pos + 8:pos + 8 + length]
        klv = Klv(key=key, type=typ, size=size, repeat=repeat)
        if typ == "\x00":
            if depth < _MAX_DEPTH:
                klv.children = parse_klv(raw, depth + 1)
        else:
            klv.raw = raw
        out.append(klv)
        pos += 8 + padded
    return out


def expand_type(spec: str) -> list[str]:
    """TYPE string → list of element type chars ("f[8]L" → 8 × 'f' + 'L')."""
    out: list[str] = []
    for ch, count in re.findall(r"([a-zA-Z?])(?:\[(\d+)\])?", spec):
        out.extend([ch] * (int(count) if count else 1))
    return out


def decode_values(klv: Klv, type_spec: str | None = None) -> np.ndarray | str | None:
    """Samples as float64 array (repeat × elements), or text for 'c'/'U'; None for types we
    do not decode (F, G, nested) or a size that does not fit the type."""
    t = klv.type
    if t in ("c", "U"):
        return klv.raw.split(b"\x00", 1)[0].decode("latin-1") if t == "c" else klv.raw.decode(
            "latin-1")
    if t == "?":
        elems = expand_type(type_spec or "")
        if not elems or any(e not in _NUMERIC for e in elems):
            return None
        dt = np.dtype([(f"f{i}", ">" + _NUMERIC[e][0][1:]) for i, e in enumerate(elems)])
        if dt.itemsize != klv.size or klv.repeat == 0:
            return None if dt.itemsize != klv.size else np.zeros((0, len(elems)))
        rec = np.frombuffer(klv.raw, dtype=dt, count=klv.repeat)
        cols = []
        for i, e in enumerate(elems):
            col = rec[f"f{i}"].astype(np.float64)
            if e in _Q_SCALE:
                col = col / _Q_SCALE[e]
            cols.append(col)
        return np.stack(cols, axis=1)
    if t not in _NUMERIC:
        return None
    dtype, esize = _NUMERIC[t]
    if klv.size == 0 or klv.size % esize:
        return None
    n_el = klv.size // esize
    arr = np.frombuffer(klv.raw, dtype=dtype, count=n_el * klv.repeat).astype(np.float64)
    if t in _Q_SCALE:
        arr = arr / _Q_SCALE[t]
    return arr.reshape(klv.repeat, n_el)


def apply_scal(values: np.ndarray, scal: np.ndarray | None) -> np.ndarray:
    """Divide each element by its SCAL (one value for all, or one per element); zero or
    missing divisors leave the element as it is."""
    if scal is None or values.size == 0:
        return values
    s = np.asarray(scal, dtype=np.float64).ravel()
    n_el = values.shape[1]
    if s.size == 1:
        s = np.full(n_el, s[0])
    elif s.size != n_el:
        s = np.resize(s, n_el) if s.size < n_el else s[:n_el]
    s = np.where((s == 0) | ~np.isfinite(s), 1.0, s)
    return values / s


def parse_gpsu(text: str | None) -> datetime | None:
    """GPSU 'yymmddhhmmss.sss' (UTC) → aware datetime."""
    if not text:
        return None
    m = re.match(r"^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2}(?:\.\d+)?)", text.strip())
    if not m:
        return None
    yy, mo, dd, hh, mi = (int(x) for x in m.groups()[:5])
    sec = float(m.group(6))
    try:
        base = datetime(2000 + yy, mo, dd, hh, mi, tzinfo=UTC)
    except ValueError:
        return None
    if not 0 <= sec < 61:
        return None
    return base + timedelta(seconds=sec)


@dataclass
class _Payload:
    """GPS found in one GPMF payload (one MP4 sample): rows of lat, lon, alt, fix, dop."""

    key: str
    rows: np.ndarray  # n × 5: lat, lon, alt, fix, dop
    utc: list[datetime | None]
    device: str | None


def _gps_from_strm(strm: Klv, device: str | None) -> list[_Payload]:
    out: list[_Payload] = []
    scal: np.ndarray | None = None
    type_spec: str | None = None
    fix = -1.0
    dop = np.nan
    gpsu: datetime | None = None
    for k in strm.children:
        if k.key == "SCAL":
            v = decode_values(k)
            scal = v.ravel() if isinstance(v, np.ndarray) else None
        elif k.key == "TYPE":
            v = decode_values(k)
            type_spec = v if isinstance(v, str) else None
        elif k.key == "GPSF":
            v = decode_values(k)
            if isinstance(v, np.ndarray) and v.size:
                fix = float(v.ravel()[0])
        elif k.key == "GPSP":
            v = decode_values(k)
            if isinstance(v, np.ndarray) and v.size:
                dop = float(v.ravel()[0]) / 100.0
        elif k.key == "GPSU":
            v = decode_values(k)
            gpsu = parse_gpsu(v if isinstance(v, str) else None)
        elif k.key in _GPS_KEYS:
            raw = decode_values(k, type_spec)
            if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.shape[0] == 0:
                continue
            vals = apply_scal(raw, scal)
            n = vals.shape[0]
            rows = np.full((n, 5), np.nan)
            utc: list[datetime | None] = [None] * n
            if k.key == "GPS5" and vals.shape[1] >= 3:
                rows[:, :3] = vals[:, :3]
                rows[:, 3], rows[:, 4] = fix, dop
                utc = [gpsu] + [None] * (n - 1)
            elif k.key == "GPS9" and vals.shape[1] >= 9:
                rows[:, :3] = vals[:, :3]
                rows[:, 3], rows[:, 4] = vals[:, 8], vals[:, 7]
                epoch = datetime(2000, 1, 1, tzinfo=UTC)
                utc = []
                for days, secs in vals[:, 5:7]:
                    try:
                        utc.append(epoch + timedelta(days=float(days), seconds=float(secs)))
                    except (OverflowError, ValueError):
                        utc.append(None)
            elif k.key == "GPRI" and vals.shape[1] >= 10:
                rows[:, :3] = vals[:, 1:4]
                rows[:, 3], rows[:, 4] = vals[:, 8], vals[:, 4]
            elif k.key == "GLPI" and vals.shape[1] >= 4:
                rows[:, :3] = vals[:, 1:4]
                rows[:, 3] = -1.0
            else:
                continue
            out.append(_Payload(key=k.key, rows=rows, utc=utc, device=device))
            scal, type_spec = None, None  # SCAL/TYPE modify only the next data KLV
    return out


def gps_payloads(buf: bytes) -> list[_Payload]:
    """GPS samples of every DEVC/STRM in one GPMF payload."""
    found: list[_Payload] = []
    for devc in parse_klv(buf):
        if not devc.nested:
            continue
        device = None
        for k in devc.children:
            if k.key == "DVNM":
                v = decode_values(k)
                device = v if isinstance(v, str) else None
            elif k.key == "STRM" and k.nested:
                found.extend(_gps_from_strm(k, device))
    return found


def track_from_payloads(payloads: list[tuple[bytes, float, float]]) -> GpsTrack | None:
    """Build one track from (gpmf bytes, start_s, duration_s) per MP4 sample. GPS9 (per-sample
    time, DOP and fix) is preferred over GPS5 (same fixes), then GPRI, then GLPI; sample
    times are spread evenly over each payload's duration."""
    per_key: dict[str, list[tuple[_Payload, float, float]]] = {}
    device = None
    for buf, start_s, dur_s in payloads:
        for p in gps_payloads(buf):
            per_key.setdefault(p.key, []).append((p, start_s, dur_s))
            device = device or p.device
    key = next((k for k in ("GPS9", "GPS5", "GPRI", "GLPI") if per_key.get(k)), None)
    if key is None:
        return None
    rows, t, utc = [], [], []
    for p, start_s, dur_s in per_key[key]:
        n = len(p.rows)
        rows.append(p.rows)
        t.append(start_s + np.arange(n) * (dur_s / max(n, 1)))
        base = p.utc[0] if key == "GPS5" else None
        for i in range(n):
            if key == "GPS5" and base is not None:
                utc.append(base + timedelta(seconds=float(i * dur_s / max(n, 1))))
            else:
                utc.append(p.utc[i])
    r = np.concatenate(rows)
    return GpsTrack(lat=r[:, 0], lon=r[:, 1], alt_m=r[:, 2], t_s=np.concatenate(t),
                    fix=r[:, 3], dop=r[:, 4], time_utc=utc, key=key, device=device)


def read_gpmf_payloads(path: str | Path, stream_index: int | None = None,
                       max_bytes: int = MAX_GPMF_BYTES) -> list[tuple[bytes, float, float]]:
    """Demux the GoPro MET data stream with PyAV: (bytes, start_s, duration_s) per sample."""
    import av

    out: list[tuple[bytes, float, float]] = []
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception:  # not a container PyAV can open: no telemetry
        return out
    try:
        stream = None
        for s in container.streams:
            handler = str(s.metadata.get("handler_name", "")).lower()
            if s.type == "data" and (s.index == stream_index or "gopro met" in handler):
                stream = s
                break
        if stream is None:
            return out
        tb = float(stream.time_base) if stream.time_base else 0.0
        total = 0
        for packet in container.demux(stream):
            data = bytes(packet)
            if not data:
                continue
            total += len(data)
            if total > max_bytes:
                break
            start = float(packet.pts or 0) * tb
            dur = float(packet.duration or 0) * tb or 1.0
            out.append((data, start, dur))
    except Exception:  # a damaged stream ends the telemetry, not the analysis
        pass
    finally:
        with contextlib.suppress(Exception):
            container.close()
    return out


def read_gpmf_track(path: str | Path, stream_index: int | None = None) -> GpsTrack | None:
    payloads = read_gpmf_payloads(path, stream_index)
    return track_from_payloads(payloads) if payloads else None


@dataclass
class TrackSummary:
    """A track reduced to one position: median of valid-fix samples."""

    fix: GpsFix
    n_samples: int
    n_valid: int
    spread_m: float  # 95th-percentile distance of valid samples from the median
    path_km: float
    fix_mode: int | None
    t_start_utc: datetime | None
    t_end_utc: datetime | None
    key: str
    device: str | None

    def to_dict(self) -> dict:
        return {
            **self.fix.to_dict(),
            "n_samples": self.n_samples,
            "n_valid": self.n_valid,
            "spread_m": self.spread_m,
            "path_km": self.path_km,
            "fix_mode": self.fix_mode,
            "t_start_utc": None if self.t_start_utc is None else self.t_start_utc.isoformat(),
            "t_end_utc": None if self.t_end_utc is None else self.t_end_utc.isoformat(),
            "key": self.key,
            "device": self.device,
        }


def summarize_track(track: GpsTrack, max_dop: float = 5.0) -> TrackSummary | None:
    """Median position of samples with a fix; samples with DOP above `max_dop` are left out
    when better ones exist. accuracy_m = √((DOP·UERE)² + spread²) so a moving camera's
    summary is as uncertain as the ground it covered."""
    ok = track.valid_mask()
    if not ok.any():
        return None
    good_dop = ok & ~(track.dop > max_dop)
    if good_dop.any():
        ok = good_dop
    lat = float(np.median(track.lat[ok]))
    lon = float(np.median(track.lon[ok]))
    alt = track.alt_m[ok]
    alt_m = float(np.median(alt)) if np.isfinite(alt).any() else None
    dops = track.dop[ok]
    dop = float(np.median(dops[np.isfinite(dops)])) if np.isfinite(dops).any() else None
    d_m = haversine_km(lat, lon, track.lat[ok], track.lon[ok]) * 1000.0
    spread = float(np.percentile(d_m, 95)) if d_m.size else 0.0
    steps = haversine_km(track.lat[ok][:-1], track.lon[ok][:-1], track.lat[ok][1:],
                         track.lon[ok][1:]) if ok.sum() > 1 else np.zeros(0)
    dop_acc = (dop if dop is not None else 2.0) * UERE_M
    accuracy = float(np.hypot(dop_acc, spread))
    fixes = track.fix[ok]
    fix_mode = int(np.max(fixes)) if fixes.size and np.max(fixes) >= 0 else None
    times = [t for t, m in zip(track.time_utc, ok, strict=False) if m and t is not None]
    t0, t1 = (min(times), max(times)) if times else (None, None)
    gps = GpsFix(lat=lat, lon=lon, alt_m=alt_m, dop=dop, time_utc=t0, source="gpmf",
                 accuracy_m=accuracy,
                 notes=[f"median of {int(ok.sum())} {track.key} samples"])
    return TrackSummary(fix=gps, n_samples=len(track), n_valid=int(ok.sum()), spread_m=spread,
                        path_km=float(np.sum(steps)), fix_mode=fix_mode, t_start_utc=t0,
                        t_end_utc=t1, key=track.key, device=track.device)
