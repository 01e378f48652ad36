"""Training and evaluation of acoustic-atom SAEs: streamed embedding sources (Parquet / NPZ /
arrays, or media extracted with BirdNET), sequence pairing, held-out split, versioned weights."""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avgeo.errors import ConfigError, TableError, WeightsError
from avgeo.perception.audio.sae.model import MixtureSAE, SaeConfig, TopKSAE, build_model
from avgeo.training import (
    DistEnv,
    FitContext,
    Task,
    TrainerConfig,
    build_config,
    fit,
    load_versioned,
    save_versioned,
    shard,
)
from avgeo.training import record as make_record

FORMAT_VERSION = 1
#: Optional per-window columns carried along for atom naming and purity.
META_COLUMNS = ("labels", "label_conf", "lat", "lon", "country")
EMBEDDING_COLUMNS = ("embedding", "embeddings", "emb", "vector")

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------- sources

@dataclass
class Chunk:
    """Consecutive rows of an embedding table (ordered by file, then start_s)."""

    file: np.ndarray  # object (n,)
    start_s: np.ndarray  # float64 (n,)
    emb: np.ndarray  # float32 (n, d)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.start_s.shape[0])

    def take(self, sel: np.ndarray) -> Chunk:
        meta = {k: (np.asarray(v, dtype=object)[sel] if isinstance(v, list) else v[sel])
                for k, v in self.meta.items()}
        return Chunk(self.file[sel], self.start_s[sel], self.emb[sel], meta)


class EmbeddingSource:
    """Anything that can stream its rows as Chunks, in order, as many times as asked."""

    dim: int
    description: dict[str, Any]

    def chunks(self, rows: int = 8192) -> Iterator[Chunk]:  # pragma: no cover - interface
        raise NotImplementedError


class ArraySource(EmbeddingSource):
    """In-memory (or memory-mapped) arrays; `file`/`start_s` default to one row per file."""

    def __init__(self, emb: np.ndarray, file: np.ndarray | None = None,
                 start_s: np.ndarray | None = None, meta: dict[str, Any] | None = None,
                 description: dict[str, Any] | None = None) -> None:
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise TableError(f"embeddings must be a non-empty (n, d) array, got {emb.shape}",
                             "pass one embedding vector per window")
        n = emb.shape[0]
        self.emb = emb
        self.file = (np.asarray(file, dtype=object) if file is not None
                     else np.array([f"row{i}" for i in range(n)], dtype=object))
        self.start_s = (np.asarray(start_s, dtype=np.float64) if start_s is not None
                        else np.zeros(n))
        self.meta = dict(meta or {})
        self.dim = int(emb.shape[1])
        self.description = description or {"type": "arrays", "rows": n}

    def chunks(self, rows: int = 8192) -> Iterator[Chunk]:
        for a in range(0, self.emb.shape[0], rows):
            sl = slice(a, a + rows)
            meta = {k: v[sl] for k, v in self.meta.items()}
            yield Chunk(self.file[sl], self.start_s[sl],
                        np.asarray(self.emb[sl], dtype=np.float32), meta)


class ParquetSource(EmbeddingSource):
    """A Parquet table (file, start_s, embedding list column, optional META_COLUMNS),
    streamed by record batches: memory is bounded by `rows`, not by the table."""

    def __init__(self, path: str | Path) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            self._pf = pq.ParquetFile(self.path)
        except Exception as exc:
            raise TableError(f"cannot read {self.path}: {exc}",
                             "pass a Parquet file written by `avgeo train sae`") from exc
        names = set(self._pf.schema_arrow.names)
        emb = next((c for c in EMBEDDING_COLUMNS if c in names), None)
        if emb is None:
            raise TableError(f"{self.path} has no embedding column",
                             f"name the vector column one of {', '.join(EMBEDDING_COLUMNS)}")
        self._emb = emb
        self._cols = [c for c in ("file", "start_s", emb, *META_COLUMNS) if c in names]
        first = next(self._pf.iter_batches(batch_size=1, columns=[emb]), None)
        if first is None or first.num_rows == 0:
            raise TableError(f"{self.path} holds no rows", "extract embeddings first")
        self.dim = len(first.column(0)[0])
        self.description = {"type": "parquet", "path": str(self.path),
                            "rows": int(self._pf.metadata.num_rows)}

    def chunks(self, rows: int = 8192) -> Iterator[Chunk]:
        import pyarrow.compute as pc

        offset = 0
        for rb in self._pf.iter_batches(batch_size=rows, columns=self._cols):
            n = rb.num_rows
            col = rb.column(self._emb)
            flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
            if flat.size != n * self.dim:
                raise TableError(f"{self.path}: embeddings of unequal length near row {offset}",
                                 "every window needs a vector of the same size")
            emb = flat.astype(np.float32, copy=False).reshape(n, self.dim)
            names = rb.schema.names
            file = (np.asarray(rb.column("file").to_pylist(), dtype=object) if "file" in names
                    else np.array([f"row{offset + i}" for i in range(n)], dtype=object))
            start = (rb.column("start_s").to_numpy(zero_copy_only=False).astype(np.float64)
                     if "start_s" in names else np.zeros(n))
            meta: dict[str, Any] = {}
            for c in META_COLUMNS:
                if c not in names:
                    continue
                if c in ("lat", "lon"):
                    meta[c] = np.asarray(rb.column(c).to_pylist(), dtype=np.float64)
                else:
                    meta[c] = rb.column(c).to_pylist()
            offset += n
            yield Chunk(file, start, emb, meta)


def npz_source(path: str | Path) -> ArraySource:
    """An NPZ with an `embedding` (n, d) array and optional file, start_s, lat, lon, country."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise TableError(f"cannot read {path}: {exc}", "pass a valid .npz file") from exc
    key = next((k for k in EMBEDDING_COLUMNS if k in z.files), None)
    if key is None:
        raise TableError(f"{path} has no embedding array",
                         f"name it one of {', '.join(EMBEDDING_COLUMNS)}")
    meta = {k: (z[k].astype(np.float64) if k in ("lat", "lon") else list(z[k].astype(str)))
            for k in ("lat", "lon", "country") if k in z.files}
    return ArraySource(np.asarray(z[key], dtype=np.float32),
                       z["file"].astype(str) if "file" in z.files else None,
                       z["start_s"] if "start_s" in z.files else None, meta,
                       {"type": "npz", "path": str(path), "rows": int(z[key].shape[0])})


def is_embedding_table(path: Path) -> bool:
    if path.suffix.lower() == ".npz":
        return True
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(path).names)
        except Exception as exc:
            raise TableError(f"cannot read {path}: {exc}", "pass a valid Parquet file") from exc
        return any(c in names for c in EMBEDDING_COLUMNS)
    return False


def open_source(path: str | Path) -> EmbeddingSource:
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path} not found", "check the path")
    return npz_source(path) if path.suffix.lower() == ".npz" else ParquetSource(path)


# ---------------------------------------------------------------- BirdNET extraction

def extract_embeddings(manifest: str | Path, cache: str | Path, overlap_s: float = 0.0,
                       label_min_conf: float = 0.1, log: Log = _quiet) -> ParquetSource:
    """Embed every media file of a manifest with BirdNET into a Parquet cache (one row per
    window with its top BirdNET labels, and the file's lat/lon/country when given).
    Written file by file, so memory stays bounded; an existing cache listing the same
    files is reused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from avgeo.data.manifest import read_manifest
    from avgeo.errors import AvgeoError
    from avgeo.media import open_media
    from avgeo.perception.audio import birdnet

    df = read_manifest(manifest)
    files = [str(f) for f in df["file"]]
    cache = Path(cache)
    if cache.is_file():
        try:
            done = set(pq.read_table(cache, columns=["file"]).column("file").to_pylist())
        except Exception:
            done = set()
        if done and done <= set(files) and len(done) >= 1 and cache.stat().st_mtime >= Path(
                manifest).stat().st_mtime:
            log(f"reusing embeddings cache {cache}")
            return ParquetSource(cache)
    ok, why = birdnet.BirdNetEngine().available()
    if not ok:
        from avgeo.errors import BackboneMissingError

        raise BackboneMissingError(f"BirdNET is needed to embed media: {why}")
    schema = pa.schema([("file", pa.string()), ("start_s", pa.float64()),
                        ("end_s", pa.float64()),
                        ("embedding", pa.list_(pa.float32(), birdnet.EMBED_DIM)),
                        ("labels", pa.list_(pa.string())), ("label_conf", pa.list_(pa.float32())),
                        ("lat", pa.float64()), ("lon", pa.float64()), ("country", pa.string())])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(cache.suffix + ".tmp")
    n_rows = 0
    with pq.ParquetWriter(tmp, schema) as w:
        for i, row in df.iterrows():
            f = str(row["file"])
            try:
                media = open_media(f)
                if not media.has_audio:
                    log(f"skip {f}: no audio track")
                    continue
                res = birdnet.analyze_media(media, overlap_s=overlap_s, min_conf=label_min_conf)
            except AvgeoError as exc:
                log(f"skip {f}: {exc.message}")
                continue
            e = res.embeddings
            assert e is not None
            if len(e) == 0:
                log(f"skip {f}: no non-silent window")
                continue
            by_t: dict[float, list[tuple[float, str]]] = {}
            for d in res.detections:
                by_t.setdefault(round(d.start_s, 3), []).append((d.confidence, d.label))
            labs, confs = [], []
            for t in e.start_s:
                hits = sorted(by_t.get(round(float(t), 3), []), reverse=True)[:5]
                labs.append([lab for _, lab in hits])
                confs.append([float(c) for c, _ in hits])
            n = len(e)
            lat = float(row["lat"]) if np.isfinite(row["lat"]) else None
            lon = float(row["lon"]) if np.isfinite(row["lon"]) else None
            country = str(row.get("country", "") or "") or None
            w.write_table(pa.table({
                "file": [f] * n, "start_s": e.start_s, "end_s": e.end_s,
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(e.vectors.reshape(-1), pa.float32()), birdnet.EMBED_DIM),
                "labels": labs, "label_conf": confs, "lat": [lat] * n, "lon": [lon] * n,
                "country": [country] * n}, schema=schema))
            n_rows += n
            log(f"[{i + 1}/{len(df)}] {Path(f).name}: {n} windows")
    if n_rows == 0:
        tmp.unlink(missing_ok=True)
        raise TableError(f"no audio windows could be embedded from {manifest}",
                         "list audio or video files with sound in the manifest")
    tmp.replace(cache)
    return ParquetSource(cache)


# ---------------------------------------------------------------- batching

@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    device: str = "cpu"
    seed: int = 0
    #: Fraction of held-out windows, split by contiguous blocks of `block_s` within a file
    #: (consecutive windows overlap in content, so a random row split would leak).
    holdout: float = 0.15
    block_s: float = 30.0
    shuffle_buffer: int = 65_536
    #: Windows this close (start to start) in one file are linked for the AR context.
    max_gap_s: float = 3.5
    grad_clip: float = 1.0
    chunk_rows: int = 8192
    #: Torch CPU threads while training (None: leave as is). Small SAEs run fastest on one
    #: thread; extra threads only contend on a shared machine.
    threads: int | None = None


def heldout_mask(file: np.ndarray, start_s: np.ndarray, frac: float, block_s: float
                 ) -> np.ndarray:
    if frac <= 0:
        return np.zeros(len(file), dtype=bool)
    out = np.empty(len(file), dtype=bool)
    for i, (f, t) in enumerate(zip(file, start_s, strict=True)):
        key = f"{f}|{int(t // block_s)}".encode()
        out[i] = (zlib.crc32(key) % 10_000) < frac * 10_000
    return out


def with_prev(chunks: Iterator[Chunk], max_gap_s: float
              ) -> Iterator[tuple[Chunk, np.ndarray, np.ndarray]]:
    """Each chunk with the previous window's embedding (x_prev) and whether there is one
    (the row before, same file, 0 < Δt ≤ max_gap_s); carried across chunk boundaries."""
    last: tuple[Any, float, np.ndarray] | None = None
    for ch in chunks:
        n = len(ch)
        if n == 0:
            continue
        prev = np.empty_like(ch.emb)
        prev[1:] = ch.emb[:-1]
        pf = np.empty(n, dtype=object)
        pf[1:] = ch.file[:-1]
        pt = np.empty(n)
        pt[1:] = ch.start_s[:-1]
        if last is None:
            prev[0], pf[0], pt[0] = 0.0, None, np.nan
        else:
            pf[0], pt[0], prev[0] = last
        dt = ch.start_s - pt
        has = (pf == ch.file) & (dt > 0) & (dt <= max_gap_s)
        prev[~has] = 0.0
        last = (ch.file[-1], float(ch.start_s[-1]), ch.emb[-1].copy())
        yield ch, prev, has


@dataclass
class Batch:
    x: torch.Tensor
    x_prev: torch.Tensor
    has_prev: torch.Tensor


def iter_batches(source: EmbeddingSource, cfg: TrainConfig, split: str,
                 rng: np.random.Generator | None = None) -> Iterator[Batch]:
    """Batches of one split. With `rng`, rows pass through a shuffle buffer of
    `cfg.shuffle_buffer` windows (the table is never loaded whole)."""
    buf_x: list[np.ndarray] = []
    buf_p: list[np.ndarray] = []
    buf_h: list[np.ndarray] = []
    size = 0

    def emit(final: bool) -> Iterator[Batch]:
        nonlocal buf_x, buf_p, buf_h, size
        if size == 0:
            return
        x, p, h = np.concatenate(buf_x), np.concatenate(buf_p), np.concatenate(buf_h)
        if rng is not None:
            perm = rng.permutation(size)
            x, p, h = x[perm], p[perm], h[perm]
        n_out = size if final else (size // cfg.batch_size) * cfg.batch_size
        for a in range(0, n_out, cfg.batch_size):
            b = min(a + cfg.batch_size, n_out)
            yield Batch(torch.from_numpy(x[a:b]), torch.from_numpy(p[a:b]),
                        torch.from_numpy(h[a:b]))
        buf_x, buf_p, buf_h = [x[n_out:]], [p[n_out:]], [h[n_out:]]
        size -= n_out

    cap = cfg.shuffle_buffer if rng is not None else cfg.batch_size
    for ch, prev, has in with_prev(source.chunks(cfg.chunk_rows), cfg.max_gap_s):
        held = heldout_mask(ch.file, ch.start_s, cfg.holdout, cfg.block_s)
        sel = held if split == "eval" else (~held if split == "train" else np.ones_like(held))
        if not sel.any():
            continue
        buf_x.append(ch.emb[sel])
        buf_p.append(prev[sel].astype(np.float32, copy=False))
        buf_h.append(has[sel])
        size += int(sel.sum())
        if size >= cap:
            yield from emit(final=False)
    yield from emit(final=True)


def input_stats(source: EmbeddingSource, cfg: TrainConfig) -> dict[str, Any]:
    """Streaming mean and RMS spread of the training windows, plus split sizes."""
    s = np.zeros(source.dim)
    s2 = np.zeros(source.dim)
    n_train = n_eval = n_linked = 0
    files: set[str] = set()
    for ch, _prev, has in with_prev(source.chunks(cfg.chunk_rows), cfg.max_gap_s):
        held = heldout_mask(ch.file, ch.start_s, cfg.holdout, cfg.block_s)
        x = ch.emb[~held].astype(np.float64)
        s += x.sum(0)
        s2 += (x * x).sum(0)
        n_train += int((~held).sum())
        n_eval += int(held.sum())
        n_linked += int(has.sum())
        files.update(str(f) for f in np.unique(ch.file))
    if n_train == 0:
        raise TableError("no training windows (every window fell in the held-out split)",
                         "lower --holdout or add data")
    mean = s / n_train
    var = np.maximum(s2 / n_train - mean**2, 0.0)
    scale = float(np.sqrt(var.mean())) or 1.0
    return {"mean": mean.astype(np.float32), "scale": scale, "n_train": n_train,
            "n_eval": n_eval, "n_linked": n_linked, "n_files": len(files)}


# ---------------------------------------------------------------- training

@dataclass
class TrainResult:
    model: TopKSAE
    stats: dict[str, Any]
    history: list[dict[str, float]]


CHECKPOINT_KIND = "avgeo.sae.checkpoint"


class SaeTask(Task):
    """SAE training as a task of the shared loop: Adam on MSE + AuxK (+ load balance), decoder
    gradients projected off the atoms and atoms renormalised after each step, the learning
    rate decaying linearly to 0 over the last 20 % of steps. Under torchrun every rank
    streams the same shuffled batches and trains on its slice of each."""

    def __init__(self, source: EmbeddingSource, cfg: SaeConfig, tcfg: TrainConfig) -> None:
        self.source, self.cfg, self.tcfg = source, cfg, tcfg
        self.rng = np.random.default_rng(tcfg.seed)
        self.history: list[dict[str, float]] = []
        # Throughput of this process (a resumed run counts from its own start).
        self.n_seen = 0
        self.t_first: float | None = None
        self.stats: dict[str, Any] = {}
        self.total = self.decay_from = 0

    def build(self, ctx: FitContext) -> TopKSAE:
        tcfg = self.tcfg
        st = input_stats(self.source, tcfg)
        # On small corpora "dead" must mean "silent for about an epoch", not 20k windows.
        cfg = SaeConfig.from_dict({**self.cfg.to_dict(),
                                   "dead_after": min(self.cfg.dead_after, max(st["n_train"], 1))})
        model = build_model(cfg)
        model.set_input_stats(torch.from_numpy(st["mean"]), st["scale"])
        if isinstance(model, MixtureSAE):
            sample = next(iter_batches(self.source, replace(tcfg, batch_size=4096), "train",
                                       self.rng), None)
            if sample is not None:
                model.init_experts(sample.x, seed=tcfg.seed)
        self.stats = st
        steps_per_epoch = max(1, math.ceil(st["n_train"] / tcfg.batch_size))
        self.total = steps_per_epoch * tcfg.epochs
        self.decay_from = int(0.8 * self.total)
        self.dev = ctx.device
        return model

    def configure_optimizer(self, model: torch.nn.Module, ctx: FitContext) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=self.tcfg.lr, betas=(0.9, 0.999),
                                eps=6.25e-10)

    def lr_at(self, step: int) -> float | None:
        if step < self.decay_from:
            return None
        return self.tcfg.lr * max(0.0, (self.total - step) / max(1, self.total - self.decay_from))

    def batches(self, epoch: int, env: DistEnv) -> Iterator[Batch]:
        if self.t_first is None:
            self.t_first = time.perf_counter()
        for b in iter_batches(self.source, self.tcfg, "train", self.rng):
            n = b.x.shape[0]
            if env.world > 1:
                b = Batch(shard(b.x, env), shard(b.x_prev, env), shard(b.has_prev, env))
            b.n_global = n  # type: ignore[attr-defined]
            yield b

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, Any]]:
        dev = self.dev
        out = model(batch.x.to(dev), batch.x_prev.to(dev), batch.has_prev.to(dev))
        self.n_seen += batch.n_global  # type: ignore[attr-defined]
        return out.loss, {"mse": out.mse, "aux": out.aux, "balance": out.balance}

    def after_backward(self, model: torch.nn.Module) -> None:
        model.project_decoder_grad()  # type: ignore[operator]

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        model.normalise_decoder()  # type: ignore[operator]

    def on_epoch_end(self, ctx: FitContext, epoch: int, means: dict[str, float]) -> None:
        model = self.model
        rec = {k: means[k] for k in ("loss", "mse", "aux", "balance")}
        rec["epoch"] = epoch + 1
        rec["dead_frac"] = float(model.dead_mask.float().mean())
        self.history.append(rec)
        n = self.tcfg.epochs
        if epoch == 0 or (epoch + 1) % max(1, n // 10) == 0 or epoch + 1 == n:
            ctx.log(f"epoch {epoch + 1}/{n}: loss {rec['loss']:.4f} mse {rec['mse']:.4f} "
                      f"aux {rec['aux']:.3f} dead {rec['dead_frac']:.2f}")
        if ctx.metrics is not None:
            ctx.metrics.log(ctx.step, {"dead_frac": rec["dead_frac"]})

    def setup(self, ctx: FitContext, model: torch.nn.Module) -> None:
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))

    def data_state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def load_data_state(self, state: Any) -> None:
        if state is not None:
            self.rng.bit_generator.state = state

    def checkpoint_extras(self, model: torch.nn.Module) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "kind": CHECKPOINT_KIND,
                "config": model.cfg.to_dict(), "train": asdict(self.tcfg),  # type: ignore[union-attr]
                "embedding_source": dict(self.source.description)}


def train_sae(source: EmbeddingSource, cfg: SaeConfig, tcfg: TrainConfig,
              log: Log = _quiet, *, resume: str | Path | None = None,
              checkpoint: str | Path | None = None, run_dir: str | Path | None = None,
              checkpoint_every: int = 0, log_every: int = 10, tensorboard: bool = True,
              record: dict[str, Any] | None = None, config_source: str = "") -> TrainResult:
    """Train on the shared loop (avgeo.training.fit); returns the model on CPU and the
    held-out metrics. `checkpoint` gets the trainer state (every `checkpoint_every` steps and
    at the end) for an exact `resume`; `run_dir` gets metrics.csv and config.json. Resuming
    takes the network and data settings from the checkpoint; only epochs, device and threads
    may change."""
    obj = None
    if resume is not None:
        obj = load_versioned(resume, CHECKPOINT_KIND, (FORMAT_VERSION,), what="SAE checkpoint")
        cfg = SaeConfig.from_dict(obj["config"])
        saved = build_config(TrainConfig, obj.get("train") or {}, section="train")
        tcfg = replace(saved, epochs=tcfg.epochs, device=tcfg.device, threads=tcfg.threads)
    if cfg.d_in != source.dim:
        if obj is not None:
            raise ConfigError(f"the checkpoint's SAE reads {cfg.d_in}-d embeddings, the data "
                              f"has {source.dim}-d", hint="resume with the run's own data")
        cfg = SaeConfig.from_dict({**cfg.to_dict(), "d_in": source.dim})
    run = TrainerConfig(seed=tcfg.seed, device=tcfg.device, epochs=tcfg.epochs,
                        grad_clip=tcfg.grad_clip, log_every=log_every,
                        checkpoint_every=checkpoint_every, run_dir=str(run_dir or ""),
                        checkpoint=str(checkpoint or ""), tensorboard=tensorboard)
    old_threads = torch.get_num_threads()
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    try:
        task = SaeTask(source, cfg, tcfg)
        res = fit(task, run, resume=obj, record=record or make_record(sae=cfg, train=tcfg,
                                                                       run=run),
                  config_source=config_source, log=log)
    finally:
        torch.set_num_threads(old_threads)
    model = res.model
    assert isinstance(model, TopKSAE)
    model.eval().cpu()
    st = task.stats
    train_s = time.perf_counter() - task.t_first if task.t_first is not None else 0.0
    stats: dict[str, Any] = {
        "n_train": st["n_train"], "n_eval": st["n_eval"], "n_files": st["n_files"],
        "n_linked": st["n_linked"], "epochs": tcfg.epochs, "steps": res.step,
        "train_s": round(train_s, 3),
        "windows_per_s": round(task.n_seen / max(train_s, 1e-9), 1),
        "dead_frac": float(model.dead_mask.float().mean()), "train": asdict(tcfg),
    }
    ev = evaluate(model, source, tcfg, "eval" if st["n_eval"] else "train")
    stats.update({"eval_split": "eval" if st["n_eval"] else "train (no held-out windows)",
                  "r2": ev["r2"], "l0": ev["l0"], "never_fired_frac": ev["never_fired_frac"]})
    return TrainResult(model, stats, task.history)


@torch.no_grad()
def evaluate(model: TopKSAE, source: EmbeddingSource, tcfg: TrainConfig, split: str = "eval"
             ) -> dict[str, Any]:
    """Reconstruction R² (fraction of variance explained, over the split's own mean), mean L0
    and the fraction of latents that never fire on the split."""
    model.eval()
    dev = next(model.parameters()).device
    sse = 0.0
    sx = torch.zeros(model.cfg.d_in, dtype=torch.float64)
    sxx = 0.0
    n = 0
    l0 = 0.0
    fired = torch.zeros(model.cfg.n_latents, dtype=torch.bool)
    for b in iter_batches(source, tcfg, split):
        out = model(b.x.to(dev), b.x_prev.to(dev), b.has_prev.to(dev))
        xn = out.x.double().cpu()
        sse += float((out.x_hat.double().cpu() - xn).pow(2).sum())
        sx += xn.sum(0)
        sxx += float(xn.pow(2).sum())
        n += xn.shape[0]
        act = out.vals > 0
        l0 += float(act.sum())
        fired[out.idx[act].cpu()] = True
    if n == 0:
        return {"r2": float("nan"), "l0": float("nan"), "n": 0, "never_fired_frac": 1.0}
    sst = sxx - float(sx.pow(2).sum()) / n
    return {"r2": 1.0 - sse / max(sst, 1e-12), "l0": l0 / n, "n": n,
            "never_fired_frac": float((~fired).float().mean())}


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | Path, model: TopKSAE, *, embedding_source: dict[str, Any],
                    stats: dict[str, Any], atoms: list[dict[str, Any]] | None = None,
                    half: bool = True) -> Path:
    """Write {format_version, config, state_dict, embedding_source, stats, atoms}; float
    tensors in fp16 by default (halves the file; reconstruction R² changes < 1e-3)."""
    path = Path(path)
    sd = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
          for k, v in model.state_dict().items()}
    return save_versioned(path, "avgeo.sae", FORMAT_VERSION,
                          {"config": model.cfg.to_dict(), "variant": model.cfg.variant,
                           "state_dict": sd, "embedding_source": embedding_source,
                           "stats": stats, "atoms": atoms or []})


@dataclass
class LoadedSae:
    model: TopKSAE
    embedding_source: dict[str, Any]
    stats: dict[str, Any]
    atoms: list[dict[str, Any]]
    path: Path


def load_checkpoint(path: str | Path) -> LoadedSae:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"SAE weights not found: {path}")
    ckpt = load_versioned(path, "avgeo.sae", (FORMAT_VERSION,), what="SAE weights")
    model = build_model(SaeConfig.from_dict(ckpt["config"]))
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: weights do not match the config ({exc})") from exc
    model.eval()
    return LoadedSae(model, dict(ckpt.get("embedding_source") or {}),
                     dict(ckpt.get("stats") or {}), list(ckpt.get("atoms") or []), path)
