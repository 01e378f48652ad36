"""Chain of Region from a posterior: continent → country → admin-1 → city, each with the
posterior mass of the chosen region, read on the mixed-resolution support."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avgeo.reasoning.fusion import FusionResult, Support

LEVELS = ("continent", "country", "admin1", "city")


@dataclass
class ChainItem:
    level: str
    code: str
    name: str
    probability: float


@dataclass
class Labels:
    """Region labels for every cell of a Support ('' where unknown or at sea)."""

    continent: np.ndarray
    country: np.ndarray
    admin1: np.ndarray
    admin1_code: np.ndarray
    city: np.ndarray


def support_labels(result: FusionResult, support: Support,
                   point: tuple[float, float] | None = None) -> Labels:
    """Fine cells are labelled by reverse geocoding their centres; coarse cells by the
    country covering most of them. The fine cell holding the point estimate is labelled by
    the point itself (a cell centre can sit in the next town over)."""
    from avgeo.geo import regions

    n = len(support.cells)
    country = np.full(n, "", dtype=object)
    admin1 = np.full(n, "", dtype=object)
    admin1_code = np.full(n, "", dtype=object)
    city = np.full(n, "", dtype=object)
    fine = np.flatnonzero(support.is_fine)
    coarse = np.flatnonzero(~support.is_fine)
    if len(coarse):
        cgrid = result.coarse.grid
        pos = cgrid.index_of(support.cells[coarse])
        country[coarse] = np.asarray(regions.cell_countries(cgrid)).astype(str)[pos]
    if len(fine):
        table = regions.chain_of_region(support.lat[fine], support.lon[fine])
        country[fine] = table["country_code"].to_numpy(dtype=str)
        admin1[fine] = table["admin1"].to_numpy(dtype=str)
        admin1_code[fine] = table["admin1_code"].to_numpy(dtype=str)
        city[fine] = table["city"].to_numpy(dtype=str)
        if point is not None and result.fine is not None:
            own = result.fine.grid.locate(point[0], point[1])[0]
            if own >= 0:
                cell = result.fine.grid.cells[own]
                hit = fine[support.cells[fine] == cell]
                if len(hit):
                    pt = regions.chain_of_region(np.array([point[0]]), np.array([point[1]]))
                    country[hit] = pt["country_code"].iloc[0]
                    admin1[hit] = pt["admin1"].iloc[0]
                    admin1_code[hit] = pt["admin1_code"].iloc[0]
                    city[hit] = pt["city"].iloc[0]
    country = country.astype(str)
    continent = np.asarray(regions.continent_of(country)).astype(str)
    return Labels(continent, country, admin1.astype(str), admin1_code.astype(str),
                  city.astype(str))


def masses(labels: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    uniq, inv = np.unique(labels.astype(str), return_inverse=True)
    sums = np.bincount(inv, weights=prob, minlength=len(uniq))
    return dict(zip(uniq.tolist(), sums.tolist(), strict=True))


def best(m: dict[str, float]) -> tuple[str, float] | None:
    cands = [(k, v) for k, v in m.items() if k]
    if not cands:
        return None
    return max(cands, key=lambda kv: kv[1])


def chain_of_region(support: Support, labels: Labels) -> list[ChainItem]:
    from avgeo.geo import regions

    prob = support.prob
    chain: list[ChainItem] = []
    cont = best(masses(labels.continent, prob))
    if cont is None:
        return chain
    chain.append(ChainItem("continent", cont[0], regions.continent_name(cont[0]), cont[1]))
    in_cont = labels.continent == cont[0]
    ctry = best(masses(labels.country[in_cont], prob[in_cont]))
    if ctry is None:
        return chain
    chain.append(ChainItem("country", ctry[0], regions.country_name(ctry[0]), ctry[1]))
    in_c = labels.country == ctry[0]
    a1 = best(masses(labels.admin1[in_c], prob[in_c]))
    if a1 is None:
        return chain
    code = next((c for a, c in zip(labels.admin1[in_c], labels.admin1_code[in_c], strict=True)
                 if a == a1[0] and c), "")
    chain.append(ChainItem("admin1", code, a1[0], a1[1]))
    in_a1 = in_c & (labels.admin1 == a1[0])
    city = best(masses(labels.city[in_a1], prob[in_a1]))
    if city is not None:
        chain.append(ChainItem("city", "", city[0], city[1]))
    return chain
