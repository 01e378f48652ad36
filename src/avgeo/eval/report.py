"""Write an evaluation report folder: metrics.json, report.md and plots (error CDF, error map).

Plots use matplotlib's Agg backend (no display needed). The map draws country outlines from
GeoJSON files under `avgeo/assets/geo/` when that asset is installed, else a lat/lon graticule.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from avgeo.errors import ConfigError
from avgeo.eval.metrics import THRESHOLD_NAMES, EvalResult, threshold_key

ASSET_GEO_DIR = Path(__file__).resolve().parents[1] / "assets" / "geo"
# Plotting a million points is slow and unreadable; a fixed-seed sample keeps the picture.
MAP_MAX_POINTS = 50_000
CDF_MAX_POINTS = 4_000


def write_report(out_dir: str | Path, result: EvalResult, error_km: np.ndarray,
                 true_lat: np.ndarray, true_lon: np.ndarray, command: str) -> dict[str, Path]:
    """Write the report files into `out_dir` (created if needed); returns name → path."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out}: {exc.strerror or exc}",
                          hint="pass a writable --out folder") from exc
    if not out.is_dir():
        raise ConfigError(f"--out {out} is not a folder", hint="pass a folder path")
    paths = {"metrics": out / "metrics.json", "report": out / "report.md",
             "cdf": out / "error_cdf.png", "map": out / "error_map.png"}
    payload = {"command": command, **result.to_dict()}
    paths["metrics"].write_text(json.dumps(jsonable(payload), indent=2) + "\n")
    plot_error_cdf(error_km, result.distance.acc, paths["cdf"])
    outline_note = plot_error_map(true_lat, true_lon, error_km, paths["map"])
    paths["report"].write_text(render_markdown(result, command, paths, outline_note))
    return paths


def jsonable(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to null (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt_km(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:,.2f}"


def render_markdown(result: EvalResult, command: str, paths: dict[str, Path],
                    outline_note: str = "") -> str:
    d = result.distance
    lines = ["# avgeo evaluation report", "", "```", command, "```", "",
             f"{d.n} predictions; distances are great-circle on a sphere of radius "
             f"{d.radius_km} km.", "", "| metric | value |", "|---|---|"]
    for t, acc in d.acc.items():
        name = THRESHOLD_NAMES.get(t, "")
        label = f"acc@{threshold_key(t)} km" + (f" ({name})" if name else "")
        lines.append(f"| {label} | {100 * acc:.2f} % ({d.count[t]}/{d.n}) |")
    lines += [f"| median error | {_fmt_km(d.median_km)} km |",
              f"| mean error | {_fmt_km(d.mean_km)} km |",
              f"| mean GeoScore | {d.geoscore_mean:.2f} |",
              f"| median GeoScore | {d.geoscore_median:.2f} |"]
    if result.hierarchical is not None:
        for level, acc in result.hierarchical.acc.items():
            lines.append(f"| {level} accuracy | {100 * acc:.2f} % "
                         f"(n={result.hierarchical.n[level]}) |")
    if result.rva is not None:
        for a, r in result.rva.recall_at.items():
            lines.append(f"| recall within {a:g} km² | {100 * r:.2f} % |")
        lines.append(f"| RvA area under log-area curve | {result.rva.auc_log_area:.4f} |")
    if result.coverage is not None:
        c = result.coverage
        for nom, emp in zip(c.nominal, c.empirical, strict=True):
            lines.append(f"| coverage of {100 * nom:g} % regions | {100 * emp:.2f} % |")
    if result.nll_nats is not None:
        lines.append(f"| NLL on S² | {result.nll_nats:.4f} nats/sr |")
    lines += ["", "## Plots", "",
              f"![error CDF]({paths['cdf'].name})", "",
              f"![error map]({paths['map'].name})", ""]
    if outline_note:
        lines += [outline_note, ""]
    if result.inputs:
        lines += ["## Inputs", ""]
        lines += [f"- {k}: `{v}`" for k, v in result.inputs.items()]
        lines.append("")
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_error_cdf(error_km: np.ndarray, acc: dict[float, float], path: Path) -> None:
    """Empirical CDF of the error on a log-km axis, with a line at each threshold."""
    plt = _pyplot()
    d = np.sort(np.asarray(error_km, dtype=np.float64))
    n = d.size
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    if n:
        step = max(1, n // CDF_MAX_POINTS)
        idx = np.unique(np.r_[np.arange(0, n, step), n - 1])
        floor_km = 0.01
        ax.step(np.maximum(d[idx], floor_km), (idx + 1) / n, where="post", color="C0",
                label="predictions")
        ax.set_xlim(floor_km if d[0] < 0.1 else 0.1, 2.1e4)
    ax.set_xscale("log")
    for t, a in acc.items():
        ax.axvline(t, color="0.5", ls="--", lw=0.8)
        ax.text(t, 0.02, f" {threshold_key(t)} km\n {100 * a:.1f} %", fontsize=7, color="0.3")
    ax.set_ylim(0, 1)
    ax.set_xlabel("great-circle error (km, log scale)")
    ax.set_ylabel("fraction of predictions ≤ error")
    ax.set_title(f"Error CDF (n={n})")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_outlines(geo_dir: Path = ASSET_GEO_DIR) -> list[np.ndarray]:
    """Polygon rings (k, 2) as lon/lat from the geo assets; [] when none can be read.

    Reads `*.npz` files holding WKB polygons (`wkb` bytes + `offsets`, as the country asset
    stores them) and GeoJSON (`*.geojson`, `*.json`, optionally gzipped). A missing or
    unreadable asset only costs the outlines, never the report.
    """
    if not geo_dir.is_dir():
        return []
    rings: list[np.ndarray] = []
    for f in sorted(geo_dir.glob("*.npz")):
        rings.extend(_npz_rings(f))
    files = sorted(geo_dir.glob("*.geojson")) + sorted(geo_dir.glob("*.geojson.gz")) + \
        sorted(geo_dir.glob("*.json")) + sorted(geo_dir.glob("*.json.gz"))
    for f in files:
        try:
            raw = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
            doc = json.loads(raw)
        except (OSError, ValueError):
            continue
        rings.extend(_rings(doc))
    return rings


def _npz_rings(path: Path) -> list[np.ndarray]:
    try:
        import shapely

        with np.load(path, allow_pickle=False) as z:
            if "wkb" not in z.files or "offsets" not in z.files:
                return []
            blob, off = z["wkb"].tobytes(), z["offsets"]
        geoms = shapely.from_wkb([blob[off[i]:off[i + 1]] for i in range(len(off) - 1)])
        # One GeoJSON-like mapping per geometry lets polygons and multipolygons share _rings.
        return [r for g in geoms if g is not None for r in _rings(shapely.geometry.mapping(g))]
    except Exception:  # any damage in an optional asset: fall back to the graticule
        return []


def _rings(doc: Any) -> list[np.ndarray]:
    if not isinstance(doc, dict):
        return []
    kind = doc.get("type")
    if kind == "FeatureCollection":
        return [r for feat in doc.get("features", []) for r in _rings(feat)]
    if kind == "Feature":
        return _rings(doc.get("geometry") or {})
    if kind == "GeometryCollection":
        return [r for g in doc.get("geometries", []) for r in _rings(g)]
    coords = doc.get("coordinates")
    polys = {"Polygon": [coords], "MultiPolygon": coords}.get(kind)
    if not polys:
        return []
    out = []
    for poly in polys:
        for ring in poly or []:
            arr = np.asarray(ring, dtype=np.float64)
            if arr.ndim == 2 and arr.shape[0] >= 2 and arr.shape[1] >= 2:
                out.append(arr[:, :2])
    return out


def plot_error_map(true_lat: np.ndarray, true_lon: np.ndarray, error_km: np.ndarray,
                   path: Path) -> str:
    """World map of the true points coloured by log10 error; returns a note on the outlines."""
    plt = _pyplot()
    lat = np.asarray(true_lat, dtype=np.float64)
    lon = np.asarray(true_lon, dtype=np.float64)
    err = np.asarray(error_km, dtype=np.float64)
    note = ""
    if lat.size > MAP_MAX_POINTS:
        pick = np.random.default_rng(0).choice(lat.size, MAP_MAX_POINTS, replace=False)
        lat, lon, err = lat[pick], lon[pick], err[pick]
        note = f"The map shows a random {MAP_MAX_POINTS} of the points. "
    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=120)
    rings = load_outlines()
    if rings:
        from matplotlib.collections import LineCollection

        # One collection instead of a Line2D per ring: ~1,600 rings draw in a fraction.
        ax.add_collection(LineCollection(rings, colors="0.55", linewidths=0.4, zorder=1))
        note += f"Country outlines from {ASSET_GEO_DIR.name}/ assets."
    else:
        note += "No outline asset installed; the map shows a 30° graticule only."
    for g in range(-180, 181, 30):
        ax.axvline(g, color="0.85", lw=0.5, zorder=0)
    for g in range(-90, 91, 30):
        ax.axhline(g, color="0.85", lw=0.5, zorder=0)
    if lat.size:
        order = np.argsort(-err)  # small errors drawn last so good regions stay visible
        sc = ax.scatter(lon[order], lat[order], c=np.log10(np.maximum(err[order], 0.01)),
                        s=6 if lat.size > 5000 else 14, cmap="viridis_r", vmin=-1,
                        vmax=math.log10(20038), linewidths=0, zorder=2)
        cb = fig.colorbar(sc, ax=ax, fraction=0.025, pad=0.01)
        ticks = [-1, 0, 1, 2, 3, 4]
        cb.set_ticks(ticks)
        cb.set_ticklabels([f"{10.0**t:g}" for t in ticks])
        cb.set_label("error (km, log scale)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_xticks(range(-180, 181, 60))
    ax.set_yticks(range(-90, 91, 30))
    ax.set_aspect("equal")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title("Error by true location")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return note.strip()
