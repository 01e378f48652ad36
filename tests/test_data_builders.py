"""Manifest builders: each source format, row-numbered rejection of malformed rows, the
versioned Parquet schema and reverse-geocoded regions."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from avgeo.data.builders import build, build_inaturalist, build_xeno_canto
from avgeo.data.manifest import read_manifest
from avgeo.data.schema import MANIFEST_COLUMNS, MANIFEST_SCHEMA_VERSION, write_manifest
from avgeo.errors import TableError

INAT = """id,observed_on,latitude,longitude,image_url,sound_url,license,user_login,scientific_name
101,2021-05-01,48.8566,2.3522,https://x.org/1.jpg,,cc-by,alice,Passer domesticus
102,2021-05-02,-33.86,151.21,,https://x.org/2.wav,cc0,bob,Cacatua galerita
103,2021-05-03,north,2.35,https://x.org/3.jpg,,cc-by,carol,Pica pica
104,2021-05-04,10,200,https://x.org/4.jpg,,cc-by,dave,Pica pica
"""


def test_inaturalist_builder_and_row_numbers(tmp_path):
    p = tmp_path / "inat.csv"
    p.write_text(INAT)
    with pytest.raises(TableError, match=r"row 3 \(line 4\)"):
        build_inaturalist(p)
    res = build(p, skip_bad=True)
    assert res.fmt == "inaturalist"
    assert [r.row for r in res.rejects] == [3, 4]
    assert "not numbers" in res.rejects[0].reason and "out of range" in res.rejects[1].reason
    df = res.manifest
    assert list(df["kind"]) == ["photo", "audio"]
    assert list(df["recordist"]) == ["alice", "bob"]
    assert list(df["country"]) == ["FR", "AU"]  # reverse geocoded
    assert df["admin1"].iloc[0] != ""
    assert df["scientific_name"].iloc[1] == "Cacatua galerita"  # extra column kept
    assert list(df.columns[:len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)


def test_xeno_canto_builder(tmp_path):
    doc = {"numRecordings": "3", "recordings": [
        {"id": "563936", "gen": "Junco", "sp": "hyemalis", "en": "Dark-eyed Junco",
         "rec": "Whitney", "cnt": "United States", "lat": "47.6766", "lng": "-122.294",
         "file": "//xeno-canto.org/563936/download", "lic": "//creativecommons.org/x",
         "date": "2020-03-16", "time": "07:22"},
        {"id": "2", "lat": "51.5", "lon": "-0.12", "file": "https://xc/2", "rec": "Ann"},
        {"id": "3", "lat": "", "lng": "5", "file": "https://xc/3"},
    ]}
    p = tmp_path / "xc.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(TableError, match="row 3"):
        build_xeno_canto(p)
    res = build(p, skip_bad=True)
    df = res.manifest
    assert res.fmt == "xeno-canto" and len(df) == 2 and res.rejects[0].row == 3
    assert df["file"].iloc[0] == "https://xeno-canto.org/563936/download"
    assert df["capture_time"].iloc[0] == "2020-03-16T07:22"
    assert df["species"].iloc[0] == "Junco hyemalis"
    assert list(df["country"]) == ["US", "GB"]
    assert df["admin1"].iloc[0] == "Washington"


def test_im2gps_builder_on_shared_truth(shared_data, tmp_path):
    src = shared_data / "metrics" / "geoestimation_im2gps3k_truth_places365.csv"
    lines = src.read_text().splitlines()[:6]
    p = tmp_path / "im2gps.csv"
    p.write_text("\n".join(lines) + "\n")
    res = build(p, media_root=tmp_path / "imgs", geocode=False)
    assert res.fmt == "im2gps" and len(res.manifest) == 5
    first = lines[1].split(",")
    assert res.manifest["file"].iloc[0] == str(tmp_path / "imgs" / first[0])
    assert res.manifest["recordist"].iloc[0] == first[1]
    assert res.manifest["lat"].iloc[0] == pytest.approx(float(first[2]))
    bad = tmp_path / "bad.csv"
    bad.write_text(lines[0] + "\n" + lines[1] + "\nx.jpg,me,,\n")
    with pytest.raises(TableError, match=r"row 2 \(line 3\).*no coordinates"):
        build(bad)


def test_folder_builder_with_sidecar_and_schema(media_dir, tmp_path, manifest):
    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("arezzo_dscn0010.jpg", "sign_thai.jpg", "jura_dawn_0600.wav"):
        shutil.copy(media_dir / name, folder / name)
    (folder / "notes.txt").write_text("not media")
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    coords = tmp_path / "coords.csv"
    coords.write_text("file,lat,lon,site\njura_dawn_0600.wav,46.5,6.1,jura\n")
    with pytest.raises(TableError, match=r"row 2.*broken\.jpg"):
        build(folder, coords=coords)
    res = build(folder, coords=coords, skip_bad=True)
    df = res.manifest.set_index(res.manifest["file"].map(lambda f: f.rsplit("/", 1)[-1]))
    truth = {r["file"]: r for r in manifest}
    assert df.loc["arezzo_dscn0010.jpg", "lat"] == pytest.approx(
        float(truth["arezzo_dscn0010.jpg"]["lat"]), abs=1e-6)  # from EXIF
    assert df.loc["arezzo_dscn0010.jpg", "country"] == "IT"
    assert df.loc["jura_dawn_0600.wav", "site"] == "jura"  # sidecar extra column
    assert df.loc["jura_dawn_0600.wav", "kind"] == "audio"
    assert pd.isna(df.loc["sign_thai.jpg", "lat"])
    assert [r.row for r in res.rejects] == [2]
    out = tmp_path / "m.parquet"
    write_manifest(res.manifest, out)
    meta = pq.read_schema(out).metadata
    assert meta[b"avgeo.schema_version"] == str(MANIFEST_SCHEMA_VERSION).encode()
    back = read_manifest(out)
    assert len(back) == 3 and back["country"].tolist() == res.manifest["country"].tolist()


def test_results_parquet_builder(tmp_path):
    import pyarrow as pa

    t = pa.table({"file": ["/a.jpg", "/b.jpg"], "status": ["ok", "error"],
                  "lat": [35.0, None], "lon": [139.0, None], "country": ["JP", None],
                  "error": [None, "corrupt"], "prediction_json": ["{}", None]})
    p = tmp_path / "res.parquet"
    pq.write_table(t, p)
    with pytest.raises(TableError, match=r"row 2.*corrupt"):
        build(p)
    res = build(p, skip_bad=True)
    assert res.fmt == "results" and res.manifest["country"].tolist() == ["JP"]
    assert res.manifest["source"].iloc[0] == "avgeo-results"


def test_sidecar_bad_rows_keep_their_numbers(tmp_path):
    from avgeo.data.builders import read_coords_csv

    p = tmp_path / "coords.csv"
    p.write_text("file,lat,lon,note\na.jpg,1,2,x\n,3,4,y\na.jpg,5,6,z\nb.jpg,7,8,w\n")
    with pytest.raises(TableError, match=r"row 2 \(line 3\): empty file name"):
        read_coords_csv(p)
    by_file, rejects = read_coords_csv(p, skip_bad=True)
    assert [(r.row, r.reason) for r in rejects] == [
        (2, "empty file name"), (3, "file 'a.jpg' is listed twice")]
    # the row number survives for later "not in the folder" reports, extras are kept
    assert by_file["a.jpg"]["_row"] == 1 and by_file["b.jpg"]["_row"] == 4
    assert by_file["b.jpg"]["note"] == "w" and by_file["b.jpg"]["lat"] == 7.0


def test_xeno_canto_non_object_recording(tmp_path):
    p = tmp_path / "xc.json"
    p.write_text(json.dumps({"recordings": [["not", "a", "dict"],
                                            {"id": "9", "lat": "1", "lng": "2", "file": "u"}]}))
    res = build(p, skip_bad=True)
    assert [r.row for r in res.rejects] == [1]
    assert res.rejects[0].raw["value"].startswith("['not'")
    assert len(res.manifest) == 1
