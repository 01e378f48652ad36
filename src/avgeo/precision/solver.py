"""ODE solvers on S² that step with the exponential map (rotations), and the exact
log-likelihood of a flow by integrating the Riemannian divergence of its velocity backwards."""

from __future__ import annotations

from collections.abc import Callable

import torch

from avgeo.precision import manifold as S2

#: A velocity field: (points (n, 3), time as a 0-d tensor) -> tangent vectors (n, 3).
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("euler", "midpoint", "rk4")


def divergence(field: Field, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity and its exact Riemannian divergence on S²: tr(P J P) = tr(J) − xᵀ J x, where J
    is the 3×3 ambient Jacobian of the (tangent) field, found with three batched VJPs."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = field(xg, t)
        n = x.shape[0]
        eye = torch.eye(3, dtype=v.dtype, device=v.device)[:, None, :].expand(3, n, 3)
        try:
            rows = torch.autograd.grad(v, xg, grad_outputs=eye, is_grads_batched=True)[0]
        except RuntimeError:  # an op without a batching rule: three plain VJPs instead
            rows = torch.stack([torch.autograd.grad(v, xg, grad_outputs=eye[k],
                                                    retain_graph=k < 2)[0] for k in range(3)])
    jac = rows.permute(1, 0, 2)  # jac[i, k, j] = d v_k / d x_j at point i
    xd = x.detach()
    div = jac.diagonal(dim1=1, dim2=2).sum(-1) - torch.einsum("ni,nij,nj->n", xd, jac, xd)
    return v.detach(), div.detach()


def _time_grid(t0: float, t1: float, steps: int, time_grid: torch.Tensor | None,
               dtype: torch.dtype) -> torch.Tensor:
    if time_grid is not None:
        return time_grid.to(dtype)
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return torch.linspace(t0, t1, steps + 1, dtype=dtype)


def _ang(y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # The rotation generator (angular velocity) whose action at y is v: ω = y × v.
    return torch.linalg.cross(y, v)


def odeint(field: Field, x: torch.Tensor, t0: float = 0.0, t1: float = 1.0, steps: int = 32,
           method: str = "rk4", time_grid: torch.Tensor | None = None,
           with_divergence: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Integrate dx/dt = field(x, t) on S² from t0 to t1 (t1 < t0 runs backwards).

    Every step and stage moves points by a rotation (the exp map, which re-normalises), so
    iterates stay on S². `rk4` is Munthe-Kaas' RK4 for SO(3) acting on S² (order 4),
    `midpoint` the Lie midpoint rule (order 2), `euler` exp-map Euler (order 1).
    Returns (x at t1, ∫_{t0}^{t1} div field dt or None).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    grid = _time_grid(t0, t1, steps, time_grid, x.dtype)
    y = S2.normalize(x.detach())
    if with_divergence:
        return _steps(field, y, grid, method, True)
    # Sampling keeps no autograd state at all; the clone hands callers an ordinary tensor.
    with torch.inference_mode():
        y, _ = _steps(field, y, grid, method, False)
    return y.clone(), None


def _steps(field: Field, y: torch.Tensor, grid: torch.Tensor, method: str,
           with_divergence: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    def ev(y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if with_divergence:
            return divergence(field, y, t)
        return field(y, t), None

    acc = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device) if with_divergence else None
    for i in range(len(grid) - 1):
        t, h = grid[i], grid[i + 1] - grid[i]
        if method == "euler":
            v1, d1 = ev(y, t)
            y_next = S2.rotate(y, h * _ang(y, v1))
            dsum = d1 * h if with_divergence else None
        elif method == "midpoint":
            v1 = field_nograd(field, y, t)  # the midpoint rule only needs div at the midpoint
            ym = S2.rotate(y, 0.5 * h * _ang(y, v1))
            v2, d2 = ev(ym, t + 0.5 * h)
            y_next = S2.rotate(y, h * _ang(ym, v2))
            dsum = d2 * h if with_divergence else None
        else:
            v1, d1 = ev(y, t)
            k1 = h * _ang(y, v1)
            y2 = S2.rotate(y, 0.5 * k1)
            v2, d2 = ev(y2, t + 0.5 * h)
            k2 = h * _ang(y2, v2)
            y3 = S2.rotate(y, 0.5 * k2 - torch.linalg.cross(k1, k2) / 8.0)
            v3, d3 = ev(y3, t + 0.5 * h)
            k3 = h * _ang(y3, v3)
            y4 = S2.rotate(y, k3)
            v4, d4 = ev(y4, t + h)
            k4 = h * _ang(y4, v4)
            step = (k1 + 2.0 * k2 + 2.0 * k3 + k4 - 0.5 * torch.linalg.cross(k1, k4)) / 6.0
            y_next = S2.rotate(y, step)
            dsum = h * (d1 + 2.0 * d2 + 2.0 * d3 + d4) / 6.0 if with_divergence else None
        y = y_next  # rotate() returns unit vectors already
        if with_divergence:
            acc = acc + dsum
    return y, acc


def field_nograd(field: Field, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return field(y, t)


def log_likelihood(field: Field, x1: torch.Tensor,
                   base_log_prob: Callable[[torch.Tensor], torch.Tensor],
                   steps: int = 64, method: str = "rk4", time_grid: torch.Tensor | None = None,
                   chunk: int = 8192) -> torch.Tensor:
    """Exact log density (per steradian) at t=1 of the flow pushed from the base at t=0:
    log p1(x1) = log p0(x0) − ∫_0^1 div v(x_t, t) dt, integrated from x1 back to x0."""
    grid = None if time_grid is None else time_grid.flip(0)
    out = []
    for i in range(0, x1.shape[0], chunk):
        x0, acc = odeint(field, x1[i:i + chunk], 1.0, 0.0, steps, method, grid,
                         with_divergence=True)
        # acc = ∫_1^0 div dt = −∫_0^1 div dt
        out.append(base_log_prob(x0) + acc)
    return torch.cat(out)
