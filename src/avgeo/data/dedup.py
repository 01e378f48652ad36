"""Near-duplicate detection across a dataset: a perceptual dHash for photos (and a video's
first frame) and a coarse log-spectrogram fingerprint for audio, so re-encoded, resized or
resampled copies of one capture can be forced into one split.

Audio fingerprint (Haitsma–Kalker style, numpy only): mono audio at 5512 Hz, 0.37 s frames
every 93 ms, energies in 17 log-spaced bands (300–2000 Hz), one bit per band pair and frame:
the sign of the band-energy difference's change over time. Two clips are duplicates when
the bit error rate at their best alignment (± 2 s) is below `max_ber` (unrelated audio sits
near 0.5; a re-encode near 0.1).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgeo.errors import AvgeoError

FP_SAMPLE_RATE = 5512
FP_FRAME = 2048
FP_HOP = 512
FP_BANDS = 17
FP_MAX_S = 120.0
DEFAULT_MAX_HAMMING = 6
DEFAULT_MAX_BER = 0.25
MAX_SHIFT_FRAMES = 22  # ~2 s at 93 ms per hop: decoder delays and trimmed leaders


@dataclass
class Fingerprint:
    file: str
    kind: str  # photo | audio | video | error
    dhash: int | None = None
    audio_bits: np.ndarray | None = None  # (frames, FP_BANDS - 1) bool
    duration_s: float | None = None
    error: str = ""


@dataclass
class DuplicatePair:
    a: str
    b: str
    method: str  # dhash | audio
    distance: float  # Hamming bits for dhash, bit error rate for audio


def dhash(image, hash_size: int = 8) -> int:
    """Difference hash: grey, resized to (hash_size+1)×hash_size, one bit per horizontal
    gradient sign. Robust to re-encoding, rescaling and mild colour changes."""
    from PIL import Image

    g = image.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS)
    px = np.asarray(g, dtype=np.int16)
    bits = (px[:, 1:] > px[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def audio_bits(samples: np.ndarray, sample_rate: int = FP_SAMPLE_RATE) -> np.ndarray:
    """Fingerprint bits (frames, FP_BANDS - 1) of mono float samples at FP_SAMPLE_RATE."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < FP_FRAME + FP_HOP:
        return np.zeros((0, FP_BANDS - 1), dtype=bool)
    n = 1 + (x.size - FP_FRAME) // FP_HOP
    idx = np.arange(FP_FRAME)[None, :] + FP_HOP * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(FP_FRAME), axis=1)) ** 2
    freqs = np.fft.rfftfreq(FP_FRAME, 1.0 / sample_rate)
    edges = np.geomspace(300.0, 2000.0, FP_BANDS + 1)
    band = np.stack([spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
                     for lo, hi in itertools.pairwise(edges)], axis=1)
    e = np.log(band + 1e-10)
    d = e[:, :-1] - e[:, 1:]
    return (d[1:] - d[:-1]) > 0


def bit_error_rate(a: np.ndarray, b: np.ndarray, max_shift: int = MAX_SHIFT_FRAMES) -> float:
    """Lowest bit error rate over alignments within ±max_shift frames (1.0 if too short)."""
    if len(a) == 0 or len(b) == 0:
        return 1.0
    need = max(8, int(0.5 * min(len(a), len(b))))
    best = 1.0
    for s in range(-max_shift, max_shift + 1):
        aa = a[max(0, s):]
        bb = b[max(0, -s):]
        m = min(len(aa), len(bb))
        if m < need:
            continue
        best = min(best, float(np.mean(aa[:m] != bb[:m])))
    return best


def fingerprint(path: str | Path) -> Fingerprint:
    """The fingerprint of one file; a file that cannot be decoded gets kind 'error'."""
    from avgeo.media import open_media

    f = str(path)
    try:
        m = open_media(path)
        if m.kind == "photo":
            return Fingerprint(f, "photo", dhash=dhash(m.image()))
        if m.kind == "video":
            fr = next(iter(m.frames(fps=1.0, max_frames=1)), None)
            if fr is not None:
                from PIL import Image

                return Fingerprint(f, "video", dhash=dhash(Image.fromarray(fr.image)),
                                   duration_s=m.duration_s)
            return Fingerprint(f, "error", error="no video frame")
        chunks = []
        for ch in m.audio_chunks(sample_rate=FP_SAMPLE_RATE, chunk_s=30.0):
            chunks.append(np.asarray(ch.samples, dtype=np.float32))
            if sum(c.size for c in chunks) >= FP_MAX_S * FP_SAMPLE_RATE:
                break
        x = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return Fingerprint(f, "audio", audio_bits=audio_bits(x[: int(FP_MAX_S * FP_SAMPLE_RATE)]),
                           duration_s=m.duration_s)
    except AvgeoError as exc:
        return Fingerprint(f, "error", error=exc.message)


def _image_pairs(fps: list[Fingerprint], max_hamming: int) -> list[DuplicatePair]:
    """Candidates share one of four 16-bit bands (exact for Hamming ≤ 3, and in practice
    the near-copies above that), then are checked in full."""
    buckets: dict[tuple[int, int], list[int]] = {}
    idx = [i for i, f in enumerate(fps) if f.dhash is not None]
    for i in idx:
        for band in range(4):
            buckets.setdefault((band, (fps[i].dhash >> (16 * band)) & 0xFFFF), []).append(i)
    small = len(idx) <= 2000  # exhaustive below this: exact for any threshold
    cand = {(a, b) for a in idx for b in idx if a < b} if small else \
        {(a, b) for members in buckets.values() for a in members for b in members if a < b}
    out = []
    for a, b in sorted(cand):
        d = hamming(fps[a].dhash, fps[b].dhash)  # type: ignore[arg-type]
        if d <= max_hamming:
            out.append(DuplicatePair(fps[a].file, fps[b].file, "dhash", float(d)))
    return out


def _audio_pairs(fps: list[Fingerprint], max_ber: float) -> list[DuplicatePair]:
    """Candidates have durations within 10 % + 2 s (sorted sweep), then their BER is checked."""
    idx = sorted((i for i, f in enumerate(fps) if f.audio_bits is not None),
                 key=lambda i: fps[i].duration_s or 0.0)
    out = []
    for j, a in enumerate(idx):
        da = fps[a].duration_s or 0.0
        for b in idx[j + 1:]:
            db = fps[b].duration_s or 0.0
            if db - da > 0.1 * da + 2.0:
                break
            ber = bit_error_rate(fps[a].audio_bits, fps[b].audio_bits)  # type: ignore[arg-type]
            if ber <= max_ber:
                lo, hi = sorted((a, b))
                out.append(DuplicatePair(fps[lo].file, fps[hi].file, "audio", round(ber, 4)))
    return out


def find_duplicates(paths: list[str | Path], max_hamming: int = DEFAULT_MAX_HAMMING,
                    max_ber: float = DEFAULT_MAX_BER, workers: int = 0
                    ) -> tuple[list[DuplicatePair], list[Fingerprint]]:
    """Near-duplicate pairs among `paths` and every file's fingerprint."""
    files = [str(p) for p in paths]
    if workers > 1 and len(files) > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            fps = list(pool.map(fingerprint, files, chunksize=4))
    else:
        fps = [fingerprint(f) for f in files]
    pairs = _image_pairs(fps, max_hamming) + _audio_pairs(fps, max_ber)
    pairs.sort(key=lambda p: (p.a, p.b))
    return pairs, fps


def duplicate_groups(files: list[str], pairs: list[DuplicatePair]) -> list[str]:
    """Per file, a group id ('' when it has no duplicate): the group's first file name."""
    parent = {f: f for f in files}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ra, rb = find(p.a), find(p.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = [find(f) for f in files]
    counts: dict[str, int] = {}
    for r in roots:
        counts[r] = counts.get(r, 0) + 1
    return [r if counts[r] > 1 else "" for r in roots]
