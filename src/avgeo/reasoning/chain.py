"""Chain of Region from a posterior: continent → country → admin-1 → city, each with the
posterior mass of the chosen region."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avgeo.reasoning.fusion import FusionResult

LEVELS = ("continent", "country", "admin1", "city")


@dataclass
class ChainItem:
    level: str
    code: str
    name: str
    probability: float


def _masses(labels: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    uniq, inv = np.unique(labels.astype(str), return_inverse=True)
    sums = np.bincount(inv, weights=prob, minlength=len(uniq))
    return dict(zip(uniq.tolist(), sums.tolist(), strict=True))


def _best(masses: dict[str, float]) -> tuple[str, float] | None:
    cands = [(k, v) for k, v in masses.items() if k]
    if not cands:
        return None
    return max(cands, key=lambda kv: kv[1])


def country_masses(result: FusionResult) -> dict[str, float]:
    """Posterior mass per ISO country code ('' = at sea / no country)."""
    from avgeo.geo.regions import cell_countries

    post = result.coarse
    return _masses(cell_countries(post.grid), post.prob)


def chain_of_region(result: FusionResult, point: tuple[float, float] | None = None
                    ) -> list[ChainItem]:
    from avgeo.geo import regions

    post = result.coarse
    countries = np.asarray(regions.cell_countries(post.grid)).astype(str)
    cont_codes = np.asarray(regions.continent_of(countries)).astype(str)
    chain: list[ChainItem] = []

    best_cont = _best(_masses(cont_codes, post.prob))
    if best_cont is None:
        return chain
    chain.append(ChainItem("continent", best_cont[0], regions.continent_name(best_cont[0]),
                           best_cont[1]))
    in_cont = cont_codes == best_cont[0]
    best_country = _best(_masses(countries[in_cont], post.prob[in_cont]))
    if best_country is None:
        return chain
    cc = best_country[0]
    chain.append(ChainItem("country", cc, regions.country_name(cc), best_country[1]))

    fine = result.fine
    if fine is None:
        return chain
    table = regions.chain_of_region(fine.grid.lat, fine.grid.lon)
    admin1 = table["admin1"].to_numpy(dtype=str).copy()
    admin1_code = table["admin1_code"].to_numpy(dtype=str).copy()
    city = table["city"].to_numpy(dtype=str).copy()
    fcountry = table["country_code"].to_numpy(dtype=str).copy()
    if point is not None:
        # The cell holding the point estimate is labelled by the point itself (a cell
        # centre can be in the next town over).
        own = fine.grid.locate(point[0], point[1])[0]
        if own >= 0:
            pt = regions.chain_of_region(np.array([point[0]]), np.array([point[1]]))
            admin1[own] = pt["admin1"].iloc[0]
            admin1_code[own] = pt["admin1_code"].iloc[0]
            city[own] = pt["city"].iloc[0]
            fcountry[own] = pt["country_code"].iloc[0]
    fprob = fine.prob * result.fine_mass
    in_c = fcountry == cc
    best_a1 = _best(_masses(admin1[in_c], fprob[in_c]))
    if best_a1 is None:
        return chain
    codes = dict(zip(admin1[in_c].tolist(), admin1_code[in_c].tolist(), strict=True))
    chain.append(ChainItem("admin1", codes.get(best_a1[0], ""), best_a1[0], best_a1[1]))
    in_a1 = in_c & (admin1 == best_a1[0])
    best_city = _best(_masses(city[in_a1], fprob[in_a1]))
    if best_city is not None:
        chain.append(ChainItem("city", "", best_city[0], best_city[1]))
    return chain
