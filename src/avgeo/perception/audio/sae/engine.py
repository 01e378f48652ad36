"""The `sae` perception engine: BirdNET window embeddings → learned acoustic atoms (SAE latents
active in the file), each with its time spans, its name and a geographic map (learned from
located data when the checkpoint has it, else its labels' species-range mixture)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from avgeo.atoms import Atom
from avgeo.errors import WeightsError
from avgeo.perception.base import EngineContext, register

if TYPE_CHECKING:
    from avgeo.media import Media
    from avgeo.perception.audio.sae.train import LoadedSae

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "sae_birdnet_v1.pt"


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> LoadedSae:
    from avgeo.perception.audio.sae.train import load_checkpoint

    return load_checkpoint(path)


def load_weights(path: str | Path | None = None) -> LoadedSae:
    p = Path(path) if path else DEFAULT_WEIGHTS
    if not p.is_file():
        raise WeightsError(f"SAE weights not found: {p}")
    return _load(str(p.resolve()), p.stat().st_mtime)


def _spans(starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in zip(starts, ends, strict=True):
        if out and a <= out[-1][1] + 0.5:
            out[-1] = (out[-1][0], float(b))
        else:
            out.append((float(a), float(b)))
    return out


def encode_windows(sae: LoadedSae, start_s: np.ndarray, emb: np.ndarray,
                   max_gap_s: float = 3.5) -> tuple[np.ndarray, np.ndarray]:
    """Sparse codes (idx (n, k), vals (n, k)) of one file's windows, in time order."""
    order = np.argsort(start_s)
    start_s, emb = start_s[order], emb[order]
    prev = np.zeros_like(emb)
    prev[1:] = emb[:-1]
    dt = np.diff(start_s, prepend=-np.inf)
    has = (dt > 0) & (dt <= max_gap_s)
    with torch.no_grad():
        idx, vals = sae.model.encode(torch.from_numpy(np.ascontiguousarray(emb, np.float32)),
                                     torch.from_numpy(prev.astype(np.float32)),
                                     torch.from_numpy(has))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return idx.numpy()[inv], vals.numpy()[inv]


def atom_map(meta: dict[str, Any], detected: frozenset[str], week: int,
             range_maps: bool = True, **range_kw: Any) -> tuple[Any, str, str]:
    """(likelihood or None, pooling group, how the map was made) for one latent.

    A map learned on located windows wins; otherwise, when `range_maps`, the species-range
    mixture of the latent's labels minus those BirdNET detected directly in this file
    (their evidence is already in fusion through their own species atoms). Latents whose
    mixture is led by the same species pool into one group, so several latents that all
    mean "this species" count roughly once."""
    from avgeo.perception.audio.sae import range_maps as rm

    j = int(meta.get("index", -1))
    lik = rm.located_likelihood(meta, detected)
    if lik is not None:
        return lik, f"sae:{j}", "located"
    if range_maps:
        lik = rm.range_likelihood(meta, detected, week, **range_kw)
        if lik is not None:
            return lik, f"sae:range:{lik.meta['dominant']}", "range"
    return None, f"sae:{j}", ""


def codes_to_atoms(sae: LoadedSae, start_s: np.ndarray, end_s: np.ndarray, idx: np.ndarray,
                   vals: np.ndarray, max_atoms: int = 12, engine: str = "sae",
                   detected: frozenset[str] | set[str] = frozenset(), week: int = 0,
                   range_maps: bool = True, **range_kw: Any) -> list[Atom]:
    """One atom per (latent, contiguous span); the `max_atoms` latents with the most total
    activation in the file are kept. `detected`: BirdNET species labels found directly in
    the same file; `week`: the species-range week (0 = year-round)."""
    det = frozenset(detected)

    info = {int(a["index"]): a for a in sae.atoms}
    total: dict[int, float] = {}
    for row_i, row_v in zip(idx, vals, strict=True):
        for j, a in zip(row_i, row_v, strict=True):
            if a > 0:
                total[int(j)] = total.get(int(j), 0.0) + float(a)
    keep = sorted(total, key=lambda j: -total[j])[:max_atoms]
    atoms: list[Atom] = []
    for j in keep:
        meta: dict[str, Any] = info.get(j, {"index": j, "name": f"atom {j}"})
        typical = float(meta.get("mean_act") or 0.0)
        lik, group, how = atom_map(meta, det, week, range_maps, **range_kw)
        hit = np.flatnonzero(((idx == j) & (vals > 0)).any(axis=1))
        order = hit[np.argsort(start_s[hit])]
        act = np.array([vals[w][idx[w] == j].sum() for w in order])
        for a, b in _spans(start_s[order], end_s[order]):
            inside = (start_s[order] >= a) & (start_s[order] < b)
            strength = float(act[inside].mean())
            conf = float(np.clip(strength / (2.0 * typical), 0.05, 1.0)) if typical > 0 else 0.5
            labels = ", ".join(f"{lab['label'].split('_', 1)[-1]} {lab['share']:.0%}"
                               for lab in meta.get("labels", [])[:3])
            where = ""
            if how == "located":
                where = " (has a learned geographic concentration)"
            elif how == "range":
                names = ", ".join(n.split("_", 1)[-1] for n in lik.meta["species"])
                where = f" (mapped by the ranges of {names}, not detected directly here)"
            atoms.append(Atom(
                name=f"atom {j}: {meta.get('name', '')}".rstrip(": "), engine=engine,
                kind="acoustic_atom",
                evidence=f"acoustic atom {j} '{meta.get('name', '')}' active {a:.1f}–{b:.1f} s, "
                         f"strength {strength:.2f} (typical {typical:.2f})"
                         + (f"; co-occurs with {labels}" if labels else "") + where,
                confidence=conf, start_s=a, end_s=b,
                value={"latent": j, "activation": strength, "typical_activation": typical,
                       "labels": meta.get("labels", []), "purity": meta.get("purity"),
                       "weights": str(sae.path.name), "map": how or None},
                likelihood=lik, group=group))
    return atoms


@register("sae")
class SaeEngine:
    """Learned acoustic atoms (sparse autoencoder over BirdNET embeddings).

    Options (ctx.options): sae_weights (path; default the shipped checkpoint), sae_max_atoms
    (12), birdnet_embeddings ((start_s, vectors) already computed by BirdNET for this media,
    to avoid a second pass), birdnet_overlap_s (0), birdnet_species_detected (labels the
    birdnet engine found in this media; it sets this itself), sae_range_maps (True, or
    $AVGEO_SAE_RANGE_MAPS=0 to turn the species-range mixture maps off), birdnet_week.
    """

    name: ClassVar[str] = "sae"
    media_kinds: ClassVar[tuple[str, ...]] = ("audio", "video")

    def __init__(self, weights: str | Path | None = None, max_atoms: int = 12,
                 range_maps: bool = True) -> None:
        self.weights = weights
        self.max_atoms = max_atoms
        self.range_maps = range_maps

    def available(self) -> tuple[bool, str]:
        from avgeo.perception.audio.birdnet import BirdNetEngine

        ok, why = BirdNetEngine().available()
        if not ok:
            return False, f"the SAE reads BirdNET embeddings: {why}"
        p = Path(self.weights) if self.weights else DEFAULT_WEIGHTS
        if not p.is_file():
            return False, (f"SAE weights missing ({p}): train them with `avgeo train sae "
                           f"MANIFEST --out {p.name}` and pass sae_weights")
        return True, ""

    def atoms(self, media: Media, ctx: EngineContext) -> list[Atom]:
        from avgeo.perception.audio import birdnet

        if not getattr(media, "has_audio", True):
            return []
        opts = ctx.options
        sae = load_weights(opts.get("sae_weights") or self.weights)
        given = opts.get("birdnet_embeddings")
        if given is not None:
            start_s, emb = (np.asarray(given[0], np.float64), np.asarray(given[1], np.float32))
        else:
            start_s, emb = birdnet.embed(media, float(opts.get("birdnet_overlap_s", 0.0)))
        if emb.shape[0] == 0:
            return []
        if emb.shape[1] != sae.model.cfg.d_in:
            raise WeightsError(f"SAE expects {sae.model.cfg.d_in}-d embeddings, BirdNET gave "
                               f"{emb.shape[1]}")
        idx, vals = encode_windows(sae, start_s, emb)
        from avgeo.perception.audio.sae import range_maps as rm

        return codes_to_atoms(sae, start_s, start_s + birdnet.WINDOW_S, idx, vals,
                              max_atoms=int(opts.get("sae_max_atoms", self.max_atoms)),
                              detected=frozenset(opts.get("birdnet_species_detected") or ()),
                              week=birdnet.week_from_ctx(ctx),
                              range_maps=rm.enabled(opts, self.range_maps))
