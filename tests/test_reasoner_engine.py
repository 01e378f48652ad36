"""The shipped default reasoner policy: loads, and writes a parsable chain for the located
shared media's real atoms (metadata off)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

from avgeo.atoms import Atom
from avgeo.reasoning.likelihood import CountryLikelihood
from avgeo.reasoning.reasoner.engine import ReasonerEngine, reason
from avgeo.reasoning.reasoner.policy import default_policy_dir


def _size_mb(d: Path) -> float:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) / 1e6


def test_default_policy_ships_small_and_answers_in_format() -> None:
    d = default_policy_dir()
    assert (d / "avgeo_reasoner.json").is_file()
    assert _size_mb(d) < 10.0
    atoms = [Atom("language:ja", "ocr", "language", "text is Japanese", 0.9,
                  likelihood=CountryLikelihood({"JP": 1.0}))]
    out = reason(atoms, "photo")
    assert out.parsed, out.text
    assert out.lat is not None and -90 <= out.lat <= 90
    assert [c["level"] for c in out.chain][:1] in (["continent"], [])


def test_bad_policy_dir_is_a_weights_error(tmp_path) -> None:
    from avgeo.errors import WeightsError

    with pytest.raises(WeightsError):
        ReasonerEngine(tmp_path)


def test_engine_renders_prompts_as_the_policy_was_trained(tmp_path) -> None:
    # A policy trained with other prompt limits gets its own limits back from its header;
    # one saved without a config (the shipped one) gets the defaults.
    from avgeo.reasoning.reasoner.policy import (
        PolicyConfig,
        build_policy,
        save_policy,
        train_tokenizer,
    )
    from avgeo.reasoning.reasoner.prompt import PromptConfig

    tok = train_tokenizer(["avgeo reasoner v1 media: photo atoms: none answer:"] * 4, 300)
    model = build_policy(tok, PolicyConfig(hidden_size=16, intermediate_size=32, num_layers=1,
                                           num_heads=1, max_positions=256))
    cfg = {"prompt": {"max_atoms": 2, "max_evidence_chars": 10, "an_old_field": 1}}
    save_policy(model, tok, tmp_path / "p", {"stage": "sft", "config": cfg})
    engine = ReasonerEngine(tmp_path / "p")
    assert engine.prompt_cfg == PromptConfig(max_atoms=2, max_evidence_chars=10)
    many = [Atom(f"language:x{i}", "ocr", "language", "e", 0.9,
                 likelihood=CountryLikelihood({"JP": 1.0})) for i in range(5)]
    captured: list[str] = []
    import avgeo.reasoning.reasoner.train as train_mod

    real = train_mod.generate
    try:
        train_mod.generate = lambda m, t, prompts, n: captured.extend(prompts) or [""]
        engine.reason(many, "photo")
    finally:
        train_mod.generate = real
    assert captured and sum(line.startswith("- ") for line in captured[0].splitlines()) == 2
    assert ReasonerEngine().prompt_cfg == PromptConfig()


@pytest.mark.slow
def test_parsable_chain_for_every_located_shared_file(media_dir, manifest) -> None:
    from avgeo.pipeline import extract_atoms

    located = [r for r in manifest if r["lat"] and r["lon"]]
    assert located
    engine = ReasonerEngine()
    items = []
    for row in located:
        media, atoms, _, _ = extract_atoms(media_dir / row["file"], None, use_metadata=False)
        assert not any(a.engine == "meta" for a in atoms)
        items.append((atoms, media.kind))
    outs = engine.reason_many(items)
    for row, out in zip(located, outs, strict=True):
        assert out.parsed, f"{row['file']}: {out.text!r}"
        assert out.chain and out.chain[0]["level"] == "continent"


def test_reasoner_answer_says_where_its_point_lies_and_flags_a_mismatch() -> None:
    import io

    from rich.console import Console

    from avgeo.cli.render import render_prediction
    from avgeo.geo.regions import chain_of_region, country_of_points
    from avgeo.pipeline import _run_reasoner
    from avgeo.prediction import Engines, Prediction, ReasonerAnswer

    atoms = [Atom("language:ja", "ocr", "language", "text is Japanese", 0.9,
                  likelihood=CountryLikelihood({"JP": 1.0}))]
    report = Engines()
    ans = _run_reasoner(atoms, "photo", report)
    assert ans is not None and ans.parsed and report.used == ["reasoner"]
    assert ans.point_country == str(country_of_points(ans.lat, ans.lon)[0])
    assert ans.point_admin1 == str(chain_of_region(ans.lat, ans.lon).iloc[0]["admin1"] or "")

    def shown(r: ReasonerAnswer) -> str:
        pred = Prediction(kind="photo", lat=0.0, lon=0.0, point_method="x", chain=[],
                          regions=[], credible_regions=[], atoms=[], rationale=[],
                          engines=Engines(), reasoner=r, timings_s={}, version="t")
        buf = io.StringIO()
        render_prediction(pred, Console(file=buf, width=200))
        return buf.getvalue()

    us = [{"level": "country", "code": "US", "name": "United States"}]
    # Mexico City under a chain that says United States: flagged; a US point is not.
    assert "lies in Mexico, not United States" in shown(
        ReasonerAnswer(chain=us, lat=19.43, lon=-99.13, parsed=True, point_country="MX"))
    assert "lies in" not in shown(
        ReasonerAnswer(chain=us, lat=40.7, lon=-74.0, parsed=True, point_country="US"))
    # right country, wrong admin-1 (what the shipped policy does on the GoPro sample)
    ca = [*us, {"level": "admin1", "code": "", "name": "California"}]
    assert "lies in New York, not California" in shown(
        ReasonerAnswer(chain=ca, lat=40.99, lon=-73.89, parsed=True, point_country="US",
                       point_admin1="New York"))
    assert "lies in" not in shown(
        ReasonerAnswer(chain=ca, lat=34.0, lon=-118.2, parsed=True, point_country="US",
                       point_admin1="california"))
