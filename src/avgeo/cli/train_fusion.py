"""`avgeo train fusion MANIFEST` or `avgeo train fusion --sim N`: learn per-engine fusion
weights on located media or on simulated examples; settings from flags or a config file
([fusion] table), metrics and config into a run folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from avgeo.cli.app import train_app
from avgeo.cli.train import default_run_dir


@train_app.command("fusion")
def train_fusion_cmd(
    ctx: typer.Context,
    manifest: Path | None = typer.Argument(
        None, help="CSV/Parquet with file and lat, lon (or country, ISO alpha-2, as truth). "
                   "Leave out with --sim."),
    sim: int = typer.Option(0, "--sim", min=0,
                            help="Fit on N simulated examples (a place drawn from the photo "
                                 "prior, the atoms the engines would report there) instead "
                                 "of a manifest."),
    sim_seed: int = typer.Option(0, "--sim-seed", help="Seed of the simulator."),
    out: Path = typer.Option(Path("fusion_weights.json"), "--out"),
    engines: str = typer.Option("all", "--engines"),
    no_metadata: bool = typer.Option(True, "--no-metadata/--with-metadata",
                                     help="Fit content engines only (default) or with metadata."),
    heldout: float = typer.Option(0.25, "--heldout", min=0.0, max=0.9),
    prior: str = typer.Option("photo", "--prior", help="photo, population or uniform"),
    l2: float = typer.Option(0.01, "--l2", min=0.0),
    config: Path | None = typer.Option(
        None, "--config", help="TOML/JSON/YAML with a [fusion] table; flags given on the "
                               "command line win over it."),
    sets: list[str] = typer.Option([], "--set", help="Override one setting: fusion.key=value. "
                                                     "Repeatable."),
    run_dir: Path | None = typer.Option(None, "--run-dir",
                                        help="metrics.csv (one row per L-BFGS iteration) and "
                                             "config.json (default: OUT's name + .run)."),
    save_config: Path | None = typer.Option(None, "--save-config",
                                            help="Write the resolved config here and exit."),
) -> None:
    """Minimise the NLL of each example's true cell over the engine weights."""
    from avgeo.errors import ConfigError
    from avgeo.geo.grid import global_grid
    from avgeo.reasoning.fusion import FusionWeights
    from avgeo.reasoning.train_fusion import (
        FusionConfig,
        calibration,
        fit_weights,
        sim_examples,
        split_heldout,
    )
    from avgeo.training import (
        MetricsLog,
        atomic_write_text,
        cli_layers,
        dump_config,
        record,
        resolve,
    )

    defaults, explicit = cli_layers(ctx, {
        "engines": ("fusion", "engines", engines),
        "no_metadata": ("fusion", "use_metadata", not no_metadata),
        "heldout": ("fusion", "heldout", heldout), "prior": ("fusion", "prior", prior),
        "l2": ("fusion", "l2", l2), "sim": ("fusion", "sim", sim),
        "sim_seed": ("fusion", "sim_seed", sim_seed),
    })
    built, _rec, source_text = resolve({"fusion": FusionConfig}, defaults=defaults,
                                       explicit=explicit, file=config, sets=sets)
    fc: FusionConfig = built["fusion"]
    if fc.prior not in ("photo", "population", "uniform"):
        raise ConfigError(f"prior {fc.prior!r}", hint="use photo, population or uniform")
    if not 0.0 <= fc.heldout <= 0.9 or fc.l2 < 0:
        raise ConfigError(f"heldout {fc.heldout} / l2 {fc.l2} out of range",
                          hint="heldout in [0, 0.9], l2 >= 0")
    if fc.sim < 0 or (fc.sim > 0) == (manifest is not None):
        raise ConfigError("give either a MANIFEST or --sim N (N > 0), not both",
                          hint="avgeo train fusion MANIFEST, or avgeo train fusion --sim 1200")
    rec = record(fusion=fc)
    if save_config is not None:
        dump_config(save_config, rec)
        typer.echo(str(save_config))
        return
    grid = global_grid(fc.res)
    err = Console(stderr=True)
    if fc.sim:
        from avgeo.reasoning.reasoner.simulate import simulate

        err.print(f"simulating {fc.sim} examples (seed {fc.sim_seed})")
        sims = simulate(fc.sim, fc.sim_seed)
        examples = sim_examples(sims, grid, fc.pool_alpha, fc.engines, fc.use_metadata,
                                prefix=f"sim{fc.sim_seed}")
        names = [ex.name for ex in examples]
    else:
        assert manifest is not None
        examples, names = _manifest_examples(manifest, fc, grid, err)
    mask = split_heldout(names, fc.heldout)
    rd = run_dir or default_run_dir(out)
    rd.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd / "config.json", json.dumps(rec, indent=2) + "\n")
    if source_text:
        atomic_write_text(rd / "config_source.txt", source_text)
    with MetricsLog(rd) as metrics:
        rep = fit_weights(examples, mask, prior=fc.prior, pool_alpha=fc.pool_alpha, l2=fc.l2,
                          res=fc.res, metrics=metrics,
                          trained_on=_trained_on(fc, manifest, mask))
    atomic_write_text(out, json.dumps(rep.weights.to_dict(), indent=2) + "\n")
    con = Console()
    con.print(f"examples: {rep.n_train} train, {rep.n_heldout} held-out ({rep.seconds:.1f} s)")
    con.print(f"mean NLL of the truth (its res-{fc.res} cell, or its country) in nats: "
              f"train {rep.train_nll_before:.3f} → {rep.train_nll_after:.3f}; "
              f"held-out {rep.heldout_nll_before:.3f} → {rep.heldout_nll_after:.3f}")
    con.print(f"weights: prior {rep.weights.prior_weight}, {rep.weights.engine_weight} → {out}")
    if fc.sim and mask.any():
        # Example names end in their simulation index (see sim_examples).
        held = [sims[int(n.rsplit("-", 1)[1])] for n, h in zip(names, mask, strict=True) if h]
        for label, w in (("before", FusionWeights(prior=fc.prior, pool_alpha=fc.pool_alpha)),
                         ("after", rep.weights)):
            c = calibration(held, w, fc.engines, fc.use_metadata)
            con.print(f"held-out {label}: 50 % region holds {c.coverage[0.5]:.3f} of truths, "
                      f"90 % region {c.coverage[0.9]:.3f}; median error "
                      f"{c.median_error_km:,.0f} km")


def _manifest_examples(manifest: Path, fc, grid, err: Console):
    """Examples from media files with known places (perception runs on each)."""
    from avgeo.data.manifest import read_manifest
    from avgeo.errors import AvgeoError
    from avgeo.pipeline import extract_atoms
    from avgeo.reasoning.train_fusion import make_example

    df = read_manifest(manifest)
    if "country" not in df:
        df["country"] = ""
    df = df[df["lat"].notna() | (df["country"].astype(str) != "")]
    examples, names = [], []
    for row in df.itertuples():
        try:
            _m, atoms, _r, _c = extract_atoms(row.file, fc.engines,
                                              use_metadata=fc.use_metadata)
        except AvgeoError as exc:
            print(f"{row.file}: {exc.one_line()} (skipped)", file=sys.stderr)
            continue
        ex = make_example(Path(row.file).name, atoms, grid, fc.pool_alpha, lat=row.lat,
                          lon=row.lon, country=str(row.country) or None)
        if ex is not None:
            examples.append(ex)
            names.append(ex.name)
        err.print(f"atoms: {Path(row.file).name}: {len(atoms)}")
    return examples, names


def _trained_on(fc, manifest: Path | None, mask) -> str:
    """What the weights were fitted on, and the command that reproduces them."""
    split = f"{int((~mask).sum())} train / {int(mask.sum())} held-out by name hash"
    meta = "with metadata" if fc.use_metadata else "metadata off"
    if not fc.sim:
        return f"{manifest.name if manifest else '?'}: {split} located files ({meta})"
    cmd = (f"avgeo train fusion --sim {fc.sim} --sim-seed {fc.sim_seed} --engines {fc.engines} "
           f"--{'with' if fc.use_metadata else 'no'}-metadata --heldout {fc.heldout} "
           f"--prior {fc.prior} --l2 {fc.l2}")
    return (f"simulated examples only (avgeo.reasoning.reasoner.simulate.simulate, "
            f"N={fc.sim}, seed={fc.sim_seed}; truth = the simulated place; no media files): "
            f"{split}, engines {fc.engines}, {meta}. Command: {cmd}")
