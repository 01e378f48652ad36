"""The text-in-scene engine: OCR on a photo or on informative video frames, then script,
language, phone/domain/currency/postcode clues and place names, each as an atom."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from avgeo.atoms import Atom
from avgeo.perception.base import EngineContext, register
from avgeo.perception.vision.clues import all_clues
from avgeo.perception.vision.gazetteer import MixtureLikelihood, match_places
from avgeo.perception.vision.language import detect_language, language_speaker_weights
from avgeo.perception.vision.ocr import OcrResult, TesseractOcr, default_ocr, ocr_available
from avgeo.perception.vision.script import SCRIPT_ISO, dominant_scripts, script_country_weights
from avgeo.perception.vision.textdet import (
    INSTALL_HINT,
    DetectorOcr,
    default_detector_ocr,
    detector_available,
)
from avgeo.reasoning.likelihood import CountryLikelihood, PointLikelihood

if TYPE_CHECKING:
    from avgeo.media import Media

ENGINE = "ocr"


# -- frame selection ----------------------------------------------------------------------
def dhash(gray: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash of a grey image (robust to scale and small shifts)."""
    img = Image.fromarray(gray).resize((size + 1, size), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: blurred frames (motion, focus) have little high-frequency
    energy and OCR poorly."""
    g = gray.astype(np.float32)
    lap = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1])
    return float(lap.var())


def select_frames(frames, max_frames: int = 8, min_hash_bits: int = 10,
                  work_px: int = 320) -> list[tuple[float, np.ndarray]]:
    """(t_s, RGB) of informative frames: a new shot (dHash differs from every kept frame
    by at least `min_hash_bits`), the sharpest frame of each, at most `max_frames` by
    sharpness."""
    kept: list[list] = []  # [hash, sharpness, t_s, image]
    for fr in frames:
        rgb = fr.image
        h, w = rgb.shape[:2]
        f = work_px / max(h, w)
        small = Image.fromarray(rgb).convert("L")
        if f < 1:
            small = small.resize((max(1, round(w * f)), max(1, round(h * f))))
        gray = np.asarray(small)
        hv, sv = dhash(gray), sharpness(gray)
        for k in kept:
            if bin(hv ^ k[0]).count("1") < min_hash_bits:
                if sv > k[1]:  # same scene, sharper view
                    k[1], k[2], k[3] = sv, fr.t_s, rgb
                break
        else:
            kept.append([hv, sv, fr.t_s, rgb])
    kept.sort(key=lambda k: -k[1])
    return sorted(((k[2], k[3]) for k in kept[:max_frames]), key=lambda x: x[0])


# -- atoms --------------------------------------------------------------------------------
#: A place named in a scene is rarely the spot itself: direction signs name towns tens to
#: hundreds of km away ("Pyeongyang 205 km"), so a named place is evidence for its region.
PLACE_SIGMA_KM = 150.0
#: Confidence factor left to a place name none of whose places writes the sign's script
#: and language (a foreign destination is still possible, so not zero).
PLACE_MISMATCH_FLOOR = 0.1
#: Scripts written in syllables or logograms carry a word in one or two characters; the
#: alphabetic ones need more letters before a stray glyph counts as writing.
_SYLLABIC = ("Han", "Hangul", "Japanese", "Hiragana", "Katakana")


def _min_letters(script: str) -> int:
    return 2 if script.startswith(_SYLLABIC) else 4


def _worded_text(words) -> str:
    """The recognised text without isolated single glyphs: OCR on textures (foliage,
    brickwork) yields lone letters of some script, which are not writing."""
    kept = [w.text for w in words if sum(ch.isalpha() for ch in w.text) >= 2
            or any(ord(ch) > 0x2E80 for ch in w.text)]
    return " ".join(kept)


def _top(weights: dict[str, float], n: int = 3) -> list[str]:
    return [k for k, _ in sorted(weights.items(), key=lambda kv: -kv[1])[:n]]


def text_atoms(result: OcrResult, start_s: float | None = None, end_s: float | None = None,
               gazetteer=None) -> list[Atom]:
    """Atoms from one OCR reading."""
    text = result.text
    if not text.strip():
        return []
    words = result.words
    mean_conf = float(np.mean([w.conf for w in words])) if words else 0.0
    common = {"engine": ENGINE, "start_s": start_s, "end_s": end_s}
    atoms: list[Atom] = [Atom(
        name="text", kind="text", evidence=f"text read: {' / '.join(result.lines)[:200]!r}",
        confidence=mean_conf, likelihood=None,
        value={"text": text, "lines": result.lines, "packs": result.packs,
               "words": [{"text": w.text, "conf": round(w.conf, 3), "box": list(w.box)}
                         for w in words]}, **common)]

    prior: dict[str, float] = {}

    def fold_in(weights: dict[str, float]) -> None:
        nonlocal prior
        if not prior:
            prior = dict(weights)
        else:
            prior = {k: v * weights.get(k, 1e-3) for k, v in prior.items()}

    # Latin beside another script is mostly transliteration (road signs, brands), so a
    # non-Latin script counts however few of its letters are read next to Latin ones.
    scripts = [(s, n) for s, n in dominant_scripts(_worded_text(words), min_share=0.0)
               if n >= _min_letters(s)]
    if any(s != "Latin" for s, _ in scripts):
        scripts = [(s, n) for s, n in scripts if s != "Latin"]
    for script, n in scripts:
        weights = script_country_weights(script)
        if not weights:
            continue
        conf = mean_conf * min(1.0, n / 6.0)
        atoms.append(Atom(
            name=f"script:{script}", kind="script", confidence=conf,
            evidence=f"{n} letters in {script} script (countries writing it: "
                     f"{', '.join(_top(weights, 5))})",
            value={"script": script, "letters": n}, likelihood=CountryLikelihood(weights),
            **common))
        if script != "Latin":
            fold_in(weights)

        guesses = detect_language(text, script)
        if not guesses or guesses[0].confidence < 0.5 or n < (2 if script != "Latin" else 8):
            continue
        g = guesses[0]
        iso = SCRIPT_ISO[script][0] if script.startswith("Han-") else None
        lw = language_speaker_weights(g.code, iso)
        if not lw:
            continue
        atoms.append(Atom(
            name=f"language:{g.code}", kind="language", confidence=conf * g.confidence,
            evidence=f"text is {g.name} ({g.confidence:.0%}); most speakers in "
                     f"{', '.join(_top(lw, 5))}",
            value={"language": g.code, "name": g.name, "confidence": g.confidence,
                   "alternatives": [(x.code, round(x.confidence, 3)) for x in guesses[1:]]},
            likelihood=CountryLikelihood(lw), **common))
        fold_in(lw)

    for clue in all_clues(text, regions=_top(prior, 3) if prior else None):
        countries = ", ".join(_top(clue.countries, 5))
        atoms.append(Atom(
            name=f"{clue.kind}:{clue.match}", kind="phone_prefix" if clue.kind == "phone_prefix"
            else ("domain" if clue.kind == "domain" else
                  "currency" if clue.kind == "currency" else "text"),
            confidence=clue.confidence * mean_conf,
            evidence=f"{clue.kind.replace('_', ' ')} {clue.match!r} → {countries}",
            value={"clue": clue.kind, "match": clue.match, **clue.detail},
            likelihood=CountryLikelihood(clue.countries, floor=0.05 if clue.kind == "postcode"
                                         else 1e-3), **common))

    for m in match_places(result.lines, prior or None, gazetteer=gazetteer):
        best = m.candidates[0][0]
        # several places share most names: confidence falls with how spread the weight is
        entropy = -sum(p * math.log(p) for _, p in m.candidates if p > 0)
        conf = (m.score / 100.0) * mean_conf / (1.0 + entropy)
        if prior:
            # A name whose places lie where this script and language are not written is
            # mostly an OCR near-miss ("Yuyuan" on a Shanghai sign ≈ "yu yuan", an
            # alternate name of Elm Park, GB): its confidence falls with that mismatch.
            top = max(prior.values())
            agree = sum(wt * prior.get(p.country, 0.0) / top for p, wt in m.candidates)
            conf *= max(min(agree, 1.0), PLACE_MISMATCH_FLOOR)
        lik = (PointLikelihood(best.lat, best.lon, PLACE_SIGMA_KM) if len(m.candidates) == 1
               else MixtureLikelihood([(p.lat, p.lon, wt) for p, wt in m.candidates],
                                      PLACE_SIGMA_KM))
        atoms.append(Atom(
            name=f"place:{best.name}", kind="place_name", confidence=conf,
            evidence=f"{m.query!r} matches {best.name} ({best.country}, pop "
                     f"{best.population:,})" + (f" and {len(m.candidates) - 1} other places"
                                                if len(m.candidates) > 1 else ""),
            value={"query": m.query, "matched": m.matched, "score": m.score,
                   "candidates": [{"name": p.name, "country": p.country, "lat": p.lat,
                                   "lon": p.lon, "population": p.population, "weight": wt}
                                  for p, wt in m.candidates[:5]]},
            likelihood=lik, **common))
    return atoms


#: How text is found: "detector" (PP-OCRv4 text detector, PP-OCR recogniser for Han and
#: Latin lines, Tesseract for other scripts on the detected lines), "tesseract" (Tesseract
#: over the whole frame: no detector, so it can invent glyphs on clutter), or "auto"
#: (the detector when installed, else Tesseract with a note).
BACKENDS = ("auto", "detector", "tesseract")


@register(ENGINE)
class TextEngine:
    """Reads text in photos and video frames; see the module docstring.

    Options (ctx.options): ocr_backend (one of BACKENDS, default "auto"), ocr_fps (1.0).
    """

    name = ENGINE
    media_kinds = ("photo", "video")

    def __init__(self, fps: float = 1.0, max_frames: int = 8,
                 ocr: TesseractOcr | DetectorOcr | None = None, backend: str = "auto") -> None:
        self.fps = fps
        self.max_frames = max_frames
        self._ocr = ocr
        self.backend = _check_backend(backend)
        self.notes: list[str] = []

    @property
    def ocr(self) -> TesseractOcr | DetectorOcr:
        if self._ocr is None:
            self._ocr = self._reader(self.backend)
        return self._ocr

    def _reader(self, backend: str) -> TesseractOcr | DetectorOcr:
        from avgeo.errors import BackboneMissingError

        det_ok, det_why = detector_available()
        if det_ok and backend != "tesseract":
            try:
                return default_detector_ocr()
            except BackboneMissingError as exc:  # installed but broken (WeightsError)
                if backend == "detector":
                    raise
                det_why = f"text detector unavailable: {exc.message}"
        if backend == "detector":
            raise BackboneMissingError(det_why, INSTALL_HINT)
        ok, why = ocr_available()
        if not ok:
            raise BackboneMissingError(why if backend == "tesseract" else
                                       f"no OCR installed: {det_why}; {why}")
        if backend == "auto":
            self.notes.append(f"ocr: {det_why}; reading whole frames with Tesseract, "
                              "which can invent glyphs on clutter")
        return default_ocr()

    def available(self) -> tuple[bool, str]:
        det_ok, det_why = detector_available()
        tess_ok, tess_why = ocr_available()
        if self.backend == "detector":
            return det_ok, det_why
        if self.backend == "tesseract":
            return tess_ok, tess_why
        if det_ok or tess_ok:
            return True, ""
        return False, f"{det_why}; {tess_why}"

    def atoms_from_image(self, image: Image.Image, start_s: float | None = None,
                         end_s: float | None = None) -> list[Atom]:
        if image.mode in ("RGBA", "LA", "P"):
            # transparent pixels: composite on white (RGBA signs, screenshots)
            rgba = image.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(bg, rgba)
        result = self.ocr.read(image.convert("RGB"))
        self.notes += [n for n in result.notes if n not in self.notes]
        atoms = text_atoms(result, start_s, end_s)
        _release_heap()
        return atoms

    def atoms(self, media: Media, ctx: EngineContext) -> list[Atom]:
        fps = float(ctx.options.get("ocr_fps", self.fps))
        backend = _check_backend(ctx.options.get("ocr_backend", self.backend))
        if backend != self.backend:
            self.backend, self._ocr = backend, None
        self.notes = []
        try:
            if media.kind == "photo":
                return self.atoms_from_image(media.image())
            if media.kind != "video":
                return []
            frames = select_frames(media.frames(fps=fps), max_frames=self.max_frames)
            out: list[Atom] = []
            for t_s, rgb in frames:
                out.extend(self.atoms_from_image(Image.fromarray(rgb), t_s, t_s + 1.0 / fps))
            self.notes.append(f"ocr: read {len(frames)} informative frames at {fps:g} fps")
            return out
        finally:
            ctx.notes.extend(n for n in self.notes if n not in ctx.notes)


def _release_heap() -> None:
    """Hand freed heap pages back to the OS. glibc keeps them, and the detector's
    activations and lingua's transient models would leave the process ~70–130 MB larger
    after every frame (measured on the shared sign photos), raising the next frame's peak."""
    import contextlib
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL(None).malloc_trim(0)


def _check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        from avgeo.errors import ConfigError

        raise ConfigError(f"unknown ocr_backend {backend!r}",
                          f"use one of {', '.join(BACKENDS)}")
    return str(backend)
