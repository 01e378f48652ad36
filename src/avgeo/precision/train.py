"""Conditional flow matching training on S² as a task of the shared training loop (CPU, GPU, or
DDP under torchrun), with exact resume and a versioned weights file; plus reading lat/lon tables."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avgeo.errors import ConfigError, TableError, WeightsError
from avgeo.precision import manifold as S2
from avgeo.precision.model import (
    FlowModel,
    UniformBase,
    VelocityNet,
    VMFMixtureBase,
    base_from_state,
)
from avgeo.precision.path import GeodesicPath
from avgeo.training import (
    DistEnv,
    FitContext,
    Task,
    TrainerConfig,
    cosine_lr,
    dist_env,
    fit,
    load_versioned,
    local_batch,
    save_versioned,
    shard,
)
from avgeo.training import record as make_record
from avgeo.training.distributed import barrier

FORMAT_VERSION = 1
FILE_KIND = "avgeo.precision.flow"


@dataclass
class FlowConfig:
    """Network shape and optimisation settings; stored in every weights file."""

    hidden: int = 256
    depth: int = 4
    n_freq: int = 128
    freq_max: float = 64.0
    time_freq: int = 8
    cond_columns: list[str] = field(default_factory=list)
    cond_hidden: int = 64
    p_uncond: float = 0.1  # condition dropout, for classifier-free guidance
    lr: float = 2e-3
    batch_size: int = 4096
    epochs: int = 50
    warmup_steps: int = 100
    ema: float = 0.999
    seed: int = 0
    base: str = "uniform"  # or "vmf_mixture"
    base_components: int = 0
    base_iters: int = 60

    @property
    def cond_dim(self) -> int:
        return len(self.cond_columns)


def read_points(path: str | Path, cond_columns: list[str] | None = None,
                lat: str = "lat", lon: str = "lon") -> tuple[torch.Tensor, torch.Tensor | None,
                                                            dict[str, Any]]:
    """Unit vectors (float64) and optional condition matrix from a CSV/Parquet table."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise TableError(f"no such table: {p}", hint="pass a CSV or Parquet file with lat, lon")
    try:
        df = pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)
    except Exception as exc:
        raise TableError(f"cannot read {p}: {exc}") from exc
    cols = {c.lower(): c for c in df.columns}
    for want in (lat, lon):
        if want.lower() not in cols:
            raise TableError(f"{p} has no column {want!r} (columns: {list(df.columns)[:10]})")
    la = pd.to_numeric(df[cols[lat.lower()]], errors="coerce").to_numpy(np.float64)
    lo = pd.to_numeric(df[cols[lon.lower()]], errors="coerce").to_numpy(np.float64)
    bad = ~(np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90) & (np.abs(lo) <= 360))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TableError(f"{p} row {row + 2}: lat/lon missing or out of range")
    if len(la) == 0:
        raise TableError(f"{p} has no rows")
    cond = None
    cond_columns = list(cond_columns or [])
    if cond_columns:
        missing = [c for c in cond_columns if c not in df.columns]
        if missing:
            raise TableError(f"{p} lacks condition columns {missing}")
        cond_np = df[cond_columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        if not np.isfinite(cond_np).all():
            raise TableError(f"{p}: condition columns hold missing or non-numeric values")
        cond = torch.from_numpy(cond_np.copy())
    xyz = S2.from_latlon(torch.from_numpy(la.copy()), torch.from_numpy(lo.copy()))
    desc = {"source": str(p), "rows": len(la), "cond_columns": cond_columns}
    return xyz, cond, desc


def build_model(cfg: FlowConfig, base: UniformBase | VMFMixtureBase | None = None) -> FlowModel:
    # Layer init draws from the global RNG: seed it (without disturbing the caller's stream)
    # so that every process, and every run of one config, starts from the same weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return _build_model(cfg, base)


def _build_model(cfg: FlowConfig, base: UniformBase | VMFMixtureBase | None) -> FlowModel:
    net = VelocityNet(hidden=cfg.hidden, depth=cfg.depth, n_freq=cfg.n_freq,
                      freq_max=cfg.freq_max, time_freq=cfg.time_freq, cond_dim=cfg.cond_dim,
                      cond_hidden=cfg.cond_hidden, seed=cfg.seed)
    return FlowModel(net, base)


def make_base(cfg: FlowConfig, xyz: torch.Tensor) -> UniformBase | VMFMixtureBase:
    if cfg.base == "uniform":
        return UniformBase()
    if cfg.base == "vmf_mixture":
        from avgeo.precision.baselines import VMFMixture

        if cfg.base_components < 1:
            raise ConfigError("base vmf_mixture needs base_components >= 1")
        m = VMFMixture.fit(xyz, k=cfg.base_components, iters=cfg.base_iters, seed=cfg.seed)
        return VMFMixtureBase(m.weights, m.means, m.kappas)
    raise ConfigError(f"unknown base {cfg.base!r}", hint="use uniform or vmf_mixture")


class FlowTask(Task):
    """Flow matching as a task of the shared training loop (avgeo.training.fit).

    Every rank draws the same global batch and noise from one generator, then trains on its
    slice of it: DDP's gradient average over equal slices is the one-process full-batch
    gradient, so N processes reproduce a one-process run (up to float summation order).
    """

    def __init__(self, cfg: FlowConfig, base: UniformBase | VMFMixtureBase, xyz: torch.Tensor,
                 cond: torch.Tensor | None, world: int,
                 data_desc: dict[str, Any] | None = None) -> None:
        self.cfg, self.base, self.data_desc = cfg, base, data_desc or {}
        self.x_all = xyz.to(torch.float32)
        self.c_all = cond.to(torch.float32) if cond is not None else None
        self.n = self.x_all.shape[0]
        self.bs = local_batch(min(cfg.batch_size, self.n), world)
        self.steps_per_epoch = max(1, self.n // self.bs)
        self.total = self.steps_per_epoch * cfg.epochs
        self.lr_at = cosine_lr(cfg.lr, cfg.warmup_steps, self.total)
        self.g = torch.Generator().manual_seed(cfg.seed * 1000)
        self.path = GeodesicPath()
        self.ema: torch.nn.Module | None = None
        self.dev = torch.device("cpu")

    def build(self, ctx: FitContext) -> torch.nn.Module:
        return build_model(self.cfg, self.base).net

    def setup(self, ctx: FitContext, model: torch.nn.Module) -> None:
        self.dev = ctx.device
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def configure_optimizer(self, model: torch.nn.Module, ctx: FitContext) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=self.cfg.lr, weight_decay=0.0)

    def batches(self, epoch: int, env: DistEnv) -> Iterator[tuple[Any, ...]]:
        g, bs = self.g, self.bs
        perm = torch.randperm(self.n, generator=g)
        for b in range(self.steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            x1 = self.x_all[idx]
            x0 = self.base.couple(x1.double(), g).float()
            t = torch.rand(bs, generator=g)
            c = drop = None
            if self.c_all is not None:
                c = shard(self.c_all[idx], env)
                drop = shard(torch.rand(bs, generator=g) < self.cfg.p_uncond, env)
            yield self.path.sample(shard(x0, env), shard(x1, env), shard(t, env)), c, drop

    def loss(self, model: torch.nn.Module, batch: tuple[Any, ...]) -> torch.Tensor:
        ps, c, drop = batch
        dev = self.dev
        v = model(ps.x_t.to(dev), ps.t.to(dev), None if c is None else c.to(dev),
                  None if drop is None else drop.to(dev))
        return ((v - ps.dx_t.to(dev)) ** 2).sum(-1).mean()

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        assert self.ema is not None
        decay = min(self.cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1.0 - decay)

    def on_epoch_end(self, ctx: FitContext, epoch: int, means: dict[str, float]) -> None:
        ctx.log(f"epoch {epoch + 1}/{self.cfg.epochs} step {ctx.step} loss {means['loss']:.4f} "
                f"lr {self.lr_at(ctx.step):.2e} {ctx.elapsed:.0f}s")

    def state_dict(self) -> dict[str, Any]:
        assert self.ema is not None
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])

    def data_state(self) -> torch.Tensor:
        return self.g.get_state()

    def load_data_state(self, state: Any) -> None:
        if state is not None:
            self.g.set_state(state)

    def checkpoint_extras(self, model: torch.nn.Module) -> dict[str, Any]:
        # Keys load_flow reads: a checkpoint also loads as a model (its EMA weights).
        return {"format_version": FORMAT_VERSION, "kind": FILE_KIND + ".checkpoint",
                "config": asdict(self.cfg), "base": self.base.state(), "data": self.data_desc}

    def upgrade_checkpoint(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Checkpoints from before the shared loop (epoch ends only), and weights files
        (which start a fresh optimizer from their weights)."""
        return {"step": int(obj.get("step", 0)), "epoch": int(obj.get("epoch", 0)),
                "batch_in_epoch": 0, "model": obj["state_dict"],
                "optimizer": obj.get("optimizer"),
                "task": {"ema": obj.get("ema_state_dict")}, "epoch_data": obj.get("rng")}


def train_flow(xyz: torch.Tensor, cond: torch.Tensor | None = None,
               cfg: FlowConfig | None = None, *, out: str | Path | None = None,
               resume: str | Path | None = None, device: str = "cpu",
               data_desc: dict[str, Any] | None = None, max_seconds: float | None = None,
               checkpoint_s: float = 120.0, log: Callable[[str], None] = print,
               base: UniformBase | VMFMixtureBase | None = None,
               run_dir: str | Path | None = None, checkpoint_every: int = 0,
               log_every: int = 10, tensorboard: bool = True,
               record: dict[str, Any] | None = None, config_source: str = "") -> FlowModel:
    """Train by conditional flow matching on geodesic paths; returns the EMA model (on CPU).

    Runs on the shared loop (avgeo.training.fit): under torchrun (WORLD_SIZE > 1) each rank
    trains on its slice of every global batch through DDP (gloo on CPU, nccl on GPU),
    matching a one-process run; rank 0 writes files. `out` gets the versioned weights;
    `out`.ckpt holds the trainer state for `resume` (exact, also mid-epoch with
    `checkpoint_every`); `run_dir` gets metrics.csv (+ TensorBoard events) and config.json.
    """
    requested_epochs = cfg.epochs if cfg is not None else None
    cfg = cfg or FlowConfig()
    if cfg.cond_dim and cond is None:
        raise ConfigError("config names condition columns but no condition values were given")
    state = None
    if resume is not None:
        state = _load_any(resume)
        cfg = FlowConfig(**state["config"])
        # The network is the checkpoint's; only the number of epochs may be extended.
        cfg.epochs = requested_epochs or cfg.epochs
        base = base_from_state(state["base"])
    base = base or make_base(cfg, xyz)
    env = dist_env()
    task = FlowTask(cfg, base, xyz, cond, env.world, data_desc)
    run = TrainerConfig(seed=cfg.seed, device=device, epochs=cfg.epochs,
                        max_seconds=max_seconds or 0.0, grad_clip=1.0, log_every=log_every,
                        checkpoint_every=checkpoint_every, checkpoint_s=checkpoint_s,
                        run_dir=str(run_dir or ""),
                        checkpoint=str(out) + ".ckpt" if out is not None else "",
                        tensorboard=tensorboard)
    res = fit(task, run, resume=state, record=record or make_record(flow=cfg, run=run),
              config_source=config_source, log=log)
    assert task.ema is not None
    final = FlowModel(task.ema.cpu().float(), base)
    if env.is_main and out is not None:
        save_flow(out, final, cfg, data_desc or {},
                  {"steps": res.step, "epochs_done": res.epochs_done})
    if env.distributed:
        barrier()
    return final


def save_flow(path: str | Path, model: FlowModel, cfg: FlowConfig, data_desc: dict[str, Any],
              extra: dict[str, Any] | None = None) -> Path:
    """Write the versioned weights file (float32 EMA weights, config, base, data description)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
          for k, v in model.net.state_dict().items()}
    save_versioned(p, FILE_KIND, FORMAT_VERSION,
                   {"config": asdict(cfg), "state_dict": sd, "base": model.base.state(),
                    "data": data_desc, "info": extra or {}})
    return p


def _load_any(path: str | Path) -> dict[str, Any]:
    return load_versioned(path, FILE_KIND, (FORMAT_VERSION,), what="flow weights", prefix=True)


def _weights_of(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to use from a file: a checkpoint's EMA, else the file's state_dict."""
    ema = ((obj.get("trainer") or {}).get("task") or {}).get("ema")
    if ema is not None:
        return ema
    return obj.get("ema_state_dict", obj.get("state_dict"))


def load_flow(path: str | Path) -> tuple[FlowModel, dict[str, Any]]:
    """Load a weights file (or a checkpoint, using its EMA weights); returns (model, file dict)."""
    obj = _load_any(path)
    cfg = FlowConfig(**obj["config"])
    model = build_model(cfg, base_from_state(obj["base"]))
    weights = _weights_of(obj)
    if weights is None:
        raise WeightsError(f"{path} holds no flow weights")
    model.net.load_state_dict(weights)
    model.net.eval()
    return model, obj
