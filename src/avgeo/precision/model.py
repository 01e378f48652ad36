"""The velocity network on the tangent bundle of S² (random Fourier features of x and t, optional
condition encoder with classifier-free guidance), base distributions, and the FlowModel that
ties network, base and solver together."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from avgeo.precision import manifold as S2
from avgeo.precision.solver import log_likelihood, odeint


class VelocityNet(nn.Module):
    """MLP v(x, t[, c]) whose output is projected onto the tangent plane at x.

    x enters through random Fourier features sin/cos(B x) with frequencies |B| log-spaced in
    [1, freq_max] (so both continents and cities are representable); t through sin/cos(π k t).
    With cond_dim > 0 a small encoder embeds the condition; a learned null embedding stands in
    for a dropped / absent condition (classifier-free guidance).
    """

    def __init__(self, hidden: int = 256, depth: int = 4, n_freq: int = 128,
                 freq_max: float = 64.0, time_freq: int = 8, cond_dim: int = 0,
                 cond_hidden: int = 64, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dirs = S2.uniform(n_freq, generator=g, dtype=torch.float32)
        mags = torch.exp(torch.rand(n_freq, 1, generator=g) * math.log(max(freq_max, 1.0)))
        self.register_buffer("freqs", dirs * mags)
        self.register_buffer("time_k", math.pi * torch.arange(1, time_freq + 1).float())
        self.cond_dim = cond_dim
        in_dim = 3 + 2 * n_freq + 2 * time_freq + 1
        if cond_dim > 0:
            self.cond_enc = nn.Sequential(nn.Linear(cond_dim, cond_hidden), nn.SiLU(),
                                          nn.Linear(cond_hidden, cond_hidden))
            self.null_cond = nn.Parameter(torch.zeros(cond_hidden))
            in_dim += cond_hidden
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.SiLU()]
            d = hidden
        last = nn.Linear(d, 3)
        # Start from the zero field (identity flow), which is the exact answer for a uniform base.
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        xf = x.to(self.freqs.dtype)
        tt = torch.as_tensor(t, dtype=xf.dtype, device=xf.device).reshape(-1, 1).expand(n, 1)
        proj = xf @ self.freqs.T
        tk = tt * self.time_k
        parts = [xf, torch.sin(proj), torch.cos(proj), torch.sin(tk), torch.cos(tk), tt]
        if self.cond_dim > 0:
            null = self.null_cond.expand(n, -1)
            if cond is None:
                emb = null
            else:
                c = cond.to(xf.dtype)
                c = c.expand(n, -1) if c.dim() == 1 or c.shape[0] == 1 else c
                emb = self.cond_enc(c.reshape(n, -1))
                if drop is not None:
                    emb = torch.where(drop.reshape(n, 1), null, emb)
            parts.append(emb)
        out = self.mlp(torch.cat(parts, -1)).to(x.dtype)
        return S2.proj(x, out)


def bf16_gemm_available() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX or AVX512-BF16); without
    it a bf16 GEMM is emulated and slower than float32."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # private probes: absent in some torch builds
        return False


GEMM_DTYPES = ("auto", "float32", "bfloat16")


def resolve_gemm_dtype(spec: str | torch.dtype | None,
                       device: torch.device | str = "cpu") -> torch.dtype | None:
    """A sampling GEMM precision from a name: "float32" (or None) keeps the network's own,
    "bfloat16" forces bf16, "auto" picks bf16 where the hardware multiplies it natively (AMX /
    AVX512-BF16 CPUs, bf16-capable GPUs) and the network's precision elsewhere, where bf16
    would be emulated and slower."""
    if spec is None or isinstance(spec, torch.dtype):
        return spec
    name = str(spec).lower()
    if name in ("float32", "fp32", "none", ""):
        return None
    if name in ("bfloat16", "bf16"):
        return torch.bfloat16
    if name == "auto":
        if torch.device(device).type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return torch.bfloat16 if bf16_gemm_available() else None
    from avgeo.errors import ConfigError

    raise ConfigError(f"unknown sampling precision {spec!r}",
                      hint=f"use one of {', '.join(GEMM_DTYPES)}")


class InferenceField:
    """A sampling-only evaluation of a VelocityNet: the same function as `net(x, t, cond)` (and
    the guided mix) without autograd, concatenation or per-call allocations.

    The first layer is split by input block: x and its Fourier features go through one GEMM on a
    reused buffer laid out like the training input, while the time features (one vector per
    time) and the condition embedding (constant over a solve) are folded into a cached bias.
    Unconditional and conditional passes share the Fourier GEMM. Not differentiable.

    `gemm_dtype=torch.bfloat16` runs the first and hidden GEMMs in bfloat16 (float32
    accumulation; the output layer and all geometry stay float32): ~3× less GEMM time on
    CPUs with AMX, at the price of a different field (samples move by tens of metres, see
    benchmarks/flow.py). The default (None) is the network's own precision.
    """

    def __init__(self, net: VelocityNet, cond: torch.Tensor | None = None,
                 guidance: float = 1.0, gemm_dtype: torch.dtype | None = None) -> None:
        self.dtype = net.freqs.dtype
        first = net.mlp[0]
        linears = [m for m in net.mlp if isinstance(m, nn.Linear)]
        w1 = first.weight.detach()
        nf = net.freqs.shape[0]
        self.nf = nf
        self.nx = 3 + 2 * nf  # x, sin(Bx), cos(Bx): the GEMM part of the first layer
        nt = 2 * net.time_k.shape[0] + 1
        self.w1x = w1[:, :self.nx].T.contiguous()
        self.w1t = w1[:, self.nx:self.nx + nt]
        self.b1 = first.bias.detach()
        self.freqs_t = net.freqs.T.contiguous()
        self.time_k = net.time_k
        self.hidden = [(m.weight.detach().T.contiguous(), m.bias.detach()) for m in linears[1:]]
        self.guidance = float(guidance)
        # Compute dtype of the first and hidden GEMMs; geometry and the output layer keep the
        # network's dtype.
        self.cd = gemm_dtype or self.dtype
        if self.cd != self.dtype:
            self.w1x = self.w1x.to(self.cd)
            self.hidden[:-1] = [(w.to(self.cd), b.to(self.cd)) for w, b in self.hidden[:-1]]
        # Row-constant (1, H) or per-row (n, H) parts of the first-layer bias from the condition.
        self.cond_bias: list[torch.Tensor | None] = [None]
        if net.cond_dim > 0:
            w1e = w1[:, self.nx + nt:]
            null = (net.null_cond.detach() @ w1e.T)[None]
            if cond is None:
                self.cond_bias = [null]
            else:
                c = cond.detach().to(self.dtype)
                c = c.reshape(1, -1) if c.dim() == 1 else c
                with torch.no_grad():
                    emb = net.cond_enc(c) @ w1e.T
                self.cond_bias = [emb] if self.guidance == 1.0 else [null, emb]
        self._tbias: dict[float, tuple[torch.Tensor, ...]] = {}
        self._buf: dict[int, tuple[torch.Tensor, ...]] = {}

    def _time_bias(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """First-layer bias at time t, one per pass (unconditional / conditional)."""
        key = float(t)
        b = self._tbias.get(key)
        if b is None:
            tt = torch.as_tensor(t, dtype=self.dtype).reshape(1, 1)
            tk = tt * self.time_k
            feats = torch.cat([torch.sin(tk), torch.cos(tk), tt], -1)
            tb = self.b1 + feats @ self.w1t.T
            b = tuple((tb if cb is None else tb + cb).to(self.cd) for cb in self.cond_bias)
            self._tbias[key] = b
        return b

    def _buffers(self, n: int) -> tuple[torch.Tensor, ...]:
        bufs = self._buf.get(n)
        if bufs is None:
            m = n * len(self.cond_bias)
            h = self.hidden[0][0].shape[0]
            bufs = (torch.empty(n, self.nx, dtype=self.dtype), torch.empty(m, h, dtype=self.cd),
                    torch.empty(m, h, dtype=self.cd))
            self._buf = {n: bufs}  # one batch size at a time: a solve uses a fixed n
        return bufs

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n, nf = x.shape[0], self.nf
        feats, ha, hb = self._buffers(n)
        feats[:, :3].copy_(x)
        proj = feats[:, :3] @ self.freqs_t
        torch.sin(proj, out=feats[:, 3:3 + nf])
        torch.cos(proj, out=feats[:, 3 + nf:])
        f = feats if self.cd == self.dtype else feats.to(self.cd)
        biases = self._time_bias(t)
        if len(biases) == 1:
            torch.addmm(biases[0], f, self.w1x, out=ha)
        else:  # both passes share the Fourier GEMM
            pre = f @ self.w1x
            for j, b in enumerate(biases):
                torch.add(pre, b, out=ha[j * n:(j + 1) * n])
        torch.nn.functional.silu(ha, inplace=True)
        for w, b in self.hidden[:-1]:
            torch.addmm(b, ha, w, out=hb)
            torch.nn.functional.silu(hb, inplace=True)
            ha, hb = hb, ha
        w, b = self.hidden[-1]
        out = torch.addmm(b, ha.to(self.dtype), w)
        if len(self.cond_bias) == 2:  # classifier-free guidance: v_u + w (v_c − v_u)
            vu, vc = out[:n], out[n:]
            out = vu + self.guidance * (vc - vu)
        out = out.to(x.dtype)
        return out - (x * out).sum(-1, keepdim=True) * x


class UniformBase:
    """Uniform distribution on S²; pairs data with independent base points."""

    kind = "uniform"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full(x.shape[:1], -S2.LOG_AREA, dtype=x.dtype, device=x.device)

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return S2.uniform(n, generator=generator, dtype=dtype)

    def couple(self, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample(x1.shape[0], generator, x1.dtype)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind}


def vmf_sample_batch(mu: torch.Tensor, kappa: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """One exact vMF sample per row of (mu (n, 3), kappa (n,)); float64."""
    mu = S2.normalize(mu.to(torch.float64))
    kappa = kappa.to(torch.float64).clamp_min(1e-6)
    n = mu.shape[0]
    u = torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    w = (1.0 + torch.log(u + (1.0 - u) * torch.exp(-2.0 * kappa)) / kappa).clamp(-1.0, 1.0)
    phi = 2.0 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    e1 = S2.perpendicular(mu)
    e2 = torch.linalg.cross(mu, e1)
    r = torch.sqrt((1.0 - w * w).clamp_min(0.0))[:, None]
    return S2.normalize(w[:, None] * mu + r * (torch.cos(phi)[:, None] * e1
                                               + torch.sin(phi)[:, None] * e2))


class VMFMixtureBase:
    """A vMF mixture as the base. Coupling draws x0 from the component responsible for x1;
    because EM's weights are the mean responsibilities, x0's marginal is still the mixture, and
    the paths stay short, so the network only learns a local refinement."""

    kind = "vmf_mixture"

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, kappas: torch.Tensor) -> None:
        self.weights = weights.to(torch.float64)
        self.means = S2.normalize(means.to(torch.float64))
        self.kappas = kappas.to(torch.float64)

    def _comp(self, x: torch.Tensor) -> torch.Tensor:
        logc = torch.log(self.weights) + S2.log_vmf_norm(self.kappas)
        return logc[None] + self.kappas[None] * (x.to(torch.float64) @ self.means.T - 1.0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        out = [torch.logsumexp(self._comp(x[i:i + 8192]), -1) for i in range(0, len(x), 8192)]
        return torch.cat(out).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        c = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return vmf_sample_batch(self.means[c], self.kappas[c], generator).to(dtype)

    def couple(self, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        comp = self._comp(x1)
        c = torch.multinomial(torch.softmax(comp, -1), 1, generator=generator)[:, 0]
        return vmf_sample_batch(self.means[c], self.kappas[c], generator).to(x1.dtype)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "weights": self.weights.float(), "means": self.means.float(),
                "kappas": self.kappas.float()}


def base_from_state(state: dict[str, Any]) -> UniformBase | VMFMixtureBase:
    if state["kind"] == "uniform":
        return UniformBase()
    if state["kind"] == "vmf_mixture":
        return VMFMixtureBase(state["weights"], state["means"], state["kappas"])
    if state["kind"] == "fusion_posterior":  # each input brings its own (posterior_base.py)
        from avgeo.precision.posterior_base import PerExampleBase

        return PerExampleBase()
    raise ValueError(f"unknown base kind {state['kind']!r}")


class FlowModel(nn.Module):
    """A flow on S²: base distribution at t=0 pushed to the data at t=1 by `net`."""

    def __init__(self, net: VelocityNet, base: UniformBase | VMFMixtureBase | None = None):
        super().__init__()
        self.net = net
        self.base = base or UniformBase()

    def field(self, cond: torch.Tensor | None = None, guidance: float = 1.0):
        """The velocity field as a solver callable; guidance w mixes v_uncond + w(v_c − v_u)."""
        net = self.net

        def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if cond is None or net.cond_dim == 0:
                return net(x, t)
            vc = net(x, t, cond)
            if guidance == 1.0:
                return vc
            vu = net(x, t)
            return vu + guidance * (vc - vu)

        return f

    def inference_field(self, cond: torch.Tensor | None = None, guidance: float = 1.0,
                        gemm_dtype: torch.dtype | None = None) -> InferenceField:
        """The same field as `field(cond, guidance)`, evaluated without autograd (sampling)."""
        return InferenceField(self.net, cond, guidance, gemm_dtype)

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, guidance: float = 1.0,
               steps: int = 32, method: str = "rk4", generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32,
               gemm_dtype: torch.dtype | str | None = None) -> torch.Tensor:
        """n samples: base draws pushed through the flow. `gemm_dtype=torch.bfloat16` (or
        "bfloat16", or "auto" where the hardware has bf16 GEMMs) trades exactness for speed
        (see InferenceField); the default keeps the network's precision."""
        x0 = self.base.sample(n, generator, dtype)
        cd = resolve_gemm_dtype(gemm_dtype, self.net.freqs.device)
        x1, _ = odeint(self.inference_field(cond, guidance, cd), x0, 0.0, 1.0, steps, method)
        return x1

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None, guidance: float = 1.0,
                 steps: int = 64, method: str = "rk4", chunk: int = 8192) -> torch.Tensor:
        return log_likelihood(self.field(cond, guidance), x, self.base.log_prob, steps, method,
                              chunk=chunk)
