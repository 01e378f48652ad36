"""Scene text through a text detector: PP-OCRv4's DBNet (the ONNX models bundled with
rapidocr-onnxruntime) finds the text lines and its recogniser reads Han and Latin; Tesseract
reads, on the same line crops, the scripts that recogniser has never seen (Hangul, Thai,
kana, Cyrillic, Arabic...). No detected line, no text: clutter is never read."""

from __future__ import annotations

import threading
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from avgeo.perception.vision import ppocr
from avgeo.perception.vision.ocr import (
    SCRIPT_PACKS,
    OcrResult,
    TesseractOcr,
    Word,
    _lines,
    _script_letters,
    _weighted_letters,
    ocr_available,
)
from avgeo.perception.vision.script import script_counts

INSTALL_HINT = ppocr.INSTALL_HINT
READER = "ppocr-v4"
#: A script counts as readable by the PP-OCR recogniser when its dictionary spells at least
#: this many of its letters: the basic Latin alphabet is 52; the Greek, Cyrillic and kana
#: entries there are a handful of symbols, not an alphabet.
_MIN_DICT_LETTERS = 50


def detector_available() -> tuple[bool, str]:
    """(True, "") when onnxruntime and the PP-OCRv4 models are installed."""
    ok, why = ppocr.available()
    return ok, ("" if ok else f"text detector unavailable: {why}")


@dataclass
class Line:
    """One detected text line: its quadrilateral (4×2, image pixels, clockwise from the
    top left) and what each reader made of it."""

    quad: np.ndarray
    pp_text: str = ""
    pp_conf: float = 0.0
    text: str = ""
    conf: float = 0.0
    script: str | None = None
    reader: str = ""
    flipped: bool = False  # the direction classifier found it upside down

    @property
    def box(self) -> tuple[int, int, int, int]:
        x0, y0 = np.floor(self.quad.min(axis=0)).astype(int)
        x1, y1 = np.ceil(self.quad.max(axis=0)).astype(int)
        return int(x0), int(y0), int(x1), int(y1)


def _fold(s: str) -> str:
    """Letters and digits only, accents dropped, case folded: two readers agree on a Latin
    line when these are equal."""
    s = unicodedata.normalize("NFKD", s.casefold())
    return "".join(ch for ch in s if ch.isalnum() and not unicodedata.combining(ch))


def _marks(s: str) -> list[str]:
    """The punctuation and symbols of a reading, in order."""
    return [ch for ch in s if not ch.isalnum() and not ch.isspace()]


def _letters(text: str, script: str) -> int:
    """Letters of `text` that are evidence for `script` (`ocr._script_letters`), Hangul
    counted in syllable blocks, not in the 2–3 jamo each decomposes into."""
    if script == "Hangul":
        return script_counts(unicodedata.normalize("NFC", text)).get("Hangul", 0)
    return _script_letters(text, script)


def _quality(text: str, conf: float, script: str) -> float:
    """A reading's weight when readers compete for a line: confidence × (1 + letters of the
    script, a syllable glyph counting two), as in `ocr._merge`."""
    w = 2.0 if script in ("Han", "Hangul", "Japanese") else 1.0
    return conf * (1.0 + w * _letters(text, script))


def _confident(text: str, conf: float, script: str) -> bool:
    """Tesseract's rule for a real reading (as in its whole-image probe): two letters of
    the script read with confidence ≥ 0.8, or one Han/Hangul glyph with ≥ 0.9."""
    n = _letters(text, script)
    return (n >= 2 and conf >= 0.8) or (n == 1 and script in ("Han", "Hangul")
                                        and conf >= 0.9)


class DetectorOcr:
    """Detect text lines, read them (see the module docstring), return an `OcrResult`.

    det_min_side/det_max_side: the detector sees the image scaled so its short side is at
    least the first (small signs) and its long side at most the second (memory, time).
    views: the line crops Tesseract reads, as (vertical margin, height px): the margin
    is a share of the line height (DBNet's boxes hug the glyph bodies and cut off Thai
    vowel and tone marks above and below) and the height suits Tesseract (it reads best
    at 30–50 px glyphs); one view's confidence alone wavers by ±0.15 on the same line.
    """

    def __init__(self, tesseract: TesseractOcr | None = None, min_conf: float = 0.5,
                 det_min_side: int = 736, det_max_side: int = 960,
                 views: tuple[tuple[float, int], ...] = ((0.2, 48), (0.1, 32)),
                 threads: int | None = None) -> None:
        ok, why = detector_available()
        if not ok:
            from avgeo.errors import BackboneMissingError

            raise BackboneMissingError(why, INSTALL_HINT)
        if tesseract is None and ocr_available()[0]:
            from avgeo.perception.vision.ocr import default_ocr

            tesseract = default_ocr()
        self.tesseract = tesseract
        self.min_conf = min_conf
        self.det_min_side = det_min_side
        self.det_max_side = det_max_side
        self.views = views
        self.threads = threads
        self._pp: ppocr.PPOcr | None = None
        self._pp_scripts: set[str] = set()
        self._lock = threading.Lock()
        self.last_lines: list[Line] = []
        self._models()  # load now: a broken install fails here, not on the first frame

    # -- models ---------------------------------------------------------------------------
    def _models(self) -> ppocr.PPOcr:
        if self._pp is None:
            self._pp = ppocr.PPOcr(self.threads) if self.threads else ppocr.default_ppocr()
            counts = script_counts("".join(self._pp.charset))
            self._pp_scripts = {s for s, n in counts.items() if n >= _MIN_DICT_LETTERS}
        return self._pp

    @property
    def pp_scripts(self) -> set[str]:
        """Scripts the PP-OCR recogniser can spell (from its own character dictionary)."""
        self._models()
        return self._pp_scripts

    def detect(self, image: Image.Image) -> list[np.ndarray]:
        """Text-line quadrilaterals in image pixels, top to bottom."""
        w, h = image.size
        s = max(1.0, self.det_min_side / max(1, min(w, h)))
        s = min(s, self.det_max_side / max(w, h))
        return self._models().detect(image, s)

    # -- reading --------------------------------------------------------------------------
    def read(self, image: Image.Image) -> OcrResult:
        """Detected lines, each read by the reader that fits its script."""
        t0 = time.perf_counter()
        img = image.convert("RGB")
        notes: list[str] = []
        with self._lock:
            quads = self.detect(img)
            lines = [Line(q) for q in quads]
            if lines:
                self._read_pp(img, lines)
                if self.tesseract is not None:
                    self._read_tesseract(img, lines)
                else:
                    notes.append("ocr: Tesseract is not installed, so text in scripts the "
                                 "PP-OCR recogniser cannot read (Hangul, Thai, kana, Cyrillic"
                                 "...) may be misread as Han or Latin")
                    for ln in lines:
                        ln.text, ln.conf, ln.reader = ln.pp_text, ln.pp_conf, READER
            self.last_lines = lines
        words: list[Word] = []
        scores: dict[str, float] = {s: 0.0 for s in SCRIPT_PACKS}
        readers: list[str] = []
        for ln in lines:
            if not ln.text.strip() or ln.conf < self.min_conf:
                continue
            counts = script_counts(ln.text)
            script = ln.script or (counts.most_common(1)[0][0] if counts else None)
            words.append(Word(ln.text, ln.conf, ln.box, script, ln.reader, "line"))
            if script in scores:
                scores[script] += ln.conf * _weighted_letters(ln.text)
            if ln.reader not in readers:
                readers.append(ln.reader)
        return OcrResult(words=words, lines=_lines(words), script_scores=scores,
                         packs=readers, elapsed_s=time.perf_counter() - t0, notes=notes)

    def _crops(self, image: Image.Image, lines: list[Line], expand: float
               ) -> list[Image.Image]:
        """Rectified crops of the lines (perspective-corrected, upright), with a vertical
        margin of `expand` × the line height."""
        out = []
        for ln in lines:
            q = ln.quad.astype(np.float64).copy()
            if expand > 0:
                # quad is tl, tr, br, bl: push the top edge up and the bottom edge down
                # along each side's own "down" vector (the line may be tilted)
                down_l, down_r = q[3] - q[0], q[2] - q[1]
                q[0] -= expand * down_l
                q[3] += expand * down_l
                q[1] -= expand * down_r
                q[2] += expand * down_r
            wd = max(2, int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3]))))
            ht = max(2, int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))))
            # Pillow's QUAD maps (top-left, bottom-left, bottom-right, top-right) onto the
            # output rectangle; the margin may reach past the image edge, filled with the
            # median colour of the line's surroundings rather than black
            x0, y0 = np.maximum(np.floor(q.min(axis=0)).astype(int), 0)
            x1, y1 = np.ceil(q.max(axis=0)).astype(int)
            patch = np.asarray(image.crop((int(x0), int(y0), int(x1) + 1, int(y1) + 1)))
            fill = tuple(int(v) for v in np.median(patch.reshape(-1, 3), axis=0)) \
                if patch.size else (0, 0, 0)
            crop = image.transform((wd, ht), Image.Transform.QUAD,
                                   tuple(q[[0, 3, 2, 1]].ravel().tolist()),
                                   Image.Resampling.BICUBIC, fillcolor=fill)
            if ht >= 1.5 * wd:  # a vertical line: read it turned, as PP-OCR does
                crop = crop.transpose(Image.Transpose.ROTATE_90)
            out.append(crop)
        return out

    def _read_pp(self, image: Image.Image, lines: list[Line]) -> None:
        pp = self._models()
        crops = self._crops(image, lines, 0.0)
        flipped = pp.classify(crops)
        crops = [c.rotate(180) if f else c for c, f in zip(crops, flipped, strict=True)]
        for ln, (text, conf), f in zip(lines, pp.recognise(crops), flipped, strict=True):
            ln.pp_text, ln.pp_conf, ln.flipped = text.strip(), conf, f

    def _read_tesseract(self, image: Image.Image, lines: list[Line]) -> None:
        """Which reader each line gets.

        1. Where Tesseract's Latin model reads the same letters as PP-OCR (case and
           accents aside), two independent readers agree: the line is Latin (or digits)
           and keeps that reading, with Tesseract's accents ("Musée", not "Musee").
        2. Otherwise Tesseract reads the line with one model per script (on each view in
           `views`, keeping each script's best) and the readings compete by `_quality`.
           PP-OCR's own confidence takes no part: its classifier is as sure when it
           forces a script it never saw into Han look-alikes ("品品" for "평양").
           Readings in scripts PP-OCR cannot read compete only when confident
           (`_confident`); when one of them beats the Han and Latin readings, Tesseract's
           reading is kept, otherwise PP-OCR's.
        """
        tess = self.tesseract
        assert tess is not None
        pp_scripts = self.pp_scripts
        probes = {s: next(p for p in packs if p in tess.packs)
                  for s, packs in SCRIPT_PACKS.items() if any(p in tess.packs for p in packs)}
        crops = [self._crops(image, lines, expand) for expand, _ in self.views]
        for i, ln in enumerate(lines):
            views = [self._line_image(c[i], px) for c, (_, px) in zip(crops, self.views,
                                                                       strict=True)]
            if ln.flipped:
                # The direction classifier knows only Han and Latin and flips lines of
                # other scripts at random: read those both ways round.
                views += [v.rotate(180) for v in views]
            latin = tess.read_line(views[0], probes["Latin"])[:2] if "Latin" in probes \
                else None
            if latin and _fold(ln.pp_text) and _fold(latin[0]) == _fold(ln.pp_text):
                # Tesseract's spelling only where it adds accents or case, not stray marks
                same_marks = _marks(latin[0]) == _marks(ln.pp_text)
                ln.text = latin[0] if same_marks else ln.pp_text
                ln.conf, ln.reader = max(ln.pp_conf, latin[1]), READER
                continue
            readings: dict[str, tuple[str, float]] = {}
            for s, pack in probes.items():
                cands = [tess.read_line(v, pack)[:2] for v in views[1 if s == "Latin" else 0:]]
                if s == "Latin" and latin:
                    cands.append(latin)
                readings[s] = max(cands, key=lambda r, s=s: _quality(r[0], r[1], s))
            # Han and Latin readings always compete (they block a script that only looks
            # better); another script only with a confident reading: a garbled one in
            # many letters must not block the right one.
            rivals = [s for s, r in readings.items() if s in pp_scripts or _confident(*r, s)]
            best = max(rivals, key=lambda s: _quality(*readings[s], s), default=None)
            if best is not None and best not in pp_scripts:
                ln.text, ln.conf = readings[best]
                ln.script, ln.reader = best, probes[best]
            else:
                ln.text, ln.conf, ln.reader = ln.pp_text, ln.pp_conf, READER

    def _line_image(self, crop: Image.Image, px: int) -> Image.Image:
        """The crop scaled to `px` high on a margin of its own border colour (Tesseract
        misreads glyphs touching the image edge)."""
        img = crop.resize((max(1, round(crop.width * px / max(1, crop.height))), px),
                          Image.Resampling.LANCZOS)
        a = np.asarray(img)
        border = tuple(int(v) for v in np.median(np.concatenate([a[0], a[-1]]), axis=0))
        pad = Image.new("RGB", (img.width + px, 2 * px), border)
        pad.paste(img, (px // 2, px // 2))
        return pad


@lru_cache(maxsize=1)
def default_detector_ocr() -> DetectorOcr:
    return DetectorOcr()
