"""`avgeo dataset build|split|dedup`: manifests from folders and exports, leak-free splits,
near-duplicate reports."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from avgeo.cli.app import app

dataset_app = typer.Typer(help="Build dataset manifests, split them without location "
                               "leaks, find near-duplicates.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def build_cmd(
    source: Path = typer.Argument(..., help="A media folder, an iNaturalist CSV export, a "
                                  "Xeno-canto API JSON, an Im2GPS/YFCC CSV, or an avgeo "
                                  "results Parquet."),
    out: Path = typer.Option(..., "--out", help="Manifest to write (.parquet, or .csv)."),
    coords: Path | None = typer.Option(None, "--coords", help="Sidecar CSV for a folder: "
                                       "file, lat, lon (+ extra columns kept)."),
    fmt: str = typer.Option("auto", "--format", help="auto, folder, inaturalist, xeno-canto, "
                            "im2gps, results, manifest."),
    media_root: Path | None = typer.Option(None, "--media-root", help="Local folder holding "
                                           "the downloaded files of an export."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Write malformed rows to "
                                  "OUT.rejects.csv instead of stopping."),
    geocode: bool = typer.Option(True, "--geocode/--no-geocode", help="Fill country and "
                                 "admin1 by offline reverse geocoding."),
) -> None:
    """Build a manifest (Parquet, schema in avgeo.data.schema) from a folder or an export."""
    from avgeo.data.builders import build, relativise, write_rejects
    from avgeo.data.schema import write_manifest

    res = build(source, fmt, coords=coords, media_root=media_root, skip_bad=skip_bad,
                geocode=geocode)
    out.parent.mkdir(parents=True, exist_ok=True)
    df = relativise(res.manifest, out.parent)
    write_manifest(df, out, {"source": str(source), "format": res.fmt})
    err = Console(stderr=True)
    if res.rejects:
        rp = write_rejects(res.rejects, out.with_name(out.name + ".rejects.csv"))
        err.print(f"{len(res.rejects)} malformed rows skipped → {rp}")
    located = int(df["lat"].notna().sum())
    err.print(f"{len(df)} rows ({located} with coordinates) from {res.fmt} → {out}")


@dataset_app.command("split")
def split_cmd(
    manifest: Path = typer.Argument(..., help="Manifest to split."),
    out: Path = typer.Option(..., "--out", help="Manifest to write with the split column."),
    by: str = typer.Option("h3,recordist", "--by", help="Keys kept within one split: h3, "
                           "country, recordist (comma list)."),
    h3_res: int = typer.Option(3, "--h3-res", help="H3 resolution of the cell key."),
    fractions: str = typer.Option("train=0.8,val=0.1,test=0.1", "--fractions"),
    seed: int = typer.Option(0, "--seed"),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Force near-duplicate files "
                               "into one split (decodes every local file)."),
    workers: int = typer.Option(0, "--workers", min=0),
) -> None:
    """Assign train/val/test so that no cell, country or recordist spans two splits."""
    from avgeo.data.builders import relativise
    from avgeo.data.manifest import read_manifest
    from avgeo.data.schema import write_manifest
    from avgeo.data.splits import assign_splits, leaks, parse_fractions

    df = read_manifest(manifest)
    keys = [k.strip() for k in by.split(",") if k.strip()]
    groups = None
    err = Console(stderr=True)
    report: dict = {}
    if dedup:
        from avgeo.data.dedup import duplicate_groups, find_duplicates

        local = [f for f in df["file"] if "://" not in f]
        pairs, _ = find_duplicates(local, workers=workers)
        g = dict(zip(local, duplicate_groups(local, pairs), strict=True))
        groups = [g.get(f, "") for f in df["file"]]
        before = assign_splits(df, keys, h3_res, parse_fractions(fractions), seed)
        where = dict(zip(df["file"], before, strict=True))
        crossing = [p for p in pairs if where[p.a] != where[p.b]]
        report["duplicates"] = [p.__dict__ for p in pairs]
        report["duplicates_moved"] = [p.__dict__ for p in crossing]
        err.print(f"{len(pairs)} near-duplicate pairs; {len(crossing)} crossed splits and "
                  f"were forced together")
    df["split"] = assign_splits(df, keys, h3_res, parse_fractions(fractions), seed, groups)
    lk = leaks(df, df["split"], keys, h3_res)
    report["leaks"] = lk
    report["counts"] = df["split"].value_counts().to_dict()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(relativise(df, out.parent), out, {"split_by": keys, "h3_res": h3_res,
                                                     "seed": seed, "fractions": fractions})
    out.with_name(out.name + ".split.json").write_text(json.dumps(report, indent=2) + "\n")
    err.print(" ".join(f"{k}={v}" for k, v in sorted(report["counts"].items())) + f" → {out}")


@dataset_app.command("dedup")
def dedup_cmd(
    manifest: Path = typer.Argument(..., help="Manifest (or a folder) to scan."),
    max_hamming: int = typer.Option(6, "--max-hamming", help="dHash bits for photos."),
    max_ber: float = typer.Option(0.25, "--max-ber", help="Bit error rate for audio."),
    workers: int = typer.Option(0, "--workers", min=0),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """List near-duplicate files (photos by dHash, audio by a spectral fingerprint)."""
    from avgeo.data.dedup import find_duplicates

    if manifest.is_dir():
        from avgeo.data.batch import list_inputs

        files = [str(f) for f in list_inputs([manifest])]
    else:
        from avgeo.data.manifest import read_manifest

        files = [f for f in read_manifest(manifest)["file"] if "://" not in f]
    pairs, _ = find_duplicates(files, max_hamming, max_ber, workers)
    for p in pairs:
        if json_out:
            print(json.dumps(p.__dict__))
        else:
            print(f"{p.method}\t{p.distance:g}\t{p.a}\t{p.b}")
    Console(stderr=True).print(f"{len(pairs)} near-duplicate pairs among {len(files)} files")
