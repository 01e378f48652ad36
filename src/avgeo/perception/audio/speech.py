"""Speech activity: where people talk in a recording (Silero VAD, whose MIT-licensed model
ships inside the `silero-vad` wheel), as `speech` atoms and as spans other audio engines
leave out of their soundscape analysis."""

from __future__ import annotations

import importlib.util
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from avgeo.errors import BackboneMissingError
from avgeo.perception.base import EngineContext, register

if TYPE_CHECKING:
    from avgeo.atoms import Atom
    from avgeo.media import Media

VAD_RATE_HZ = 16000
#: Silero's window at 16 kHz: one probability per 32 ms.
WINDOW_N = 512
WINDOW_S = WINDOW_N / VAD_RATE_HZ
#: Hysteresis thresholds on the speech probability (Silero's defaults).
ON_THRESHOLD = 0.5
OFF_THRESHOLD = 0.35
MIN_SPEECH_S = 0.25
#: Pauses shorter than this (between words and phrases) stay inside one span.
MAX_PAUSE_S = 1.0
PAD_S = 0.1
LANGUAGE_NOTE = ("spoken language not identified: no offline language-ID model is "
                 "available from the package registries")

_LOCK = threading.Lock()


def _model_path() -> Path | None:
    # Locate the bundled weights without importing silero_vad: its __init__ calls
    # torch.set_num_threads(1), which would slow every other torch model in the process.
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.jit"
    return path if path.is_file() else None


def vad_available() -> tuple[bool, str]:
    """(True, "") when the VAD can run; else why and how to fix."""
    if importlib.util.find_spec("torch") is None:
        return False, "speech detection needs torch: pip install torch"
    if _model_path() is None:
        return False, "speech detection needs the silero-vad wheel: pip install silero-vad"
    return True, ""


@lru_cache(maxsize=1)
def _load_model() -> Any:
    ok, why = vad_available()
    if not ok:
        raise BackboneMissingError(
            why, hint="pip install silero-vad, or leave `speech` out of the engines")
    import torch

    with warnings.catch_warnings():
        # TorchScript is deprecated in recent torch but still loads this model.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(_model_path()), map_location="cpu")
    model.eval()
    return model


@contextmanager
def _one_thread(torch: Any):
    # The model runs on 512-sample windows: thread start-up costs ~100x the work, so run
    # it single-threaded and give the process its thread count back afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def speech_probabilities(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Speech probability per 32 ms window of a 16 kHz mono stream given in chunks."""
    import torch

    model = _load_model()
    probs: list[float] = []
    carry = np.zeros(0, dtype=np.float32)
    with _LOCK, torch.inference_mode(), _one_thread(torch):
        model.reset_states()
        for chunk in chunks:
            x = np.asarray(chunk, dtype=np.float32).reshape(-1)
            x = np.concatenate([carry, np.nan_to_num(x)]) if carry.size else np.nan_to_num(x)
            n = x.size // WINDOW_N * WINDOW_N
            t = torch.from_numpy(np.ascontiguousarray(x[:n]))
            for i in range(0, n, WINDOW_N):
                probs.append(float(model(t[i:i + WINDOW_N].unsqueeze(0), VAD_RATE_HZ)))
            carry = x[n:].copy()
        if carry.size >= WINDOW_N // 4:
            last = np.zeros(WINDOW_N, dtype=np.float32)
            last[:carry.size] = carry
            probs.append(float(model(torch.from_numpy(last).unsqueeze(0), VAD_RATE_HZ)))
        model.reset_states()
    return np.asarray(probs, dtype=np.float64)


def segments_from_probs(probs: np.ndarray, duration_s: float | None = None
                        ) -> list[tuple[float, float]]:
    """Speech spans (start_s, end_s) from per-window probabilities: hysteresis between
    ON/OFF thresholds, short blips dropped, short pauses bridged, edges padded."""
    probs = np.asarray(probs, dtype=np.float64)
    end_total = duration_s if duration_s is not None else probs.size * WINDOW_S
    raw: list[list[float]] = []
    active = False
    start = 0
    for i, p in enumerate(probs):
        if not active and p >= ON_THRESHOLD:
            active, start = True, i
        elif active and p < OFF_THRESHOLD:
            active = False
            raw.append([start * WINDOW_S, i * WINDOW_S])
    if active:
        raw.append([start * WINDOW_S, probs.size * WINDOW_S])
    merged: list[list[float]] = []
    for s, e in raw:
        if merged and s - merged[-1][1] <= MAX_PAUSE_S:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    out = []
    for s, e in merged:
        if e - s >= MIN_SPEECH_S:
            out.append((round(max(0.0, s - PAD_S), 3), round(min(end_total, e + PAD_S), 3)))
    return out


def detect_speech(samples: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """Speech spans in a mono signal at any sample rate."""
    from scipy.signal import resample_poly

    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if sample_rate != VAD_RATE_HZ:
        import math

        g = math.gcd(int(sample_rate), VAD_RATE_HZ)
        x = resample_poly(x, VAD_RATE_HZ // g, int(sample_rate) // g).astype(np.float32)
    if x.size < WINDOW_N // 4 or not np.any(x):
        return []
    probs = speech_probabilities([x])
    return segments_from_probs(probs, x.size / VAD_RATE_HZ)


#: Results per media file, so that the speech engine and the engines that skip speech
#: decode and run the VAD once.
_CACHE: OrderedDict[tuple, tuple[list[tuple[float, float]], np.ndarray]] = OrderedDict()
_CACHE_SIZE = 16


def _media_key(media: Media) -> tuple:
    path = getattr(media, "path", None)
    try:
        mtime = Path(path).stat().st_mtime_ns if path is not None else None
    except OSError:
        mtime = None
    return (str(path), getattr(media, "size_bytes", None), mtime)


def _analyse(media: Media) -> tuple[list[tuple[float, float]], np.ndarray]:
    if not getattr(media, "has_audio", False):
        return [], np.zeros(0)
    key = _media_key(media)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    probs = speech_probabilities(
        ch.samples for ch in media.audio_chunks(sample_rate=VAD_RATE_HZ, chunk_s=30.0))
    if probs.size == 0:
        segs: list[tuple[float, float]] = []
    else:
        segs = segments_from_probs(probs, getattr(media, "duration_s", None))
    _CACHE[key] = (segs, probs)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return segs, probs


def speech_segments(media: Media) -> list[tuple[float, float]]:
    """(start_s, end_s) spans of speech in the media's audio ([] without audio)."""
    return list(_analyse(media)[0])


def speech_fraction(segments: list[tuple[float, float]], duration_s: float) -> float:
    """Share of `duration_s` covered by the spans."""
    if duration_s <= 0:
        return 0.0
    return min(1.0, sum(e - s for s, e in segments) / duration_s)


class SpeechEngine:
    """Speech-activity engine: one `speech` atom per span. Speech alone says nothing about
    place, so the atoms carry no likelihood; they tell readers and other engines where
    the talking is."""

    name: ClassVar[str] = "speech"
    media_kinds: ClassVar[tuple[str, ...]] = ("audio", "video")

    def available(self) -> tuple[bool, str]:
        return vad_available()

    def atoms(self, media: Media, ctx: EngineContext) -> list[Atom]:
        from avgeo.atoms import Atom

        segs, probs = _analyse(media)
        out = []
        for i, (s, e) in enumerate(segs):
            lo, hi = int(s / WINDOW_S), max(int(s / WINDOW_S) + 1, int(np.ceil(e / WINDOW_S)))
            conf = float(np.mean(probs[lo:hi])) if probs.size else 0.0
            out.append(Atom(
                name="speech", engine=self.name, kind="speech",
                evidence=f"speech {s:.1f}–{e:.1f} s (voice activity {conf:.2f}); "
                         f"{LANGUAGE_NOTE}",
                confidence=conf, start_s=s, end_s=e,
                value={"segment": i, "mean_probability": round(conf, 3), "language": None,
                       "language_note": LANGUAGE_NOTE},
                likelihood=None, group="speech"))
        return out


@register("speech")
def _make_speech_engine() -> SpeechEngine:
    return SpeechEngine()
