"""The `sae` perception engine: BirdNET window embeddings → learned acoustic atoms (SAE latents
active in the file), each with its time spans, its name and, when trained on located data,
its geographic concentration."""

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


def codes_to_atoms(sae: LoadedSae, start_s: np.ndarray, end_s: np.ndarray, idx: np.ndarray,
                   vals: np.ndarray, max_atoms: int = 12, engine: str = "sae") -> list[Atom]:
    """One atom per (latent, contiguous span), pooled per latent (`group`); the `max_atoms`
    latents with the most total activation in the file are kept."""
    from avgeo.perception.audio.sae.naming import atom_likelihood

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
        lik = atom_likelihood(meta)
        hit = np.flatnonzero(((idx == j) & (vals > 0)).any(axis=1))
        order = hit[np.argsort(start_s[hit])]
        act = np.array([vals[w][idx[w] == j].sum() for w in order])
        for a, b in _spans(start_s[order], end_s[order]):
            inside = (start_s[order] >= a) & (start_s[order] < b)
            strength = float(act[inside].mean())
            conf = float(np.clip(strength / (2.0 * typical), 0.05, 1.0)) if typical > 0 else 0.5
            labels = ", ".join(f"{lab['label'].split('_', 1)[-1]} {lab['share']:.0%}"
                               for lab in meta.get("labels", [])[:3])
            where = " (has a learned geographic concentration)" if lik is not None else ""
            atoms.append(Atom(
                name=f"atom {j}: {meta.get('name', '')}".rstrip(": "), engine=engine,
                kind="acoustic_atom",
                evidence=f"acoustic atom {j} '{meta.get('name', '')}' active {a:.1f}–{b:.1f} s, "
                         f"strength {strength:.2f} (typical {typical:.2f})"
                         + (f"; co-occurs with {labels}" if labels else "") + where,
                confidence=conf, start_s=a, end_s=b,
                value={"latent": j, "activation": strength, "typical_activation": typical,
                       "labels": meta.get("labels", []), "purity": meta.get("purity"),
                       "weights": str(sae.path.name)},
                likelihood=lik, group=f"sae:{j}"))
    return atoms


@register("sae")
class SaeEngine:
    """Learned acoustic atoms (sparse autoencoder over BirdNET embeddings).

    Options (ctx.options): sae_weights (path; default the shipped checkpoint), sae_max_atoms
    (12), birdnet_embeddings ((start_s, vectors) already computed by BirdNET for this media,
    to avoid a second pass), birdnet_overlap_s (0).
    """

    name: ClassVar[str] = "sae"
    media_kinds: ClassVar[tuple[str, ...]] = ("audio", "video")

    def __init__(self, weights: str | Path | None = None, max_atoms: int = 12) -> None:
        self.weights = weights
        self.max_atoms = max_atoms

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
        return codes_to_atoms(sae, start_s, start_s + birdnet.WINDOW_S, idx, vals,
                              max_atoms=int(opts.get("sae_max_atoms", self.max_atoms)))
