"""The fusion-posterior base: exact density (integrates to 1, equals the vMF-mixture formula),
sampler consistent with it, built from a real fusion posterior; the spatial median; the
refinement flow's training on the shared loop (learns a known correction, resumes, loads)."""

from __future__ import annotations

import math
from dataclasses import replace

import h3.api.numpy_int as h3n
import numpy as np
import pytest
import torch

from avgeo.errors import ConfigError, WeightsError
from avgeo.geo.grid import all_cells, points_to_cells
from avgeo.geo.sphere import EARTH_RADIUS_KM, to_xyz
from avgeo.precision import manifold as S2
from avgeo.precision.model import FlowModel, VMFMixtureBase
from avgeo.precision.posterior_base import (
    SUMMARY_COLUMNS,
    Pairs,
    PerExampleBase,
    PosteriorBase,
    PosteriorFlow,
    cell_kappa,
    default_config,
    spatial_median,
    train_posterior_flow,
)


def fibonacci(n: int) -> torch.Tensor:
    """n near-uniform points on S² (equal-area quadrature nodes, weight 4π/n each)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (1.0 + 5**0.5) * i
    r = np.sqrt(1.0 - z * z)
    return torch.from_numpy(np.stack([r * np.cos(phi), r * np.sin(phi), z], -1))


def mixed_support(seed: int = 0) -> PosteriorBase:
    """A posterior on a mixed support like fusion's: res-0 cells, three of them refined into
    their res-1 children, with random (Dirichlet) masses."""
    rng = np.random.default_rng(seed)
    coarse = all_cells(0)
    refined = coarse[[5, 40, 77]]
    fine = np.concatenate([h3n.cell_to_children(c, 1) for c in refined]).astype(np.uint64)
    cells = np.concatenate([fine, np.setdiff1d(coarse, refined)])
    ll = np.array([h3n.cell_to_latlng(c) for c in cells])
    area = np.array([h3n.cell_area(c, unit="km^2") for c in cells])
    w = rng.dirichlet(np.full(len(cells), 0.5))
    return PosteriorBase(w, to_xyz(ll[:, 0], ll[:, 1]), cell_kappa(area), cells, area)


def test_cell_kappa_matches_the_cell_spread():
    # Uniform cap of angular radius ρ: E[1 − cos θ] = (1 − cos ρ)/2; the vMF's is ≈ 1/κ.
    area = np.array([12_000.0, 250.0])
    rho = np.sqrt(area / math.pi) / EARTH_RADIUS_KM
    k = cell_kappa(area)
    assert np.allclose(1.0 / k, (1 - np.cos(rho)) / 2, rtol=1e-9)
    assert 3e4 < k[0] < 6e4 and k[1] > 1e6


def test_density_integrates_to_one_and_equals_the_mixture_formula():
    base = mixed_support()
    x = fibonacci(400_000)
    lp = base.log_prob(x)
    mass = float(torch.exp(lp).mean()) * 4 * math.pi
    assert abs(mass - 1.0) < 2e-3, mass
    pts = x[::9973]
    explicit = torch.logsumexp(torch.stack([
        math.log(float(w)) + S2.vmf_log_prob(pts, m, k)
        for w, m, k in zip(base.weights, base.means, base.kappas, strict=True)]), 0)
    assert torch.allclose(base.log_prob(pts), explicit, atol=1e-9)


def test_samples_follow_the_density_cell_by_cell():
    base = mixed_support(1)
    n = 200_000
    xs = base.sample(n, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert (xs.norm(dim=-1) - 1).abs().max() < 1e-12
    lat, lon = S2.to_latlon(xs)
    hist = np.bincount(np.searchsorted(all_cells(0), points_to_cells(lat.numpy(), lon.numpy(),
                                                                      0)), minlength=122) / n
    q = fibonacci(400_000)
    qlat, qlon = S2.to_latlon(q)
    qcell = np.searchsorted(all_cells(0), points_to_cells(qlat.numpy(), qlon.numpy(), 0))
    expected = np.bincount(qcell, weights=torch.exp(base.log_prob(q)).numpy(), minlength=122)
    expected /= expected.sum()
    sd = np.sqrt(expected * (1 - expected) / n) + 1e-4
    assert np.max(np.abs(hist - expected) / sd) < 5.0
    # The cell masses themselves come through, up to what a kernel spills into neighbours.
    assert np.corrcoef(hist, expected)[0, 1] > 0.999


def test_bad_masses_are_refused():
    mu = np.array([[0.0, 0.0, 1.0]])
    with pytest.raises(ConfigError):
        PosteriorBase(np.array([np.nan]), mu, np.array([10.0]))
    with pytest.raises(ConfigError):
        PosteriorBase(np.array([0.0]), mu, np.array([10.0]))
    with pytest.raises(ConfigError):
        PosteriorBase(np.array([1.0]), mu, np.array([-1.0]))


def test_base_from_a_real_fusion_posterior():
    from avgeo.atoms import Atom
    from avgeo.reasoning.fusion import fuse
    from avgeo.reasoning.likelihood import PointLikelihood

    atoms = [Atom("place:x", "ocr", "place_name", "a place", 0.9, value={},
                  likelihood=PointLikelihood(48.2, 16.4, 30.0))]
    support = fuse(atoms).support()
    base = PosteriorBase.from_support(support)
    assert len(base.weights) == len(support.cells) > 40_000  # all of fusion's cells
    assert abs(float(base.weights.sum()) - 1) < 1e-12
    s = base.summary()
    assert s.shape == (len(SUMMARY_COLUMNS),) and np.isfinite(s).all()
    mode_lat, mode_lon = S2.to_latlon(torch.from_numpy(s[:3]))
    assert abs(float(mode_lat) - 48.2) < 1.0 and abs(float(mode_lon) - 16.4) < 1.0
    assert s[7] < s[8]  # the 50 % region is smaller than the 90 % one
    # Piecewise-constant reading: P / A of the refined cell holding the point.
    i = int(np.flatnonzero(support.cells == points_to_cells(48.2, 16.4, 5)[0])[0])
    want = support.log_prob[i] - math.log(support.area_km2[i] / EARTH_RADIUS_KM**2)
    assert abs(base.cell_log_density(48.2, 16.4) - want) < 1e-9
    xs = base.sample(4000, torch.Generator().manual_seed(2), dtype=torch.float64)
    p = S2.from_latlon(48.2, 16.4)
    near = S2.dist(xs, p.expand_as(xs)) * EARTH_RADIUS_KM
    cells_near = S2.dist(base.means, p.expand_as(base.means)) * EARTH_RADIUS_KM < 300
    mass_near = float(base.weights[cells_near].sum())
    assert mass_near > 0.05  # the place name pulls mass to itself
    frac = float((near < 300).double().mean())
    assert abs(frac - mass_near) < 0.02 + 4 * math.sqrt(mass_near * (1 - mass_near) / 4000)
    lp = base.log_prob(xs)
    # Gibbs: E_p[log p] ≥ −log 4π ≥ E_uniform[log p], strictly for a non-uniform p.
    lu = base.log_prob(S2.uniform(4000, generator=torch.Generator().manual_seed(3),
                                  dtype=torch.float64))
    assert torch.isfinite(lp).all() and torch.isfinite(lu).all()
    assert float(lp.mean()) > -S2.LOG_AREA > float(lu.mean())


def test_spatial_median_is_the_km_bayes_point():
    g = torch.Generator().manual_seed(3)
    mu = S2.normalize(torch.tensor([0.2, -0.4, 0.9], dtype=torch.float64))
    xs = S2.vmf_sample(4000, mu, 400.0, generator=g)
    assert float(S2.dist(spatial_median(xs), mu)) < 0.01
    # Two modes, 60 % / 40 %: the median sits in the heavier one, not between them.
    nu = S2.normalize(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    two = torch.cat([xs[:2400], S2.vmf_sample(1600, nu, 400.0, generator=g)])
    m = spatial_median(two)
    assert float(S2.dist(m, mu)) < 0.15 < 1.2 < float(S2.dist(m, nu))

    def cost(p: torch.Tensor) -> float:
        return float(S2.dist(p.expand_as(two), two).mean())

    assert cost(m) <= min(cost(two[j]) for j in range(0, 4000, 37)) + 1e-9
    for d in torch.eye(3, dtype=torch.float64):  # a local minimum of the mean distance
        assert cost(m) <= cost(S2.exp(m, 1e-3 * S2.proj(m, d))) + 1e-12


def shifted_pairs(n: int, seed: int, shift: float = 0.15, samples: int = 32) -> tuple[
        Pairs, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Posteriors vMF(m_i, κ=300) whose truths sit `shift` rad north of m_i (a biased
    posterior): a conditional flow can learn the correction from the summary."""
    g = torch.Generator().manual_seed(seed)
    m = S2.uniform(n, generator=g, dtype=torch.float64)
    north = S2.proj(m, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(m))
    north = north / north.norm(dim=-1, keepdim=True)
    truth = S2.exp(m, shift * north)
    x0 = torch.stack([S2.vmf_sample(samples, m[i], 300.0, generator=g) for i in range(n)]).float()
    r = torch.full((n, 1), 0.99, dtype=torch.float64)
    a = torch.full((n, 2), 0.7, dtype=torch.float64)
    cond = torch.cat([m, m, r, a], 1).float()
    return Pairs(truth, x0, cond, {"source": "test"}), [(m[i], cond[i]) for i in range(n)]


@pytest.mark.slow
def test_refinement_flow_learns_a_correction_and_resumes(tmp_path):
    pairs, _ = shifted_pairs(300, 0, samples=16)
    cfg = default_config(hidden=32, depth=2, n_freq=8, freq_max=4.0, cond_hidden=16,
                         batch_size=256, epochs=10, lr=5e-3, warmup_steps=10, ema=0.95)
    out = tmp_path / "pf.pt"
    train_posterior_flow(pairs, cfg, out=out, log=lambda s: None, tensorboard=False)
    flow = PosteriorFlow.load(out)
    test, bases = shifted_pairs(60, 1)
    gains = []
    for (mu, c), x1 in zip(bases, test.truth, strict=True):
        base = VMFMixtureBase(torch.ones(1), mu[None], torch.tensor([300.0]))
        fm = FlowModel(flow.net, base)
        nll_flow = -float(fm.log_prob(x1[None].float(), cond=c, steps=12)[0])
        gains.append(-float(base.log_prob(x1[None])[0]) - nll_flow)
    # The base puts the truth 0.15 rad (≈ 2.6σ) off its mode: a flow that learnt to move
    # north gains nats on average.
    assert float(np.mean(gains)) > 1.0, np.mean(gains)
    # A longer run resumes from the checkpoint and writes a loadable weights file.
    cfg2 = default_config(**{**cfg.__dict__, "epochs": 11})
    train_posterior_flow(pairs, cfg2, out=out, resume=str(out) + ".ckpt", log=lambda s: None,
                         tensorboard=False)
    assert PosteriorFlow.load(out).net is not None


def test_loaded_refinement_flow_needs_a_posterior(tmp_path):
    pairs, _ = shifted_pairs(40, 2, samples=4)
    cfg = default_config(hidden=16, depth=1, n_freq=4, batch_size=64, epochs=1)
    out = tmp_path / "tiny.pt"
    model = train_posterior_flow(pairs, cfg, out=out, log=lambda s: None, tensorboard=False)
    assert isinstance(model.base, PerExampleBase)
    from avgeo.precision.train import load_flow

    loaded, _ = load_flow(out)
    with pytest.raises(ConfigError):
        loaded.sample(3)
    with pytest.raises(ConfigError):
        train_posterior_flow(pairs, default_config(cond_columns=["a"]), log=lambda s: None)
    # Conditioned on nothing: the same flow for every posterior, still an exact density.
    out2 = tmp_path / "uncond.pt"
    train_posterior_flow(pairs, replace(cfg, cond_columns=[]), out=out2, log=lambda s: None,
                         tensorboard=False)
    flow = PosteriorFlow.load(out2)
    assert flow.net.cond_dim == 0
    base = mixed_support(2)
    x = base.sample(5, torch.Generator().manual_seed(1))
    assert torch.isfinite(flow.log_prob(base, x)).all()
    assert flow.sample(base, 7).shape == (7, 3)
    with pytest.raises(WeightsError):
        PosteriorFlow.load(tmp_path / "missing.pt")


def _run(args):
    from avgeo.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code


@pytest.mark.slow
def test_cli_trains_a_posterior_base_flow_from_simulated_examples(tmp_path):
    out = tmp_path / "pf.pt"
    tiny = ["--hidden", "16", "--depth", "1", "--batch-size", "16", "--epochs", "1"]
    assert _run(["train", "flow", "--base", "posterior", "--sim", "4", "--sim-samples", "8",
                 "--out", str(out), *tiny]) in (0, None)
    flow = PosteriorFlow.load(out)
    assert flow.net.cond_dim == len(SUMMARY_COLUMNS)
    assert (tmp_path / "pf.run" / "metrics.csv").is_file()
    # Data-source mix-ups are refused with a hint (exit code 2: bad configuration).
    assert _run(["train", "flow", "pts.csv", "--base", "posterior"]) == 2
    assert _run(["train", "flow", "--sim", "4", "--out", str(tmp_path / "x.pt")]) == 2
