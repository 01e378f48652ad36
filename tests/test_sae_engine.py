"""The `sae` engine on real audio: shipped checkpoint, atoms on a shared clip, none on silence;
atom maps from the ranges of the species an atom names, never double-counting a detection."""

from __future__ import annotations

import numpy as np
import pytest

from avgeo.perception.base import REGISTRY, EngineContext


@pytest.fixture(scope="module")
def engine():
    import avgeo.perception.audio.sae.engine  # noqa: F401  (registers "sae")

    eng = REGISTRY["sae"]()
    ok, why = eng.available()
    if not ok:
        pytest.skip(why)
    return eng


def test_shipped_checkpoint_is_small_and_versioned():
    from avgeo.perception.audio.sae.engine import DEFAULT_WEIGHTS, load_weights

    assert DEFAULT_WEIGHTS.stat().st_size < 2_000_000
    sae = load_weights()
    assert sae.model.cfg.d_in == 1024
    assert len(sae.atoms) == sae.model.cfg.n_latents
    assert 0.0 < sae.stats["r2"] <= 1.0


def test_engine_emits_atoms_on_a_clip(engine, media_dir):
    from avgeo.media import open_media

    atoms = engine.atoms(open_media(media_dir / "colombia_spinetail.wav"), EngineContext())
    assert atoms
    assert all(a.kind == "acoustic_atom" and a.engine == "sae" for a in atoms)
    assert all(a.group and a.group.startswith("sae:") for a in atoms)
    assert all(0.0 <= a.start_s < a.end_s <= 21.0 for a in atoms)
    assert len({a.group for a in atoms}) <= 12


def test_engine_silence_emits_nothing(engine, bad_dir):
    from avgeo.media import open_media

    assert engine.atoms(open_media(bad_dir / "silence_1s.wav"), EngineContext()) == []


def test_engine_missing_weights_is_explained(tmp_path):
    from avgeo.perception.audio.sae.engine import SaeEngine

    ok, why = SaeEngine(weights=tmp_path / "none.pt").available()
    assert not ok and "avgeo train sae" in why


# ---------------------------------------------------------------- atom maps without located data

JUNCO = "Junco hyemalis_Dark-eyed Junco"
CHIFFCHAFF = "Phylloscopus collybita_Common Chiffchaff"


def _atom(labels, index=0, geo=None):
    return {"index": index, "name": "test atom", "mean_act": 1.0,
            "labels": [{"label": lab, "share": s} for lab, s in labels], "geo": geo}


def test_range_mixture_follows_the_named_species_and_is_weaker_than_a_detection():
    from avgeo.perception.audio import species_range as sr
    from avgeo.perception.audio.sae import range_maps as rm

    logl, meta = rm.mixture_loglik(_atom([(JUNCO, 0.8), ("Dog_Dog", 0.1)])["labels"], (),
                                   sr.YEAR_ROUND, sr.DEFAULT_RES)
    occ = sr.range_table(sr.YEAR_ROUND).dense(JUNCO)
    assert int(np.argmax(logl)) in set(np.flatnonzero(occ == occ.max()))
    assert np.corrcoef(logl, occ)[0, 1] > 0.95
    species = sr.species_likelihood(JUNCO)
    assert 0.5 < meta["range_nats"] < rm.DEFAULT_TEMPER * np.log((1 + rm.DEFAULT_EPS)
                                                                 / rm.DEFAULT_EPS) + 1e-9
    assert meta["range_nats"] < np.ptp([*species.logl.tolist(), species.default]) / 2
    assert meta["species"] == [JUNCO]  # the sound event adds no geography


def test_species_detected_in_the_file_are_not_counted_again():
    from avgeo.perception.audio import species_range as sr
    from avgeo.perception.audio.sae import range_maps as rm

    both = _atom([(JUNCO, 0.5), (CHIFFCHAFF, 0.5)])
    full = rm.range_likelihood(both, (), sr.YEAR_ROUND)
    part = rm.range_likelihood(both, (JUNCO,), sr.YEAR_ROUND)
    assert full is not None and part is not None
    assert part.meta["species"] == [CHIFFCHAFF] and part.meta["detected_share"] == 0.5
    assert part.meta["range_nats"] < full.meta["range_nats"]
    assert rm.range_likelihood(both, (JUNCO, CHIFFCHAFF), sr.YEAR_ROUND) is None
    assert rm.range_likelihood(_atom([("Engine_Engine", 1.0)]), (), sr.YEAR_ROUND) is None
    assert rm.range_likelihood(_atom([]), (), sr.YEAR_ROUND) is None
    assert rm.range_likelihood(both, (), sr.YEAR_ROUND) is full  # memoised


def test_located_map_wins_and_is_scaled_by_the_undetected_share():
    from avgeo.perception.audio.sae.engine import atom_map

    geo = {"res": 2, "cells": [int(c) for c in _two_res2_cells()], "logl": [0.0, -2.0],
           "default": -3.0, "located_hits": 10.0}
    atom = _atom([(JUNCO, 0.6), (CHIFFCHAFF, 0.4)], index=7, geo=geo)
    lik, group, how = atom_map(atom, frozenset(), 0)
    assert how == "located" and group == "sae:7" and lik.default == -3.0
    lik, _, how = atom_map(atom, frozenset({JUNCO}), 0)
    assert how == "located" and lik.default == pytest.approx(-1.2)
    assert atom_map(atom, frozenset({JUNCO, CHIFFCHAFF}), 0)[0] is None
    no_geo = _atom([(JUNCO, 0.6), (CHIFFCHAFF, 0.4)], index=7)
    lik, group, how = atom_map(no_geo, frozenset(), 0)
    assert how == "range" and group == f"sae:range:{JUNCO}"
    assert atom_map(no_geo, frozenset(), 0, range_maps=False) == (None, "sae:7", "")


def _two_res2_cells():
    from avgeo.geo.grid import global_grid

    return global_grid(2).cells[:2]


def test_engine_maps_atoms_unless_their_species_were_detected(engine, media_dir):
    from avgeo.media import open_media
    from avgeo.perception.audio.sae.engine import load_weights

    media = open_media(media_dir / "colombia_spinetail.wav")
    free = engine.atoms(media, EngineContext())
    mapped = [a for a in free if a.likelihood is not None]
    assert mapped and all(a.group.startswith("sae:range:") for a in mapped)
    assert all(a.value["map"] == "range" for a in mapped)
    named = {lab["label"] for a in load_weights().atoms for lab in a["labels"]}
    ctx = EngineContext(options={"birdnet_species_detected": sorted(named)})
    assert all(a.likelihood is None for a in engine.atoms(media, ctx))
    off = engine.atoms(media, EngineContext(options={"sae_range_maps": False}))
    assert [a.name for a in off] == [a.name for a in free]
    assert all(a.likelihood is None for a in off)


def test_pipeline_never_maps_an_atom_by_a_species_birdnet_detected(media_dir):
    """End to end: the birdnet engine tells the SAE what it found; no SAE map is built
    from those species."""
    from avgeo.pipeline import extract_atoms

    _, atoms, report, ctx = extract_atoms(media_dir / "colombia_spinetail.wav",
                                          "birdnet,sae", use_metadata=False)
    if "sae" not in report.used:
        pytest.skip("sae engine unavailable")
    detected = set(ctx.options["birdnet_species_detected"])
    assert detected == {a.value["label"] for a in atoms if a.kind == "species"}
    for a in atoms:
        if a.engine == "sae" and a.likelihood is not None:
            assert not detected & set(a.likelihood.meta["species"])
