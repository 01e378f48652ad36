"""Train/val/test splits that do not leak location: items that share an H3 cell, a country, a
recordist/uploader or a near-duplicate group always land in the same split.

Items are linked through the chosen keys (union-find), so a recordist who recorded in two
cells pulls both cells into one split. Each connected group goes to a split by a seeded hash
of its smallest key, so the assignment is deterministic and stable when rows are added
(a new row only moves the groups it joins). Fractions hold in expectation over groups.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from avgeo.errors import ConfigError

SPLIT_KEYS = ("h3", "country", "recordist")
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def unit_hash(text: str, seed: int) -> float:
    """A uniform number in [0, 1) from a string and a seed (stable across runs/machines)."""
    h = hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def row_keys(df: pd.DataFrame, by: Sequence[str], h3_res: int = 3) -> list[list[str]]:
    """Per row, the grouping keys it carries ('h3:<cell>', 'country:XX', 'recordist:name')."""
    import h3

    keys: list[list[str]] = [[] for _ in range(len(df))]
    lat = pd.to_numeric(df["lat"], errors="coerce").to_numpy(np.float64) if "lat" in df \
        else np.full(len(df), np.nan)
    lon = pd.to_numeric(df["lon"], errors="coerce").to_numpy(np.float64) if "lon" in df \
        else np.full(len(df), np.nan)
    for name in by:
        if name not in SPLIT_KEYS:
            raise ConfigError(f"unknown split key {name!r}", f"use {', '.join(SPLIT_KEYS)}")
        for i in range(len(df)):
            if name == "h3":
                if np.isfinite(lat[i]) and np.isfinite(lon[i]):
                    keys[i].append(f"h3:{h3.latlng_to_cell(lat[i], lon[i], h3_res)}")
            else:
                v = _text(df[name].iloc[i]) if name in df else ""
                if v:
                    keys[i].append(f"{name}:{v.casefold() if name == 'recordist' else v.upper()}")
    return keys


def assign_splits(df: pd.DataFrame, by: Sequence[str] = ("h3", "recordist"), h3_res: int = 3,
                  fractions: dict[str, float] | None = None, seed: int = 0,
                  groups: Sequence[str] | None = None) -> pd.Series:
    """The split of each row. `groups` (e.g. dedup group ids, '' for none) are extra keys
    that must stay together. Rows with no key at all are grouped by their file name."""
    fractions = dict(fractions or DEFAULT_FRACTIONS)
    if not fractions or any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ConfigError(f"bad split fractions {fractions}", "e.g. train=0.8,val=0.1,test=0.1")
    if not 0 <= h3_res <= 15:
        raise ConfigError(f"H3 resolution {h3_res} is out of range", "use 0..15")
    keys = row_keys(df, by, h3_res)
    if groups is not None:
        for i, g in enumerate(groups):
            if _text(g):
                keys[i].append(f"dup:{g}")
    files = df["file"].astype(str).tolist() if "file" in df else [str(i) for i in range(len(df))]
    for i, k in enumerate(keys):
        if not k:
            keys[i] = [f"file:{files[i]}"]
    uf = _UnionFind(len(df))
    first: dict[str, int] = {}
    for i, ks in enumerate(keys):
        for k in ks:
            if k in first:
                uf.union(first[k], i)
            else:
                first[k] = i
    comp_key: dict[int, str] = {}
    for i, ks in enumerate(keys):
        r = uf.find(i)
        m = min(ks)
        if r not in comp_key or m < comp_key[r]:
            comp_key[r] = m
    total = sum(fractions.values())
    names = list(fractions)
    edges = np.cumsum([fractions[n] / total for n in names])

    def pick(u: float) -> str:
        return names[min(int(np.searchsorted(edges, u, side="right")), len(names) - 1)]

    by_comp = {r: pick(unit_hash(k, seed)) for r, k in comp_key.items()}
    return pd.Series([by_comp[uf.find(i)] for i in range(len(df))], index=df.index,
                     name="split", dtype=object)


def leaks(df: pd.DataFrame, split: Sequence[str], by: Sequence[str], h3_res: int = 3
          ) -> dict[str, list[str]]:
    """Keys (per kind) that occur in more than one split; empty lists mean no leak."""
    keys = row_keys(df, by, h3_res)
    where: dict[str, set[str]] = {}
    for ks, s in zip(keys, split, strict=True):
        for k in ks:
            where.setdefault(k, set()).add(s)
    out: dict[str, list[str]] = {name: [] for name in by}
    for k, ss in where.items():
        if len(ss) > 1:
            out[k.split(":", 1)[0]].append(k)
    return out


def parse_fractions(text: str) -> dict[str, float]:
    """'train=0.8,val=0.1,test=0.1' → dict."""
    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise ConfigError(f"bad split fraction {part!r}",
                              "write e.g. train=0.8,val=0.1,test=0.1") from exc
    return out
