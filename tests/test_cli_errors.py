"""The CLI's error contract: one line, a hint, non-zero exit; bugs exit 70."""

from __future__ import annotations

import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "-m", "avgeo", *args], capture_output=True, text=True)


def test_help_works():
    r = _run("--help")
    assert r.returncode == 0
    assert "avgeo" in r.stdout


def test_avgeo_error_is_one_line(monkeypatch, capsys):
    import pytest

    from avgeo import cli
    from avgeo.cli.app import app
    from avgeo.errors import CorruptMediaError

    @app.command("_boom_user")
    def _boom_user():
        raise CorruptMediaError("file x.mp4 is truncated")

    @app.command("_boom_bug")
    def _boom_bug():
        raise ZeroDivisionError("division by zero")

    with pytest.raises(SystemExit) as ei:
        cli.main(["_boom_user"])
    err = capsys.readouterr().err
    assert ei.value.code == 3
    assert err.count("\n") == 1
    assert err.startswith("error: file x.mp4 is truncated (hint: ")

    with pytest.raises(SystemExit) as ei:
        cli.main(["_boom_bug"])
    err = capsys.readouterr().err
    assert ei.value.code == 70
    assert err.startswith("error: internal error: ZeroDivisionError")
    assert "Traceback" not in err
    assert err.count("\n") == 1
