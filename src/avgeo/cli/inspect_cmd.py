"""`avgeo inspect FILE...`: what was decoded, and which metadata atoms were found."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from avgeo.cli.app import app
from avgeo.errors import AvgeoError


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | int | str | bool) or x is None:
        return x
    if hasattr(x, "isoformat"):
        return x.isoformat()
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "__dict__"):
        return _jsonable(vars(x))
    return str(x)


def inspect_file(path: Path, use_metadata: bool = True) -> dict[str, Any]:
    from avgeo.media import open_media

    m = open_media(path)
    validate = getattr(m, "validate", None)
    if callable(validate):
        validate()
    info: dict[str, Any] = {
        "file": str(path), "kind": m.kind, "duration_s": m.duration_s,
        "size_bytes": m.size_bytes, "sample_rate": m.sample_rate, "channels": m.channels,
        "width": m.width, "height": m.height, "codecs": m.codecs, "gps": None,
    }
    if use_metadata:
        from avgeo.perception.meta.engine import read_metadata

        meta = read_metadata(path)
        info.update({k: v for k, v in meta.items() if k != "gps"})
        gps = meta.get("gps")
        if gps:
            info["gps"] = {k: gps.get(k) for k in ("lat", "lon", "source", "alt_m", "accuracy_m")
                           if k in gps} if isinstance(gps, dict) else _jsonable(gps)
    return _jsonable(info)


@app.command("inspect")
def inspect_cmd(
    files: list[Path] = typer.Argument(..., help="Media files."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per file per line."),
    no_metadata: bool = typer.Option(False, "--no-metadata"),
) -> None:
    """Show what was decoded and which metadata atoms were found."""
    con = Console()
    first: AvgeoError | None = None
    for f in files:
        try:
            info = inspect_file(f, use_metadata=not no_metadata)
        except AvgeoError as exc:
            if len(files) == 1:
                raise
            print(f"{f}: {exc.one_line()}", file=sys.stderr)
            first = first or exc
            continue
        if json_out:
            print(json.dumps(info))
            continue
        con.print(f"[bold]{f}[/bold]: {info['kind']}", highlight=False)
        for k, v in info.items():
            if k in ("file", "kind") or v in (None, {}, []):
                continue
            con.print(f"  {k}: {json.dumps(v) if isinstance(v, dict | list) else v}",
                      highlight=False)
        if info.get("gps") is None and not no_metadata:
            con.print("  gps: none found")
    if first is not None:
        raise typer.Exit(first.exit_code)
