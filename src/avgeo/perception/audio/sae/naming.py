"""Atom naming: each SAE latent is named by the detector labels it co-activates with and,
where located windows exist, given a geographic concentration as a smoothed H3 CellLikelihood."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from avgeo.perception.audio.sae.model import TopKSAE
from avgeo.perception.audio.sae.train import EmbeddingSource, TrainConfig, with_prev
from avgeo.reasoning.likelihood import CellLikelihood


@dataclass
class Cooccurrence:
    """Streaming per-latent tallies over every window of a source."""

    n_latents: int
    n_windows: int = 0
    count: np.ndarray = field(default_factory=lambda: np.zeros(0))  # windows active
    act_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    label_score: list[Counter] = field(default_factory=list)  # Σ activation × confidence
    majority: list[Counter] = field(default_factory=list)  # window top label (or country)
    cell_act: list[Counter] = field(default_factory=list)  # Σ activation per H3 cell
    cell_windows: Counter = field(default_factory=Counter)  # located windows per cell
    n_located: int = 0

    def __post_init__(self) -> None:
        n = self.n_latents
        self.count = np.zeros(n)
        self.act_sum = np.zeros(n)
        self.label_score = [Counter() for _ in range(n)]
        self.majority = [Counter() for _ in range(n)]
        self.cell_act = [Counter() for _ in range(n)]


def _short(label: str) -> str:
    """BirdNET labels are 'Scientific name_Common name': keep the common name."""
    return label.split("_", 1)[1] if "_" in label else label


@torch.no_grad()
def collect(model: TopKSAE, source: EmbeddingSource, tcfg: TrainConfig | None = None,
            res: int = 2) -> Cooccurrence:
    """Encode every window (with its predecessor for AR models) and tally, per latent, the
    labels it co-occurs with and where its activations fall (H3 cells of `res`)."""
    from avgeo.geo.grid import points_to_cells

    tcfg = tcfg or TrainConfig()
    model.eval()
    co = Cooccurrence(model.cfg.n_latents)
    for ch, prev, has in with_prev(source.chunks(tcfg.chunk_rows), tcfg.max_gap_s):
        idx, vals = model.encode(torch.from_numpy(np.array(ch.emb)), torch.from_numpy(prev),
                                 torch.from_numpy(has))
        idx_np, val_np = idx.numpy(), vals.numpy()
        labels = ch.meta.get("labels")
        confs = ch.meta.get("label_conf")
        country = ch.meta.get("country")
        cells = None
        if "lat" in ch.meta and "lon" in ch.meta:
            lat = np.asarray(ch.meta["lat"], dtype=np.float64)
            lon = np.asarray(ch.meta["lon"], dtype=np.float64)
            ok = np.isfinite(lat) & np.isfinite(lon)
            if ok.any():
                cells = np.zeros(len(ch), dtype=np.uint64)
                cells[ok] = points_to_cells(lat[ok], lon[ok], res)
        for w in range(len(ch)):
            co.n_windows += 1
            labs = list(labels[w]) if labels is not None and labels[w] is not None else []
            cf = list(confs[w]) if confs is not None and confs[w] is not None else [1.0] * len(labs)
            top = labs[0] if labs else (country[w] if country is not None and country[w] else None)
            cell = int(cells[w]) if cells is not None and cells[w] else None
            if cell is not None:
                co.cell_windows[cell] += 1
                co.n_located += 1
            for j, a in zip(idx_np[w], val_np[w], strict=True):
                if a <= 0:
                    continue
                co.count[j] += 1
                co.act_sum[j] += a
                for lab, c in zip(labs, cf, strict=False):
                    co.label_score[j][lab] += float(a) * float(c)
                if top is not None:
                    co.majority[j][top] += 1
                if cell is not None:
                    co.cell_act[j][cell] += float(a)
    return co


def _smooth(hist: dict[int, float], ring_weight: float) -> dict[int, float]:
    """Spread each cell's mass onto its ring-1 neighbours (neighbour share `ring_weight`)."""
    import h3

    out: dict[int, float] = defaultdict(float)
    for c, v in hist.items():
        out[c] += v
        if ring_weight > 0:
            for nb in h3.grid_ring(h3.int_to_str(c), 1):
                out[h3.str_to_int(nb)] += ring_weight * v
    return out


def geo_concentration(co: Cooccurrence, j: int, res: int, min_located: int = 3,
                      prior_windows: float = 5.0, ring_weight: float = 0.5,
                      cap: float = 3.0) -> dict[str, Any] | None:
    """Activation rate of latent j per cell, shrunk towards its global rate:
    r(c) = (A_j(c) + α p̄_j) / (N(c) + α), A in units of the latent's mean activation. Cells
    without data keep p̄_j. Log rates relative to the best cell, floored at −cap (so a
    latent seen in few places cannot veto the rest of the globe)."""
    acts = co.cell_act[j]
    if co.count[j] == 0 or sum(1 for _ in acts) == 0:
        return None
    mean_act = co.act_sum[j] / co.count[j]
    located_hits = sum(acts.values()) / mean_act
    if located_hits < min_located or co.n_located == 0:
        return None
    a_s = _smooth({c: v / mean_act for c, v in acts.items()}, ring_weight)
    n_s = _smooth(dict(co.cell_windows), ring_weight)
    p_bar = located_hits / co.n_located
    cells = np.array(sorted(n_s), dtype=np.uint64)
    rate = np.array([(a_s.get(int(c), 0.0) + prior_windows * p_bar)
                     / (n_s[int(c)] + prior_windows) for c in cells])
    top = float(rate.max())
    logl = np.maximum(np.log(rate / top), -cap)
    default = max(float(np.log(p_bar / top)), -cap)
    return {"res": res, "cells": [int(c) for c in cells], "logl": [float(v) for v in logl],
            "default": default, "located_hits": float(located_hits)}


def name_atoms(co: Cooccurrence, res: int = 2, top_labels: int = 3,
               **geo_kw: Any) -> list[dict[str, Any]]:
    """One record per latent: name, top labels with shares, purity, firing rate and (when
    located data exists) its geographic concentration."""
    out = []
    for j in range(co.n_latents):
        scores = co.label_score[j]
        tot = sum(scores.values())
        labs = [(lab, v / tot) for lab, v in scores.most_common(top_labels)] if tot > 0 else []
        maj = co.majority[j]
        n_lab = sum(maj.values())
        majority, purity = (maj.most_common(1)[0][0], maj.most_common(1)[0][1] / n_lab) \
            if n_lab else (None, None)
        if labs:
            name = " / ".join(_short(lab) for lab, share in labs[:2] if share >= 0.2) \
                or _short(labs[0][0])
        elif majority is not None:
            name = f"{_short(majority)} soundscape"
        else:
            name = f"unlabelled atom {j}"
        out.append({
            "index": j, "name": name,
            "labels": [{"label": lab, "share": round(s, 4)} for lab, s in labs],
            "majority_label": majority, "purity": purity,
            "n_windows": int(co.count[j]),
            "fire_rate": float(co.count[j] / max(co.n_windows, 1)),
            "mean_act": float(co.act_sum[j] / co.count[j]) if co.count[j] else 0.0,
            "geo": geo_concentration(co, j, res, **geo_kw),
        })
    return out


def purity_summary(atoms: list[dict[str, Any]], min_windows: int = 3) -> dict[str, Any]:
    """Mean per-atom purity over atoms with ≥ min_windows labelled activations (plain and
    weighted by activation count)."""
    rows = [(a["purity"], a["n_windows"]) for a in atoms
            if a["purity"] is not None and a["n_windows"] >= min_windows]
    if not rows:
        return {"purity_mean": None, "purity_weighted": None, "n_atoms_scored": 0}
    p = np.array([r[0] for r in rows])
    w = np.array([r[1] for r in rows], dtype=float)
    return {"purity_mean": float(p.mean()), "purity_weighted": float((p * w).sum() / w.sum()),
            "n_atoms_scored": len(rows)}


def atom_likelihood(atom: dict[str, Any]) -> CellLikelihood | None:
    g = atom.get("geo")
    if not g:
        return None
    return CellLikelihood(res=int(g["res"]), cells=np.asarray(g["cells"], dtype=np.uint64),
                          logl=np.asarray(g["logl"], dtype=np.float64),
                          default=float(g["default"]), label=f"acoustic atom: {atom['name']}",
                          meta={"atom": int(atom["index"])})
