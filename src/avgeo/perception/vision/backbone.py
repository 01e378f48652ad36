"""The opt-in `image_backbone` engine: a CLIP/SigLIP image encoder from a local folder gives
GeoCLIP gallery retrieval (a likelihood over H3 cells) and zero-shot geographic concepts."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from avgeo.atoms import Atom
from avgeo.errors import BackboneMissingError, WeightsError
from avgeo.perception.base import EngineContext, register
from avgeo.perception.local_model import resolve_model_dir
from avgeo.reasoning.likelihood import CellLikelihood, CountryLikelihood

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from avgeo.media import Media

ENV_VAR = "AVGEO_IMAGE_BACKBONE"
ENGINE = "image_backbone"
SETUP_HINT = (f"set {ENV_VAR} (or the image_backbone option) to a local CLIP/SigLIP folder "
              "saved with save_pretrained (e.g. openai/clip-vit-large-patch14 for GeoCLIP)")
#: GeoCLIP's image MLP was trained on OpenAI CLIP ViT-L/14 projections.
GEOCLIP_IMAGE_DIM = 768
GEOCLIP_SIGMAS = (2.0**0, 2.0**4, 2.0**8)
RETRIEVAL_RES = 3
CONCEPT_PROMPT = "a photo with {}"
#: Bump when the location encoder or the gallery embedding code changes.
GALLERY_CACHE_VERSION = 1

#: Groups of mutually exclusive geographic concepts, scored zero-shot with the text tower.
#: Each group's alternatives compete in one softmax; the last ones are neutral escapes so
#: that a group is not forced to pick a place-specific concept for an unrelated photo.
CONCEPT_GROUPS: dict[str, tuple[str, ...]] = {
    "climate / vegetation": (
        "tropical rainforest", "desert and bare sand", "snow on the ground", "palm trees",
        "conifer forest", "broadleaf deciduous trees", "savanna grassland",
        "rice paddies", "green temperate farmland"),
    "architecture": (
        "red brick houses", "whitewashed houses", "timber-framed houses",
        "wooden houses painted red", "adobe buildings", "concrete apartment blocks",
        "glass skyscrapers", "pagoda roofs", "mosque minarets", "corrugated iron roofs"),
    "road centre line": (
        "a yellow center line on the road", "a white center line on the road",
        "a road without markings", "no road"),
    "road bollards": (
        "white roadside bollards with a black band", "red and white roadside bollards",
        "yellow roadside bollards", "no roadside bollards"),
    "driving side": ("cars driving on the left side of the road",
                     "cars driving on the right side of the road", "no cars"),
    "sign script": (
        "signs written in Latin letters", "signs written in Cyrillic letters",
        "signs written in Arabic script", "signs written in Chinese characters",
        "signs written in Japanese", "signs written in Korean Hangul",
        "signs written in Devanagari", "signs written in Thai script",
        "signs written in Greek letters", "signs written in Hebrew", "no signs"),
    "utility poles": ("wooden utility poles", "concrete utility poles",
                      "no utility poles"),
}


# --------------------------------------------------------------------------- loading


def resolve_path(options: dict[str, Any] | None = None) -> Path:
    """The configured image-backbone folder; BackboneMissingError when unset or incomplete."""
    return resolve_model_dir(options, "image_backbone", ENV_VAR, "image backbone", SETUP_HINT)


@dataclass
class ImageBackbone:
    """A loaded encoder. `family` is "clip", "clip_vision" (no text tower) or "siglip"."""

    family: str
    path: Path
    model: Any
    processor: Any
    tokenizer: Any
    dim: int

    @property
    def has_text(self) -> bool:
        return self.tokenizer is not None and self.family in ("clip", "siglip")

    @property
    def geoclip_compatible(self) -> bool:
        return self.family in ("clip", "clip_vision") and self.dim == GEOCLIP_IMAGE_DIM


def _image_processor(path: Path) -> Any:
    # The default CLIP processor needs torchvision; the PIL one gives the same pixels.
    try:
        from transformers import CLIPImageProcessorPil as Proc  # type: ignore[attr-defined]
    except ImportError:
        from transformers import CLIPImageProcessor as Proc
    try:
        return Proc.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"image backbone has no usable preprocessor_config.json: {path}",
                           SETUP_HINT) from exc


@lru_cache(maxsize=2)
def _load(path: str, mtime: float) -> ImageBackbone:
    import transformers as tf

    p = Path(path)
    cfg = json.loads((p / "config.json").read_text())
    mt = str(cfg.get("model_type", ""))
    try:
        if mt == "clip":
            family, model = "clip", tf.CLIPModel.from_pretrained(path, local_files_only=True)
            dim = int(model.config.projection_dim)
        elif mt == "clip_vision_model":
            family = "clip_vision"
            model = tf.CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True)
            dim = int(model.config.projection_dim)
        elif mt == "siglip":
            family, model = "siglip", tf.SiglipModel.from_pretrained(path, local_files_only=True)
            dim = int(model.config.vision_config.hidden_size)
        else:
            raise BackboneMissingError(f"unsupported image backbone type {mt!r} in {p}",
                                       "use a CLIP or SigLIP checkpoint")
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"cannot load image backbone from {p}: {exc}", SETUP_HINT) from exc
    model.eval()
    if family == "siglip":
        proc = tf.AutoImageProcessor.from_pretrained(path, local_files_only=True)
    else:
        proc = _image_processor(p)
    tok = None
    if family != "clip_vision":
        try:
            tok = tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError):
            tok = None  # image-only use still works; concepts are skipped with a note
    return ImageBackbone(family, p, model, proc, tok, dim)


def load_backbone(path: str | Path) -> ImageBackbone:
    """Load (cached per folder and config time) the encoder saved in `path`."""
    p = resolve_path({"image_backbone": str(path)})
    return _load(str(p.resolve()), (p / "config.json").stat().st_mtime)


def _features(out: Any) -> torch.Tensor:
    import torch

    # transformers 5 may wrap projected features in an output object.
    if isinstance(out, torch.Tensor):
        return out
    for key in ("image_embeds", "text_embeds", "pooler_output"):
        val = getattr(out, key, None)
        if isinstance(val, torch.Tensor):
            return val
    return out[0]


def embed_images(bb: ImageBackbone, images: list[Image.Image]) -> np.ndarray:
    """Projected image embeddings (n, dim), float32, not normalised."""
    import torch

    pix = bb.processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        if bb.family == "clip_vision":
            feats = _features(bb.model(pixel_values=pix))
        else:
            feats = _features(bb.model.get_image_features(pixel_values=pix))
    return feats.float().numpy()


def embed_texts(bb: ImageBackbone, texts: list[str]) -> np.ndarray:
    """Projected text embeddings (n, dim), float32, not normalised."""
    import torch

    if not bb.has_text:
        raise BackboneMissingError(f"image backbone {bb.path.name} has no text tower",
                                   "use a full CLIP/SigLIP checkpoint with its tokenizer")
    # SigLIP was trained on max-length padding; CLIP pads to the longest prompt.
    padding = "max_length" if bb.family == "siglip" else True
    tok = bb.tokenizer(texts, padding=padding, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        feats = _features(bb.model.get_text_features(**tok))
    return feats.float().numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- GeoCLIP


def geoclip_dir() -> Path:
    """The installed geoclip package's model folder (read as files: importing geoclip pulls
    in torchvision)."""
    spec = find_spec("geoclip")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneMissingError("geoclip is not installed",
                                   "pip install geoclip --no-deps (its weights and gallery)")
    d = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (d / "weights" / "location_encoder_weights.pth").is_file():
        raise WeightsError(f"geoclip weights not found under {d}", "reinstall geoclip")
    return d


def _torch_modules():
    import torch
    from torch import nn

    # Equal Earth projection constants (Šavrič et al. 2018), as GeoCLIP uses them.
    a1, a2, a3, a4, sf = 1.340264, -0.081106, 0.000893, 0.003796, 66.50336

    def equal_earth(latlon: torch.Tensor) -> torch.Tensor:
        lat = torch.deg2rad(latlon[:, 0])
        lon = torch.deg2rad(latlon[:, 1])
        theta = torch.asin((3.0**0.5 / 2) * torch.sin(lat))
        den = 3 * (9 * a4 * theta**8 + 7 * a3 * theta**6 + 3 * a2 * theta**2 + a1)
        x = (2 * 3.0**0.5 * lon * torch.cos(theta)) / den
        y = a4 * theta**9 + a3 * theta**7 + a2 * theta**3 + a1 * theta
        return torch.stack((x, y), dim=1) * sf / 180

    class FourierFeatures(nn.Module):
        """Random Fourier features γ(v) = (cos 2πBv, sin 2πBv); B is loaded, not sampled."""

        def __init__(self, encoded_size: int = 256, input_size: int = 2) -> None:
            super().__init__()
            self.b = nn.Parameter(torch.zeros(encoded_size, input_size), requires_grad=False)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            vp = 2 * np.pi * v @ self.b.T
            return torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)

    class Capsule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.capsule = nn.Sequential(
                FourierFeatures(), nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(1024, 512))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.capsule(x))

    class LocationEncoder(nn.Module):
        """GeoCLIP's location encoder: one capsule per RFF scale, outputs summed (512-d)."""

        def __init__(self, n_scales: int = len(GEOCLIP_SIGMAS)) -> None:
            super().__init__()
            self.n = n_scales
            for i in range(n_scales):
                self.add_module(f"LocEnc{i}", Capsule())

        def forward(self, latlon: torch.Tensor) -> torch.Tensor:
            xy = equal_earth(latlon)
            out = torch.zeros(latlon.shape[0], 512, dtype=xy.dtype)
            for i in range(self.n):
                out = out + self._modules[f"LocEnc{i}"](xy)
            return out

    return LocationEncoder, equal_earth


def equal_earth_projection(latlon: np.ndarray) -> np.ndarray:
    """GeoCLIP's scaled Equal Earth (x, y) for (n, 2) lat/lon degrees."""
    import torch

    _, ee = _torch_modules()
    return ee(torch.as_tensor(np.asarray(latlon, dtype=np.float32))).numpy()


@dataclass
class GeoClip:
    """GeoCLIP's trained parts: location encoder, image MLP (768 → 512), logit scale."""

    location_encoder: Any
    image_mlp: Any
    logit_scale: float
    weights_digest: str

    def encode_locations(self, latlon: np.ndarray, batch: int = 8192) -> np.ndarray:
        """Unit 512-d embeddings of (n, 2) lat/lon degrees."""
        import torch

        x = torch.as_tensor(np.asarray(latlon, dtype=np.float32).reshape(-1, 2))
        outs = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch):
                outs.append(self.location_encoder(x[i:i + batch]).numpy())
        return _unit(np.concatenate(outs) if outs else np.zeros((0, 512), np.float32))

    def encode_images(self, clip_embeds: np.ndarray) -> np.ndarray:
        """Unit 512-d GeoCLIP image embeddings from (n, 768) CLIP ViT-L/14 projections."""
        import torch

        with torch.inference_mode():
            out = self.image_mlp(torch.as_tensor(np.asarray(clip_embeds, np.float32)))
        return _unit(out.numpy())


def _strict_load(module: Any, state: dict[str, Any], what: str) -> None:
    res = module.load_state_dict(state, strict=False)
    if res.missing_keys or res.unexpected_keys:
        raise WeightsError(f"GeoCLIP {what} weights do not match: missing {res.missing_keys}, "
                           f"unexpected {res.unexpected_keys}", "reinstall geoclip")


@lru_cache(maxsize=1)
def load_geoclip() -> GeoClip:
    """GeoCLIP's released weights, loaded into the plain-torch re-implementation (every
    state-dict key must match, or WeightsError)."""
    import torch
    from torch import nn

    d = geoclip_dir() / "weights"
    loc_enc_cls, _ = _torch_modules()
    enc = loc_enc_cls()
    loc_path = d / "location_encoder_weights.pth"
    _strict_load(enc, torch.load(loc_path, map_location="cpu", weights_only=True),
                 "location encoder")
    mlp = nn.Sequential(nn.Linear(GEOCLIP_IMAGE_DIM, 768), nn.ReLU(), nn.Linear(768, 512))
    _strict_load(mlp, torch.load(d / "image_encoder_mlp_weights.pth", map_location="cpu",
                                 weights_only=True), "image MLP")
    scale = float(torch.load(d / "logit_scale_weights.pth", map_location="cpu",
                             weights_only=True))
    enc.eval()
    mlp.eval()
    digest = hashlib.sha1(loc_path.read_bytes()).hexdigest()[:16]
    return GeoClip(enc, mlp, float(np.exp(scale)), digest)


def load_gallery(max_points: int | None = None) -> np.ndarray:
    """GeoCLIP's 100K GPS gallery as (n, 2) float32 lat/lon; `max_points` takes an evenly
    strided subset (for tests and quick runs)."""
    path = geoclip_dir() / "gps_gallery" / "coordinates_100K.csv"
    arr = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32).reshape(-1, 2)
    if max_points is not None and 0 < max_points < len(arr):
        arr = arr[np.linspace(0, len(arr) - 1, max_points).astype(np.int64)]
    return arr


def _cache_root() -> Path:
    root = os.environ.get("AVGEO_CACHE_DIR") or str(Path.home() / ".cache" / "avgeo")
    return Path(root) / "vision"


def gallery_embeddings(geo: GeoClip, gallery: np.ndarray) -> np.ndarray:
    """Unit location embeddings of the gallery, cached on disk (100K points take tens of
    seconds on CPU) keyed by the weights and the gallery's contents."""
    key = hashlib.sha1(np.ascontiguousarray(gallery).tobytes()).hexdigest()[:16]
    name = f"geoclip-gallery-v{GALLERY_CACHE_VERSION}-{geo.weights_digest}-{key}.npy"
    path = _cache_root() / name
    if path.is_file():
        try:
            emb = np.load(path, allow_pickle=False)
            if emb.shape == (len(gallery), 512):
                return emb
        except (OSError, ValueError, EOFError):
            pass  # corrupt: rebuild
    emb = geo.encode_locations(gallery).astype(np.float32)
    try:
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, emb)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache is not an error
    return emb


def retrieval_likelihood(gallery: np.ndarray, probs: np.ndarray, res: int = RETRIEVAL_RES,
                         top_k: int = 2000, smooth_rings: int = 2,
                         floor: float = 1e-3) -> CellLikelihood:
    """Soft-max weights of gallery points → a CellLikelihood on H3 cells of `res`.

    The mass of the `top_k` heaviest points is spread over rings 0..`smooth_rings` around
    each point's cell (Gaussian in ring distance), because a 100K gallery leaves most cells
    empty; cells get log(max(w / max w, floor)) and unlisted cells log(floor).
    """
    import h3.api.numpy_int as h3n

    from avgeo.geo.grid import points_to_cells

    probs = np.asarray(probs, dtype=np.float64)
    k = int(min(top_k, len(probs)))
    idx = np.argpartition(-probs, k - 1)[:k] if k < len(probs) else np.arange(len(probs))
    cells = points_to_cells(gallery[idx, 0], gallery[idx, 1], res)
    mass: dict[int, float] = {}
    for c, p in zip(cells.tolist(), probs[idx].tolist(), strict=True):
        mass[c] = mass.get(c, 0.0) + p
    ring_w = np.exp(-0.5 * np.arange(smooth_rings + 1) ** 2)
    smoothed: dict[int, float] = {}
    for c, p in mass.items():
        for r in range(smooth_rings + 1):
            try:
                ring = h3n.grid_ring(np.uint64(c), r)
            except Exception:  # near a pentagon the ring walk fails: take the disk difference
                outer = h3n.grid_disk(np.uint64(c), r)
                ring = np.setdiff1d(outer, h3n.grid_disk(np.uint64(c), r - 1)) if r else outer
            # Each cell at ring distance r gets the point's mass × a Gaussian of r.
            for n in np.asarray(ring, dtype=np.uint64).tolist():
                smoothed[n] = smoothed.get(n, 0.0) + p * ring_w[r]
    keys = np.fromiter(smoothed.keys(), dtype=np.uint64, count=len(smoothed))
    w = np.fromiter(smoothed.values(), dtype=np.float64, count=len(smoothed))
    logl = np.log(np.maximum(w / w.max(), floor))
    return CellLikelihood(res=res, cells=keys, logl=logl, default=float(np.log(floor)),
                          label="GeoCLIP retrieval",
                          meta={"top_k": k, "smooth_rings": smooth_rings, "floor": floor})


@dataclass
class Retrieval:
    """GeoCLIP result: gallery softmax probabilities, the best points and the map."""

    probs: np.ndarray
    top_latlon: np.ndarray  # (k, 2)
    top_prob: np.ndarray
    likelihood: CellLikelihood


def geoclip_retrieve(clip_embed: np.ndarray, gallery: np.ndarray | None = None,
                     top_n: int = 5, **lk: Any) -> Retrieval:
    """GeoCLIP inference for one 768-d CLIP image embedding against the gallery."""
    geo = load_geoclip()
    gal = load_gallery() if gallery is None else np.asarray(gallery, dtype=np.float32)
    loc = gallery_embeddings(geo, gal)
    img = geo.encode_images(np.asarray(clip_embed, np.float32).reshape(1, -1))[0]
    logits = geo.logit_scale * (loc @ img).astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:top_n]
    return Retrieval(probs, gal[order], probs[order], retrieval_likelihood(gal, probs, **lk))


# --------------------------------------------------------------------------- concepts


@dataclass
class ConceptScore:
    group: str
    concept: str
    prob: float
    alternatives: dict[str, float]


def score_concepts(bb: ImageBackbone, image_embed: np.ndarray,
                   groups: dict[str, tuple[str, ...]] | None = None,
                   prompt: str = CONCEPT_PROMPT) -> list[ConceptScore]:
    """Zero-shot concept scores: within each group a softmax over the prompts' similarities
    at the model's own logit scale; one ConceptScore (the top alternative) per group."""
    groups = CONCEPT_GROUPS if groups is None else groups
    names = [c for alts in groups.values() for c in alts]
    text = _unit(embed_texts(bb, [prompt.format(c) for c in names]))
    img = _unit(np.asarray(image_embed, np.float32).reshape(-1))
    scale = float(np.exp(float(bb.model.logit_scale.detach().reshape(-1)[0])))
    sims = dict(zip(names, (scale * (text @ img)).tolist(), strict=True))
    out = []
    for group, alts in groups.items():
        z = np.array([sims[a] for a in alts], dtype=np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        best = int(np.argmax(p))
        out.append(ConceptScore(group, alts[best], float(p[best]),
                                {a: float(v) for a, v in zip(alts, p, strict=True)}))
    return out


# --------------------------------------------------------------------------- concept places

#: Concepts whose geography is documented public knowledge, not something to learn from
#: labelled photos: the side traffic keeps to (a per-country rule) and the script of
#: signs (CLDR's territory–language data, as the OCR engine uses). Each alternative maps
#: to the side or script it shows; the remaining alternatives ("no cars", "no signs")
#: show nothing. The other groups (vegetation, architecture, bollards, line colours,
#: poles) have no such table and carry no likelihood.
DRIVING_SIDE: dict[str, str] = {
    "cars driving on the left side of the road": "left",
    "cars driving on the right side of the road": "right",
}
SIGN_SCRIPT: dict[str, str] = {
    "signs written in Latin letters": "Latin",
    "signs written in Cyrillic letters": "Cyrillic",
    "signs written in Arabic script": "Arabic",
    "signs written in Chinese characters": "Han",
    "signs written in Japanese": "Japanese",
    "signs written in Korean Hangul": "Hangul",
    "signs written in Devanagari": "Devanagari",
    "signs written in Thai script": "Thai",
    "signs written in Greek letters": "Greek",
    "signs written in Hebrew": "Hebrew",
}
LHT_FILE = Path(__file__).resolve().parents[2] / "assets" / "vision" / "left_hand_traffic.tsv"


@lru_cache(maxsize=1)
def left_hand_traffic() -> frozenset[str]:
    """ISO alpha-2 codes of the countries and territories that drive on the left (the
    vendored table, source named in its header)."""
    rows = LHT_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(r.split("\t")[0] for r in rows if r.strip() and not r.startswith("#"))


@lru_cache(maxsize=1)
def _all_countries() -> frozenset[str]:
    import pycountry

    # XK: Kosovo, user-assigned code used by GeoNames, CLDR and the country polygons
    return frozenset({c.alpha_2 for c in pycountry.countries} | {"XK"})


#: Share of a zero-shot concept's probability treated as uninformative however sure the
#: softmax is. CLIP's zero-shot scores are not calibrated (a tiny or a real model alike
#: can put 1 − 1e-8 on one prompt) and there is no labelled set here to calibrate them,
#: so one wrong call must not rule out the true country: it costs at most a factor
#: 1 / CONCEPT_UNINFORMATIVE.
CONCEPT_UNINFORMATIVE = 0.1


def _mixture_likelihood(alternatives: dict[str, float],
                        maps: dict[str, dict[str, float]]) -> CountryLikelihood:
    """P(zero-shot scores | country) for soft evidence: ε + (1 − ε)·Σ_k p_k·m_k(country),
    where m_k is how much the country fits alternative k (0..1), alternatives without a
    map ("no cars") fit every country equally and ε = CONCEPT_UNINFORMATIVE. An unsure
    softmax (p spread over the alternatives) gives nearly equal values everywhere, so it
    barely moves the posterior; a confident one favours its countries by up to 1/ε."""
    eps = CONCEPT_UNINFORMATIVE
    neutral = sum(p for a, p in alternatives.items() if a not in maps)
    weights = {c: eps + (1 - eps) * (neutral + sum(alternatives.get(a, 0.0) * m.get(c, 0.0)
                                                   for a, m in maps.items()))
               for c in _all_countries()}
    top = max(weights.values())
    # sea and unlisted land: as the least likely country, not as impossible
    return CountryLikelihood(weights, floor=min(weights.values()) / top if top > 0 else 1.0)


def _concept_maps(alts: dict[str, float]) -> tuple[dict[str, dict[str, float]], str] | None:
    """(alternative → country fit, source) for a group with documented geography."""
    if set(DRIVING_SIDE) <= set(alts):
        lht, everywhere = left_hand_traffic(), _all_countries()
        return ({a: {c: float((c in lht) == (side == "left")) for c in everywhere}
                 for a, side in DRIVING_SIDE.items()},
                "the left-hand-traffic table (Wikipedia's list)")
    if set(SIGN_SCRIPT) <= set(alts):
        from avgeo.perception.vision.script import script_country_weights

        return ({a: script_country_weights(script) for a, script in SIGN_SCRIPT.items()},
                "CLDR's script use per country")
    return None


def concept_likelihood(score: ConceptScore) -> CountryLikelihood | None:
    """A place likelihood for a concept group with documented geography (DRIVING_SIDE,
    SIGN_SCRIPT), weighted by the zero-shot probabilities; None for the others."""
    found = _concept_maps(score.alternatives)
    return None if found is None else _mixture_likelihood(score.alternatives, found[0])


def _concept_evidence(score: ConceptScore, lik: CountryLikelihood | None) -> str:
    head = (f"zero-shot '{CONCEPT_PROMPT.format(score.concept)}' p={score.prob:.2f} among "
            f"{len(score.alternatives)} alternatives; ")
    found = _concept_maps(score.alternatives)
    if lik is None or found is None:
        return head + ("no place likelihood: a learned concept→place mapping needs "
                       "labelled training data")
    from avgeo.perception.vision.language import territory_population

    pop = territory_population()
    hi, lo = max(lik.weights.values()), min(lik.weights.values())
    # ties (all left-driving countries fit equally) listed by population
    favoured = sorted((c for c, v in lik.weights.items() if v > lo * 1.0001),
                      key=lambda c: (-round(lik.weights[c], 9), -pop.get(c, 0)))
    return head + (f"place likelihood from {found[1]}, weighted by these probabilities "
                   f"(max/min {hi / max(lo, 1e-12):.2f}): favours {len(favoured)} countries "
                   f"({', '.join(favoured[:6])}{', …' if len(favoured) > 6 else ''})")


# --------------------------------------------------------------------------- engine


def _images(media: Media, max_frames: int) -> list[Image.Image]:
    from PIL import Image as PILImage

    if media.kind == "photo":
        return [media.image()]
    return [PILImage.fromarray(fr.image)
            for fr in media.frames(fps=0.5, max_frames=max_frames)]


@register(ENGINE)
class ImageBackboneEngine:
    """GeoCLIP retrieval and zero-shot geographic concepts from a local CLIP/SigLIP
    checkpoint. Opt-in: nothing is downloaded.

    Options (ctx.options): image_backbone (folder; else env AVGEO_IMAGE_BACKBONE),
    geoclip (True), geoclip_gallery_max (None = all 100K points), geoclip_top_k (2000),
    concepts (True), concept_min_prob (0.5), video_max_frames (4).
    Video frames are embedded one by one and their unit embeddings averaged.
    """

    name: ClassVar[str] = ENGINE
    media_kinds: ClassVar[tuple[str, ...]] = ("photo", "video")

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = path
        self.last_retrieval: Retrieval | None = None
        self.last_concepts: list[ConceptScore] = []

    def _options(self, ctx: EngineContext | None) -> dict[str, Any]:
        opts = dict(ctx.options) if ctx is not None else {}
        if self.path and not opts.get("image_backbone"):
            opts["image_backbone"] = str(self.path)
        return opts

    def available(self) -> tuple[bool, str]:
        if find_spec("transformers") is None:
            return False, "install transformers to use image backbones"
        try:
            resolve_path(self._options(None))
        except BackboneMissingError as exc:
            return False, f"{exc.message}: {exc.hint}"
        return True, ""

    def atoms(self, media: Media, ctx: EngineContext) -> list[Atom]:
        if not getattr(media, "has_video", True) and media.kind != "photo":
            return []
        opts = self._options(ctx)
        bb = load_backbone(resolve_path(opts))
        images = _images(media, int(opts.get("video_max_frames", 4)))
        if not images:
            return []
        embed = _unit(embed_images(bb, images)).mean(axis=0)
        atoms: list[Atom] = []
        self.last_retrieval, self.last_concepts = None, []
        if opts.get("geoclip", True):
            atoms += self._retrieval_atoms(bb, embed, opts, ctx)
        if opts.get("concepts", True):
            atoms += self._concept_atoms(bb, embed, opts, ctx)
        return atoms

    def _retrieval_atoms(self, bb: ImageBackbone, embed: np.ndarray, opts: dict[str, Any],
                         ctx: EngineContext) -> list[Atom]:
        if not bb.geoclip_compatible:
            ctx.notes.append(
                f"{ENGINE}: GeoCLIP retrieval skipped: it needs OpenAI CLIP ViT-L/14 image "
                f"features ({GEOCLIP_IMAGE_DIM}-d), {bb.path.name} gives {bb.family} {bb.dim}-d")
            return []
        try:
            geoclip_dir()
        except BackboneMissingError as exc:
            ctx.notes.append(f"{ENGINE}: GeoCLIP retrieval skipped: {exc.message}")
            return []
        gmax = opts.get("geoclip_gallery_max")
        gallery = load_gallery(int(gmax) if gmax else None)
        ret = geoclip_retrieve(embed, gallery, top_k=int(opts.get("geoclip_top_k", 2000)))
        self.last_retrieval = ret
        lat, lon = (float(v) for v in ret.top_latlon[0])
        return [Atom(
            name=f"GeoCLIP retrieval: top match {lat:.2f}, {lon:.2f}",
            engine=ENGINE, kind="visual_concept",
            evidence=(f"GeoCLIP image→GPS retrieval over {len(gallery)} gallery points with "
                      f"{bb.path.name}; top match p={ret.top_prob[0]:.3f}"),
            confidence=float(ret.top_prob[0]),
            value={"top": [{"lat": float(a), "lon": float(b), "prob": float(p)}
                           for (a, b), p in zip(ret.top_latlon, ret.top_prob, strict=True)],
                   "gallery_size": len(gallery)},
            likelihood=ret.likelihood, group=f"{ENGINE}:geoclip")]

    def _concept_atoms(self, bb: ImageBackbone, embed: np.ndarray, opts: dict[str, Any],
                       ctx: EngineContext) -> list[Atom]:
        if not bb.has_text:
            ctx.notes.append(f"{ENGINE}: concepts skipped: {bb.path.name} has no text tower "
                             "or tokenizer")
            return []
        scores = score_concepts(bb, embed)
        self.last_concepts = scores
        min_p = float(opts.get("concept_min_prob", 0.5))
        atoms = []
        for s in scores:
            if s.prob < min_p:
                continue
            lik = concept_likelihood(s)
            atoms.append(Atom(
                name=f"{s.group.capitalize()}: {s.concept}", engine=ENGINE,
                kind="visual_concept", evidence=_concept_evidence(s, lik),
                confidence=s.prob, value={"group": s.group, "concept": s.concept,
                                          "alternatives": s.alternatives},
                likelihood=lik, group=f"{ENGINE}:{s.group}"))
        return atoms
