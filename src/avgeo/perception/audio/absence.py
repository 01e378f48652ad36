"""Absence evidence from a rich soundscape: regions whose commonest species all went unheard
are slightly less likely. Bounded, tempered, and zero unless the clip is long and rich."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from avgeo.perception.audio import species_range as sr

if TYPE_CHECKING:
    from avgeo.atoms import Atom
    from avgeo.perception.audio.birdnet import BirdNetResult

#: A region's "typical" species: its K commonest (occurrence ≥ THETA) at that cell and week.
#: A fixed K, not "every species above a threshold", because the meta model's richness is
#: an artefact of survey effort: it lists 30–50 species ≥ 0.5 around Seattle, Sydney or the
#: Sahara but 600+ at occurrence 1.0 in poorly surveyed tropical forest, and a penalty
#: summed over all of them would only say "that model is saturated there".
TYPICAL_K = 10
THETA = 0.5
#: Chance that BirdNET hears a given typical species in a full-effort clip. The true value
#: is unknown and varies by species (raptors, waterfowl and gulls are common in eBird but
#: rarely sing); 0.3 is deliberately low, so that a miss costs little.
D_MAX = 0.3
#: Bound on what the absence map can say between any two cells, in nats, before fusion's
#: engine weight (0.87 for birdnet in the shipped fusion_v2). Species atoms move cells by
#: ≈ 4.6 nats each, so one clip's absences can reorder neighbours but never exclude a
#: continent.
CAP_NATS = 1.0
#: The clip must be a soundscape that could have sampled the local community: effort
#: ramps from 0 at T_MIN to 1 at T_FULL seconds of analysed (non-silent, non-speech)
#: audio, times a ramp from N_MIN to N_FULL distinct confidently detected species.
T_MIN_S = 60.0
T_FULL_S = 300.0
N_MIN = 4
N_FULL = 8
CONFIDENT = 0.5
ENV_SWITCH = "AVGEO_BIRDNET_ABSENCE"
#: On by default, behind the effort gate. No shared clip passes the gate (the longest, 72 s,
#: has 3 confident species), so there it changes nothing. On 200 simulated clips per
#: setting (`benchmarks/audio.py --evidence`: random land cell as truth, species drawn from
#: its own community, the shipped birdnet weight 0.868) it raised the mean log-probability
#: of the true cell in every setting (4 heard: −5.135 → −5.125; 8 heard: −4.587 → −4.574;
#: 8 heard, 25 % false: −4.986 → −4.978) and cut the median error of the top cell in two of
#: three (1,915 → 1,768 km; 1,093 → 1,094; 1,585 → 1,433): small, as weak evidence should
#: be, and not a loss on the proper score. It helps the true cell in only 32–44 % of runs;
#: the gains are larger than the losses. Turn it off with birdnet_absence=False or
#: AVGEO_BIRDNET_ABSENCE=0.
DEFAULT_ON = True


def enabled(options: dict[str, Any], default: bool = DEFAULT_ON) -> bool:
    v = options.get("birdnet_absence")
    if v is None:
        v = os.environ.get(ENV_SWITCH)
    if v is None or v == "":
        return default
    if isinstance(v, str):
        return v.strip().lower() not in {"0", "false", "no", "off"}
    return bool(v)


# ---------------------------------------------------------------- effort of a clip

@dataclass(frozen=True)
class Effort:
    """How well a clip samples the local bird community."""

    soundscape_s: float  # analysed audio (union of non-silent, non-speech windows)
    n_confident: int  # distinct species with a detection ≥ CONFIDENT
    rho: float  # 0..1: 0 = says nothing about absences

    @property
    def detectability(self) -> float:
        return D_MAX * self.rho


def _ramp(v: float, lo: float, hi: float) -> float:
    if v < lo:
        return 0.0
    return float(min(1.0, (v - lo) / (hi - lo))) if hi > lo else 1.0


def union_seconds(start_s: np.ndarray, end_s: np.ndarray) -> float:
    """Length of the union of [start, end) intervals (overlapping windows count once)."""
    if len(start_s) == 0:
        return 0.0
    order = np.argsort(start_s)
    s, e = np.asarray(start_s, float)[order], np.asarray(end_s, float)[order]
    reach = np.maximum.accumulate(e)
    gaps = np.maximum(0.0, s[1:] - reach[:-1])
    return float(reach[-1] - s[0] - gaps.sum())


def clip_effort(result: BirdNetResult, sound_events: frozenset[str] | None = None) -> Effort:
    """Effort of one BirdNET pass: soundscape seconds and confident species count."""
    from avgeo.perception.audio.birdnet import SOUND_EVENT_LABELS

    events = SOUND_EVENT_LABELS if sound_events is None else sound_events
    emb = result.embeddings
    secs = union_seconds(emb.start_s, emb.end_s) if emb is not None else 0.0
    conf = {d.label for d in result.detections
            if d.label not in events and d.confidence >= CONFIDENT}
    n = len(conf)
    rho = _ramp(secs, T_MIN_S, T_FULL_S) * (_ramp(n, N_MIN - 1, N_FULL) if n >= N_MIN else 0.0)
    return Effort(secs, n, rho)


# ---------------------------------------------------------------- typical species per cell

@dataclass(eq=False)
class TypicalSets:
    """Per cell of `global_grid(res)`: its TYPICAL_K commonest species (occ ≥ THETA) as a
    CSR (ptr over cells; species, occurrence, weight). Species tied at the K-th value share
    the remaining slots (weight < 1), so a cell's weights sum to min(K, #species ≥ θ);
    `pad` fills the rest up to K with unknown species at occurrence θ, so a poorly known
    region cannot escape the penalty by having few known species."""

    res: int
    week: int
    ptr: np.ndarray
    species: np.ndarray
    occ: np.ndarray
    weight: np.ndarray
    pad: np.ndarray
    k: int
    theta: float

    @property
    def cell_of_entry(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.ptr) - 1), np.diff(self.ptr))


def build_typical(table: sr.RangeTable, k: int = TYPICAL_K, theta: float = THETA) -> TypicalSets:
    n_cells = len(table.grid)
    n_sp = len(table.ptr) - 1
    sp = np.repeat(np.arange(n_sp, dtype=np.int32), np.diff(table.ptr))
    q = table.occ_q
    q_min = int(np.ceil(255.0 * np.sqrt(theta)))
    keep = q >= q_min
    sp, cell, q = sp[keep], table.cell_pos[keep].astype(np.int64), q[keep].astype(np.int64)
    order = np.lexsort((-q, cell))
    sp, cell, q = sp[order], cell[order], q[order]
    counts = np.bincount(cell, minlength=n_cells)
    start = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    rank = np.arange(len(cell)) - start[cell]
    # The K-th largest quantised value of each cell (0 where it has fewer than K).
    kth = np.zeros(n_cells, dtype=np.int64)
    full = counts >= k
    kth[full] = q[start[:-1][full] + k - 1]
    above = np.bincount(cell, weights=(q > kth[cell]).astype(float), minlength=n_cells)
    tied = np.bincount(cell, weights=(q == kth[cell]).astype(float), minlength=n_cells)
    w = np.where(q > kth[cell], 1.0, 0.0)
    at = (q == kth[cell]) & full[cell]
    w[at] = ((k - above[cell[at]]) / np.maximum(tied[cell[at]], 1.0))
    w[~full[cell]] = 1.0  # fewer than K above θ: every one is typical
    sel = (w > 0) & ((rank < k) | at | ~full[cell])
    sp, cell, q, w = sp[sel], cell[sel], q[sel], w[sel]
    ptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=n_cells), out=ptr[1:])
    total = np.bincount(cell, weights=w, minlength=n_cells)
    occ = (q.astype(np.float64) / 255.0) ** 2
    return TypicalSets(res=table.res, week=table.week, ptr=ptr, species=sp, occ=occ,
                       weight=w, pad=np.maximum(0.0, k - total), k=k, theta=theta)


_TYPICAL: dict[tuple[int, int, int, float], TypicalSets] = {}
_LOCK = threading.Lock()


def typical_sets(week: int = sr.YEAR_ROUND, res: int = sr.DEFAULT_RES, k: int = TYPICAL_K,
                 theta: float = THETA) -> TypicalSets:
    """Memoised per process (≈ 0.3 s from a range table; the table itself is cached on disk)."""
    key = (week, res, k, theta)
    with _LOCK:
        t = _TYPICAL.get(key)
    if t is None:
        t = build_typical(sr.range_table(week, res), k, theta)
        with _LOCK:
            _TYPICAL[key] = t
    return t


# ---------------------------------------------------------------- the penalty map

def log_penalty(typ: TypicalSets, heard: set[int] | frozenset[int], d: float) -> np.ndarray:
    """K·log(1 − d) over each cell's typical slots that went unheard: the log chance that a
    clip in which every typical species is heard with probability d misses them all, so
    −d·(expected typical species unheard) to first order.

    Every typical slot counts the same, whatever its occurrence: the occurrence only decides
    which species are typical. Weighting by occurrence would favour places where the meta
    model is unsure of everything; this way a clip with nothing heard gives a flat map."""
    n_cells = len(typ.ptr) - 1
    if d <= 0:
        return np.zeros(n_cells)
    d = min(float(d), 0.999)
    is_heard = np.isin(typ.species, np.fromiter(heard, dtype=np.int64, count=len(heard)))
    heard_w = np.bincount(typ.cell_of_entry, weights=typ.weight * is_heard, minlength=n_cells)
    return (typ.k - heard_w) * np.log1p(-d)


def bounded(pen: np.ndarray, cap: float = CAP_NATS) -> np.ndarray:
    """Relative penalty squashed into (−cap, 0]: −cap·(1 − exp(rel / cap)); ≈ rel when
    small, never below −cap however many typical species went unheard."""
    if pen.size == 0:
        return pen
    rel = pen - pen.max()
    return -cap * (1.0 - np.exp(rel / cap))


def absence_loglik(result: BirdNetResult, week: int = sr.YEAR_ROUND, res: int = sr.DEFAULT_RES,
                   cap: float = CAP_NATS) -> tuple[np.ndarray, Effort] | None:
    """The bounded absence map on `global_grid(res)`, or None when the clip's effort is 0."""
    from avgeo.perception.audio.birdnet import SOUND_EVENT_LABELS

    eff = clip_effort(result)
    if eff.rho <= 0.0:
        return None
    heard = {d.index for d in result.detections if d.label not in SOUND_EVENT_LABELS}
    pen = log_penalty(typical_sets(week, res), heard, eff.detectability)
    return bounded(pen, cap), eff


def absence_atom(result: BirdNetResult, week: int = sr.YEAR_ROUND, res: int = sr.DEFAULT_RES,
                 cap: float = CAP_NATS, engine: str = "birdnet") -> Atom | None:
    """One atom carrying the absence map, or None (short, poor, silent or speech clips)."""
    from avgeo.atoms import Atom
    from avgeo.geo.grid import global_grid

    out = absence_loglik(result, week, res, cap)
    if out is None:
        return None
    logl, eff = out
    lik = sr.SpeciesRange(res=res, cells=global_grid(res).cells, logl=logl,
                          default=float(logl.min()),
                          label="absence of each region's typical species",
                          meta={"week": week, "typical_k": TYPICAL_K, "theta": THETA,
                                "detectability": eff.detectability, "cap_nats": cap,
                                "range_nats": float(logl.max() - logl.min())})
    when = "all year" if week == sr.YEAR_ROUND else f"week {week}/48"
    return Atom(
        name="typical species not heard", engine=engine, kind="species_absence",
        evidence=(f"a {eff.soundscape_s:.0f} s soundscape with {eff.n_confident} confidently "
                  f"heard species: places whose {TYPICAL_K} commonest species ({when}) all "
                  f"went unheard are less likely (assumed detectability "
                  f"{eff.detectability:.2f} per species, at most {cap:g} nats)"),
        confidence=1.0, value={"soundscape_s": eff.soundscape_s,
                               "n_confident_species": eff.n_confident, "effort": eff.rho,
                               "detectability": eff.detectability, "cap_nats": cap},
        likelihood=lik, group="absence:typical species")
