"""Sparse autoencoders over audio embeddings: a TopK SAE (Gao et al. 2024, with AuxK dead-latent
revival) and a mixture of TopK dictionaries with a router and an autoregressive context term."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avgeo.errors import ConfigError


@dataclass
class SaeConfig:
    """Architecture of one SAE. `experts == 1` is the plain TopK SAE; more experts split the
    `n_latents` into equal slices, a router picks `route_top` of them per window and the
    window's `k` active latents are shared equally among the picked experts (equal L0)."""

    d_in: int = 1024
    n_latents: int = 256
    k: int = 8
    experts: int = 1
    route_top: int = 1
    #: Encoder and router also see a learned projection of the previous window's embedding.
    ar: bool = False
    ar_rank: int = 32
    aux_k: int = 32
    aux_coef: float = 1.0 / 32.0
    balance_coef: float = 0.01
    #: How the mixture's router learns. "best": while training, each window goes to the
    #: expert(s) that reconstruct it best (hard EM) and the router learns to predict that
    #: choice (cross-entropy); "gate": Switch-style, outputs scaled by the gate probability.
    #: Both use the router alone at inference.
    router: str = "best"
    #: A latent that has not fired for this many training windows counts as dead (AuxK).
    dead_after: int = 20_000

    def validate(self) -> SaeConfig:
        if self.d_in < 1 or self.n_latents < 1:
            raise ConfigError(f"SAE sizes must be positive (d_in={self.d_in}, "
                              f"latents={self.n_latents})")
        if self.experts < 1 or self.n_latents % self.experts:
            raise ConfigError(f"--latents {self.n_latents} must be a multiple of --experts "
                              f"{self.experts}")
        if self.route_top not in (1, 2) or self.route_top > self.experts:
            raise ConfigError(f"route_top must be 1 or 2 and at most the expert count "
                              f"(got {self.route_top} with {self.experts} experts)")
        per = self.k // self.route_top
        if self.router not in ("best", "gate"):
            raise ConfigError(f"router must be 'best' or 'gate', got {self.router!r}")
        if self.k < 1 or self.k % self.route_top or per > self.latents_per_expert:
            raise ConfigError(f"--k {self.k} must be ≥ 1, divisible by route_top "
                              f"{self.route_top} and fit in one expert "
                              f"({self.latents_per_expert} latents)")
        return self

    @property
    def latents_per_expert(self) -> int:
        return self.n_latents // self.experts

    @property
    def variant(self) -> str:
        base = "topk" if self.experts == 1 else f"moe{self.experts}-top{self.route_top}"
        return base + ("+ar" if self.ar else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SaeConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names}).validate()


@dataclass
class SaeOutput:
    """One forward pass, all in the normalised input space."""

    x: torch.Tensor  # (B, d) normalised input
    x_hat: torch.Tensor  # (B, d)
    idx: torch.Tensor  # (B, k) active latent ids
    vals: torch.Tensor  # (B, k) activations (≥ 0)
    mse: torch.Tensor  # scalar: mean squared error per dimension
    aux: torch.Tensor  # scalar AuxK loss (0 when nothing is dead)
    balance: torch.Tensor  # scalar load-balancing loss (0 for the plain SAE)
    loss: torch.Tensor  # total training loss


class TopKSAE(nn.Module):
    """x → z = ReLU(TopK(W_e (x − b_dec) + b_e)) → x̂ = W_d z + b_dec, unit-norm atoms.

    Inputs are normalised inside the module (`in_mean`, `in_scale` buffers set from the
    training data) so that E‖x‖² = d and the learning rate does not depend on the
    embedding's scale. Decoder atoms are rows of `W_dec` (n_latents, d).
    """

    def __init__(self, cfg: SaeConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        d, n = cfg.d_in, cfg.n_latents
        w = torch.randn(n, d)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        # Encoder starts as the decoder's transpose (Gao et al.): fewer dead latents early.
        self.W_enc = nn.Parameter(w.clone())
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_dec = nn.Parameter(torch.zeros(d))
        if cfg.ar:
            r = cfg.ar_rank
            self.ar_in = nn.Parameter(torch.randn(r, d) / d**0.5)
            # Zero so that training starts from the context-free encoder.
            self.ar_out = nn.Parameter(torch.zeros(n, r))
        self.register_buffer("in_mean", torch.zeros(d))
        self.register_buffer("in_scale", torch.ones(()))
        self.register_buffer("windows_since_fired", torch.zeros(n, dtype=torch.long))

    # ------------------------------------------------------------ normalisation

    def set_input_stats(self, mean: torch.Tensor, scale: float) -> None:
        self.in_mean.copy_(torch.as_tensor(mean, dtype=self.in_mean.dtype))
        self.in_scale.fill_(float(scale) if scale > 0 else 1.0)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.in_mean) / self.in_scale

    def _context(self, x_prev: torch.Tensor | None, has_prev: torch.Tensor | None,
                 batch: int) -> torch.Tensor | None:
        """Centred previous window (zeros where there is none), in normalised space."""
        if not self.cfg.ar:
            return None
        if x_prev is None:
            return torch.zeros(batch, self.cfg.d_in, device=self.b_dec.device)
        c = self.normalise(x_prev) - self.b_dec
        if has_prev is not None:
            c = c * has_prev.to(c.dtype).unsqueeze(-1)
        return c

    def _pre(self, xc: torch.Tensor, ctx: torch.Tensor | None,
             rows: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        """Pre-activations of the latents `rows` for centred inputs."""
        pre = xc @ self.W_enc[rows].T + self.b_enc[rows]
        if ctx is not None:
            pre = pre + (ctx @ self.ar_in.T) @ self.ar_out[rows].T
        return pre

    # ------------------------------------------------------------ coding

    def _code(self, xc: torch.Tensor, ctx: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(idx, vals, router loss, extra decoder bias or None) for centred inputs."""
        vals, idx = self._pre(xc, ctx).topk(self.cfg.k, dim=-1)
        return idx, F.relu(vals), xc.new_zeros(()), None

    def encode(self, x: torch.Tensor, x_prev: torch.Tensor | None = None,
               has_prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse codes of raw embeddings: (idx (B, k), vals (B, k))."""
        xn = self.normalise(x)
        idx, vals, _, _ = self._code(xn - self.b_dec,
                                     self._context(x_prev, has_prev, x.shape[0]))
        return idx, vals

    def dense(self, idx: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
        """(B, n_latents) code matrix from sparse (idx, vals)."""
        z = vals.new_zeros(vals.shape[0], self.cfg.n_latents)
        return z.scatter_add(1, idx, vals)

    def decode(self, idx: torch.Tensor, vals: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """Normalised reconstruction: Σ_j vals_j · atom_j (+ b_dec); gathers only the k atoms."""
        out = torch.einsum("bk,bkd->bd", vals, self.W_dec[idx])
        return out + self.b_dec if bias else out

    # ------------------------------------------------------------ training

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor | None = None,
                has_prev: torch.Tensor | None = None) -> SaeOutput:
        xn = self.normalise(x)
        xc = xn - self.b_dec
        ctx = self._context(x_prev, has_prev, x.shape[0])
        idx, vals, balance, bias = self._code(xc, ctx)
        x_hat = self.decode(idx, vals)
        if bias is not None:
            x_hat = x_hat + bias
        mse = (x_hat - xn).pow(2).mean()
        aux = self._aux_loss(xn - x_hat.detach(), xc, ctx)
        if self.training:
            self._track_dead(idx, vals)
        loss = mse + self.cfg.aux_coef * aux + self.cfg.balance_coef * balance
        return SaeOutput(xn, x_hat, idx, vals, mse, aux, balance, loss)

    @property
    def dead_mask(self) -> torch.Tensor:
        return self.windows_since_fired > self.cfg.dead_after

    @torch.no_grad()
    def _track_dead(self, idx: torch.Tensor, vals: torch.Tensor) -> None:
        fired = torch.zeros(self.cfg.n_latents, dtype=torch.bool, device=idx.device)
        fired[idx[vals > 0]] = True
        self.windows_since_fired += idx.shape[0]
        self.windows_since_fired[fired] = 0

    def _aux_loss(self, resid: torch.Tensor, xc: torch.Tensor,
                  ctx: torch.Tensor | None) -> torch.Tensor:
        """AuxK: the top-k_aux dead latents must model the main reconstruction's residual, so
        that dead latents get gradient again (Gao et al. 2024, §A.2)."""
        dead = torch.nonzero(self.dead_mask).squeeze(-1)
        if not self.training or dead.numel() == 0 or self.cfg.aux_k == 0:
            return xc.new_zeros(())
        kk = min(self.cfg.aux_k, dead.numel())
        vals, pos = self._pre(xc, ctx, dead).topk(kk, dim=-1)
        e_hat = self.decode(dead[pos], F.relu(vals), bias=False)
        denom = resid.pow(2).sum().clamp_min(1e-8)
        return (e_hat - resid).pow(2).sum() / denom

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Drop the gradient component along each (unit) atom: it would only change its norm."""
        g = self.W_dec.grad
        if g is not None:
            g.sub_((g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec)


class MixtureSAE(TopKSAE):
    """A mixture of TopK dictionaries: E experts own equal slices of the latents; a softmax
    router (seeing the window and, with `ar`, the previous one) picks the top-1 or top-2
    experts and each picked expert activates k / route_top of its latents. Top-1 routing
    passes the router gradient straight through (gate p / stop_grad(p) = 1 in the forward
    pass); top-2 weights the two experts by their renormalised gate. A Switch-style
    load-balancing loss keeps experts in use."""

    def __init__(self, cfg: SaeConfig) -> None:
        super().__init__(cfg)
        self.router = nn.Linear(cfg.d_in, cfg.experts)
        # Each expert is a full TopK SAE, so it also owns a decoder bias (added to the shared
        # pre-bias b_dec): a habitat's constant background costs no active latent.
        self.b_expert = nn.Parameter(torch.zeros(cfg.experts, cfg.d_in))
        nn.init.zeros_(self.router.weight)
        nn.init.zeros_(self.router.bias)
        if cfg.ar:
            self.router_prev = nn.Linear(cfg.d_in, cfg.experts, bias=False)
            nn.init.zeros_(self.router_prev.weight)

    @torch.no_grad()
    def init_experts(self, x: torch.Tensor, iters: int = 20, seed: int = 0) -> None:
        """k-means on a sample of raw inputs: expert biases start at the centroids and the
        router at the nearest-centroid rule (logit 2x·c − ‖c‖²), so experts begin on
        distinct regions of the data instead of one collapsed mixture."""
        xc = self.normalise(x) - self.b_dec
        e = self.cfg.experts
        if xc.shape[0] < e:
            return
        g = torch.Generator().manual_seed(seed)
        cent = xc[torch.randperm(xc.shape[0], generator=g)[:e]].clone()
        for _ in range(iters):
            lab = torch.cdist(xc, cent).argmin(1)
            for j in range(e):
                sel = lab == j
                if sel.any():
                    cent[j] = xc[sel].mean(0)
        self.b_expert.copy_(cent)
        self.router.weight.copy_(2.0 * cent)
        self.router.bias.copy_(-cent.pow(2).sum(1))

    def route(self, xc: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
        logits = self.router(xc)
        if ctx is not None:
            logits = logits + self.router_prev(ctx)
        return logits.softmax(dim=-1)

    def _code(self, xc: torch.Tensor, ctx: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        cfg = self.cfg
        top = cfg.route_top
        logits = self.router(xc)
        if ctx is not None:
            logits = logits + self.router_prev(ctx)
        probs = logits.softmax(dim=-1)
        if self.training and cfg.router == "best":
            return self._code_best(xc, ctx, logits, probs)
        top_p, top_e = probs.topk(top, dim=-1)
        if cfg.router == "gate":
            gate = top_p if top == 1 else top_p / top_p.sum(-1, keepdim=True)
        else:
            gate = torch.ones_like(top_p)
        idx, vals = self._code_routed(xc, ctx, top_e, gate)
        w = gate.detach() if cfg.router == "gate" else torch.full_like(gate, 1.0 / top)
        bias = (w.unsqueeze(-1) * self.b_expert[top_e]).sum(1)
        return idx, vals, self._balance(top_e, probs), bias

    def _balance(self, top_e: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Switch Transformer balance: E · Σ_e (share of picks to e) · (mean gate of e)."""
        share = torch.bincount(top_e.reshape(-1), minlength=self.cfg.experts).to(probs.dtype)
        share = share / share.sum().clamp_min(1)
        return self.cfg.experts * (share * probs.mean(0)).sum()

    def _code_routed(self, xc: torch.Tensor, ctx: torch.Tensor | None, top_e: torch.Tensor,
                     gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes when the experts are chosen: only the picked experts' encoders run."""
        cfg = self.cfg
        m, ke = cfg.latents_per_expert, cfg.k // cfg.route_top
        b = xc.shape[0]
        idx = torch.zeros(b, cfg.k, dtype=torch.long, device=xc.device)
        vals = xc.new_zeros(b, cfg.k)
        for slot in range(cfg.route_top):
            cols = slice(slot * ke, (slot + 1) * ke)
            for e in range(cfg.experts):
                rows = torch.nonzero(top_e[:, slot] == e).squeeze(-1)
                if rows.numel() == 0:
                    continue
                pre = self._pre(xc[rows], None if ctx is None else ctx[rows],
                                slice(e * m, (e + 1) * m))
                v, i = pre.topk(ke, dim=-1)
                idx[rows, cols] = i + e * m
                vals[rows, cols] = F.relu(v) * gate[rows, slot].unsqueeze(-1)
        return idx, vals

    def _code_best(self, xc: torch.Tensor, ctx: torch.Tensor | None, logits: torch.Tensor,
                   probs: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hard-EM routing for training: every expert codes the window, the best (lowest
        squared error of its own k / route_top atoms) wins, the router learns the choice."""
        cfg = self.cfg
        b, m, ke, top = xc.shape[0], cfg.latents_per_expert, cfg.k // cfg.route_top, cfg.route_top
        with torch.no_grad():
            pre = self._pre(xc, ctx).view(b, cfg.experts, m)
            v, i = pre.topk(ke, dim=-1)
            i = i + (torch.arange(cfg.experts, device=xc.device) * m).view(1, -1, 1)
            rec = torch.einsum("bek,bekd->bed", F.relu(v), self.W_dec[i]) + self.b_expert
            err = (rec - xc.unsqueeze(1)).pow(2).sum(-1)
            top_e = err.topk(top, dim=-1, largest=False).indices
        gate = torch.ones(b, top, device=xc.device) / top
        idx, vals = self._code_routed(xc, ctx, top_e, torch.ones(b, top, device=xc.device))
        bias = (gate.unsqueeze(-1) * self.b_expert[top_e]).sum(1)
        logp = logits.log_softmax(dim=-1)
        ce = -logp.gather(1, top_e).mean()
        return idx, vals, ce + self._balance(top_e, probs), bias


def build_model(cfg: SaeConfig) -> TopKSAE:
    cfg.validate()
    return TopKSAE(cfg) if cfg.experts == 1 else MixtureSAE(cfg)
