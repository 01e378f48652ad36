"""One training core for avgeo's learned parts: config files, seeds, torchrun DDP, atomic
checkpoints with exact resume, a CSV/TensorBoard metrics log, and the `fit(task, config)` loop."""

from avgeo.training.checkpoint import (
    CHECKPOINT_VERSION,
    atomic_save,
    atomic_write_text,
    load_versioned,
    save_versioned,
)
from avgeo.training.config import (
    SCHEMA_VERSION,
    TrainerConfig,
    build_config,
    cli_layers,
    dump_config,
    load_config_file,
    parse_overrides,
    record,
    resolve,
    to_dict,
)
from avgeo.training.distributed import (
    DistEnv,
    dist_env,
    init_distributed,
    local_batch,
    select_device,
    shard,
    shutdown_distributed,
)
from avgeo.training.loop import FitContext, FitResult, Task, cosine_lr, fit, read_checkpoint
from avgeo.training.metrics import MetricsLog, read_metrics, tensorboard_available
from avgeo.training.seeds import capture_rng_state, restore_rng_state, seed_everything

__all__ = [
    "CHECKPOINT_VERSION", "SCHEMA_VERSION", "DistEnv", "FitContext", "FitResult", "MetricsLog",
    "Task", "TrainerConfig", "atomic_save", "atomic_write_text", "build_config",
    "capture_rng_state", "cli_layers", "cosine_lr", "dist_env", "dump_config", "fit",
    "init_distributed", "load_config_file", "load_versioned", "local_batch", "parse_overrides",
    "read_checkpoint", "read_metrics", "record", "resolve", "restore_rng_state",
    "save_versioned", "seed_everything", "select_device", "shard", "shutdown_distributed",
    "tensorboard_available", "to_dict",
]
