"""Train the shipped unconditional flow prior on GeoCLIP's MP-16 gallery coordinates and compare
its held-out NLL with a vMF mixture and a vMF-kernel KDE; writes weights + metrics JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from avgeo.precision import manifold as S2
from avgeo.precision.baselines import VMFKDE, VMFMixture
from avgeo.precision.train import FlowConfig, train_flow

WEIGHTS = Path(__file__).resolve().parents[1] / "src/avgeo/precision/weights/prior_mp16.pt"


def gallery_csv() -> Path:
    spec = importlib.util.find_spec("geoclip")  # locate without importing (needs transformers)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the geoclip wheel is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "model/gps_gallery/coordinates_100K.csv"


def split(seed: int = 0) -> dict[str, torch.Tensor]:
    """Exact duplicate coordinates removed first (they would leak across the split and reward
    memorising points), then 10 % test, 5 % validation, the rest train."""
    df = pd.read_csv(gallery_csv()).drop_duplicates().reset_index(drop=True)
    x = S2.from_latlon(torch.tensor(df["LAT"].to_numpy()), torch.tensor(df["LON"].to_numpy()))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test, n_val = len(x) // 10, len(x) // 20
    return {"test": x[perm[:n_test]], "val": x[perm[n_test:n_test + n_val]],
            "train": x[perm[n_test + n_val:]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(WEIGHTS))
    ap.add_argument("--components", type=int, default=512, help="vMF mixture base of the flow")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--n-freq", type=int, default=256)
    ap.add_argument("--freq-max", type=float, default=256.0)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--steps", type=int, default=32, help="ODE steps for the exact NLL")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--resume", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    data = split()
    print(f"# python scripts/train_flow_prior.py {' '.join(sys.argv[1:])}")
    print(f"train {len(data['train'])} val {len(data['val'])} test {len(data['test'])} "
          "(deduplicated MP-16 gallery, seed 0)")
    rows: dict[str, float] = {}
    if not args.skip_baselines:
        for k in (64, 256):
            t0 = time.time()
            m = VMFMixture.fit(data["train"], k=k, iters=200)
            rows[f"vMF mixture K={k}"] = -float(m.log_prob(data["test"]).mean())
            print(f"vMF mixture K={k}: {rows[f'vMF mixture K={k}']:.4f} ({time.time() - t0:.0f}s)")
        t0 = time.time()
        val_sub = data["val"][:2000]
        coarse = tuple(10 ** (3.5 + 0.25 * i) for i in range(9))
        kde, _ = VMFKDE.fit(data["train"], val_sub, coarse)
        lk = math.log10(kde.kappa)
        fine = tuple(10 ** (lk + 0.0625 * i) for i in range(-3, 4))
        kde, _ = VMFKDE.fit(data["train"], data["val"], fine)
        rows["vMF KDE"] = -float(kde.log_prob(data["test"]).mean())
        print(f"vMF KDE kappa={kde.kappa:.0f} (bandwidth {6371 / math.sqrt(kde.kappa):.1f} km): "
              f"{rows['vMF KDE']:.4f} ({time.time() - t0:.0f}s)")
    cfg = FlowConfig(hidden=args.hidden, depth=args.depth, n_freq=args.n_freq,
                     freq_max=args.freq_max, batch_size=args.batch_size, lr=args.lr,
                     epochs=args.epochs, base="vmf_mixture", base_components=args.components,
                     base_iters=100)
    desc = {"source": "geoclip wheel model/gps_gallery/coordinates_100K.csv (MP-16)",
            "dedup": True, "split_seed": 0, "n_train": len(data["train"]),
            "n_val": len(data["val"]), "n_test": len(data["test"])}
    t0 = time.time()
    model = train_flow(data["train"], None, cfg, out=args.out, resume=args.resume,
                       data_desc=desc, max_seconds=args.max_seconds)
    train_s = time.time() - t0
    with torch.no_grad():
        rows[f"flow base alone (vMF mixture K={args.components})"] = -float(
            model.base.log_prob(data["test"]).mean())
    t0 = time.time()
    val_nll = -float(model.log_prob(data["val"].float(), steps=args.steps).mean())
    nll = -model.log_prob(data["test"].float(), steps=args.steps).double()
    rows["flow (exact NLL)"] = float(nll.mean())
    print(f"flow exact NLL on test with {args.steps} RK4 steps: {time.time() - t0:.0f}s; "
          f"val {val_nll:.4f}; training {train_s:.0f}s")
    print("\nheld-out NLL (nats, density per steradian; lower is better)")
    for k, v in rows.items():
        print(f"  {k:44s} {v:8.4f}")
    size = Path(args.out).stat().st_size
    print(f"weights {args.out}: {size / 1e6:.2f} MB")
    metrics = {"test_nll": rows, "val_nll_flow": val_nll, "ode_steps": args.steps,
               "train_seconds": train_s, "size_bytes": size, "argv": sys.argv[1:]}
    Path(args.out).with_suffix(".json").write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
