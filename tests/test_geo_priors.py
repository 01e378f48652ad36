"""Priors over grid cells: normalised, finite, cached, and shaped like where people are."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from avgeo.errors import BackboneMissingError
from avgeo.geo import priors, regions
from avgeo.geo.grid import global_grid, grid_from_cells


@pytest.fixture(scope="module")
def grid2():
    return global_grid(2)


@pytest.mark.parametrize("name", ["population_prior", "photo_prior"])
def test_prior_is_a_normalised_log_distribution(grid2, name):
    lp = getattr(priors, name)(grid2)
    assert lp.dtype == np.float64 and lp.shape == (len(grid2),)
    assert np.all(np.isfinite(lp))  # the floor keeps every cell possible
    assert logsumexp(lp) == pytest.approx(0.0, abs=1e-9)
    p = np.exp(lp)
    cont = regions.continent_of(regions.cell_countries(grid2))
    southern_ocean = (grid2.lat < -45.0) & (cont == "")
    assert southern_ocean.sum() > 50
    # Europe is ~2% of the globe's area and the Southern Ocean far more; the mass is not.
    assert p[cont == "EU"].sum() > 0.1
    assert p[cont == "EU"].sum() > 20 * p[southern_ocean].sum()
    # Cached: the same array object comes back from memory.
    assert getattr(priors, name)(grid2) is lp


def test_population_prior_ranks_cities_above_deserts(grid2):
    lp = priors.population_prior(grid2)
    pos = grid2.locate(np.array([23.0, 28.6139, 24.0]), np.array([77.0, 77.209, 13.0]))
    # Northern India (Delhi) against the central Sahara (Niger/Libya border).
    assert lp[pos[1]] > lp[pos[2]] + 3.0


def test_photo_prior_on_a_subset_grid_matches_its_global_values(grid2):
    lp_all = priors.photo_prior(grid2)
    europe = np.flatnonzero(regions.continent_of(regions.cell_countries(grid2)) == "EU")
    sub = grid_from_cells(grid2.cells[europe], 2)
    lp_sub = priors.photo_prior(sub)
    assert logsumexp(lp_sub) == pytest.approx(0.0, abs=1e-9)
    # Restricting the support only renormalises: ratios between cells are unchanged
    # (the floor is a share of the whole Earth, not of the grid).
    diff = lp_sub - lp_all[europe]
    assert np.ptp(diff) < 1e-9


def test_missing_geoclip_raises_backbone_error(monkeypatch, grid2):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "geoclip" else real(n, *a))
    priors._MEMO.clear()
    with pytest.raises(BackboneMissingError) as e:
        priors.photo_prior(grid2)
    assert "geoclip" in e.value.hint
