"""The service as users meet it: the map page in a real headless Chromium (Selenium), fully
offline (upload through the page; check the map, chain, console and network log); a 2-hour
video becoming a background job on a real `avgeo serve`; and the upload admission bounds."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from avgeo.serve import app as app_mod
from avgeo.serve.app import Settings, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT_DIR = Path(os.environ.get("AVGEO_SCREENSHOT_DIR", "/tmp"))



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `avgeo serve` (uvicorn, process pool) on a free loopback port."""
    tmp = tmp_path_factory.mktemp("web")
    port = _free_port()
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "avgeo", "serve", "--port", str(port), "--workers", "1",
         "--db", str(tmp / "s.sqlite3")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail("avgeo serve did not start:\n" + (tmp / "serve.log").read_text()[-3000:])
        time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture()
def browser(tmp_path):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian packages chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium", reason="needs the selenium package")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path keeps Selenium Manager from looking for drivers online.
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def _request_urls(drv) -> list[str]:
    urls = []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _upload_and_wait(drv, base: str, path: Path, engines: str, timeout_s: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(f"{base}/?engines={engines}")
    # The country outlines load asynchronously; wait for them before uploading.
    WebDriverWait(drv, 20).until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "#map path.country")) > 100)
    drv.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(drv, timeout_s).until(ec.any_of(
        ec.presence_of_element_located((By.ID, "chain")),
        ec.presence_of_element_located((By.CSS_SELECTOR, "#status .err"))))
    errors = drv.find_elements(By.CSS_SELECTOR, "#status .err")
    assert not errors, errors[0].text


def _check_offline_and_quiet(drv, base: str) -> None:
    severe = [e for e in drv.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not severe, severe
    origin = urlparse(base).netloc
    urls = _request_urls(drv)
    assert any(u.startswith(f"{base}/v1/locate") for u in urls), urls
    # chrome:// (the blank start page), data: and blob: never touch the network.
    network = [u for u in urls if urlparse(u).scheme in ("http", "https", "ws", "wss", "ftp")]
    outside = [u for u in network if urlparse(u).netloc != origin]
    assert not outside, outside


def test_photo_on_map(server, browser, media_dir):
    from selenium.webdriver.common.by import By

    _upload_and_wait(browser, server, media_dir / "lund_01.jpg", "meta", timeout_s=60)
    chain = browser.find_element(By.ID, "chain").text
    assert "Sweden" in chain, chain
    # Leaflet drew the map: the container, the country outlines and the heat cells as SVG.
    assert browser.find_elements(By.CSS_SELECTOR, "#map.leaflet-container svg")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.country")) > 100
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.heat")) >= 1
    assert browser.find_element(By.ID, "legend").is_displayed()
    lat, lon = (float(v) for v in browser.find_element(By.ID, "estimate").text.split(","))
    assert 55 < lat < 56.5 and 12.5 < lon < 14
    browser.save_screenshot(str(SCREENSHOT_DIR / "avgeo_web_photo.png"))
    _check_offline_and_quiet(browser, server)


@pytest.mark.slow
def test_audio_timeline(server, browser, media_dir):
    from selenium.webdriver.common.by import By

    _upload_and_wait(browser, server, media_dir / "seattle_xc563936.mp3", "all",
                     timeout_s=240)
    chain = browser.find_element(By.ID, "chain").text
    assert "United States" in chain, chain
    bars = browser.find_elements(By.CSS_SELECTOR, "#timeline .tl div")
    assert bars, "no atoms timeline for an audio file"
    browser.save_screenshot(str(SCREENSHOT_DIR / "avgeo_web_audio.png"))
    _check_offline_and_quiet(browser, server)


def _long_video(path: Path, duration_s: int) -> None:
    """A tiny 64×64, 1 fps H.264 video; two hours encode in well under a second."""
    import av

    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=1)
        st.width = st.height = 64
        st.pix_fmt = "yuv420p"
        st.options = {"preset": "ultrafast", "g": "600"}
        img = np.zeros((64, 64, 3), np.uint8)
        for i in range(duration_s):
            img[:] = (i * 7) % 256
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


@pytest.mark.parametrize("engines", ["meta", pytest.param("all", marks=pytest.mark.slow)])
def test_two_hour_video_is_a_background_job(server, tmp_path, engines):
    video = tmp_path / "two_hours.mp4"
    _long_video(video, 2 * 3600)
    with open(video, "rb") as fh:
        r = httpx.post(f"{server}/v1/locate", files={"file": ("two_hours.mp4", fh)},
                       data={"engines": engines, "wait": "true"}, timeout=60)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["poll"] == f"/v1/predictions/{body['id']}"
    deadline = time.monotonic() + 300
    while True:
        # The event loop stays free while the worker processes two hours of video.
        t0 = time.perf_counter()
        assert httpx.get(f"{server}/healthz", timeout=5).status_code == 200
        assert time.perf_counter() - t0 < 2.0
        got = httpx.get(f"{server}{body['poll']}", timeout=5)
        assert got.status_code == 200
        status = got.json().get("status", "done" if "lat" in got.json() else None)
        assert status in ("queued", "running", "done", "failed"), got.json()
        if status in ("done", "failed"):
            break
        assert time.monotonic() < deadline, "the background job never finished"
        time.sleep(0.5)
    if status == "done":
        out = got.json()
        assert out["kind"] == "video" and out["duration_s"] == pytest.approx(7200, abs=2)
    else:
        assert got.json()["error"]["message"]


def _gated_run_locate(monkeypatch) -> threading.Event:
    """Holds every job until the returned event is set, then runs the real worker code."""
    gate = threading.Event()
    real = app_mod.run_locate

    def held(*args, **kwargs):
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_mod, "run_locate", held)
    return gate


def test_full_queue_is_429_then_recovers(tmp_path, media_dir, monkeypatch):
    gate = _gated_run_locate(monkeypatch)
    app = create_app(Settings(db_path=str(tmp_path / "q.sqlite3"), pool="thread", workers=1,
                              max_queued=1))
    photo = (media_dir / "lund_01.jpg").read_bytes()

    def post(wait: str):
        return c.post("/v1/locate", files={"file": ("lund_01.jpg", photo)},
                      data={"engines": "meta", "wait": wait})

    with TestClient(app) as c:
        first = post("false")
        assert first.status_code == 202, first.text
        busy = post("true")
        assert busy.status_code == 429, busy.text
        assert busy.headers["retry-after"] and busy.json()["error"]["hint"]
        assert c.get("/healthz").json()["queued"] == 1
        gate.set()
        for _ in range(200):
            if c.get(f"/v1/predictions/{first.json()['id']}").json().get("lat") is not None:
                break
            time.sleep(0.05)
        assert c.get("/healthz").json()["queued"] == 0
        again = post("true")
        assert again.status_code == 200, again.text
        # Every upload's temp copy is gone once its job is done or refused.
        assert not list(Path(app.state.tmpdir).iterdir())


def test_chunked_upload_over_limit_is_413(tmp_path):
    """Without a Content-Length the body is counted as it arrives and cut at the limit:
    the app answers 413 after reading little more than the limit, not the whole body."""
    import asyncio

    app = create_app(Settings(db_path=str(tmp_path / "c.sqlite3"), pool="thread",
                              max_upload_bytes=10_000))
    boundary = "avgeoboundary"
    parts = [(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
              f"filename=\"big.bin\"\r\n\r\n").encode()]
    parts += [b"\0" * 16384] * 200 + [f"\r\n--{boundary}--\r\n".encode()]
    received, sent = [], []

    async def receive():
        i = len(received)
        received.append(i)
        if i >= len(parts):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": parts[i], "more_body": i < len(parts) - 1}

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/locate", "raw_path": b"/v1/locate",
             "root_path": "", "query_string": b"", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
                         (b"transfer-encoding", b"chunked")]}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] ==
                               "http.response.body"))
    assert body["error"]["type"] == "InputTooLargeError"
    assert len(received) < 10, f"read {len(received)} of {len(parts)} body chunks"
