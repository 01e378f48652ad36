"""Metadata readers on files the tests write themselves: EXIF GPS in every hemisphere, MP4/MOV
location tags, ISO 6709 forms, audio-tag coordinates and a synthetic GPMF payload."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from fractions import Fraction

import numpy as np
import pytest

from avgeo.perception.meta.exif import infer_utc_offset, parse_utc_offset, read_exif
from avgeo.perception.meta.gpmf import (
    gps_payloads,
    parse_gpsu,
    parse_klv,
    summarize_track,
    track_from_payloads,
)
from avgeo.perception.meta.iso6709 import parse_iso6709
from avgeo.perception.meta.mp4boxes import read_mp4_location_tags
from avgeo.perception.meta.quicktime import read_container
from avgeo.perception.meta.tags import parse_coordinate_pair, tag_info

piexif = pytest.importorskip("piexif")


def _rat(x: float, den: int = 10_000) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(den)
    return f.numerator, f.denominator


def _dms(v: float) -> tuple[tuple[int, int], ...]:
    v = abs(v)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60) * 3600
    return ((d, 1), (m, 1), _rat(s, 100_000))


def _write_jpeg(path, gps: dict | None = None, exif_ifd: dict | None = None,
                ifd0: dict | None = None) -> None:
    from PIL import Image

    exif = {"0th": ifd0 or {}, "Exif": exif_ifd or {}, "GPS": gps or {}, "1st": {},
            "thumbnail": None}
    Image.new("RGB", (16, 16), (90, 120, 30)).save(path, exif=piexif.dump(exif))


@pytest.mark.parametrize("lat,lon", [(35.6586, 139.7454), (-33.8568, 151.2153),
                                     (40.6892, -74.0445), (-22.9519, -43.2105)])
def test_exif_gps_all_hemispheres(tmp_path, lat, lon):
    g = piexif.GPSIFD
    gps = {g.GPSLatitudeRef: b"N" if lat >= 0 else b"S", g.GPSLatitude: _dms(lat),
           g.GPSLongitudeRef: b"E" if lon >= 0 else b"W", g.GPSLongitude: _dms(lon),
           g.GPSAltitudeRef: 1, g.GPSAltitude: (125, 10), g.GPSDOP: (25, 10)}
    p = tmp_path / "g.jpg"
    _write_jpeg(p, gps)
    info = read_exif(p)
    assert info is not None and info.gps is not None
    assert info.gps.lat == pytest.approx(lat, abs=1e-6)
    assert info.gps.lon == pytest.approx(lon, abs=1e-6)
    assert info.gps.alt_m == pytest.approx(-12.5)  # AltitudeRef 1 = below sea level
    assert info.gps.dop == pytest.approx(2.5)
    assert info.gps.accuracy_m == pytest.approx(12.5)


def test_exif_time_offset_and_camera(tmp_path):
    p = tmp_path / "t.jpg"
    _write_jpeg(p, exif_ifd={piexif.ExifIFD.DateTimeOriginal: b"2021:07:04 09:15:00",
                             piexif.ExifIFD.OffsetTimeOriginal: b"-07:00"},
                ifd0={piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: b"Canon EOS R5"})
    info = read_exif(p)
    assert info.gps is None
    assert info.capture_time_local == datetime(2021, 7, 4, 9, 15)
    assert info.utc_offset_min == -420 and info.utc_offset_source == "exif"
    assert info.capture_time_utc == datetime(2021, 7, 4, 16, 15, tzinfo=UTC)
    assert info.camera == "Canon EOS R5"


def test_exif_junk_gps_is_ignored(tmp_path):
    g = piexif.GPSIFD
    # zero denominators, (0, 0) "no fix" placeholders and minutes ≥ 60 are not positions
    for lat, lon in [(((43, 0), (28, 1), (2, 1)), ((11, 1), (53, 1), (6, 1))),
                     (((0, 1), (0, 1), (0, 1)), ((0, 1), (0, 1), (0, 1))),
                     (((43, 1), (75, 1), (2, 1)), ((11, 1), (53, 1), (6, 1)))]:
        p = tmp_path / "junk.jpg"
        _write_jpeg(p, {g.GPSLatitudeRef: b"N", g.GPSLatitude: lat,
                        g.GPSLongitudeRef: b"E", g.GPSLongitude: lon})
        info = read_exif(p)
        assert info is None or info.gps is None


def test_exif_plain_image_has_no_gps(tmp_path):
    from PIL import Image

    p = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(p)
    info = read_exif(p)
    assert info is None or info.gps is None


def test_utc_offset_parsing_and_inference():
    assert parse_utc_offset("+09:00") == 540
    assert parse_utc_offset("-0330") == -210
    assert parse_utc_offset("+25:00") is None and parse_utc_offset("junk") is None
    utc = datetime(2008, 10, 22, 14, 27, 7, tzinfo=UTC)
    assert infer_utc_offset(datetime(2008, 10, 22, 16, 28, 39), utc) == 120
    # a GPS date stamp one day off (a known camera bug) still gives the offset
    assert infer_utc_offset(datetime(2008, 10, 21, 16, 28, 39), utc) == 120
    assert infer_utc_offset(datetime(2008, 10, 22, 16, 50, 0), utc) is None  # not on grid


@pytest.mark.parametrize("text,lat,lon,alt", [
    ("+33.1267-117.3273+012.000/", 33.1267, -117.3273, 12.0),
    ("-33.8688+151.2093/", -33.8688, 151.2093, None),
    ("+40.75-073.98/", 40.75, -73.98, None),
    ("+40.75-73.98/", 40.75, -73.98, None),  # leading zero dropped by some writers
    ("+4045-07359/", 40.75, -(73 + 59 / 60), None),  # ±DDMM / ±DDDMM
    ("-3351.5+15112.25/", -(33 + 51.5 / 60), 151 + 12.25 / 60, None),  # ±DDMM.MMM
    ("+404530.5-0735921.3+15.5/", 40 + 45 / 60 + 30.5 / 3600,
     -(73 + 59 / 60 + 21.3 / 3600), 15.5),  # ±DDMMSS.SS
    ("+35.6586+139.7454+040.000CRSWGS_84/", 35.6586, 139.7454, 40.0),
])
def test_iso6709_forms(text, lat, lon, alt):
    pt = parse_iso6709(text)
    assert pt is not None
    assert pt.lat == pytest.approx(lat, abs=1e-9) and pt.lon == pytest.approx(lon, abs=1e-9)
    assert pt.alt_m == (None if alt is None else pytest.approx(alt))


@pytest.mark.parametrize("text", ["", "junk", "+95.0+010.0/", "+10.0+190.0/", "+4075-07359/",
                                  "+000.0000+0000.0000/", "+0.0+0.0/", "+123-4567/"])
def test_iso6709_rejects(text):
    assert parse_iso6709(text) is None


def _write_video(path, location: str) -> None:
    av = pytest.importorskip("av")
    c = av.open(str(path), "w")
    c.metadata["location"] = location
    c.metadata["creation_time"] = "2021-06-01T10:00:00Z"
    s = c.add_stream("mpeg4", rate=5)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    for _ in range(3):
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for pkt in s.encode(frame):
            c.mux(pkt)
    for pkt in s.encode():
        c.mux(pkt)
    c.close()


@pytest.mark.parametrize("ext", ["mov", "mp4"])
@pytest.mark.parametrize("lat,lon", [(-33.8688, 151.2093), (40.6892, -74.0445),
                                     (-22.9519, -43.2105)])
def test_video_location_roundtrip(tmp_path, ext, lat, lon):
    p = tmp_path / f"v.{ext}"
    _write_video(p, f"{lat:+08.4f}{lon:+09.4f}+010.000/")
    info = read_container(p)
    assert info is not None and info.gps is not None
    assert info.gps.lat == pytest.approx(lat, abs=1e-4)
    assert info.gps.lon == pytest.approx(lon, abs=1e-4)
    assert info.creation_time_utc == datetime(2021, 6, 1, 10, tzinfo=UTC)
    # the box walker finds the same point on its own (©xyz in a mov, loci in an mp4)
    boxes = read_mp4_location_tags(p)
    raw = boxes.get("©xyz") or boxes.get("loci")
    pt = parse_iso6709(raw)
    assert pt is not None
    assert pt.lat == pytest.approx(lat, abs=1e-4) and pt.lon == pytest.approx(lon, abs=1e-4)


def _box(typ: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + typ + payload


def test_box_walker_reads_quicktime_keys(tmp_path):
    key = b"com.apple.quicktime.location.ISO6709"
    keys = _box(b"keys", struct.pack(">II", 0, 1) + struct.pack(">I", 8 + len(key)) + b"mdta"
                + key)
    value = b"-41.2865+174.7762+020.000/"
    ilst = _box(b"ilst", _box(struct.pack(">I", 1),
                              _box(b"data", struct.pack(">II", 1, 0) + value)))
    hdlr = _box(b"hdlr", b"\x00" * 8 + b"mdta" + b"\x00" * 13)
    moov = _box(b"moov", _box(b"meta", hdlr + keys + ilst))
    p = tmp_path / "k.mov"
    p.write_bytes(_box(b"ftyp", b"qt  \x00\x00\x02\x00qt  ") + _box(b"mdat", b"\x00" * 64)
                  + moov)
    tags = read_mp4_location_tags(p)
    assert tags[key.decode()] == value.decode()


def test_coordinate_pair_parser():
    assert parse_coordinate_pair("Seattle, Washington (47.6766, -122.294), USA") == (
        47.6766, -122.294)
    assert parse_coordinate_pair("(-33.86, 151.21)") == (-33.86, 151.21)
    for text in ["(1, 2)", "see (3.5, 4.0) and more", "(95.123, 10.456)", "(47.6766 -122.294)",
                 "no coordinates", None, "(12.34, 56.78) vs (-12.34, 10.00)"]:
        assert parse_coordinate_pair(text) is None


def test_tag_info_reads_xeno_canto_comment():
    info = tag_info({"comment": "XC1 // Town (-12.0464, -77.0428), Peru // 06:05h, "
                                "2019-01-02 // song"})
    assert info.gps is not None and (info.gps.lat, info.gps.lon) == (-12.0464, -77.0428)
    assert info.recorded_date == "2019-01-02"
    assert info.recorded_local == datetime(2019, 1, 2, 6, 5)


def _klv(key: bytes, typ: bytes, size: int, repeat: int, payload: bytes) -> bytes:
    pad = (-len(payload)) % 4
    return key + typ + bytes([size]) + struct.pack(">H", repeat) + payload + b"\x00" * pad


def _nest(key: bytes, children: bytes) -> bytes:
    return key + b"\x00" + bytes([4]) + struct.pack(">H", len(children) // 4) + children


def _gps5_payload(points, fix=3, gpsp=154, utc=b"191118234514.000") -> bytes:
    scal = (10_000_000, 10_000_000, 1000, 1000, 100)
    data = b"".join(struct.pack(">5i", round(la * 1e7), round(lo * 1e7), round(al * 1000),
                                1500, 1600) for la, lo, al in points)
    strm = (_klv(b"STNM", b"c", 1, 7, b"GPS (x)") + _klv(b"GPSF", b"L", 4, 1,
                                                          struct.pack(">I", fix))
            + _klv(b"GPSU", b"U", 16, 1, utc) + _klv(b"GPSP", b"S", 2, 1,
                                                     struct.pack(">H", gpsp))
            + _klv(b"SCAL", b"l", 4, 5, struct.pack(">5i", *scal))
            + _klv(b"GPS5", b"l", 20, len(points), data))
    devc = _klv(b"DVNM", b"c", 1, 8, b"TestCam\x00") + _nest(b"STRM", strm)
    return _nest(b"DEVC", devc)


def test_gpmf_synthetic_gps5_roundtrip():
    pts = [(-33.8688 + 1e-5 * i, 151.2093 - 1e-5 * i, 12.5 + i) for i in range(10)]
    blob = _gps5_payload(pts)
    tree = parse_klv(blob)
    assert tree[0].key == "DEVC" and tree[0].children[1].key == "STRM"
    found = gps_payloads(blob)
    assert len(found) == 1 and found[0].key == "GPS5" and found[0].device == "TestCam"
    rows = found[0].rows
    np.testing.assert_allclose(rows[:, 0], [p[0] for p in pts], atol=1e-7)
    np.testing.assert_allclose(rows[:, 1], [p[1] for p in pts], atol=1e-7)
    np.testing.assert_allclose(rows[:, 2], [p[2] for p in pts], atol=1e-3)
    assert set(rows[:, 3]) == {3.0} and set(rows[:, 4]) == {1.54}
    track = track_from_payloads([(blob, 0.0, 1.0), (_gps5_payload(pts), 1.0, 1.0)])
    assert len(track) == 20 and track.t_s[-1] == pytest.approx(1.9)
    assert track.time_utc[0] == datetime(2019, 11, 18, 23, 45, 14, tzinfo=UTC)
    s = summarize_track(track)
    assert s is not None and s.fix_mode == 3 and s.fix.dop == pytest.approx(1.54)
    assert s.fix.lat == pytest.approx(np.median([p[0] for p in pts]), abs=1e-7)


def test_gpmf_no_fix_gives_no_position_and_junk_does_not_crash():
    blob = _gps5_payload([(10.0, 20.0, 0.0)] * 5, fix=0)
    track = track_from_payloads([(blob, 0.0, 1.0)])
    assert track is not None and summarize_track(track) is None
    for junk in (b"", b"\x00" * 7, blob[:37], b"DEVC\x00\x04\xff\xff" + b"x" * 40,
                 bytes(range(256)) * 3):
        assert isinstance(gps_payloads(junk), list)


def test_gpmf_gps9_and_typed_struct():
    # GPS9 as HERO11 writes it: TYPE-described struct with per-element SCAL
    vals = (round(47.1 * 1e7), round(-122.3 * 1e7), 55_000, 1000, 1100, 8000, 3_600_000, 180,
            3)
    rec = struct.pack(">lllllllHH", *vals)
    strm = (_klv(b"TYPE", b"c", 1, 9, b"lllllllSS")
            + _klv(b"SCAL", b"l", 4, 9, struct.pack(">9l", 10_000_000, 10_000_000, 1000, 1000,
                                                    100, 1, 1000, 100, 1))
            + _klv(b"GPS9", b"?", len(rec), 2, rec * 2))
    blob = _nest(b"DEVC", _nest(b"STRM", strm))
    (p,) = gps_payloads(blob)
    assert p.key == "GPS9"
    np.testing.assert_allclose(p.rows[0], [47.1, -122.3, 55.0, 3.0, 1.8])
    assert p.utc[0] == datetime(2021, 11, 26, 1, 0, tzinfo=UTC)  # day 8000 of 2000, 3600 s


def test_gpsu_parser():
    assert parse_gpsu("191118234514.000") == datetime(2019, 11, 18, 23, 45, 14, tzinfo=UTC)
    assert parse_gpsu("junk") is None and parse_gpsu("191318234514.000") is None
