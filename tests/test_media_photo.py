"""Photos come out upright 8-bit RGB whatever their pixel mode or EXIF orientation."""

from __future__ import annotations

import io

import numpy as np
import piexif
import pytest
from PIL import Image

from avgeo.errors import CorruptMediaError
from avgeo.media import open_media, to_rgb


def _arrow_image(w: int = 60, h: int = 40) -> np.ndarray:
    """Red top-left quadrant, blue bottom-right: any rotation or flip is detectable."""
    img = np.full((h, w, 3), 128, np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[h // 2:, w // 2:] = (0, 0, 255)
    return img


def _quadrant_colour(img: np.ndarray, top: bool, left: bool) -> np.ndarray:
    h, w = img.shape[:2]
    ys = slice(0, h // 4) if top else slice(3 * h // 4, h)
    xs = slice(0, w // 4) if left else slice(3 * w // 4, w)
    return img[ys, xs].reshape(-1, 3).mean(axis=0)


def test_rgba_png_from_shared_data_is_rgb(media_dir):
    m = open_media(media_dir / "sign_korean.png")
    with Image.open(media_dir / "sign_korean.png") as raw:
        assert raw.mode == "RGBA"
    im = m.image()
    assert im.mode == "RGB" and im.size == (m.width, m.height)


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 5:, 3] = 255  # right half opaque red-ish, left half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = np.asarray(open_media(tmp_path / "a.png").image())
    assert (out[:, :5] == 255).all()
    assert (out[:, 5:] == (200, 0, 0)).all()


def test_exif_orientation_6_is_applied(tmp_path):
    src = _arrow_image()
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}})
    Image.fromarray(src).save(tmp_path / "rot.jpg", quality=95, exif=exif)
    m = open_media(tmp_path / "rot.jpg")
    assert m.orientation == 6 and (m.width, m.height) == (60, 40)
    out = np.asarray(m.image())
    # Orientation 6: the stored image must turn 90° clockwise to display.
    assert out.shape == (60, 40, 3)
    assert np.abs(out - np.rot90(src, k=-1).astype(int)).mean() < 6
    assert _quadrant_colour(out, top=True, left=False)[0] > 200  # red moved top-right
    assert _quadrant_colour(out, top=False, left=True)[2] > 200  # blue moved bottom-left


def test_max_side_downscales_upright(tmp_path):
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}})
    Image.fromarray(_arrow_image(600, 400)).save(tmp_path / "big.jpg", exif=exif)
    im = open_media(tmp_path / "big.jpg").image(max_side=100)
    assert im.size == (67, 100) or im.size == (66, 100)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "1", "I;16", "I", "F", "CMYK", "RGBA"])
def test_every_mode_converts_to_rgb(mode):
    base = Image.fromarray(_arrow_image())
    if mode == "I;16":
        arr16 = (np.asarray(base.convert("L")).astype(np.uint16) * 257)
        im = Image.fromarray(arr16)
        assert im.mode.startswith("I;16")
    elif mode == "I":
        im = Image.fromarray(np.asarray(base.convert("L")).astype(np.int32) * 257)
    elif mode == "F":
        im = Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255.0)
    elif mode in ("P", "PA"):
        im = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
        if mode == "PA":
            im = im.convert("PA")
    else:
        im = base.convert(mode)
    out = to_rgb(im)
    assert out.mode == "RGB" and out.size == base.size
    grey = np.asarray(out.convert("L")).astype(float)
    if mode != "1":
        # Brightness survives the conversion (palette quantisation and CMYK are lossy).
        ref = np.asarray(base.convert("L")).astype(float)
        assert np.corrcoef(grey.ravel(), ref.ravel())[0, 1] > 0.95, mode


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    ramp = (np.linspace(0, 65535, 256, dtype=np.float64)[None, :].repeat(4, 0)).astype(
        np.uint16)
    Image.fromarray(ramp).save(tmp_path / "r16.png")
    out = np.asarray(open_media(tmp_path / "r16.png").image())[0, :, 0]
    assert out[0] == 0 and out[-1] == 255 and np.all(np.diff(out.astype(int)) >= 0)


def test_truncated_jpeg_is_corrupt(media_dir, tmp_path):
    data = (media_dir / "lund_01.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    m = open_media(tmp_path / "cut.jpg")  # the header is intact
    with pytest.raises(CorruptMediaError):
        m.image()


def test_webp_and_heic_round_trip(tmp_path):
    src = _arrow_image()
    Image.fromarray(src).save(tmp_path / "x.webp", lossless=True)
    assert np.array_equal(np.asarray(open_media(tmp_path / "x.webp").image()), src)
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    try:
        Image.fromarray(src).save(buf, format="HEIF", quality=95)
    except (KeyError, OSError, ValueError) as exc:  # wheel without an HEVC encoder
        pytest.skip(f"no HEIF encoder: {exc}")
    assert pillow_heif is not None
    m = open_media(buf.getvalue(), name="x.heic")
    assert m.kind == "photo" and (m.width, m.height) == (60, 40)
    assert np.abs(np.asarray(m.image()).astype(int) - src).mean() < 12


def test_exif_dict_of_gps_photo(media_dir):
    exif = open_media(media_dir / "arezzo_dscn0010.jpg").exif()
    assert exif["Make"].startswith("NIKON")
    assert exif["GPSInfo"]["GPSLatitudeRef"] in ("N", "S")
