"""`avgeo train <part>`: training commands for the learned parts (here: `flow`)."""

from __future__ import annotations

from pathlib import Path

import typer

from avgeo.cli.app import train_app


@train_app.command("flow")
def train_flow_cmd(
    data: Path = typer.Argument(..., help="CSV/Parquet with lat, lon (and condition columns)."),
    cond: str = typer.Option("", "--cond", help="Comma list of condition columns (CFG)."),
    epochs: int = typer.Option(50, "--epochs", min=1),
    out: Path = typer.Option(Path("flow.pt"), "--out", help="Versioned weights file to write."),
    resume: Path | None = typer.Option(None, "--resume", help="Checkpoint (OUT.ckpt) to resume."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    batch_size: int = typer.Option(4096, "--batch-size", min=1),
    lr: float = typer.Option(2e-3, "--lr", min=0.0),
    hidden: int = typer.Option(256, "--hidden", min=8),
    depth: int = typer.Option(4, "--depth", min=1),
    freq_max: float = typer.Option(64.0, "--freq-max", min=1.0,
                                   help="Highest Fourier frequency (rad⁻¹) of the input."),
    base: str = typer.Option("uniform", "--base", help="uniform or vmf_mixture."),
    components: int = typer.Option(0, "--components", min=0, help="vMF mixture base size."),
    p_uncond: float = typer.Option(0.1, "--p-uncond", min=0.0, max=1.0,
                                   help="Condition dropout for classifier-free guidance."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train a flow-matching density on S² (torchrun-ready: DDP when WORLD_SIZE > 1)."""
    from avgeo.errors import ConfigError
    from avgeo.precision.train import FlowConfig, read_points, train_flow

    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}", hint="use --device cpu or --device cuda")
    if base not in ("uniform", "vmf_mixture"):
        raise ConfigError(f"--base {base!r}", hint="use --base uniform or --base vmf_mixture")
    cond_cols = [c.strip() for c in cond.split(",") if c.strip()]
    xyz, cvals, desc = read_points(data, cond_cols)
    cfg = FlowConfig(hidden=hidden, depth=depth, freq_max=freq_max, cond_columns=cond_cols,
                     p_uncond=p_uncond, lr=lr, batch_size=batch_size, epochs=epochs, seed=seed,
                     base=base, base_components=components)
    train_flow(xyz, cvals, cfg, out=out, resume=resume, device=device, data_desc=desc,
               log=lambda s: typer.echo(s, err=True))
    typer.echo(str(out))
