"""Work done in the service's worker processes: one file → a Prediction dict or an error."""

from __future__ import annotations

import os
from typing import Any


def init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def warm_up() -> bool:
    """Load what the first request would otherwise load (imports, grid, priors, tables) by
    locating a tiny generated photo. Failures are left for the real requests to report."""
    import tempfile

    try:
        import numpy as np
        from PIL import Image

        from avgeo.pipeline import locate

        with tempfile.TemporaryDirectory(prefix="avgeo-warm-") as tmp:
            path = os.path.join(tmp, "warm.png")
            Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(path)
            locate(path, engines=["meta"], explain=True)
    except Exception:
        return False
    return True


def run_locate(path: str, filename: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from avgeo.errors import AvgeoError
    from avgeo.pipeline import locate

    try:
        pred = locate(path, engines=options.get("engines"),
                      use_metadata=options.get("use_metadata", True),
                      top_k=options.get("top_k", 5), explain=options.get("explain", True),
                      filename=filename)
    except AvgeoError as exc:
        return {"ok": False, "status": exc.http_status, "type": type(exc).__name__,
                "message": exc.message, "hint": exc.hint}
    except Exception as exc:  # a bug: report it as such, keep the worker alive
        return {"ok": False, "status": 500, "type": "InternalError",
                "message": f"{type(exc).__name__}: {exc}"[:500],
                "hint": "this is a bug in avgeo; please report it"}
    return {"ok": True, "prediction": pred.model_dump(mode="json")}
