"""`avgeo benchmark MANIFEST --methods ... --out DIR`: score methods, ablations and external
prediction files on one manifest; writes report.md, metrics.json, results.parquet, plots."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.console import Console

from avgeo.cli.app import app


@app.command("benchmark")
def benchmark_cmd(
    manifest: Path = typer.Argument(..., help="Manifest with file, lat, lon (and country)."),
    out: Path = typer.Option(..., "--out", help="Report folder (atom shards are kept and "
                             "reused under OUT/atoms)."),
    methods: str = typer.Option("prior,meta,audio,vision,fusion", "--methods",
                                help="Comma list: prior, meta, audio, vision, fusion, "
                                "fusion+flow, reasoner."),
    predictions: list[str] = typer.Option([], "--predictions", help="External predictions "
                                          "FILE or FILE:TRUTH, scored beside ours "
                                          "(repeatable)."),
    with_metadata: bool = typer.Option(False, "--with-metadata", help="Let every method "
                                       "use metadata atoms (default: only 'meta')."),
    ablations: bool = typer.Option(True, "--ablations/--no-ablations", help="Fusion with "
                                   "each engine removed."),
    workers: int = typer.Option(0, "--workers", min=0),
    ray: str | None = typer.Option(None, "--ray", help="Extract on Ray: 'local' or ADDRESS."),
    shard_size: int = typer.Option(256, "--shard-size", min=1),
) -> None:
    """Benchmark methods on a located manifest."""
    from avgeo.eval.benchmark import BenchmarkConfig, parse_methods, run_benchmark

    cfg = BenchmarkConfig(manifest=manifest, out=out, methods=parse_methods(methods),
                          with_metadata=with_metadata, predictions=list(predictions),
                          ablations=ablations, workers=workers, use_ray=ray is not None,
                          ray_address=None if ray in (None, "local") else ray,
                          shard_size=shard_size)
    parts = ["avgeo", "benchmark", str(manifest), "--out", str(out), "--methods",
             ",".join(cfg.methods)]
    for p in predictions:
        parts += ["--predictions", p]
    parts += (["--with-metadata"] if with_metadata else []) + \
        ([] if ablations else ["--no-ablations"]) + \
        (["--workers", str(workers)] if workers else []) + \
        (["--ray", ray] if ray is not None else []) + \
        (["--shard-size", str(shard_size)] if shard_size != 256 else [])
    # Rebuilt from the parsed options, so the report names exactly what produced it.
    command = shlex.join(parts)
    payload = run_benchmark(cfg, command)
    err = Console(stderr=True)
    for name, m in payload["methods"].items():
        d = m.get("distance") or {}
        if m["status"] != "ok":
            err.print(f"{name}: not available ({m['reason']})")
        elif d:
            err.print(f"{name}: n={d['n']} median {d['median_km']:.1f} km, "
                      f"GeoScore {d['geoscore_mean']:.0f}")
    err.print(f"report → {out / 'report.md'}")
