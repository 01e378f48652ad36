"""Baseline densities on S² that the flow prior must beat: a von Mises–Fisher mixture fitted by
EM and a vMF-kernel density estimate with its bandwidth chosen by held-out likelihood."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from avgeo.precision.manifold import log_vmf_norm, normalize


def _logsumexp_rows(a: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(a, dim=-1)


@dataclass
class VMFMixture:
    """Mixture of K vMF components: weights (K,), means (K, 3), concentrations (K,)."""

    weights: torch.Tensor
    means: torch.Tensor
    kappas: torch.Tensor

    def _component_log(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        dot = x @ self.means.T
        return (torch.log(self.weights) + log_vmf_norm(self.kappas))[None] + self.kappas[None] * (
            dot - 1.0)

    def log_prob(self, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        """log density per steradian, float64."""
        out = [_logsumexp_rows(self._component_log(x[i:i + chunk]))
               for i in range(0, len(x), chunk)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    @classmethod
    def fit(cls, x: torch.Tensor, k: int = 128, iters: int = 100, seed: int = 0,
            max_kappa: float = 1e6, tol: float = 1e-6) -> VMFMixture:
        """EM from k-means++-style seeds; κ by Banerjee et al.'s approximation, capped."""
        x = normalize(x.to(torch.float64))
        g = torch.Generator().manual_seed(seed)
        n = len(x)
        idx = [int(torch.randint(n, (1,), generator=g))]
        d2 = torch.full((n,), float("inf"), dtype=torch.float64)
        for _ in range(1, k):
            d2 = torch.minimum(d2, 1.0 - x @ x[idx[-1]])
            p = d2.clamp_min(0) + 1e-12
            idx.append(int(torch.multinomial(p / p.sum(), 1, generator=g)))
        model = cls(torch.full((k,), 1.0 / k, dtype=torch.float64), x[idx].clone(),
                    torch.full((k,), 50.0, dtype=torch.float64))
        prev = -math.inf
        xf = x.to(torch.float32)
        for _ in range(iters):
            nk = torch.zeros(k, dtype=torch.float64)
            s = torch.zeros(k, 3, dtype=torch.float64)
            total = 0.0
            logc = (torch.log(model.weights) + log_vmf_norm(model.kappas)).to(torch.float32)
            kap, mu = model.kappas.to(torch.float32), model.means.to(torch.float32)
            # float32 E-step in chunks: the (n, k) responsibilities dominate time and memory.
            for i in range(0, n, 8192):
                comp = logc[None] + kap[None] * (xf[i:i + 8192] @ mu.T - 1.0)
                ll = torch.logsumexp(comp, -1)
                resp = torch.exp(comp - ll[:, None])
                nk += resp.sum(0).double()
                s += (resp.T @ xf[i:i + 8192]).double()
                total += float(ll.double().sum())
            nk = nk + 1e-10
            r_norm = s.norm(dim=-1)
            rbar = (r_norm / nk).clamp(1e-6, 1 - 1e-9)
            kappa = (rbar * (3.0 - rbar ** 2) / (1.0 - rbar ** 2)).clamp(1e-3, max_kappa)
            model = cls(nk / nk.sum(), s / r_norm.clamp_min(1e-30)[:, None], kappa)
            mean_ll = total / n
            if mean_ll - prev < tol:
                break
            prev = mean_ll
        return model


@dataclass
class VMFKDE:
    """Kernel density estimate: the average of vMF kernels of concentration κ at the points."""

    points: torch.Tensor
    kappa: float

    def log_prob(self, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        pts = self.points.to(torch.float64)
        x = x.to(torch.float64)
        k = torch.tensor(self.kappa, dtype=torch.float64)
        const = float(log_vmf_norm(k)) - math.log(len(pts))
        out = []
        for i in range(0, len(x), chunk):
            out.append(torch.logsumexp(self.kappa * (x[i:i + chunk] @ pts.T - 1.0), -1) + const)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    @classmethod
    def fit(cls, train: torch.Tensor, val: torch.Tensor,
            kappas: tuple[float, ...] | None = None) -> tuple[VMFKDE, dict[float, float]]:
        """Pick κ maximising the mean log-likelihood of `val` under a KDE on `train`.

        Returns the KDE on `train` and the validation NLL for each κ tried.
        """
        if kappas is None:
            kappas = tuple(float(10 ** e) for e in torch.arange(1.0, 6.01, 0.25).tolist())
        scores: dict[float, float] = {}
        for kap in kappas:
            scores[kap] = -float(cls(train, kap).log_prob(val).mean())
        best = min(scores, key=scores.__getitem__)
        return cls(train, best), scores
