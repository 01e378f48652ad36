"""Fusion weight learning: a reliable engine gains weight, a misleading one loses it."""

from __future__ import annotations

import numpy as np

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
