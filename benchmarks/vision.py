"""Benchmark of the OCR text engine: OCR cost per frame by image size, peak RSS of the
vision path, and the video frame-selection rate.

Run: .venv/bin/python benchmarks/vision.py [--media-dir ../shared/data/media]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CMD = ".venv/bin/python benchmarks/vision.py"


def _sign(width: int) -> Image.Image:
    """A street scene stand-in: noise background with a sign of two text lines."""
    h = width * 3 // 4
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((h, width, 3)) * 80 + 90).astype(np.uint8))
    font_path = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
    size = max(10, width // 24)
    font = ImageFont.truetype(font_path, size) if Path(font_path).exists() else None
    d = ImageDraw.Draw(img)
    d.rectangle((width // 8, h // 4, width * 7 // 8, h // 2), fill=(20, 90, 40))
    d.text((width // 8 + size, h // 4 + size // 2), "Hauptstrasse 12", font=font,
           fill=(255, 255, 255))
    d.text((width // 8 + size, h // 4 + 2 * size), "www.beispiel.de", font=font,
           fill=(255, 255, 255))
    return img


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--media-dir", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data" / "media")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"$ {CMD} --media-dir {args.media_dir}")

    from avgeo.perception.base import EngineContext
    from avgeo.perception.vision.engine import TextEngine, select_frames
    from avgeo.perception.vision.gazetteer import default_gazetteer
    from avgeo.perception.vision.ocr import default_ocr, ocr_available

    ok, why = ocr_available()
    if not ok:
        print(f"OCR unavailable: {why}")
        return 1
    print(f"rss at start: {_rss_mb():.0f} MB")
    t = time.perf_counter()
    default_gazetteer()
    print(f"gazetteer load: {time.perf_counter() - t:.2f} s, peak rss {_rss_mb():.0f} MB")

    ocr = default_ocr()
    print("\nOCR cost per frame (probe + recognition; synthetic sign on noise)")
    print(f"{'width_px':>9} {'mean_s':>8} {'min_s':>7} {'scripts':>20}")
    for width in (320, 640, 1280, 1920):
        img = _sign(width)
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            r = ocr.read(img)
            times.append(time.perf_counter() - t)
        print(f"{width:>9} {np.mean(times):>8.2f} {np.min(times):>7.2f} "
              f"{','.join(r.packs):>20}")

    engine = TextEngine()
    signs = sorted(args.media_dir.glob("sign_*"))
    if signs:
        from avgeo.media import open_media

        print("\nengine on the shared sign photos")
        for p in signs:
            t = time.perf_counter()
            atoms = engine.atoms(open_media(p), EngineContext())
            print(f"  {p.name:22s} {time.perf_counter() - t:6.2f} s  {len(atoms):2d} atoms")
    print(f"peak rss of the vision path: {_rss_mb():.0f} MB (goal < 600 MB)")

    video = args.media_dir / "carlsbad_gopro_max.mp4"
    if video.exists():
        from avgeo.media import open_media

        m = open_media(video)
        t = time.perf_counter()
        frames = list(m.frames(fps=None))
        t_dec = time.perf_counter() - t
        t = time.perf_counter()
        kept = select_frames(iter(frames), max_frames=8)
        t_sel = time.perf_counter() - t
        print(f"\nvideo frame selection: {len(frames)} frames decoded in {t_dec:.2f} s, "
              f"selected {len(kept)} in {t_sel:.2f} s = {len(frames) / max(t_sel, 1e-9):.0f} "
              f"frames/s (selection only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
