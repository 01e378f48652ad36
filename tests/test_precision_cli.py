"""`avgeo train flow` and `avgeo sample`: train, resume, sample to CSV/GeoJSON, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from avgeo.cli import main
from avgeo.precision import manifold as S2


def _run(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code


def test_train_resume_and_sample(tmp_path, capsys):
    x = S2.vmf_sample(600, torch.tensor([0.0, 0.0, 1.0]), 20.0,
                      generator=torch.Generator().manual_seed(0))
    lat, lon = S2.to_latlon(x)
    csv = tmp_path / "pts.csv"
    pd.DataFrame({"lat": lat.numpy(), "lon": lon.numpy(),
                  "c": np.r_[np.zeros(300), np.ones(300)]}).to_csv(csv, index=False)
    out = tmp_path / "flow.pt"
    small = ["--hidden", "16", "--depth", "1", "--batch-size", "200"]
    assert _run(["train", "flow", str(csv), "--epochs", "1", "--out", str(out), *small]) in (0,
                                                                                              None)
    assert out.is_file() and (tmp_path / "flow.pt.ckpt").is_file()
    assert (tmp_path / "flow.run" / "metrics.csv").is_file()  # the run folder beside OUT
    assert torch.load(out, weights_only=True)["info"]["epochs_done"] == 1
    assert _run(["train", "flow", str(csv), "--epochs", "3", "--out", str(out),
                 "--resume", str(tmp_path / "flow.pt.ckpt"), *small]) in (0, None)
    obj = torch.load(out, weights_only=True)
    assert obj["info"]["epochs_done"] == 3 and obj["info"]["steps"] == 9
    samples = tmp_path / "s.csv"
    assert _run(["sample", "--n", "50", "--weights", str(out), "--out", str(samples),
                 "--steps", "4"]) in (0, None)
    df = pd.read_csv(samples)
    assert len(df) == 50 and df["lat"].between(-90, 90).all()
    gj = tmp_path / "s.geojson"
    assert _run(["sample", "--n", "5", "--weights", str(out), "--out", str(gj)]) in (0, None)
    assert len(json.loads(gj.read_text())["features"]) == 5
    # Conditional training and sampling with a condition file.
    cout = tmp_path / "cflow.pt"
    assert _run(["train", "flow", str(csv), "--cond", "c", "--epochs", "1", "--out", str(cout),
                 *small]) in (0, None)
    cfile = tmp_path / "cond.csv"
    cfile.write_text("c\n1\n")
    assert _run(["sample", "--n", "7", "--weights", str(cout), "--cond", str(cfile),
                 "--guidance", "2"]) in (0, None)
    assert capsys.readouterr().out.count("\n") >= 8


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("lat,lon\n95,0\n")
    assert _run(["train", "flow", str(bad), "--out", str(tmp_path / "x.pt")]) == 4
    assert _run(["train", "flow", str(tmp_path / "none.csv")]) == 4
    assert _run(["sample", "--weights", str(tmp_path / "none.pt")]) == 5
    assert _run(["sample", "--out", str(tmp_path / "x.txt")]) == 2
    assert "error:" in capsys.readouterr().err


def test_sample_dtype_choices(tmp_path):
    """float32 reproduces the exact sampler; bfloat16 GEMMs move samples by metres, not
    kilometres; auto is one of the two; an unknown name is a usage error."""
    from avgeo.precision.model import resolve_gemm_dtype
    from avgeo.precision.train import load_flow
    from avgeo.precision.weights import default_prior_path

    def run(dtype):
        out = tmp_path / f"{dtype}.csv"
        assert _run(["sample", "--n", "200", "--steps", "8", "--seed", "3", "--dtype", dtype,
                     "--out", str(out)]) in (0, None)
        df = pd.read_csv(out)
        return S2.from_latlon(torch.tensor(df["lat"].values), torch.tensor(df["lon"].values))

    exact, low, auto = run("float32"), run("bfloat16"), run("auto")
    model, _ = load_flow(default_prior_path())
    ref = model.sample(200, steps=8, generator=torch.Generator().manual_seed(3)).double()
    # CSV keeps 6 decimals of a degree (≤ 0.08 km).
    assert float(S2.dist(exact, ref).max()) * 6371.0 < 0.1
    d_low = S2.dist(exact, low) * 6371.0
    assert float(d_low.median()) < 2.0 and float(d_low.max()) < 50.0
    assert float(d_low.max()) > 0.0  # a different field, not the exact path renamed
    want = low if resolve_gemm_dtype("auto") is torch.bfloat16 else exact
    assert torch.equal(auto, want)
    assert resolve_gemm_dtype("float32") is None and resolve_gemm_dtype(None) is None
    assert _run(["sample", "--n", "5", "--dtype", "fp8"]) == 2
