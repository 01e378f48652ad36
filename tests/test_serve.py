"""HTTP service: locate, stored predictions, 4xx for bad input and options, restart, token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from avgeo.serve.app import Settings, create_app


@pytest.fixture()
def client(tmp_path):
    app = create_app(Settings(db_path=str(tmp_path / "s.sqlite3"), pool="thread", workers=2))
    with TestClient(app) as c:
        yield c


def _post(client, path, **form):
    with open(path, "rb") as fh:
        return client.post("/v1/locate", files={"file": (path.name, fh)},
                           data={"engines": "meta", **form})


def test_healthz_and_openapi(client):
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert "/v1/locate" in spec["paths"]


def test_locate_photo_and_fetch_stored(client, media_dir):
    r = _post(client, media_dir / "lund_01.jpg")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"]
    assert {c["level"]: c["code"] for c in body["chain"]}["country"] == "SE"
    again = client.get(f"/v1/predictions/{body['id']}").json()
    assert again["lat"] == body["lat"] and again["id"] == body["id"]
    gj = client.get(f"/v1/predictions/{body['id']}/geojson").json()
    kinds = {f["properties"]["kind"] for f in gj["features"]}
    assert {"cell", "estimate"} <= kinds


@pytest.mark.parametrize(("name", "status"), [
    ("clip.mp4", 415), ("empty.wav", 422), ("truncated_10k.mp3", 422),
    ("bomb_30000x30000.png", 413)])
def test_bad_media_is_4xx(client, bad_dir, name, status):
    r = _post(client, bad_dir / name)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["hint"]


def test_silence_is_fine(client, bad_dir):
    r = _post(client, bad_dir / "silence_1s.wav", engines="all")
    assert r.status_code == 200, r.text


def test_bad_options_are_422(client, media_dir):
    assert _post(client, media_dir / "lund_01.jpg", engines="nosuch").status_code == 422
    assert _post(client, media_dir / "lund_01.jpg", top_k="0").status_code == 422
    assert client.post("/v1/locate", data={"engines": "meta"}).status_code == 422


def test_unknown_id_is_404(client):
    assert client.get("/v1/predictions/nope").status_code == 404


def test_results_survive_restart(tmp_path, media_dir):
    db = str(tmp_path / "s.sqlite3")
    with TestClient(create_app(Settings(db_path=db, pool="thread"))) as c:
        pid = _post(c, media_dir / "arezzo_dscn0010.jpg").json()["id"]
    with TestClient(create_app(Settings(db_path=db, pool="thread"))) as c:
        r = c.get(f"/v1/predictions/{pid}")
        assert r.status_code == 200 and r.json()["id"] == pid


def test_token_required_when_set(tmp_path, media_dir):
    app = create_app(Settings(db_path=str(tmp_path / "t.sqlite3"), pool="thread", token="s3cret"))
    with TestClient(app) as c:
        assert _post(c, media_dir / "lund_01.jpg").status_code == 401
        with open(media_dir / "lund_01.jpg", "rb") as fh:
            r = c.post("/v1/locate", files={"file": ("lund_01.jpg", fh)},
                       data={"engines": "meta"}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200


def test_upload_limit_is_413(tmp_path, media_dir):
    app = create_app(Settings(db_path=str(tmp_path / "u.sqlite3"), pool="thread",
                              max_upload_bytes=10_000))
    with TestClient(app) as c:
        assert _post(c, media_dir / "lund_01.jpg").status_code == 413


def test_index_page_is_offline(client):
    html = client.get("/").text
    assert "/static/leaflet.js" in html
    assert "http://" not in html and "https://" not in html
    assert client.get("/static/countries-110m.json").status_code == 200
