"""`avgeo train fusion MANIFEST`: learn per-engine fusion weights on located examples."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from avgeo.cli.app import train_app


@train_app.command("fusion")
def train_fusion_cmd(
    manifest: Path = typer.Argument(
        ..., help="CSV/Parquet with file and lat, lon (or country, ISO alpha-2, as truth)."),
    out: Path = typer.Option(Path("fusion_weights.json"), "--out"),
    engines: str = typer.Option("all", "--engines"),
    no_metadata: bool = typer.Option(True, "--no-metadata/--with-metadata",
                                     help="Fit content engines only (default) or with metadata."),
    heldout: float = typer.Option(0.25, "--heldout", min=0.0, max=0.9),
    prior: str = typer.Option("photo", "--prior", help="photo, population or uniform"),
    l2: float = typer.Option(0.01, "--l2", min=0.0),
) -> None:
    """Minimise the NLL of each example's true cell over the engine weights."""
    from avgeo.data.manifest import read_manifest
    from avgeo.errors import AvgeoError
    from avgeo.geo.grid import global_grid
    from avgeo.pipeline import extract_atoms
    from avgeo.reasoning.train_fusion import fit_weights, make_example, split_heldout

    df = read_manifest(manifest)
    if "country" not in df:
        df["country"] = ""
    df = df[df["lat"].notna() | (df["country"].astype(str) != "")]
    grid = global_grid(3)
    err = Console(stderr=True)
    examples, names = [], []
    for row in df.itertuples():
        try:
            _m, atoms, _r, _c = extract_atoms(row.file, engines, use_metadata=not no_metadata)
        except AvgeoError as exc:
            print(f"{row.file}: {exc.one_line()} (skipped)", file=sys.stderr)
            continue
        ex = make_example(Path(row.file).name, atoms, grid, 0.25, lat=row.lat, lon=row.lon,
                          country=str(row.country) or None)
        if ex is not None:
            examples.append(ex)
            names.append(ex.name)
        err.print(f"atoms: {Path(row.file).name}: {len(atoms)}")
    mask = split_heldout(names, heldout)
    rep = fit_weights(examples, mask, prior=prior, l2=l2,
                      trained_on=f"{manifest.name}: {int((~mask).sum())} train / "
                                 f"{int(mask.sum())} held-out located files"
                                 + (" (metadata off)" if no_metadata else ""))
    out.write_text(json.dumps(rep.weights.to_dict(), indent=2) + "\n")
    con = Console()
    con.print(f"examples: {rep.n_train} train, {rep.n_heldout} held-out ({rep.seconds:.1f} s)")
    con.print("mean NLL of the truth (its res-3 cell, or its country) in nats: "
              f"train {rep.train_nll_before:.3f} → {rep.train_nll_after:.3f}; "
              f"held-out {rep.heldout_nll_before:.3f} → {rep.heldout_nll_after:.3f}")
    con.print(f"weights: prior {rep.weights.prior_weight}, {rep.weights.engine_weight} → {out}")
