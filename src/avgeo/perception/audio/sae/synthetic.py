"""Synthetic embeddings with planted sparse codes (optionally scene-structured and persistent
across consecutive windows) for testing and benchmarking the SAEs against a known truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Planted:
    emb: np.ndarray  # float32 (n, d)
    file: np.ndarray  # object (n,): one "file" per sequence
    start_s: np.ndarray  # float64 (n,): 3 s hop
    atoms: np.ndarray  # (n_atoms, d) unit-norm planted dictionary
    codes_idx: np.ndarray  # (n, k) planted active atoms
    scene: np.ndarray  # (n,) scene of the window's sequence


def planted_sequences(n_seq: int, seq_len: int, d: int = 64, n_atoms: int = 128, k: int = 4,
                      scenes: int = 1, persist: float = 0.0, noise: float = 0.05,
                      seed: int = 0, atoms: np.ndarray | None = None,
                      background: float = 0.0) -> Planted:
    """`n_seq` sequences of `seq_len` windows. Each sequence draws one scene (scenes own equal
    slices of the planted atoms) and k atoms of it; at every next window each atom stays
    with probability `persist` (its magnitude drifting a little) or is replaced by a fresh
    atom of the scene. x = Σ c_j a_j + b_scene + N(0, noise²) per dimension, where each scene
    has a constant background b_scene of norm `background` (a habitat's ambient sound)."""
    rng = np.random.default_rng(seed)
    if atoms is None:
        atoms = rng.standard_normal((n_atoms, d))
        atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    bg = rng.standard_normal((scenes, d))
    bg *= background / np.linalg.norm(bg, axis=1, keepdims=True)
    per = n_atoms // scenes
    n = n_seq * seq_len
    idx = np.zeros((n, k), dtype=np.int64)
    mag = np.zeros((n, k))
    scene = np.zeros(n, dtype=np.int64)
    for s in range(n_seq):
        sc = int(rng.integers(scenes))
        pool = np.arange(sc * per, (sc + 1) * per)
        cur = rng.choice(pool, size=k, replace=False)
        c = rng.uniform(0.5, 1.5, size=k)
        for t in range(seq_len):
            if t > 0:
                for j in range(k):
                    if rng.random() < persist:
                        c[j] = np.clip(c[j] + rng.normal(0, 0.1), 0.3, 2.0)
                    else:
                        free = np.setdiff1d(pool, cur)
                        cur[j] = rng.choice(free)
                        c[j] = rng.uniform(0.5, 1.5)
            row = s * seq_len + t
            idx[row], mag[row], scene[row] = cur, c, sc
    emb = np.einsum("nk,nkd->nd", mag, atoms[idx]) + bg[scene] + noise * rng.standard_normal((n, d))
    file = np.repeat(np.array([f"seq{s:05d}" for s in range(n_seq)], dtype=object), seq_len)
    start = np.tile(np.arange(seq_len) * 3.0, n_seq)
    return Planted(emb.astype(np.float32), file, start, atoms.astype(np.float32), idx, scene)


def max_cosine(learned: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """For every planted atom, the best |cos| with any learned atom (rows are atoms)."""
    a = learned / np.maximum(np.linalg.norm(learned, axis=1, keepdims=True), 1e-12)
    b = planted / np.maximum(np.linalg.norm(planted, axis=1, keepdims=True), 1e-12)
    return np.abs(b @ a.T).max(axis=1)
