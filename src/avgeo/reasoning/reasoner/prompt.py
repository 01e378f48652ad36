"""Renders a file's atoms as the reasoner's text prompt (names, engines, times,
confidences, evidence and a compact likelihood description) and the target completion.

Output format (what `parse.py` accepts, nothing else)::

    <think>{free text without '<' or '>'}</think>
    continent: {C} | country: {CC} | admin1: {name} | city: {name} | {lat}, {lon}

where C is one of AF AN AS EU NA OC SA, CC an ISO 3166-1 alpha-2 code, and any level may
be '-' (not committed to); exactly one newline between `</think>` and the answer line;
lat in [-90, 90] and lon in [-180, 180] written with exactly three decimals; names free
of '|', '<', '>' and newlines; nothing after the line but whitespace. The think text
holds no '<' or '>'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from avgeo.atoms import Atom

PROMPT_HEADER = "avgeo reasoner v1"
ANSWER_CUE = "answer:\n"
UNKNOWN = "-"


@dataclass(frozen=True)
class PromptConfig:
    """Limits that keep prompts short enough for a small policy."""

    max_atoms: int = 10
    max_evidence_chars: int = 48
    max_countries: int = 4
    max_points: int = 3
    max_chars: int = 1400


def _num(x: float, nd: int = 1) -> str:
    return f"{x:.{nd}f}"


def _fmt_time(a: Atom) -> str:
    if a.start_s is None:
        return ""
    end = a.end_s if a.end_s is not None else a.start_s
    return f" t={a.start_s:.0f}-{end:.0f}s"


@lru_cache(maxsize=4096)
def _cells_summary(res: int, key: bytes, logl_key: bytes) -> str:
    """Core of a cell map: the likelihood-weighted centre of the cells within 1 nat of the
    best, and the radius holding them (km). Cached: species maps repeat across windows."""
    from avgeo.geo.grid import global_grid
    from avgeo.geo.sphere import haversine_km, spherical_mean

    cells = np.frombuffer(key, dtype=np.uint64)
    logl = np.frombuffer(logl_key, dtype=np.float64)
    if len(cells) == 0:
        return "cells none"
    core = logl >= logl.max() - 1.0
    grid = global_grid(res)
    pos = grid.index_of(cells[core])
    ok = pos >= 0
    if not ok.any():
        return f"cells res{res} n={len(cells)}"
    w = np.exp(logl[core][ok] - logl.max())
    pos = pos[ok]
    lat, lon, _ = spherical_mean(grid.lat[pos], grid.lon[pos], w)
    r = float(np.percentile(haversine_km(lat, lon, grid.lat[pos], grid.lon[pos]), 90))
    return f"range {_num(float(lat))},{_num(float(lon))} r{r:.0f}km n={int(core.sum())}"


def describe_likelihood(lik: Any, cfg: PromptConfig = PromptConfig()) -> str:
    """One short line saying where an atom's likelihood puts the capture."""
    if lik is None:
        return "none"
    d = lik.describe()
    kind = d.get("type")
    if kind == "point":
        return f"point {_num(d['lat'])},{_num(d['lon'])} ±{d['sigma_km']:.0f}km"
    if kind == "mixture":
        top = d.get("top", [])[: cfg.max_points]
        pts = " ".join(f"{_num(p['lat'])},{_num(p['lon'])}:{p['weight']:.1f}" for p in top)
        return f"points {pts}"
    if kind == "mains_grid":
        return f"mains {d['nominal_hz']}Hz grid countries"
    if kind == "countries":
        weights = getattr(lik, "weights", None)
        if weights:
            best_w = max(weights.values()) or 1.0
            n_top = sum(1 for v in weights.values() if v >= 0.5 * best_w)
            if n_top > 2 * cfg.max_countries:
                return f"countries broad n={n_top}"
        top = d.get("top", [])[: cfg.max_countries]
        best = max((t["weight"] for t in top), default=1.0) or 1.0
        return "countries " + " ".join(f"{t['code']}:{t['weight'] / best:.1f}" for t in top)
    if kind == "lon_band":
        return f"lon {_num(d['lon_min'], 0)}..{_num(d['lon_max'], 0)}"
    if kind == "cells" and hasattr(lik, "cells"):
        cells = np.ascontiguousarray(lik.cells, dtype=np.uint64)
        logl = np.ascontiguousarray(lik.logl, dtype=np.float64)
        return _cells_summary(int(lik.res), cells.tobytes(), logl.tobytes())
    return str(kind or type(lik).__name__)


def _clean(text: str, n: int) -> str:
    text = " ".join(str(text).replace("<", "(").replace(">", ")").replace("|", "/").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _pool(atoms: Sequence[Atom]) -> list[tuple[Atom, int, float | None, float | None]]:
    """Near-duplicates (one species in 40 windows) become one line: (best atom, count,
    first start, last end), strongest first."""
    by: dict[str, list[Atom]] = defaultdict(list)
    for a in atoms:
        by[f"{a.engine}:{a.pool_key}"].append(a)
    out = []
    for members in by.values():
        best = max(members, key=lambda a: a.confidence)
        starts = [a.start_s for a in members if a.start_s is not None]
        ends = [a.end_s if a.end_s is not None else a.start_s for a in members
                if a.start_s is not None]
        out.append((best, len(members), min(starts) if starts else None,
                    max(ends) if ends else None))
    # Atoms with geography first, then by confidence: the model sees the useful ones.
    out.sort(key=lambda t: (t[0].likelihood is None, -float(t[0].confidence)))
    return out


def render_prompt(atoms: Sequence[Atom], media_kind: str = "unknown",
                  cfg: PromptConfig = PromptConfig()) -> str:
    """The prompt text for one file's atoms; ends with the answer cue."""
    lines = [PROMPT_HEADER, f"media: {media_kind}"]
    pooled = _pool(atoms)
    if not pooled:
        lines.append("atoms: none")
    else:
        lines.append(f"atoms: {len(pooled)}")
    for best, n, t0, t1 in pooled[: cfg.max_atoms]:
        when = f" t={t0:.0f}-{t1:.0f}s" if t0 is not None and t1 is not None else ""
        rep = f" x{n}" if n > 1 else ""
        lines.append(
            f"- {_clean(best.name, 32)} [{best.engine}/{best.kind}] c={best.confidence:.2f}"
            f"{rep}{when} | {describe_likelihood(best.likelihood, cfg)} | "
            f"{_clean(best.evidence, cfg.max_evidence_chars)}")
    text = "\n".join(lines)
    if len(text) > cfg.max_chars:
        text = text[: cfg.max_chars]
    return text + "\n" + ANSWER_CUE


def render_prompt_within(atoms: Sequence[Atom], media_kind: str, cfg: PromptConfig,
                         n_tokens: Callable[[str], int], budget: int) -> str:
    """`render_prompt` with as many atom lines (strongest first) as fit in `budget` tokens:
    byte-level tokens of non-Latin evidence run to several per character, and a prompt
    past the policy's positions leaves it no room to answer."""
    prompt = render_prompt(atoms, media_kind, cfg)
    k = cfg.max_atoms
    while k > 0 and n_tokens(prompt) > budget:
        k -= 1
        prompt = render_prompt(atoms, media_kind, replace(cfg, max_atoms=k))
    return prompt


@dataclass(frozen=True)
class Answer:
    """A chain and a point, as the model writes them ('' means unknown)."""

    continent: str
    country: str
    admin1: str
    city: str
    lat: float
    lon: float


def _field(s: str) -> str:
    s = _clean(s, 40).strip()
    return s if s else UNKNOWN


def format_answer(ans: Answer) -> str:
    """The answer line, in the exact form the parser requires."""
    lat = float(np.clip(ans.lat, -90.0, 90.0))
    lon = float((ans.lon + 180.0) % 360.0 - 180.0)
    return (f"continent: {ans.continent or UNKNOWN} | country: {ans.country or UNKNOWN} | "
            f"admin1: {_field(ans.admin1)} | city: {_field(ans.city)} | "
            f"{lat:.3f}, {lon:.3f}")


def think_text(atoms: Sequence[Atom], ans: Answer, max_cues: int = 3) -> str:
    """A short rationale naming the strongest geographic cues and the chain they lead to."""
    cues = []
    for best, n, _, _ in _pool(atoms):
        if best.likelihood is None:
            continue
        label = best.name.split(":")[-1]
        cues.append(f"{best.kind} {_clean(label, 18)}" + (f" x{n}" if n > 1 else ""))
        if len(cues) >= max_cues:
            break
    lead = "; ".join(cues) if cues else "no geographic cues, prior only"
    return f"{lead}. so {ans.continent or UNKNOWN} {ans.country or UNKNOWN}"


def render_target(atoms: Sequence[Atom], ans: Answer) -> str:
    """The completion a supervised warm start teaches for these atoms."""
    return f"<think>{think_text(atoms, ans)}</think>\n{format_answer(ans)}"
