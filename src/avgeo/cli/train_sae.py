"""`avgeo train sae`: train an acoustic-atom SAE on BirdNET embeddings (a table, or media embedded
on the fly) and name its atoms; config files, checkpoints and resume from avgeo.training."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from avgeo.cli.app import train_app
from avgeo.cli.train import check_owned, default_run_dir

#: [run] settings `train sae` takes from its [train] section or fixes itself.
SAE_OWNED_RUN = {"seed": "train.seed", "device": "train.device", "epochs": "train.epochs",
                 "grad_clip": "train.grad_clip", "max_steps": "train.epochs",
                 "max_seconds": "(not used by train sae)", "checkpoint": "(always OUT.ckpt)",
                 "checkpoint_s": "(not used by train sae; see run.checkpoint_every)",
                 "deterministic": "(not used by train sae)"}


@train_app.command("sae")
def train_sae_cmd(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Embeddings (Parquet with file, start_s, embedding; "
                                          "or NPZ) or a media manifest (CSV/Parquet: file, "
                                          "lat, lon, country optional)."),
    latents: int = typer.Option(256, "--latents", min=1, help="Dictionary size."),
    k: int = typer.Option(8, "--k", min=1, help="Active latents per window (L0)."),
    experts: int = typer.Option(1, "--experts", min=1, help="1 = plain TopK SAE."),
    route_top: int = typer.Option(1, "--route-top", min=1, max=2, help="Experts per window."),
    ar: bool = typer.Option(False, "--ar/--no-ar", help="Encoder sees the previous window."),
    epochs: int = typer.Option(50, "--epochs", min=1),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0.0),
    holdout: float = typer.Option(0.15, "--holdout", min=0.0, max=0.9,
                                  help="Held-out fraction (30 s blocks within files)."),
    overlap_s: float = typer.Option(0.0, "--overlap-s", min=0.0,
                                    help="BirdNET window overlap when embedding media."),
    geo_res: int = typer.Option(2, "--geo-res", min=0, max=4,
                                help="H3 resolution of atom geographic concentrations."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch CPU threads (0: default)."),
    seed: int = typer.Option(0, "--seed"),
    full_precision: bool = typer.Option(False, "--fp32", help="Store fp32 weights (default fp16)."),
    out: Path = typer.Option(Path("sae.pt"), "--out", help="Versioned checkpoint to write."),
    resume: Path | None = typer.Option(None, "--resume",
                                       help="Trainer checkpoint (OUT.ckpt) to continue."),
    config: Path | None = typer.Option(
        None, "--config", help="TOML/JSON/YAML with [sae], [train] and [run] tables; flags "
                               "given on the command line win over it."),
    sets: list[str] = typer.Option([], "--set", help="Override one setting: section.key=value "
                                                     "(e.g. sae.aux_k=64). Repeatable."),
    run_dir: Path | None = typer.Option(None, "--run-dir",
                                        help="metrics.csv, TensorBoard events, config.json "
                                             "(default: OUT's name + .run)."),
    checkpoint_every: int = typer.Option(0, "--checkpoint-every", min=0,
                                         help="Checkpoint every N steps (0: at the end only)."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps per metrics row."),
    save_config: Path | None = typer.Option(None, "--save-config",
                                            help="Write the resolved config here and exit."),
) -> None:
    """Train a TopK SAE (or mixture of TopK dictionaries, optionally autoregressive)."""
    from avgeo.perception.audio.sae.model import SaeConfig
    from avgeo.perception.audio.sae.naming import collect, name_atoms, purity_summary
    from avgeo.perception.audio.sae.train import (
        TrainConfig,
        extract_embeddings,
        is_embedding_table,
        open_source,
        save_checkpoint,
        train_sae,
    )
    from avgeo.training import TrainerConfig, cli_layers, dump_config, record, resolve
    from avgeo.training.distributed import dist_env, shutdown_distributed

    def log(s: str) -> None:
        typer.echo(s, err=True)

    defaults, explicit = cli_layers(ctx, {
        "latents": ("sae", "n_latents", latents), "k": ("sae", "k", k),
        "experts": ("sae", "experts", experts), "route_top": ("sae", "route_top", route_top),
        "ar": ("sae", "ar", ar), "epochs": ("train", "epochs", epochs),
        "batch_size": ("train", "batch_size", batch_size), "lr": ("train", "lr", lr),
        "holdout": ("train", "holdout", holdout), "device": ("train", "device", device),
        "threads": ("train", "threads", threads or None), "seed": ("train", "seed", seed),
        "run_dir": ("run", "run_dir", str(run_dir or "")),
        "checkpoint_every": ("run", "checkpoint_every", checkpoint_every),
        "log_every": ("run", "log_every", log_every),
    })
    built, _rec, source_text = resolve({"sae": SaeConfig, "train": TrainConfig,
                                        "run": TrainerConfig}, defaults=defaults,
                                       explicit=explicit, file=config, sets=sets)
    scfg, tcfg, run = built["sae"], built["train"], built["run"]
    check_owned(run, SAE_OWNED_RUN, "avgeo train sae")
    run.run_dir = run.run_dir or str(default_run_dir(out))
    if save_config is not None:
        dump_config(save_config, record(sae=scfg, train=tcfg, run=run))
        typer.echo(str(save_config))
        return

    if is_embedding_table(data):
        source = open_source(data)
    else:
        cache = out.with_name(out.stem + ".embeddings.parquet")
        log(f"embedding media of {data} with BirdNET → {cache}")
        source = extract_embeddings(data, cache, overlap_s=overlap_s, log=log)
    scfg.d_in = source.dim
    cfg = scfg.validate()
    try:
        res = train_sae(source, cfg, tcfg, log=log, resume=resume,
                        checkpoint=str(out) + ".ckpt", run_dir=run.run_dir,
                        checkpoint_every=run.checkpoint_every, log_every=run.log_every,
                        tensorboard=run.tensorboard, config_source=source_text)
    finally:
        shutdown_distributed()
    if not dist_env().is_main:
        return
    co = collect(res.model, source, tcfg, res=geo_res)
    atoms = name_atoms(co, res=geo_res)
    stats = {**res.stats, **purity_summary(atoms),
             "n_atoms_with_geo": sum(a["geo"] is not None for a in atoms),
             "n_windows_located": co.n_located, "history": res.history}
    desc = {**source.description, "embedding": "BirdNET V2.4 global-pool (1024-d), 3 s windows"
            if source.dim == 1024 else f"{source.dim}-d"}
    save_checkpoint(out, res.model, embedding_source=desc, stats=stats, atoms=atoms,
                    half=not full_precision)
    summary = {k: stats[k] for k in ("n_train", "n_eval", "n_files", "r2", "l0", "dead_frac",
                                     "never_fired_frac", "purity_mean", "purity_weighted",
                                     "n_atoms_scored", "n_atoms_with_geo", "windows_per_s")}
    summary["variant"] = res.model.cfg.variant
    summary["out"] = str(out)
    summary["size_bytes"] = out.stat().st_size
    typer.echo(json.dumps(summary, indent=2))
