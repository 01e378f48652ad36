"""Flow matching on S²: identity flow, a vMF fitted by a short training run (exact NLL vs the
true entropy and vs Monte Carlo), samples on the sphere, calibration of credible regions, CFG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avgeo.geo.grid import global_grid
from avgeo.geo.sphere import from_xyz
from avgeo.precision import manifold as S2
from avgeo.precision.model import FlowModel, VelocityNet
from avgeo.precision.regions import cell_probs_from_log_density, credible_region, density_on_grid
from avgeo.precision.solver import divergence
from avgeo.precision.train import FlowConfig, train_flow

KAPPA = 50.0
MU = S2.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64))


def vmf_entropy(kappa: float) -> float:
    # E[-log p] = -log C(κ) - κ(A(κ) - 1) with p = C exp(κ(μ·x - 1)), A = coth κ - 1/κ.
    log_c = float(S2.log_vmf_norm(torch.tensor(kappa, dtype=torch.float64)))
    return -log_c - kappa * (1.0 / math.tanh(kappa) - 1.0 / kappa - 1.0)


def test_identity_flow_nll_is_log_4pi():
    model = FlowModel(VelocityNet(hidden=32, depth=2, n_freq=8))  # zero-initialised output
    x = S2.uniform(2000, generator=torch.Generator().manual_seed(1))
    nll = -model.log_prob(x, steps=8)
    assert torch.allclose(nll, torch.full_like(nll, math.log(4 * math.pi)), atol=1e-6)


def test_exact_divergence_matches_laplacian():
    # v = grad_S2 (a·x) = P(x) a has Riemannian divergence Δ(a·x) = -2 a·x.
    a = torch.tensor([0.4, -1.0, 2.0], dtype=torch.float64)
    x = S2.uniform(500, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, div = divergence(lambda y, t: S2.proj(y, a.expand_as(y)), x, torch.tensor(0.0))
    assert torch.allclose(div, -2.0 * (x @ a), atol=1e-10)


@pytest.fixture(scope="module")
def vmf_flow() -> FlowModel:
    g = torch.Generator().manual_seed(0)
    data = S2.vmf_sample(20_000, MU, KAPPA, generator=g)
    cfg = FlowConfig(hidden=96, depth=3, n_freq=48, freq_max=12.0, time_freq=6, lr=3e-3,
                     batch_size=1000, epochs=60, warmup_steps=50, ema=0.995, seed=0)
    return train_flow(data, None, cfg, log=lambda s: None)


@pytest.mark.slow
def test_vmf_flow_nll_near_truth_and_agrees_with_monte_carlo(vmf_flow):
    g = torch.Generator().manual_seed(10)
    test = S2.vmf_sample(3000, MU, KAPPA, generator=g).float()
    nll = float(-vmf_flow.log_prob(test, steps=24).double().mean())
    assert abs(nll - vmf_entropy(KAPPA)) < 0.05, (nll, vmf_entropy(KAPPA))
    # Monte Carlo: ∫ p_flow dA = E_q[p_flow / q] with q the true vMF as proposal must be 1.
    logq = S2.vmf_log_prob(test.double(), MU, KAPPA)
    logp = vmf_flow.log_prob(test, steps=24).double()
    mass = float(torch.exp(logp - logq).mean())
    assert abs(mass - 1.0) < 0.03, mass
    # Monte Carlo estimate of KL(q || p_flow) from the same points: small and non-negative.
    kl = float((logq - logp).mean())
    assert -0.01 < kl < 0.05


@pytest.mark.slow
def test_samples_lie_on_sphere_and_follow_data(vmf_flow):
    xs = vmf_flow.sample(1000, steps=32, generator=torch.Generator().manual_seed(3))
    assert ((xs.double().norm(dim=-1) - 1).abs().max()) < 1e-6
    mean_cos = float((xs.double() @ MU).mean())
    expected = 1.0 / math.tanh(KAPPA) - 1.0 / KAPPA
    assert abs(mean_cos - expected) < 0.01


@pytest.mark.slow
def test_flow_credible_regions_are_calibrated(vmf_flow):
    grid = global_grid(2)
    logd = density_on_grid(grid, lambda x: vmf_flow.log_prob(x, steps=16))
    probs = cell_probs_from_log_density(grid, logd)
    truth = S2.vmf_sample(2000, MU, KAPPA, generator=torch.Generator().manual_seed(4)).numpy()
    lat, lon = from_xyz(truth)
    truth_cells = grid.cells[grid.locate(lat, lon)]
    for level, tol in ((0.9, 0.03), (0.5, 0.05)):
        region = credible_region(grid, probs, level)
        coverage = float(np.isin(truth_cells, region.cells).mean())
        assert abs(coverage - level) < tol, (level, coverage)
        assert region.area_km2 > 0


@pytest.mark.slow
def test_classifier_free_guidance_separates_conditions():
    g = torch.Generator().manual_seed(5)
    mus = [S2.normalize(torch.tensor(v, dtype=torch.float64)) for v in ([1.0, 0, 0], [0, 0, 1.0])]
    xs = torch.cat([S2.vmf_sample(4000, m, 30.0, generator=g) for m in mus])
    cond = torch.cat([torch.tensor([[1.0, 0.0]]).expand(4000, 2),
                      torch.tensor([[0.0, 1.0]]).expand(4000, 2)])
    cfg = FlowConfig(hidden=64, depth=3, n_freq=32, freq_max=8.0, cond_columns=["a", "b"],
                     batch_size=800, epochs=25, lr=3e-3, warmup_steps=30, ema=0.99)
    model = train_flow(xs, cond, cfg, log=lambda s: None)
    for k, mu in enumerate(mus):
        c = torch.eye(2)[k]
        s1 = model.sample(500, cond=c, steps=16, generator=torch.Generator().manual_seed(6))
        s3 = model.sample(500, cond=c, guidance=3.0, steps=16,
                          generator=torch.Generator().manual_seed(6))
        near1 = float((s1.double() @ mu > 0.7).double().mean())
        near3 = float((s3.double() @ mu > 0.7).double().mean())
        assert near1 > 0.85, (k, near1)
        assert near3 >= near1 - 0.02
    unc = model.sample(2000, steps=16, generator=torch.Generator().manual_seed(7)).double()
    frac = float((unc @ mus[0] > 0.7).double().mean())
    assert 0.3 < frac < 0.7  # the null condition gives the mixture
