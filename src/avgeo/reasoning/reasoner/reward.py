"""The GRPO reward: a distance part piecewise linear in great-circle error, a hierarchical
part (continent / country / admin-1 / city matches against the truth's chain of region)
and a format part; malformed completions earn 0."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from avgeo.geo.sphere import haversine_km
from avgeo.reasoning.reasoner.parse import ParsedAnswer, parse_completion


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the reward's parts and the distance curve's breakpoints (km → value)."""

    w_distance: float = 0.5
    w_continent: float = 0.1
    w_country: float = 0.15
    w_admin1: float = 0.1
    w_city: float = 0.05
    w_format: float = 0.1
    breakpoints_km: tuple[float, ...] = (0.0, 750.0, 3000.0, 20000.0)
    breakpoint_values: tuple[float, ...] = (1.0, 0.5, 0.2, 0.0)
    #: A finer level scores only when the coarser ones match too (same-named cities).
    nested: bool = True

    @property
    def total(self) -> float:
        return (self.w_distance + self.w_continent + self.w_country + self.w_admin1
                + self.w_city + self.w_format)


@dataclass(frozen=True)
class Truth:
    """Where a training example was captured, with its chain of region ('' unknown)."""

    lat: float
    lon: float
    continent: str = ""
    country: str = ""
    admin1: str = ""
    city: str = ""


@dataclass
class RewardParts:
    total: float
    distance: float = 0.0
    hierarchy: float = 0.0
    format: float = 0.0
    error_km: float = float("nan")
    hits: dict[str, bool] = field(default_factory=dict)


def distance_score(error_km) -> np.ndarray:
    """1 at 0 km, 0.5 at 750 km, 0.2 at 3000 km, 0 at 20000 km and beyond; linear between."""
    cfg = RewardConfig()
    return _distance(np.asarray(error_km, dtype=np.float64), cfg)


def _distance(err: np.ndarray, cfg: RewardConfig) -> np.ndarray:
    return np.interp(np.maximum(err, 0.0), cfg.breakpoints_km, cfg.breakpoint_values,
                     right=cfg.breakpoint_values[-1])


def fold_name(s: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a region name."""
    s = unicodedata.normalize("NFKD", s or "")
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in s).split())


def truth_of(lat: float, lon: float) -> Truth:
    """The truth's labels from `avgeo.geo.regions.chain_of_region`."""
    return truths_of([lat], [lon])[0]


def truths_of(lat: Sequence[float], lon: Sequence[float]) -> list[Truth]:
    from avgeo.geo.regions import chain_of_region

    t = chain_of_region(np.asarray(lat, float), np.asarray(lon, float))
    return [Truth(float(a), float(b), str(r.continent_code or ""), str(r.country_code or ""),
                  str(r.admin1 or ""), str(r.city or ""))
            for a, b, r in zip(lat, lon, t.itertuples(index=False), strict=True)]


def score(parsed: ParsedAnswer | None, truth: Truth,
          cfg: RewardConfig = RewardConfig()) -> RewardParts:
    """Reward of one parsed answer (None = malformed → 0)."""
    if parsed is None:
        return RewardParts(0.0)
    err = float(haversine_km(parsed.lat, parsed.lon, truth.lat, truth.lon))
    d = float(_distance(np.asarray(err), cfg))
    hits: dict[str, bool] = {}
    hier = 0.0
    ok = True
    for level, w, p, t in (("continent", cfg.w_continent, parsed.continent, truth.continent),
                           ("country", cfg.w_country, parsed.country, truth.country),
                           ("admin1", cfg.w_admin1, fold_name(parsed.admin1),
                            fold_name(truth.admin1)),
                           ("city", cfg.w_city, fold_name(parsed.city), fold_name(truth.city))):
        hit = bool(p) and bool(t) and p.upper() == t.upper()
        if cfg.nested:
            ok = ok and hit
            hit = ok
        hits[level] = hit
        hier += w * hit
    fmt = cfg.w_format
    return RewardParts(cfg.w_distance * d + hier + fmt, cfg.w_distance * d, hier, fmt, err,
                       hits)


def reward(completion: str, truth: Truth, cfg: RewardConfig = RewardConfig()) -> float:
    """Total reward of one completion text."""
    return score(parse_completion(completion), truth, cfg).total


def make_reward_func(cfg: RewardConfig = RewardConfig()):
    """A reward function in TRL's form: (prompts, completions, **dataset columns) → floats.

    The dataset carries the truth in columns true_lat, true_lon, true_continent,
    true_country, true_admin1, true_city."""

    def haversine_chain_reward(prompts=None, completions=None, **kw) -> list[float]:
        out = []
        for i, c in enumerate(completions or []):
            text = c if isinstance(c, str) else c[-1]["content"]
            t = Truth(float(kw["true_lat"][i]), float(kw["true_lon"][i]),
                      kw.get("true_continent", [""] * (i + 1))[i] or "",
                      kw.get("true_country", [""] * (i + 1))[i] or "",
                      kw.get("true_admin1", [""] * (i + 1))[i] or "",
                      kw.get("true_city", [""] * (i + 1))[i] or "")
            out.append(reward(text, t, cfg))
        return out

    return haversine_chain_reward
