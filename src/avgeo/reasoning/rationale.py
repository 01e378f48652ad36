"""Explain a fused answer: each atom group's contribution to the chosen country (log-odds
against the runner-up), short sentences citing the evidence, and exact counterfactuals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avgeo.geo.sphere import haversine_km
from avgeo.reasoning.fusion import FusionResult, Posterior


@dataclass
class Contribution:
    key: str
    engine: str
    evidence: str
    log_odds: float  # positive: supports the chosen country over the alternative


@dataclass
class Counterfactual:
    removed: str
    evidence: str
    country: str
    country_probability: float
    lat: float
    lon: float
    moved_km: float
    top_probability_before: float


def _country_sets(post: Posterior) -> np.ndarray:
    from avgeo.geo.regions import cell_countries

    return np.asarray(cell_countries(post.grid)).astype(str)


def top_two_countries(post: Posterior) -> tuple[str, str | None]:
    codes = _country_sets(post)
    uniq, inv = np.unique(codes, return_inverse=True)
    mass = np.bincount(inv, weights=post.prob, minlength=len(uniq))
    order = [i for i in np.argsort(-mass) if uniq[i]]
    if not order:
        return "", None
    return str(uniq[order[0]]), (str(uniq[order[1]]) if len(order) > 1 else None)


def _cond_mean(values: np.ndarray, prob: np.ndarray, mask: np.ndarray) -> float:
    w = prob[mask]
    s = w.sum()
    if s <= 0 or not mask.any():
        return float(np.mean(values[mask])) if mask.any() else 0.0
    return float(np.dot(values[mask], w) / s)


def contributions(result: FusionResult) -> tuple[list[Contribution], float, str, str | None]:
    """Per-group log-odds contribution, the prior's, and the countries compared.

    For region sets A (chosen country) and B (runner-up, or the rest of the world),
    contribution_g = E[m_g | A] − E[m_g | B] under the posterior: the average amount by which
    atom group g tilts A over B. Summed with the prior's term it approximates log P(A)/P(B).
    """
    post = result.coarse
    codes = _country_sets(post)
    top, second = top_two_countries(post)
    a = codes == top
    b = codes == second if second else ~a
    out = []
    for g in post.groups:
        m = post.group_maps[g.key]
        lo = _cond_mean(m, post.prob, a) - _cond_mean(m, post.prob, b)
        out.append(Contribution(g.key, g.engine, g.best.evidence, lo))
    prior_lo = _cond_mean(post.log_prior, post.prob, a) - _cond_mean(post.log_prior, post.prob, b)
    out.sort(key=lambda c: -abs(c.log_odds))
    return out, prior_lo, top, second


def _local_mode(post: Posterior) -> tuple[float, float]:
    i = int(np.argmax(post.log_prob - np.log(post.grid.area_km2)))
    return float(post.grid.lat[i]), float(post.grid.lon[i])


def counterfactuals(result: FusionResult, keys: list[str], evidence: dict[str, str],
                    point: tuple[float, float]) -> list[Counterfactual]:
    """The answer recomputed exactly with each listed atom group removed."""
    from avgeo.geo.regions import cell_countries

    post = result.coarse
    codes = np.asarray(cell_countries(post.grid)).astype(str)
    top, _ = top_two_countries(post)
    p_top = float(post.prob[codes == top].sum()) if top else 0.0
    out = []
    for k in keys:
        alt = post.without({k})
        c, _ = top_two_countries(alt)
        lat, lon = _local_mode(alt)
        out.append(Counterfactual(
            removed=k, evidence=evidence.get(k, k), country=c,
            country_probability=float(alt.prob[codes == c].sum()) if c else 0.0,
            lat=lat, lon=lon, moved_km=float(haversine_km(point[0], point[1], lat, lon)),
            top_probability_before=p_top))
    return out


def sentences(contribs: list[Contribution], prior_lo: float, prior_name: str, top_name: str,
              alt_name: str | None, limit: int = 6) -> list[str]:
    vs = f"over {alt_name}" if alt_name else "over the rest of the world"
    out = []
    for c in contribs[:limit]:
        if abs(c.log_odds) < 0.05:
            continue
        verb = "supports" if c.log_odds > 0 else "argues against"
        out.append(f"{c.evidence} — {verb} {top_name} {vs} ({c.log_odds:+.1f} log-odds).")
    if abs(prior_lo) >= 0.05:
        what = {"photo": "where photos are usually taken",
                "population": "where people live",
                "uniform": "land area"}.get(prior_name, prior_name)
        verb = "favours" if prior_lo > 0 else "disfavours"
        out.append(f"Prior ({what}) {verb} {top_name} {vs} ({prior_lo:+.1f} log-odds).")
    if not contribs:
        out.append("No geographic evidence was found in the file; the answer is the prior "
                   f"({prior_name}) alone.")
    return out
