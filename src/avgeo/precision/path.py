"""Geodesic probability paths on S² for conditional flow matching: x_t = exp_{x0}(t·log_{x0}(x1))
and its exact velocity, plus the couplings that pick which base point x0 goes with data x1."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avgeo.precision import manifold as S2


@dataclass
class PathSample:
    """A point on the path at time t and the path's velocity there (tangent at x_t)."""

    t: torch.Tensor  # (n,)
    x_t: torch.Tensor  # (n, 3)
    dx_t: torch.Tensor  # (n, 3)


class GeodesicPath:
    """Constant-speed geodesic from x0 (t=0) to x1 (t=1).

    With u = log_{x0}(x1) and θ = |u|: x_t = cos(tθ) x0 + sin(tθ)/θ · u and
    d/dt x_t = −θ sin(tθ) x0 + cos(tθ) u, which is log_{x0}(x1) parallel-transported to x_t.
    """

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        u = S2.log(x0, x1)
        theta = u.norm(dim=-1, keepdim=True)
        tt = t.reshape(-1, 1).to(x0.dtype)
        x_t = torch.cos(tt * theta) * x0 + tt * S2.sinc(tt * theta) * u
        dx_t = -theta * torch.sin(tt * theta) * x0 + torch.cos(tt * theta) * u
        return PathSample(t=t, x_t=S2.normalize(x_t), dx_t=S2.proj(S2.normalize(x_t), dx_t))
