"""Comparison table of the learned reasoner: untrained vs SFT-only vs SFT+GRPO policies on a
held-out simulated set, plus GRPO's mean training reward early vs late.

    python scripts/reasoner_table.py OUT_DIR            # reads OUT_DIR/report.json
    python scripts/reasoner_table.py OUT_DIR --reeval 300 --seed 7
        # re-scores OUT_DIR/sft_policy and OUT_DIR/policy on a fresh held-out set
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np


def _row(name: str, r: dict) -> str:
    return (f"| {name:<10} | {r['n']:>4} | {r['parse_rate']:.2f} | {r['mean_reward']:.3f} | "
            f"{r['median_error_km']:>8.0f} | {r['mean_error_km']:>8.0f} | "
            f"{r['continent_acc']:.2f} | {r['country_acc']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--reeval", type=int, default=0, help="fresh held-out examples to score")
    ap.add_argument("--seed", type=int, default=12345)
    a = ap.parse_args()
    report = json.loads((a.out_dir / "report.json").read_text())
    stages = {k: report[k] for k in ("untrained", "sft", "grpo") if k in report}
    if a.reeval:
        from avgeo.reasoning.reasoner.policy import load_policy
        from avgeo.reasoning.reasoner.simulate import simulate
        from avgeo.reasoning.reasoner.train import TrainConfig, evaluate_policy

        cfg = TrainConfig(max_completion_tokens=80)
        held = simulate(a.reeval, seed=a.seed)
        for name, sub in (("sft", "sft_policy"), ("grpo", "policy")):
            if (a.out_dir / sub).is_dir():
                model, tok, _ = load_policy(a.out_dir / sub)
                stages[name] = asdict(evaluate_policy(model, tok, held, cfg))
    print("| policy     |    n | parse | reward | median km |  mean km | cont | country |")
    print("|------------|------|-------|--------|-----------|----------|------|---------|")
    for name, r in stages.items():
        print(_row(name, r))
    hist = [h["reward"] for h in report.get("grpo_history", []) if "reward" in h]
    if hist:
        k = max(1, len(hist) // 5)
        print(f"\nGRPO mean training reward: first {k} steps {np.mean(hist[:k]):.3f}, "
              f"last {k} steps {np.mean(hist[-k:]):.3f} ({len(hist)} steps)")


if __name__ == "__main__":
    main()
