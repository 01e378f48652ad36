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


def test_simulated_atoms_come_from_the_engines_builders() -> None:
    """Evidence, names and groups read like a real extraction (the engines' own builders),
    including OCR junk on texture and false species at low confidence."""
    junk = simulate(12, seed=5, cfg=SimConfig(p_photo=1.0, p_no_text=0.0, p_junk_text=1.0,
                                              p_gps=0.0, p_time_zone=0.0))
    for e in junk:
        texts = [a for a in e.atoms if a.kind == "text"]
        assert len(texts) == 1 and texts[0].evidence.startswith("text read: '")
        assert texts[0].likelihood is None
    audio = simulate(12, seed=6, cfg=SimConfig(p_photo=0.0, p_audio=1.0, p_species=1.0,
                                               p_hum=0.0, p_speech=0.0))
    species = [a for e in audio for a in e.atoms if a.kind == "species"]
    assert species and all(a.group.startswith("species:") and "heard at" in a.evidence
                           and a.likelihood is not None for a in species)
    assert all("simulated" not in a.evidence for e in junk + audio for a in e.atoms)


def test_real_examples_from_an_extract_folder_skip_test_rows(tmp_path, media_dir,
                                                             manifest) -> None:
    import csv

    from avgeo.data.extract import run_extract
    from avgeo.reasoning.reasoner.train import examples_from_extract, load_examples

    photos = [r for r in manifest if r["kind"] == "photo" and r["lat"]][:2]
    man = tmp_path / "m.csv"
    with open(man, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "lat", "lon", "split"])
        for r, split in zip(photos, ("train", "test"), strict=True):
            w.writerow([str(media_dir / r["file"]), r["lat"], r["lon"], split])
    run_extract(man, tmp_path / "ex", engines="meta", use_metadata=True, workers=1,
                progress=False)
    ex = examples_from_extract(tmp_path / "ex", log=lambda s: None)
    assert [e.source for e in ex] == [str(media_dir / photos[0]["file"])]
    assert ex[0].atoms and ex[0].truth.lat == pytest.approx(float(photos[0]["lat"]))
    mixed = load_examples("sim:6", 0, 0, TrainConfig(real=str(tmp_path / "ex"), real_repeat=2),
                          log=lambda s: None)
    assert len(mixed) == 8 and sum(e.source != "sim" for e in mixed) == 2


def test_prior_only_examples_are_thinned_but_evidence_and_real_ones_kept() -> None:
    from avgeo.atoms import Atom
    from avgeo.reasoning.likelihood import CountryLikelihood
    from avgeo.reasoning.reasoner.reward import Truth
    from avgeo.reasoning.reasoner.simulate import Example
    from avgeo.reasoning.reasoner.train import _thin_prior_only

    t = Truth(35.0, 139.0, "AS", "JP")
    lang = Atom("language:ja", "ocr", "language", "text is Japanese", 0.9,
                likelihood=CountryLikelihood({"JP": 1.0}))
    junk = Atom("text", "ocr", "text", "text read: 'jh'", 0.8)
    ex = ([Example([lang], "photo", t) for _ in range(50)]
          + [Example([junk], "photo", t) for _ in range(400)]
          + [Example([junk], "photo", t, source="/data/a.jpg") for _ in range(5)])
    kept = _thin_prior_only(ex, TrainConfig(prior_only_keep=0.25), log=lambda s: None)
    n_prior = sum(e.atoms == [junk] and e.source == "sim" for e in kept)
    assert sum(e.atoms == [lang] for e in kept) == 50
    assert sum(e.source != "sim" for e in kept) == 5
    assert 60 <= n_prior <= 140  # about a quarter of 400
    assert _thin_prior_only(ex, TrainConfig(), log=lambda s: None) == ex


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


@pytest.mark.slow
def test_tiny_sft_then_grpo_run_writes_policy_and_resumes(tmp_path) -> None:
    cfg = TrainConfig(n_train=48, n_heldout=8, sft_steps=3, grpo_steps=2, batch_size=8,
                      num_generations=4, prompts_per_step=2, max_completion_tokens=24,
                      save_steps=2,
                      policy=PolicyConfig(vocab_size=400, hidden_size=32, intermediate_size=64,
                                          num_layers=1, num_heads=2),
                      # little scene text: language ID loads models, which this test of the
                      # training mechanics does not need
                      sim=SimConfig(p_no_text=0.6, p_junk_text=0.35))
    rep = train_reasoner("sim", tmp_path, cfg, log=lambda s: None)
    for stage in ("untrained", "sft", "grpo"):
        assert 0.0 <= rep[stage]["parse_rate"] <= 1.0
    rewards = [h["reward"] for h in rep["grpo_history"] if "reward" in h]
    assert len(rewards) == 2 and all(np.isfinite(rewards))
    _model, tok, header = load_policy(tmp_path / "policy")
    assert header["stage"] == "grpo" and len(tok) <= 400 + 8
    assert json.loads((tmp_path / "report.json").read_text())["n_train"] == 48
    assert any(p.name.startswith("checkpoint-") for p in (tmp_path / "grpo").iterdir())
    # the shared core's metrics log (one per stage) and the run's config record
    from avgeo.training import read_metrics

    grpo_rows = read_metrics(tmp_path / "run" / "grpo")
    assert [r["step"] for r in grpo_rows if "reward" in r] == [1, 2]
    assert [r["reward"] for r in grpo_rows if "reward" in r] == pytest.approx(rewards)
    assert any("loss" in r for r in read_metrics(tmp_path / "run" / "sft"))
    rec = json.loads((tmp_path / "run" / "config.json").read_text())
    assert rec["schema_version"] == 1 and rec["reasoner"]["grpo_steps"] == 2
    # resume: SFT is not redone, GRPO continues to more steps from its checkpoint
    cfg.grpo_steps = 3
    rep2 = train_reasoner("sim", tmp_path, cfg, resume=True, log=lambda s: None)
    assert "untrained" not in rep2
    assert max(h.get("step", 0) for h in rep2["grpo_history"]) == 3
    # the resumed log keeps the rows up to the checkpoint (step 2) and goes on from there
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "grpo") if "reward" in r]
    assert steps == [1, 2, 3]
    # --init-policy: GRPO starts from a trained policy in a fresh folder, without SFT
    from dataclasses import replace

    from avgeo.errors import ConfigError

    fresh = tmp_path / "from_policy"
    cfg2 = replace(cfg, grpo_steps=1, n_heldout=0, init_policy=str(tmp_path / "policy"))
    rep3 = train_reasoner("sim", fresh, cfg2, log=lambda s: None)
    assert "sft_history" not in rep3 and not (fresh / "sft").exists()
    assert (fresh / "sft_policy" / "model.safetensors").read_bytes() == \
        (tmp_path / "policy" / "model.safetensors").read_bytes()
    assert load_policy(fresh / "policy")[2]["stage"] == "grpo"
    with pytest.raises(ConfigError, match="init-policy"):
        train_reasoner("sim", tmp_path / "x", replace(cfg2, init_policy=str(tmp_path / "run")),
                       log=lambda s: None)


def test_cli_config_file_round_trip_and_refused_run_settings(tmp_path) -> None:
    from typer.testing import CliRunner

    from avgeo.cli import _register, app
    from avgeo.errors import ConfigError

    _register()
    runner = CliRunner()
    first = tmp_path / "a.toml"
    res = runner.invoke(app, ["train", "reasoner", "sim", "--hidden", "64", "--set",
                              "reasoner.prompts_per_step=2", "--save-config", str(first)])
    assert res.exit_code == 0, res.output
    again = tmp_path / "b.json"
    res = runner.invoke(app, ["train", "reasoner", "sim", "--config", str(first),
                              "--grpo-steps", "7", "--save-config", str(again)])
    assert res.exit_code == 0, res.output
    rec = json.loads(again.read_text())
    assert rec["reasoner"]["policy"]["hidden_size"] == 64
    assert rec["reasoner"]["prompts_per_step"] == 2 and rec["reasoner"]["grpo_steps"] == 7
    res = runner.invoke(app, ["train", "reasoner", "sim", "--set", "run.epochs=3",
                              "--save-config", str(tmp_path / "c.json")])
    assert isinstance(res.exception, ConfigError) and "reasoner.sft_steps" in res.exception.hint


def test_bad_source_is_a_config_error(tmp_path) -> None:
    from avgeo.errors import ConfigError

    with pytest.raises(ConfigError):
        train_reasoner(str(tmp_path / "nope.csv"), tmp_path, TrainConfig(n_heldout=0))


def test_cpu_threads_and_generation_cache_settings(tmp_path) -> None:
    import torch

    from avgeo.errors import ConfigError
    from avgeo.reasoning.reasoner.train import _cache_implementation, cpu_threads

    with pytest.raises(ConfigError) as exc:
        train_reasoner("sim", tmp_path, TrainConfig(generation_cache="bogus", n_heldout=0))
    assert "static" in exc.value.hint
    assert _cache_implementation(TrainConfig()) == "static"
    assert _cache_implementation(TrainConfig(vlm="/some/vlm")) is None
    assert _cache_implementation(TrainConfig(generation_cache="dynamic")) is None
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1 or torch.cuda.is_available()
    assert torch.get_num_threads() == before
