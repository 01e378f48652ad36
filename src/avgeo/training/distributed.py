"""Processes and devices: torchrun's environment, process groups (gloo on CPU, nccl on GPU),
device choice, and global-batch slicing so that N processes reproduce a one-process run."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from avgeo.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a (possibly one-process) job."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def dist_env() -> DistEnv:
    """The job layout from torchrun's environment variables (one process without them)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"bad torchrun environment: {exc}",
                          hint="start the job with torchrun, or unset WORLD_SIZE/RANK") from exc
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} outside WORLD_SIZE {world}")
    return DistEnv(world, rank, local)


def select_device(name: str = "cpu", env: DistEnv | None = None) -> torch.device:
    """`cpu`, `cuda` (cuda:LOCAL_RANK under torchrun), `cuda:N`, or `auto` (cuda if visible)."""
    env = env or dist_env()
    name = (name or "cpu").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} but no CUDA device is visible",
                              hint="use --device cpu")
        if name == "cuda":
            index = env.local_rank
        else:
            try:
                index = int(name.split(":", 1)[1])
            except ValueError as exc:
                raise ConfigError(f"--device {name!r}", hint="use cuda:0, cuda:1, ...") from exc
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device cuda:{index} but only {torch.cuda.device_count()} "
                              "CUDA devices are visible", hint="pick a visible device")
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
        return dev
    raise ConfigError(f"--device {name!r}", hint="use cpu, cuda, cuda:N or auto")


_created_group = False


def init_distributed(device: torch.device, env: DistEnv | None = None) -> DistEnv:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA), once; a group
    the caller already set up is used as it is."""
    global _created_group
    env = env or dist_env()
    if env.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _created_group = True
    return env


def shutdown_distributed() -> None:
    """Leave the process group if `init_distributed` made it (never someone else's)."""
    global _created_group
    if _created_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _created_group = False


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def local_batch(global_batch: int, world: int) -> int:
    """The largest global batch ≤ `global_batch` that splits evenly over `world` processes."""
    bs = global_batch - global_batch % world
    if bs < world:
        raise ConfigError(f"a batch of {global_batch} cannot be split over {world} processes",
                          hint="use a larger batch or fewer processes")
    return bs


def shard(x: torch.Tensor | None, env: DistEnv) -> torch.Tensor | None:
    """This rank's rows of a global batch (every world-th row from its rank).

    Every rank draws the same global batch (same seed), keeps its slice, and DDP averages
    the gradients: with equal slices that average is the full-batch gradient, so N
    processes reproduce a one-process run up to float summation order.
    """
    if x is None or env.world == 1:
        return x
    return x[env.rank::env.world]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a list of floats over all processes (a no-op in a one-process run)."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's value of `flag` on every process (so that all stop together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(t, 0)
    return bool(t.item())
