"""Sharded atom extraction: kill-and-resume loses and duplicates nothing, executors write
identical shards, atoms round-trip exactly, and `avgeo query` counts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from avgeo.data.extract import atom_from_row, atom_to_row, read_shards, run_extract
from avgeo.data.schema import NONDETERMINISTIC_FILE_COLUMNS

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("arezzo_dscn0010.jpg", "arezzo_dscn0021.jpg", "lund_01.jpg", "sign_thai.jpg",
          "osv_gb_517681129360654.jpg", "carlsbad_gopro_max.mp4")


def _manifest(tmp_path: Path, files: list[Path], name: str = "m.csv") -> Path:
    p = tmp_path / name
    pd.DataFrame({"file": [str(f) for f in files],
                  "lat": np.linspace(-40, 40, len(files)), "lon": 10.0,
                  "country": "IT"}).to_csv(p, index=False)
    return p


def _tables(d: Path) -> dict[str, pd.DataFrame]:
    files = read_shards(d, "files").drop(columns=list(NONDETERMINISTIC_FILE_COLUMNS))
    return {"files": files, "atoms": read_shards(d, "atoms")}


def _assert_same(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    for k in ta:
        pd.testing.assert_frame_equal(ta[k], tb[k])
    # same shard boundaries too
    assert [p.name for p in sorted(a.glob("*-*.parquet"))] == \
        [p.name for p in sorted(b.glob("*-*.parquet"))]


def test_atoms_round_trip_exactly(media_dir):
    from avgeo.pipeline import extract_atoms
    from avgeo.reasoning.fusion import fuse

    _, atoms, _, _ = extract_atoms(media_dir / "lund_01.jpg", ["meta"], True)
    _, more, _, _ = extract_atoms(media_dir / "wuhan_enf_ref001.wav", ["hum"], False)
    atoms += more
    assert any(a.likelihood is not None for a in atoms)
    back = [atom_from_row(json.loads(json.dumps(atom_to_row(a, 0, "x")))) for a in atoms]
    assert [(a.name, a.engine, a.confidence) for a in back] == \
        [(a.name, a.engine, a.confidence) for a in atoms]
    r1, r2 = fuse(atoms), fuse(back)
    np.testing.assert_array_equal(r1.coarse.log_prob, r2.coarse.log_prob)


def test_kill_and_resume_loses_and_duplicates_nothing(media_dir, tmp_path):
    files = [media_dir / PHOTOS[i % 4] for i in range(120)]
    m = _manifest(tmp_path, files)
    ref = tmp_path / "ref"
    run_extract(m, ref, ["meta"], workers=1, shard_size=7, progress=False)

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "avgeo", "extract", str(m), "--out", str(out),
           "--engines", "meta", "--workers", "1", "--shard-size", "7"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "files-00002.parquet").exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_shards = -(-120 // 7)
    assert not (out / f"files-{n_shards - 1:05d}.parquet").exists(), \
        "the run finished before it could be killed"
    assert (out / "files-00002.parquet").exists()

    counts = run_extract(m, out, ["meta"], workers=1, shard_size=7, progress=False)
    assert counts["skipped"] >= 21 and counts["ok"] + counts["skipped"] == 120
    assert not list(out.glob(".journal-*")) and not list(out.glob(".*.tmp"))
    got = read_shards(out, "files")
    assert got["row"].tolist() == list(range(120))
    _assert_same(ref, out)
    # a third run has nothing left to do
    again = run_extract(m, out, ["meta"], workers=1, shard_size=7, progress=False)
    assert again == {"ok": 0, "failed": 0, "skipped": 120, "shards": n_shards}


def test_resume_refuses_other_settings(media_dir, tmp_path):
    from avgeo.errors import ConfigError

    m = _manifest(tmp_path, [media_dir / PHOTOS[0]] * 3)
    run_extract(m, tmp_path / "o", ["meta"], workers=1, shard_size=2, progress=False)
    with pytest.raises(ConfigError, match="shard_size"):
        run_extract(m, tmp_path / "o", ["meta"], workers=1, shard_size=3, progress=False)


def _mixed(media_dir, bad_dir) -> list[Path]:
    return [media_dir / n for n in PHOTOS] + [media_dir / "wuhan_enf_ref001.wav",
                                             bad_dir / "empty.wav", media_dir / "lund_29.jpg"]


def test_pool_and_serial_write_identical_shards(media_dir, bad_dir, tmp_path):
    m = _manifest(tmp_path, _mixed(media_dir, bad_dir))
    engines = ["meta"]
    run_extract(m, tmp_path / "serial", engines, workers=1, shard_size=3, progress=False)
    run_extract(m, tmp_path / "pool", engines, workers=2, shard_size=3, progress=False)
    _assert_same(tmp_path / "serial", tmp_path / "pool")
    files = read_shards(tmp_path / "serial", "files")
    assert files["status"].tolist().count("error") == 1
    assert files.loc[files["status"] == "error", "error_type"].item() == "EmptyMediaError"
    meta = pq.read_schema(tmp_path / "serial" / "atoms-00000.parquet").metadata
    assert meta[b"avgeo.schema"] == b"avgeo.extract"


@pytest.mark.slow
def test_ray_writes_the_same_shards(media_dir, bad_dir, tmp_path):
    pytest.importorskip("ray")
    m = _manifest(tmp_path, _mixed(media_dir, bad_dir))
    run_extract(m, tmp_path / "serial", ["meta"], workers=1, shard_size=3, progress=False)
    run_extract(m, tmp_path / "ray", ["meta"], workers=2, use_ray=True, shard_size=3,
                progress=False)
    _assert_same(tmp_path / "serial", tmp_path / "ray")


def test_query_counts(media_dir, bad_dir, tmp_path):
    from avgeo.cli import _register, app

    _register()
    files = _mixed(media_dir, bad_dir)
    m = _manifest(tmp_path, files)
    d = tmp_path / "d"
    run_extract(m, d, ["meta"], workers=1, shard_size=4, progress=False)
    res = CliRunner().invoke(app, ["query", "SELECT status, count(*) AS n FROM files "
                                   "GROUP BY status ORDER BY status", "--data", str(d),
                                   "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows == [{"status": "error", "n": 1}, {"status": "ok", "n": len(files) - 1}]
    n_atoms = len(read_shards(d, "atoms"))
    res = CliRunner().invoke(app, ["query", "SELECT count(*) AS n FROM atoms a JOIN files f "
                                   "USING (row) WHERE f.status = 'ok'", "--data", str(d),
                                   "--json"])
    assert json.loads(res.stdout) == {"n": n_atoms} and n_atoms > 0
    res = CliRunner().invoke(app, ["query", "SELECT nope FROM files", "--data", str(d)])
    assert res.exit_code != 0
