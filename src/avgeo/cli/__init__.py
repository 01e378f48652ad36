"""Command-line interface: `avgeo <command>`; one module per command, errors as one line."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback

from avgeo.cli.app import app
from avgeo.errors import AvgeoError

ISSUES_URL = "https://github.com/avgeo/avgeo/issues"

# Each module registers its commands on `app` when imported.
_COMMAND_MODULES = ("evaluate", "inspect_cmd", "locate", "explain", "serve", "train",
                    "train_fusion", "train_sae", "train_reasoner", "sample", "dataset",
                    "extract", "benchmark", "query")


def _register() -> None:
    for name in _COMMAND_MODULES:
        mod = f"avgeo.cli.{name}"
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _register()
    try:
        app(args=args, prog_name="avgeo")
    except AvgeoError as exc:
        if debug:
            traceback.print_exc()
        print(exc.one_line(), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted (hint: re-run; batch jobs resume where they stopped)",
              file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # anything else is a bug in avgeo
        if debug:
            traceback.print_exc()
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        print(f"error: internal error: {msg} (hint: this is a bug; re-run with --debug and "
              f"report it at {ISSUES_URL})", file=sys.stderr)
        sys.exit(70)
