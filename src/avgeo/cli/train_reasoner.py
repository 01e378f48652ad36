"""`avgeo train reasoner`: SFT warm start then GRPO for the learned Chain-of-Region policy."""

from __future__ import annotations

from pathlib import Path

import typer

from avgeo.cli.app import train_app


@train_app.command("reasoner")
def train_reasoner_cmd(
    source: str = typer.Argument(..., metavar="MANIFEST_OR_SIM",
                                 help="sim, sim:N (simulated atoms) or a located manifest."),
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
) -> None:
    """Train the reasoner (`accelerate launch -m avgeo train reasoner ...` for DDP)."""
    from avgeo.errors import ConfigError
    from avgeo.reasoning.reasoner.policy import PolicyConfig
    from avgeo.reasoning.reasoner.train import TrainConfig, train_reasoner

    if sft_target not in ("truth", "fusion"):
        raise ConfigError(f"--sft-target {sft_target!r}", "use truth or fusion")
    cfg = TrainConfig(n_train=n_train, n_heldout=n_heldout, sft_steps=sft_steps,
                      grpo_steps=grpo_steps, num_generations=group_size, beta=beta,
                      sft_lr=sft_lr, grpo_lr=grpo_lr, sft_target=sft_target, seed=seed,
                      max_completion_tokens=80,
                      policy=PolicyConfig(hidden_size=hidden, intermediate_size=3 * hidden,
                                          num_layers=layers, num_heads=max(1, hidden // 32)))
    report = train_reasoner(source, out, cfg, resume=resume,
                            log=lambda s: typer.echo(s, err=True))
    for stage in ("untrained", "sft", "grpo"):
        if stage in report:
            r = report[stage]
            typer.echo(f"{stage:>9}: parse {r['parse_rate']:.2f}  reward {r['mean_reward']:.3f}"
                       f"  median {r['median_error_km']:.0f} km  country {r['country_acc']:.2f}")
    typer.echo(str(out / "policy"))
