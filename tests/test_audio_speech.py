"""Speech activity (Silero VAD bundled in the silero-vad wheel) and the speech engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from avgeo.media import open_media
from avgeo.perception.audio.speech import (
    LANGUAGE_NOTE,
    WINDOW_S,
    SpeechEngine,
    detect_speech,
    segments_from_probs,
    speech_fraction,
    speech_segments,
)
from avgeo.perception.base import REGISTRY, EngineContext


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_jfk_is_mostly_speech(media_dir):
    m = open_media(media_dir / "jfk_speech.flac")
    segs = speech_segments(m)
    assert segs and all(0 <= s < e <= m.duration_s + 1e-6 for s, e in segs)
    assert speech_fraction(segs, m.duration_s) > 0.7
    assert segs[0][0] < 1.0 and segs[-1][1] > 10.0
    atoms = SpeechEngine().atoms(m, EngineContext())
    assert len(atoms) == len(segs)
    for a, (s, e) in zip(atoms, segs, strict=True):
        assert a.kind == "speech" and a.engine == "speech" and a.likelihood is None
        assert (a.start_s, a.end_s) == (s, e)
        assert 0.5 < a.confidence <= 1.0
        assert LANGUAGE_NOTE in a.evidence and a.value["language"] is None


def test_birdsong_has_little_speech(media_dir):
    m = open_media(media_dir / "seattle_xc563936.mp3")
    assert speech_fraction(speech_segments(m), m.duration_s) < 0.1


def test_silence_no_speech(bad_dir):
    m = open_media(bad_dir / "silence_1s.wav")
    assert speech_segments(m) == []
    assert SpeechEngine().atoms(m, EngineContext()) == []


def test_photo_has_no_speech(media_dir):
    m = open_media(media_dir / "lund_01.jpg")
    assert speech_segments(m) == []


def test_detect_speech_on_arrays(media_dir):
    rng = np.random.default_rng(0)
    assert detect_speech(np.zeros(16000, np.float32), 16000) == []
    assert detect_speech(np.zeros(10, np.float32), 16000) == []
    assert detect_speech(0.05 * rng.standard_normal(48000 * 3), 48000) == []
    # Decoded at another rate, the JFK clip still reads as speech.
    x = open_media(media_dir / "jfk_speech.flac").read_audio(sample_rate=22050)
    segs = detect_speech(x, 22050)
    assert speech_fraction(segs, x.size / 22050) > 0.7


def test_thread_count_restored(media_dir):
    before = torch.get_num_threads()
    detect_speech(np.zeros(16000, np.float32) + 1e-3, 16000)
    assert torch.get_num_threads() == before


def test_segments_from_probs():
    w = WINDOW_S
    probs = np.zeros(400)
    probs[10:60] = 0.9  # 1.6 s of speech
    probs[60:70] = 0.4  # between the thresholds: still speech (hysteresis)
    probs[80:120] = 0.8  # after a 0.32 s pause: bridged into the same span
    probs[250:253] = 0.95  # a 0.1 s blip: dropped
    probs[300:340] = 0.7  # after a long pause: a new span
    segs = segments_from_probs(probs)
    assert len(segs) == 2
    (s0, e0), (s1, e1) = segs
    assert s0 == pytest.approx(10 * w - 0.1, abs=1e-3) and e0 == pytest.approx(120 * w + 0.1,
                                                                               abs=1e-3)
    assert s1 == pytest.approx(300 * w - 0.1, abs=1e-3)
    assert e1 == pytest.approx(340 * w + 0.1, abs=1e-3)
    assert segments_from_probs(np.zeros(0)) == []
    assert segments_from_probs(np.full(100, 0.9), duration_s=3.0) == [(0.0, 3.0)]


def test_registered():
    eng = REGISTRY["speech"]()
    assert isinstance(eng, SpeechEngine)
    assert eng.media_kinds == ("audio", "video") and eng.available() == (True, "")
