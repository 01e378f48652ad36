"""Simulated located examples: sample a place where photos are taken, then the atoms the
perception engines would report there (mains frequency, scripts and languages of its
country, a UTC-offset band, expected bird species, noisy place-name hits), with dropouts
and false detections, built with the same likelihood models the real engines use."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from avgeo.atoms import Atom
from avgeo.reasoning.likelihood import CountryLikelihood, PointLikelihood
from avgeo.reasoning.reasoner.reward import Truth, truths_of


@dataclass(frozen=True)
class SimConfig:
    """Probabilities of each cue and of the noise added to it."""

    p_photo: float = 0.5
    p_audio: float = 0.35  # the rest are videos (both kinds of cue)
    p_text: float = 0.7
    p_language: float = 0.6
    p_place: float = 0.35
    p_place_wrong: float = 0.15
    p_spurious_script: float = 0.2
    p_hum: float = 0.35
    p_hum_wrong: float = 0.05
    p_species: float = 0.7
    p_spurious_species: float = 0.3
    p_speech: float = 0.2
    p_time_zone: float = 0.15
    max_species: int = 5
    place_radius_km: float = 80.0
    jitter_km: float = 30.0


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
        if name in ("Han",):
            continue
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


@lru_cache(maxsize=256)
def _script_likelihood(script: str) -> CountryLikelihood | None:
    from avgeo.perception.vision.script import script_country_weights

    w = script_country_weights(script)
    return CountryLikelihood(w) if w else None


@lru_cache(maxsize=512)
def _language_likelihood(code: str) -> CountryLikelihood | None:
    from avgeo.perception.vision.language import language_speaker_weights

    w = language_speaker_weights(code)
    return CountryLikelihood(w) if w else None


@lru_cache(maxsize=1)
def _cities() -> dict[str, np.ndarray]:
    from avgeo.geo.regions import _geonames_cities
    from avgeo.geo.sphere import to_xyz

    g = _geonames_cities()
    if g is None:
        return {}
    keep = np.asarray(g["population"]) >= 5000
    out = {k: np.asarray(v)[keep] for k, v in g.items()}
    from scipy.spatial import cKDTree

    out["_tree"] = cKDTree(to_xyz(out["lat"], out["lon"]))  # type: ignore[assignment]
    return out


_SPECIES_MAPS: dict[str, object] = {}


def _species_lik(label: str):
    from avgeo.perception.audio import species_range as sr

    if label not in _SPECIES_MAPS:
        _SPECIES_MAPS[label] = sr.species_likelihood(label, sr.YEAR_ROUND)
    return _SPECIES_MAPS[label]


# ---------------------------------------------------------------- atoms

def sample_places(n: int, rng: np.random.Generator, jitter_km: float = 30.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """n places from the photo prior, jittered inside their cells."""
    from avgeo.geo.sphere import destination

    lat, lon, cdf = _place_sampler()
    idx = np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1)
    dist = np.abs(rng.normal(0.0, jitter_km, n))
    plat, plon = destination(lat[idx], lon[idx], rng.uniform(0, 360, n), dist)
    return np.asarray(plat, float), (np.asarray(plon, float) + 180.0) % 360.0 - 180.0


def _conf(rng: np.random.Generator, lo: float = 0.2, hi: float = 0.95) -> float:
    return float(rng.uniform(lo, hi))


def _text_atoms(t: Truth, rng: np.random.Generator, cfg: SimConfig) -> list[Atom]:
    out: list[Atom] = []
    mean_conf = _conf(rng, 0.5, 0.95)
    out.append(Atom("text", "ocr", "text", "text read (simulated)", mean_conf))
    scripts, w = _country_scripts(t.country)
    script = str(rng.choice(scripts, p=w))
    n_letters = int(rng.integers(2, 60))
    lik = _script_likelihood(script)
    if lik is not None:
        out.append(Atom(f"script:{script}", "ocr", "script",
                        f"{n_letters} letters in {script} script", mean_conf * min(1.0,
                        n_letters / 6.0), value={"script": script}, likelihood=lik))
    langs, lw = _country_languages(t.country)
    if len(langs) and rng.random() < cfg.p_language:
        code = str(rng.choice(langs, p=lw))
        llik = _language_likelihood(code)
        if llik is not None:
            out.append(Atom(f"language:{code}", "ocr", "language", f"text is {code}",
                            mean_conf * _conf(rng, 0.5, 1.0), value={"language": code},
                            likelihood=llik))
    if rng.random() < cfg.p_place:
        out.extend(_place_atoms(t, rng, cfg, mean_conf))
    return out


def _place_atoms(t: Truth, rng: np.random.Generator, cfg: SimConfig,
                 mean_conf: float) -> list[Atom]:
    from avgeo.geo.sphere import EARTH_RADIUS_KM, to_xyz

    c = _cities()
    if not c:
        return []
    n = len(c["lat"])
    if rng.random() < cfg.p_place_wrong:
        i = int(rng.integers(n))  # an OCR misread that matches some other place
    else:
        near = c["_tree"].query_ball_point(to_xyz(t.lat, t.lon),
                                           cfg.place_radius_km / EARTH_RADIUS_KM)
        if not near:
            return []
        pop = np.asarray(c["population"], float)[near]
        i = int(np.asarray(near)[rng.choice(len(near), p=pop / pop.sum())])
    name = str(c["name"][i])
    lat, lon = float(c["lat"][i]), float(c["lon"][i])
    return [Atom(f"place:{name}", "ocr", "place_name",
                 f"{name!r} matches {name} ({c['cc'][i]})",
                 mean_conf * _conf(rng, 0.4, 1.0), value={"lat": lat, "lon": lon},
                 likelihood=PointLikelihood(lat, lon, 30.0))]


def _spurious_script(rng: np.random.Generator) -> list[Atom]:
    from avgeo.perception.vision.script import SCRIPT_ISO

    names = [s for s in SCRIPT_ISO if s not in ("Han",)]
    script = str(rng.choice(names))
    lik = _script_likelihood(script)
    if lik is None:
        return []
    return [Atom(f"script:{script}", "ocr", "script", f"2 letters in {script} script",
                 _conf(rng, 0.15, 0.45), value={"script": script}, likelihood=lik)]


def _hum_atoms(t: Truth, rng: np.random.Generator, cfg: SimConfig) -> list[Atom]:
    from avgeo.perception.audio.grid_frequency import grid_hz, japan_grid_hz
    from avgeo.perception.audio.hum import grid_likelihood

    hz = grid_hz(t.country) if t.country else None
    if hz is None:
        return []
    if hz == "both":
        hz = int(japan_grid_hz(t.lat, t.lon)) if t.country == "JP" else int(rng.choice([50, 60]))
    if rng.random() < cfg.p_hum_wrong:
        hz = 110 - int(hz)
    c = _conf(rng, 0.3, 1.0)
    return [Atom(f"mains_hum_{hz}hz", "hum", "mains_hum", f"{hz} Hz mains hum", c,
                 start_s=0.0, end_s=float(rng.uniform(5, 120)), likelihood=grid_likelihood(
                     int(hz), c), group="mains_hum")]


@lru_cache(maxsize=1)
def _all_species() -> tuple[str, ...]:
    from avgeo.perception.audio import species_range as sr

    return tuple(sr.labels())


def _species_atoms(t: Truth, rng: np.random.Generator, cfg: SimConfig) -> list[Atom]:
    from avgeo.perception.audio import species_range as sr

    exp = sr.expected_species(t.lat, t.lon, sr.YEAR_ROUND)
    chosen: list[str] = []
    if exp:
        labels = [lab for lab, _ in exp]
        occ = np.array([o for _, o in exp])
        k = int(min(len(labels), rng.integers(1, cfg.max_species + 1)))
        chosen = [labels[i] for i in rng.choice(len(labels), size=k, replace=False,
                                                p=occ / occ.sum())]
    if rng.random() < cfg.p_spurious_species:
        chosen.append(str(rng.choice(_all_species())))
    out: list[Atom] = []
    for lab in chosen:
        sci, common = sr.split_label(lab)
        lik = _species_lik(lab)
        for w in range(int(rng.integers(1, 5))):
            start = float(3 * rng.integers(0, 20))
            out.append(Atom(common, "birdnet", "species",
                            f"{common} ({sci}) heard at {start:.0f}–{start + 3:.0f} s",
                            _conf(rng, 0.1, 0.95), start_s=start, end_s=start + 3.0,
                            value={"scientific_name": sci, "window": w}, likelihood=lik,
                            group=f"species:{sci}"))
    return out


def _time_zone_atom(t: Truth, rng: np.random.Generator) -> list[Atom]:
    from avgeo.perception.meta.timezone import band_for_offset

    # Political time zones stray from solar time: an hour of noise now and then.
    off_h = round(t.lon / 15.0 + rng.choice([0, 0, 0, 1, -1]))
    band = band_for_offset(off_h * 60)
    return [Atom(f"utc_offset:{off_h:+d}h", "meta", "time_zone",
                 f"capture time offset UTC{off_h:+d}:00", _conf(rng, 0.6, 1.0),
                 likelihood=band)]


def simulate_atoms(t: Truth, media_kind: str, rng: np.random.Generator,
                   cfg: SimConfig = SimConfig()) -> list[Atom]:
    """Atoms the engines might report for a file of `media_kind` captured at `t`."""
    atoms: list[Atom] = []
    visual = media_kind in ("photo", "video")
    audible = media_kind in ("audio", "video")
    if visual and rng.random() < cfg.p_text:
        atoms += _text_atoms(t, rng, cfg)
    if visual and rng.random() < cfg.p_spurious_script:
        atoms += _spurious_script(rng)
    if audible and rng.random() < cfg.p_hum:
        atoms += _hum_atoms(t, rng, cfg)
    if audible and rng.random() < cfg.p_species:
        atoms += _species_atoms(t, rng, cfg)
    if audible and rng.random() < cfg.p_speech:
        s = float(rng.uniform(0, 20))
        atoms.append(Atom("speech", "speech", "speech", "speech (simulated)",
                          _conf(rng, 0.5, 0.95), start_s=s, end_s=s + float(rng.uniform(1, 10)),
                          group="speech"))
    if rng.random() < cfg.p_time_zone:
        atoms += _time_zone_atom(t, rng)
    return atoms


def simulate(n: int, seed: int = 0, cfg: SimConfig = SimConfig()) -> list[Example]:
    """n located examples on land with simulated atoms (deterministic per seed)."""
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
