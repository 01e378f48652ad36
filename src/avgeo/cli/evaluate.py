"""`avgeo evaluate PRED --truth TRUTH`: score point predictions with the field's metrics."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import typer

from avgeo.cli.app import app
from avgeo.errors import ConfigError
from avgeo.geo.sphere import EARTH_RADIUS_KM

_HELP = """Score predicted coordinates against the truth.

PRED and TRUTH are CSV or Parquet tables joined on an id column. Column names match
case-insensitively; without --id/--lat/--lon the usual aliases are detected (img_id,
pred_lat, predicted_lat, predicted_long, ...). TRUTH may be left out when PRED carries the
truth itself (true_lat/true_lon or gt_lat/gt_long). CSV files stop at the first blank line.
Optional PRED columns add metrics: log_density_sr (NLL on S²), region_area_km2 + region_hit
(recall versus area) and region_level (coverage of credible regions).
"""


def _command_line(pred: Path, opts: dict[str, object]) -> str:
    """The command, rebuilt from the parsed options (what the report says produced it)."""
    parts = ["avgeo", "evaluate", str(pred)]
    for flag, value in opts.items():
        if value is None or value is False:
            continue
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


@app.command("evaluate", help=_HELP)
def evaluate(
    pred: Path = typer.Argument(..., help="Predictions table (CSV or Parquet)."),
    truth: Path | None = typer.Option(None, "--truth", help="Ground-truth table."),
    out: Path | None = typer.Option(
        None, "--out", help="Write metrics.json, report.md and plots into this folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object to stdout."),
    id_col: str | None = typer.Option(None, "--id", help="Id column in PRED."),
    lat_col: str | None = typer.Option(None, "--lat", help="Predicted latitude column."),
    lon_col: str | None = typer.Option(None, "--lon", help="Predicted longitude column."),
    truth_id_col: str | None = typer.Option(None, "--truth-id", help="Id column in TRUTH."),
    truth_lat_col: str | None = typer.Option(
        None, "--truth-lat", help="True latitude column (in TRUTH, or in PRED without TRUTH)."),
    truth_lon_col: str | None = typer.Option(
        None, "--truth-lon", help="True longitude column (in TRUTH, or in PRED without TRUTH)."),
    partial: bool = typer.Option(
        False, "--partial", help="Score only predicted ids when TRUTH has more rows."),
    radius_km: float = typer.Option(
        EARTH_RADIUS_KM, "--radius-km", help="Sphere radius for distances (OSV-5M: 6371.0)."),
    regions: bool = typer.Option(
        True, "--regions/--no-regions",
        help="Hierarchical accuracy via reverse geocoding, when available."),
) -> None:
    from avgeo.eval import evaluate_pairs, load_pairs

    if not (math.isfinite(radius_km) and radius_km > 0):
        raise ConfigError(f"--radius-km must be a positive number, got {radius_km}")
    pairs = load_pairs(pred, truth, id_col=id_col, lat_col=lat_col, lon_col=lon_col,
                       truth_id_col=truth_id_col, truth_lat_col=truth_lat_col,
                       truth_lon_col=truth_lon_col, allow_partial=partial)
    result, error_km = evaluate_pairs(pairs, radius_km=radius_km, regions=regions)
    command = _command_line(pred, {
        "--truth": truth, "--out": out, "--json": json_out, "--id": id_col, "--lat": lat_col,
        "--lon": lon_col, "--truth-id": truth_id_col, "--truth-lat": truth_lat_col,
        "--truth-lon": truth_lon_col, "--partial": partial,
        "--radius-km": None if radius_km == EARTH_RADIUS_KM else radius_km,
        "--no-regions": not regions,
    })
    written = {}
    if out is not None:
        from avgeo.eval.report import write_report

        written = write_report(out, result, error_km, pairs.true_lat, pairs.true_lon, command)
    if json_out:
        from avgeo.eval.report import jsonable

        payload = result.to_dict()
        if written:
            payload["report"] = {k: str(v) for k, v in written.items()}
        print(json.dumps(jsonable(payload)))
        return
    _print_table(result, written)


def _print_table(result, written: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    from avgeo.eval.metrics import THRESHOLD_NAMES, threshold_key

    d = result.distance
    table = Table(title=f"avgeo evaluate: {d.n} predictions")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for t, acc in d.acc.items():
        name = THRESHOLD_NAMES.get(t, "")
        table.add_row(f"acc @ {threshold_key(t)} km" + (f" ({name})" if name else ""),
                      f"{100 * acc:.2f} %  ({d.count[t]}/{d.n})")
    table.add_row("median error", f"{d.median_km:,.2f} km")
    table.add_row("mean error", f"{d.mean_km:,.2f} km")
    table.add_row("mean GeoScore", f"{d.geoscore_mean:.2f}")
    if result.hierarchical is not None:
        for level, acc in result.hierarchical.acc.items():
            table.add_row(f"{level} accuracy", f"{100 * acc:.2f} %")
    if result.rva is not None:
        for a, r in result.rva.recall_at.items():
            table.add_row(f"recall within {a:g} km²", f"{100 * r:.2f} %")
    if result.coverage is not None:
        for nom, emp in zip(result.coverage.nominal, result.coverage.empirical, strict=True):
            table.add_row(f"coverage of {100 * nom:g} % regions", f"{100 * emp:.2f} %")
    if result.nll_nats is not None:
        table.add_row("NLL on S²", f"{result.nll_nats:.4f} nats/sr")
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if written:
        console.print(f"report written to {written['report'].parent}", markup=False,
                      highlight=False)
