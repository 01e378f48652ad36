"""Fusion on synthetic atoms whose right answer is known analytically."""

from __future__ import annotations

import numpy as np
import pytest

from avgeo.atoms import Atom
from avgeo.geo.sphere import haversine_km, interpolate
from avgeo.reasoning import summary
from avgeo.reasoning.fusion import FusionWeights, fuse, group_atoms
from avgeo.reasoning.likelihood import LongitudeBand, PointLikelihood

UNIFORM = FusionWeights(prior="uniform")


def _pt(lat, lon, sigma, name="p", conf=1.0, engine="test"):
    return Atom(name=name, engine=engine, kind="metadata", evidence=name, confidence=conf,
                likelihood=PointLikelihood(lat, lon, sigma))


def test_two_overlapping_discs_peak_between_them():
    # Product of two equal isotropic Gaussians peaks at the midpoint.
    a, b = (48.0, 2.0), (48.0, 8.0)
    res = fuse([_pt(*a, 250.0, "a"), _pt(*b, 250.0, "b")], UNIFORM)
    post = res.fine
    i = int(np.argmax(post.log_prob - np.log(post.grid.area_km2)))
    mid = interpolate(a[0], a[1], b[0], b[1], 0.5)
    assert haversine_km(post.grid.lat[i], post.grid.lon[i], *mid) < 40.0


def test_unequal_discs_peak_nearer_the_sharper_one():
    a, b = (10.0, 20.0), (10.0, 26.0)
    res = fuse([_pt(*a, 150.0, "a"), _pt(*b, 450.0, "b")], UNIFORM)
    post = res.fine
    i = int(np.argmax(post.log_prob - np.log(post.grid.area_km2)))
    d_a = haversine_km(post.grid.lat[i], post.grid.lon[i], *a)
    d_b = haversine_km(post.grid.lat[i], post.grid.lon[i], *b)
    # 1-D product of Gaussians: mean at a + (b-a)·σa²/(σa²+σb²) = 10 % of the way.
    total = haversine_km(*a, *b)
    assert d_a < d_b
    assert d_a == pytest.approx(0.1 * total, abs=60.0)


def test_point_atom_dominates_prior_and_estimate_is_exact():
    gps = (-33.8688, 151.2093)
    atom = _pt(*gps, 0.01, "gps")
    res = fuse([atom], FusionWeights(prior="uniform"))
    pe = summary.point_estimate(res.fine, [atom])
    assert pe.method == "point-atoms"
    assert haversine_km(pe.lat, pe.lon, *gps) < 0.1
    assert res.coarse.prob.max() > 0.98


def test_longitude_band_alone_narrows_to_its_longitudes():
    band = Atom(name="tz", engine="meta", kind="time_zone", evidence="UTC+9",
                likelihood=LongitudeBand(127.5, 142.5, soft_deg=2.0))
    res = fuse([band], UNIFORM)
    post = res.coarse
    lon = post.grid.lon
    inside = ((lon >= 125.0) & (lon <= 145.0))
    assert post.prob[inside].sum() > 0.9


def test_longitude_band_wraps_antimeridian():
    band = Atom(name="tz", engine="meta", kind="time_zone", evidence="UTC+12",
                likelihood=LongitudeBand(172.5, -172.5, soft_deg=1.0))
    post = fuse([band], UNIFORM, fine_res=3).coarse
    lon = post.grid.lon
    inside = (lon >= 170.0) | (lon <= -170.0)
    assert post.prob[inside].sum() > 0.9


def _mass_near(post, lat, lon, km):
    return post.prob[haversine_km(lat, lon, post.grid.lat, post.grid.lon) <= km].sum()


def test_low_confidence_broad_atom_is_tempered():
    strong = fuse([_pt(0.0, 0.0, 1500.0, conf=1.0)], UNIFORM, fine_res=3).coarse
    weak = fuse([_pt(0.0, 0.0, 1500.0, conf=0.2)], UNIFORM, fine_res=3).coarse
    none = fuse([], UNIFORM, fine_res=3).coarse
    m_s, m_w, m_0 = (_mass_near(p, 0.0, 0.0, 1500.0) for p in (strong, weak, none))
    assert m_s > m_w > m_0 * 1.5


def test_sharp_atom_mass_equals_its_confidence():
    # Under a uniform prior, P(true cell) = c·(A/a)(a/A) / (c + (1 − c)) = c: a fix that is
    # 60 % likely to be real puts 60 % of the mass on its cell, not 60 %/41k.
    post = fuse([_pt(10.0, 10.0, 0.05, conf=0.6)], UNIFORM, fine_res=3).coarse
    assert _mass_near(post, 10.0, 10.0, 100.0) == pytest.approx(0.6, abs=0.01)


def test_duplicates_are_pooled_not_multiplied():
    one = [_pt(0.0, 0.0, 800.0, name="sp")]
    forty = [_pt(0.0, 0.0, 800.0, name="sp") for _ in range(40)]
    g1, g40 = group_atoms(one, UNIFORM)[0], group_atoms(forty, UNIFORM)[0]
    assert len(group_atoms(forty, UNIFORM)) == 1
    # log2(40) ≈ 5.3 doublings → weight 1 + 0.25·5.3 ≈ 2.3, far below 40.
    assert 1.0 < g40.weight / g1.weight < 3.0


def test_removing_an_atom_is_exact():
    atoms = [_pt(40.0, -100.0, 500.0, "a"), _pt(45.0, 10.0, 500.0, "b")]
    res = fuse(atoms, UNIFORM, fine_res=3)
    only_a = fuse(atoms[:1], UNIFORM, fine_res=3).coarse
    removed = res.coarse.without({"test:b"})
    np.testing.assert_allclose(removed.log_prob, only_a.log_prob, atol=1e-9)


def test_credible_regions_nest_and_cover():
    res = fuse([_pt(20.0, 78.0, 600.0)], UNIFORM, fine_res=3)
    g = res.coarse.grid
    c50 = summary.credible_region(g.cells, g.area_km2, res.coarse.log_prob, 0.5)
    c90 = summary.credible_region(g.cells, g.area_km2, res.coarse.log_prob, 0.9)
    assert 0.5 <= c50.probability < 0.55 and 0.9 <= c90.probability < 0.92
    assert c50.area_km2 < c90.area_km2
    assert set(c50.cells) <= set(c90.cells)


def test_top_regions_separate_two_modes():
    atoms = [Atom(name="mix", engine="t", kind="metadata", evidence="",
                  likelihood=PointLikelihood(35.0, 139.0, 200.0), group="x"),
             Atom(name="mix", engine="t", kind="metadata", evidence="",
                  likelihood=PointLikelihood(-23.0, -46.0, 200.0), group="x")]
    res = fuse(atoms, UNIFORM, fine_res=3)
    regs = summary.top_regions(res.coarse, k=3)
    assert len(regs) >= 2
    near = sorted(min(haversine_km(r.lat, r.lon, 35.0, 139.0),
                      haversine_km(r.lat, r.lon, -23.0, -46.0)) for r in regs[:2])
    assert near[-1] < 300.0
    assert abs(regs[0].probability - regs[1].probability) < 0.1


def test_mixed_support_is_normalised_and_matches_coarse_mass():
    # Refined maps are rescaled to the coarse scale, so the refined cells of the mixed
    # support hold (almost exactly) the mass their parents hold in the coarse posterior.
    atoms = [_pt(55.698, 13.195, 0.03, "gps", conf=0.99), _pt(50.0, 10.0, 900.0, "broad")]
    res = fuse(atoms, UNIFORM)
    sup = res.support()
    assert sup.prob.sum() == pytest.approx(1.0, abs=1e-9)
    assert sup.prob[sup.is_fine].sum() == pytest.approx(res.fine_mass, rel=0.02)
    best = int(np.argmax(sup.prob))
    assert sup.is_fine[best]
    assert haversine_km(sup.lat[best], sup.lon[best], 55.698, 13.195) < 15.0
