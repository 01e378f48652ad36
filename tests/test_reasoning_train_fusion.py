"""Fusion weight learning: a reliable engine gains weight, a misleading one loses it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from avgeo.atoms import Atom
from avgeo.geo.grid import global_grid
from avgeo.geo.sphere import destination
from avgeo.reasoning.likelihood import PointLikelihood
from avgeo.reasoning.train_fusion import fit_weights, make_example, split_heldout


def _examples(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    grid = global_grid(2)
    out = []
    for i in range(n):
        lat, lon = float(rng.uniform(-50, 60)), float(rng.uniform(-180, 180))
        # "good" reports the truth 300 km off; "bad" reports a random place, confidently.
        glat, glon = destination(lat, lon, rng.uniform(0, 360), 300.0)
        good = Atom(name="g", engine="good", kind="metadata", evidence="", confidence=0.9,
                    likelihood=PointLikelihood(float(glat), float(glon), 400.0))
        bad = Atom(name="b", engine="bad", kind="metadata", evidence="", confidence=0.9,
                   likelihood=PointLikelihood(float(rng.uniform(-50, 60)),
                                              float(rng.uniform(-180, 180)), 400.0))
        ex = make_example(f"ex{i}", [good, bad], grid, 0.25, lat=lat, lon=lon)
        assert ex is not None
        out.append(ex)
    return out


def test_reliable_engine_outweighs_misleading_one():
    exs = _examples(40)
    mask = split_heldout([e.name for e in exs], 0.25)
    rep = fit_weights(exs, mask, prior="uniform", res=2)
    w = rep.weights.engine_weight
    # (A random "bad" report still carries a little information: the truth is rarely where
    # it points, so its learned weight need not fall below 1; it must stay far below good.)
    assert w["good"] > 1.0 and w["good"] > 1.5 * w["bad"]
    assert rep.train_nll_after < rep.train_nll_before
    assert rep.heldout_nll_after < rep.heldout_nll_before


def test_country_truth_examples():
    grid = global_grid(2)
    atom = Atom(name="p", engine="e", kind="metadata", evidence="", confidence=0.9,
                likelihood=PointLikelihood(46.5, 2.5, 200.0))
    ex = make_example("fr", [atom], grid, 0.25, country="FR")
    assert ex is not None and len(ex.true_idx) > 5


def test_fit_matches_pre_port_and_logs_iterations(tmp_path):
    from avgeo.training import MetricsLog, read_metrics

    exs = _examples(40)
    mask = split_heldout([e.name for e in exs], 0.25)
    with MetricsLog(tmp_path, tensorboard=False) as m:
        rep = fit_weights(exs, mask, prior="uniform", res=2, metrics=m)
    # The fit the pre-port trainer (commit e15c0a7) produced on these examples.
    assert rep.weights.engine_weight == {"bad": 1.3383, "good": 2.9121}
    assert rep.weights.prior_weight == 0.9145
    assert (rep.train_nll_before, rep.heldout_nll_before) == pytest.approx(
        (3.489920022342838, 3.560554866768691), rel=1e-9)
    assert (rep.train_nll_after, rep.heldout_nll_after) == pytest.approx(
        (2.3239956566788713, 2.4991126893008055), rel=1e-6)
    rows = read_metrics(tmp_path)
    iters = [r for r in rows if "loss" in r]
    assert len(iters) >= 3 and [r["step"] for r in iters] == list(range(1, len(iters) + 1))
    losses = [r["loss"] for r in iters]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(losses))
    assert rows[-1]["heldout_nll"] == pytest.approx(rep.heldout_nll_after)
    assert rows[-1]["iterations"] == len(iters)


def test_cli_config_file_and_flags(tmp_path):
    import json

    from avgeo.cli import main

    conf = tmp_path / "fusion.yaml"
    conf.write_text("schema_version: 1\nfusion:\n  prior: uniform\n  l2: 0.5\n  res: 2\n")
    saved = tmp_path / "resolved.toml"
    with pytest.raises(SystemExit) as exc:
        main(["train", "fusion", str(tmp_path / "m.csv"), "--config", str(conf), "--l2", "0.1",
              "--with-metadata", "--save-config", str(saved)])
    assert exc.value.code in (0, None)
    from avgeo.training import load_config_file

    fc = load_config_file(saved)["fusion"]
    assert (fc["prior"], fc["l2"], fc["res"], fc["use_metadata"]) == ("uniform", 0.1, 2, True)
    assert fc["heldout"] == 0.25
    with pytest.raises(SystemExit) as exc:
        main(["train", "fusion", "m.csv", "--set", "fusion.prior=moon"])
    assert exc.value.code == 2
    assert json.dumps(fc)  # plain values
