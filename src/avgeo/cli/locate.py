"""`avgeo locate FILE...` (one file or many; a folder with --out runs a resumable batch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from avgeo.cli.app import app
from avgeo.errors import AvgeoError, ConfigError


@app.command("locate")
def locate_cmd(
    files: list[Path] = typer.Argument(..., help="Media files, or a folder with --out."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per file per line."),
    no_metadata: bool = typer.Option(False, "--no-metadata",
                                     help="Ignore every metadata atom (GPS, time, camera)."),
    explain: bool = typer.Option(False, "--explain", help="Also show counterfactuals."),
    engines: str = typer.Option("all", "--engines",
                                help="Comma list of meta,hum,speech,birdnet,sae,ocr (or all); "
                                     "add reasoner for the learned reasoner's chain."),
    top: int = typer.Option(5, "--top", min=1, max=50, help="How many top regions."),
    out: Path | None = typer.Option(None, "--out",
                                    help="Batch mode: write results to this Parquet file."),
    workers: int = typer.Option(0, "--workers", min=0,
                                help="Batch worker processes (0 = one per CPU, at most 4)."),
) -> None:
    """Where was this captured, and why?"""
    from avgeo.pipeline import locate, parse_engines

    engine_list = parse_engines(engines)
    if out is not None:
        from avgeo.data.batch import run_batch

        summary = run_batch(files, out, engines=engine_list, use_metadata=not no_metadata,
                            top_k=top, workers=workers)
        Console(stderr=True).print(
            f"{summary['ok']} located, {summary['failed']} failed, "
            f"{summary['skipped']} already done → {out}")
        if summary["failed"]:
            raise typer.Exit(1)
        return
    dirs = [f for f in files if f.is_dir()]
    if dirs:
        raise ConfigError(f"{dirs[0]} is a folder", "pass --out results.parquet to run a folder "
                          "in batch")
    console = Console()
    err = Console(stderr=True)
    first_error: AvgeoError | None = None
    for f in files:
        try:
            if not sys.stderr.isatty():
                pred = locate(f, engines=engine_list, use_metadata=not no_metadata, top_k=top,
                              explain=explain or json_out)
            else:
                with Progress(TextColumn("{task.description}"), BarColumn(),
                              TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                              console=err, transient=True) as bar:
                    task = bar.add_task(f"locating {f.name}", total=1, stage="decoding")

                    def on_stage(name: str, done: int, total: int, _t=task, _b=bar) -> None:
                        _b.update(_t, completed=done, total=total, stage=name)

                    pred = locate(f, engines=engine_list, use_metadata=not no_metadata,
                                  top_k=top, explain=explain or json_out, on_stage=on_stage)
        except AvgeoError as exc:
            if len(files) == 1:
                raise
            print(f"{f}: {exc.one_line()}", file=sys.stderr)
            if json_out:
                print(json.dumps({"file": str(f), "error": {"type": type(exc).__name__,
                                                            "message": exc.message,
                                                            "hint": exc.hint}}))
            first_error = first_error or exc
            continue
        if json_out:
            print(pred.model_dump_json())
        else:
            from avgeo.cli.render import render_prediction

            render_prediction(pred, console, explain=explain)
    if first_error is not None:
        raise typer.Exit(first_error.exit_code)
