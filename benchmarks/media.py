"""Media decoding benchmark: audio decode+resample speed (× realtime) on the shared files,
1 fps frame sampling speed on a synthetic 1080p H.264 clip against a decode-everything
baseline, and peak RSS of a streaming run extrapolated to a 2 h file.

    python benchmarks/media.py [--seconds 60] [--repeats 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "media"
AUDIO_FILES = ["seattle_xc563936.mp3", "wuhan_enf_ref001.wav", "colombia_spinetail.wav",
               "jfk_speech.flac"]


def _hwm_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ---- audio -------------------------------------------------------------------------------
def _naive_audio(path: Path, sr: int) -> np.ndarray:
    """Baseline: decode everything into memory, then polyphase-resample with SciPy."""
    from math import gcd

    from scipy.signal import resample_poly

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        native = s.codec_context.sample_rate
        to_float = av.AudioResampler(format="fltp", rate=native)
        parts = [o.to_ndarray() for f in c.decode(s) for o in to_float.resample(f)]
    x = np.concatenate(parts, axis=1).mean(axis=0)
    g = gcd(sr, native)
    return resample_poly(x, sr // g, native // g).astype(np.float32)


def bench_audio(data: Path, repeats: int) -> list[dict]:
    from avgeo.media import open_media

    rows = []
    for name in AUDIO_FILES:
        path = data / name
        if not path.exists():
            print(f"  (skipping {name}: not found)")
            continue
        m = open_media(path)
        for sr in (48000, 16000):
            ours = _best(lambda m=m, sr=sr: sum(c.samples.size for c in
                                                m.audio_chunks(sr, chunk_s=30.0)), repeats)
            base = _best(lambda path=path, sr=sr: _naive_audio(path, sr), repeats)
            rows.append({"file": name, "native_hz": m.sample_rate, "target_hz": sr,
                         "duration_s": round(m.duration_s, 2),
                         "ours_x_realtime": round(m.duration_s / ours, 1),
                         "naive_x_realtime": round(m.duration_s / base, 1)})
            r = rows[-1]
            print(f"  {name:26s} {r['native_hz']:>6d} → {sr:>5d} Hz  "
                  f"ours {r['ours_x_realtime']:>8.1f}× realtime   "
                  f"decode-all+scipy {r['naive_x_realtime']:>8.1f}×")
    return rows


# ---- video -------------------------------------------------------------------------------
def make_clip(path: Path, seconds: int, fps: int = 30, size: str = "1920x1080",
              gop: int = 60) -> Path:
    """Synthetic 1080p H.264 (FFmpeg's testsrc2: moving, detailed content) with a
    keyframe every `gop` frames, as a phone would write."""
    g = av.filter.Graph()
    src = g.add("testsrc2", f"size={size}:rate={fps}:duration={seconds}")
    fmt = g.add("format", "pix_fmts=yuv420p")
    sink = g.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    g.configure()
    w, h = map(int, size.split("x"))
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast", "g": str(gop), "crf": "23"}
        n = 0
        while True:
            try:
                fr = sink.pull()
            except (av.error.EOFError, av.error.BlockingIOError):
                break
            fr.pts = n
            # testsrc2 marks every frame as I; x264 would obey and write no P-frames.
            fr.pict_type = av.video.frame.PictureType.NONE
            n += 1
            for p in vs.encode(fr):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return path


def _naive_frames(path: Path, fps: float) -> int:
    """Baseline: decode and convert every frame to RGB, keep one per 1/fps seconds."""
    kept, next_t = 0, 0.0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            img = f.to_ndarray(format="rgb24")
            if f.time is not None and f.time >= next_t - 1e-3:
                kept += img.shape[0] > 0
                next_t += 1 / fps
    return kept


def _child(mode: str, path: str, arg: float) -> None:
    """Run one streaming pass in a fresh process and report its peak RSS."""
    from avgeo.media import open_media

    m = open_media(path)
    base = _hwm_kb()
    t0 = time.perf_counter()
    n = 0
    if mode == "frames":
        for _ in m.frames(fps=1.0, max_side=int(arg) or None):
            n += 1
    else:
        for ch in m.audio_chunks(int(arg), chunk_s=30.0):
            n += ch.samples.size
    print(json.dumps({"base_kb": base, "peak_kb": _hwm_kb(), "n": n,
                      "wall_s": time.perf_counter() - t0, "duration_s": m.duration_s}))


def _run_child(mode: str, path: Path, arg: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path), str(arg)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_video(seconds: int, repeats: int, tmp: Path) -> dict:
    from avgeo.media import open_media

    t0 = time.perf_counter()
    clip = make_clip(tmp / "clip1080.mp4", seconds)
    half = make_clip(tmp / "half1080.mp4", max(2, seconds // 2))
    print(f"  generated {seconds} s of 1920×1080 H.264 in {time.perf_counter() - t0:.1f} s "
          f"({clip.stat().st_size / 1e6:.1f} MB)")
    m = open_media(clip)
    ours = _best(lambda: sum(1 for _ in m.frames(fps=1.0)), repeats)
    ours_small = _best(lambda: sum(1 for _ in m.frames(fps=1.0, max_side=512)), repeats)
    naive = _best(lambda: _naive_frames(clip, 1.0), max(1, repeats - 1))
    res = {"clip_s": m.duration_s,
           "ours_x_realtime": round(m.duration_s / ours, 1),
           "ours_max_side_512_x_realtime": round(m.duration_s / ours_small, 1),
           "naive_x_realtime": round(m.duration_s / naive, 1)}
    print(f"  1 fps sampling, full 1080p RGB:   {res['ours_x_realtime']:>6.1f}× realtime")
    print(f"  1 fps sampling, max_side=512:     {res['ours_max_side_512_x_realtime']:>6.1f}× "
          "realtime")
    print(f"  baseline, every frame → RGB:      {res['naive_x_realtime']:>6.1f}× realtime "
          "(goal for ours: ≥ 10×)")

    full, short = _run_child("frames", clip, 0), _run_child("frames", half, 0)
    res.update(_extrapolate("video frames 1 fps", full, short))
    return res


def _extrapolate(label: str, full: dict, short: dict) -> dict:
    """Peak RSS at two lengths → a line; streaming should give a flat one."""
    d_full, d_short = full["duration_s"], short["duration_s"]
    slope_kb_s = max(0.0, (full["peak_kb"] - short["peak_kb"]) / max(d_full - d_short, 1e-9))
    at_2h_mb = (full["peak_kb"] + slope_kb_s * (7200 - d_full)) / 1024
    print(f"  peak RSS ({label}): {full['peak_kb'] / 1024:.0f} MB over {d_full:.0f} s, "
          f"{short['peak_kb'] / 1024:.0f} MB over {d_short:.0f} s "
          f"(process base {full['base_kb'] / 1024:.0f} MB); "
          f"extrapolated to 2 h: {at_2h_mb:.0f} MB (goal < 1536 MB)")
    return {"peak_rss_mb": round(full["peak_kb"] / 1024, 1),
            "peak_rss_short_mb": round(short["peak_kb"] / 1024, 1),
            "rss_at_2h_mb": round(at_2h_mb, 1)}


def bench_long_audio(tmp: Path, seconds: int) -> dict:
    """Streaming a long recording: memory must not grow with its length."""
    def write(path: Path, dur_s: int) -> Path:
        with av.open(str(path), "w") as out:
            s = out.add_stream("flac", rate=48000, layout="stereo")
            rng = np.random.default_rng(0)
            block = 48000
            noise = (rng.standard_normal((2, block)) * 3000).astype(np.int16)
            for k in range(dur_s):
                fr = av.AudioFrame.from_ndarray(noise.T.reshape(1, -1).copy(), format="s16",
                                                layout="stereo")
                fr.sample_rate, fr.pts = 48000, k * block
                for p in s.encode(fr):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)
        return path

    long_, short_ = write(tmp / "long.flac", seconds), write(tmp / "short.flac", seconds // 2)
    full, short = _run_child("audio", long_, 16000), _run_child("audio", short_, 16000)
    print(f"  stereo 48 kHz FLAC → 16 kHz mono chunks: "
          f"{full['duration_s'] / full['wall_s']:.0f}× realtime")
    return _extrapolate("audio chunks", full, short)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60, help="length of the 1080p clip")
    ap.add_argument("--audio-seconds", type=int, default=600,
                    help="length of the long synthetic recording for the RSS check")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    print("$ " + shlex.join([Path(sys.executable).name, *sys.argv]))
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, PyAV {av.__version__}, "
          f"FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}")
    results: dict = {}
    print(f"audio decode + resample (best of {args.repeats}):")
    results["audio"] = bench_audio(args.data, args.repeats)
    with tempfile.TemporaryDirectory(prefix="avgeo-bench-") as d:
        print("video frame sampling:")
        results["video"] = bench_video(args.seconds, args.repeats, Path(d))
        print("long audio streaming:")
        results["long_audio"] = bench_long_audio(Path(d), args.audio_seconds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
