"""SAE core: planted-dictionary recovery, mixture+AR vs TopK at equal L0, checkpoints, naming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avgeo.perception.audio.sae.model import SaeConfig, build_model
from avgeo.perception.audio.sae.naming import atom_likelihood, collect, name_atoms
from avgeo.perception.audio.sae.synthetic import max_cosine, planted_sequences
from avgeo.perception.audio.sae.train import (
    ArraySource,
    TrainConfig,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train_sae,
)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_topk_recovers_planted_dictionary():
    p = planted_sequences(n_seq=2000, seq_len=8, d=64, n_atoms=128, k=4, noise=0.02, seed=1)
    r = train_sae(ArraySource(p.emb, p.file, p.start_s),
                  SaeConfig(d_in=64, n_latents=160, k=4, aux_k=64),
                  TrainConfig(epochs=8, lr=2e-3, batch_size=128, holdout=0.1, block_s=100))
    assert r.stats["n_eval"] > 500
    assert r.stats["r2"] > 0.9
    assert r.stats["l0"] == pytest.approx(4.0)
    assert r.stats["dead_frac"] < 0.25
    mc = max_cosine(r.model.W_dec.detach().numpy(), p.atoms)
    assert mc.mean() > 0.9
    # Decoder atoms stay unit norm.
    assert torch.allclose(r.model.W_dec.norm(dim=1), torch.ones(160), atol=1e-4)


def test_mixture_ar_beats_topk_at_equal_l0():
    p = planted_sequences(n_seq=500, seq_len=16, d=64, n_atoms=128, k=4, scenes=4,
                          persist=0.9, noise=0.05, background=2.0, seed=2)
    src = ArraySource(p.emb, p.file, p.start_s)
    tc = TrainConfig(epochs=8, lr=2e-3, batch_size=128, holdout=0.2, block_s=100)
    base = train_sae(src, SaeConfig(d_in=64, n_latents=160, k=4, aux_k=64), tc)
    moe = train_sae(src, SaeConfig(d_in=64, n_latents=160, k=4, aux_k=64, experts=4, ar=True),
                    tc)
    assert base.stats["l0"] == pytest.approx(4.0)
    assert moe.stats["l0"] == pytest.approx(4.0, abs=0.05)
    assert moe.stats["r2"] > base.stats["r2"] + 0.03, (moe.stats["r2"], base.stats["r2"])


def test_checkpoint_round_trip(tmp_path):
    p = planted_sequences(n_seq=50, seq_len=8, d=32, n_atoms=32, k=2, seed=3)
    src = ArraySource(p.emb, p.file, p.start_s)
    cfg = SaeConfig(d_in=32, n_latents=16, k=4, experts=2, route_top=2, ar=True)
    tc = TrainConfig(epochs=1, batch_size=64, holdout=0.3, block_s=10)
    r = train_sae(src, cfg, tc)
    path = save_checkpoint(tmp_path / "s.pt", r.model, embedding_source={"type": "test"},
                           stats=r.stats, atoms=[{"index": 0, "name": "x"}], half=False)
    back = load_checkpoint(path)
    assert back.model.cfg == r.model.cfg
    assert back.atoms[0]["name"] == "x" and back.embedding_source["type"] == "test"
    x = torch.from_numpy(p.emb[:20])
    i1, v1 = r.model.encode(x)
    i2, v2 = back.model.encode(x)
    assert torch.equal(i1, i2) and torch.allclose(v1, v2)
    assert evaluate(back.model, src, tc)["r2"] == pytest.approx(
        evaluate(r.model, src, tc)["r2"], abs=1e-6)
    # fp16 storage: same codes up to rounding.
    half = load_checkpoint(save_checkpoint(tmp_path / "h.pt", r.model, embedding_source={},
                                           stats={}))
    assert half.model.encode(x)[1].sub(v1).abs().max() < 0.05
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    from avgeo.errors import WeightsError

    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "bad.pt")


def test_naming_majority_label_and_geography():
    # Two planted atoms with their own label and place; a third atom has no location.
    d, n = 16, 600
    rng = np.random.default_rng(0)
    atoms = np.linalg.qr(rng.standard_normal((d, d)))[0][:3]
    which = rng.integers(0, 3, n)
    emb = (atoms[which] * rng.uniform(1, 2, (n, 1)) + 0.01 * rng.standard_normal((n, d)))
    names = np.array(["Turdus migratorius_American Robin", "Dog_Dog", "Noise_Noise"])
    labels = [[str(names[w])] if rng.random() < 0.9 else ["Siren_Siren"] for w in which]
    lat = np.where(which == 0, 47.6, np.where(which == 1, -33.9, np.nan))
    lon = np.where(which == 0, -122.3, np.where(which == 1, 18.4, np.nan))
    src = ArraySource(emb.astype(np.float32), np.array([f"f{i}" for i in range(n)]),
                      np.zeros(n), {"labels": labels, "label_conf": [[0.9]] * n,
                                    "lat": lat, "lon": lon})
    model = build_model(SaeConfig(d_in=d, n_latents=3, k=1))
    with torch.no_grad():  # the planted dictionary itself: naming is what is under test
        model.W_dec.copy_(torch.from_numpy(atoms).float())
        model.W_enc.copy_(torch.from_numpy(atoms).float())
    co = collect(model, src, res=2)
    named = name_atoms(co, res=2)
    assert [a["name"] for a in named] == ["American Robin", "Dog", "Noise"]
    assert all(0.8 < a["purity"] <= 1.0 for a in named)
    from avgeo.geo.grid import global_grid

    grid = global_grid(2)
    robin, dog = atom_likelihood(named[0]), atom_likelihood(named[1])
    assert atom_likelihood(named[2]) is None  # never located: readable, no likelihood
    seattle, cape = grid.locate(47.6, -122.3)[0], grid.locate(-33.9, 18.4)[0]
    lr, ld = robin.log_map(grid), dog.log_map(grid)
    assert lr[seattle] == 0.0 and lr[cape] < -1.0
    assert ld[cape] == 0.0 and ld[seattle] < -1.0
