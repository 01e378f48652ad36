"""Explain a fused answer: each atom group's contribution to the chosen country (log-odds
against the runner-up), short sentences citing the evidence, and exact counterfactuals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avgeo.geo.sphere import haversine_km
from avgeo.reasoning.chain import masses
from avgeo.reasoning.fusion import AtomGroup, Support


@dataclass
class Contribution:
    key: str
    engine: str
    evidence: str
    log_odds: float  # chosen country vs runner-up (positive: supports the choice)
    log_odds_world: float  # chosen country vs everywhere else


@dataclass
class Counterfactual:
    removed: str
    evidence: str
    country: str
    country_probability: float
    lat: float
    lon: float
    moved_km: float


def top_two(countries: np.ndarray, prob: np.ndarray) -> tuple[str, str | None]:
    m = sorted(((v, k) for k, v in masses(countries, prob).items() if k), reverse=True)
    if not m:
        return "", None
    return m[0][1], (m[1][1] if len(m) > 1 else None)


def _cond_mean(values: np.ndarray, prob: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        return 0.0
    w = prob[mask]
    s = w.sum()
    if s <= 0:
        return float(np.mean(values[mask]))
    return float(np.dot(values[mask], w) / s)


def contributions(support: Support, countries: np.ndarray, groups: list[AtomGroup]
                  ) -> tuple[list[Contribution], float, str, str | None]:
    """Per-group log-odds contribution, the prior's, and the countries compared.

    For region sets A (chosen country) and B (runner-up), contribution_g =
    E[m_g | A] − E[m_g | B] under the posterior: the average amount by which atom group g
    tilts A over B. With the prior's term these approximate log P(A)/P(B).
    """
    prob = support.prob
    top, second = top_two(countries, prob)
    a = countries == top
    b = countries == second if second else ~a
    rest = ~a
    out = []
    for g in groups:
        m = support.group_maps[g.key]
        lo = _cond_mean(m, prob, a) - _cond_mean(m, prob, b)
        lw = _cond_mean(m, prob, a) - _cond_mean(m, prob, rest)
        out.append(Contribution(g.key, g.engine, g.best.evidence, lo, lw))
    prior_lo = (_cond_mean(support.log_prior, prob, a)
                - _cond_mean(support.log_prior, prob, b))
    out.sort(key=lambda c: -(abs(c.log_odds) + 1e-3 * abs(c.log_odds_world)))
    return out, prior_lo, top, second


def _mode(support: Support) -> tuple[float, float]:
    i = int(np.argmax(support.log_prob - np.log(support.area_km2)))
    return float(support.lat[i]), float(support.lon[i])


def counterfactuals(support: Support, countries: np.ndarray, keys: list[str],
                    evidence: dict[str, str], point: tuple[float, float]
                    ) -> list[Counterfactual]:
    """The answer recomputed exactly with each listed atom group removed."""
    out = []
    for k in keys:
        alt = support.without({k})
        p = alt.prob
        c, _ = top_two(countries, p)
        lat, lon = _mode(alt)
        out.append(Counterfactual(
            removed=k, evidence=evidence.get(k, k), country=c,
            country_probability=float(p[countries == c].sum()) if c else 0.0,
            lat=lat, lon=lon, moved_km=float(haversine_km(point[0], point[1], lat, lon))))
    return out


def sentences(contribs: list[Contribution], prior_lo: float, prior_name: str, top_name: str,
              alt_name: str | None, limit: int = 6) -> list[str]:
    vs = f"over {alt_name}" if alt_name else "over the rest of the world"
    out = []
    for c in contribs[:limit]:
        if abs(c.log_odds) >= 0.05:
            verb = "supports" if c.log_odds > 0 else "argues against"
            out.append(f"{c.evidence} — {verb} {top_name} {vs} ({c.log_odds:+.1f} log-odds).")
        elif abs(c.log_odds_world) >= 0.05:
            verb = "supports" if c.log_odds_world > 0 else "argues against"
            alike = f"; {top_name} and {alt_name} alike" if alt_name else ""
            out.append(f"{c.evidence} — {verb} {top_name} over the rest of the world "
                       f"({c.log_odds_world:+.1f} log-odds{alike}).")
    if abs(prior_lo) >= 0.05:
        what = {"photo": "where photos are usually taken",
                "population": "where people live",
                "flow": "flow-matching density of where photos are taken",
                "uniform": "land area"}.get(prior_name, prior_name)
        verb = "favours" if prior_lo > 0 else "disfavours"
        out.append(f"Prior ({what}) {verb} {top_name} {vs} ({prior_lo:+.1f} log-odds).")
    if not contribs:
        out.append("No geographic evidence was found in the file; the answer is the prior "
                   f"({prior_name}) alone.")
    return out
