"""`avgeo train <part>`: training commands for the learned parts (here: `flow`), with config
files (`--config`, `--set`) and the shared run options of avgeo.training."""

from __future__ import annotations

from pathlib import Path

import typer

from avgeo.cli.app import train_app

#: [run] settings `train flow` takes from its [flow] section or fixes itself.
FLOW_OWNED_RUN = {"seed": "flow.seed", "epochs": "flow.epochs", "grad_clip": "(fixed at 1.0)",
                  "max_steps": "flow.epochs", "checkpoint": "(always OUT.ckpt)",
                  "deterministic": "(not used by train flow)"}


def default_run_dir(out: Path) -> Path:
    """Where a command writes metrics.csv and config.json unless told: OUT's name + .run."""
    return out.with_name(out.stem + ".run")


def check_owned(run, owned: dict[str, str], command: str) -> None:
    """Refuse [run] settings that a command takes from elsewhere (they would be ignored)."""
    from avgeo.errors import ConfigError
    from avgeo.training import TrainerConfig

    default = TrainerConfig()
    for name, where in owned.items():
        if getattr(run, name) != getattr(default, name):
            raise ConfigError(f"run.{name} is not read by `{command}`",
                              hint=f"set {where} instead" if "." in where else where)


@train_app.command("flow")
def train_flow_cmd(
    ctx: typer.Context,
    data: Path | None = typer.Argument(
        None, help="CSV/Parquet with lat, lon (and condition columns); not with --base "
                   "posterior, which simulates its data."),
    cond: str = typer.Option("", "--cond", help="Comma list of condition columns (CFG)."),
    epochs: int = typer.Option(50, "--epochs", min=1),
    out: Path = typer.Option(Path("flow.pt"), "--out", help="Versioned weights file to write."),
    resume: Path | None = typer.Option(None, "--resume", help="Checkpoint (OUT.ckpt) to resume."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    batch_size: int = typer.Option(4096, "--batch-size", min=1),
    lr: float = typer.Option(2e-3, "--lr", min=0.0),
    hidden: int = typer.Option(256, "--hidden", min=8),
    depth: int = typer.Option(4, "--depth", min=1),
    freq_max: float = typer.Option(64.0, "--freq-max", min=1.0,
                                   help="Highest Fourier frequency (rad⁻¹) of the input."),
    base: str = typer.Option("uniform", "--base",
                             help="uniform, vmf_mixture, or posterior (a refinement flow from "
                                  "fusion posteriors of simulated examples, see --sim)."),
    components: int = typer.Option(0, "--components", min=0, help="vMF mixture base size."),
    p_uncond: float = typer.Option(0.1, "--p-uncond", min=0.0, max=1.0,
                                   help="Condition dropout for classifier-free guidance."),
    seed: int = typer.Option(0, "--seed"),
    config: Path | None = typer.Option(
        None, "--config", help="TOML/JSON/YAML with [flow] and [run] tables; flags given on "
                               "the command line win over it."),
    sets: list[str] = typer.Option([], "--set", help="Override one setting: section.key=value "
                                                     "(e.g. flow.n_freq=128). Repeatable."),
    run_dir: Path | None = typer.Option(None, "--run-dir",
                                        help="metrics.csv, TensorBoard events, config.json "
                                             "(default: OUT's name + .run)."),
    checkpoint_every: int = typer.Option(0, "--checkpoint-every", min=0,
                                         help="Also checkpoint every N steps (0: epoch ends)."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps per metrics row."),
    max_seconds: float = typer.Option(0.0, "--max-seconds", min=0.0,
                                      help="Stop at the first epoch end past this (0: no limit)."),
    save_config: Path | None = typer.Option(None, "--save-config",
                                            help="Write the resolved config here and exit."),
    sim: int = typer.Option(2000, "--sim", min=1,
                            help="--base posterior: located examples to simulate and fuse."),
    sim_seed: int = typer.Option(1, "--sim-seed", help="--base posterior: simulation seed."),
    sim_samples: int = typer.Option(128, "--sim-samples", min=1,
                                    help="--base posterior: posterior draws per example."),
) -> None:
    """Train a flow-matching density on S² (torchrun-ready: DDP when WORLD_SIZE > 1)."""
    from avgeo.errors import ConfigError
    from avgeo.precision.train import FlowConfig, read_points, train_flow
    from avgeo.training import TrainerConfig, cli_layers, dump_config, record, resolve
    from avgeo.training.config import explicit_params
    from avgeo.training.distributed import dist_env, shutdown_distributed

    cond_cols = [c.strip() for c in cond.split(",") if c.strip()]
    defaults, explicit = cli_layers(ctx, {
        "cond": ("flow", "cond_columns", cond_cols), "epochs": ("flow", "epochs", epochs),
        "batch_size": ("flow", "batch_size", batch_size), "lr": ("flow", "lr", lr),
        "hidden": ("flow", "hidden", hidden), "depth": ("flow", "depth", depth),
        "freq_max": ("flow", "freq_max", freq_max), "base": ("flow", "base", base),
        "components": ("flow", "base_components", components),
        "p_uncond": ("flow", "p_uncond", p_uncond), "seed": ("flow", "seed", seed),
        "device": ("run", "device", device),
        "run_dir": ("run", "run_dir", str(run_dir or "")),
        "checkpoint_every": ("run", "checkpoint_every", checkpoint_every),
        "log_every": ("run", "log_every", log_every),
        "max_seconds": ("run", "max_seconds", max_seconds),
    })
    built, _rec, source = resolve({"flow": FlowConfig, "run": TrainerConfig}, defaults=defaults,
                                  explicit=explicit, file=config, sets=sets)
    cfg, run = built["flow"], built["run"]
    posterior = cfg.base in ("posterior", "fusion_posterior")
    if posterior:
        # The refinement flow's own defaults (a small conditional net) replace the prior's;
        # the config file, flags given and --set still win.
        from dataclasses import asdict

        from avgeo.precision.posterior_base import default_config

        defaults["flow"] = asdict(default_config())
        built, _rec, source = resolve({"flow": FlowConfig, "run": TrainerConfig},
                                      defaults=defaults, explicit=explicit, file=config,
                                      sets=sets)
        cfg, run = built["flow"], built["run"]
        cfg.base = "fusion_posterior"
    check_owned(run, FLOW_OWNED_RUN, "avgeo train flow")
    if cfg.base not in ("uniform", "vmf_mixture", "fusion_posterior"):
        raise ConfigError(f"--base {cfg.base!r}",
                          hint="use --base uniform, --base vmf_mixture or --base posterior")
    sim_flags = {"sim", "sim_seed", "sim_samples"} & explicit_params(ctx)
    if posterior and data is not None:
        raise ConfigError("--base posterior simulates its training data",
                          hint="drop DATA (set the number of examples with --sim)")
    if not posterior and sim_flags:
        raise ConfigError("--sim options only apply to --base posterior")
    if not posterior and data is None and save_config is None:
        raise ConfigError("no training table given",
                          hint="pass a CSV/Parquet with lat, lon, or use --base posterior")
    run.run_dir = run.run_dir or str(default_run_dir(out))
    run.seed, run.epochs = cfg.seed, cfg.epochs  # what train_flow runs with
    rec = record(flow=cfg, run=run)
    if resume is not None:
        # A resumed run keeps the checkpoint's network; only the epochs may change.
        from dataclasses import replace

        from avgeo.precision.train import FILE_KIND, FORMAT_VERSION
        from avgeo.training import load_versioned

        obj = load_versioned(resume, FILE_KIND, (FORMAT_VERSION,), what="flow checkpoint",
                             prefix=True)
        saved = replace(FlowConfig(**obj["config"]), epochs=cfg.epochs)
        run.seed = saved.seed
        rec = record(flow=saved, run=run)
    if save_config is not None:
        dump_config(save_config, rec)
        typer.echo(str(save_config))
        return
    if posterior:
        from avgeo.precision.posterior_base import simulate_pairs, train_posterior_flow

        def echo(msg: str) -> None:
            typer.echo(msg, err=True)

        pairs = simulate_pairs(sim, sim_seed, sim_samples, log=echo)
        try:
            train_posterior_flow(pairs, cfg, out=out, resume=resume, device=run.device,
                                 max_seconds=run.max_seconds or None,
                                 checkpoint_s=run.checkpoint_s, log=echo, run_dir=run.run_dir,
                                 checkpoint_every=run.checkpoint_every,
                                 log_every=run.log_every, tensorboard=run.tensorboard,
                                 record=rec, config_source=source)
        finally:
            shutdown_distributed()
        if dist_env().is_main:
            typer.echo(str(out))
        return
    xyz, cvals, desc = read_points(data, cfg.cond_columns)
    try:
        train_flow(xyz, cvals, cfg, out=out, resume=resume, device=run.device, data_desc=desc,
                   max_seconds=run.max_seconds or None, checkpoint_s=run.checkpoint_s,
                   log=lambda s: typer.echo(s, err=True), run_dir=run.run_dir,
                   checkpoint_every=run.checkpoint_every, log_every=run.log_every,
                   tensorboard=run.tensorboard, record=rec, config_source=source)
    finally:
        shutdown_distributed()
    if dist_env().is_main:
        typer.echo(str(out))
