"""The `sae` engine on real audio: shipped checkpoint, atoms on a shared clip, none on silence."""

from __future__ import annotations

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
