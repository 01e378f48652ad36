"""Comparison table of the learned reasoner: the fusion engine (rule-based reference),
untrained, SFT-only and SFT+GRPO policies on a held-out simulated set, GRPO's mean training
reward early vs late, and (with --real) what a policy says on real extracted atoms next to
the fusion engine's answer.

    python scripts/reasoner_table.py OUT_DIR            # reads OUT_DIR/report.json
    python scripts/reasoner_table.py OUT_DIR --reeval 300 --seed 7
        # re-scores OUT_DIR/sft_policy and OUT_DIR/policy on a fresh held-out set
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--reeval", type=int, default=0, help="fresh held-out examples to score")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--real", type=Path, default=None, help="an `avgeo extract` folder")
    ap.add_argument("--policy", type=Path, default=None,
                    help="policy for --real (default OUT_DIR/policy)")
    a = ap.parse_args()
    report = json.loads((a.out_dir / "report.json").read_text()) \
        if (a.out_dir / "report.json").is_file() else {}
    stages = {k: report[k] for k in ("fusion", "untrained", "sft", "grpo") if k in report}
    if a.reeval:
        from avgeo.reasoning.reasoner.policy import load_policy
        from avgeo.reasoning.reasoner.simulate import simulate
        from avgeo.reasoning.reasoner.train import TrainConfig, evaluate_policy

        cfg = TrainConfig(max_completion_tokens=88)
        held = simulate(a.reeval, seed=a.seed)
        for name, sub in (("sft", "sft_policy"), ("grpo", "policy")):
            if (a.out_dir / sub).is_dir():
                model, tok, _ = load_policy(a.out_dir / sub)
                stages[name] = asdict(evaluate_policy(model, tok, held, cfg))
    if stages:
        print("| policy     |    n | parse | reward | median km |  mean km | cont | country |")
        print("|------------|------|-------|--------|-----------|----------|------|---------|")
        for name, r in stages.items():
            print(_row(name, r))
    hist = [h["reward"] for h in report.get("grpo_history", []) if "reward" in h]
    if hist:
        k = max(1, len(hist) // 5)
        print(f"\nGRPO mean training reward: first {k} steps {np.mean(hist[:k]):.3f}, "
              f"last {k} steps {np.mean(hist[-k:]):.3f} ({len(hist)} steps)")
    if a.real is not None:
        real_table(a.real, a.policy or (a.out_dir / "policy"))


if __name__ == "__main__":
    main()
