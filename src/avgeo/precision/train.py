"""Conditional flow matching training on S² (CPU or GPU, DistributedDataParallel under torchrun),
with checkpoints, resume, and a versioned weights file; plus reading lat/lon tables."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
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


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


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


def train_flow(xyz: torch.Tensor, cond: torch.Tensor | None = None,
               cfg: FlowConfig | None = None, *, out: str | Path | None = None,
               resume: str | Path | None = None, device: str = "cpu",
               data_desc: dict[str, Any] | None = None, max_seconds: float | None = None,
               checkpoint_s: float = 120.0, log: Callable[[str], None] = print,
               base: UniformBase | VMFMixtureBase | None = None) -> FlowModel:
    """Train by conditional flow matching on geodesic paths; returns the EMA model (on CPU).

    Under torchrun (WORLD_SIZE > 1) each rank trains on its slice of every global batch
    through DDP (gloo on CPU, nccl on GPU), matching a one-process run; rank 0 writes files.
    `out` gets the versioned weights; `out`.ckpt holds optimizer state for `resume`.
    """
    requested_epochs = cfg.epochs if cfg is not None else None
    cfg = cfg or FlowConfig()
    world, rank, local = _dist_env()
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda but no CUDA device is visible",
                              hint="use --device cpu")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
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
    model = build_model(cfg, base)
    if state is not None:
        model.net.load_state_dict(state["state_dict"])
    model.net.to(dev)
    ema = copy.deepcopy(model.net).eval()
    if state is not None and "ema_state_dict" in state:
        ema.load_state_dict(state["ema_state_dict"])
    for p in ema.parameters():
        p.requires_grad_(False)
    net: torch.nn.Module = model.net
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model.net, device_ids=[local] if dev.type == "cuda" else None)

    # Every rank draws the same global batch and noise, then trains on its slice of it: DDP's
    # gradient average over equal slices is then the single-process full-batch gradient, so
    # N processes reproduce a one-process run (up to float summation order).
    g = torch.Generator().manual_seed(cfg.seed * 1000)
    x_all = xyz.to(torch.float32)
    c_all = cond.to(torch.float32) if cond is not None else None
    n = x_all.shape[0]
    bs = min(cfg.batch_size, n)
    bs -= bs % world
    if bs < world:
        raise ConfigError(f"batch of {bs} cannot be split over {world} processes",
                          hint="use more data or fewer processes")
    mine = slice(rank, None, world)
    steps_per_epoch = max(1, n // bs)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))

    step, start_epoch = 0, 0
    if state is not None and "optimizer" in state:
        opt.load_state_dict(state["optimizer"])
        step, start_epoch = int(state["step"]), int(state["epoch"])
        if "rng" in state:
            g.set_state(state["rng"])
    path = GeodesicPath()
    t_start = time.monotonic()
    last_ckpt = t_start
    epoch = start_epoch
    running = 0.0
    for epoch in range(start_epoch, cfg.epochs):
        perm = torch.randperm(n, generator=g)
        running, count = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            x1 = x_all[idx]
            x0 = base.couple(x1.double(), g).float()
            t = torch.rand(bs, generator=g)
            c = drop = None
            if c_all is not None:
                c = c_all[idx][mine].to(dev)
                drop = (torch.rand(bs, generator=g) < cfg.p_uncond)[mine].to(dev)
            ps = path.sample(x0[mine], x1[mine], t[mine])
            v = net(ps.x_t.to(dev), ps.t.to(dev), c, drop)
            loss = ((v - ps.dx_t.to(dev)) ** 2).sum(-1).mean()
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.net.parameters(), strict=True):
                    pe.lerp_(pm, 1.0 - decay)
            running += float(loss.detach())
            count += 1
        now = time.monotonic()
        done = epoch + 1 == cfg.epochs or (max_seconds is not None and now - t_start > max_seconds)
        if rank == 0:
            log(f"epoch {epoch + 1}/{cfg.epochs} step {step} loss {running / count:.4f} "
                f"lr {lr_at(step):.2e} {now - t_start:.0f}s")
            if out is not None and (done or now - last_ckpt > checkpoint_s):
                _save_checkpoint(Path(str(out) + ".ckpt"), model.net, ema, opt, cfg, base, step,
                                 epoch + 1, g, data_desc)
                last_ckpt = now
        if done:
            break
    final = FlowModel(ema.cpu().float(), base)
    if rank == 0 and out is not None:
        save_flow(out, final, cfg, data_desc or {}, {"steps": step, "epochs_done": epoch + 1})
    if world > 1:
        torch.distributed.barrier()
    return final


def _save_checkpoint(path: Path, net, ema, opt, cfg, base, step, epoch, g, data_desc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, "kind": FILE_KIND + ".checkpoint",
                "config": asdict(cfg), "state_dict": net.state_dict(),
                "ema_state_dict": ema.state_dict(), "optimizer": opt.state_dict(),
                "step": step, "epoch": epoch, "rng": g.get_state(), "base": base.state(),
                "data": data_desc or {}}, tmp)
    os.replace(tmp, path)


def save_flow(path: str | Path, model: FlowModel, cfg: FlowConfig, data_desc: dict[str, Any],
              extra: dict[str, Any] | None = None) -> Path:
    """Write the versioned weights file (float32 EMA weights, config, base, data description)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
          for k, v in model.net.state_dict().items()}
    obj = {"format_version": FORMAT_VERSION, "kind": FILE_KIND, "config": asdict(cfg),
           "state_dict": sd, "base": model.base.state(), "data": data_desc,
           "info": extra or {}}
    tmp = p.with_suffix(p.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, p)
    return p


def _load_any(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"no weights file at {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read flow weights {p}: {type(exc).__name__}") from exc
    if not isinstance(obj, dict) or not str(obj.get("kind", "")).startswith(FILE_KIND):
        raise WeightsError(f"{p} is not an avgeo flow weights file")
    if obj.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{p} has format_version {obj.get('format_version')}, "
                           f"this avgeo reads {FORMAT_VERSION}")
    return obj


def load_flow(path: str | Path) -> tuple[FlowModel, dict[str, Any]]:
    """Load a weights file (or a checkpoint, using its EMA weights); returns (model, file dict)."""
    obj = _load_any(path)
    cfg = FlowConfig(**obj["config"])
    model = build_model(cfg, base_from_state(obj["base"]))
    model.net.load_state_dict(obj.get("ema_state_dict", obj["state_dict"]))
    model.net.eval()
    return model, obj
