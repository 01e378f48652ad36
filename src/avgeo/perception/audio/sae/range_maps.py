"""Data-free geographic maps for acoustic atoms: the species-range mixture of the detector
labels an atom co-activates with, conditioned on what BirdNET already detected in the file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np

from avgeo.reasoning.likelihood import CellLikelihood

#: Occurrence floor of an atom map (5× the species maps' 0.01): an atom is indirect
#: evidence, so one atom can move a cell by at most TEMPER · log((1 + ε) / ε) ≈ 1.5 nats
#: before fusion's confidence tempering, against ≈ 4.6 for a direct species detection.
DEFAULT_EPS = 0.05
#: Exponent on the mixture likelihood (a power posterior): atoms are correlated with one
#: another and with the species atoms, so each counts as half an observation.
DEFAULT_TEMPER = 0.5
#: Below this share of an atom's label mass on undetected species the map is so flat that
#: it is left out altogether.
MIN_SHARE = 0.2
ENV_SWITCH = "AVGEO_SAE_RANGE_MAPS"


def enabled(options: dict[str, Any], default: bool = True) -> bool:
    """`sae_range_maps` from the engine options, else $AVGEO_SAE_RANGE_MAPS (0/1), else
    `default`."""
    v = options.get("sae_range_maps")
    if v is None:
        v = os.environ.get(ENV_SWITCH)
    if v is None or v == "":
        return default
    if isinstance(v, str):
        return v.strip().lower() not in {"0", "false", "no", "off"}
    return bool(v)


def _species_labels(labels: Iterable[dict[str, Any]]) -> list[tuple[str, float, int | None]]:
    """(label, share, BirdNET species index or None for sound events / unknown labels)."""
    from avgeo.perception.audio import species_range as sr
    from avgeo.perception.audio.birdnet import SOUND_EVENT_LABELS

    index = sr.label_index()
    out = []
    for lab in labels:
        name, share = str(lab["label"]), float(lab["share"])
        idx = None if name in SOUND_EVENT_LABELS else index.get(name.lower())
        out.append((name, share, idx))
    return out


def detected_share(labels: Iterable[dict[str, Any]], detected: Iterable[str]) -> float:
    """Share of an atom's label mass on species BirdNET detected directly in this file."""
    det = set(detected)
    return float(sum(float(lab["share"]) for lab in labels if str(lab["label"]) in det))


def mixture_loglik(labels: list[dict[str, Any]], detected: Iterable[str], week: int,
                   res: int, eps: float = DEFAULT_EPS, temper: float = DEFAULT_TEMPER,
                   min_share: float = MIN_SHARE) -> tuple[np.ndarray, dict[str, Any]] | None:
    """τ·log(ε + m(x)) on every cell of `global_grid(res)`, or None when the atom names too
    little undetected-species mass to say anything.

    The chance that the atom fires at x is modelled as the share-weighted mixture of its
    labels' occurrences, m(x) = Σ_s p_s·occ_s(x) + Σ_{s detected} p_s + p_rest·ō:
    a species BirdNET already detected in this file is known to be present, so its share
    is a constant (its range is counted once, by its own species atom, never again here);
    sound-event labels and the unnamed tail of the label mass are as likely anywhere as the
    named species are on average (ō, their area-weighted global mean occurrence)."""
    from avgeo.perception.audio import species_range as sr

    det = set(detected)
    rows = _species_labels(labels)
    kept = [(name, p, i) for name, p, i in rows if i is not None and name not in det and p > 0]
    p_kept = sum(p for _, p, _ in kept)
    if p_kept < min_share:
        return None
    p_det = sum(p for name, p, _ in rows if name in det)
    p_rest = max(0.0, 1.0 - p_kept - p_det)
    table = sr.range_table(week, res)
    grid = table.grid
    mix = np.zeros(len(grid))
    for _, p, i in kept:
        mix += p * table.dense(int(i))
    area = grid.area_km2
    o_bar = float(np.dot(mix, area) / area.sum()) / p_kept
    m = mix + p_det + p_rest * o_bar
    logl = temper * np.log(eps + m)
    dominant = max(kept, key=lambda r: r[1])[0]
    meta = {"species": [name for name, _, _ in kept], "shares": [p for _, p, _ in kept],
            "undetected_share": p_kept, "detected_share": p_det, "week": week,
            "eps": eps, "temper": temper, "dominant": dominant,
            "range_nats": float(logl.max() - logl.min())}
    return logl, meta


@lru_cache(maxsize=4096)
def _cached(labels: tuple[tuple[str, float], ...], detected: frozenset[str], week: int,
            res: int, eps: float, temper: float, min_share: float, name: str):
    from avgeo.geo.grid import global_grid
    from avgeo.perception.audio.species_range import SpeciesRange

    out = mixture_loglik([{"label": lab, "share": s} for lab, s in labels], detected, week,
                         res, eps, temper, min_share)
    if out is None:
        return None
    logl, meta = out
    return SpeciesRange(res=res, cells=global_grid(res).cells, logl=logl,
                        default=float(logl.min()), label=f"species-range mixture of {name}",
                        meta=meta)


def range_likelihood(atom: dict[str, Any], detected: Iterable[str], week: int,
                     res: int | None = None, eps: float = DEFAULT_EPS,
                     temper: float = DEFAULT_TEMPER, min_share: float = MIN_SHARE):
    """The atom's species-range mixture map (a SpeciesRange on the coarse range grid,
    memoised per atom, week and detected subset), or None."""
    from avgeo.perception.audio import species_range as sr

    labels = tuple((str(lab["label"]), float(lab["share"])) for lab in atom.get("labels") or [])
    if not labels:
        return None
    det = frozenset(lab for lab, _ in labels if lab in set(detected))
    name = f"acoustic atom {atom.get('index')}: {atom.get('name', '')}".rstrip(": ")
    return _cached(labels, det, int(week), int(res or sr.DEFAULT_RES), float(eps),
                   float(temper), float(min_share), name)


def located_likelihood(atom: dict[str, Any], detected: Iterable[str],
                       min_share: float = MIN_SHARE) -> CellLikelihood | None:
    """The atom's map learned from located training windows (naming.geo_concentration),
    scaled by the share of its label mass not already detected in this file (the detected
    species' own atoms carry that part), or None."""
    from avgeo.perception.audio.sae.naming import atom_likelihood

    lik = atom_likelihood(atom)
    if lik is None:
        return None
    keep = 1.0 - detected_share(atom.get("labels") or [], detected)
    if keep < min_share:
        return None
    if keep < 1.0:
        lik = CellLikelihood(res=lik.res, cells=lik.cells, logl=np.asarray(lik.logl) * keep,
                             default=lik.default * keep, label=lik.label,
                             meta={**lik.meta, "detected_share": 1.0 - keep})
    return lik
