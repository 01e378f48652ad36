"""Fusion weights fitted on simulated examples: the fit recovers a known tempering of the
simulated atoms, the CLI's --sim path runs end to end, and the shipped weights say they were
fitted on simulated data, not on the shared test media."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax

from avgeo.geo.grid import global_grid
from avgeo.reasoning.fusion import FusionWeights, prior_log
from avgeo.reasoning.train_fusion import (
    Example,
    calibration,
    fit_weights,
    sim_examples,
    split_heldout,
)

RES = 2  # 5,882 cells: the fit's maths is resolution-free, and res 2 keeps the test quick


@pytest.fixture(scope="module")
def sims():
    from avgeo.reasoning.reasoner.simulate import simulate

    return simulate(30, seed=11)


def test_fit_recovers_known_tempering(sims):
    """Truths drawn from exp(w0·log prior + Σ w_e·map_e) over the simulated atoms' maps:
    the maximum-likelihood fit must find w again (the shipped weights come from this fit)."""
    grid = global_grid(RES)
    lprior = prior_log(grid, "photo")
    base = sim_examples(sims, grid, 0.25)
    known = {"birdnet": 0.4, "ocr": 2.5, "sae": 1.0, "hum": 1.0}
    w0 = 1.3
    rng = np.random.default_rng(0)
    exs = []
    for ex in base:
        w = np.array([known[e] for e in ex.engines])
        lp = w0 * lprior + (w @ ex.maps if len(w) else 0.0)
        p = softmax(lp)
        for k, cell in enumerate(rng.choice(len(grid), size=40, p=p)):
            exs.append(Example(f"{ex.name}-{k}", ex.maps, ex.engines, np.array([cell])))
    counts = {e: sum(e in ex.engines for ex in base) for e in known}
    assert counts["birdnet"] >= 5 and counts["ocr"] >= 5, counts  # the simulator's mix
    rep = fit_weights(exs, np.zeros(len(exs), bool), prior="photo", l2=0.0, res=RES)
    got = rep.weights
    assert got.prior_weight == pytest.approx(w0, rel=0.15)
    assert got.engine_weight["birdnet"] == pytest.approx(known["birdnet"], rel=0.25)
    assert got.engine_weight["ocr"] == pytest.approx(known["ocr"], rel=0.25)
    assert rep.train_nll_after < rep.train_nll_before


def test_sim_examples_follow_engine_and_metadata_choice(sims):
    grid = global_grid(RES)
    all_eng = {e for ex in sim_examples(sims, grid, 0.25, use_metadata=True) for e in ex.engines}
    no_meta = {e for ex in sim_examples(sims, grid, 0.25) for e in ex.engines}
    only_ocr = {e for ex in sim_examples(sims, grid, 0.25, engines="ocr") for e in ex.engines}
    assert "meta" not in no_meta and no_meta <= all_eng
    assert only_ocr == {"ocr"}
    exs = sim_examples(sims, grid, 0.25)
    assert len(exs) == len(sims)
    # Truth = the simulated place.
    s, ex = sims[3], exs[3]
    assert ex.true_idx[0] == grid.locate(s.truth.lat, s.truth.lon)[0]


def test_calibration_counts_truths_in_regions(sims):
    """Coverage can only grow with the level, and a posterior fused from a GPS fix at the
    truth holds it in its 50 % region."""
    from avgeo.atoms import Atom
    from avgeo.reasoning.likelihood import PointLikelihood

    c = calibration(sims[:8], FusionWeights())
    assert c.n == 8 and 0.0 <= c.coverage[0.5] <= c.coverage[0.9] <= 1.0
    assert c.median_area_km2[0.5] < c.median_area_km2[0.9]

    class Fixed:
        def __init__(self, s):
            self.truth = s.truth
            self.atoms = [Atom(name="gps", engine="ocr", kind="metadata", evidence="",
                               confidence=0.99,
                               likelihood=PointLikelihood(s.truth.lat, s.truth.lon, 5.0))]

    c = calibration([Fixed(s) for s in sims[:4]], FusionWeights())
    assert c.coverage[0.5] == 1.0 and c.median_error_km < 10.0


def test_cli_sim_fit(tmp_path):
    from avgeo.cli import main

    out = tmp_path / "w.json"
    with pytest.raises(SystemExit) as exc:
        main(["train", "fusion", "--sim", "8", "--sim-seed", "5", "--out", str(out),
              "--set", "fusion.res=2", "--heldout", "0.3"])
    assert exc.value.code in (0, None)
    data = json.loads(out.read_text())
    assert data["trained_on"].startswith("simulated examples only")
    assert "N=8, seed=5" in data["trained_on"] and "--sim 8 --sim-seed 5" in data["trained_on"]
    assert "MANIFEST" not in data["trained_on"]
    assert (tmp_path / "w.run" / "metrics.csv").is_file()
    # A manifest and --sim together, or neither, is a usage error.
    for argv in (["train", "fusion", "m.csv", "--sim", "4"], ["train", "fusion"]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--out", str(tmp_path / "x.json")])
        assert exc.value.code == 2


def test_shipped_weights_were_fitted_on_simulated_data():
    w = FusionWeights.load()
    assert w.version >= 2
    assert w.trained_on.startswith("simulated examples only")
    assert "no media files" in w.trained_on and "MANIFEST" not in w.trained_on
    assert set(w.engine_weight) >= {"birdnet", "ocr"}
    assert all(0.0 < v < 20.0 for v in [*w.engine_weight.values(), w.prior_weight])


def test_split_is_by_name():
    names = [f"sim0-{i}" for i in range(400)]
    mask = split_heldout(names, 0.25)
    assert 0.18 < mask.mean() < 0.32
    assert (split_heldout(names, 0.25) == mask).all()
