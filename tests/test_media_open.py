"""open_media on the shared files: kinds, durations, sample and frame counts against the
manifest's measured notes, and the right error class for every broken input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from avgeo.errors import (
    AvgeoError,
    CorruptMediaError,
    EmptyMediaError,
    InputTooLargeError,
    MediaNotFoundError,
    UnsupportedMediaError,
)
from avgeo.media import Limits, open_media, sniff_bytes


def _audio_facts(notes: str) -> tuple[int, int, int, float] | None:
    """(sample_rate, channels, samples, duration_s) from e.g. "48000 Hz 1 ch, 3455179
    samples = 71.98 s"."""
    m = re.search(r"(\d+) Hz (\d+) ch, (\d+) samples = ([\d.]+) s", notes)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3]), float(m[4]))


def _rows(manifest, kind):
    return [r for r in manifest if r["kind"] == kind]


def test_every_shared_file_opens_with_its_kind(manifest, media_dir):
    assert len(manifest) >= 20
    for row in manifest:
        m = open_media(media_dir / row["file"])
        assert m.kind == row["kind"], row["file"]
        assert m.size_bytes == (media_dir / row["file"]).stat().st_size
        m.validate()


def test_audio_durations_and_sample_counts_match_manifest(manifest, media_dir):
    rows = [r for r in manifest if r["kind"] == "audio"]
    assert len(rows) >= 5
    for row in rows:
        sr, ch, n, dur_s = _audio_facts(row["notes"])
        m = open_media(media_dir / row["file"])
        assert m.sample_rate == sr and m.channels == ch, row["file"]
        assert m.duration_s == pytest.approx(dur_s, abs=0.1), row["file"]
        x = m.read_audio(sr)  # native rate: the resampler must pass every sample through
        assert x.dtype == np.float32 and x.ndim == 1
        assert x.shape[0] == n, row["file"]
        assert np.isfinite(x).all() and 0 < np.abs(x).max() <= 1.0


@pytest.mark.parametrize("target_sr", [16000, 48000])
def test_resampled_lengths(manifest, media_dir, target_sr):
    for row in _rows(manifest, "audio"):
        sr, _, n, _ = _audio_facts(row["notes"])
        x = open_media(media_dir / row["file"]).read_audio(target_sr)
        assert abs(x.shape[0] - n * target_sr / sr) <= 4, row["file"]


def test_video_facts_match_manifest(manifest, media_dir):
    rows = _rows(manifest, "video")
    assert rows
    for row in rows:
        notes = row["notes"]
        w, h = map(int, re.search(r"(\d+)x(\d+)", notes).groups())
        fps = float(re.search(r"([\d.]+) fps", notes)[1])
        n_frames = int(re.search(r"(\d+) frames decoded", notes)[1])
        container_s = float(re.search(r"container ([\d.]+) s", notes)[1])
        m = open_media(media_dir / row["file"])
        assert (m.width, m.height) == (w, h)
        assert m.fps == pytest.approx(fps, abs=0.01)
        assert m.duration_s == pytest.approx(container_s, abs=0.1)
        assert m.has_video and m.codecs["video"] in notes
        frames = list(m.frames(fps=None, max_side=64))
        assert len(frames) == n_frames
        ts = [f.t_s for f in frames]
        assert ts == sorted(ts) and ts[0] == pytest.approx(0.0, abs=1e-6)
        audio = _audio_facts(notes)
        if audio is not None:
            sr, ch, n, _ = audio
            assert m.has_audio and (m.sample_rate, m.channels) == (sr, ch)
            assert m.read_audio(sr).shape[0] == n


def test_gopro_tags_and_data_stream(media_dir):
    m = open_media(media_dir / "carlsbad_gopro_max.mp4")
    assert m.creation_time is not None and m.creation_time.startswith("20")
    assert m.tags, "container tags must be exposed raw"
    met = m.find_stream("gopro met")
    assert met is not None and met.type == "data"
    packets = list(m.data_packets(met.index))
    assert packets and all(p.data for p in packets)
    # GPMF payloads are KLV: a 4-character key first ("DEVC").
    assert packets[0].data[:4] == b"DEVC"
    assert m.stream_tags()[met.index]["handler_name"]


def test_sampled_frames_at_one_fps(media_dir):
    m = open_media(media_dir / "carlsbad_gopro_max.mp4")
    frames = list(m.frames(fps=1.0))
    assert len(frames) == int(m.duration_s) + 1
    for k, f in enumerate(frames):
        assert f.image.shape == (m.height, m.width, 3) and f.image.dtype == np.uint8
        assert f.t_s == pytest.approx(k, abs=1 / m.fps)
        assert f.index == k
    small = list(m.frames(fps=2.0, max_side=200, max_frames=3))
    assert len(small) == 3 and max(small[0].image.shape[:2]) <= 200


def test_photos_match_manifest_sizes(manifest, media_dir):
    for row in _rows(manifest, "photo"):
        w, h = map(int, re.search(r"(\d+)x(\d+)", row["notes"]).groups())
        m = open_media(media_dir / row["file"])
        assert (m.width, m.height) == (w, h), row["file"]
        im = m.image()
        assert im.mode == "RGB"
        swap = m.orientation in (5, 6, 7, 8)
        assert im.size == ((h, w) if swap else (w, h))
        assert m.audio_stream is None and not m.has_audio


@pytest.mark.parametrize(("name", "error"), [
    ("clip.mp4", UnsupportedMediaError),
    ("empty.wav", EmptyMediaError),
    ("truncated_10k.mp3", EmptyMediaError),
    ("bomb_30000x30000.png", InputTooLargeError),
])
def test_bad_inputs_raise_the_right_error(bad_dir, name, error):
    with pytest.raises(error) as info:
        m = open_media(bad_dir / name)
        m.validate()
        m.read_audio(16000)
    assert info.value.hint and "\n" not in info.value.one_line()


def test_every_bad_file_is_covered(bad_dir):
    covered = {"clip.mp4", "empty.wav", "truncated_10k.mp3", "bomb_30000x30000.png",
               "silence_1s.wav"}
    assert {p.name for p in bad_dir.iterdir()} <= covered


def test_truncated_mp3_message_says_how_short(bad_dir):
    with pytest.raises(EmptyMediaError, match=r"only 0\.1\d s long, too short"):
        open_media(bad_dir / "truncated_10k.mp3")
    # With the minimum lowered it opens, and decoding really yields only ~0.12 s.
    m = open_media(bad_dir / "truncated_10k.mp3", Limits(min_audio_s=0.0))
    assert 0.1 < m.read_audio(48000).shape[0] / 48000 < 0.15


def test_bomb_is_refused_before_decoding_and_probes_under_a_raised_limit(bad_dir):
    m = open_media(bad_dir / "bomb_30000x30000.png", Limits(max_pixels=10**9))
    assert (m.width, m.height) == (30000, 30000)  # header only; nothing decoded
    with pytest.raises(InputTooLargeError, match="30000×30000"):
        open_media(bad_dir / "bomb_30000x30000.png")


def test_silent_wav_decodes_to_zeros(bad_dir):
    m = open_media(bad_dir / "silence_1s.wav")
    assert m.kind == "audio" and m.duration_s == pytest.approx(1.0)
    x = m.read_audio(16000)
    assert x.shape == (16000,) and not x.any()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MediaNotFoundError):
        open_media(tmp_path / "nope.wav")
    with pytest.raises(MediaNotFoundError):
        open_media(tmp_path)


def test_bytes_input_matches_path_input(media_dir):
    for name in ("jura_dawn_0600.wav", "sign_korean.png", "carlsbad_gopro_max.mp4"):
        path = media_dir / name
        a = open_media(path)
        b = open_media(path.read_bytes(), name=name)
        assert (b.kind, b.duration_s, b.width, b.height) == (a.kind, a.duration_s, a.width,
                                                             a.height)
        tmp = Path(b.path)
        assert tmp.exists() and tmp != path
        if a.kind == "audio":
            assert np.array_equal(a.read_audio(16000), b.read_audio(16000))
        elif a.kind == "photo":
            assert np.array_equal(np.asarray(a.image()), np.asarray(b.image()))
        else:
            assert np.array_equal(next(a.frames()).image, next(b.frames()).image)
        b.close()
        assert not tmp.exists()
    with pytest.raises(EmptyMediaError):
        open_media(b"")
    with pytest.raises(UnsupportedMediaError):
        open_media(b"hello, this is not media at all\n" * 4)


def test_extension_is_ignored(media_dir, tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_bytes((media_dir / "jura_dawn_0600.wav").read_bytes())
    assert open_media(fake).kind == "audio"
    fake2 = tmp_path / "song.mp3"
    fake2.write_bytes((media_dir / "arezzo_dscn0010.jpg").read_bytes())
    assert open_media(fake2).kind == "photo"


def test_limits(media_dir):
    with pytest.raises(InputTooLargeError, match="limit"):
        open_media(media_dir / "wuhan_enf_ref001.wav", Limits(max_duration_s=60))
    with pytest.raises(InputTooLargeError):
        open_media(media_dir / "lund_01.jpg", Limits(max_bytes=1000))
    with pytest.raises(InputTooLargeError):
        open_media(media_dir / "lund_01.jpg", Limits(max_pixels=500_000))
    with pytest.raises(AvgeoError):
        Limits(max_pixels=0)


def test_corrupt_stream_mid_way_says_how_far_it_got(media_dir):
    data = bytearray((media_dir / "seattle_xc563936.mp3").read_bytes())
    n = len(data)
    rng = np.random.default_rng(0)
    data[n // 2: n // 2 + n // 4] = rng.integers(0, 256, n // 4, dtype=np.uint8).tobytes()
    m = open_media(bytes(data), name="damaged.mp3")
    with pytest.raises(CorruptMediaError, match=r"after \d+\.\d+ s"):
        m.read_audio(16000)


def test_wrong_kind_requests_are_clear_errors(media_dir):
    with pytest.raises(EmptyMediaError):
        list(open_media(media_dir / "jura_dawn_0600.wav").frames())
    with pytest.raises(EmptyMediaError):
        open_media(media_dir / "lund_01.jpg").audio_chunks(16000)


def test_sniff():
    assert sniff_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20).format == "jpeg"
    assert sniff_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 20).family == "image"
    assert sniff_bytes(b"\0\0\0\x18ftypisom" + b"\0" * 20).family == "av"
    assert sniff_bytes(b"RIFF\0\0\0\0WAVEfmt ").format == "wav"
    assert sniff_bytes(b"just some text\n").looks_like_text


def test_truncated_mp4_is_corrupt_not_unsupported(media_dir):
    data = (media_dir / "carlsbad_gopro_max.mp4").read_bytes()
    with pytest.raises(CorruptMediaError, match="looks like mp4"):
        open_media(data[: len(data) // 2], name="cut.mp4")
