"""FastAPI application: upload → locate (in a bounded worker pool) → stored Prediction."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from avgeo import __version__
from avgeo.errors import AvgeoError
from avgeo.serve.store import Store
from avgeo.serve.worker import init_worker, run_locate


@dataclass
class Settings:
    db_path: str = field(default_factory=lambda: os.environ.get(
        "AVGEO_DB", str(Path.home() / ".local/share/avgeo/service.sqlite3")))
    max_upload_bytes: int = 512 * 1024 * 1024
    workers: int = 2
    #: Media longer than this is processed as a background job (202 + poll).
    sync_max_duration_s: float = 120.0
    max_queued: int = 1000
    token: str | None = None
    #: "process" for real use; "thread" keeps tests light (same code path otherwise).
    pool: str = "process"


def _error(status: int, type_: str, message: str, hint: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={
        "error": {"type": type_, "message": message, "hint": hint}})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store = Store(settings.db_path)
    if settings.pool == "thread":
        pool: Any = ThreadPoolExecutor(settings.workers)
    else:
        pool = ProcessPoolExecutor(settings.workers, mp_context=get_context("spawn"),
                                   initializer=init_worker)
    state = {"queued": 0}
    tmpdir = Path(tempfile.mkdtemp(prefix="avgeo-serve-"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.shutdown(wait=False, cancel_futures=True)
        store.close()
        shutil.rmtree(tmpdir, ignore_errors=True)

    app = FastAPI(title="avgeo", version=__version__, lifespan=lifespan,
                  description="Where on Earth was this photo, sound or video captured, and why.")
    app.state.store, app.state.settings = store, settings

    @app.exception_handler(AvgeoError)
    async def _avgeo_error(_req: Request, exc: AvgeoError) -> JSONResponse:
        return _error(exc.http_status, type(exc).__name__, exc.message, exc.hint)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 65536:
            # Refuse before reading the body: the multipart parser would spool it all.
            return _error(413, "InputTooLargeError",
                          f"upload exceeds {settings.max_upload_bytes} bytes",
                          "send a smaller file or raise the server's limit")
        if settings.token and request.url.path.startswith("/v1/"):
            got = request.headers.get("authorization", "")
            if not secrets.compare_digest(got, f"Bearer {settings.token}"):
                return _error(401, "Unauthorized", "missing or wrong API token",
                              "send 'Authorization: Bearer <token>'")
        return await call_next(request)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "queued": state["queued"]}

    async def _run(pid: str, path: Path, filename: str | None, options: dict[str, Any]):
        loop = asyncio.get_running_loop()
        store.set_running(pid)
        try:
            out = await loop.run_in_executor(pool, run_locate, str(path), filename, options)
        finally:
            state["queued"] -= 1
            path.unlink(missing_ok=True)
        if out["ok"]:
            result = out["prediction"]
            result["id"] = pid
            store.finish(pid, result)
        else:
            store.fail(pid, {k: out[k] for k in ("status", "type", "message", "hint")})
        return out

    @app.post("/v1/locate")
    async def locate_endpoint(
        file: UploadFile = File(..., description="photo, audio or video"),
        engines: str = Form("all"),
        use_metadata: bool = Form(True),
        top_k: int = Form(5, ge=1, le=50),
        explain: bool = Form(True),
        wait: bool = Form(True, description="wait for the result (short media only)"),
    ):
        from avgeo.media import open_media
        from avgeo.pipeline import parse_engines

        engine_list = parse_engines(engines)  # ConfigError → 422
        if state["queued"] >= settings.max_queued:
            return _error(429, "Busy", "too many files queued", "retry later")
        suffix = Path(file.filename or "").suffix[:16]
        fd, tmp_name = tempfile.mkstemp(suffix=suffix, dir=tmpdir)
        tmp = Path(tmp_name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                while chunk := await file.read(1 << 20):
                    size += len(chunk)
                    if size > settings.max_upload_bytes:
                        raise HTTPException(413, "upload too large")
                    fh.write(chunk)
            if size == 0:
                return _error(422, "EmptyMediaError", "the upload is empty",
                              "send a file with content")
            # Reject unreadable media before queueing (415/413/422 from the error class).
            media = await asyncio.get_running_loop().run_in_executor(None, open_media, tmp)
            validate = getattr(media, "validate", None)
            if callable(validate):
                await asyncio.get_running_loop().run_in_executor(None, validate)
        except HTTPException:
            tmp.unlink(missing_ok=True)
            return _error(413, "InputTooLargeError",
                          f"upload exceeds {settings.max_upload_bytes} bytes",
                          "send a smaller file or raise the server's limit")
        except AvgeoError:
            tmp.unlink(missing_ok=True)
            raise
        options = {"engines": engine_list, "use_metadata": use_metadata, "top_k": top_k,
                   "explain": explain}
        pid = store.create(file.filename, options)
        state["queued"] += 1
        long_media = (media.duration_s or 0.0) > settings.sync_max_duration_s
        if long_media or not wait:
            asyncio.get_running_loop().create_task(_run(pid, tmp, file.filename, options))
            return JSONResponse(status_code=202, content={
                "id": pid, "status": "queued", "poll": f"/v1/predictions/{pid}"})
        out = await _run(pid, tmp, file.filename, options)
        if not out["ok"]:
            return _error(out["status"], out["type"], out["message"], out["hint"])
        return store.get(pid)["result"]

    @app.get("/v1/predictions/{pid}")
    async def get_prediction(pid: str):
        row = store.get(pid)
        if row is None:
            return _error(404, "NotFound", f"no prediction {pid}", "check the id")
        if row["status"] == "done":
            return row["result"]
        if row["status"] == "failed":
            err = row["error"] or {}
            return JSONResponse(status_code=200, content={
                "id": pid, "status": "failed", "error": err})
        return {"id": pid, "status": row["status"]}

    @app.get("/v1/predictions/{pid}/geojson")
    async def prediction_geojson(pid: str):
        """The posterior heat map, top regions and point estimate as GeoJSON."""
        from avgeo.serve.geojson import prediction_to_geojson

        row = store.get(pid)
        if row is None or row["status"] != "done":
            return _error(404, "NotFound", f"no finished prediction {pid}", "check the id")
        return prediction_to_geojson(row["result"])

    @app.get("/", response_class=HTMLResponse)
    async def index():
        page = resources.files("avgeo.serve").joinpath("static/index.html")
        if not page.is_file():
            return HTMLResponse("<h1>avgeo</h1><p>POST a file to /v1/locate</p>")
        return HTMLResponse(page.read_text(encoding="utf-8"))

    @app.get("/static/{name}")
    async def static(name: str):
        base = resources.files("avgeo.serve").joinpath("static")
        target = base.joinpath(name)
        if "/" in name or ".." in name or not target.is_file():
            return _error(404, "NotFound", f"no static file {name}", "check the name")
        return FileResponse(str(target))

    return app
