"""The flow prior as a cell prior for fusion ("fusion+flow")."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from avgeo.geo.grid import global_grid
from avgeo.geo.sphere import haversine_km
from avgeo.precision import prior_map


def test_flow_prior_is_a_normalised_land_heavy_prior(tmp_path, monkeypatch):
    monkeypatch.setenv("AVGEO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(prior_map, "N_SAMPLES", 3000)
    grid = global_grid(2)
    lp = prior_map.flow_prior(grid)
    assert lp.shape == (len(grid),)
    assert abs(logsumexp(lp)) < 1e-9
    p = np.exp(lp)
    europe = haversine_km(50.0, 10.0, grid.lat, grid.lon) < 1500
    south_ocean = haversine_km(-60.0, -120.0, grid.lat, grid.lon) < 1500
    assert p[europe].sum() > 20 * p[south_ocean].sum()


def test_pipeline_accepts_flow_stage():
    from avgeo.pipeline import parse_engines

    assert parse_engines("meta,flow") == ["meta", "flow"]
    assert "flow" not in parse_engines("all")
