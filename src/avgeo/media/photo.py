"""Photos with Pillow: header probe under a decompression-bomb guard, EXIF orientation,
and conversion of every pixel mode to 8-bit RGB (alpha composited on white)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from avgeo.errors import CorruptMediaError, InputTooLargeError, UnsupportedMediaError
from avgeo.media.limits import Limits

try:  # HEIC/HEIF and AVIF; optional at import so a broken wheel does not break JPEG.
    import pillow_heif

    pillow_heif.register_heif_opener()
    if hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()
except Exception:  # pragma: no cover - depends on the installed wheel
    pillow_heif = None

# Pillow's own bomb check is global state; raising it briefly must not race another thread.
_PIXELS_LOCK = threading.Lock()
_EXIF_ORIENTATION = 0x0112
_EXIF_DATETIME_ORIGINAL = 0x9003
_EXIF_DATETIME = 0x0132


@dataclass(slots=True)
class PhotoInfo:
    """What the header says, without decoding pixels."""

    format: str
    mode: str
    width: int
    height: int
    n_frames: int = 1
    orientation: int | None = None
    creation_time: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@contextmanager
def _open_guarded(path: Path, limits: Limits) -> Iterator[Image.Image]:
    """`Image.open` (lazy: header only) that refuses images over `limits.max_pixels`
    before a single pixel is decoded, whatever Pillow's global MAX_IMAGE_PIXELS says."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(path)
            except Image.DecompressionBombError:
                # Pillow refused at 2× its own default; our limit may be higher.
                with _PIXELS_LOCK:
                    saved = Image.MAX_IMAGE_PIXELS
                    Image.MAX_IMAGE_PIXELS = None
                    try:
                        im = Image.open(path)
                    finally:
                        Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(f"{path.name}: not an image Pillow can read") from exc
    except Image.DecompressionBombError as exc:  # pragma: no cover - handled above
        raise InputTooLargeError(f"{path.name}: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptMediaError(f"{path.name}: cannot read the image header ({exc})") from exc
    try:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise CorruptMediaError(f"{path.name}: image header declares {w}×{h} pixels")
        if w * h > limits.max_pixels:
            raise InputTooLargeError(
                f"{path.name}: image is {w}×{h} = {w * h / 1e6:.0f} MP, over the limit of "
                f"{limits.max_pixels / 1e6:.0f} MP; refused before decoding")
        yield im
    finally:
        im.close()


def _exif_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = str(value).strip("\x00 ").strip()
    return text or None


def _header_exif(im: Image.Image) -> Image.Exif:
    # PNG keeps eXIf possibly after the pixels, and Pillow's getexif() then decodes the
    # whole image to find it; a probe must never decode.
    if im.format == "PNG" and "exif" not in im.info:
        return Image.Exif()
    return im.getexif()


def probe_photo(path: Path, limits: Limits) -> PhotoInfo:
    """Header facts of a photo; raises before decoding when it is over the pixel limit."""
    with _open_guarded(path, limits) as im:
        exif = _header_exif(im)
        orientation = exif.get(_EXIF_ORIENTATION)
        created = None
        try:
            created = _exif_text(exif.get_ifd(ExifTags.IFD.Exif).get(_EXIF_DATETIME_ORIGINAL))
        except Exception:  # a malformed sub-IFD must not block the photo itself
            created = None
        created = created or _exif_text(exif.get(_EXIF_DATETIME))
        tags = {str(k): v for k, v in im.info.items() if isinstance(v, str) and len(v) < 4096}
        return PhotoInfo(format=(im.format or "unknown").lower(), mode=im.mode,
                         width=im.width, height=im.height,
                         n_frames=int(getattr(im, "n_frames", 1) or 1),
                         orientation=int(orientation) if orientation else None,
                         creation_time=created, tags=tags)


def read_exif(path: Path, limits: Limits) -> dict[str, Any]:
    """EXIF tags by name (Pillow's names), with the GPS IFD under "GPSInfo" as a dict."""
    with _open_guarded(path, limits) as im:
        exif = _header_exif(im)
        out: dict[str, Any] = {ExifTags.TAGS.get(k, str(k)): v for k, v in exif.items()}
        for ifd, name in ((ExifTags.IFD.Exif, None), (ExifTags.IFD.GPSInfo, "GPSInfo")):
            try:
                sub = exif.get_ifd(ifd)
            except Exception:
                continue
            if name is None:
                out.update({ExifTags.TAGS.get(k, str(k)): v for k, v in sub.items()})
            elif sub:
                out[name] = {ExifTags.GPSTAGS.get(k, str(k)): v for k, v in sub.items()}
        return out


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB; transparency is composited on white (scanned signs and
    screenshots with alpha would otherwise turn black)."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if arr.dtype.kind == "f":
            hi = float(np.nanmax(arr)) if arr.size else 1.0
            scale = 255.0 if hi <= 1.0 else 255.0 / max(hi, 1e-12)
            arr8 = np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8)
        else:
            hi = int(arr.max()) if arr.size else 0
            # 16-bit data (even when stored as mode "I") keeps its top byte.
            shift = 0 if hi <= 255 else 8 if hi <= 65535 else 24
            arr8 = (np.clip(arr, 0, None).astype(np.uint64) >> shift).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2))
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB", "1") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def load_photo(path: Path, limits: Limits, max_side: int | None = None) -> Image.Image:
    """The photo as upright RGB: EXIF orientation applied, alpha on white, optionally
    downscaled so its longer side is at most `max_side`."""
    with _open_guarded(path, limits) as im:
        try:
            if max_side is not None and im.format == "JPEG":
                # DCT-domain downscale: decodes 2-8× fewer pixels.
                im.draft("RGB", (max_side, max_side))
            im.load()
            upright = ImageOps.exif_transpose(im) or im
            rgb = to_rgb(upright)
            if max_side is not None and max(rgb.size) > max_side:
                rgb = rgb.copy()
                rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            # Detach from the file so closing it is safe.
            return rgb.copy() if rgb is im else rgb
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptMediaError(f"{path.name}: image data does not decode ({exc})") from exc
