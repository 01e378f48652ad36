"""The text-detector OCR path: the numpy port of PP-OCR's DB post-processing and CTC
decoding, detection as a gate against invented text, the per-line choice between PP-OCR
and Tesseract, and the fallback to whole-frame Tesseract when onnxruntime is missing."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from avgeo.errors import BackboneMissingError, ConfigError
from avgeo.perception.base import EngineContext
from avgeo.perception.vision import ppocr, textdet
from avgeo.perception.vision.engine import TextEngine
from avgeo.perception.vision.ocr import TesseractOcr, ocr_available

needs_det = pytest.mark.skipif(not ppocr.available()[0], reason=ppocr.available()[1])
needs_both = pytest.mark.skipif(not (ppocr.available()[0] and ocr_available()[0]),
                                reason="needs the PP-OCR models and Tesseract")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


# -- DB post-processing and CTC decoding (no models) --------------------------------------
def test_components_are_8_connected():
    m = np.zeros((8, 10), bool)
    m[1:3, 1:4] = True  # a 2×3 block
    m[3, 4] = True  # touches the block only at a corner: same component
    m[6:8, 7:10] = True  # separate
    comps = ppocr._components(m, limit=10)
    sizes = sorted(int((c[:, 2] - c[:, 1] + 1).sum()) for c in comps)
    assert sizes == [6, 7]
    assert ppocr._components(np.zeros((4, 4), bool), 10) == []
    assert len(ppocr._components(m, limit=1)) == 1


def test_min_area_rect_of_rotated_rectangle():
    rng = np.random.default_rng(0)
    a = np.deg2rad(30)
    u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    pts = (rng.uniform(-20, 20, (400, 1)) * u + rng.uniform(-5, 5, (400, 1)) * v
           + np.array([50.0, 40.0]))
    pts = np.vstack([pts, [50, 40] + 20 * u + 5 * v, [50, 40] - 20 * u - 5 * v,
                     [50, 40] + 20 * u - 5 * v, [50, 40] - 20 * u + 5 * v])
    r = ppocr._min_area_rect(pts)
    assert sorted([r.w, r.h]) == pytest.approx([10, 40], abs=1e-6)
    assert r.center == pytest.approx([50, 40], abs=1e-6)
    tl, tr, br, bl = r.corners()
    assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1]


def test_db_boxes_find_a_tilted_line_and_grow_it_back():
    pred = np.zeros((96, 160), np.float32)
    img = Image.fromarray(pred)
    ImageDraw.Draw(img).polygon([(20, 40), (130, 20), (133, 36), (23, 56)], fill=0.9)
    pred = np.asarray(img).copy()
    pred[80:82, 10:12] = 0.95  # a 2×2 speck: below the minimum box size
    boxes = ppocr.db_boxes(pred, 320, 192)  # map at half the image's size
    assert len(boxes) == 1
    q = boxes[0] / 2
    # DB predicts shrunk kernels: the box is the kernel (the text pixels, dilated by one)
    # grown by area·1.6/perimeter on every side
    ys, xs = np.nonzero(pred[:70] > ppocr.DB_THRESH)  # the line, not the speck
    kernel = ppocr._min_area_rect(np.stack([xs, ys], axis=1).astype(float))
    kw, kh = max(kernel.w, kernel.h) + 1, min(kernel.w, kernel.h) + 1
    d = kw * kh * ppocr.DB_UNCLIP / (2 * (kw + kh))
    w, h = np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[3] - q[0])
    assert w == pytest.approx(kw + 2 * d, abs=1.5) and h == pytest.approx(kh + 2 * d, abs=1.5)
    assert kw == pytest.approx(np.hypot(110, 20), abs=3)
    assert q[1][1] < q[0][1]  # rises to the right, like the line


def test_ctc_decoding_collapses_repeats_and_blanks():
    class _M:
        charset = ("", "a", "b", " ")

    probs = np.full((7, 4), 0.0, np.float32)
    for t, (k, p) in enumerate([(1, .9), (1, .8), (0, .99), (1, .7), (2, .6), (0, .9),
                                (3, .5)]):
        probs[t, k] = p
    text, conf = ppocr.PPOcr._ctc(_M(), probs)
    assert text == "aab " and conf == pytest.approx(np.mean([.9, .7, .6, .5]))
    assert ppocr.PPOcr._ctc(_M(), np.eye(4, dtype=np.float32)[[0, 0]]) == ("", 0.0)


# -- the models ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def det() -> textdet.DetectorOcr:
    if not ppocr.available()[0]:
        pytest.skip(ppocr.available()[1])
    return textdet.DetectorOcr()


def _sign(lines, size=40, fg=(255, 255, 255), bg=(20, 60, 150)) -> Image.Image:
    try:
        font = ImageFont.truetype(FONT, size)
    except OSError:
        pytest.skip("DejaVu fonts not installed")
    w = max(int(font.getlength(t)) for t in lines) + 80
    img = Image.new("RGB", (w, len(lines) * (size + 30) + 60), bg)
    d = ImageDraw.Draw(img)
    for i, t in enumerate(lines):
        d.text((40, 30 + i * (size + 30)), t, font=font, fill=fg)
    return img


@needs_det
def test_recogniser_dictionary_covers_han_and_latin_only(det):
    assert det.pp_scripts == {"Han", "Latin"}


@needs_det
def test_detector_gate_on_texture(det):
    rng = np.random.default_rng(1)
    noise = Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8))
    flat = Image.new("RGB", (640, 480), (128, 128, 128))
    for img in (noise, flat):
        r = det.read(img)
        assert det.last_lines == [] and r.words == [] and r.text == ""


@needs_det
def test_detects_and_reads_rendered_lines(det):
    img = _sign(["HAUPTSTRASSE 12", "www.beispiel.de"])
    r = det.read(img)
    # the detector may split a line at a wide gap; the reading regroups it by row
    assert [ln.replace(" ", "") for ln in r.lines] == ["HAUPTSTRASSE12", "www.beispiel.de"]
    centres = sorted((ln.box[1] + ln.box[3]) / 2 for ln in det.last_lines)
    assert centres[-1] - centres[0] > 40  # two rows...
    assert all(b - a < 10 or b - a > 40 for a, b in pairwise(centres))  # ...only
    for ln in det.last_lines:
        x0, y0, x1, y1 = ln.box
        assert 0 <= x0 < x1 <= img.width and 0 <= y0 < y1 <= img.height
        assert 20 < y1 - y0 < 80  # a line of 40 px glyphs, not the whole sign


@needs_det
def test_port_matches_rapidocr_boxes(det, media_dir):
    """The numpy DB post-processing against RapidOCR's OpenCV one, same model, same input:
    the same lines within a few pixels."""
    pytest.importorskip("cv2")
    from rapidocr_onnxruntime import RapidOCR

    ref = RapidOCR(det_limit_type="max", det_limit_side_len=2000)
    for name in ("sign_korean.png", "sign_chinese.jpg", "sign_thai.jpg"):
        img = Image.open(media_dir / name).convert("RGB")
        w, h = img.size
        s = min(max(1.0, 736 / min(w, h)), 960 / max(w, h))
        small = img.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
        theirs, _ = ref.text_det(np.asarray(small)[:, :, ::-1].copy())
        ours = det._models().detect(img, s)
        assert len(ours) == len(theirs), name
        for b in theirs:
            b = np.asarray(b) / s
            err = min(np.abs(np.asarray(q) - b).max() for q in ours)
            assert err <= 4, (name, err)


@needs_both
def test_chinese_sign_read_by_ppocr(det, media_dir):
    r = det.read(Image.open(media_dir / "sign_chinese.jpg"))
    assert "愚园路" in r.text and "Yuyuan Rd." in r.text
    han = next(ln for ln in det.last_lines if ln.text == "愚园路")
    assert han.reader == textdet.READER


@needs_both
def test_hangul_line_goes_to_tesseract(det, media_dir):
    r = det.read(Image.open(media_dir / "sign_korean.png"))
    # PP-OCR's recogniser forces Hangul into Han look-alikes; Tesseract's kor model wins
    kor = [ln for ln in det.last_lines if ln.reader == "kor"]
    assert kor and any("서울" in ln.text for ln in kor), [ln.text for ln in det.last_lines]
    assert all(ln.pp_text != ln.text for ln in kor)
    assert "Seoul" in r.text and not any(ch in r.text for ch in "品号人")


# -- engine: backends and the fallback ----------------------------------------------------------
def test_bad_backend_is_a_config_error():
    with pytest.raises(ConfigError):
        TextEngine(backend="easyocr")
    e = TextEngine()
    with pytest.raises(ConfigError):
        e.atoms(None, EngineContext(options={"ocr_backend": "nope"}))  # type: ignore[arg-type]


def test_missing_onnxruntime_falls_back_to_tesseract(monkeypatch):
    if not ocr_available()[0]:
        pytest.skip(ocr_available()[1])
    why = f"onnxruntime is not installed; {ppocr.INSTALL_HINT}"
    monkeypatch.setattr(ppocr, "available", lambda: (False, why))
    e = TextEngine()
    assert e.available() == (True, "")
    assert isinstance(e.ocr, TesseractOcr)
    assert any("onnxruntime is not installed" in n and "Tesseract" in n for n in e.notes)
    with pytest.raises(BackboneMissingError, match="onnxruntime"):
        _ = TextEngine(backend="detector").ocr
    assert TextEngine(backend="detector").available() == (
        False, f"text detector unavailable: {why}")


@needs_both
def test_auto_backend_uses_detector_and_notes_reach_context(media_dir):
    from avgeo.media import open_media

    e = TextEngine()
    ctx = EngineContext()
    atoms = e.atoms(open_media(media_dir / "sign_thai.jpg"), ctx)
    assert isinstance(e.ocr, textdet.DetectorOcr)
    text = next(a for a in atoms if a.kind == "text")
    assert text.value["packs"] == ["tha"]
    assert {a.value.get("script") for a in atoms if a.kind == "script"} == {"Thai"}
    assert not any("Tesseract" in n for n in ctx.notes)


@needs_det
def test_corrupt_model_is_a_weights_error_and_auto_falls_back(tmp_path, monkeypatch):
    import shutil

    from avgeo.errors import WeightsError

    for f in ppocr.MODEL_FILES.values():
        shutil.copy(ppocr.model_dir() / f, tmp_path / f)
    (tmp_path / ppocr.MODEL_FILES["rec"]).write_bytes(b"not an onnx model")
    monkeypatch.setattr(ppocr, "model_dir", lambda: tmp_path)
    with pytest.raises(WeightsError, match="cannot load the PP-OCRv4 models"):
        ppocr.PPOcr()
    import avgeo.perception.vision.engine as eng_mod

    # no cached, already loaded models: each engine below loads the corrupt files
    monkeypatch.setattr(ppocr, "default_ppocr", ppocr.PPOcr)
    monkeypatch.setattr(eng_mod, "default_detector_ocr", textdet.DetectorOcr)
    with pytest.raises(WeightsError):
        _ = TextEngine(backend="detector").ocr
    if ocr_available()[0]:
        e = TextEngine()
        assert isinstance(e.ocr, TesseractOcr)
        assert any("cannot load the PP-OCRv4 models" in n for n in e.notes)
