"""Comparison table of the learned reasoner: the fusion engine (rule-based reference),
untrained, SFT-only and SFT+GRPO policies on a held-out simulated set, GRPO's mean training
reward early vs late, and (with --real) what a policy says on real extracted atoms next to
the fusion engine's answer.

    python scripts/reasoner_table.py OUT_DIR            # reads OUT_DIR/report.json
    python scripts/reasoner_table.py OUT_DIR --reeval 300 --seed 7
        # re-scores fusion, the untrained policy (the run's initialisation: same tokenizer,
        # size and seed), OUT_DIR/sft_policy and OUT_DIR/policy on one fresh held-out set,
        # with the paired GRPO − SFT difference and its bootstrap interval; --grpo DIR
        # scores another GRPO policy or a checkpoint (OUT_DIR/grpo/checkpoint-N)
    python scripts/reasoner_table.py OUT_DIR --real EXTRACT_DIR [--policy DIR]
        # per file of an `avgeo extract` folder: the policy's chain vs fusion's country;
        # error and country hit when that folder's manifest carried lat/lon or country
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np


def _row(name: str, r: dict) -> str:
    return (f"| {name:<10} | {r['n']:>4} | {r['parse_rate']:.2f} | {r['mean_reward']:.3f} | "
            f"{r['median_error_km']:>8.0f} | {r['mean_error_km']:>8.0f} | "
            f"{r['continent_acc']:.2f} | {r['country_acc']:.2f} |")


def _fusion_country(atoms) -> str:
    from avgeo.reasoning.reasoner.simulate import Example
    from avgeo.reasoning.reasoner.train import fusion_answer

    return fusion_answer(Example(atoms, "unknown", None)).country or "-"  # type: ignore[arg-type]


def real_table(extract_dir: Path, policy_dir: Path | None) -> None:
    """One line per extracted file: the policy's answer and fusion's country."""
    from avgeo.data.extract import atoms_by_row, read_shards
    from avgeo.geo.sphere import haversine_km
    from avgeo.reasoning.reasoner.engine import ReasonerEngine

    files = read_shards(extract_dir, "files")
    files = files[files["status"] == "ok"]
    atoms = atoms_by_row(extract_dir)
    engine = ReasonerEngine(policy_dir)
    items = [(atoms.get(int(r), []), str(k)) for r, k in zip(files["row"], files["kind"],
                                                              strict=True)]
    outs = engine.reason_many(items)
    print(f"\npolicy {engine.policy_dir} on {extract_dir} ({len(outs)} files)\n")
    print("| file | kind | atoms | reasoner | fusion | truth | reasoner km |")
    print("|------|------|-------|----------|--------|-------|-------------|")
    n_hit = n_fus = n_truth = 0
    for (a, kind), out, (_, f) in zip(items, outs, files.iterrows(), strict=True):
        chain = {c["level"]: c["code"] for c in out.chain}
        said = f"{chain.get('continent', '-')}/{chain.get('country', '-')}" if out.parsed \
            else "unparsed"
        fus = _fusion_country(a)
        truth = str(f.get("country") or "") or "-"
        km = ""
        lat, lon = f.get("lat"), f.get("lon")
        if out.parsed and lat is not None and not math.isnan(float(lat)):
            km = f"{float(haversine_km(out.lat, out.lon, float(lat), float(lon))):.0f}"
        if truth != "-":
            n_truth += 1
            n_hit += chain.get("country") == truth
            n_fus += fus == truth
        print(f"| {Path(str(f['file'])).name} | {kind} | {len(a)} | {said} | {fus} | {truth} "
              f"| {km} |")
    if n_truth:
        print(f"\ncountry right: reasoner {n_hit}/{n_truth}, fusion {n_fus}/{n_truth}")


def _metrics_rewards(path: Path) -> list[float]:
    """GRPO's per-step mean reward from a run's metrics log (a run stopped before it wrote
    report.json)."""
    if not path.is_file():
        return []
    import pandas as pd

    df = pd.read_csv(path)
    if "reward" not in df:
        return []
    df = df.dropna(subset=["reward"]).drop_duplicates("step", keep="last")
    return df.sort_values("step")["reward"].astype(float).tolist()


def _load_any(d: Path, tok_dir: Path):
    """A policy folder, or a Trainer checkpoint (no avgeo header) with the SFT tokenizer."""
    from avgeo.reasoning.reasoner.policy import load_policy

    if (d / "avgeo_reasoner.json").is_file():
        return load_policy(d)[:2]
    import torch
    from transformers import AutoModelForCausalLM

    model, tok, _ = load_policy(tok_dir)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    return model, tok


def paired(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
           n_boot: int = 2000, seed: int = 0) -> str:
    """b − a on the same examples: mean reward and median error, with 95 % paired-bootstrap
    intervals (examples resampled together), so a difference can be told from noise."""
    rng = np.random.default_rng(seed)
    n = len(a[0])
    idx = rng.integers(0, n, size=(n_boot, n))
    d_r = b[0][idx].mean(1) - a[0][idx].mean(1)
    d_m = np.median(b[1][idx], 1) - np.median(a[1][idx], 1)
    lo_r, hi_r = np.percentile(d_r, [2.5, 97.5])
    lo_m, hi_m = np.percentile(d_m, [2.5, 97.5])
    wins = float(np.mean(b[0] > a[0])), float(np.mean(b[0] < a[0]))
    return (f"mean reward {b[0].mean() - a[0].mean():+.3f} [95% CI {lo_r:+.3f}, {hi_r:+.3f}]; "
            f"median error {np.median(b[1]) - np.median(a[1]):+.0f} km "
            f"[{lo_m:+.0f}, {hi_m:+.0f}]; higher reward on {wins[0]:.0%} of examples, "
            f"lower on {wins[1]:.0%}")


def reeval(out_dir: Path, report: dict, n: int, seed: int, grpo: Path | None
           ) -> tuple[dict, str]:
    """fusion, untrained, sft, grpo scored on one fresh held-out simulated set, and the
    paired GRPO − SFT difference."""
    import torch

    from avgeo.reasoning.reasoner.policy import PolicyConfig, build_policy, load_policy
    from avgeo.reasoning.reasoner.simulate import simulate
    from avgeo.reasoning.reasoner.train import (
        TrainConfig,
        cpu_threads,
        evaluate_fusion,
        evaluate_policy,
        policy_completions,
        score_completions,
        summarize_scores,
    )

    conf = report.get("config", {})
    from avgeo.reasoning.reasoner.engine import trained_prompt_config

    cfg = TrainConfig(max_completion_tokens=int(conf.get("max_completion_tokens", 88)),
                      prompt=trained_prompt_config({"config": conf}))
    held = simulate(n, seed=seed)
    truths = [e.truth for e in held]
    stages: dict = {"fusion": asdict(evaluate_fusion(held, cfg))}
    rows: dict = {}
    sft_dir = out_dir / "sft_policy"
    grpo = grpo or out_dir / "policy"
    with cpu_threads(cfg.cpu_threads), torch.no_grad():
        if sft_dir.is_dir():
            model, tok, _ = load_policy(sft_dir)
            pol = conf.get("policy") or {
                "hidden_size": model.config.hidden_size,
                "intermediate_size": model.config.intermediate_size,
                "num_layers": model.config.num_hidden_layers,
                "num_heads": model.config.num_attention_heads,
                "max_positions": model.config.max_position_embeddings}
            fresh = build_policy(tok, PolicyConfig(**pol)).eval()
            stages["untrained"] = asdict(evaluate_policy(fresh, tok, held, cfg))
            comps = policy_completions(model, tok, held, cfg)
            sc = score_completions(comps, truths, cfg.reward)
            stages["sft"] = asdict(summarize_scores(sc))
            rows["sft"] = (sc.reward, sc.error_km)
        if grpo.is_dir():
            model, tok = _load_any(grpo, sft_dir)
            comps = policy_completions(model, tok, held, cfg)
            sc = score_completions(comps, truths, cfg.reward)
            stages["grpo"] = asdict(summarize_scores(sc))
            rows["grpo"] = (sc.reward, sc.error_km)
    diff = f"GRPO − SFT, paired: {paired(rows['sft'], rows['grpo'])}" \
        if {"sft", "grpo"} <= rows.keys() else ""
    return stages, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--reeval", type=int, default=0, help="fresh held-out examples to score")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--real", type=Path, default=None, help="an `avgeo extract` folder")
    ap.add_argument("--policy", type=Path, default=None,
                    help="policy for --real (default OUT_DIR/policy)")
    ap.add_argument("--grpo", type=Path, default=None,
                    help="with --reeval: the GRPO policy or checkpoint to score "
                         "(default OUT_DIR/policy)")
    a = ap.parse_args()
    report = json.loads((a.out_dir / "report.json").read_text()) \
        if (a.out_dir / "report.json").is_file() else {}
    stages = {k: report[k] for k in ("fusion", "untrained", "sft", "grpo") if k in report}
    diff = ""
    if a.reeval:
        stages, diff = reeval(a.out_dir, report, a.reeval, a.seed, a.grpo)
        print(f"held-out: {a.reeval} simulated examples, seed {a.seed}\n")
    if stages:
        print("| policy     |    n | parse | reward | median km |  mean km | cont | country |")
        print("|------------|------|-------|--------|-----------|----------|------|---------|")
        for name, r in stages.items():
            print(_row(name, r))
    if diff:
        print(f"\n{diff}")
    hist = [h["reward"] for h in report.get("grpo_history", []) if "reward" in h] \
        or _metrics_rewards(a.out_dir / "run" / "grpo" / "metrics.csv")
    if hist:
        k = max(1, len(hist) // 5)
        print(f"\nGRPO mean training reward: first {k} steps {np.mean(hist[:k]):.3f}, "
              f"last {k} steps {np.mean(hist[-k:]):.3f} ({len(hist)} steps)")
    if a.real is not None:
        real_table(a.real, a.policy or (a.out_dir / "policy"))


if __name__ == "__main__":
    main()
