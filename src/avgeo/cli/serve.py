"""`avgeo serve`: the HTTP service (FastAPI + uvicorn), loopback by default."""

from __future__ import annotations

import os

import typer

from avgeo.cli.app import app
from avgeo.errors import ConfigError


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(2, "--workers", min=1, help="Locate worker processes."),
    db: str = typer.Option("", "--db", help="SQLite file for results (default under ~/.local)."),
    token: str = typer.Option("", "--token", envvar="AVGEO_TOKEN",
                              help="API token required on /v1/ (needed off loopback)."),
    max_upload_mb: int = typer.Option(512, "--max-upload-mb", min=1),
) -> None:
    """Serve POST /v1/locate, GET /v1/predictions/{id}, /healthz and the map page at /."""
    import uvicorn

    from avgeo.serve.app import Settings, create_app

    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        raise ConfigError(f"binding to {host} without an API token",
                          "pass --token (or AVGEO_TOKEN) when serving beyond loopback")
    settings = Settings(workers=workers, token=token or None,
                        max_upload_bytes=max_upload_mb * 1024 * 1024)
    if db:
        settings.db_path = db
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
