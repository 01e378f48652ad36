"""Calibration of the fused posterior on simulated held-out examples: coverage of the 50 % and
90 % credible regions the pipeline reports, coarse-cell NLL and median error, per weights file;
optionally fits weights on a separate simulated training set and scans a global temperature.

    .venv/bin/python scripts/fusion_calibration.py --n-train 1200 --train-seed 1 \\
        --n-eval 400 --eval-seed 2026 --weights old.json --cache /tmp/fusion_sim
"""

from __future__ import annotations

import argparse
import copyreg
import json
import pickle
import time
import weakref
from dataclasses import replace
from pathlib import Path

# Likelihoods keep a weak memo of rendered maps; it is a cache, so it is pickled empty.
copyreg.pickle(weakref.WeakKeyDictionary, lambda _d: (weakref.WeakKeyDictionary, ()))


def simulated(n: int, seed: int, cache: Path | None) -> list:
    """`simulate(n, seed)`, kept in `cache` between runs (simulating is the slow part)."""
    from avgeo.reasoning.reasoner.simulate import simulate

    f = cache / f"sim_{n}_{seed}.pkl" if cache else None
    if f is not None and f.is_file():
        return pickle.loads(f.read_bytes())
    t0 = time.perf_counter()
    sims = simulate(n, seed)
    print(f"simulated {n} (seed {seed}) in {time.perf_counter() - t0:.0f} s", flush=True)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(pickle.dumps(sims))
    return sims


def tempered(w, t: float):
    """Weights whose posterior is exp(t · (w0·log prior + Σ w·loglik)), normalised."""
    return replace(w, prior_weight=round(w.prior_weight * t, 4),
                   default_weight=round(w.default_weight * t, 4),
                   engine_weight={k: round(v * t, 4) for k, v in w.engine_weight.items()})


def show(label: str, c) -> None:
    cov = "  ".join(f"{q:.0%}: {c.coverage[q]:.3f}" for q in sorted(c.coverage))
    area = "  ".join(f"{c.median_area_km2[q]:,.0f}" for q in sorted(c.median_area_km2))
    print(f"{label:<34} n={c.n}  coverage {cov}  NLL {c.nll:.3f}  "
          f"median error {c.median_error_km:,.0f} km  median areas km² {area}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=0, help="fit weights on this many (0: no fit)")
    ap.add_argument("--train-seed", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=400)
    ap.add_argument("--eval-seed", type=int, default=2026)
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--weights", nargs="*", default=[], help="weights files to score")
    ap.add_argument("--temperatures", default="", help="comma list of global temperatures "
                                                       "applied to the fitted weights")
    ap.add_argument("--out", type=Path, help="write the fitted weights here")
    ap.add_argument("--cache", type=Path, help="folder keeping simulated examples")
    args = ap.parse_args()

    from avgeo.geo.grid import global_grid
    from avgeo.reasoning.fusion import FusionWeights
    from avgeo.reasoning.train_fusion import (
        calibration,
        fit_weights,
        sim_examples,
        split_heldout,
    )

    fitted, tr_held, tr_fit = None, [], []
    if args.n_train:
        # The split and fit `avgeo train fusion --sim N --sim-seed S` makes.
        tr = simulated(args.n_train, args.train_seed, args.cache)
        exs = sim_examples(tr, global_grid(3), 0.25, prefix=f"sim{args.train_seed}")
        mask = split_heldout([e.name for e in exs], 0.25)
        rep = fit_weights(exs, mask, l2=args.l2,
                          trained_on=f"{len(exs)} simulated (seed {args.train_seed})")
        fitted = rep.weights
        print(f"fit on {rep.n_train} in {rep.seconds:.0f} s: NLL train "
              f"{rep.train_nll_before:.3f} → {rep.train_nll_after:.3f}, held-out "
              f"{rep.heldout_nll_before:.3f} → {rep.heldout_nll_after:.3f}; prior "
              f"{fitted.prior_weight}, {fitted.engine_weight}", flush=True)
        idx = [int(e.name.rsplit("-", 1)[1]) for e in exs]
        tr_fit = [tr[i] for i, h in zip(idx, mask, strict=True) if not h]
        tr_held = [tr[i] for i, h in zip(idx, mask, strict=True) if h]
        if args.out:
            args.out.write_text(json.dumps(fitted.to_dict(), indent=2) + "\n")
    temps = [float(x) for x in args.temperatures.split(",") if x]
    if fitted is not None:
        print("-- training split (what a temperature would be chosen on)")
        for t in [1.0, *temps]:
            show(f"fitted × T={t:g}", calibration(tr_fit, tempered(fitted, t)))
        print("-- the CLI's held-out split")
        for label, w in (("untrained", FusionWeights()), ("fitted", fitted)):
            show(label, calibration(tr_held, w))
    ev = simulated(args.n_eval, args.eval_seed, args.cache)
    print(f"-- independent held-out set: simulate({args.n_eval}, seed={args.eval_seed})")
    scored = {"untrained (all weights 1)": FusionWeights(),
              "shipped (package default)": FusionWeights.load()}
    for p in args.weights:
        scored[p] = FusionWeights.load(p)
    if fitted is not None:
        scored["fitted"] = fitted
        for t in temps:
            scored[f"fitted × T={t:g}"] = tempered(fitted, t)
    for label, w in scored.items():
        show(label, calibration(ev, w))


if __name__ == "__main__":
    main()
