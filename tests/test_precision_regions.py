"""Credible regions on the H3 grid: calibration from samples, HPD ordering, combination with a
posterior, medoid; plus weights-file round trip and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avgeo.errors import ConfigError, WeightsError
from avgeo.geo.grid import global_grid
from avgeo.geo.sphere import from_xyz, haversine_km
from avgeo.precision import manifold as S2
from avgeo.precision.model import FlowModel, VelocityNet
from avgeo.precision.regions import (
    cell_probs_from_log_density,
    cell_probs_from_samples,
    combine,
    credible_region,
    spherical_medoid,
    summarize_density,
    summarize_samples,
)
from avgeo.precision.train import FlowConfig, load_flow, save_flow

MU = S2.normalize(torch.tensor([0.5, 0.5, 0.7], dtype=torch.float64))


def test_sample_histogram_regions_are_calibrated():
    grid = global_grid(2)
    g = torch.Generator().manual_seed(0)
    samples = S2.vmf_sample(40_000, MU, 40.0, generator=g).numpy()
    probs = cell_probs_from_samples(grid, *from_xyz(samples))
    truth = S2.vmf_sample(3000, MU, 40.0, generator=g).numpy()
    cells = grid.cells[grid.locate(*from_xyz(truth))]
    for level, tol in ((0.9, 0.03), (0.5, 0.05)):
        region = credible_region(grid, probs, level)
        assert abs(float(np.isin(cells, region.cells).mean()) - level) < tol
    r50, r90 = credible_region(grid, probs, 0.5), credible_region(grid, probs, 0.9)
    assert r50.area_km2 < r90.area_km2 and set(r50.cells) <= set(r90.cells)


def test_true_density_regions_calibrated_and_mode_correct():
    grid = global_grid(2)
    logd = S2.vmf_log_prob(torch.from_numpy(grid.xyz), MU, 60.0).numpy()
    est = summarize_density(grid, logd)
    mlat, mlon = from_xyz(MU.numpy())
    assert haversine_km(est.lat, est.lon, mlat, mlon) < 250
    truth = S2.vmf_sample(3000, MU, 60.0, generator=torch.Generator().manual_seed(1)).numpy()
    cells = grid.cells[grid.locate(*from_xyz(truth))]
    for region in est.regions:
        assert abs(float(np.isin(cells, region.cells).mean()) - region.level) < 0.03
    assert np.isclose(est.cell_probs.sum(), 1.0)


def test_combine_with_posterior_is_renormalised_product():
    grid = global_grid(1)
    a = cell_probs_from_log_density(grid, S2.vmf_log_prob(torch.from_numpy(grid.xyz), MU,
                                                           5.0).numpy())
    b = np.zeros(len(grid))
    b[:10] = 1.0
    prod = combine(a, b / b.sum())
    assert np.isclose(prod.sum(), 1.0) and np.all(prod[10:] == 0)
    assert np.allclose(prod[:10], a[:10] / a[:10].sum())
    with pytest.raises(ConfigError):
        combine(np.r_[1.0, 0.0], np.r_[0.0, 1.0])
    with pytest.raises(ConfigError):
        credible_region(grid, a, 1.5)


def test_medoid_and_sample_summary_with_posterior():
    grid = global_grid(2)
    s = S2.vmf_sample(3000, MU, 200.0, generator=torch.Generator().manual_seed(2)).numpy()
    med = spherical_medoid(s)
    assert float(med @ MU.numpy()) > 0.995
    est = summarize_samples(grid, s)
    mlat, mlon = from_xyz(MU.numpy())
    assert haversine_km(est.lat, est.lon, mlat, mlon) < 150
    post = np.full(len(grid), 1.0 / len(grid))
    est2 = summarize_samples(grid, s, posterior=post)
    assert np.allclose(est2.cell_probs, est.cell_probs)


def test_weights_file_round_trip_and_errors(tmp_path):
    cfg = FlowConfig(hidden=16, depth=1, n_freq=4)
    net = VelocityNet(hidden=16, depth=1, n_freq=4)
    torch.nn.init.normal_(net.mlp[-1].weight)
    path = save_flow(tmp_path / "f.pt", FlowModel(net), cfg, {"rows": 3})
    model, meta = load_flow(path)
    assert meta["format_version"] == 1 and meta["data"] == {"rows": 3}
    x = S2.uniform(10)
    assert torch.allclose(model.net(x, torch.tensor(0.3)), net(x, torch.tensor(0.3)))
    bad = tmp_path / "bad.pt"
    torch.save({"format_version": 99, "kind": "avgeo.precision.flow"}, bad)
    with pytest.raises(WeightsError):
        load_flow(bad)
    (tmp_path / "junk.pt").write_bytes(b"not a file")
    with pytest.raises(WeightsError):
        load_flow(tmp_path / "junk.pt")
    with pytest.raises(WeightsError):
        load_flow(tmp_path / "missing.pt")
