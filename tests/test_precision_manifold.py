"""S² maths: exp/log round trips, antipodes, transport, geodesic paths and solver order."""

from __future__ import annotations

import math

import torch

from avgeo.precision import manifold as S2
from avgeo.precision.path import GeodesicPath
from avgeo.precision.solver import odeint

G = torch.Generator().manual_seed(0)


def _tangent(x: torch.Tensor, scale: float) -> torch.Tensor:
    v = S2.proj(x, torch.randn(x.shape, generator=G, dtype=x.dtype))
    return v / v.norm(dim=-1, keepdim=True) * scale * torch.rand(x.shape[0], 1, generator=G,
                                                                  dtype=x.dtype)


def test_exp_log_round_trips_float64():
    x = S2.uniform(4000, generator=G, dtype=torch.float64)
    for scale in (1e-9, 1e-5, 1e-2, 1.0, 3.0, math.pi - 1e-4):
        v = _tangent(x, scale)
        assert torch.allclose(S2.log(x, S2.exp(x, v)), v, atol=1e-6, rtol=0)
    y = S2.uniform(4000, generator=G, dtype=torch.float64)
    assert torch.allclose(S2.exp(x, S2.log(x, y)), y, atol=1e-6, rtol=0)
    # Tiny separations: the Taylor branch.
    y_near = S2.exp(x, _tangent(x, 1e-7))
    assert torch.allclose(S2.exp(x, S2.log(x, y_near)), y_near, atol=1e-12, rtol=0)


def test_exp_log_round_trip_float32():
    x = S2.uniform(2000, generator=G)
    v = _tangent(x, 2.5)
    assert torch.allclose(S2.log(x, S2.exp(x, v)), v, atol=1e-4, rtol=0)


def test_log_is_tangent_and_has_geodesic_length():
    x = S2.uniform(1000, generator=G, dtype=torch.float64)
    y = S2.uniform(1000, generator=G, dtype=torch.float64)
    u = S2.log(x, y)
    assert torch.allclose((u * x).sum(-1), torch.zeros(1000, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(u.norm(dim=-1), S2.dist(x, y), atol=1e-12)


def test_antipode_is_deterministic_and_valid():
    x = S2.uniform(500, generator=G, dtype=torch.float64)
    poles = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    x = torch.cat([x, poles])
    u1, u2 = S2.log(x, -x), S2.log(x.clone(), (-x).clone())
    assert torch.equal(u1, u2)
    assert torch.isfinite(u1).all()
    assert torch.allclose(u1.norm(dim=-1), torch.full((503,), math.pi, dtype=torch.float64))
    assert torch.allclose((u1 * x).sum(-1), torch.zeros(503, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(S2.exp(x, u1), -x, atol=1e-12)
    # Almost antipodal but resolvable: still a correct geodesic of length ~π.
    y = S2.exp(x, S2.perpendicular(x) * (math.pi - 1e-6))
    assert torch.allclose(S2.exp(x, S2.log(x, y)), y, atol=1e-6)
    assert torch.isfinite(S2.geodesic(x, -x, 0.5)).all()
    assert torch.allclose(S2.dist(x, -x), torch.full((503,), math.pi, dtype=torch.float64))


def test_parallel_transport_is_isometry_and_tangent():
    x = S2.uniform(1000, generator=G, dtype=torch.float64)
    y = S2.exp(x, _tangent(x, 3.0))
    v = _tangent(x, 1.0)
    w = S2.transport(x, y, v)
    assert torch.allclose(w.norm(dim=-1), v.norm(dim=-1), atol=1e-10)
    assert torch.allclose((w * y).sum(-1), torch.zeros(1000, dtype=torch.float64), atol=1e-10)
    # The geodesic's own direction is carried to its velocity at y.
    u = S2.log(x, y)
    assert torch.allclose(S2.transport(x, y, u), -S2.log(y, x), atol=1e-8)


def test_geodesic_path_velocity_matches_finite_difference():
    x0 = S2.uniform(500, generator=G, dtype=torch.float64)
    x1 = S2.uniform(500, generator=G, dtype=torch.float64)
    t = torch.rand(500, generator=G, dtype=torch.float64) * 0.98 + 0.01
    path = GeodesicPath()
    ps = path.sample(x0, x1, t)
    eps = 1e-6
    fd = (path.sample(x0, x1, t + eps).x_t - path.sample(x0, x1, t - eps).x_t) / (2 * eps)
    assert torch.allclose(ps.dx_t, fd, atol=1e-6)
    assert torch.allclose(path.sample(x0, x1, torch.ones(500, dtype=torch.float64)).x_t, x1,
                          atol=1e-10)
    assert torch.allclose(ps.x_t.norm(dim=-1), torch.ones(500, dtype=torch.float64))
    # d/dt x_t is log_{x0}(x1) transported to x_t.
    assert torch.allclose(ps.dx_t, S2.transport(x0, ps.x_t, S2.log(x0, x1)), atol=1e-8)


def test_uniform_and_vmf_sampling_moments():
    x = S2.uniform(200_000, generator=G, dtype=torch.float64)
    assert x.mean(0).abs().max() < 0.01
    mu = torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64)
    s = S2.vmf_sample(200_000, mu, 20.0, generator=G)
    expected = 1.0 / math.tanh(20.0) - 1.0 / 20.0  # mean resultant length A(κ)
    assert abs(float((s @ mu).mean()) - expected) < 2e-3


def _swirl(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # A nonlinear, time-dependent tangent field to measure solver order.
    a = torch.stack([torch.sin(3 * x[:, 2]) + t, x[:, 0] * x[:, 1], torch.cos(2 * x[:, 0])], -1)
    return S2.proj(x, a)


def test_solver_orders_and_stays_on_sphere():
    x = S2.uniform(64, generator=G, dtype=torch.float64)
    ref, _ = odeint(_swirl, x, steps=512, method="rk4")
    for method, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        e1 = (odeint(_swirl, x, steps=16, method=method)[0] - ref).norm(dim=-1).max()
        e2 = (odeint(_swirl, x, steps=32, method=method)[0] - ref).norm(dim=-1).max()
        assert math.log2(float(e1 / e2)) > order - 0.3, (method, float(e1 / e2))
        y, _ = odeint(_swirl, x, steps=16, method=method)
        assert (y.norm(dim=-1) - 1).abs().max() < 1e-12
