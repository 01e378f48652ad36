"""Benchmark of the OCR text engine on both OCR paths (PP-OCRv4 text detector + readers,
and whole-frame Tesseract): cost per image by size, per shared photo and per video frame,
what each path reads from every sign/street/photo file (script, language, top-3
countries), peak RSS of each path (each in its own process), and the video
frame-selection rate.

Run: .venv/bin/python benchmarks/vision.py [--media-dir ../shared/data/media]
     [--paths detector,tesseract] [--repeat 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CMD = ".venv/bin/python benchmarks/vision.py"
PATHS = ("detector", "tesseract")
PHOTO_PREFIXES = ("sign_", "osv_", "arezzo", "lund")


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


def _mem_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB (Linux /proc)."""
    cur = peak = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            cur = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cur, peak


def _product(atoms) -> dict[str, float]:
    """Country weights of the script/language/phone/domain/currency atoms multiplied."""
    prod: dict[str, float] = {}
    for a in atoms:
        w = getattr(a.likelihood, "weights", None)
        if w is None or a.kind not in ("script", "language", "phone_prefix", "domain",
                                       "currency"):
            continue
        prod = dict(w) if not prod else {k: v * w.get(k, 1e-3) for k, v in prod.items()}
    return prod


def run_path(path: str, media_dir: Path, repeat: int) -> int:
    """All measurements for one OCR path, in this process."""
    from avgeo.media import open_media
    from avgeo.perception.base import EngineContext
    from avgeo.perception.vision.engine import TextEngine, select_frames
    from avgeo.perception.vision.gazetteer import default_gazetteer

    engine = TextEngine(backend=path)
    ok, why = engine.available()
    if not ok:
        print(f"[{path}] unavailable: {why}")
        return 1
    print(f"\n=== OCR path: {path} ===")
    t = time.perf_counter()
    ocr = engine.ocr
    if path == "detector":
        ocr._models()
    print(f"load: {time.perf_counter() - t:.2f} s, rss {_mem_mb()[0]:.0f} MB")
    t = time.perf_counter()
    default_gazetteer()
    print(f"gazetteer load: {time.perf_counter() - t:.2f} s")

    print("\nOCR cost per image (synthetic sign on noise, 4:3)")
    print(f"{'width_px':>9} {'mean_s':>8} {'min_s':>7}  lines read")
    for width in (320, 640, 1280, 1920):
        img = _sign(width)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            r = ocr.read(img)
            times.append(time.perf_counter() - t)
        print(f"{width:>9} {np.mean(times):>8.2f} {np.min(times):>7.2f}  {r.lines}")

    files = sorted(p for p in media_dir.iterdir() if p.name.startswith(PHOTO_PREFIXES))
    if files:
        print("\nengine on the shared photos (metadata off): s, script, language, top-3")
        for p in files:
            t = time.perf_counter()
            atoms = engine.atoms(open_media(p), EngineContext(use_metadata=False))
            dt = time.perf_counter() - t
            prod = _product(atoms)
            top = sorted(prod, key=lambda k: -prod[k])[:3]
            scripts = [a.value["script"] for a in atoms if a.kind == "script"]
            langs = [a.value["language"] for a in atoms if a.kind == "language"]
            places = [a.value["candidates"][0]["name"] for a in atoms if a.kind == "place_name"]
            print(f"  {p.name:30s} {dt:6.2f} s  script={','.join(scripts) or '-':16s} "
                  f"lang={','.join(langs) or '-':6s} top3={','.join(top) or '-':10s} "
                  f"places={places[:3]}")

    video = media_dir / "carlsbad_gopro_max.mp4"
    if video.exists():
        frames = select_frames(open_media(video).frames(fps=1.0), max_frames=8)
        times, n_atoms = [], 0
        for t_s, rgb in frames:
            t = time.perf_counter()
            n_atoms += len(engine.atoms_from_image(Image.fromarray(rgb), t_s, t_s + 1.0))
            times.append(time.perf_counter() - t)
        print(f"\nvideo frames ({video.name}, {rgb.shape[1]}x{rgb.shape[0]}): "
              f"{len(frames)} selected, OCR {np.mean(times):.2f} s/frame "
              f"(min {np.min(times):.2f}), {n_atoms} text atoms")
    print(f"\n[{path}] peak rss of the vision path: {_mem_mb()[1]:.0f} MB (goal < 600 MB)")
    return 0


def frame_selection(media_dir: Path) -> None:
    from avgeo.media import open_media
    from avgeo.perception.vision.engine import select_frames

    video = media_dir / "carlsbad_gopro_max.mp4"
    if not video.exists():
        return
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--media-dir", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data" / "media")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--paths", default=",".join(PATHS),
                    help="OCR paths to measure, each in its own process")
    ap.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.path:
        return run_path(args.path, args.media_dir, args.repeat)
    print(f"$ {CMD} --media-dir {args.media_dir} --paths {args.paths}")
    rc = 0
    for path in args.paths.split(","):
        # a fresh process per path: peak RSS is per process and never goes down
        rc |= subprocess.call([sys.executable, __file__, "--path", path, "--media-dir",
                               str(args.media_dir), "--repeat", str(args.repeat)])
    frame_selection(args.media_dir)
    return rc


if __name__ == "__main__":
    sys.exit(main())
