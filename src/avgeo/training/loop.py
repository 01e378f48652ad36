"""The shared training loop: `fit(task, config)` trains a Task's model with DDP, optimizer and
schedule, clipping, metrics, checkpoint cadence and exact resume; only rank 0 writes files."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avgeo.errors import WeightsError
from avgeo.training.checkpoint import CHECKPOINT_VERSION, atomic_save, atomic_write_text
from avgeo.training.config import TrainerConfig, to_dict
from avgeo.training.config import record as make_record
from avgeo.training.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    broadcast_flag,
    dist_env,
    init_distributed,
    select_device,
)
from avgeo.training.metrics import MetricsLog
from avgeo.training.seeds import capture_rng_state, restore_rng_state, seed_everything

Log = Callable[[str], None]
_END = object()  # end-of-iterator sentinel (a batch may be anything, None included)


@dataclass
class FitContext:
    """What a task may look at while it runs (read-only for the task)."""

    cfg: TrainerConfig
    env: DistEnv
    device: torch.device
    log: Log
    step: int = 0
    epoch: int = 0
    metrics: MetricsLog | None = None
    _t0: float = field(default_factory=time.monotonic)

    @property
    def is_main(self) -> bool:
        return self.env.is_main

    @property
    def elapsed(self) -> float:
        """Seconds of training so far, including those before a resume."""
        return time.monotonic() - self._t0


class Task:
    """What one trainer supplies to `fit`. Override `build`, `configure_optimizer`, `batches`
    and `loss`; the other hooks are optional.

    Resume contract: after `load_data_state(s)` with the state taken at an epoch's start,
    `batches(epoch, env)` must yield the same batches again (the loop replays and drops the
    ones already trained on).
    """

    #: Extra keyword arguments for DistributedDataParallel.
    ddp_kwargs: Mapping[str, Any] = {}

    def build(self, ctx: FitContext) -> nn.Module:
        """The model, on the CPU (the loop loads resumed weights, then moves it)."""
        raise NotImplementedError

    def setup(self, ctx: FitContext, model: nn.Module) -> None:
        """Called once the model is on its device, before DDP wrapping (e.g. make an EMA)."""

    def configure_optimizer(self, model: nn.Module, ctx: FitContext) -> torch.optim.Optimizer:
        raise NotImplementedError

    def configure_scheduler(self, optimizer: torch.optim.Optimizer, ctx: FitContext) -> Any:
        """A torch LR scheduler stepped once per optimizer step, or None."""
        return None

    def lr_at(self, step: int) -> float | None:
        """Learning rate to set before optimizer step `step` (None: leave it)."""
        return None

    def batches(self, epoch: int, env: DistEnv) -> Iterable[Any]:
        """This rank's share of each batch of one epoch (see distributed.shard)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any
             ) -> torch.Tensor | tuple[torch.Tensor, Mapping[str, Any]]:
        """The loss to minimise, optionally with named scalars to log beside it."""
        raise NotImplementedError

    def after_backward(self, model: nn.Module) -> None:
        """After the (all-reduced) backward pass, before clipping and the step."""

    def after_step(self, model: nn.Module, step: int) -> None:
        """After optimizer step number `step` (1-based)."""

    def on_epoch_end(self, ctx: FitContext, epoch: int, means: dict[str, float]) -> None:
        """Epoch `epoch` (0-based) ended; `means` averages its scalars over steps and ranks."""

    def state_dict(self) -> dict[str, Any]:
        """Task state beside the model's (an EMA copy, counters), saved in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def data_state(self) -> Any:
        """State of the task's own data RNG (None if batches depend on the epoch only)."""
        return None

    def load_data_state(self, state: Any) -> None:
        pass

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        """Extra top-level entries of a checkpoint file (kind, format_version, config...)."""
        return {}

    def upgrade_checkpoint(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The trainer block of a checkpoint written before the shared loop existed."""
        raise WeightsError("the checkpoint has no trainer state",
                           hint="resume from a checkpoint written by `avgeo train`")


@dataclass
class FitResult:
    model: nn.Module
    step: int
    epochs_done: int
    #: "epochs", "max_steps" or "max_seconds".
    stopped: str
    history: list[dict[str, float]]
    elapsed: float
    checkpoint: Path | None


class _Acc:
    """Sums of per-step scalars since some point, averaged over steps and ranks on demand."""

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        self.sums: dict[str, float] = dict((state or {}).get("sums", {}))
        self.n = int((state or {}).get("n", 0))

    def add(self, scalars: Mapping[str, float]) -> None:
        for k, v in scalars.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def means(self, env: DistEnv, device: torch.device) -> dict[str, float]:
        keys = list(self.sums)
        vals = all_reduce_sum([self.sums[k] for k in keys], device) if env.world > 1 \
            else [self.sums[k] for k in keys]
        return {k: v / max(self.n * env.world, 1) for k, v in zip(keys, vals, strict=True)}

    def state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "n": self.n}


def _scalars(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        loss, extra = out
    else:
        loss, extra = out, {}
    scalars = {"loss": float(loss.detach())}
    for k, v in extra.items():
        scalars[k] = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
    return loss, scalars


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file as a dict (CPU tensors); WeightsError if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"no checkpoint at {p}", hint="pass the .ckpt file a run wrote")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read checkpoint {p}: {type(exc).__name__}") from exc
    if not isinstance(obj, dict):
        raise WeightsError(f"{p} is not a checkpoint")
    return obj


def _trainer_block(obj: dict[str, Any], task: Task) -> dict[str, Any]:
    tr = obj.get("trainer")
    if tr is None:
        return task.upgrade_checkpoint(obj)
    if tr.get("version") != CHECKPOINT_VERSION:
        raise WeightsError(f"checkpoint trainer version {tr.get('version')}; this avgeo reads "
                           f"{CHECKPOINT_VERSION}")
    return tr


def fit(task: Task, cfg: TrainerConfig, *, resume: str | Path | dict[str, Any] | None = None,
        record: dict[str, Any] | None = None, config_source: str = "",
        log: Log = print) -> FitResult:
    """Train `task` as `cfg` says; on CPU, one GPU, or every process of a torchrun job.

    `resume` (a checkpoint path, or its dict) restores model, optimizer, scheduler, task and
    RNG states, step and the position inside the epoch, so the run continues as if never
    stopped. `record` is the run's full config (default: `cfg` alone); it is written to
    run_dir/config.json and into every checkpoint.
    """
    env = dist_env()
    device = select_device(cfg.device, env)
    init_distributed(device, env)
    seed_everything(cfg.seed, cfg.deterministic)
    state: dict[str, Any] | None = None
    if resume is not None:
        obj = resume if isinstance(resume, dict) else read_checkpoint(resume)
        state = _trainer_block(obj, task)
    record = record or make_record(run=cfg)
    offset = float(state.get("elapsed", 0.0)) if state else 0.0
    ctx = FitContext(cfg, env, device, log if env.is_main else (lambda _s: None),
                     _t0=time.monotonic() - offset)

    model = task.build(ctx)
    if state is not None:
        model.load_state_dict(state["model"])
    model.to(device)
    task.setup(ctx, model)
    if state is not None:
        task.load_state_dict(state.get("task") or {})
    wrapped: nn.Module = model
    if env.distributed:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            **dict(task.ddp_kwargs))
    opt = task.configure_optimizer(model, ctx)
    sched = task.configure_scheduler(opt, ctx)
    if state is not None:
        if state.get("optimizer") is not None:
            opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])

    step = int(state["step"]) if state else 0
    epoch = int(state["epoch"]) if state else 0
    k = int(state.get("batch_in_epoch", 0)) if state else 0
    history: list[dict[str, float]] = list(state.get("history", [])) if state else []
    epoch_acc = _Acc(state.get("epoch_acc") if state else None)
    window = _Acc(state.get("window") if state else None)
    ckpt_path = cfg.checkpoint_path()
    ctx.step, ctx.epoch = step, epoch

    metrics = None
    if env.is_main and cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(record, indent=2) + "\n")
        if config_source:
            atomic_write_text(run_dir / "config_source.txt", config_source)
        metrics = MetricsLog(run_dir, tensorboard=cfg.tensorboard,
                             resume_step=step if state else None, wall_offset=ctx.elapsed)
        if cfg.tensorboard and metrics.tb is None:
            ctx.log("tensorboard is not installed: metrics go to metrics.csv only")
    ctx.metrics = metrics
    if state is not None:
        ctx.log(f"resumed at step {step} (epoch {epoch + 1}, batch {k})")

    epoch_data: Any = state.get("epoch_data") if state else None
    epoch_rng: Any = state.get("epoch_rng") if state else None
    if state is not None:
        # Back to the start of the checkpoint's epoch (replayed below when k > 0).
        task.load_data_state(epoch_data)
        restore_rng_state(epoch_rng)
    last_ckpt = time.monotonic()
    last_lr = float(opt.param_groups[0]["lr"])

    def save() -> None:
        nonlocal last_ckpt
        last_ckpt = time.monotonic()
        if not env.is_main or ckpt_path is None:
            return
        mid = k > 0
        trainer = {
            "version": CHECKPOINT_VERSION, "step": step, "epoch": epoch, "batch_in_epoch": k,
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "task": task.state_dict(),
            # Mid-epoch, the loop resumes by replaying the epoch from its start state.
            "epoch_data": epoch_data if mid else task.data_state(),
            "epoch_rng": epoch_rng if mid else capture_rng_state(),
            "rng": capture_rng_state(), "epoch_acc": epoch_acc.state(),
            "window": window.state(), "history": history, "elapsed": ctx.elapsed,
            "config": record, "config_source": config_source, "run": to_dict(cfg),
            "world": env.world,
        }
        atomic_save({**task.checkpoint_extras(model), "trainer": trainer}, ckpt_path)

    def flush_window() -> None:
        nonlocal window
        if window.n == 0:
            return
        means = window.means(env, device)
        if metrics is not None:
            metrics.log(step, {**means, "lr": last_lr, "epoch": ctx.epoch + 1})
        window = _Acc()

    def out_of_steps() -> bool:
        return bool(cfg.max_steps) and step >= cfg.max_steps

    stopped = "epochs"
    wrapped.train()
    try:
        while epoch < cfg.epochs:
            if out_of_steps():
                stopped = "max_steps"
                break
            ctx.epoch = epoch
            if k == 0:
                epoch_data, epoch_rng = task.data_state(), capture_rng_state()
            it: Iterator[Any] = iter(task.batches(epoch, env))
            if k > 0:
                for i in range(k):
                    if next(it, _END) is _END:
                        raise WeightsError(f"the checkpoint is {k} batches into epoch "
                                           f"{epoch + 1} but the data has only {i}",
                                           hint="resume with the data the run started with")
                restore_rng_state(state["rng"] if state else None)
            exhausted = False
            while True:
                if out_of_steps():
                    # Learn whether the epoch is over without disturbing the RNG streams.
                    snap = capture_rng_state()
                    if next(it, _END) is _END:
                        exhausted = True
                    else:
                        restore_rng_state(snap)
                        stopped = "max_steps"
                    break
                batch = next(it, _END)
                if batch is _END:
                    exhausted = True
                    break
                lr = task.lr_at(step)
                if lr is not None:
                    for group in opt.param_groups:
                        group["lr"] = lr
                last_lr = float(opt.param_groups[0]["lr"])
                loss, scalars = _scalars(task.loss(wrapped, batch))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                task.after_backward(model)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                k += 1
                ctx.step = step
                task.after_step(model, step)
                epoch_acc.add(scalars)
                window.add(scalars)
                if cfg.log_every > 0 and step % cfg.log_every == 0:
                    flush_window()
                if cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0:
                    save()
            if not exhausted:
                break
            means = epoch_acc.means(env, device)
            history.append({**means, "epoch": epoch + 1})
            task.on_epoch_end(ctx, epoch, means)
            epoch += 1
            k = 0
            epoch_acc = _Acc()
            over = bool(cfg.max_seconds) and ctx.elapsed > cfg.max_seconds
            if env.distributed:
                over = broadcast_flag(over, device)
            if over and epoch < cfg.epochs:
                stopped = "max_seconds"
                break
            if epoch < cfg.epochs and time.monotonic() - last_ckpt > cfg.checkpoint_s:
                save()
        flush_window()
        save()
    finally:
        if metrics is not None:
            metrics.close()
    if env.distributed:
        barrier()
    return FitResult(model, step, epoch, stopped, history, ctx.elapsed,
                     ckpt_path if env.is_main else None)



def cosine_lr(base: float, warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at step `total`."""

    def lr_at(step: int) -> float:
        if step < warmup:
            return base * (step + 1) / warmup
        frac = (step - warmup) / max(1, total - warmup)
        return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))

    return lr_at
