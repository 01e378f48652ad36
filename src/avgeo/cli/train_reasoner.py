"""`avgeo train reasoner`: SFT warm start then GRPO for the learned Chain-of-Region policy
(the small text policy, or a local vision-language model with `--vlm`), with config files
(`--config`, `--set`) and the shared run options of avgeo.training."""

from __future__ import annotations

from pathlib import Path

import typer

from avgeo.cli.app import train_app

#: [run] settings `train reasoner` takes from its [reasoner] section or that TRL's own loop
#: decides (run_dir, tensorboard, deterministic and grad_clip are read).
REASONER_OWNED_RUN = {
    "seed": "reasoner.seed", "epochs": "reasoner.sft_steps and reasoner.grpo_steps",
    "max_steps": "reasoner.sft_steps and reasoner.grpo_steps",
    "checkpoint_every": "reasoner.save_steps",
    "checkpoint": "(checkpoints are OUT/sft/checkpoint-N and OUT/grpo/checkpoint-N)",
    "device": "(TRL/accelerate place the model; use CUDA_VISIBLE_DEVICES)",
    "log_every": "(TRL logs every GRPO step and 20 rows per SFT run)",
    "max_seconds": "(not supported by TRL's loop; set the step counts)",
}


@train_app.command("reasoner")
def train_reasoner_cmd(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="MANIFEST_OR_SIM",
                                 help="sim, sim:N (simulated atoms), an `avgeo extract` folder "
                                      "or a located manifest."),
    sft_steps: int = typer.Option(400, "--sft-steps", min=0),
    grpo_steps: int = typer.Option(60, "--grpo-steps", min=0),
    out: Path = typer.Option(Path("reasoner_out"), "--out", help="Output folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's checkpoints."),
    n_train: int = typer.Option(2000, "--n-train", min=1, help="Simulated examples."),
    n_heldout: int = typer.Option(200, "--n-heldout", min=0),
    group_size: int = typer.Option(8, "--group-size", min=2, help="GRPO completions/prompt."),
    beta: float = typer.Option(0.04, "--beta", min=0.0, help="KL weight to the SFT policy."),
    sft_lr: float = typer.Option(2e-3, "--sft-lr", min=0.0),
    grpo_lr: float = typer.Option(1e-4, "--grpo-lr", min=0.0),
    sft_target: str = typer.Option("truth", "--sft-target", help="truth or fusion."),
    hidden: int = typer.Option(128, "--hidden", min=16),
    layers: int = typer.Option(4, "--layers", min=1),
    seed: int = typer.Option(0, "--seed"),
    init_policy: Path | None = typer.Option(
        None, "--init-policy", help="Start GRPO from this trained policy folder (an earlier "
                                    "run's OUT/sft_policy or OUT/policy) and skip SFT."),
    vlm: Path | None = typer.Option(
        None, "--vlm", help="Fine-tune this local vision-language model folder (Qwen2-VL, "
                            "Qwen2.5-VL or Qwen3-VL, saved with save_pretrained) instead of "
                            "the small text policy; it sees each file's photo or key frames."),
    max_images: int = typer.Option(4, "--max-images", min=0,
                                   help="--vlm: images per file (video key frames)."),
    image_side: int = typer.Option(448, "--image-side", min=28,
                                   help="--vlm: longest image side in pixels."),
    real: Path | None = typer.Option(
        None, "--real", help="With sim: also train on the located, non-test files of this "
                             "`avgeo extract` folder (real atoms)."),
    real_repeat: int = typer.Option(1, "--real-repeat", min=1,
                                    help="Copies of each --real example."),
    engines: str = typer.Option("", "--engines",
                                help="Engines run on a manifest's files (default: all)."),
    with_metadata: bool = typer.Option(False, "--with-metadata",
                                       help="Keep metadata atoms of a manifest's files."),
    config: Path | None = typer.Option(
        None, "--config", help="TOML/JSON/YAML with \\[reasoner] and \\[run] tables; flags given "
                               "on the command line win over it."),
    sets: list[str] = typer.Option([], "--set", help="Override one setting: section.key=value "
                                                     "(e.g. reasoner.prompts_per_step=8)."),
    run_dir: Path | None = typer.Option(None, "--run-dir",
                                        help="metrics.csv per stage, TensorBoard events, "
                                             "config.json (default: OUT/run)."),
    save_config: Path | None = typer.Option(None, "--save-config",
                                            help="Write the resolved config here and exit."),
) -> None:
    """Train the reasoner (`accelerate launch -m avgeo train reasoner ...` for DDP)."""
    from avgeo.cli.train import check_owned
    from avgeo.errors import ConfigError
    from avgeo.reasoning.reasoner.train import TrainConfig, train_reasoner
    from avgeo.training import TrainerConfig, cli_layers, dump_config, record, resolve
    from avgeo.training.config import explicit_params

    defaults, explicit = cli_layers(ctx, {
        "sft_steps": ("reasoner", "sft_steps", sft_steps),
        "grpo_steps": ("reasoner", "grpo_steps", grpo_steps),
        "n_train": ("reasoner", "n_train", n_train),
        "n_heldout": ("reasoner", "n_heldout", n_heldout),
        "group_size": ("reasoner", "num_generations", group_size),
        "beta": ("reasoner", "beta", beta), "sft_lr": ("reasoner", "sft_lr", sft_lr),
        "grpo_lr": ("reasoner", "grpo_lr", grpo_lr),
        "sft_target": ("reasoner", "sft_target", sft_target),
        "seed": ("reasoner", "seed", seed),
        "vlm": ("reasoner", "vlm", str(vlm or "")),
        "real": ("reasoner", "real", str(real or "")),
        "init_policy": ("reasoner", "init_policy", str(init_policy or "")),
        "real_repeat": ("reasoner", "real_repeat", real_repeat),
        "engines": ("reasoner", "engines", engines),
        "with_metadata": ("reasoner", "use_metadata", with_metadata),
        "run_dir": ("run", "run_dir", str(run_dir or "")),
    })
    # --hidden/--layers size the whole policy; given explicitly they replace [reasoner.policy].
    size = {"hidden_size": hidden, "intermediate_size": 3 * hidden, "num_layers": layers,
            "num_heads": max(1, hidden // 32)}
    given = explicit_params(ctx)
    (explicit if {"hidden", "layers"} & given else defaults).setdefault(
        "reasoner", {})["policy"] = size
    images = {"max_images": max_images, "max_side": image_side}
    (explicit if {"max_images", "image_side"} & given else defaults).setdefault(
        "reasoner", {})["vlm_images"] = images
    built, _rec, _text = resolve({"reasoner": TrainConfig, "run": TrainerConfig},
                                 defaults=defaults, explicit=explicit, file=config, sets=sets)
    cfg, run = built["reasoner"], built["run"]
    check_owned(run, REASONER_OWNED_RUN, "avgeo train reasoner")
    if cfg.sft_target not in ("truth", "fusion"):
        raise ConfigError(f"--sft-target {cfg.sft_target!r}", "use truth or fusion")
    run.run_dir = run.run_dir or str(out / "run")
    if save_config is not None:
        dump_config(save_config, record(reasoner=cfg, run=run))
        typer.echo(str(save_config))
        return
    report = train_reasoner(source, out, cfg, resume=resume,
                            log=lambda s: typer.echo(s, err=True), run=run)
    for stage in ("fusion", "untrained", "sft", "grpo"):
        if stage in report:
            r = report[stage]
            typer.echo(f"{stage:>9}: parse {r['parse_rate']:.2f}  reward {r['mean_reward']:.3f}"
                       f"  median {r['median_error_km']:.0f} km  country {r['country_acc']:.2f}")
    typer.echo(str(out / "policy"))
