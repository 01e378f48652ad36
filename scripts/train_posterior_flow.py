"""The posterior-base flow experiment: simulate located examples with the reasoner's
simulator, fuse each one's atoms, train the refinement flow on (posterior draw, truth) pairs,
and evaluate it on held-out simulated examples against the fusion posterior alone; the figures
go to a .json beside the weights. Not shipped: on held-out examples it loses to the posterior
alone on NLL (see the .json). To ship a run, write it to
src/avgeo/precision/weights/posterior_flow.pt, where PosteriorFlow.load() looks.

    .venv/bin/python scripts/train_posterior_flow.py            # the reported run
    .venv/bin/python scripts/train_posterior_flow.py --sim 300 --eval 50 --out /tmp/pf.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from avgeo.precision.posterior_base import (
    Pairs,
    PosteriorFlow,
    default_config,
    evaluate,
    simulate_pairs,
    train_posterior_flow,
)

WEIGHTS = Path("runs/posterior_flow.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim", type=int, default=3000, help="training examples to simulate")
    ap.add_argument("--seed", type=int, default=1, help="simulation seed of the training set")
    ap.add_argument("--samples", type=int, default=128, help="posterior draws per example")
    ap.add_argument("--eval", type=int, default=300, help="held-out examples")
    ap.add_argument("--eval-seed", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=default_config().epochs)
    ap.add_argument("--max-seconds", type=float, default=0.0)
    ap.add_argument("--pairs", type=Path, default=None,
                    help="cache of the simulated pairs (read if present, else written)")
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    if args.eval_seed == args.seed:
        sys.exit("--eval-seed must differ from --seed (held-out examples)")
    t0 = time.monotonic()
    if args.pairs is not None and args.pairs.is_file():
        pairs = Pairs.load(args.pairs)
    else:
        pairs = simulate_pairs(args.sim, args.seed, args.samples, log=print)
        if args.pairs is not None:
            pairs.save(args.pairs)
    t_sim = time.monotonic() - t0
    cfg = default_config(epochs=args.epochs)
    t1 = time.monotonic()
    train_posterior_flow(pairs, cfg, out=args.out, max_seconds=args.max_seconds or None,
                         log=print, run_dir=args.out.with_name(args.out.stem + ".run"),
                         tensorboard=False)
    t_train = time.monotonic() - t1
    flow = PosteriorFlow.load(args.out)
    res = evaluate(flow, args.eval, args.eval_seed, log=print)
    res.pop("per_example")
    report = {"eval": res, "train_examples": len(pairs.truth), "train_seed": args.seed,
              "samples_per_example": pairs.x0.shape[1], "simulate_s": round(t_sim, 1),
              "train_s": round(t_train, 1), "torch": torch.__version__,
              "argv": sys.argv[1:]}
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"size {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
