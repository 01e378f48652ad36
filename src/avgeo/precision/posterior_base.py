"""A flow base built from a fusion posterior (one vMF per support cell, exact density and
sampler), and the refinement flow that starts from it: simulated (posterior, truth) pairs,
training on the shared loop, and held-out evaluation against the posterior alone."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avgeo.errors import ConfigError
from avgeo.geo.sphere import EARTH_RADIUS_KM
from avgeo.precision import manifold as S2
from avgeo.precision.model import FlowModel, VMFMixtureBase, vmf_sample_batch

#: The posterior summary a refinement flow is conditioned on, in this order.
SUMMARY_COLUMNS = ["mode_x", "mode_y", "mode_z", "mean_x", "mean_y", "mean_z", "resultant",
                   "log_area50", "log_area90"]
KIND = "fusion_posterior"
#: Scale of log10(km²) areas in the summary (an H3 res-5 cell is ~2.4, the globe 8.7).
_AREA_SCALE = 8.0


def cell_kappa(area_km2: np.ndarray) -> np.ndarray:
    """vMF concentration for a cell: the spread of a uniform disc of the cell's area.

    A uniform cap of angular radius ρ has E[1 − μ·x] = (1 − cos ρ)/2 and a vMF has
    E[1 − μ·x] ≈ 1/κ, so κ = 2/(1 − cos ρ) = 1/sin²(ρ/2), with ρ the radius of the disc of
    the cell's area (res 3: κ ≈ 4·10⁴, res 5: ≈ 2·10⁶)."""
    rho = np.sqrt(np.asarray(area_km2, dtype=np.float64) / math.pi) / EARTH_RADIUS_KM
    return 1.0 / np.sin(0.5 * rho) ** 2


def _log_vmf_norm(kappa: np.ndarray) -> np.ndarray:
    # numpy twin of manifold.log_vmf_norm (per-example setup stays off torch's thread pool).
    k = np.maximum(kappa, 1e-8)
    return np.where(kappa < 1e-6, -S2.LOG_AREA,
                    np.log(k) - math.log(2.0 * math.pi) - np.log(-np.expm1(-2.0 * k)))


class PosteriorBase(VMFMixtureBase):
    """The fusion posterior as a density on S²: cell c (mass P_c, centre μ_c, area A_c) becomes
    P_c · vMF(μ_c, κ(A_c)). Sampling picks a cell by mass, then a point from its vMF, so
    `log_prob` is exactly the density that `sample` draws from (and integrates to 1)."""

    kind = KIND

    def __init__(self, weights: np.ndarray, means: np.ndarray, kappas: np.ndarray,
                 cells: np.ndarray | None = None, area_km2: np.ndarray | None = None) -> None:
        w = np.asarray(weights, dtype=np.float64)
        mu = np.asarray(means, dtype=np.float64)
        kap = np.asarray(kappas, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0 or not np.isfinite(w).all() or (w < 0).any():
            raise ConfigError("a posterior base needs non-negative, finite cell masses")
        if w.sum() <= 0:
            raise ConfigError("a posterior base needs some positive cell mass")
        if mu.shape != (len(w), 3) or kap.shape != w.shape or not (kap > 0).all():
            raise ConfigError("a posterior base needs one centre and one kappa > 0 per cell")
        w = w / w.sum()
        mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            logc = np.log(w) + _log_vmf_norm(kap)
        self.weights, self.means = torch.from_numpy(w), torch.from_numpy(mu)
        self.kappas, self._logc = torch.from_numpy(kap), torch.from_numpy(logc)
        self.cells = cells
        self.area_km2 = area_km2

    @classmethod
    def from_support(cls, support) -> PosteriorBase:
        """From a fusion Support (FusionResult.support()): its cells, masses and areas."""
        from avgeo.geo.sphere import to_xyz

        area = np.asarray(support.area_km2, np.float64)
        return cls(np.exp(np.asarray(support.log_prob, np.float64)),
                   to_xyz(np.asarray(support.lat, np.float64), np.asarray(support.lon, np.float64)),
                   cell_kappa(area), np.asarray(support.cells), area)

    def _comp(self, x: torch.Tensor) -> torch.Tensor:
        return self._logc[None] + self.kappas[None] * (x.to(torch.float64) @ self.means.T - 1.0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        # Rows per chunk so that one (rows × cells) block stays near 32 MB.
        rows = max(1, (1 << 22) // max(1, len(self.weights)))
        out = [torch.logsumexp(self._comp(x[i:i + rows]), -1) for i in range(0, len(x), rows)]
        return torch.cat(out).to(x.dtype)

    def couple(self, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # The data point of a posterior-base pair is that example's truth; x0 is an
        # independent draw from the example's own posterior.
        return self.sample(x1.shape[0], generator, x1.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        c = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return vmf_sample_batch(self.means[c], self.kappas[c], generator).to(dtype)

    def state(self) -> dict[str, Any]:
        # Per example, built from each file's posterior: nothing to store in a weights file.
        return {"kind": KIND}

    def summary(self) -> np.ndarray:
        """The condition vector (SUMMARY_COLUMNS) of this posterior."""
        if self.area_km2 is None:
            raise ConfigError("this posterior base was built without cell areas")
        w, mu, area = self.weights.numpy(), self.means.numpy(), self.area_km2
        with np.errstate(divide="ignore"):
            order = np.argsort(-(np.log(w) - np.log(area)), kind="stable")
        mode = mu[order[0]]
        m = w @ mu
        r = float(np.linalg.norm(m))
        mean = m / r if r > 1e-12 else mode
        cum = np.cumsum(w[order])
        out = [*mode, *mean, r]
        for level in (0.5, 0.9):
            k = min(int(np.searchsorted(cum, level)) + 1, len(order))
            out.append(math.log10(float(area[order[:k]].sum())) / _AREA_SCALE)
        return np.asarray(out, dtype=np.float64)

    def cell_log_density(self, lat: float, lon: float) -> float:
        """log density (per steradian) of the posterior read as piecewise constant over its
        cells, P_c / A_c, at a point: the fusion posterior's own density, for comparison."""
        if self.cells is None or self.area_km2 is None:
            raise ConfigError("this posterior base was built without its cells")
        i = locate_in_support(self.cells, lat, lon, self.means)
        sr = self.area_km2[i] / EARTH_RADIUS_KM**2
        return float(torch.log(self.weights[i])) - math.log(sr)


def locate_in_support(cells: np.ndarray, lat: float, lon: float,
                      centres: torch.Tensor) -> int:
    """Position of the support cell holding a point: its finest-resolution cell if the support
    has it, else a coarser one. H3 children do not tile their parent exactly, so a point near
    a refined cell's edge can fall in neither; it then gets the nearest support cell."""
    from avgeo.geo.grid import points_to_cells

    cells = np.asarray(cells, dtype=np.uint64)
    res = (cells >> np.uint64(52)) & np.uint64(0xF)  # an H3 index holds its resolution there
    for r in sorted(np.unique(res).tolist(), reverse=True):
        hit = np.flatnonzero(cells == points_to_cells(lat, lon, int(r))[0])
        if len(hit):
            return int(hit[0])
    p = S2.from_latlon(lat, lon)
    return int(torch.argmax(centres.to(torch.float64) @ p))


class PerExampleBase:
    """Stands for the base of a flow trained on fusion posteriors: the base is each input's own
    posterior, so a loaded model needs one before it can sample or score."""

    kind = KIND

    def _need(self, *_a, **_k):
        raise ConfigError("this flow refines a fusion posterior and has no base of its own",
                          hint="use PosteriorFlow(model).for_base("
                               "PosteriorBase.from_support(support))")

    log_prob = sample = couple = _need

    def state(self) -> dict[str, Any]:
        return {"kind": KIND}


# ---------------------------------------------------------------- spatial median

def spatial_median(x: torch.Tensor, weights: torch.Tensor | None = None,
                   iters: int = 50) -> torch.Tensor:
    """Point minimising the mean great-circle distance to samples x (n, 3) (the Bayes point
    for km error): Weiszfeld iterations in the tangent plane, started at the best sample
    among up to 256 (so a multi-modal cloud does not start between its modes)."""
    x = S2.normalize(x.to(torch.float64))
    w = torch.ones(len(x), dtype=torch.float64) if weights is None else weights.double()
    cand = x[torch.linspace(0, len(x) - 1, min(256, len(x))).long()]
    cost = (S2.dist(cand[:, None], x[None]) * w).sum(-1)
    m = cand[int(torch.argmin(cost))]
    for _ in range(iters):
        v = S2.log(m.expand_as(x), x)
        d = v.norm(dim=-1).clamp_min(1e-12)
        step = (w[:, None] * v / d[:, None]).sum(0) / (w / d).sum()
        m = S2.exp(m, step)
        if float(step.norm()) < 1e-10:
            break
    return m


# ---------------------------------------------------------------- simulated pairs

@dataclass
class Pairs:
    """Training/evaluation data: per example its truth, draws from its posterior base and the
    posterior summary (the flow's condition)."""

    truth: torch.Tensor  # (n, 3) float64
    x0: torch.Tensor  # (n, m, 3) float32, draws from each example's posterior base
    cond: torch.Tensor  # (n, len(SUMMARY_COLUMNS)) float32
    desc: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        from avgeo.training import atomic_save

        atomic_save({"truth": self.truth, "x0": self.x0, "cond": self.cond, "desc": self.desc},
                    Path(path))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Pairs:
        from avgeo.errors import WeightsError

        try:
            obj = torch.load(Path(path), map_location="cpu", weights_only=True)
            return cls(obj["truth"], obj["x0"], obj["cond"], obj["desc"])
        except (OSError, KeyError, RuntimeError, EOFError) as exc:
            raise WeightsError(f"cannot read simulated pairs {path}: {exc}",
                               hint="delete it to simulate again") from exc


def posterior_of(atoms) -> tuple[Any, Any]:
    """(FusionResult, Support) of a list of atoms with the shipped fusion weights."""
    from avgeo.reasoning.fusion import fuse

    result = fuse(atoms)
    return result, result.support()


def simulate_examples(n: int, seed: int):
    """n simulated located examples (the reasoner's simulator: real likelihood models)."""
    from avgeo.reasoning.reasoner.simulate import simulate

    if n < 1:
        raise ConfigError("--sim must be at least 1")
    return simulate(n, seed=seed)


def simulate_pairs(n: int, seed: int = 0, samples: int = 128,
                   log: Callable[[str], None] = lambda s: None) -> Pairs:
    """Simulate n examples, fuse each one's atoms, and keep its truth, `samples` draws from its
    posterior base and its posterior summary. Deterministic per (n, seed, samples)."""
    examples = simulate_examples(n, seed)
    g = torch.Generator().manual_seed(seed)
    truth = torch.empty(n, 3, dtype=torch.float64)
    x0 = torch.empty(n, samples, 3, dtype=torch.float32)
    cond = torch.empty(n, len(SUMMARY_COLUMNS), dtype=torch.float32)
    t0 = time.monotonic()
    for i, ex in enumerate(examples):
        _res, support = posterior_of(ex.atoms)
        base = PosteriorBase.from_support(support)
        truth[i] = S2.from_latlon(ex.truth.lat, ex.truth.lon)
        x0[i] = base.sample(samples, g)
        cond[i] = torch.from_numpy(base.summary()).float()
        if (i + 1) % 200 == 0:
            log(f"simulated and fused {i + 1}/{n} examples ({time.monotonic() - t0:.0f}s)")
    return Pairs(truth, x0, cond, {"source": "simulate", "n": n, "seed": seed,
                                   "samples": samples})


# ---------------------------------------------------------------- training

def default_config(**overrides: Any):
    """The refinement flow's shape: small (it only learns a correction of the posterior),
    conditioned on SUMMARY_COLUMNS, no condition dropout (a posterior always exists)."""
    from avgeo.precision.train import FlowConfig

    cfg = FlowConfig(hidden=128, depth=3, n_freq=64, freq_max=16.0, time_freq=8,
                     cond_columns=list(SUMMARY_COLUMNS), cond_hidden=64, p_uncond=0.0,
                     lr=1e-3, batch_size=2048, epochs=8, warmup_steps=100, ema=0.999, seed=0,
                     base=KIND)
    return replace(cfg, **overrides)


def _check_config(cfg) -> None:
    if list(cfg.cond_columns) not in ([], SUMMARY_COLUMNS):
        raise ConfigError("a posterior-base flow is conditioned on the posterior summary or "
                          "on nothing",
                          hint=f"set cond_columns to [] or to {SUMMARY_COLUMNS}")
    if cfg.base != KIND:
        raise ConfigError(f"a posterior-base flow has base {KIND!r}, not {cfg.base!r}")


def _task_class():
    from avgeo.precision.train import FlowTask
    from avgeo.training import cosine_lr, shard

    class PosteriorFlowTask(FlowTask):
        """Flow matching from each example's posterior to its truth: a batch is a random set of
        (example, posterior draw) pairs; one epoch visits every pair of the pool once."""

        def __init__(self, cfg, pairs: Pairs, world: int) -> None:
            cond = pairs.cond if cfg.cond_dim else None
            super().__init__(cfg, PerExampleBase(), pairs.truth, cond, world, pairs.desc)
            self.x0_pool = pairs.x0.to(torch.float32)
            self.m = self.x0_pool.shape[1]
            self.n_pairs = self.n * self.m
            self.bs = self._bs(cfg.batch_size, world)
            self.steps_per_epoch = max(1, self.n_pairs // self.bs)
            self.total = self.steps_per_epoch * cfg.epochs
            self.lr_at = cosine_lr(cfg.lr, cfg.warmup_steps, self.total)
            self._shard = shard

        def _bs(self, batch_size: int, world: int) -> int:
            from avgeo.training import local_batch

            return local_batch(min(batch_size, self.n_pairs), world)

        def batches(self, epoch, env):
            g, bs, sh = self.g, self.bs, self._shard
            perm = torch.randperm(self.n_pairs, generator=g)
            for b in range(self.steps_per_epoch):
                k = perm[b * bs:(b + 1) * bs]
                ex, j = k // self.m, k % self.m
                x1 = self.x_all[ex]
                x0 = self.x0_pool[ex, j]
                t = torch.rand(bs, generator=g)
                ps = self.path.sample(sh(x0, env), sh(x1, env), sh(t, env))
                if self.c_all is None:
                    yield ps, None, None
                    continue
                drop = torch.rand(bs, generator=g) < self.cfg.p_uncond
                yield ps, sh(self.c_all[ex], env), sh(drop, env)

    return PosteriorFlowTask


def train_posterior_flow(pairs: Pairs, cfg=None, *, out: str | Path | None = None,
                         resume: str | Path | None = None, device: str = "cpu",
                         max_seconds: float | None = None, checkpoint_s: float = 120.0,
                         log: Callable[[str], None] = print, run_dir: str | Path | None = None,
                         checkpoint_every: int = 0, log_every: int = 10,
                         tensorboard: bool = True, record: dict[str, Any] | None = None,
                         config_source: str = "", info: dict[str, Any] | None = None
                         ) -> FlowModel:
    """Train the refinement flow on simulated pairs with the shared loop (avgeo.training.fit):
    DDP under torchrun, exact resume from `out`.ckpt, metrics in `run_dir`. Returns the EMA
    model (its base stands for "each input's posterior"); `out` gets a versioned weights file
    that load_flow / PosteriorFlow.load read."""
    from avgeo.precision.train import FlowConfig, _load_any, save_flow
    from avgeo.training import TrainerConfig, dist_env, fit
    from avgeo.training import record as make_record
    from avgeo.training.distributed import barrier

    requested_epochs = cfg.epochs if cfg is not None else None
    cfg = cfg or default_config()
    state = None
    if resume is not None:
        state = _load_any(resume)
        cfg = FlowConfig(**state["config"])
        cfg.epochs = requested_epochs or cfg.epochs
    _check_config(cfg)
    if pairs.cond.shape[1] != len(SUMMARY_COLUMNS) or len(pairs.truth) != len(pairs.x0):
        raise ConfigError("simulated pairs do not match this version's posterior summary",
                          hint="simulate them again")
    env = dist_env()
    task = _task_class()(cfg, pairs, env.world)
    run = TrainerConfig(seed=cfg.seed, device=device, epochs=cfg.epochs,
                        max_seconds=max_seconds or 0.0, grad_clip=1.0, log_every=log_every,
                        checkpoint_every=checkpoint_every, checkpoint_s=checkpoint_s,
                        run_dir=str(run_dir or ""),
                        checkpoint=str(out) + ".ckpt" if out is not None else "",
                        tensorboard=tensorboard)
    res = fit(task, run, resume=state, record=record or make_record(flow=cfg, run=run),
              config_source=config_source, log=log)
    assert task.ema is not None
    final = FlowModel(task.ema.cpu().float(), PerExampleBase())
    if env.is_main and out is not None:
        save_flow(out, final, cfg, pairs.desc,
                  {"steps": res.step, "epochs_done": res.epochs_done, **(info or {})})
    if env.distributed:
        barrier()
    return final


# ---------------------------------------------------------------- inference

def default_weights_path() -> Path | None:
    """The shipped posterior-base flow, if this install has it."""
    p = Path(__file__).parent / "weights" / "posterior_flow.pt"
    return p if p.is_file() else None


class PosteriorFlow:
    """A trained refinement flow applied to one posterior: its base is that posterior."""

    def __init__(self, model: FlowModel, steps: int = 16) -> None:
        self.net = model.net
        self.steps = steps

    @classmethod
    def load(cls, path: str | Path | None = None, steps: int = 16) -> PosteriorFlow:
        from avgeo.errors import WeightsError
        from avgeo.precision.train import load_flow

        path = path or default_weights_path()
        if path is None:
            raise WeightsError("no posterior-base flow weights are installed",
                               hint="train them: avgeo train flow --base posterior --sim N")
        model, obj = load_flow(path)
        if obj.get("base", {}).get("kind") != KIND:
            raise WeightsError(f"{path} is not a posterior-base flow",
                               hint="pass weights written by `avgeo train flow --base posterior`")
        return cls(model, steps)

    def for_base(self, base: PosteriorBase) -> tuple[FlowModel, torch.Tensor]:
        """(flow whose base is `base`, its condition vector or None)."""
        c = torch.from_numpy(base.summary()).float() if self.net.cond_dim else None
        return FlowModel(self.net, base), c

    def log_prob(self, base: PosteriorBase, x: torch.Tensor) -> torch.Tensor:
        """Exact log density (per steradian) of the refined posterior at points x (n, 3)."""
        fm, c = self.for_base(base)
        return fm.log_prob(x, cond=c, steps=self.steps)

    def sample(self, base: PosteriorBase, n: int, seed: int = 0) -> torch.Tensor:
        fm, c = self.for_base(base)
        return fm.sample(n, cond=c, steps=self.steps,
                         generator=torch.Generator().manual_seed(seed))

    def point(self, base: PosteriorBase, n: int = 512, seed: int = 0) -> tuple[float, float]:
        """(lat, lon): spatial median of refined samples (the km-error Bayes point)."""
        lat, lon = S2.to_latlon(spatial_median(self.sample(base, n, seed)))
        return float(lat), float(lon)


# ---------------------------------------------------------------- evaluation

def evaluate(flow: PosteriorFlow | None, n: int, seed: int, samples: int = 256,
             log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Held-out simulated examples: NLL of the truth (nats, per steradian) and median error
    (km) under (a) the fusion posterior alone (piecewise constant per cell, and as the vMF
    base) and (b) the posterior-base flow. Point estimates: the pipeline's for the posterior,
    and the spatial median of samples for both the base and the flow."""
    from avgeo.geo.sphere import haversine_km
    from avgeo.reasoning import summary

    rows: dict[str, list[float]] = {k: [] for k in (
        "nll_cells", "nll_base", "nll_flow", "err_pipeline_km", "err_base_km", "err_flow_km")}
    t0 = time.monotonic()
    for i, ex in enumerate(simulate_examples(n, seed)):
        res, support = posterior_of(ex.atoms)
        base = PosteriorBase.from_support(support)
        lat, lon = ex.truth.lat, ex.truth.lon
        x1 = S2.from_latlon(lat, lon)[None]
        rows["nll_cells"].append(-base.cell_log_density(lat, lon))
        rows["nll_base"].append(-float(base.log_prob(x1)[0]))
        pe = summary.point_estimate(res.fine or res.coarse, ex.atoms)
        rows["err_pipeline_km"].append(float(haversine_km(pe.lat, pe.lon, lat, lon)))
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        m = S2.to_latlon(spatial_median(base.sample(samples, g)))
        rows["err_base_km"].append(float(haversine_km(float(m[0]), float(m[1]), lat, lon)))
        if flow is not None:
            rows["nll_flow"].append(-float(flow.log_prob(base, x1.float())[0]))
            plat, plon = flow.point(base, samples, seed * 100_003 + i)
            rows["err_flow_km"].append(float(haversine_km(plat, plon, lat, lon)))
        if (i + 1) % 100 == 0:
            log(f"evaluated {i + 1}/{n} ({time.monotonic() - t0:.0f}s)")
    out: dict[str, Any] = {"n": n, "seed": seed, "samples": samples}
    for k, v in rows.items():
        if v:
            a = np.asarray(v)
            stat = "median" if k.startswith("err") else "mean"
            out[k] = float(np.median(a) if stat == "median" else a.mean())
    out["per_example"] = {k: v for k, v in rows.items() if v}
    return out
