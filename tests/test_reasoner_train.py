"""Simulated atoms, and a tiny SFT + GRPO run of the reasoner end to end (a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("trl")

from avgeo.reasoning.reasoner.parse import parse_completion
from avgeo.reasoning.reasoner.policy import PolicyConfig, load_policy
from avgeo.reasoning.reasoner.simulate import SimConfig, simulate
from avgeo.reasoning.reasoner.train import (
    MAX_ERROR_KM,
    TrainConfig,
    evaluate_completions,
    sft_records,
    train_reasoner,
)


def test_simulated_examples_are_located_and_consistent() -> None:
    ex = simulate(60, seed=3)
    assert len(ex) == 60
    assert all(e.truth.country and e.truth.continent for e in ex)
    kinds = {e.media_kind for e in ex}
    assert kinds <= {"photo", "audio", "video"} and len(kinds) >= 2
    for e in ex:
        for a in e.atoms:
            if a.kind == "mains_hum":
                assert e.media_kind != "photo"
            if a.kind in ("script", "language", "place_name"):
                assert e.media_kind != "audio"
            if a.likelihood is not None:
                assert a.likelihood.describe()
    # deterministic per seed, different across seeds
    again = simulate(60, seed=3)
    assert [e.truth.lat for e in ex] == [e.truth.lat for e in again]
    assert [e.truth.lat for e in simulate(5, seed=4)] != [e.truth.lat for e in ex[:5]]
    # every SFT target is in the format the parser accepts
    assert all(parse_completion(r["completion"]) for r in sft_records(ex, TrainConfig()))


def test_hum_atoms_follow_the_country_grid() -> None:
    cfg = SimConfig(p_audio=1.0, p_photo=0.0, p_hum=1.0, p_hum_wrong=0.0)
    ex = simulate(40, seed=11, cfg=cfg)
    from avgeo.perception.audio.grid_frequency import grid_hz

    for e in ex:
        for a in e.atoms:
            if a.kind == "mains_hum" and grid_hz(e.truth.country) in (50, 60):
                assert a.name == f"mains_hum_{grid_hz(e.truth.country)}hz"


def test_evaluate_counts_malformed_as_max_error() -> None:
    from avgeo.reasoning.reasoner.reward import Truth

    t = Truth(0.0, 0.0, "AF", "GH")
    s = evaluate_completions(["junk", "<think>x</think>\ncontinent: AF | country: GH | "
                              "admin1: - | city: - | 0.000, 0.000"], [t, t])
    assert s.parse_rate == 0.5 and s.median_error_km == pytest.approx(MAX_ERROR_KM / 2)


def test_tiny_sft_then_grpo_run_writes_policy_and_resumes(tmp_path) -> None:
    cfg = TrainConfig(n_train=48, n_heldout=8, sft_steps=3, grpo_steps=2, batch_size=8,
                      num_generations=4, prompts_per_step=2, max_completion_tokens=24,
                      save_steps=2,
                      policy=PolicyConfig(vocab_size=400, hidden_size=32, intermediate_size=64,
                                          num_layers=1, num_heads=2))
    rep = train_reasoner("sim", tmp_path, cfg, log=lambda s: None)
    for stage in ("untrained", "sft", "grpo"):
        assert 0.0 <= rep[stage]["parse_rate"] <= 1.0
    rewards = [h["reward"] for h in rep["grpo_history"] if "reward" in h]
    assert len(rewards) == 2 and all(np.isfinite(rewards))
    _model, tok, header = load_policy(tmp_path / "policy")
    assert header["stage"] == "grpo" and len(tok) <= 400 + 8
    assert json.loads((tmp_path / "report.json").read_text())["n_train"] == 48
    assert any(p.name.startswith("checkpoint-") for p in (tmp_path / "grpo").iterdir())
    # resume: SFT is not redone, GRPO continues to more steps from its checkpoint
    cfg.grpo_steps = 3
    rep2 = train_reasoner("sim", tmp_path, cfg, resume=True, log=lambda s: None)
    assert "untrained" not in rep2
    assert max(h.get("step", 0) for h in rep2["grpo_history"]) == 3


def test_bad_source_is_a_config_error(tmp_path) -> None:
    from avgeo.errors import ConfigError

    with pytest.raises(ConfigError):
        train_reasoner(str(tmp_path / "nope.csv"), tmp_path, TrainConfig(n_heldout=0))
