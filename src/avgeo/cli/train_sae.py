"""`avgeo train sae`: train an acoustic-atom sparse autoencoder on BirdNET embeddings (from an
embedding table, or from a media manifest embedded on the fly) and name its atoms."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from avgeo.cli.app import train_app


@train_app.command("sae")
def train_sae_cmd(
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
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch CPU threads (0: default)."),
    seed: int = typer.Option(0, "--seed"),
    full_precision: bool = typer.Option(False, "--fp32", help="Store fp32 weights (default fp16)."),
    out: Path = typer.Option(Path("sae.pt"), "--out", help="Versioned checkpoint to write."),
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

    def log(s: str) -> None:
        typer.echo(s, err=True)

    if is_embedding_table(data):
        source = open_source(data)
    else:
        cache = out.with_name(out.stem + ".embeddings.parquet")
        log(f"embedding media of {data} with BirdNET → {cache}")
        source = extract_embeddings(data, cache, overlap_s=overlap_s, log=log)
    cfg = SaeConfig(d_in=source.dim, n_latents=latents, k=k, experts=experts,
                    route_top=route_top, ar=ar).validate()
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed,
                       holdout=holdout, threads=threads or None)
    res = train_sae(source, cfg, tcfg, log=log)
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
