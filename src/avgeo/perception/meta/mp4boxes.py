"""A small bounded MP4/QuickTime box walker for location tags PyAV may not surface:
moov/udta/©xyz, moov/udta/loci (3GPP) and moov/meta keys+ilst. Reads only the moov box."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: The moov box holds indexes and tags only; a bigger one is junk or hostile.
MAX_MOOV_BYTES = 64 * 1024 * 1024
_MAX_TOP_BOXES = 10_000


def _iter_boxes(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload_start, payload_end) of each box in buf[start:end]; stops at junk."""
    pos = start
    while pos + 8 <= end:
        size, typ = struct.unpack_from(">I4s", buf, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", buf, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield typ, pos + header, pos + size
        pos += size


def _read_moov(fh: BinaryIO, file_size: int) -> bytes | None:
    pos = 0
    for _ in range(_MAX_TOP_BOXES):
        if pos + 8 > file_size:
            return None
        fh.seek(pos)
        head = fh.read(16)
        if len(head) < 8:
            return None
        size, typ = struct.unpack_from(">I4s", head, 0)
        header = 8
        if size == 1:
            if len(head) < 16:
                return None
            size, header = struct.unpack_from(">Q", head, 8)[0], 16
        elif size == 0:
            size = file_size - pos
        if size < header:
            return None
        if typ == b"moov":
            if size > MAX_MOOV_BYTES or pos + size > file_size:
                return None
            fh.seek(pos)
            data = fh.read(size)
            return data if len(data) == size else None
        pos += size
    return None


def _udta_string(payload: bytes) -> str | None:
    """QuickTime international text: 2-byte length, 2-byte language, text."""
    if len(payload) >= 4:
        n = struct.unpack_from(">H", payload, 0)[0]
        if 0 < n <= len(payload) - 4:
            return payload[4:4 + n].decode("utf-8", "replace")
    return payload.decode("utf-8", "replace") if payload else None


def _fixed16(raw: bytes, off: int) -> float:
    return struct.unpack_from(">i", raw, off)[0] / 65536.0


def _loci(payload: bytes) -> str | None:
    """3GPP TS 26.244 'loci': fullbox, language, name\\0, role, lon, lat, alt (16.16 fixed).
    Rendered as an ISO 6709 string so one parser handles every source."""
    pos = 4 + 2
    end = payload.find(b"\x00", pos)
    if end < 0:
        return None
    pos = end + 1 + 1  # name terminator, role byte
    if pos + 12 > len(payload):
        return None
    lon, lat, alt = _fixed16(payload, pos), _fixed16(payload, pos + 4), _fixed16(payload,
                                                                                pos + 8)
    return f"{lat:+09.5f}{lon:+010.5f}{alt:+.3f}/"


def _meta_keys(buf: bytes, start: int, end: int) -> dict[str, str]:
    """QuickTime 'mdta' metadata: keys box names the entries, ilst holds values by index."""
    # A QuickTime meta box has no version/flags; an ISO one does. Tell them apart by the
    # first child's type.
    if end - start >= 12 and buf[start + 4:start + 8] not in (b"hdlr", b"keys", b"ilst"):
        start += 4
    names: list[str] = []
    out: dict[str, str] = {}
    for typ, a, b in _iter_boxes(buf, start, end):
        if typ == b"keys" and b - a >= 8:
            count = struct.unpack_from(">I", buf, a + 4)[0]
            for ktyp, ka, kb in _iter_boxes(buf, a + 8, b):
                del ktyp  # the namespace ('mdta') sits where a box type would
                names.append(buf[ka:kb].decode("utf-8", "replace"))
                if len(names) >= count:
                    break
        elif typ == b"ilst":
            for ityp, ia, ib in _iter_boxes(buf, a, b):
                idx = struct.unpack(">I", ityp)[0]
                for dtyp, da, db in _iter_boxes(buf, ia, ib):
                    if dtyp != b"data" or db - da < 8:
                        continue
                    value_type = struct.unpack_from(">I", buf, da)[0]
                    raw = buf[da + 8:db]
                    if value_type == 1:  # UTF-8 text
                        key = names[idx - 1] if 1 <= idx <= len(names) else ityp.decode(
                            "latin-1")
                        out[key] = raw.decode("utf-8", "replace")
    return out


def read_mp4_location_tags(path: str | Path) -> dict[str, str]:
    """Text location/creation tags from the moov box: keys like '©xyz', 'loci' and
    'com.apple.quicktime.location.ISO6709'. Empty for non-MP4 files or junk."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            moov = _read_moov(fh, size)
    except OSError:
        return {}
    if moov is None:
        return {}
    out: dict[str, str] = {}
    for typ, a, b in _iter_boxes(moov, 8, len(moov)):
        if typ == b"udta":
            for utyp, ua, ub in _iter_boxes(moov, a, b):
                if utyp == b"\xa9xyz":
                    s = _udta_string(moov[ua:ub])
                    if s:
                        out["©xyz"] = s
                elif utyp == b"loci":
                    s = _loci(moov[ua:ub])
                    if s:
                        out["loci"] = s
                elif utyp == b"meta":
                    out.update(_meta_keys(moov, ua, ub))
        elif typ == b"meta":
            out.update(_meta_keys(moov, a, b))
    return out
