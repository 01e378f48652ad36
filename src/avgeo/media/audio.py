"""Streaming audio decode: mono float32 chunks resampled by PyAV (libswresample; channels
averaged), memory bounded by one chunk whatever the length of the recording."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np

from avgeo.errors import ConfigError, CorruptMediaError, InputTooLargeError
from avgeo.media.limits import Limits


@dataclass(slots=True)
class AudioChunk:
    """`samples` (mono float32, nominally in [-1, 1]) starting `start_s` after the first
    decoded sample."""

    samples: np.ndarray
    sample_rate: int
    start_s: float

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


def _new_resampler(sample_rate: int) -> av.AudioResampler:
    # Channels are kept and averaged in numpy: swresample's stereo→mono matrix sums at
    # -3 dB each, which lifts correlated stereo by √2 (peaks above 1.0).
    return av.AudioResampler(format="fltp", rate=sample_rate)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    x = frame.to_ndarray()
    if x.ndim == 2 and x.shape[0] > 1:
        return x.mean(axis=0, dtype=np.float32)
    return x.reshape(-1)


def iter_audio_chunks(open_container: Callable[[], av.container.InputContainer],
                      stream_index: int, sample_rate: int, chunk_s: float = 30.0,
                      max_s: float | None = None, limits: Limits | None = None,
                      name: str = "audio") -> Iterator[AudioChunk]:
    """Decode stream `stream_index` to mono float32 at `sample_rate`, yielding chunks of
    `chunk_s` seconds (the last one shorter). Stops after `max_s` seconds of output."""
    if sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate}")
    if chunk_s <= 0:
        raise ConfigError(f"chunk_s must be positive, got {chunk_s}")
    sample_rate = int(sample_rate)
    limits = limits or Limits()
    chunk_n = max(1, round(chunk_s * sample_rate))
    total_cap = None if max_s is None else max(0, round(max_s * sample_rate))
    hard_cap = round((limits.max_duration_s + 1.0) * sample_rate)

    buf = np.empty(chunk_n, dtype=np.float32)
    fill = 0
    done = 0  # samples already yielded

    def push(x: np.ndarray) -> Iterator[AudioChunk]:
        nonlocal buf, fill, done
        pos = 0
        while pos < x.shape[0]:
            take = min(chunk_n - fill, x.shape[0] - pos)
            buf[fill:fill + take] = x[pos:pos + take]
            fill += take
            pos += take
            if fill == chunk_n:
                out, buf = buf, np.empty(chunk_n, dtype=np.float32)
                yield AudioChunk(out, sample_rate, done / sample_rate)
                done += chunk_n
                fill = 0

    def capped(x: np.ndarray) -> tuple[np.ndarray, bool]:
        produced = done + fill
        if total_cap is not None and produced + x.shape[0] >= total_cap:
            return x[: max(0, total_cap - produced)], True
        if produced + x.shape[0] > hard_cap:
            raise InputTooLargeError(
                f"{name}: audio runs past the {limits.max_duration_s:.0f} s limit")
        return x, False

    try:
        container = open_container()
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"{name}: cannot reopen the file ({exc})") from exc
    with container:
        stream = container.streams[stream_index]
        stream.thread_type = "AUTO"
        resampler = _new_resampler(sample_rate)
        bad = 0
        stop = False
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    # Isolated damaged packets are common in real recordings; skip a few.
                    bad += 1
                    if bad > limits.max_bad_packets or isinstance(exc, av.error.MemoryError):
                        raise CorruptMediaError(
                            f"{name}: audio stops decoding after "
                            f"{(done + fill) / sample_rate:.2f} s ({exc})") from exc
                    continue
                for frame in frames:
                    # The resampler keeps its own timeline; a pts jump must not insert silence.
                    frame.pts = None
                    try:
                        outs = resampler.resample(frame)
                    except ValueError:
                        # Sample rate or layout changed mid-stream: drain, start a new resampler.
                        outs = resampler.resample(None)
                        resampler = _new_resampler(sample_rate)
                        outs = list(outs) + list(resampler.resample(frame))
                    for out in outs:
                        x, stop = capped(_mono(out))
                        yield from push(x)
                        if stop:
                            break
                    if stop:
                        break
                if stop:
                    break
        except av.error.FFmpegError as exc:
            # The demuxer itself failed (damaged container), not one packet.
            raise CorruptMediaError(
                f"{name}: the file breaks off after {(done + fill) / sample_rate:.2f} s of "
                f"audio ({exc})") from exc
        if not stop:
            for out in resampler.resample(None):
                x, stop = capped(_mono(out))
                yield from push(x)
                if stop:
                    break
    if fill:
        yield AudioChunk(buf[:fill].copy(), sample_rate, done / sample_rate)
