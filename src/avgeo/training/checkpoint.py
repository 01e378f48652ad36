"""Atomic file writes (temporary file + os.replace, so a crash never leaves half a file) and
versioned torch files: {kind, format_version, ...} checked on load."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from avgeo.errors import WeightsError

#: Layout version of the trainer block ("trainer") inside a checkpoint.
CHECKPOINT_VERSION = 1


def _tmp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file beside `path`, then rename it over `path`."""
    p = Path(path)
    tmp = _tmp_beside(p)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to `path` through a temporary file and a rename."""
    p = Path(path)
    tmp = _tmp_beside(p)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def save_versioned(path: str | Path, kind: str, version: int, payload: dict[str, Any]) -> Path:
    """Write {format_version, kind, **payload} atomically."""
    return atomic_save({"format_version": version, "kind": kind, **payload}, path)


def load_versioned(path: str | Path, kinds: str | Iterable[str], versions: Iterable[int], *,
                   what: str = "weights", prefix: bool = False,
                   upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
    """Read a file written by `save_versioned`; WeightsError unless its kind is one of `kinds`
    (or starts with one, with `prefix`) and its format_version one of `versions`.
    `upgrade` converts older layouts after the checks."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"no {what} file at {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read {what} {p}: {type(exc).__name__}") from exc
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    kind = str(obj.get("kind", "")) if isinstance(obj, dict) else ""
    ok = any(kind.startswith(k) if prefix else kind == k for k in kinds)
    if not ok:
        raise WeightsError(f"{p} is not an avgeo {what} file")
    versions = tuple(versions)
    if obj.get("format_version") not in versions:
        raise WeightsError(f"{p} has format_version {obj.get('format_version')}, "
                           f"this avgeo reads {', '.join(map(str, versions))}")
    return upgrade(obj) if upgrade is not None else obj
