"""`avgeo inspect --json`: one object per file with kind, duration_s and gps."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avgeo.geo.sphere import haversine_km


def _inspect(*args):
    return subprocess.run([sys.executable, "-m", "avgeo", "inspect", "--json", *args],
                          capture_output=True, text=True, timeout=300)


def test_inspect_reports_kind_duration_and_gps(media_dir, manifest):
    names = ["seattle_xc563936.mp3", "carlsbad_gopro_max.mp4", "lund_01.jpg",
             "osv_gb_517681129360654.jpg"]
    r = _inspect(*[str(media_dir / n) for n in names])
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [x["kind"] for x in rows] == ["audio", "video", "photo", "photo"]
    assert rows[0]["duration_s"] == pytest.approx(71.98, abs=0.05)
    truth = {m["file"]: m for m in manifest}
    for n, row in zip(names[:3], rows[:3], strict=True):
        gps = row["gps"]
        assert gps is not None and gps["source"]
        d = haversine_km(gps["lat"], gps["lon"], float(truth[n]["lat"]), float(truth[n]["lon"]))
        assert d < 0.02, (n, d)
    assert rows[3]["gps"] is None


def test_inspect_bad_file_is_one_error_line(bad_dir):
    r = _inspect(str(bad_dir / "clip.mp4"))
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
