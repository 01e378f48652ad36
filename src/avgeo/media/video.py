"""Streaming video frame sampling with PyAV: frames picked by PTS at a requested rate, only
the picked frames converted to RGB (and downscaled in the same swscale pass)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np

from avgeo.errors import ConfigError, CorruptMediaError


@dataclass(slots=True)
class Frame:
    """One RGB frame (`image`: H×W×3 uint8, upright) at `t_s` seconds from the stream start.
    `index` counts yielded frames; `scene_score` is set by scene-change sampling (mean
    absolute difference to the previous probe, 0..1)."""

    image: np.ndarray
    t_s: float
    index: int
    scene_score: float | None = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


def _target_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    # Even sizes keep swscale on its fast paths and chroma planes aligned.
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def _to_rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    rot = int(getattr(frame, "rotation", 0) or 0)
    w, h = _target_size(frame.width, frame.height, max_side)
    if (w, h) != (frame.width, frame.height):
        img = frame.reformat(width=w, height=h, format="rgb24",
                             interpolation="AREA").to_ndarray()
    else:
        img = frame.to_ndarray(format="rgb24")
    k = round(rot / 90) % 4
    if k:
        # Display matrix angle is counter-clockwise, as is np.rot90 for positive k.
        img = np.ascontiguousarray(np.rot90(img, k=k))
    return img


class _Cursor:
    """The next instant (s) the consumer wants a frame for; None wants every frame."""

    __slots__ = ("decoded_frames", "next_t", "skipped_packets")

    def __init__(self, next_t: float | None) -> None:
        self.next_t = next_t
        self.skipped_packets = 0
        self.decoded_frames = 0


def _decoded(open_container: Callable[[], av.container.InputContainer], stream_index: int,
             name: str, max_bad_packets: int,
             cursor: _Cursor | None = None) -> Iterator[tuple[av.VideoFrame, float, float]]:
    """Decoded frames of the stream with their time in seconds from the stream start and
    half the nominal frame period (the tolerance for picking frames by time).

    With a `cursor`, packets are held back instead of decoded until one reaches the next
    wanted instant; when a keyframe arrives first, the held packets are dropped undecoded
    (nothing after a keyframe references them). The frames that do come out are exactly
    those a full decode gives. Only done while packets arrive in presentation order
    (pts == dts): with B-frame reordering an open GOP could reference dropped packets."""
    try:
        container = open_container()
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"{name}: cannot reopen the file ({exc})") from exc
    with container:
        stream = container.streams[stream_index]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else 0.0
        start = stream.start_time or 0
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        half_period = 0.5 / rate
        n_seen = 0
        last_t = 0.0
        bad = 0
        skipping = cursor is not None and tb > 0
        held: list[av.Packet] = []
        try:
            for packet in container.demux(stream):
                if skipping and packet.pts is not None and packet.size > 0 \
                        and packet.pts == packet.dts:
                    want = cursor.next_t  # type: ignore[union-attr]
                    if packet.is_keyframe and held:
                        cursor.skipped_packets += len(held)  # type: ignore[union-attr]
                        held = []
                    if want is not None and (packet.pts - start) * tb < want - half_period:
                        held.append(packet)
                        continue
                elif skipping and packet.size > 0:
                    skipping = False  # reordered or untimed packets: decode everything
                elif packet.size == 0 and held:
                    # End of stream: nothing held can reach the wanted instant any more.
                    cursor.skipped_packets += len(held)  # type: ignore[union-attr]
                    held = []
                batch = [*held, packet] if held else [packet]
                held = []
                for pk in batch:
                    try:
                        frames = pk.decode()
                    except av.error.FFmpegError as exc:
                        bad += 1
                        if bad > max_bad_packets:
                            raise CorruptMediaError(
                                f"{name}: video stops decoding after {last_t:.2f} s "
                                f"({n_seen} frames; {exc})") from exc
                        continue
                    for frame in frames:
                        pts = frame.pts
                        t = (pts - start) * tb if pts is not None and tb else n_seen / rate
                        n_seen += 1
                        last_t = t
                        if cursor is not None:
                            cursor.decoded_frames = n_seen
                        yield frame, t, half_period
        except av.error.FFmpegError as exc:
            # The demuxer itself failed (damaged container), not one packet.
            raise CorruptMediaError(f"{name}: the file breaks off after {last_t:.2f} s of "
                                    f"video ({n_seen} frames; {exc})") from exc


def iter_frames(open_container: Callable[[], av.container.InputContainer], stream_index: int,
                fps: float | None = 1.0, max_frames: int | None = None,
                max_side: int | None = None, start_s: float = 0.0, name: str = "video",
                max_bad_packets: int = 16, skip_unneeded: bool = True,
                stats: dict[str, int] | None = None) -> Iterator[Frame]:
    """Frames at `fps` per second of stream time: for each instant start_s + k/fps the
    first frame less than half a frame period before it (for constant-rate video, the
    nearest frame). `fps=None` yields every frame. `skip_unneeded` leaves GOPs that hold
    no wanted instant undecoded (same output, less work); `stats`, if given, receives
    "decoded_frames" and "skipped_packets"."""
    if fps is not None and fps <= 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames <= 0:
        return
    step = None if fps is None else 1.0 / fps
    next_t = start_s
    count = 0
    cursor = _Cursor(start_s if skip_unneeded else None)
    # tol is half a source frame: PTS rounding must not push a pick to the next frame.
    for frame, t, tol in _decoded(open_container, stream_index, name, max_bad_packets,
                                  cursor):
        if t < start_s - tol:
            continue
        if step is not None:
            if t < next_t - tol:
                continue
            # Skip grid instants that fell in a gap (variable frame rate, dropped frames).
            next_t += step * max(1, int((t - next_t + tol) // step) + 1)
        if skip_unneeded:
            cursor.next_t = next_t if step is not None else None
        if stats is not None:
            stats.update(decoded_frames=cursor.decoded_frames,
                         skipped_packets=cursor.skipped_packets)
        yield Frame(_to_rgb(frame, max_side), float(t), count)
        count += 1
        if max_frames is not None and count >= max_frames:
            return
    if stats is not None:
        stats.update(decoded_frames=cursor.decoded_frames,
                     skipped_packets=cursor.skipped_packets)


def _probe_gray(frame: av.VideoFrame, side: int = 32) -> np.ndarray:
    w, h = _target_size(frame.width, frame.height, side)
    return frame.reformat(width=w, height=h, format="gray",
                          interpolation="AREA").to_ndarray().astype(np.float32) / 255.0


def iter_scene_changes(open_container: Callable[[], av.container.InputContainer],
                       stream_index: int, threshold: float = 0.12, probe_fps: float = 4.0,
                       min_gap_s: float = 1.0, max_frames: int | None = None,
                       max_side: int | None = None, name: str = "video",
                       max_bad_packets: int = 16) -> Iterator[Frame]:
    """The first frame, then each frame whose tiny grayscale thumbnail differs from the
    previous probe by more than `threshold` (mean absolute difference, 0..1). Probes run at
    `probe_fps`; cuts closer than `min_gap_s` to the last one are merged."""
    if probe_fps <= 0 or threshold < 0:
        raise ConfigError("probe_fps must be positive and threshold >= 0")
    step = 1.0 / probe_fps
    next_t = 0.0
    prev: np.ndarray | None = None
    last_cut = -np.inf
    count = 0
    cursor = _Cursor(0.0)
    for frame, t, tol in _decoded(open_container, stream_index, name, max_bad_packets,
                                  cursor):
        if t < next_t - tol:
            continue
        next_t += step * max(1, int((t - next_t + tol) // step) + 1)
        cursor.next_t = next_t
        probe = _probe_gray(frame)
        score = 1.0 if prev is None or prev.shape != probe.shape else float(
            np.mean(np.abs(probe - prev)))
        prev = probe
        if count == 0 or (score > threshold and t - last_cut >= min_gap_s):
            yield Frame(_to_rgb(frame, max_side), float(t), count, scene_score=score)
            count += 1
            last_cut = t
            if max_frames is not None and count >= max_frames:
                return
