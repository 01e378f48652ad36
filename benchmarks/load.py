"""Load test of the real service: starts `avgeo serve` (uvicorn + process pool) on loopback,
fires concurrent uploads, and reports status codes, throughput, latency percentiles, peak
RSS of the server's process tree, peak temp files, and that every id can be fetched again.

    python benchmarks/load.py [--n 200] [--concurrency 200] [--engines meta] [--workers 2]
                              [--n-all 0] [--n-big 0 --big-mb 32] [--max-queued N]
                              [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def gps_jpeg(lat: float = 55.698, lon: float = 13.195, size: int = 320) -> bytes:
    """A small JPEG with real content and an EXIF GPS block, made here (nothing to fetch)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    img = np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)

    def dms(v: float) -> tuple[float, float, float]:
        v = abs(v)
        d, m = int(v), int((v - int(v)) * 60)
        return (float(d), float(m), round((v - d - m / 60) * 3600, 4))

    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W",
                4: dms(lon)})
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=85, exif=exif)
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss_kb(root: int) -> int:
    """Sum of resident memory of `root` and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        pid, ppid = int(d), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * PAGE_KB
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def _count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


class Monitor(threading.Thread):
    """Samples the server tree's RSS and the number of temp files every 50 ms."""

    def __init__(self, pid: int, tmp_root: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.tmp_root = pid, tmp_root
        self.peak_rss_kb = self.peak_tmp_files = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_rss_kb = max(self.peak_rss_kb, _tree_rss_kb(self.pid))
            self.peak_tmp_files = max(self.peak_tmp_files, _count_files(self.tmp_root))
            self._halt.wait(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join()


async def _one(client: httpx.AsyncClient, data: bytes, engines: str, sem: asyncio.Semaphore):
    async with sem:
        t0 = time.perf_counter()
        try:
            r = await client.post("/v1/locate", files={"file": ("up.jpg", data, "image/jpeg")},
                                  data={"engines": engines})
        except httpx.HTTPError as exc:
            return f"exc:{type(exc).__name__}", time.perf_counter() - t0, None
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") \
            else {}
        return r.status_code, time.perf_counter() - t0, body.get("id")


async def _round(base: str, data: bytes, n: int, concurrency: int, engines: str,
                 label: str) -> dict:
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_one(client, data, engines, sem) for _ in range(n)))
        wall_s = time.perf_counter() - t0
        ids = [pid for code, _, pid in results if code in (200, 202) and pid]
        # Every accepted upload must be retrievable (202s are polled until they finish).
        missing, unfinished = 0, 0
        for pid in ids:
            for _ in range(600):
                g = await client.get(f"/v1/predictions/{pid}")
                if g.status_code != 200:
                    missing += 1
                    break
                if g.json().get("status") not in ("queued", "running"):
                    break
                await asyncio.sleep(0.5)
            else:
                unfinished += 1
    codes = Counter(str(code) for code, _, _ in results)
    ok_lat = np.array([dt for code, dt, _ in results if code == 200])
    pct = (lambda q: round(float(np.percentile(ok_lat, q)), 3)) if ok_lat.size else \
        (lambda q: None)
    return {"round": label, "engines": engines, "upload_bytes": len(data), "n": n,
            "concurrency": concurrency, "codes": dict(codes),
            "wall_s": round(wall_s, 2), "throughput_rps": round(n / wall_s, 1),
            "ok_rps": round(int(codes.get("200", 0)) / wall_s, 1),
            "latency_s": {"p50": pct(50), "p95": pct(95), "p99": pct(99),
                          "max": round(float(ok_lat.max()), 3) if ok_lat.size else None},
            "accepted_ids": len(ids), "ids_missing": missing, "ids_unfinished": unfinished}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="uploads in the main round")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--engines", default="meta")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-all", type=int, default=0,
                    help="uploads in a second round with the default engines (0: skip)")
    ap.add_argument("--n-big", type=int, default=0,
                    help="uploads in a round of large non-media bodies (memory/temp-file bound)")
    ap.add_argument("--big-mb", type=int, default=32)
    ap.add_argument("--max-queued", type=int, default=0,
                    help="server queue bound (0: the server's default)")
    ap.add_argument("--json", default="", help="also write the report here")
    args = ap.parse_args()
    print("$ " + shlex.join([sys.executable, *sys.argv]), flush=True)

    work = Path(tempfile.mkdtemp(prefix="avgeo-load-"))
    tmp_root = work / "tmp"
    tmp_root.mkdir()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "avgeo", "serve", "--port", str(port),
           "--workers", str(args.workers), "--db", str(work / "s.sqlite3")]
    env = {**os.environ, "TMPDIR": str(tmp_root), "PYTHONUNBUFFERED": "1"}
    if args.max_queued:
        env["AVGEO_MAX_QUEUED"] = str(args.max_queued)
    print("server: " + shlex.join(cmd), flush=True)
    log = open(work / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    report: dict = {"command": shlex.join([sys.executable, *sys.argv]), "workers": args.workers,
                    "cpus": os.cpu_count()}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("server did not start:\n" + (work / "serve.log").read_text())
            time.sleep(0.2)
        data = gps_jpeg()
        report["upload_bytes"] = len(data)
        # Warm the workers (imports, tables) so the round measures steady state.
        for _ in range(args.workers):
            httpx.post(f"{base}/v1/locate", files={"file": ("w.jpg", data)},
                       data={"engines": args.engines}, timeout=300).raise_for_status()
        report["idle_rss_mb"] = round(_tree_rss_kb(proc.pid) / 1024, 1)
        rounds = [("gps-jpeg", data, args.n, args.engines)]
        if args.n_all:
            rounds.append(("gps-jpeg-default-engines", data, args.n_all, "all"))
        if args.n_big:
            # Random bytes: refused as unsupported media (415) after being received in full.
            big = np.random.default_rng(1).bytes(args.big_mb << 20)
            rounds.append((f"{args.big_mb}MB-garbage", big, args.n_big, args.engines))
        report["rounds"] = []
        for label, body, n, engines in rounds:
            mon = Monitor(proc.pid, tmp_root)
            mon.start()
            res = asyncio.run(_round(base, body, n, args.concurrency, engines, label))
            mon.stop()
            res["peak_rss_mb"] = round(mon.peak_rss_kb / 1024, 1)
            res["peak_tmp_files"] = mon.peak_tmp_files
            res["tmp_files_after"] = _count_files(tmp_root)
            report["rounds"].append(res)
            print(json.dumps(res), flush=True)
        report["server_alive"] = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    # "exc:*" codes are connections the server closed: expected when it refuses a large body
    # early (429/413 before reading it); a dead server shows up as server_alive false.
    bad = [r for r in report["rounds"]
           if any(c.startswith("5") for c in r["codes"]) or r["ids_missing"]
           or r["ids_unfinished"] or r["tmp_files_after"]]
    return 1 if bad or not report["server_alive"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
