"""Content sniffing: decide from a file's first bytes whether it is an image Pillow should
open or a container PyAV should probe. The file name's extension is never trusted."""

from __future__ import annotations

from dataclasses import dataclass

#: Bytes read from the start of a file for sniffing.
HEAD_BYTES = 64

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
                b"avif", b"avis"}


@dataclass(frozen=True, slots=True)
class Sniff:
    """What the first bytes say. `family` is "image", "av" (a container/stream format for
    PyAV) or "unknown"; `format` is a short name ("jpeg", "png", "mp4", "wav", ...)."""

    family: str
    format: str
    looks_like_text: bool = False


def _is_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character may be cut at the end of the head; allow that.
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(b >= 0x20 or b in b"\t\r\n\f" for b in head)


def sniff_bytes(head: bytes) -> Sniff:
    """Classify `head` (the first HEAD_BYTES bytes of a file)."""
    h = head
    if h.startswith(b"\xff\xd8\xff"):
        return Sniff("image", "jpeg")
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniff("image", "png")
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return Sniff("image", "gif")
    if h[:4] == b"RIFF" and h[8:12] == b"WEBP":
        return Sniff("image", "webp")
    if h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return Sniff("image", "tiff")
    if h[:2] == b"BM" and len(h) >= 14:
        return Sniff("image", "bmp")
    if h[4:8] == b"ftyp":
        brand = h[8:12]
        if brand in _HEIF_BRANDS:
            return Sniff("image", "heif")
        return Sniff("av", "mp4")
    if h[:4] == b"RIFF" and h[8:12] in (b"WAVE", b"AVI "):
        return Sniff("av", "wav" if h[8:12] == b"WAVE" else "avi")
    if h[:4] == b"RF64":
        return Sniff("av", "wav")
    if h[:4] == b"fLaC":
        return Sniff("av", "flac")
    if h[:4] == b"OggS":
        return Sniff("av", "ogg")
    if h[:3] == b"ID3" or (len(h) > 1 and h[0] == 0xFF and (h[1] & 0xE0) == 0xE0):
        # ID3 tag or an MPEG audio frame sync (also matches ADTS AAC).
        return Sniff("av", "mpeg-audio")
    if h[:4] == b"\x1aE\xdf\xa3":
        return Sniff("av", "matroska")
    if h[:4] in (b"FORM",) and h[8:12] in (b"AIFF", b"AIFC"):
        return Sniff("av", "aiff")
    if h[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return Sniff("av", "mpeg")
    if h[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return Sniff("av", "mov")
    return Sniff("unknown", "unknown", looks_like_text=_is_text(h))
