"""Mains-hum (ENF) detector, grid-frequency table and the hum engine's atom/likelihood."""

from __future__ import annotations

import warnings

import numpy as np
import pycountry
import pytest

from avgeo.media import open_media
from avgeo.perception.audio import grid_frequency as gf
from avgeo.perception.audio.hum import (
    HumAccumulator,
    HumEngine,
    detect_hum,
    grid_likelihood,
    working_rate,
)
from avgeo.perception.base import REGISTRY, EngineContext


def _hum(f0: float, sr: int, dur_s: float, rng, amps=(1.0, 0.6, 0.4, 0.25),
         drift_hz: float = 0.03) -> np.ndarray:
    """A mains-like hum: fundamental + harmonics on a slowly wandering frequency."""
    t = np.arange(int(sr * dur_s)) / sr
    walk = np.cumsum(rng.standard_normal(int(dur_s) + 2))
    walk = drift_hz * walk / (np.abs(walk).max() + 1e-9)
    f = f0 + np.interp(t, np.arange(walk.size), walk)
    phase = 2 * np.pi * np.cumsum(f) / sr
    return sum(a * np.sin((k + 1) * phase + rng.uniform(0, 2 * np.pi))
               for k, a in enumerate(amps))


def _mix(signal: np.ndarray, snr_db: float, rng) -> np.ndarray:
    """Add white noise at a broadband signal-to-noise ratio of `snr_db`."""
    n = rng.standard_normal(signal.size)
    n *= np.sqrt(np.mean(signal**2) / np.mean(n**2) / 10 ** (snr_db / 10))
    return (signal + n).astype(np.float32)


def _pink(n: int, rng) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- real ENF reference ------------------------------------------------------------------

def test_wuhan_reference_is_50hz(media_dir, manifest):
    row = next(r for r in manifest if r["file"] == "wuhan_enf_ref001.wav")
    m = open_media(media_dir / row["file"])
    assert m.sample_rate == 400  # the very-low-rate case
    atoms = HumEngine().atoms(m, EngineContext())
    assert len(atoms) == 1
    a = atoms[0]
    assert a.kind == "mains_hum" and a.engine == "hum"
    v = a.value
    assert v["nominal_hz"] == 50
    assert abs(v["measured_hz"] - 50.03) < 0.1
    assert a.confidence > 0.9 and v["snr_db"] > 20
    # The ENF wanders slowly around 50 Hz: small spread, tiny frame-to-frame steps.
    tr = v["track"]
    assert tr["presence"] > 0.9
    assert abs(tr["mean_hz"] - 50.0) < 0.1 and tr["std_hz"] < 0.1
    assert tr["median_step_hz"] < 0.01
    assert 49.8 < tr["min_hz"] <= tr["max_hz"] < 50.2
    ks = {h["k"] for h in v["harmonics"] if h["significant"]}
    assert 1 in ks and len(ks) >= 2  # fundamental plus harmonics below Nyquist (200 Hz)
    assert a.evidence.startswith("50 Hz mains hum (SNR")
    assert "measured 50.0" in a.evidence and a.evidence.endswith("482 s")
    assert a.start_s == 0.0 and a.end_s == pytest.approx(482.0, abs=1.0)
    assert isinstance(a.likelihood, type(grid_likelihood(50, 1.0)))


def test_jfk_hum_if_any_is_us_grid(media_dir):
    # A 1961 US recording: any hum found must be on the 60 Hz grid, never 50 Hz.
    r = HumEngine().analyse(open_media(media_dir / "jfk_speech.flac"))
    assert r is not None
    if r.detected:
        assert r.nominal_hz == 60


# --- synthetic hum -----------------------------------------------------------------------

@pytest.mark.parametrize(("f0", "sr", "snr_db"), [(60, 16000, -10), (50, 44100, -10),
                                                   (60, 48000, -20), (50, 8000, -15)])
def test_synthetic_hum_in_noise(f0, sr, snr_db):
    rng = np.random.default_rng(f0 + sr)
    x = _mix(_hum(f0, sr, 20.0, rng), snr_db, rng)
    r = detect_hum(x, sr)
    assert r.detected and r.nominal_hz == f0
    assert abs(r.measured_hz - f0) < 0.05
    assert r.snr_db > 10 and r.confidence > 0.5
    assert len(r.significant_harmonics) >= 2


@pytest.mark.parametrize("f0", [50, 60])
def test_low_sample_rate_hum(f0):
    rng = np.random.default_rng(f0)
    x = _mix(_hum(f0, 400, 60.0, rng), 0, rng)
    r = detect_hum(x, 400)
    assert r.detected and r.nominal_hz == f0
    # Harmonics above Nyquist (200 Hz) are not searched.
    assert all(h.freq_hz < 200 for h in r.harmonics)


def test_only_harmonics_no_fundamental():
    # Small speakers and high-passed microphones keep the harmonics of hum, not the 60 Hz.
    rng = np.random.default_rng(3)
    x = _mix(_hum(60, 16000, 30.0, rng, amps=(0.0, 1.0, 0.7, 0.3)), -10, rng)
    r = detect_hum(x, 16000)
    assert r.detected and r.nominal_hz == 60
    assert 1 not in {h.k for h in r.significant_harmonics}


def test_streaming_matches_whole_signal():
    rng = np.random.default_rng(7)
    x = _mix(_hum(50, 2000, 30.0, rng), -10, rng)
    whole = detect_hum(x, 2000)
    acc = HumAccumulator(2000)
    pos = 0
    for n in rng.integers(1, 5000, size=10_000):  # odd-sized chunks, some tiny
        if pos >= x.size:
            break
        acc.add(x[pos:pos + n])
        pos += n
    acc.add(x[pos:])
    streamed = acc.result()
    assert streamed.detected and streamed.nominal_hz == whole.nominal_hz == 50
    assert streamed.measured_hz == pytest.approx(whole.measured_hz, abs=1e-9)
    np.testing.assert_allclose(streamed.track_hz, whole.track_hz, atol=1e-6)


# --- things that are not hum -------------------------------------------------------------

@pytest.mark.parametrize("sr", [400, 2000, 16000, 44100])
@pytest.mark.parametrize("colour", ["white", "pink"])
def test_noise_is_not_hum(sr, colour):
    rng = np.random.default_rng(sr)
    for dur_s in (1.5, 6.0, 25.0 if sr <= 2000 else 12.0):
        for _ in range(2):
            n = int(sr * dur_s)
            x = rng.standard_normal(n) if colour == "white" else _pink(n, rng)
            r = detect_hum(x.astype(np.float32), sr)
            assert not r.detected and r.nominal_hz is None
            assert r.confidence < 0.2


def _note(f: float, t: np.ndarray, sr: int, vibrato: float = 0.0) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f * (1 + vibrato * np.sin(2 * np.pi * 5 * t))) / sr
    return sum(a * np.sin((k + 1) * phase) for k, a in enumerate((1.0, 0.5, 0.3, 0.2)))


@pytest.mark.parametrize("case", ["G1", "B1", "glide", "burst", "chirps"])
def test_music_and_birdsong_near_50_60_are_not_hum(case):
    sr = 16000
    t = np.arange(sr * 20) / sr
    rng = np.random.default_rng(11)
    if case == "G1":  # a sustained bass note just below 50 Hz, with harmonics 98, 147, ...
        x = _note(49.0, t, sr)
    elif case == "B1":  # just above 60 Hz
        x = _note(61.74, t, sr)
    elif case == "glide":  # a slide through 45–65 Hz
        x = np.sin(2 * np.pi * np.cumsum(np.linspace(45, 65, t.size)) / sr)
    elif case == "burst":  # a loud 3 s note at 50 Hz in 20 s: lines come and go, hum stays
        x = _note(50.02, t, sr) * (t < 3)
    else:  # bird-like chirps sweeping through the hum band every second
        chirp = (np.sin(2 * np.pi * np.cumsum(np.linspace(40, 130, sr // 4)) / sr)
                 * np.hanning(sr // 4))
        x = np.tile(np.concatenate([chirp, np.zeros(sr - chirp.size)]), 20)
    r = detect_hum(_mix(x, 0, rng), sr)
    assert not r.detected


def test_silence_and_tiny_inputs(bad_dir):
    m = open_media(bad_dir / "silence_1s.wav")
    assert HumEngine().atoms(m, EngineContext()) == []
    for x, sr in [(np.zeros(16000, np.float32), 16000), (np.zeros(0, np.float32), 16000),
                  (np.zeros(400 * 30), 400), (np.full(8000, 0.5), 8000),
                  (np.ones(100), 16000), (np.zeros(1000), 100)]:
        r = detect_hum(x, sr)
        assert not r.detected and r.nominal_hz is None and r.confidence == 0.0


def test_engine_on_video_and_birdsong(media_dir):
    eng = REGISTRY["hum"]()
    assert isinstance(eng, HumEngine) and eng.name == "hum"
    assert eng.media_kinds == ("audio", "video") and eng.available() == (True, "")
    for name in ("carlsbad_gopro_max.mp4", "seattle_xc563936.mp3"):
        atoms = eng.atoms(open_media(media_dir / name), EngineContext())
        assert len(atoms) <= 1
        # Both are US recordings: hum, if heard at all, must not be called 50 Hz.
        assert all(a.value["nominal_hz"] == 60 for a in atoms)


def test_working_rate():
    assert working_rate(400) == 400 and working_rate(48000) == 2000
    assert working_rate(None) == 2000


# --- grid table and likelihood -----------------------------------------------------------

def test_grid_table():
    assert gf.grid_hz("US") == 60 and gf.grid_hz("fr") == 50 and gf.grid_hz("BR") == 60
    assert gf.grid_hz("CN") == 50 and gf.grid_hz("JP") == "both"
    assert gf.grid_hz("KR") == 60 and gf.grid_hz("SA") == 60 and gf.grid_hz("AR") == 50
    assert gf.grid_hz("XX") is None and gf.grid_hz("AQ") is None
    sets = [gf.HZ_50, gf.HZ_60, gf.BOTH, gf.NO_GRID]
    everyone = {c.alpha_2 for c in pycountry.countries}
    assert set().union(*sets) == everyone
    assert sum(map(len, sets)) == len(everyone)  # disjoint
    assert gf.countries_on(60) == sorted(gf.HZ_60)
    with pytest.raises(ValueError):
        gf.countries_on(55)


def test_japan_split():
    cities = {  # (lat, lon): expected Hz
        (35.68, 139.69): 50,  # Tokyo
        (43.06, 141.35): 50,  # Sapporo
        (37.92, 139.04): 50,  # Niigata
        (38.27, 140.87): 50,  # Sendai
        (35.18, 136.91): 60,  # Nagoya
        (34.69, 135.50): 60,  # Osaka
        (33.59, 130.40): 60,  # Fukuoka
        (26.21, 127.68): 60,  # Naha
        (36.56, 136.66): 60,  # Kanazawa
    }
    lat, lon = np.array(list(cities)).T
    np.testing.assert_array_equal(gf.japan_grid_hz(lat, lon), list(cities.values()))


def test_likelihood_weights():
    lk = grid_likelihood(60, 0.8)
    assert lk.weights["US"] == 1.0 and lk.weights["JP"] == 1.0
    assert lk.weights["FR"] == pytest.approx(1 - 0.99 * 0.8)
    assert grid_likelihood(50, 1.0).weights["US"] == pytest.approx(0.01)
    assert grid_likelihood(50, 0.0).weights["US"] == pytest.approx(1.0)
    assert lk.describe()["nominal_hz"] == 60
    with pytest.raises(ValueError):
        grid_likelihood(55, 1.0)


def test_likelihood_map_continents():
    regions = pytest.importorskip("avgeo.geo.regions")
    from avgeo.geo.grid import global_grid

    grid = global_grid(2)
    codes = regions.cell_countries(grid)
    cont = regions.continent_of(codes)
    for hz, more, less in [(60, "NA", "EU"), (50, "EU", "NA"), (50, "AS", "NA")]:
        logl = grid_likelihood(hz, 0.9).log_map(grid)
        assert logl.shape == (len(grid),) and np.isclose(logl.max(), 0.0)
        p = np.exp(logl) * grid.area_km2
        p /= p.sum()
        assert p[cont == more].sum() > 3 * p[cont == less].sum()
    # Japan follows the longitude rule, not the country code.
    jp = codes == "JP"
    on50 = grid_likelihood(50, 0.9).log_map(grid)[jp] == 0.0
    np.testing.assert_array_equal(on50, gf.japan_grid_hz(grid.lat[jp], grid.lon[jp]) == 50)
    assert on50.any() and (~on50).any()
