"""Video sampling on videos the tests encode themselves (frame index painted as grey
level), audio-only and cover-art MP4s, rotation, scene cuts and bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from avgeo.media import open_media


def _index_colour(i: int) -> tuple[int, int, int]:
    """Frame index as colour: red carries i % 10, green i // 10 (steps of 20 survive H.264)."""
    return (20 + 20 * (i % 10), 20 + 20 * (i // 10 % 11), 128)


def write_video(path: Path, seconds: float, fps: int, size: tuple[int, int] = (64, 48),
                audio_sr: int | None = None, audio_codec: str = "aac",
                colour=None, rotation: int | None = None, video: bool = True,
                cover_art: bool = False) -> Path:
    """Encode a small test file. Frame i is uniformly `colour(i)` (default: its index as a
    colour); audio is a 440 Hz tone at -20 dBFS."""
    w, h = size
    with av.open(str(path), "w") as out:
        vs = None
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"preset": "ultrafast", "g": str(2 * fps)}
            if rotation is not None:
                vs.set_display_rotation(rotation)
        art = None
        if cover_art:
            art = out.add_stream("mjpeg")
            art.width, art.height, art.pix_fmt = 32, 32, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
        aus = None
        if audio_sr is not None:
            aus = out.add_stream(audio_codec, rate=audio_sr, layout="mono")
        if art is not None:
            pic = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            pic = pic.reformat(format="yuvj420p")
            pic.pts = 0
            for p in [*art.encode(pic), *art.encode()]:
                out.mux(p)
        if vs is not None:
            for i in range(round(seconds * fps)):
                rgb = colour(i) if colour else _index_colour(i)
                img = np.empty((h, w, 3), np.uint8)
                img[:] = rgb
                fr = av.VideoFrame.from_ndarray(img, format="rgb24")
                fr.pts = i
                for p in vs.encode(fr):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        if aus is not None:
            n = round(seconds * audio_sr)
            block = aus.codec_context.frame_size or 4096
            fmt = aus.codec_context.format.name
            t = np.arange(block) / audio_sr
            for k in range(0, n, block):
                x = 0.1 * np.sin(2 * np.pi * 440 * (t + k / audio_sr))[: min(block, n - k)]
                if fmt.startswith("s16"):
                    arr, f = (x * 32767).astype(np.int16)[None], "s16"
                else:
                    arr, f = x.astype(np.float32)[None], "flt"
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=f,
                                                layout="mono")
                af.sample_rate, af.pts = audio_sr, k
                for p in aus.encode(af):
                    out.mux(p)
            for p in aus.encode():
                out.mux(p)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", 10, 10, audio_sr=16000)


def _index_of(img: np.ndarray) -> int:
    r, g, _ = img.reshape(-1, 3).mean(axis=0)
    return round(float(r - 20) / 20) + 10 * round(float(g - 20) / 20)


def test_frames_are_picked_by_pts(clip):
    m = open_media(clip)
    assert m.kind == "video" and m.fps == pytest.approx(10) and m.n_frames == 100
    assert m.codecs == {"video": "h264", "audio": "aac"}
    frames = list(m.frames(fps=1.0))
    assert [round(f.t_s, 3) for f in frames] == [float(k) for k in range(10)]
    assert [_index_of(f.image) for f in frames] == [10 * k for k in range(10)]
    third = list(m.frames(fps=3.0))
    # The frame nearest each instant k/3: frames 0, 3, 7, 10, 13, 17, ...
    expect = [round(k * 10 / 3) for k in range(30)]
    assert [_index_of(f.image) for f in third] == expect
    assert len(list(m.frames(fps=None))) == 100
    assert [f.index for f in m.frames(fps=2.0, max_frames=4)] == [0, 1, 2, 3]
    late = list(m.frames(fps=1.0, start_s=7.5))
    assert [_index_of(f.image) for f in late] == [75, 85, 95]


def test_frames_downscale(tmp_path):
    m = open_media(write_video(tmp_path / "wide.mp4", 1, 5, size=(320, 180)))
    img = next(m.frames(max_side=64)).image
    assert img.shape == (36, 64, 3) and img.dtype == np.uint8
    assert next(m.frames()).image.shape == (180, 320, 3)


def test_display_rotation_is_applied(tmp_path):
    def colour(i):
        return (200, 30, 30)

    m = open_media(write_video(tmp_path / "rot.mp4", 1, 5, size=(64, 32), colour=colour,
                               rotation=90))
    assert next(m.frames()).image.shape == (64, 32, 3)  # portrait after rotation


def test_audio_only_mp4_is_audio(tmp_path):
    m = open_media(write_video(tmp_path / "voice.mp4", 2, 10, audio_sr=16000, video=False))
    assert m.kind == "audio" and not m.has_video and m.codecs == {"audio": "aac"}
    assert m.duration_s == pytest.approx(2.0, abs=0.1)
    x = m.read_audio(16000)
    spec = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(x.size, 1 / 16000)[spec.argmax()] == pytest.approx(440, abs=2)


def test_cover_art_mp4_is_audio(tmp_path):
    m = open_media(write_video(tmp_path / "song.mp4", 2, 10, audio_sr=16000, video=False,
                               cover_art=True))
    assert any(s.attached_pic for s in m.streams)
    assert m.kind == "audio" and not m.has_video


def test_video_audio_track(clip):
    m = open_media(clip)
    chunks = list(m.audio_chunks(8000, chunk_s=3.0))
    assert [c.start_s for c in chunks] == [0.0, 3.0, 6.0, 9.0]
    assert all(c.samples.shape[0] == 24000 for c in chunks[:-1])
    total_s = sum(c.duration_s for c in chunks)
    assert total_s == pytest.approx(10.0, abs=0.1)


def test_scene_changes(tmp_path):
    palette = [(230, 40, 40), (40, 230, 40), (40, 40, 230)]

    def colour(i):
        return palette[0 if i < 30 else 1 if i < 70 else 2]  # cuts at 3 s and 7 s

    m = open_media(write_video(tmp_path / "cuts.mp4", 10, 10, colour=colour))
    cuts = list(m.scene_changes(probe_fps=10.0))
    assert [round(c.t_s, 1) for c in cuts] == [0.0, 3.0, 7.0]
    assert cuts[1].scene_score > 0.1 and np.argmax(cuts[2].image.mean(axis=(0, 1))) == 2


def test_validate_and_first_frame_image(clip):
    m = open_media(clip)
    m.validate()
    assert m.image().size == (64, 48)


_STREAM_SCRIPT = textwrap.dedent("""
    import json, sys
    from avgeo.media import open_media

    def hwm_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    m = open_media(sys.argv[1])
    base = hwm_kb()
    n_frames = 0
    for fr in m.frames(fps=1.0):
        n_frames += 1
    audio_s = 0.0
    for ch in m.audio_chunks(16000, chunk_s=30.0):
        audio_s += ch.duration_s
    print(json.dumps({"base_kb": base, "peak_kb": hwm_kb(), "frames": n_frames,
                      "audio_s": audio_s, "duration_s": m.duration_s}))
""")


def test_twenty_minute_video_streams_in_bounded_memory(tmp_path):
    path = write_video(tmp_path / "long.mkv", 20 * 60, 2, size=(64, 64), audio_sr=8000,
                       audio_codec="pcm_s16le")
    out = subprocess.run([sys.executable, "-c", _STREAM_SCRIPT, str(path)], check=True,
                         capture_output=True, text=True, timeout=300)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["duration_s"] == pytest.approx(1200, abs=1)
    assert r["frames"] == 1200
    assert r["audio_s"] == pytest.approx(1200, abs=0.5)
    growth_mb = (r["peak_kb"] - r["base_kb"]) / 1024
    # 20 min of 16 kHz float32 audio alone would be 77 MB if it were held at once.
    assert growth_mb < 150, growth_mb


def _same_frames(a, b) -> bool:
    return len(a) == len(b) and all(
        x.t_s == y.t_s and np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("fps", [1.0, 3.0, 0.4])
def test_skipping_gops_gives_the_same_frames(media_dir, fps):
    m = open_media(media_dir / "carlsbad_gopro_max.mp4")
    fast, full = {}, {}
    a = list(m.frames(fps=fps, max_side=128, stats=fast))
    b = list(m.frames(fps=fps, max_side=128, skip_unneeded=False, stats=full))
    assert _same_frames(a, b)
    assert full["decoded_frames"] == m.n_frames and full["skipped_packets"] == 0
    assert fast["skipped_packets"] > 0 and fast["decoded_frames"] < full["decoded_frames"]


def test_reordered_b_frame_stream_is_decoded_in_full(tmp_path):
    path = tmp_path / "bframes.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.options = {"preset": "medium", "bf": "2", "g": "10"}
        for i in range(60):
            img = np.empty((48, 64, 3), np.uint8)
            img[:] = _index_colour(i)
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts = i
            for p in vs.encode(fr):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    m = open_media(path)
    stats: dict[str, int] = {}
    a = list(m.frames(fps=1.0, stats=stats))
    assert _same_frames(a, list(m.frames(fps=1.0, skip_unneeded=False)))
    assert [_index_of(f.image) for f in a] == [10 * k for k in range(6)]
