"""End to end through the CLI: locate with metadata, JSON Lines, bad input, batch + resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from avgeo.geo.sphere import haversine_km

AVGEO = [sys.executable, "-m", "avgeo"]


def _run(*args, timeout=600):
    return subprocess.run([*AVGEO, *args], capture_output=True, text=True, timeout=timeout)


def test_locate_gps_files_return_manifest_country(media_dir, manifest):
    # Files whose metadata carries a position (EXIF GPS, GPMF, ID3 comment).
    located = [r for r in manifest if r["file"].split(".")[-1] in ("jpg", "mp4", "mp3")
               and r["lat"] and not r["file"].startswith("osv_")]
    r = _run("locate", "--json", "--engines", "meta", *[str(media_dir / m["file"])
                                                        for m in located])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(located)
    for row, line in zip(located, lines, strict=True):
        pred = json.loads(line)
        chain = {c["level"]: c["code"] for c in pred["chain"]}
        assert chain.get("country") == row["country"], (row["file"], pred["chain"])
        d = haversine_km(pred["lat"], pred["lon"], float(row["lat"]), float(row["lon"]))
        assert d < 0.1, (row["file"], d)


def test_json_line_for_every_media_file(media_dir, manifest):
    files = [str(media_dir / m["file"]) for m in manifest]
    r = _run("locate", "--json", *files)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(files)
    for line in lines:
        pred = json.loads(line)
        for key in ("lat", "lon", "chain", "regions", "credible_regions", "atoms", "rationale",
                    "timeline", "engines", "timings_s"):
            assert key in pred


@pytest.mark.parametrize("name", ["clip.mp4", "empty.wav", "truncated_10k.mp3",
                                  "bomb_30000x30000.png", "does_not_exist.jpg"])
def test_bad_input_one_error_line(bad_dir, name):
    r = _run("locate", str(bad_dir / name))
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "(hint: " in lines[0]


def test_silence_does_not_crash(bad_dir):
    r = _run("locate", "--json", str(bad_dir / "silence_1s.wav"))
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout)
    assert not [a for a in pred["atoms"] if a["kind"] in ("species", "mains_hum", "speech")]


def _mixed_folder(tmp_path: Path, media_dir: Path, bad_dir: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for n in ("lund_01.jpg", "arezzo_dscn0010.jpg", "arezzo_dscn0021.jpg", "lund_29.jpg"):
        shutil.copy(media_dir / n, d / n)
    for n in ("clip.mp4", "empty.wav"):
        shutil.copy(bad_dir / n, d / n)
    return d


def test_batch_records_failures_and_resumes(tmp_path, media_dir, bad_dir):
    folder = _mixed_folder(tmp_path, media_dir, bad_dir)
    out = tmp_path / "results.parquet"
    r = _run("locate", str(folder), "--out", str(out), "--engines", "meta", "--workers", "1")
    assert r.returncode == 1  # some files failed, and the run says so
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 6
    status = {Path(x["file"]).name: x["status"] for x in rows}
    assert status["clip.mp4"] == "error" and status["empty.wav"] == "error"
    assert status["lund_01.jpg"] == "ok"
    by = {Path(x["file"]).name: x for x in rows}
    assert by["lund_01.jpg"]["country"] == "SE"
    # A second run does nothing new.
    r2 = _run("locate", str(folder), "--out", str(out), "--engines", "meta")
    assert "already done" in r2.stderr and len(pq.read_table(out).to_pylist()) == 6


def test_killed_batch_resumes_without_loss_or_duplicates(tmp_path, media_dir, bad_dir):
    folder = _mixed_folder(tmp_path, media_dir, bad_dir)
    out = tmp_path / "r.parquet"
    journal = out.with_name(out.name + ".journal.jsonl")
    proc = subprocess.Popen([*AVGEO, "locate", str(folder), "--out", str(out), "--engines",
                             "meta", "--workers", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    n_done = journal.read_text().count("\n")
    assert n_done >= 2
    r = _run("locate", str(folder), "--out", str(out), "--engines", "meta", "--workers", "1")
    assert f"{n_done} already done" in r.stderr or n_done >= 6
    rows = pq.read_table(out).to_pylist()
    names = sorted(Path(x["file"]).name for x in rows)
    assert names == sorted(p.name for p in folder.iterdir())
