"""The unit sphere S² embedded in R³, in torch: exp/log maps, geodesics, tangent projection,
parallel transport, rotations and sampling. Works in float32 and float64; stable near 0 and π."""

from __future__ import annotations

import math

import torch

LOG_AREA = math.log(4.0 * math.pi)  # log surface area of S², in steradians


def _small(dtype: torch.dtype) -> float:
    # Below this angle the Taylor branch is exact to rounding in the dtype.
    return 1e-4 if dtype == torch.float64 else 3e-3


def _antipode_tol(dtype: torch.dtype) -> float:
    # |x × y| under this (with x·y < 0) means the geodesic direction is lost in rounding.
    return 1e-9 if dtype == torch.float64 else 1e-5


def inner(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * v).sum(-1, keepdim=True)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Re-project points to |x| = 1."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-30)


def proj(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Orthogonal projection of ambient vectors v onto the tangent plane at x."""
    return v - inner(x, v) * x


def sinc(theta: torch.Tensor) -> torch.Tensor:
    """sin(θ)/θ, smooth (and with a correct gradient) at θ = 0."""
    small = theta.abs() < _small(theta.dtype)
    safe = torch.where(small, torch.ones_like(theta), theta)
    t2 = theta * theta
    return torch.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, torch.sin(safe) / safe)


def perpendicular(x: torch.Tensor) -> torch.Tensor:
    """A deterministic unit tangent vector at x (east, or +x direction at the poles)."""
    ez = torch.zeros_like(x)
    ez[..., 2] = 1.0
    ex = torch.zeros_like(x)
    ex[..., 0] = 1.0
    near_pole = x[..., 2:3].abs() > 0.9
    ref = torch.where(near_pole, ex, ez)
    return normalize(torch.linalg.cross(ref, x))


def exp(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Exponential map: follow the geodesic from x with initial velocity v (tangent) for t=1."""
    theta = v.norm(dim=-1, keepdim=True)
    return normalize(torch.cos(theta) * x + sinc(theta) * v)


def dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Geodesic (angular) distance in radians, accurate at 0 and π."""
    return torch.atan2(torch.linalg.cross(x, y).norm(dim=-1), (x * y).sum(-1))


def log(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logarithm map: tangent vector at x pointing to y with length dist(x, y).

    At the antipode every direction is a geodesic; we return π · perpendicular(x), so the
    result is deterministic (and exp(x, log(x, -x)) = -x still holds).
    """
    dot = inner(x, y).clamp(-1.0, 1.0)
    u = y - dot * x  # tangent part, |u| = sin θ
    s = u.norm(dim=-1, keepdim=True)
    theta = torch.atan2(s, dot)
    small = theta < _small(x.dtype)
    safe_s = torch.where(small, torch.ones_like(s), s.clamp_min(1e-300))
    t2 = theta * theta
    factor = torch.where(small, 1.0 + t2 / 6.0 + 7.0 * t2 * t2 / 360.0, theta / safe_s)
    v = factor * u
    antipodal = (s < _antipode_tol(x.dtype)) & (dot < 0)
    return torch.where(antipodal, math.pi * perpendicular(x), v)


def geodesic(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Point at fraction t along the shortest geodesic from x0 to x1 (t broadcasts as (...,1))."""
    if not torch.is_tensor(t):
        t = torch.tensor(t, dtype=x0.dtype, device=x0.device)
    if t.dim() == x0.dim() - 1:
        t = t.unsqueeze(-1)
    return exp(x0, t * log(x0, x1))


def transport(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Parallel transport of tangent v at x to y along the shortest geodesic (not antipodes)."""
    return v - inner(y, v) / (1.0 + inner(x, y)).clamp_min(1e-12) * (x + y)


def rotate(x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Rotate x about axis ω by angle |ω| (Rodrigues); equals exp(x, ω × x) for ω ⊥ x.

    Both Rodrigues coefficients come from one sinc and one cos of θ/2 (sin θ/θ = s·cos(θ/2),
    (1 − cos θ)/θ² = s²/2 with s = sin(θ/2)/(θ/2)), which is exact at θ = 0 and has no
    cancellation; the solvers call this 5 times per RK4 step, so it is kept to few kernels.
    Not meant for autograd (the solvers never differentiate through a step)."""
    half = omega.norm(dim=-1, keepdim=True) * 0.5
    s = torch.special.sinc(half * (1.0 / math.pi))  # sin(πu)/(πu) with πu = θ/2
    wx = torch.linalg.cross(omega, x)
    y = x + (s * torch.cos(half)) * wx + (0.5 * s * s) * torch.linalg.cross(omega, wx)
    return normalize(y)


def uniform(n: int, *, generator: torch.Generator | None = None,
            dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
    """n points uniform on S² (normalised Gaussians)."""
    g = torch.randn(n, 3, generator=generator, dtype=torch.float64, device=device)
    return normalize(g).to(dtype)


def from_latlon(lat_deg, lon_deg, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Unit vectors (..., 3) from latitude/longitude in degrees."""
    lat = torch.deg2rad(torch.as_tensor(lat_deg, dtype=torch.float64))
    lon = torch.deg2rad(torch.as_tensor(lon_deg, dtype=torch.float64))
    c = torch.cos(lat)
    return torch.stack([c * torch.cos(lon), c * torch.sin(lon), torch.sin(lat)], -1).to(dtype)


def to_latlon(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lat, lon) in degrees from vectors (..., 3)."""
    x = x.to(torch.float64)
    lat = torch.rad2deg(torch.atan2(x[..., 2], torch.hypot(x[..., 0], x[..., 1])))
    lon = torch.rad2deg(torch.atan2(x[..., 1], x[..., 0]))
    return lat, lon


def vmf_log_prob(x: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor | float) -> torch.Tensor:
    """log density (per steradian) of a von Mises–Fisher distribution on S²."""
    kappa = torch.as_tensor(kappa, dtype=x.dtype, device=x.device)
    dot = (x * mu).sum(-1)
    return log_vmf_norm(kappa) + kappa * (dot - 1.0)


def log_vmf_norm(kappa: torch.Tensor) -> torch.Tensor:
    """log C(κ) such that p(x) = C(κ) exp(κ(μ·x − 1)); → −log 4π as κ → 0."""
    k = kappa.clamp_min(1e-8)
    return torch.where(
        kappa < 1e-6,
        torch.full_like(k, -LOG_AREA),
        torch.log(k) - math.log(2.0 * math.pi) - torch.log(-torch.expm1(-2.0 * k)),
    )


def vmf_sample(n: int, mu: torch.Tensor, kappa: float, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact vMF samples on S² (Wood's inversion for the 3-D case), float64."""
    mu = normalize(mu.to(torch.float64).reshape(3))
    u = torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    # w = 1 + log(u + (1-u) e^{-2κ}) / κ, written with log1p/expm1 for large κ.
    w = 1.0 + torch.log(u + (1.0 - u) * math.exp(-2.0 * kappa)) / kappa
    w = w.clamp(-1.0, 1.0)
    phi = 2.0 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    e1 = perpendicular(mu[None])[0]
    e2 = torch.linalg.cross(mu, e1)
    r = torch.sqrt((1.0 - w * w).clamp_min(0.0))
    return normalize(w[:, None] * mu + r[:, None] * (torch.cos(phi)[:, None] * e1
                                                       + torch.sin(phi)[:, None] * e2))
