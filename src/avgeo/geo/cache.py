"""On-disk cache for derived geographic tables (cell labels, priors, gazetteer arrays).

Lives in `$AVGEO_CACHE_DIR` or `~/.cache/avgeo/`; entries are .npz files written atomically
so that parallel workers building the same entry never read a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

#: Bump when the way any cached table is derived changes, so old files are not reused.
CACHE_VERSION = 3


def cache_dir() -> Path:
    root = os.environ.get("AVGEO_CACHE_DIR") or str(Path.home() / ".cache" / "avgeo")
    return Path(root) / "geo"


def cells_digest(cells: np.ndarray) -> str:
    """Short stable id of a set of cells (a grid may be a subset of a resolution)."""
    c = np.ascontiguousarray(np.asarray(cells, dtype=np.uint64))
    return hashlib.sha1(c.tobytes()).hexdigest()[:16]


def cache_path(kind: str, key: str) -> Path:
    return cache_dir() / f"{kind}-v{CACHE_VERSION}-{key}.npz"


def load(kind: str, key: str) -> dict[str, np.ndarray] | None:
    path = cache_path(kind, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):  # corrupt or truncated: rebuild it
        return None


def save(kind: str, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically; a cache that cannot be written (read-only home) is not an error."""
    path = cache_path(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError:
        return
