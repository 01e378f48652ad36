"""Benchmark of the acoustic-atom SAEs: training throughput, encode cost per second of audio,
and held-out R² of TopK vs mixture(+AR) at equal L0 on planted sequences.

Run: .venv/bin/python benchmarks/sae.py [--quick]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from avgeo.perception.audio.sae.model import SaeConfig, build_model
from avgeo.perception.audio.sae.synthetic import max_cosine, planted_sequences
from avgeo.perception.audio.sae.train import ArraySource, TrainConfig, train_sae


def main() -> None:
    quick = "--quick" in sys.argv
    print("command: .venv/bin/python benchmarks/sae.py" + (" --quick" if quick else ""))
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 CPU thread")

    # Training throughput on BirdNET-sized inputs (1024-d), 256 latents, k=8.
    rng = np.random.default_rng(0)
    n = 4096 if quick else 16384
    emb = rng.standard_normal((n, 1024)).astype(np.float32)
    src = ArraySource(emb, np.repeat(np.arange(n // 64).astype(str), 64),
                      np.tile(np.arange(64) * 3.0, n // 64))
    for kw in ({}, {"experts": 4, "ar": True}):
        cfg = SaeConfig(d_in=1024, n_latents=256, k=8, **kw)
        r = train_sae(src, cfg, TrainConfig(epochs=2, batch_size=256, holdout=0.0))
        print(f"train {cfg.variant:>14}: {r.stats['windows_per_s']:.0f} windows/s "
              f"(1024-d, 256 latents, k=8)")
        m = build_model(cfg).eval()
        x = torch.from_numpy(emb[:1000])
        with torch.no_grad():
            m.encode(x[:10])
            t = time.perf_counter()
            for _ in range(5):
                m.encode(x, x, torch.ones(1000, dtype=torch.bool))
            per_win = (time.perf_counter() - t) / 5000
        # One 3 s BirdNET window per 3 s of audio (no overlap).
        print(f"encode {cfg.variant:>13}: {per_win * 1e6:.1f} µs/window = "
              f"{per_win / 3.0 * 1e6:.2f} µs per second of audio (BirdNET itself: ~28 ms/window)")

    # Held-out comparison at equal L0 on planted sequences with temporal structure.
    print("\nplanted sequences: d=64, 128 atoms in 4 scenes (32 each, scene background norm B),"
          " k=4, atoms persist w.p. 0.9 per 3 s step; SAEs: 160 latents, k=4, 8 epochs; "
          "held-out 30 s blocks (20 %)")
    print(f"{'data':<22}{'variant':<16}{'R2 held-out':>12}{'L0':>6}{'dead':>7}{'MMCS':>7}")
    settings = [(0.05, 2.0)] if quick else [(0.05, 2.0), (0.05, 0.0), (0.15, 2.0)]
    for noise, bg in settings:
        p = planted_sequences(n_seq=500, seq_len=16, d=64, n_atoms=128, k=4, scenes=4,
                              persist=0.9, noise=noise, background=bg, seed=2)
        src = ArraySource(p.emb, p.file, p.start_s)
        tc = TrainConfig(epochs=8, lr=2e-3, batch_size=128, holdout=0.2, block_s=100)
        for kw in ({}, {"ar": True}, {"experts": 4}, {"experts": 4, "ar": True}):
            r = train_sae(src, SaeConfig(d_in=64, n_latents=160, k=4, aux_k=64, **kw), tc)
            mc = max_cosine(r.model.W_dec.detach().numpy(), p.atoms).mean()
            print(f"{f'noise {noise} B {bg}':<22}{r.model.cfg.variant:<16}"
                  f"{r.stats['r2']:>12.4f}{r.stats['l0']:>6.2f}{r.stats['dead_frac']:>7.2f}"
                  f"{mc:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
