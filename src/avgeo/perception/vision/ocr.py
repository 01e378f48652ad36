"""Tesseract OCR for scene text: a quick per-script probe picks the writing systems, then
recognition with those language packs over a few preprocessed variants, words kept with
their confidence and box."""

from __future__ import annotations

import os
import shutil
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from avgeo.perception.vision.script import script_counts

# Tesseract's OpenMP threads fight each other (and other engines) on small images: one
# thread per call is faster in practice; set before libtesseract is loaded.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

#: Script → Tesseract packs, the first one used for the quick probe. Only installed packs
#: are used; recognition combines at most `_MAX_PACKS` of them.
SCRIPT_PACKS: dict[str, tuple[str, ...]] = {
    "Latin": ("eng", "fra", "deu", "spa", "ita", "por", "nld"),
    "Cyrillic": ("rus", "ukr", "bul", "srp"),
    "Greek": ("ell",),
    "Arabic": ("ara", "fas", "urd"),
    "Hebrew": ("heb",),
    "Devanagari": ("hin", "mar", "nep"),
    "Thai": ("tha",),
    "Hangul": ("kor",),
    "Han": ("chi_sim", "chi_tra"),
    "Japanese": ("jpn",),
}
_MAX_PACKS = 2
#: Scripts whose words Tesseract splits at every few glyphs; written without spaces,
#: so neighbouring fragments on a line are joined.
_UNSPACED = {"Thai", "Han", "Japanese"}

INSTALL_HINT = (
    "install Tesseract and its language packs: apt-get install tesseract-ocr "
    "tesseract-ocr-eng tesseract-ocr-kor tesseract-ocr-tha tesseract-ocr-chi-sim "
    "tesseract-ocr-jpn tesseract-ocr-rus ... (see scripts/setup.sh), and "
    "pip install tesserocr (or pytesseract)"
)


@dataclass
class Word:
    """One recognised word; `box` is (x0, y0, x1, y1) in pixels of the input image."""

    text: str
    conf: float
    box: tuple[int, int, int, int]
    script: str | None
    pack: str = ""
    variant: str = ""

    @property
    def height(self) -> int:
        return max(1, self.box[3] - self.box[1])


@dataclass
class OcrResult:
    words: list[Word]
    lines: list[str]
    script_scores: dict[str, float]
    packs: list[str]
    elapsed_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def find_tessdata() -> str | None:
    """Folder holding *.traineddata (TESSDATA_PREFIX, then the Debian/Ubuntu places)."""
    cands = [os.environ.get("TESSDATA_PREFIX", "")]
    cands += [f"/usr/share/tesseract-ocr/{v}/tessdata" for v in ("5", "4.00", "4")]
    cands += ["/usr/share/tessdata", "/usr/local/share/tessdata", "/opt/homebrew/share/tessdata"]
    for c in cands:
        if c and Path(c).is_dir() and any(Path(c).glob("*.traineddata")):
            return c
    return None


def installed_packs(tessdata: str | None) -> set[str]:
    if tessdata is None:
        return set()
    return {p.stem for p in Path(tessdata).glob("*.traineddata")}


def _backend() -> str | None:
    try:
        import tesserocr  # noqa: F401

        return "tesserocr"
    except ImportError:
        pass
    try:
        import pytesseract  # noqa: F401
    except ImportError:
        return None
    return "pytesseract" if shutil.which("tesseract") else None


def ocr_available() -> tuple[bool, str]:
    backend = _backend()
    tessdata = find_tessdata()
    if backend is None or tessdata is None:
        return False, f"Tesseract OCR not found; {INSTALL_HINT}"
    if not installed_packs(tessdata) & {p for ps in SCRIPT_PACKS.values() for p in ps}:
        return False, f"no Tesseract language packs in {tessdata}; {INSTALL_HINT}"
    return True, ""


def _variants(img: Image.Image, scales: tuple[float, ...]) -> list[tuple[str, float, Image.Image]]:
    """Grey views of the image: luminance, and the min/max over RGB channels. White text
    on a coloured sign (road signs) has high contrast in the min channel, dark text on a
    coloured ground in the max channel, where luminance can wash both out."""
    rgb = np.asarray(img.convert("RGB"))
    views = {
        "lum": img.convert("L"),
        "min": Image.fromarray(rgb.min(axis=2)),
        "max": Image.fromarray(rgb.max(axis=2)),
    }
    out = []
    for s in scales:
        for name, v in views.items():
            if s != 1.0:
                v = v.resize((max(1, round(v.width * s)), max(1, round(v.height * s))),
                             Image.Resampling.LANCZOS)
            out.append((name, s, v))
    return out


class TesseractOcr:
    """Scene-text OCR. `read(image)` is thread-safe (one Tesseract handle per pack set
    per thread would cost memory; a lock is cheaper for the few-frame case)."""

    def __init__(self, tessdata: str | None = None, min_conf: float = 0.7,
                 max_side_px: int = 1600, min_side_px: int = 480) -> None:
        self.tessdata = tessdata or find_tessdata()
        self.packs = installed_packs(self.tessdata)
        self.backend = _backend()
        self.min_conf = min_conf
        self.max_side_px = max_side_px
        self.min_side_px = min_side_px
        self._apis: dict[str, object] = {}
        self.last_probe: list[Word] = []
        self._lock = threading.Lock()

    # -- engine plumbing ---------------------------------------------------------------
    def _run(self, pack: str, img: Image.Image, line: bool = False
             ) -> list[tuple[str, float, tuple]]:
        """(text, conf 0..1, box) per word, boxes in `img` pixels. `line` reads `img` as
        one text line (a detector's crop) instead of hunting for sparse text."""
        if self.backend == "tesserocr":
            import tesserocr

            key = f"{pack}:{'line' if line else 'sparse'}"
            api = self._apis.get(key)
            if api is None:
                psm = tesserocr.PSM.SINGLE_LINE if line else tesserocr.PSM.SPARSE_TEXT
                api = tesserocr.PyTessBaseAPI(path=self.tessdata, lang=pack, psm=psm)
                self._apis[key] = api
            api.SetImage(img)
            api.Recognize()
            out = []
            it = api.GetIterator()
            level = tesserocr.RIL.WORD
            for w in tesserocr.iterate_level(it, level):
                try:
                    text = w.GetUTF8Text(level)
                except RuntimeError:
                    continue
                bb = w.BoundingBox(level)
                if text and text.strip() and bb:
                    out.append((text.strip(), w.Confidence(level) / 100.0, tuple(bb)))
            return out
        import pytesseract

        d = pytesseract.image_to_data(img, lang=pack, config="--psm 7" if line else "--psm 11",
                                      output_type=pytesseract.Output.DICT)
        out = []
        for i, text in enumerate(d["text"]):
            conf = float(d["conf"][i])
            if text and text.strip() and conf >= 0:
                x, y, w_, h = d["left"][i], d["top"][i], d["width"][i], d["height"][i]
                out.append((text.strip(), conf / 100.0, (x, y, x + w_, y + h)))
        return out

    def close(self) -> None:
        for api in self._apis.values():
            end = getattr(api, "End", None)
            if end:
                end()
        self._apis.clear()

    # -- public -------------------------------------------------------------------------
    def read(self, image: Image.Image, scripts: list[str] | None = None) -> OcrResult:
        """Recognise the text in `image`. `scripts` skips the probe when given."""
        t0 = time.perf_counter()
        img, scale = self._normalise(image)
        with self._lock:
            scores = self._probe(img) if scripts is None else {s: 1.0 for s in scripts}
            chosen = scripts or _choose(scores)
            words: list[Word] = []
            packs_used: list[str] = []
            # Small text needs upscaling, big sign lettering downscaling (Tesseract reads
            # best at ~20-40 px glyph height).
            scales = (1.0, 0.5) if max(img.size) >= 500 else (1.0, 0.5, 2.0)
            for script in chosen:
                pack = "+".join([p for p in SCRIPT_PACKS[script] if p in self.packs][:_MAX_PACKS])
                if not pack:
                    continue
                packs_used.append(pack)
                for vname, s, v in _variants(img, scales):
                    for text, conf, bb in self._run(pack, v):
                        if conf < self.min_conf or not _plausible(text, conf):
                            continue
                        box = tuple(round(c / s / scale) for c in bb)
                        counts = script_counts(text)
                        wscript = counts.most_common(1)[0][0] if counts else None
                        words.append(Word(text, conf, box, wscript, pack, f"{vname}@{s:g}"))
        words = _merge(words)
        return OcrResult(words=words, lines=_lines(words), script_scores=scores,
                         packs=packs_used, elapsed_s=time.perf_counter() - t0)

    def read_line(self, crop: Image.Image, pack: str) -> tuple[str, float, list[Word]]:
        """One text line (a detector's crop) read with `pack`: (text, confidence, words).
        The confidence is the letter-weighted mean over the words."""
        with self._lock:
            raw = self._run(pack, crop, line=True)
        words = []
        for text, conf, bb in raw:
            counts = script_counts(text)
            words.append(Word(text, conf, tuple(bb),
                              counts.most_common(1)[0][0] if counts else None, pack, "line"))
        if not words:
            return "", 0.0, []
        weights = [max(1, sum(ch.isalnum() for ch in w.text)) for w in words]
        conf = sum(w.conf * n for w, n in zip(words, weights, strict=True)) / sum(weights)
        # Tesseract splits unspaced writing (Thai, Han, kana) into "words" at random: a
        # line of it is rejoined without spaces, also across Han and kana.
        text = ""
        prev: Word | None = None
        for w in sorted(words, key=lambda w: w.box[0]):
            glue = prev is not None and prev.script in _UNSPACED and w.script in _UNSPACED
            text += w.text if glue or prev is None else " " + w.text
            prev = w
        return text, conf, words

    def _normalise(self, image: Image.Image) -> tuple[Image.Image, float]:
        img = image.convert("RGB") if image.mode != "RGB" else image
        side = max(img.size)
        scale = 1.0
        if side > self.max_side_px:
            scale = self.max_side_px / side
        elif side < self.min_side_px:
            scale = self.min_side_px / side
        if scale != 1.0:
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.Resampling.LANCZOS)
        return img, scale

    def _probe(self, img: Image.Image) -> dict[str, float]:
        """Score each script by the text regions its own model reads best.

        Every model hallucinates glyphs of its script on clutter and on other scripts'
        text, but with fewer letters or lower confidence than the right model reads there:
        all probe readings compete per region (as in `_merge`), and each script scores the
        confident multi-letter words it wins.
        """
        if max(img.size) > 900:  # the probe only needs to see which scripts are there
            f = 900 / max(img.size)
            img = img.resize((round(img.width * f), round(img.height * f)),
                             Image.Resampling.LANCZOS)
        else:
            f = 1.0
        views = [v for v in _variants(img, (1.0, 0.5)) if (v[0], v[1]) in
                 {("lum", 1.0), ("min", 1.0), ("lum", 0.5), ("max", 0.5)}]
        readings: list[Word] = []
        for script, packs in SCRIPT_PACKS.items():
            probe = next((p for p in packs if p in self.packs), None)
            if probe is None:
                continue
            for vname, s, v in views:
                for text, conf, bb in self._run(probe, v):
                    n = _script_letters(text, script)
                    if conf >= 0.5 and n:
                        box = tuple(round(c / s / f) for c in bb)
                        readings.append(Word(text, conf, box, script, probe, f"{vname}@{s:g}"))
        scores = {s: 0.0 for s in SCRIPT_PACKS}
        self.last_probe = []
        for w in _merge(readings):
            n = _script_letters(w.text, w.script or "")
            # one Han/Hangul glyph is a syllable or word, but clutter also yields single
            # stroke-like glyphs: count those at half weight and only when very sure
            single_ok = n == 1 and w.script in ("Han", "Hangul") and w.conf >= 0.9
            if (n >= 2 and w.conf >= 0.8) or single_ok:
                scores[w.script or ""] += n * w.conf
                self.last_probe.append(w)
        return scores


# Letters of Greek and Cyrillic that look like Latin ones: a Greek or Cyrillic model reads
# Latin capitals as these with high confidence, so words made only of them prove nothing.
# (Cyrillic к, т, п, и also stand for italic k, m, n, u.)
_HOMOGLYPHS = set("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορτυχ" "АВЕКМНОРСТУХаеорсухіјѕктпи")
# Kana length marks and Han strokes that ruled lines and edges turn into.
_STROKES = set("ー一丨")


def _script_letters(text: str, script: str) -> int:
    """Letters of `text` that are evidence for `script`."""
    text = "".join(ch for ch in unicodedata.normalize("NFD", text)
                   if not unicodedata.category(ch).startswith("M") or script == "Thai")
    c = script_counts("".join(ch for ch in text if ch not in _STROKES))
    if script == "Japanese":
        # kanji count for Japanese only beside kana in the same word
        return c.get("Japanese", 0) + (c.get("Han", 0) if c.get("Japanese") else 0)
    n = c.get(script, 0)
    if script in ("Greek", "Cyrillic") and all(ch in _HOMOGLYPHS for ch in text if ch.isalpha()):
        return 0
    return n


def _choose(scores: dict[str, float], min_score: float = 1.5, rel: float = 0.2,
            max_scripts: int = 3) -> list[str]:
    """Scripts worth a full recognition pass: clearly present, at most `max_scripts`.
    Latin is always read when anything else is (signs mix it in: names, numbers, URLs)."""
    best = max(scores.values(), default=0.0)
    ranked = sorted((s for s, v in scores.items() if v >= min_score and v >= rel * best),
                    key=lambda s: -scores[s])[:max_scripts]
    if "Latin" not in ranked and scores.get("Latin", 0.0) > 0:
        ranked.append("Latin")
    return ranked or ["Latin"]


def _merge(words: list[Word]) -> list[Word]:
    """One reading per place: overlapping readings from different variants/packs keep the
    best one (confidence × letters, so "Seoul" beats "S" and "eoul")."""
    def quality(w: Word) -> float:
        return w.conf * (1 + _weighted_letters(w.text))

    kept: list[Word] = []
    for w in sorted(words, key=quality, reverse=True):
        # Thai vowel and tone marks come as their own "words" stacked on a consonant's
        # box: they compete only with other marks.
        marks = _marks_only(w.text)
        if any(_overlap(w.box, k.box) > 0.4 and _marks_only(k.text) == marks for k in kept):
            continue
        kept.append(w)
    return kept


def _overlap(a: tuple, b: tuple) -> float:
    """Intersection over the smaller box's area (a fragment inside a word counts as the
    same place)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / max(small, 1)


def _weighted_letters(text: str) -> float:
    """Letters, a Han/Hangul/kana glyph counted as two: one carries a syllable or a word,
    about what two Latin letters do."""
    c = script_counts(text)
    return sum(n * (2.0 if s in ("Han", "Hangul", "Japanese") else 1.0) for s, n in c.items())


def _marks_only(text: str) -> bool:
    return all(unicodedata.category(ch).startswith("M") for ch in text)


def _plausible(text: str, conf: float) -> bool:
    """Drop what clutter typically yields: punctuation, lone Latin letters/digits."""
    c = script_counts(text)
    if c.get("Thai"):
        # Tesseract's Thai model splits words into glyph clusters and lone marks
        return conf >= 0.85
    alnum = sum(ch.isalnum() for ch in text)
    if alnum == 0:
        return False
    if alnum == 1:
        # a single CJK/Hangul glyph can be a word; a single Latin letter rarely is
        return conf >= 0.85 and bool(c.keys() & {"Han", "Hangul", "Japanese"})
    return True


def _lines(words: list[Word]) -> list[str]:
    """Words grouped into lines (vertical overlap), left to right; fragments of unspaced
    scripts (Thai, Han, kana) that touch are joined without a space."""
    rows: list[list[Word]] = []
    for w in sorted(words, key=lambda w: (w.box[1] + w.box[3]) / 2):
        cy = (w.box[1] + w.box[3]) / 2
        for row in rows:
            r = row[0]
            rcy = (r.box[1] + r.box[3]) / 2
            if abs(cy - rcy) < 0.5 * max(r.height, w.height):
                row.append(w)
                break
        else:
            rows.append([w])
    lines = []
    for row in rows:
        row.sort(key=lambda w: w.box[0])
        parts: list[str] = []
        prev: Word | None = None
        for w in row:
            if (prev is not None and prev.script in _UNSPACED and w.script == prev.script
                    and w.box[0] - prev.box[2] < 0.8 * max(prev.height, w.height)):
                parts[-1] += w.text
            else:
                parts.append(w.text)
            prev = w
        lines.append(" ".join(parts))
    return lines


@lru_cache(maxsize=1)
def default_ocr() -> TesseractOcr:
    return TesseractOcr()
