"""`avgeo benchmark` on a small manifest built from the shared media: report, metrics,
per-file results, "not available" rows, external predictions, and reproducibility from the
command written at the top of report.md."""

from __future__ import annotations

import csv
import json
import shlex
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from avgeo.cli import _register
from avgeo.cli.app import app
from avgeo.eval.benchmark import credible_hit


@pytest.fixture(scope="module")
def cli():
    _register()
    return CliRunner()


def _invoke(cli, args):
    res = cli.invoke(app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def test_credible_hit_capped_is_unknown():
    import h3

    cell = h3.latlng_to_cell(48.85, 2.35, 5)
    other = h3.latlng_to_cell(-33.9, 151.2, 5)
    assert credible_hit([cell], 1, 48.85, 2.35) is True
    assert credible_hit([other], 1, 48.85, 2.35) is False
    assert credible_hit([other], 900, 48.85, 2.35) is None  # list capped: unknown
    coarse = h3.cell_to_parent(cell, 3)
    assert credible_hit([other, coarse], 2, 48.85, 2.35) is True  # mixed resolutions


def test_benchmark_report_is_reproducible(cli, media_dir, manifest, shared_data, tmp_path):
    sidecar = tmp_path / "coords.csv"
    with open(sidecar, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "lat", "lon", "country"])
        for r in manifest:
            w.writerow([r["file"], r["lat"], r["lon"], r["country"]])
    m = tmp_path / "m.parquet"
    _invoke(cli, ["dataset", "build", str(media_dir), "--coords", str(sidecar),
                  "--out", str(m)])
    df = pd.read_parquet(m)
    assert len(df) == len(manifest) and (df["country"] != "").all()

    truth = shared_data / "metrics" / "geoestimation_im2gps3k_truth_places365.csv"
    pred = shared_data / "metrics" / "geoestimation_im2gps3k_pred_ISNs_M-fstar-S3.csv"
    out = tmp_path / "bench"
    _invoke(cli, ["benchmark", str(m), "--methods", "prior,meta", "--out", str(out),
                  "--workers", "1", "--predictions", f"{pred}:{truth}"])
    report = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    methods = metrics["methods"]
    n_loc = sum(1 for r in manifest if r["lat"])
    assert methods["prior"]["distance"]["n"] == n_loc == methods["meta"]["distance"]["n"]
    assert methods["meta"]["hierarchical"]["n"]["country"] == len(manifest)
    # metadata GPS pins the files that carry it; the prior alone pins none
    from avgeo.perception.meta.engine import read_metadata

    with_gps = sum(1 for r in manifest
                   if r["lat"] and read_metadata(media_dir / r["file"])["gps"] is not None)
    assert methods["meta"]["distance"]["count"]["1"] >= max(with_gps, 1)
    assert methods["prior"]["distance"]["count"]["1"] == 0
    ext = methods["geoestimation_im2gps3k_pred_ISNs_M-fstar-S3"]
    assert ext["external"] and ext["distance"]["count"]["1"] == 316
    assert 0.0 <= methods["prior"]["coverage"]["0.9"]["empirical"] <= 1.0
    assert "| prior |" in report
    res = pd.read_parquet(out / "results.parquet")
    assert sorted(res["method"].unique()) == ["meta", "prior"]
    assert len(res) == 2 * len(manifest)
    assert (out / "plots" / "prior_cdf.png").stat().st_size > 0

    # the command at the top of the report reproduces the numbers from scratch
    command = report.split("```")[1].strip()
    argv = shlex.split(command)
    assert argv[:2] == ["avgeo", "benchmark"]
    first = (out / "metrics.json").read_text()
    shutil.rmtree(out)
    _invoke(cli, argv[1:])
    assert (out / "metrics.json").read_text() == first


@pytest.mark.slow
def test_flow_and_reasoner_methods_are_scored(cli, media_dir, manifest, tmp_path):
    """fusion+flow and the learned reasoner run on the same content atoms as fusion."""
    rows = [r for r in manifest if r["file"] in ("seattle_xc563936.mp3", "wuhan_enf_ref001.wav")]
    sidecar = tmp_path / "coords.csv"
    with open(sidecar, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "lat", "lon", "country"])
        for r in rows:
            w.writerow([r["file"], r["lat"], r["lon"], r["country"]])
    folder = tmp_path / "media"
    folder.mkdir()
    for r in rows:
        shutil.copy(media_dir / r["file"], folder / r["file"])
    m = tmp_path / "m.parquet"
    _invoke(cli, ["dataset", "build", str(folder), "--coords", str(sidecar), "--out", str(m)])
    out = tmp_path / "bench"
    _invoke(cli, ["benchmark", str(m), "--methods", "fusion,fusion+flow,reasoner",
                  "--no-ablations", "--out", str(out), "--workers", "1"])
    methods = json.loads((out / "metrics.json").read_text())["methods"]
    for name in ("fusion", "fusion+flow", "reasoner"):
        assert methods[name].get("status", "ok") != "not available", methods[name]
        assert methods[name]["distance"]["n"] == 2


def test_a_row_without_an_answer_scores_the_worst_error_and_misses():
    """An unparsable reasoner chain (NaN point) must not crash the scoring: its row counts
    as half the Earth's circumference away and misses every level."""
    import math

    from avgeo.eval.benchmark import score

    half = math.pi * 6371.0088
    base = {"true_lat": 47.6, "true_lon": -122.3, "true_country": "US", "true_admin1": "",
            "pred_continent": "", "pred_country": "", "pred_country_probability": math.nan,
            "n_atoms": 1}
    rows = [{**base, "method": "reasoner", "row": 0, "file": "a", "pred_lat": 47.61,
             "pred_lon": -122.33, "error_km": 2.6, "pred_country": "US"},
            {**base, "method": "reasoner", "row": 1, "file": "b", "pred_lat": math.nan,
             "pred_lon": math.nan, "error_km": half}]
    out = score(rows)
    assert out["distance"]["n"] == 2 and out["n_no_answer"] == 1
    assert out["distance"]["mean_km"] == pytest.approx((2.6 + half) / 2)
    assert out["hierarchical"]["acc"]["country"] == pytest.approx(0.5)
