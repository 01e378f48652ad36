"""`open_media`: sniff a file's real content, probe it (PyAV or Pillow) and return a
`Media` handle whose decoders stream frames and audio on demand."""

from __future__ import annotations

import contextlib
import os
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from avgeo.errors import (
    AvgeoError,
    CorruptMediaError,
    EmptyMediaError,
    InputTooLargeError,
    MediaError,
    MediaNotFoundError,
    UnsupportedMediaError,
)
from avgeo.media.audio import AudioChunk, iter_audio_chunks
from avgeo.media.limits import DEFAULT_LIMITS, Limits
from avgeo.media.photo import load_photo, probe_photo, read_exif
from avgeo.media.sniff import HEAD_BYTES, Sniff, sniff_bytes
from avgeo.media.video import Frame, iter_frames, iter_scene_changes

#: Audio files up to this size get their duration measured by demuxing (no decoding) in
#: open_media; headers (Xing/VBR, WAV) can claim far more than the file holds.
_EAGER_MEASURE_BYTES = 256 * 1024**2
_IMAGE_FORMATS_AV = {"image2", "mjpeg"}


@dataclass(slots=True)
class StreamInfo:
    """One stream of a container as PyAV reports it; `tags` are its raw metadata."""

    index: int
    type: str  # "audio" | "video" | "data" | "subtitle" | "attachment"
    codec: str | None
    tags: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None
    n_frames: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    attached_pic: bool = False

    @property
    def handler_name(self) -> str | None:
        h = self.tags.get("handler_name")
        # MP4 handler names often carry a Pascal length byte and padding.
        return h.strip("\x00\x0b ").strip() if h else None


@dataclass(slots=True)
class DataPacket:
    """One packet of a data stream (e.g. GoPro GPMF telemetry) at `t_s` seconds."""

    t_s: float | None
    data: bytes


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return v if np.isfinite(v) else None


@dataclass(eq=False)
class Media:
    """A probed photo, recording or video. Cheap to hold: nothing is decoded until
    `image()`, `audio_chunks()`, `read_audio()` or `frames()` is called."""

    path: Path
    kind: str  # "photo" | "audio" | "video"
    size_bytes: int
    format: str
    limits: Limits = DEFAULT_LIMITS
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    n_frames: int | None = None
    codecs: dict[str, str] = field(default_factory=dict)
    streams: list[StreamInfo] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: str | None = None
    orientation: int | None = None
    name: str = ""
    audio_stream: int | None = None
    video_stream: int | None = None
    #: True once `duration_s` of the audio was measured from the packets, not a header.
    duration_measured: bool = False
    _cleanup: Any = field(default=None, repr=False)

    # ---- facts -----------------------------------------------------------------------
    @property
    def has_audio(self) -> bool:
        return self.audio_stream is not None

    @property
    def has_video(self) -> bool:
        return self.video_stream is not None

    def stream_tags(self) -> dict[int, dict[str, str]]:
        """Raw tags of every stream, by stream index."""
        return {s.index: s.tags for s in self.streams}

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (what `avgeo inspect` prints)."""
        return {
            "file": self.name or self.path.name, "kind": self.kind, "format": self.format,
            "size_bytes": self.size_bytes, "duration_s": self.duration_s,
            "sample_rate": self.sample_rate, "channels": self.channels, "width": self.width,
            "height": self.height, "fps": self.fps, "n_frames": self.n_frames,
            "codecs": dict(self.codecs), "creation_time": self.creation_time,
            "tags": dict(self.tags),
            "streams": [{"index": s.index, "type": s.type, "codec": s.codec,
                         "handler": s.handler_name, "duration_s": s.duration_s}
                        for s in self.streams],
        }

    # ---- lifetime --------------------------------------------------------------------
    def close(self) -> None:
        """Delete the temporary copy made for bytes input (no-op for paths)."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> Media:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- validation ------------------------------------------------------------------
    def validate(self) -> None:
        """Cheap checks that must pass before analysis: audio long enough (measured from
        the packets, not trusted from a header), a video's first frame decodes."""
        if self.kind == "audio":
            if not self.duration_measured:
                self._measure_audio()
            self._check_audio_length()
        elif self.kind == "video":
            first = next(self.frames(fps=None, max_frames=1, max_side=64), None)
            if first is None:
                raise EmptyMediaError(f"{self.name}: the video stream holds no decodable frame")

    def _open_av(self) -> av.container.InputContainer:
        return av.open(str(self.path), metadata_errors="replace")

    def _measure_audio(self) -> None:
        """Duration of the audio stream from its packets' timestamps: demuxing only, about
        100× faster than decoding, and immune to a header that promises more than exists."""
        assert self.audio_stream is not None
        try:
            with self._open_av() as c:
                s = c.streams[self.audio_stream]
                tb = float(s.time_base) if s.time_base else None
                lo = hi = None
                total = 0
                for p in c.demux(s):
                    if p.size == 0:
                        continue
                    dur = p.duration or 0
                    total += dur
                    if p.pts is not None:
                        lo = p.pts if lo is None else min(lo, p.pts)
                        hi = p.pts + dur if hi is None else max(hi, p.pts + dur)
        except av.error.FFmpegError as exc:
            raise CorruptMediaError(f"{self.name}: the audio stream cannot be read ({exc})") \
                from exc
        if tb is None:
            return
        span = (hi - lo) if lo is not None and hi is not None else total
        measured = max(span, total) * tb if total or span else 0.0
        if self.duration_s is None or measured < self.duration_s + 1.0:
            self.duration_s = float(measured)
        self.duration_measured = True

    def _check_audio_length(self) -> None:
        d = self.duration_s or 0.0
        if d < self.limits.min_audio_s:
            raise EmptyMediaError(
                f"{self.name}: audio is only {d:.2f} s long, too short to analyse "
                f"(needs at least {self.limits.min_audio_s:g} s)")

    # ---- photos ----------------------------------------------------------------------
    def image(self, max_side: int | None = None):
        """The photo as an upright RGB PIL image (EXIF orientation applied, alpha on
        white). For a video, its first frame."""
        if self.kind == "photo":
            return load_photo(self.path, self.limits, max_side=max_side)
        if self.kind == "video":
            from PIL import Image

            fr = next(self.frames(fps=None, max_frames=1, max_side=max_side), None)
            if fr is None:
                raise EmptyMediaError(f"{self.name}: the video stream holds no decodable frame")
            return Image.fromarray(fr.image)
        raise EmptyMediaError(f"{self.name}: a sound recording has no image",
                              hint="pass a photo or a video")

    def exif(self) -> dict[str, Any]:
        """A photo's EXIF tags by name, GPS IFD under "GPSInfo" ({} for audio/video)."""
        if self.kind != "photo":
            return {}
        return read_exif(self.path, self.limits)

    # ---- audio -----------------------------------------------------------------------
    def audio_chunks(self, sample_rate: int = 48000, chunk_s: float = 30.0,
                     max_s: float | None = None) -> Iterator[AudioChunk]:
        """Mono float32 chunks of `chunk_s` seconds at `sample_rate`, streamed."""
        if self.audio_stream is None:
            raise EmptyMediaError(f"{self.name}: the {self.kind} has no audio stream",
                                  hint="pass a recording or a video with sound")
        return iter_audio_chunks(self._open_av, self.audio_stream, sample_rate, chunk_s,
                                 max_s=max_s, limits=self.limits, name=self.name)

    def read_audio(self, sample_rate: int = 48000, max_s: float | None = None) -> np.ndarray:
        """The whole (or first `max_s` seconds of the) audio as one mono float32 array."""
        parts = [c.samples for c in self.audio_chunks(sample_rate, chunk_s=60.0, max_s=max_s)]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # ---- video -----------------------------------------------------------------------
    def frames(self, fps: float | None = 1.0, max_frames: int | None = None,
               max_side: int | None = None, start_s: float = 0.0,
               skip_unneeded: bool = True,
               stats: dict[str, int] | None = None) -> Iterator[Frame]:
        """RGB frames sampled at `fps` per second from their PTS (None: every frame),
        downscaled so the longer side is at most `max_side`. GOPs holding no wanted
        instant are not decoded unless `skip_unneeded=False` (the frames are the same).
        A photo yields itself once."""
        if self.kind == "photo":
            return iter([Frame(np.asarray(self.image(max_side=max_side)), 0.0, 0)])
        if self.video_stream is None:
            raise EmptyMediaError(f"{self.name}: a sound recording has no frames",
                                  hint="pass a photo or a video")
        return iter_frames(self._open_av, self.video_stream, fps=fps, max_frames=max_frames,
                           max_side=max_side, start_s=start_s, name=self.name,
                           max_bad_packets=self.limits.max_bad_packets,
                           skip_unneeded=skip_unneeded, stats=stats)

    def scene_changes(self, threshold: float = 0.12, probe_fps: float = 4.0,
                      min_gap_s: float = 1.0, max_frames: int | None = None,
                      max_side: int | None = None) -> Iterator[Frame]:
        """The first frame and every frame where a cheap thumbnail difference jumps."""
        if self.video_stream is None:
            raise EmptyMediaError(f"{self.name}: the {self.kind} has no video stream")
        return iter_scene_changes(self._open_av, self.video_stream, threshold=threshold,
                                  probe_fps=probe_fps, min_gap_s=min_gap_s,
                                  max_frames=max_frames, max_side=max_side, name=self.name,
                                  max_bad_packets=self.limits.max_bad_packets)

    def data_packets(self, stream_index: int) -> Iterator[DataPacket]:
        """Raw packets of any stream (e.g. GoPro "GoPro MET" GPMF telemetry)."""
        with self._open_av() as c:
            s = c.streams[stream_index]
            tb = float(s.time_base) if s.time_base else None
            start = s.start_time or 0
            for p in c.demux(s):
                if p.size == 0:
                    continue
                t = (p.pts - start) * tb if p.pts is not None and tb else None
                yield DataPacket(t, bytes(p))

    def find_stream(self, handler_contains: str) -> StreamInfo | None:
        """The first stream whose handler name contains the text (case-insensitive)."""
        key = handler_contains.lower()
        for s in self.streams:
            if s.handler_name and key in s.handler_name.lower():
                return s
        return None


# ---- probing -------------------------------------------------------------------------
def _stream_info(s: av.stream.Stream) -> StreamInfo:
    cc = getattr(s, "codec_context", None)
    codec = getattr(cc, "name", None) if cc is not None else None
    tb = s.time_base
    dur = _float(s.duration * tb) if s.duration is not None and tb else None
    info = StreamInfo(index=s.index, type=s.type, codec=codec,
                      tags={str(k): str(v) for k, v in dict(s.metadata).items()},
                      duration_s=dur, n_frames=int(s.frames) if s.frames else None)
    try:
        info.attached_pic = bool(s.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        info.attached_pic = False
    if s.type == "audio" and cc is not None:
        info.sample_rate = int(cc.sample_rate) if cc.sample_rate else None
        info.channels = int(cc.channels) if getattr(cc, "channels", None) else None
    elif s.type == "video" and cc is not None:
        info.width = int(cc.width) or None
        info.height = int(cc.height) or None
        info.fps = _float(s.average_rate or s.guessed_rate)
    return info


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(HEAD_BYTES)


def _open_photo(path: Path, size: int, sniff: Sniff, limits: Limits, name: str) -> Media:
    info = probe_photo(path, limits)
    return Media(path=path, kind="photo", size_bytes=size, format=info.format, limits=limits,
                 width=info.width, height=info.height, n_frames=info.n_frames,
                 codecs={"image": info.format}, tags=info.tags,
                 creation_time=info.creation_time, orientation=info.orientation, name=name)


def _open_av_media(path: Path, size: int, sniff: Sniff, limits: Limits,
                   name: str) -> Media | None:
    """Probe with PyAV; None when PyAV sees a still image (Pillow opens those)."""
    try:
        c = av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError as exc:
        if sniff.family == "av":
            raise CorruptMediaError(
                f"{name}: looks like {sniff.format} but the container does not parse "
                f"({exc.strerror or exc})") from exc
        raise UnsupportedMediaError(
            f"{name}: not a recognised photo, audio or video file"
            + (" (it is text)" if sniff.looks_like_text else "")) from exc
    with c:
        fmt = c.format.name
        streams = [_stream_info(s) for s in c.streams]
        tags = {str(k): str(v) for k, v in dict(c.metadata).items()}
        container_s = _float(c.duration / av.time_base) if c.duration else None
        if fmt in _IMAGE_FORMATS_AV or fmt.endswith("_pipe"):
            return None
        videos = [s for s in streams if s.type == "video" and not s.attached_pic
                  and s.codec is not None]
        audios = [s for s in streams if s.type == "audio" and s.codec is not None]
        if not videos and not audios:
            undecodable = [s for s in streams if s.type in ("audio", "video")]
            if undecodable:
                raise UnsupportedMediaError(
                    f"{name}: no decoder for its {undecodable[0].type} stream",
                    hint="convert it to a common codec (H.264/AAC/FLAC/WAV), e.g. with ffmpeg")
            raise EmptyMediaError(f"{name}: the {fmt} container holds no audio or video stream")
        best_a = best_v = None
        try:
            b = c.streams.best("audio")
            best_a = b.index if b is not None and any(s.index == b.index for s in audios) \
                else None
            b = c.streams.best("video")
            best_v = b.index if b is not None and any(s.index == b.index for s in videos) \
                else None
        except Exception:  # older PyAV: fall back to the first stream of each type
            pass
        a = next((s for s in audios if s.index == best_a), audios[0] if audios else None)
        v = next((s for s in videos if s.index == best_v), videos[0] if videos else None)
    kind = "video" if v is not None else "audio"
    main = v if v is not None else a
    duration = main.duration_s if main is not None and main.duration_s else container_s
    created = tags.get("creation_time") or tags.get("date") or next(
        (s.tags["creation_time"] for s in streams if "creation_time" in s.tags), None)
    codecs = {}
    if v is not None and v.codec:
        codecs["video"] = v.codec
    if a is not None and a.codec:
        codecs["audio"] = a.codec
    m = Media(path=path, kind=kind, size_bytes=size, format=fmt, limits=limits,
              duration_s=duration, sample_rate=a.sample_rate if a else None,
              channels=a.channels if a else None, width=v.width if v else None,
              height=v.height if v else None, fps=v.fps if v else None,
              n_frames=v.n_frames if v else None, codecs=codecs, streams=streams, tags=tags,
              creation_time=created, name=name, audio_stream=a.index if a else None,
              video_stream=v.index if v else None)
    if m.width and m.height and m.width * m.height > limits.max_pixels:
        raise InputTooLargeError(f"{name}: video frames are {m.width}×{m.height}, over the "
                                 f"{limits.max_pixels / 1e6:.0f} MP limit")
    if kind == "audio" and size <= _EAGER_MEASURE_BYTES:
        m._measure_audio()
        m._check_audio_length()
    if m.duration_s is not None and m.duration_s > limits.max_duration_s:
        raise InputTooLargeError(f"{name}: {m.duration_s / 3600:.1f} h long, over the "
                                 f"{limits.max_duration_s / 3600:.1f} h limit")
    return m


def _open_path(path: Path, limits: Limits, name: str) -> Media:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise MediaNotFoundError(f"{name}: no such file") from exc
    except OSError as exc:
        raise MediaNotFoundError(f"{name}: cannot access it ({exc.strerror})") from exc
    if not path.is_file():
        raise MediaNotFoundError(f"{name}: not a regular file", hint="pass a media file")
    size = st.st_size
    if size == 0:
        raise EmptyMediaError(f"{name}: the file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise InputTooLargeError(f"{name}: {size / 1e9:.1f} GB, over the "
                                 f"{limits.max_bytes / 1e9:.1f} GB limit")
    try:
        head = _head(path)
    except OSError as exc:
        raise MediaNotFoundError(f"{name}: cannot read it ({exc.strerror})") from exc
    sniff = sniff_bytes(head)
    if sniff.family == "image":
        return _open_photo(path, size, sniff, limits, name)
    m = _open_av_media(path, size, sniff, limits, name)
    if m is None:
        # PyAV calls it an image (e.g. a format we do not sniff): let Pillow decode it.
        return _open_photo(path, size, sniff, limits, name)
    return m


def open_media(source: str | os.PathLike | bytes | bytearray | memoryview,
               limits: Limits | None = None, name: str | None = None) -> Media:
    """Probe a photo, recording or video from a path or its bytes. The kind comes from
    the content, never the extension. Raises MediaError subclasses for bad input."""
    limits = limits or DEFAULT_LIMITS
    if isinstance(source, bytes | bytearray | memoryview):
        data = memoryview(source)
        label = name or "upload"
        if data.nbytes == 0:
            raise EmptyMediaError(f"{label}: the upload is empty (0 bytes)")
        if data.nbytes > limits.max_bytes:
            raise InputTooLargeError(f"{label}: {data.nbytes / 1e9:.1f} GB, over the "
                                     f"{limits.max_bytes / 1e9:.1f} GB limit")
        # A real file keeps every decoder (and engines that want a path) on one code path.
        fd, tmp = tempfile.mkstemp(prefix="avgeo-", suffix=Path(label).suffix[:16])
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            m = _open_checked(Path(tmp), limits, label)
        except BaseException:
            os.unlink(tmp)
            raise
        m._cleanup = weakref.finalize(m, _unlink_quietly, tmp)
        return m
    path = Path(source).expanduser()
    return _open_checked(path, limits, name or path.name)


def _open_checked(path: Path, limits: Limits, label: str) -> Media:
    """`_open_path`, with anything unexpected from the decoders turned into MediaError."""
    try:
        return _open_path(path, limits, label)
    except AvgeoError:
        raise
    except av.error.FFmpegError as exc:  # anything PyAV raises that we did not map
        raise CorruptMediaError(f"{label}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise MediaError(f"{label}: cannot be opened ({exc})") from exc


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
