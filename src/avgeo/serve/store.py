"""SQLite (WAL) store for predictions and jobs, so results survive a restart."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,          -- queued | running | done | failed
    filename TEXT,
    created_s REAL NOT NULL,
    finished_s REAL,
    options_json TEXT,
    result_json TEXT,
    error_json TEXT
);
"""


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        # Jobs that were queued or running when the service stopped will never finish.
        self._db.execute(
            "UPDATE predictions SET status='failed', error_json=? WHERE status IN "
            "('queued','running')",
            (json.dumps({"type": "Interrupted",
                         "message": "the service restarted before this job finished",
                         "hint": "upload the file again"}),))

    def create(self, filename: str | None, options: dict[str, Any]) -> str:
        pid = uuid.uuid4().hex
        with self._lock:
            self._db.execute(
                "INSERT INTO predictions (id, status, filename, created_s, options_json) "
                "VALUES (?, 'queued', ?, ?, ?)", (pid, filename, time.time(), json.dumps(options)))
        return pid

    def set_running(self, pid: str) -> None:
        with self._lock:
            self._db.execute("UPDATE predictions SET status='running' WHERE id=?", (pid,))

    def finish(self, pid: str, result: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE predictions SET status='done', finished_s=?, result_json=? WHERE id=?",
                (time.time(), json.dumps(result), pid))

    def fail(self, pid: str, error: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE predictions SET status='failed', finished_s=?, error_json=? WHERE id=?",
                (time.time(), json.dumps(error), pid))

    def get(self, pid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, status, filename, created_s, finished_s, result_json, error_json "
                "FROM predictions WHERE id=?", (pid,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "status": row[1], "filename": row[2], "created_s": row[3],
                "finished_s": row[4],
                "result": json.loads(row[5]) if row[5] else None,
                "error": json.loads(row[6]) if row[6] else None}

    def close(self) -> None:
        with self._lock:
            self._db.close()
