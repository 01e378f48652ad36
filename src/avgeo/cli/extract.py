"""`avgeo extract MANIFEST --out DIR`: atoms for every manifest row into resumable Parquet
shards, on a local process pool or Ray."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from avgeo.cli.app import app


@app.command("extract")
def extract_cmd(
    manifest: Path = typer.Argument(..., help="Manifest (CSV or Parquet) with a file column."),
    out: Path = typer.Option(..., "--out", help="Folder for the shards (resumed if present)."),
    engines: str = typer.Option("all", "--engines", help="Comma list: meta,hum,speech,"
                                "birdnet,ocr (or all)."),
    no_metadata: bool = typer.Option(False, "--no-metadata", help="Ignore metadata atoms."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0 = one per CPU, at "
                                "most 4; 1 = serial)."),
    ray: str | None = typer.Option(None, "--ray", help="Run on Ray: 'local' starts one, or "
                                   "give a cluster ADDRESS (e.g. ray://host:10001, auto)."),
    shard_size: int = typer.Option(256, "--shard-size", min=1, help="Manifest rows per shard."),
    embeddings: bool = typer.Option(False, "--embeddings", help="Also write BirdNET "
                                    "embeddings (re-runs BirdNET on audio)."),
) -> None:
    """Extract atoms at scale (shards: files-*, atoms-*, embeddings-*.parquet)."""
    from avgeo.data.extract import run_extract

    counts = run_extract(manifest, out, engines, use_metadata=not no_metadata,
                         workers=workers, use_ray=ray is not None,
                         ray_address=None if ray in (None, "local") else ray,
                         shard_size=shard_size, embeddings=embeddings)
    Console(stderr=True).print(
        f"{counts['ok']} extracted, {counts['failed']} failed, {counts['skipped']} already "
        f"done, {counts['shards']} shards → {out}")
    if counts["failed"]:
        raise typer.Exit(1)
