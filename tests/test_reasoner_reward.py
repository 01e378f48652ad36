"""The GRPO reward: distance curve at and between its breakpoints, hierarchy, format."""

from __future__ import annotations

import numpy as np
import pytest

from avgeo.geo.sphere import destination
from avgeo.reasoning.reasoner.parse import ParsedAnswer
from avgeo.reasoning.reasoner.reward import (
    RewardConfig,
    Truth,
    distance_score,
    fold_name,
    make_reward_func,
    reward,
    score,
    truth_of,
)


@pytest.mark.parametrize(("km", "want"), [
    (0.0, 1.0), (750.0, 0.5), (3000.0, 0.2), (20000.0, 0.0), (25000.0, 0.0),
    (375.0, 0.75), (1875.0, 0.35), (11500.0, 0.1), (150.0, 0.9), (-5.0, 1.0),
])
def test_distance_score_breakpoints_and_between(km: float, want: float) -> None:
    assert float(distance_score(km)) == pytest.approx(want, abs=1e-12)


def test_distance_score_is_monotone_and_vectorised() -> None:
    d = np.linspace(0, 21000, 500)
    s = distance_score(d)
    assert s.shape == d.shape and np.all(np.diff(s) <= 0) and s[0] == 1.0 and s[-1] == 0.0


TRUTH = Truth(43.467, 11.885, "EU", "IT", "Tuscany", "Arezzo")


def _ans(lat: float, lon: float, cont: str = "EU", ctry: str = "IT",
         a1: str = "Tuscany", city: str = "Arezzo") -> ParsedAnswer:
    return ParsedAnswer("", cont, ctry, a1, city, lat, lon)


def test_perfect_answer_gets_the_total_weight() -> None:
    cfg = RewardConfig()
    parts = score(_ans(43.467, 11.885), TRUTH, cfg)
    assert parts.total == pytest.approx(cfg.total) and cfg.total == pytest.approx(1.0)
    assert all(parts.hits.values())


def test_distance_part_uses_great_circle_error() -> None:
    cfg = RewardConfig(w_continent=0, w_country=0, w_admin1=0, w_city=0, w_format=0)
    lat, lon = destination(TRUTH.lat, TRUTH.lon, 90.0, 750.0)
    parts = score(_ans(float(lat), float(lon), "-", "-"), TRUTH, cfg)
    assert parts.error_km == pytest.approx(750.0, abs=1e-6)
    assert parts.total == pytest.approx(cfg.w_distance * 0.5, abs=1e-9)


def test_hierarchy_is_nested_and_name_folded() -> None:
    cfg = RewardConfig()
    # admin-1 spelled differently (case/accents) still matches
    p = score(_ans(43.467, 11.885, a1="TUSCANY", city="arezzo"), TRUTH, cfg)
    assert p.hits["admin1"] and p.hits["city"]
    # wrong country: the right city name earns nothing below it when nested
    p = score(_ans(43.467, 11.885, ctry="FR"), TRUTH, cfg)
    assert p.hits == {"continent": True, "country": False, "admin1": False, "city": False}
    assert p.hierarchy == pytest.approx(cfg.w_continent)
    flat = score(_ans(43.467, 11.885, ctry="FR"), TRUTH, RewardConfig(nested=False))
    assert flat.hits["city"] and flat.hierarchy == pytest.approx(
        cfg.w_continent + cfg.w_admin1 + cfg.w_city)
    # an unknown level never matches
    p = score(_ans(43.467, 11.885, cont="", ctry=""), TRUTH, cfg)
    assert not any(p.hits.values())
    assert p.total == pytest.approx(cfg.w_distance + cfg.w_format)


def test_malformed_completion_scores_zero_and_wellformed_gets_format() -> None:
    assert reward("continent: EU", TRUTH) == 0.0
    far = ("<think>x</think>\ncontinent: - | country: - | admin1: - | city: - | "
           "-43.467, -168.115")  # the antipode
    assert reward(far, TRUTH) == pytest.approx(RewardConfig().w_format, abs=1e-3)


def test_trl_reward_function_reads_truth_columns() -> None:
    fn = make_reward_func()
    good = ("<think>x</think>\ncontinent: EU | country: IT | admin1: Tuscany | city: Arezzo"
            " | 43.467, 11.885")
    out = fn(prompts=["p", "p"], completions=[good, "junk"], true_lat=[43.467, 43.467],
             true_lon=[11.885, 11.885], true_continent=["EU", "EU"], true_country=["IT", "IT"],
             true_admin1=["Tuscany", "Tuscany"], true_city=["Arezzo", "Arezzo"])
    assert out[0] == pytest.approx(1.0) and out[1] == 0.0
    conv = fn(completions=[[{"role": "assistant", "content": good}]], true_lat=[43.467],
              true_lon=[11.885])
    assert conv[0] == pytest.approx(0.6)  # distance + format; no truth labels given


def test_truth_labels_come_from_chain_of_region() -> None:
    t = truth_of(48.8566, 2.3522)
    assert (t.continent, t.country) == ("EU", "FR") and t.admin1 and t.city
    assert fold_name("Île-de-France") == "ile de france"
