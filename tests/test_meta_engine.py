"""The metadata engine on the shared files (EXIF JPEGs, GoPro MP4, xeno-canto MP3), the
broken inputs, and the UTC-offset → time-zone likelihood."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from avgeo.errors import AvgeoError
from avgeo.geo.grid import global_grid
from avgeo.geo.sphere import haversine_km
from avgeo.perception.meta import MetadataEngine, read_metadata
from avgeo.perception.meta.timezone import band_for_offset, covering_band, offset_region
from avgeo.reasoning.likelihood import PointLikelihood


def _row(manifest, name):
    return next(r for r in manifest if r["file"] == name)


@pytest.mark.parametrize("name", ["arezzo_dscn0010.jpg", "arezzo_dscn0021.jpg",
                                  "arezzo_dscn0029.jpg", "lund_01.jpg", "lund_29.jpg"])
def test_exif_photos_match_manifest(media_dir, manifest, name):
    row = _row(manifest, name)
    meta = read_metadata(media_dir / name)
    assert meta["gps"]["source"] == "exif"
    assert meta["gps"]["lat"] == pytest.approx(float(row["lat"]), abs=1e-5)
    assert meta["gps"]["lon"] == pytest.approx(float(row["lon"]), abs=1e-5)


def test_arezzo_atoms(media_dir):
    atoms = MetadataEngine().atoms(media_dir / "arezzo_dscn0010.jpg")
    by = {a.name: a for a in atoms}
    gps = by["gps:exif"]
    assert gps.kind == "metadata" and isinstance(gps.likelihood, PointLikelihood)
    assert gps.likelihood.sigma_km == pytest.approx(0.03)
    assert "EXIF GPS 43.46745, 11.88513" in gps.evidence and "COOLPIX P6000" in gps.evidence
    assert by["capture_time"].likelihood is None
    assert by["capture_time"].value["capture_time_local"].startswith("2008-10-22T16:28")
    assert by["camera"].value["camera"] == "NIKON COOLPIX P6000"
    # no OffsetTimeOriginal: camera clock minus GPS time gives CEST (+02:00) in Oct 2008
    tz = by["utc_offset"]
    assert tz.kind == "time_zone" and tz.value["offset_min"] == 120
    grid = global_grid(2)
    logl = tz.likelihood.log_map(grid)
    assert logl[grid.locate(43.4674, 11.8851)[0]] == 0.0
    assert logl[grid.locate(40.7, -74.0)[0]] < -2.0  # New York is not at +02:00


def test_gopro_gpmf_track(media_dir, manifest):
    row = _row(manifest, "carlsbad_gopro_max.mp4")
    meta = read_metadata(media_dir / "carlsbad_gopro_max.mp4")
    g = meta["gopro"]
    assert g["n_samples"] == 191 and g["key"] == "GPS5"
    assert g["fix_mode"] == 3 and g["dop"] == pytest.approx(1.54)
    d_m = haversine_km(g["lat"], g["lon"], float(row["lat"]), float(row["lon"])) * 1000
    assert d_m < 20.0
    assert meta["gps"]["source"] == "gpmf"
    assert g["t_start_utc"].startswith("2019-11-18T23:45:1")
    # GoPro writes local wall-clock time as creation_time; GPS time reveals UTC-08:00 (PST)
    assert meta["utc_offset"] == "-08:00"
    atoms = MetadataEngine().atoms(media_dir / "carlsbad_gopro_max.mp4")
    gps_atoms = [a for a in atoms if a.name.startswith("gps:")]
    assert gps_atoms[0].name == "gps:gpmf" and all(a.group == "gps" for a in gps_atoms)
    assert gps_atoms[0].start_s is not None and gps_atoms[0].end_s > gps_atoms[0].start_s


def test_seattle_id3_comment(media_dir):
    meta = read_metadata(media_dir / "seattle_xc563936.mp3")
    assert (meta["gps"]["lat"], meta["gps"]["lon"]) == (47.6766, -122.294)
    assert meta["recorded_date"] == "2020-03-16"
    assert meta["capture_time"] == "2020-03-16T07:22:00"


@pytest.mark.parametrize("name", ["osv_in_4065883540137904.jpg", "sign_korean.png",
                                  "sign_thai.jpg", "jfk_speech.flac", "colombia_spinetail.wav",
                                  "wuhan_enf_ref001.wav"])
def test_files_without_gps(media_dir, name):
    meta = read_metadata(media_dir / name)
    assert meta["gps"] is None
    assert not [a for a in MetadataEngine().atoms(media_dir / name) if a.name.startswith("gps")]


def test_thai_iphone_offset(media_dir):
    meta = read_metadata(media_dir / "sign_thai.jpg")
    assert meta["utc_offset"] == "+07:00" and meta["camera"] == "Apple iPhone 8"


@pytest.mark.parametrize("name", ["clip.mp4", "empty.wav", "silence_1s.wav",
                                  "truncated_10k.mp3", "bomb_30000x30000.png"])
def test_bad_files_never_crash(bad_dir, name):
    try:
        atoms = MetadataEngine().atoms(bad_dir / name)
        meta = read_metadata(bad_dir / name)
    except AvgeoError:
        return
    assert isinstance(atoms, list) and isinstance(meta, dict)
    if name != "truncated_10k.mp3":  # the tag survives truncation: real evidence
        assert meta["gps"] is None


def test_missing_file_raises(tmp_path):
    with pytest.raises(AvgeoError):
        read_metadata(tmp_path / "nope.jpg")


def test_utc_plus_9_covers_japan_and_korea():
    region = offset_region(540, datetime(2020, 5, 1, tzinfo=UTC))
    assert {"Asia/Tokyo", "Asia/Seoul"} <= set(region.zones)
    assert region.lon_min < 126.9  # west of Seoul
    assert region.lon_max >= 140.0
    grid = global_grid(3)
    logl = region.likelihood.log_map(grid)
    for lat, lon in [(35.68, 139.69), (37.57, 126.98), (43.06, 141.35)]:  # Tokyo Seoul Sapporo
        assert logl[grid.locate(lat, lon)[0]] == 0.0
    for lat, lon in [(48.85, 2.35), (40.7, -74.0)]:  # Paris, New York
        assert logl[grid.locate(lat, lon)[0]] < -2.0
    # Beijing (+08:00) is one hour off: down-weighted, less than a far-away zone
    beijing = logl[grid.locate(39.9, 116.4)[0]]
    assert -2.0 < beijing < -0.5


def test_utc_minus_7_is_western_north_america():
    summer = offset_region(-420, datetime(2021, 7, 4, 16, tzinfo=UTC))
    assert {"America/Los_Angeles", "America/Phoenix"} <= set(summer.zones)
    assert "America/Denver" not in summer.zones  # MDT is -06:00 in July
    winter = offset_region(-420, datetime(2021, 1, 15, tzinfo=UTC))
    assert "America/Denver" in winter.zones and "America/Los_Angeles" not in winter.zones
    grid = global_grid(3)
    logl = summer.likelihood.log_map(grid)
    assert logl[grid.locate(34.05, -118.24)[0]] == 0.0  # Los Angeles
    assert logl[grid.locate(41.88, -87.63)[0]] < -2.0  # Chicago
    assert -150 < summer.lon_min < summer.lon_max < -90


def test_band_helpers():
    band = band_for_offset(540)
    assert band.lon_min == pytest.approx(115.0) and band.lon_max == pytest.approx(155.0)
    lo, hi = covering_band([170.0, -170.0, 175.0])  # wraps the antimeridian
    assert (lo, hi) == (170.0, -170.0)
