"""FastAPI application: upload → locate (in a bounded worker pool) → stored Prediction."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avgeo import __version__
from avgeo.errors import AvgeoError
from avgeo.serve.store import Store
from avgeo.serve.worker import init_worker, run_locate, warm_up

#: Slack over the upload limit for the multipart envelope (boundaries, form fields).
MULTIPART_SLACK_BYTES = 65536


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


@dataclass
class Settings:
    db_path: str = field(default_factory=lambda: os.environ.get(
        "AVGEO_DB", str(Path.home() / ".local/share/avgeo/service.sqlite3")))
    max_upload_bytes: int = 512 * 1024 * 1024
    workers: int = 2
    #: Media longer than this is processed as a background job (202 + poll).
    sync_max_duration_s: float = 120.0
    #: Jobs accepted and not finished (waiting for or in a worker); 429 beyond.
    max_queued: int = field(default_factory=lambda: _env_int("AVGEO_MAX_QUEUED", 256))
    #: Disk held by the uploads of those jobs; 429 beyond.
    max_queued_bytes: int = field(default_factory=lambda: _env_int(
        "AVGEO_MAX_QUEUED_BYTES", 4 << 30))
    #: Uploads being received at once, by count and by declared size; 429 beyond. Bodies
    #: are spooled to disk while parsed, so this bounds memory and temp files in flight.
    max_receiving: int = 256
    max_receiving_bytes: int = field(default_factory=lambda: _env_int(
        "AVGEO_MAX_RECEIVING_BYTES", 2 << 30))
    token: str | None = None
    #: "process" for real use; "thread" keeps tests light (same code path otherwise).
    pool: str = "process"


def _error(status: int, type_: str, message: str, hint: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, headers=headers, content={
        "error": {"type": type_, "message": message, "hint": hint}})


def _busy(why: str) -> JSONResponse:
    return _error(429, "Busy", why, "retry later", headers={"Retry-After": "5"})


def _too_large(limit: int) -> JSONResponse:
    return _error(413, "InputTooLargeError", f"upload exceeds {limit} bytes",
                  "send a smaller file or raise the server's limit")


class _Admission:
    """Counters shared by the upload guard and the endpoint (all on the event loop)."""

    def __init__(self) -> None:
        self.queued = 0
        self.queued_bytes = 0
        self.receiving = 0
        self.receiving_bytes = 0


class UploadGuard:
    """Pure ASGI middleware in front of POST /v1/locate: refuses with 429 before reading
    the body when the queue or the uploads in flight are at their bounds, and stops a body
    at the size limit even without (or with a lying) Content-Length."""

    def __init__(self, app: ASGIApp, settings: Settings, adm: _Admission) -> None:
        self.app, self.settings, self.adm = app, settings, adm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == "/v1/locate"):
            await self.app(scope, receive, send)
            return
        s, adm = self.settings, self.adm
        limit = s.max_upload_bytes + MULTIPART_SLACK_BYTES
        declared = dict(scope["headers"]).get(b"content-length", b"")
        size = int(declared) if declared.isdigit() else None
        if size is not None and size > limit:
            # Refuse before reading the body: the multipart parser would spool it all.
            await _too_large(s.max_upload_bytes)(scope, receive, send)
            return
        charge = size if size is not None else limit
        if adm.queued >= s.max_queued:
            await _busy("too many files queued")(scope, receive, send)
            return
        if adm.receiving >= s.max_receiving or (
                adm.receiving and adm.receiving_bytes + charge > s.max_receiving_bytes):
            await _busy("too many uploads in flight")(scope, receive, send)
            return
        adm.receiving += 1
        adm.receiving_bytes += charge
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    # FastAPI re-raises HTTPExceptions from body parsing; see _http_error.
                    raise StarletteHTTPException(413, "upload too large")
            return msg

        try:
            await self.app(scope, counted_receive, send)
        finally:
            adm.receiving -= 1
            adm.receiving_bytes -= charge


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store = Store(settings.db_path)

    def new_pool() -> Any:
        if settings.pool == "thread":
            return ThreadPoolExecutor(settings.workers)
        return ProcessPoolExecutor(settings.workers, mp_context=get_context("spawn"),
                                   initializer=init_worker)

    pools = [new_pool()]
    adm = _Admission()
    # Background jobs: the loop keeps only weak references to tasks, so we hold them.
    tasks: set[asyncio.Task] = set()
    tmpdir = Path(tempfile.mkdtemp(prefix="avgeo-serve-"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if settings.pool == "process":
            # Start every worker now and let it load its tables, without delaying startup:
            # the first uploads would otherwise pay seconds of imports each.
            loop = asyncio.get_running_loop()
            for _ in range(settings.workers):
                loop.run_in_executor(pools[0], warm_up)
        yield
        pools[0].shutdown(wait=False, cancel_futures=True)
        store.close()
        shutil.rmtree(tmpdir, ignore_errors=True)

    app = FastAPI(title="avgeo", version=__version__, lifespan=lifespan,
                  description="Where on Earth was this photo, sound or video captured, and why.")
    app.state.store, app.state.settings, app.state.tmpdir = store, settings, tmpdir
    app.add_middleware(UploadGuard, settings=settings, adm=adm)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(req: Request, exc: StarletteHTTPException):
        if exc.status_code == 413:
            return _too_large(settings.max_upload_bytes)
        return await http_exception_handler(req, exc)

    @app.exception_handler(AvgeoError)
    async def _avgeo_error(_req: Request, exc: AvgeoError) -> JSONResponse:
        return _error(exc.http_status, type(exc).__name__, exc.message, exc.hint)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        # Added last, so it runs first: no body is read before the token is checked.
        if settings.token and request.url.path.startswith("/v1/"):
            got = request.headers.get("authorization", "")
            if not secrets.compare_digest(got, f"Bearer {settings.token}"):
                return _error(401, "Unauthorized", "missing or wrong API token",
                              "send 'Authorization: Bearer <token>'")
        return await call_next(request)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "queued": adm.queued,
                "receiving": adm.receiving}

    async def _run(pid: str, path: Path, size: int, filename: str | None,
                   options: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        store.set_running(pid)
        pool = pools[0]
        try:
            out = await loop.run_in_executor(pool, run_locate, str(path), filename, options)
        except BrokenProcessPool:
            # A worker died (killed for memory, a crash in a native decoder): every job in
            # that pool is lost, so start a fresh pool for the next ones.
            if pools[0] is pool:
                pools[0] = new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            out = {"ok": False, "status": 500, "type": "WorkerCrashed",
                   "message": "the worker processing this file stopped unexpectedly",
                   "hint": "retry; if it happens again with this file, report it"}
        except Exception as exc:
            out = {"ok": False, "status": 500, "type": "InternalError",
                   "message": f"{type(exc).__name__}: {exc}"[:500],
                   "hint": "this is a bug in avgeo; please report it"}
        finally:
            adm.queued -= 1
            adm.queued_bytes -= size
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
        if adm.queued >= settings.max_queued:  # before copying the upload
            return _busy("too many files queued")
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
            return _too_large(settings.max_upload_bytes)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # Re-checked here: many uploads may have passed the guard while the queue filled.
        if (adm.queued >= settings.max_queued
                or adm.queued_bytes + size > settings.max_queued_bytes):
            tmp.unlink(missing_ok=True)
            return _busy("too many files queued")
        options = {"engines": engine_list, "use_metadata": use_metadata, "top_k": top_k,
                   "explain": explain}
        filename = file.filename
        pid = store.create(filename, options)
        adm.queued += 1
        adm.queued_bytes += size
        # A task, so that a client hanging up on a synchronous request does not cancel
        # the job half-way (its result is still stored under its id).
        task = asyncio.get_running_loop().create_task(_run(pid, tmp, size, filename, options))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        long_media = (media.duration_s or 0.0) > settings.sync_max_duration_s
        if long_media or not wait:
            return JSONResponse(status_code=202, content={
                "id": pid, "status": "queued", "poll": f"/v1/predictions/{pid}"})
        out = await asyncio.shield(task)
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
