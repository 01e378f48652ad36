"""PP-OCRv4 text-line detection (DBNet), direction classification and recognition (CTC) on
ONNX Runtime, with the ONNX models shipped inside the rapidocr-onnxruntime wheel.

Pre- and post-processing follow PaddleOCR's (DB boxes from the probability map, unclip,
CTC decoding), as RapidOCR ports them, but in numpy and Pillow: OpenCV, which RapidOCR's
own code imports, costs ~50 MB of resident memory for a few resizes and contour walks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGE = "rapidocr-onnxruntime==1.4.4"
INSTALL_HINT = (f"pip install {PACKAGE} (its wheel bundles the PP-OCRv4 detection, direction "
                "and recognition ONNX models; it installs onnxruntime)")
MODEL_FILES = {"det": "ch_PP-OCRv4_det_infer.onnx",
               "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
               "rec": "ch_PP-OCRv4_rec_infer.onnx"}

# PaddleOCR's defaults for these models (RapidOCR's config.yaml).
DB_THRESH = 0.3  # probability → text pixel
DB_BOX_THRESH = 0.5  # mean probability inside a box to keep it
DB_UNCLIP = 1.6  # DB predicts shrunk text kernels: grow them back by area·r/perimeter
DB_MIN_SIZE = 3
DB_MAX_CANDIDATES = 1000
CLS_SHAPE = (48, 192)
CLS_THRESH = 0.9
REC_HEIGHT = 48
REC_MIN_WIDTH = 320
BATCH = 6


def model_dir() -> Path | None:
    """The folder of the bundled ONNX models (found without importing the package, whose
    __init__ imports OpenCV)."""
    spec = find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def available() -> tuple[bool, str]:
    """(True, "") when onnxruntime and the three bundled models are installed."""
    if find_spec("onnxruntime") is None:
        return False, f"onnxruntime is not installed; {INSTALL_HINT}"
    d = model_dir()
    if d is None:
        return False, f"rapidocr-onnxruntime (the PP-OCRv4 models) is not installed; {INSTALL_HINT}"
    missing = [f for f in MODEL_FILES.values() if not (d / f).is_file()]
    if missing:
        return False, f"PP-OCRv4 models missing from {d}: {', '.join(missing)}; {INSTALL_HINT}"
    return True, ""


def _session(path: Path, threads: int | None):
    """A CPU session that keeps peak memory low. RapidOCR turns the memory arena off and
    leaves memory patterns on: with a 736×1408 detector input that peaked at +426 MB over
    the loaded model here, the arena with patterns off at +175 MB; the arena is shrunk
    after each run (see `_Session`) so activations do not stay resident."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.enable_cpu_mem_arena = True
    so.enable_mem_pattern = False
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return _Session(sess)


class _Session:
    """One input, first output; the arena hands its memory back after every run."""

    def __init__(self, session) -> None:
        import onnxruntime as ort

        self.session = session
        self.input = session.get_inputs()[0].name
        self.opts = ort.RunOptions()
        self.opts.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x}, self.opts)[0]


def _normalise(img: Image.Image) -> np.ndarray:
    """RGB image → CHW float32 in BGR order (PaddleOCR trained on cv2-decoded images),
    scaled to [-1, 1]."""
    a = np.asarray(img, dtype=np.float32)[:, :, ::-1]
    return ((a / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


# --------------------------------------------------------------------------- DB boxes


def _components(mask: np.ndarray, limit: int) -> list[np.ndarray]:
    """8-connected components of a boolean mask, each as an (n, 3) int array of pixel
    runs (row, x_first, x_last); at most `limit` of them, largest first."""
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    d = np.diff(padded, axis=1)
    rows, x0 = np.nonzero(d == 1)
    _, x1 = np.nonzero(d == -1)
    x1 = x1 - 1
    n = len(rows)
    if n == 0:
        return []
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    starts = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    for r in range(mask.shape[0] - 1):
        a0, a1, b1 = starts[r], starts[r + 1], starts[r + 2]
        if a0 == a1 or a1 == b1:
            continue
        # runs touch across rows when their column spans overlap or meet diagonally
        ov = (x0[a0:a1, None] <= x1[None, a1:b1] + 1) & (x0[None, a1:b1] <= x1[a0:a1, None] + 1)
        for i, j in zip(*np.nonzero(ov), strict=True):
            ri, rj = find(int(i) + a0), find(int(j) + a1)
            if ri != rj:
                parent[rj] = ri
    roots = np.array([find(i) for i in range(n)])
    order = np.argsort(roots, kind="stable")
    runs = np.stack([rows, x0, x1], axis=1)[order]
    cuts = np.nonzero(np.diff(roots[order]))[0] + 1
    comps = np.split(runs, cuts)
    comps.sort(key=lambda c: -int((c[:, 2] - c[:, 1] + 1).sum()))
    return comps[:limit]


def _hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull (Andrew's monotone chain) of (n, 2) points, counter-clockwise."""
    p = np.unique(pts, axis=0)
    if len(p) <= 2:
        return p.astype(np.float64)
    p = p[np.lexsort((p[:, 1], p[:, 0]))].tolist()

    def half(seq):
        out: list = []
        for q in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (q[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (q[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(q)
        return out

    lower, upper = half(p), half(p[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


@dataclass
class _Rect:
    center: np.ndarray
    u: np.ndarray  # unit vector along one side
    v: np.ndarray  # unit vector along the other
    w: float  # extent along u
    h: float  # extent along v

    def corners(self) -> np.ndarray:
        """Corners ordered top-left, top-right, bottom-right, bottom-left (image axes),
        as PaddleOCR's get_mini_boxes orders them."""
        c, hu, hv = self.center, self.u * self.w / 2, self.v * self.h / 2
        pts = sorted([c - hu - hv, c + hu - hv, c + hu + hv, c - hu + hv],
                     key=lambda p: p[0])
        left, right = sorted(pts[:2], key=lambda p: p[1]), sorted(pts[2:], key=lambda p: p[1])
        return np.array([left[0], right[0], right[1], left[1]], dtype=np.float64)


def _min_area_rect(pts: np.ndarray) -> _Rect:
    """Smallest-area enclosing rectangle of (n, 2) points (rotating calipers on the hull:
    one side of the optimum lies on a hull edge)."""
    hull = _hull(pts)
    if len(hull) == 1:
        return _Rect(hull[0], np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.0, 0.0)
    edges = np.roll(hull, -1, axis=0) - hull
    norms = np.linalg.norm(edges, axis=1)
    keep = norms > 0
    u = edges[keep] / norms[keep, None]
    v = np.stack([-u[:, 1], u[:, 0]], axis=1)
    pu, pv = hull @ u.T, hull @ v.T
    wu, wv = pu.max(0) - pu.min(0), pv.max(0) - pv.min(0)
    i = int(np.argmin(wu * wv))
    cu = (pu[:, i].max() + pu[:, i].min()) / 2
    cv = (pv[:, i].max() + pv[:, i].min()) / 2
    return _Rect(cu * u[i] + cv * v[i], u[i], v[i], float(wu[i]), float(wv[i]))


def _box_score(pred: np.ndarray, quad: np.ndarray) -> float:
    """Mean probability inside the quad (PaddleOCR's "fast" score)."""
    h, w = pred.shape
    x0 = int(np.clip(np.floor(quad[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(quad[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(quad[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(quad[:, 1].max()), 0, h - 1))
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    q = quad.astype(np.int32).astype(np.float64)  # cv2.fillPoly takes int vertices
    # inside a convex polygon: on the same side of every edge
    crosses = [(q[(k + 1) % 4, 0] - q[k, 0]) * (ys - q[k, 1])
               - (q[(k + 1) % 4, 1] - q[k, 1]) * (xs - q[k, 0]) for k in range(4)]
    inside = np.all([c >= 0 for c in crosses], axis=0) | np.all([c <= 0 for c in crosses],
                                                                 axis=0)
    region = pred[y0:y1 + 1, x0:x1 + 1]
    return float(region[inside].mean()) if inside.any() else 0.0


def db_boxes(pred: np.ndarray, out_w: int, out_h: int) -> list[np.ndarray]:
    """Text-line quadrilaterals (4×2, tl/tr/br/bl) from DBNet's probability map, in an
    image of `out_w` × `out_h` pixels."""
    h, w = pred.shape
    bitmap = pred > DB_THRESH
    dil = bitmap.copy()  # PaddleOCR dilates with a 2×2 kernel
    dil[1:, :] |= bitmap[:-1, :]
    dil[:, 1:] |= bitmap[:, :-1]
    dil[1:, 1:] |= bitmap[:-1, :-1]
    out = []
    for runs in _components(dil, DB_MAX_CANDIDATES):
        pts = np.concatenate([runs[:, [1, 0]], runs[:, [2, 0]]]).astype(np.float64)
        rect = _min_area_rect(pts)
        if min(rect.w, rect.h) < DB_MIN_SIZE:
            continue
        if _box_score(pred, rect.corners()) < DB_BOX_THRESH:
            continue
        # pyclipper's round-joined offset of a rectangle by d has the rectangle grown by
        # d on every side as its minimum-area box
        d = rect.w * rect.h * DB_UNCLIP / (2 * (rect.w + rect.h))
        grown = _Rect(rect.center, rect.u, rect.v, rect.w + 2 * d, rect.h + 2 * d)
        if min(grown.w, grown.h) < DB_MIN_SIZE + 2:
            continue
        q = grown.corners()
        q[:, 0] = np.clip(np.round(q[:, 0] / w * out_w), 0, out_w - 1)
        q[:, 1] = np.clip(np.round(q[:, 1] / h * out_h), 0, out_h - 1)
        if np.linalg.norm(q[0] - q[1]) <= 3 or np.linalg.norm(q[0] - q[3]) <= 3:
            continue
        out.append(q.astype(np.float32))
    out.sort(key=lambda q: (float(q[0, 1]), float(q[0, 0])))
    return out


# --------------------------------------------------------------------------- models


class PPOcr:
    """The three PP-OCRv4 models. `detect(image, scale)` → quads in image pixels;
    `classify(crops)` → upside-down flags; `recognise(crops)` → (text, confidence)."""

    def __init__(self, threads: int | None = None) -> None:
        ok, why = available()
        if not ok:
            from avgeo.errors import BackboneMissingError

            raise BackboneMissingError(why, INSTALL_HINT)
        from avgeo.errors import WeightsError

        d = model_dir()
        assert d is not None
        try:
            self.det = _session(d / MODEL_FILES["det"], threads)
            self.cls = _session(d / MODEL_FILES["cls"], threads)
            self.rec = _session(d / MODEL_FILES["rec"], threads)
            meta = self.rec.session.get_modelmeta().custom_metadata_map
            chars = meta["character"].splitlines()
        except Exception as exc:
            # onnxruntime's load errors (Fail, InvalidProtobuf, ...) derive from Exception
            # only; any of them, or a model without its dictionary, means broken weights
            raise WeightsError(f"cannot load the PP-OCRv4 models in {d}: {exc}",
                               f"reinstall them: {INSTALL_HINT}") from exc
        # CTC classes: blank, the dictionary, then a space (PaddleOCR's use_space_char)
        self.charset = ["", *chars, " "]

    def detect(self, image: Image.Image, scale: float) -> list[np.ndarray]:
        """Text lines found with the image scaled by `scale` (sides rounded to multiples
        of 32, as the network needs), returned in the image's own pixels."""
        w, h = image.size
        dw = max(32, round(w * scale / 32) * 32)
        dh = max(32, round(h * scale / 32) * 32)
        x = _normalise(image.convert("RGB").resize((dw, dh), Image.Resampling.BILINEAR))
        pred = self.det(x[None])[0, 0]
        return db_boxes(pred, w, h)

    def classify(self, crops: list[Image.Image]) -> list[bool]:
        """True for each crop the direction model finds upside down (p > 0.9)."""
        ch, cw = CLS_SHAPE
        out: list[bool] = []
        for i in range(0, len(crops), BATCH):
            batch = np.zeros((len(crops[i:i + BATCH]), 3, ch, cw), np.float32)
            for k, c in enumerate(crops[i:i + BATCH]):
                rw = min(cw, math.ceil(ch * c.width / max(1, c.height)))
                batch[k, :, :, :rw] = _normalise(c.resize((rw, ch), Image.Resampling.BILINEAR))
            probs = self.cls(batch)
            out += [bool(p.argmax() == 1 and p[1] > CLS_THRESH) for p in probs]
        return out

    def recognise(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        """(text, mean character probability) per line crop; batches of similar aspect
        ratio share a padded width, as in PaddleOCR."""
        res: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        ratios = [c.width / max(1, c.height) for c in crops]
        order = np.argsort(ratios)
        for i in range(0, len(crops), BATCH):
            idx = order[i:i + BATCH]
            max_ratio = max(REC_MIN_WIDTH / REC_HEIGHT, *(ratios[j] for j in idx))
            width = int(REC_HEIGHT * max_ratio)
            batch = np.zeros((len(idx), 3, REC_HEIGHT, width), np.float32)
            for k, j in enumerate(idx):
                rw = min(width, math.ceil(REC_HEIGHT * ratios[j]))
                batch[k, :, :, :rw] = _normalise(
                    crops[j].resize((rw, REC_HEIGHT), Image.Resampling.BILINEAR))
            probs = self.rec(batch)
            for k, j in enumerate(idx):
                res[j] = self._ctc(probs[k])
        return res

    def _ctc(self, probs: np.ndarray) -> tuple[str, float]:
        ids, p = probs.argmax(axis=1), probs.max(axis=1)
        keep = np.ones(len(ids), bool)
        keep[1:] = ids[1:] != ids[:-1]
        keep &= ids != 0
        text = "".join(self.charset[i] for i in ids[keep] if i < len(self.charset))
        return text, float(p[keep].mean()) if keep.any() else 0.0


@lru_cache(maxsize=1)
def default_ppocr() -> PPOcr:
    return PPOcr()
