"""The OCR text engine end to end: rendered signs (phone, domain, Cyrillic, RGBA) and the
shared sign photos (script → language → country, place names)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from avgeo.perception.base import REGISTRY, EngineContext
from avgeo.perception.vision.engine import TextEngine, dhash, select_frames, sharpness
from avgeo.perception.vision.ocr import ocr_available

needs_ocr = pytest.mark.skipif(not ocr_available()[0], reason=ocr_available()[1])
FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/TTF")]


def _font(size: int) -> ImageFont.FreeTypeFont:
    for d in FONT_DIRS:
        f = d / "DejaVuSans-Bold.ttf"
        if f.exists():
            return ImageFont.truetype(str(f), size)
    pytest.skip("DejaVu fonts not installed (apt-get install fonts-dejavu-core)")


def _sign(lines: list[str], size: int = 44, fg=(255, 255, 255), bg=(20, 90, 40),
          mode: str = "RGB") -> Image.Image:
    font = _font(size)
    w = max(int(font.getlength(t)) for t in lines) + 80
    h = len(lines) * (size + 24) + 60
    img = Image.new(mode, (w, h), bg + ((255,) if mode == "RGBA" else ()))
    d = ImageDraw.Draw(img)
    for i, t in enumerate(lines):
        d.text((40, 30 + i * (size + 24)), t, font=font,
               fill=fg + ((255,) if mode == "RGBA" else ()))
    return img


def _product(atoms) -> dict[str, float]:
    prod: dict[str, float] = {}
    for a in atoms:
        w = getattr(a.likelihood, "weights", None)
        if w is None or a.kind not in ("script", "language", "phone_prefix", "domain",
                                       "currency"):
            continue
        prod = dict(w) if not prod else {k: v * w.get(k, 1e-3) for k, v in prod.items()}
    return prod


def _top(w: dict[str, float], n: int = 3) -> list[str]:
    return sorted(w, key=lambda k: -w[k])[:n]


@pytest.fixture(scope="module")
def engine() -> TextEngine:
    return TextEngine()


def test_registered_and_protocol():
    e = REGISTRY["ocr"]()
    assert e.name == "ocr" and set(e.media_kinds) == {"photo", "video"}
    ok, why = e.available()
    assert ok or "apt-get install tesseract-ocr" in why


@needs_ocr
def test_phone_sign_points_to_gb(engine):
    atoms = engine.atoms_from_image(_sign(["FLOWERS & GIFTS", "+44 20 7946 0958"]))
    phones = [a for a in atoms if a.kind == "phone_prefix"]
    assert phones, [a.evidence for a in atoms]
    assert _top(phones[0].likelihood.weights, 1) == ["GB"]
    assert phones[0].value["e164"] == "+442079460958"


@needs_ocr
def test_whole_frame_tesseract_backend_reads_phone_sign():
    """The fallback path (no text detector) still reads a plain sign."""
    eng = TextEngine(backend="tesseract")
    atoms = eng.atoms_from_image(_sign(["FLOWERS & GIFTS", "+44 20 7946 0958"]))
    phones = [a for a in atoms if a.kind == "phone_prefix"]
    assert phones and _top(phones[0].likelihood.weights, 1) == ["GB"]
    assert atoms[0].value["packs"] and "ppocr-v4" not in atoms[0].value["packs"]


@needs_ocr
def test_domain_sign_points_to_de(engine):
    atoms = engine.atoms_from_image(_sign(["Bäckerei Müller", "www.beispiel.de"],
                                          fg=(10, 10, 10), bg=(250, 240, 200)))
    doms = [a for a in atoms if a.kind == "domain"]
    assert [a.likelihood.weights for a in doms] == [{"DE": 1.0}]


@needs_ocr
def test_cyrillic_sign(engine):
    atoms = engine.atoms_from_image(_sign(["Улица Ленина", "Аптека"]))
    scripts = [a.value["script"] for a in atoms if a.kind == "script"]
    assert "Cyrillic" in scripts
    top = _top(_product(atoms), 8)
    assert "RU" in top and not {"FR", "US", "CN"} & set(top)


@needs_ocr
def test_rgba_png(engine, tmp_path):
    img = _sign(["Bahnhofstrasse"], mode="RGBA")
    a = np.asarray(img).copy()
    a[:12, :, 3] = 0  # a transparent band
    path = tmp_path / "sign.png"
    Image.fromarray(a, "RGBA").save(path)
    atoms = engine.atoms_from_image(Image.open(path))
    text = [x for x in atoms if x.kind == "text"]
    assert text and "bahnhof" in text[0].value["text"].lower()


@needs_ocr
def test_blank_image_gives_nothing(engine):
    assert engine.atoms_from_image(Image.new("RGB", (320, 240), (128, 128, 128))) == []


@dataclass
class _Frame:
    image: np.ndarray
    t_s: float


def test_frame_selection_dedupes_and_prefers_sharp():
    rng = np.random.default_rng(0)
    scene_a = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    scene_b = np.zeros((120, 160, 3), np.uint8)
    scene_b[:, 80:] = 255
    scene_b[40:80, 20:60] = 128
    blurred_a = np.asarray(Image.fromarray(scene_a).resize((40, 30)).resize((160, 120)))
    frames = [_Frame(blurred_a, 0.0), _Frame(scene_a, 1.0), _Frame(blurred_a, 2.0),
              _Frame(scene_b, 3.0), _Frame(scene_b, 4.0)]
    kept = select_frames(frames, max_frames=8)
    assert [t for t, _ in kept] == [1.0, 3.0]
    assert select_frames(frames, max_frames=1)[0][0] == 1.0
    gray = np.asarray(Image.fromarray(scene_a).convert("L"))
    assert sharpness(gray) > sharpness(np.asarray(Image.fromarray(blurred_a).convert("L")))
    assert dhash(gray) == dhash(gray)


# -- the shared sign photos ----------------------------------------------------------------
SIGNS = {"KR": "sign_korean.png", "TH": "sign_thai.jpg", "CN": "sign_chinese.jpg",
         "JP": "sign_japanese.jpg", "FR": "sign_french.jpg"}


@pytest.fixture(scope="module")
def sign_atoms(media_dir, manifest, engine) -> dict[str, list]:
    from avgeo.media import open_media

    out = {}
    for row in manifest:
        if row["file"] in SIGNS.values():
            out[row["country"]] = engine.atoms(open_media(media_dir / row["file"]),
                                               EngineContext())
    return out


@needs_ocr
@pytest.mark.slow
@pytest.mark.parametrize("country", ["KR", "TH", "CN", "JP", "FR"])
def test_sign_country_in_top3(sign_atoms, country):
    atoms = sign_atoms[country]
    kinds = {a.kind for a in atoms}
    assert {"text", "script", "language"} <= kinds, [a.evidence for a in atoms]
    assert country in _top(_product(atoms), 3), [a.evidence for a in atoms]


@needs_ocr
@pytest.mark.slow
@pytest.mark.parametrize("country,place", [("KR", "Seoul"), ("TH", "Phetchaburi"),
                                           ("JP", "Minato"), ("FR", "Louvre")])
def test_sign_place_names(sign_atoms, country, place):
    places = [a for a in sign_atoms[country] if a.kind == "place_name"]
    names = [a.value["candidates"][0]["name"] for a in places]
    assert any(place in n for n in names), names
    hit = next(a for a in places if place in a.value["candidates"][0]["name"])
    assert hit.value["candidates"][0]["country"] == country
    assert 0 < hit.confidence <= 1
