"""`avgeo evaluate --out`: report files, plots, optional metrics columns, hierarchical accuracy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from avgeo.eval import evaluate_pairs, load_pairs
from avgeo.eval.report import load_outlines

REPO = Path(__file__).resolve().parents[1]


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avgeo", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def _pred_with_truth(tmp_path: Path, n: int = 200, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    tlat = rng.uniform(-60, 70, n)
    tlon = rng.uniform(-180, 180, n)
    df = pd.DataFrame({"id": [f"img{i}" for i in range(n)],
                       "lat": np.clip(tlat + rng.normal(0, 2, n), -90, 90),
                       "lon": (tlon + rng.normal(0, 2, n) + 180) % 360 - 180,
                       "true_lat": tlat, "true_lon": tlon})
    path = tmp_path / "pred.csv"
    df.to_csv(path, index=False)
    return path, df


def test_out_dir_has_json_markdown_and_plots(tmp_path):
    pred, _ = _pred_with_truth(tmp_path)
    out = tmp_path / "report"
    r = _cli("evaluate", pred, "--out", out, "--no-regions")
    assert r.returncode == 0, r.stderr
    assert "acc @ 1 km" in r.stdout and "median error" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 200
    assert metrics["command"] == f"avgeo evaluate {pred} --out {out} --no-regions"
    md = (out / "report.md").read_text().splitlines()
    assert md[0].startswith("# ") and metrics["command"] in md[:5]
    assert any(line.startswith("| acc@25 km") for line in md)
    for name in ("error_cdf.png", "error_map.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 400 and im.height > 300
            # A real plot, not a blank canvas.
            assert len(np.unique(np.asarray(im.convert("L")))) > 20


def test_json_stdout_is_one_object_even_with_out(tmp_path):
    pred, _ = _pred_with_truth(tmp_path)
    r = _cli("evaluate", pred, "--out", tmp_path / "o", "--json", "--no-regions")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert Path(out["report"]["metrics"]).is_file()
    assert set(out["acc"]) == {"1", "25", "200", "750", "2500"}


def test_unwritable_out_is_a_user_error(tmp_path):
    pred, _ = _pred_with_truth(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _cli("evaluate", pred, "--out", blocker / "sub", "--no-regions")
    assert r.returncode != 0 and r.returncode != 70
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


def test_outlines_from_geojson_and_missing_asset(tmp_path):
    assert load_outlines(tmp_path / "absent") == []
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon",
                                         "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [[[5, 5], [6, 5], [6, 6], [5, 5]]], [[[7, 7], [8, 7], [8, 8], [7, 7]]]]}},
    ]}
    (tmp_path / "c.geojson").write_text(json.dumps(doc))
    (tmp_path / "broken.json").write_text("{not json")
    rings = load_outlines(tmp_path)
    assert len(rings) == 3 and rings[1].shape == (4, 2)


def test_optional_columns_give_rva_coverage_and_nll(tmp_path):
    pred, df = _pred_with_truth(tmp_path, n=100)
    df["region_area_km2"] = np.where(np.arange(100) % 2 == 0, 50.0, 5e5)
    df["region_hit"] = np.where(np.arange(100) % 4 < 3, "true", "false")
    df["region_level"] = np.where(np.arange(100) < 50, 0.5, 0.9)
    df["log_density_sr"] = np.log(1 / (4 * math.pi))
    df.to_csv(pred, index=False)
    r = _cli("evaluate", pred, "--json", "--no-regions")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["nll_nats_per_sr"] == pytest.approx(math.log(4 * math.pi))
    # Hits: rows 0,1,2 of each 4; area 50 on even rows -> rows 0 and 2 of 4 found at 50 km².
    assert out["recall_vs_area"]["recall_at"]["100"] == pytest.approx(0.5)
    assert out["recall_vs_area"]["recall_at"]["1e+06"] == pytest.approx(0.75)
    levels = out["coverage"]["levels"]
    assert [lv["nominal"] for lv in levels] == [0.5, 0.9]
    assert levels[0]["empirical"] == pytest.approx(38 / 50)  # 0..49: 13 misses at i%4==3
    df.loc[3, "region_hit"] = "maybe"
    df.to_csv(pred, index=False)
    r = _cli("evaluate", pred, "--json", "--no-regions")
    assert r.returncode == 4 and "row 4 (line 5), column 'region_hit'" in r.stderr


@pytest.mark.slow
def test_hierarchical_accuracy_with_chain_of_region(shared_data):
    pytest.importorskip("avgeo.geo.regions")
    path = shared_data / "metrics" / "osv5m_game_select.csv"
    pairs = load_pairs(path)
    result, _ = evaluate_pairs(pairs)
    h = result.hierarchical
    assert h is not None and set(h.acc) == {"continent", "country", "admin1", "city"}
    # Nested: a country hit needs a continent hit (same rows count at both levels). OSV-5M's
    # own reverse geocoding puts the country accuracy at 2/3; another gazetteer may differ
    # by a few border rows.
    assert h.n["continent"] == h.n["country"] and h.acc["country"] <= h.acc["continent"]
    df = pd.read_csv(path)
    assert abs(h.acc["country"] - df["country_hit"].mean()) <= 3 / 48
