"""A Prediction as GeoJSON: heat-map cells as polygons, top regions and the point estimate."""

from __future__ import annotations

from typing import Any

import h3


def _cell_polygon(cell: str) -> list[list[list[float]]]:
    ring = [[lon, lat] for lat, lon in h3.cell_to_boundary(cell)]
    # Cells crossing the antimeridian: unwrap longitudes so the ring does not span the globe.
    base = ring[0][0]
    for p in ring:
        if p[0] - base > 180:
            p[0] -= 360
        elif base - p[0] > 180:
            p[0] += 360
    ring.append(ring[0])
    return [ring]


def prediction_to_geojson(pred: dict[str, Any]) -> dict[str, Any]:
    feats: list[dict[str, Any]] = []
    for hc in pred.get("heatmap", []):
        area = h3.cell_area(hc["cell"], "km^2")
        feats.append({"type": "Feature", "geometry": {"type": "Polygon",
                                                      "coordinates": _cell_polygon(hc["cell"])},
                      "properties": {"kind": "cell", "cell": hc["cell"],
                                     "probability": hc["probability"],
                                     "density_per_km2": hc["probability"] / area}})
    for i, r in enumerate(pred.get("regions", []), 1):
        feats.append({"type": "Feature",
                      "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                      "properties": {"kind": "region", "rank": i, **r}})
    feats.append({"type": "Feature",
                  "geometry": {"type": "Point", "coordinates": [pred["lon"], pred["lat"]]},
                  "properties": {"kind": "estimate", "method": pred.get("point_method")}})
    return {"type": "FeatureCollection", "features": feats}
