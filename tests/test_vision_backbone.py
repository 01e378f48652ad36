"""Tests for the opt-in image_backbone engine: tiny random CLIP checkpoints, GeoCLIP's real
location encoder, retrieval maps and zero-shot concept atoms."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
if importlib.util.find_spec("geoclip") is None:
    pytest.skip("geoclip (weights + gallery) not installed", allow_module_level=True)

from avgeo.errors import BackboneMissingError  # noqa: E402
from avgeo.geo.grid import global_grid  # noqa: E402
from avgeo.perception.base import REGISTRY, EngineContext  # noqa: E402
from avgeo.perception.vision import backbone as vb  # noqa: E402
from avgeo.reasoning.fusion import global_log_mean, tempered_map  # noqa: E402
from avgeo.reasoning.likelihood import CountryLikelihood  # noqa: E402

PHOTO = "lund_01.jpg"


def _byte_chars() -> list[str]:
    # GPT-2/CLIP byte→unicode table: every byte gets a printable character.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _write_tokenizer(folder: Path) -> int:
    """A minimal CLIP BPE tokenizer: single bytes (plus end-of-word forms), no merges."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {t: i for i, t in enumerate([*chars, *(c + "</w>" for c in chars)])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tok.save_pretrained(str(folder))
    return len(vocab)


def _tiny_clip(folder: Path, projection_dim: int = 768, vision_only: bool = False,
               logit_scale: float | None = None) -> Path:
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=32, patch_size=8,
                  projection_dim=projection_dim)
    if vision_only:
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision))
    else:
        vocab_size = _write_tokenizer(folder)
        text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                    projection_dim=projection_dim, bos_token_id=vocab_size - 2,
                    eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
        extra = {} if logit_scale is None else {"logit_scale_init_value": logit_scale}
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision,
                                     projection_dim=projection_dim, **extra))
    model.save_pretrained(str(folder))
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                       ).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return _tiny_clip(tmp_path_factory.mktemp("clip768") / "m")


@pytest.fixture()
def photo(media_dir):
    from avgeo.media import open_media

    return open_media(media_dir / PHOTO)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVGEO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(vb.ENV_VAR, raising=False)


def _reference_location_encoder():
    """geoclip's own LocationEncoder, loaded from its files without importing the package
    (its __init__ pulls in torchvision)."""
    pytest.importorskip("pandas")  # geoclip's misc module reads CSVs with pandas
    d = vb.geoclip_dir()
    pkg = types.ModuleType("_geoclip_ref")
    pkg.__path__ = [str(d)]
    sys.modules.setdefault("_geoclip_ref", pkg)
    spec = importlib.util.spec_from_file_location("_geoclip_ref.location_encoder",
                                                  d / "location_encoder.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.LocationEncoder().eval()


def test_location_encoder_loads_real_weights_and_separates_places():
    d = vb.geoclip_dir() / "weights" / "location_encoder_weights.pth"
    state = torch.load(d, map_location="cpu", weights_only=True)
    geo = vb.load_geoclip()
    assert set(geo.location_encoder.state_dict()) == set(state)
    for k, v in state.items():
        assert torch.equal(geo.location_encoder.state_dict()[k], v), k
    e = geo.encode_locations(np.array([[48.85, 2.35], [35.68, 139.69], [48.86, 2.36]]))
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    paris_tokyo, paris_paris = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert paris_tokyo < paris_paris
    assert paris_paris > 0.8


def test_location_encoder_matches_geoclip_reference():
    ref = _reference_location_encoder()
    pts = np.array([[48.85, 2.35], [35.68, 139.69], [-33.9, 151.2], [89.0, -179.0],
                    [0.0, 0.0]], dtype=np.float32)
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref(torch.tensor(pts)), dim=1).numpy()
    got = vb.load_geoclip().encode_locations(pts)
    assert np.abs(want - got).max() < 1e-4


def test_gallery_embeddings_are_cached(tmp_path):
    geo = vb.load_geoclip()
    gal = vb.load_gallery(max_points=300)
    assert gal.shape == (300, 2) and np.all(np.abs(gal[:, 0]) <= 90)
    first = vb.gallery_embeddings(geo, gal)
    files = list((tmp_path / "cache" / "vision").glob("geoclip-gallery-*.npy"))
    assert len(files) == 1
    np.save(files[0], first * 0 + 0.5)  # a cached file is what the second call returns
    assert np.allclose(vb.gallery_embeddings(geo, gal), 0.5)


def test_retrieval_likelihood_peaks_at_heavy_points():
    gal = np.array([[55.7, 13.2], [55.6, 13.0], [-33.9, 151.2], [40.7, -74.0]], np.float32)
    probs = np.array([0.5, 0.4, 0.07, 0.03])
    lk = vb.retrieval_likelihood(gal, probs, floor=1e-3)
    grid = global_grid(3)
    m = lk.log_map(grid)
    assert m.shape == (len(grid),) and np.all(np.isfinite(m)) and m.max() == 0.0
    at = grid.locate([55.7, -33.9, 40.7, 0.0], [13.2, 151.2, -74.0, -140.0])
    assert m[at[0]] == 0.0
    assert m[at[0]] > m[at[1]] > m[at[2]] > m[at[3]]
    assert m[at[3]] == pytest.approx(np.log(1e-3))


def test_engine_runs_on_photo(tiny_clip, photo):
    assert "image_backbone" in REGISTRY
    eng = REGISTRY["image_backbone"]()
    ctx = EngineContext(options={"image_backbone": str(tiny_clip), "geoclip_gallery_max": 3000,
                                 "concept_min_prob": 0.0})
    assert eng.available()[0] is False  # nothing configured outside ctx
    atoms = eng.atoms(photo, ctx)
    ret = [a for a in atoms if a.group == "image_backbone:geoclip"]
    assert len(ret) == 1 and ret[0].name.startswith("GeoCLIP retrieval: top match ")
    assert ret[0].kind == "visual_concept"
    top = ret[0].value["top"][0]
    assert f"{top['lat']:.2f}, {top['lon']:.2f}" in ret[0].name
    grid = global_grid(3)
    m = ret[0].likelihood.log_map(grid)
    assert m.shape == (len(grid),) and np.all(np.isfinite(m)) and m.max() == 0.0
    assert m.min() < -1.0  # a map, not a flat field
    # Top match's cell is on the peak plateau of the smoothed map.
    assert m[grid.locate(top["lat"], top["lon"])[0]] > -1.0
    concepts = [a for a in atoms if a.group != "image_backbone:geoclip"]
    assert len(concepts) == len(vb.CONCEPT_GROUPS)
    placed = {"driving side", "sign script"}  # the groups with documented geography
    for a in concepts:
        group, concept = a.value["group"], a.value["concept"]
        assert concept in vb.CONCEPT_GROUPS[group]
        assert a.name == f"{group.capitalize()}: {concept}"
        assert 0.0 < a.confidence <= 1.0
        assert sum(a.value["alternatives"].values()) == pytest.approx(1.0, abs=1e-6)
        if group in placed:
            assert isinstance(a.likelihood, CountryLikelihood), group
            assert "place likelihood from" in a.evidence
        else:
            assert a.likelihood is None and "training data" in a.evidence
    assert eng.last_retrieval is not None
    assert eng.last_retrieval.probs.sum() == pytest.approx(1.0)


def test_concept_threshold_filters(tiny_clip, photo):
    eng = vb.ImageBackboneEngine(path=tiny_clip)
    ctx = EngineContext(options={"geoclip": False, "concept_min_prob": 0.99})
    atoms = eng.atoms(photo, ctx)
    # Random tiny weights give near-uniform scores: nothing clears 0.99.
    assert atoms == [] and len(eng.last_concepts) == len(vb.CONCEPT_GROUPS)


def test_dimension_mismatch_skips_retrieval_with_note(tmp_path, photo):
    folder = _tiny_clip(tmp_path / "clip64", projection_dim=64)
    ctx = EngineContext(options={"image_backbone": str(folder), "concept_min_prob": 0.0})
    atoms = vb.ImageBackboneEngine().atoms(photo, ctx)
    assert atoms and all(a.group != "image_backbone:geoclip" for a in atoms)
    assert all(a.likelihood is None or isinstance(a.likelihood, CountryLikelihood)
               for a in atoms)
    assert any("GeoCLIP retrieval skipped" in n for n in ctx.notes)


def test_vision_only_model_skips_concepts(tmp_path, photo):
    folder = _tiny_clip(tmp_path / "vis", vision_only=True)
    ctx = EngineContext(options={"image_backbone": str(folder), "geoclip_gallery_max": 500})
    atoms = vb.ImageBackboneEngine().atoms(photo, ctx)
    assert [a.group for a in atoms] == ["image_backbone:geoclip"]
    assert any("concepts skipped" in n for n in ctx.notes)


def test_missing_backbone_raises(tmp_path, photo, monkeypatch):
    eng = vb.ImageBackboneEngine()
    ok, why = eng.available()
    assert not ok and vb.ENV_VAR in why
    with pytest.raises(BackboneMissingError):
        eng.atoms(photo, EngineContext())
    with pytest.raises(BackboneMissingError, match="not found"):
        eng.atoms(photo, EngineContext(options={"image_backbone": str(tmp_path / "nope")}))
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(vb.ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(BackboneMissingError, match=r"config\.json"):
        eng.atoms(photo, EngineContext())


def test_tiny_tokenizer_is_real(tiny_clip):
    bb = vb.load_backbone(tiny_clip)
    ids = bb.tokenizer(["a photo with snow"])["input_ids"][0]
    # start + one id per non-space character (no merges) + end; no unknowns.
    assert len(ids) == len("aphotowithsnow") + 2
    assert bb.tokenizer.unk_token_id not in ids[1:-1]
    t = vb.embed_texts(bb, ["a photo with snow", "a photo with palm trees"])
    assert t.shape == (2, 768) and not np.allclose(t[0], t[1])


def test_engine_on_video_averages_frames(tiny_clip, media_dir):
    from avgeo.media import open_media

    media = open_media(media_dir / "carlsbad_gopro_max.mp4")
    ctx = EngineContext(options={"image_backbone": str(tiny_clip), "geoclip_gallery_max": 500,
                                 "concepts": False, "video_max_frames": 2})
    atoms = vb.ImageBackboneEngine().atoms(media, ctx)
    assert len(atoms) == 1 and atoms[0].likelihood is not None


# -- concepts with documented geography ------------------------------------------------------
LEFT, RIGHT = vb.CONCEPT_GROUPS["driving side"][:2]


def test_left_hand_traffic_table():
    import pycountry

    lht = vb.left_hand_traffic()
    assert len(lht) == 75
    assert all(pycountry.countries.get(alpha_2=c) is not None for c in lht)
    assert {"GB", "JP", "AU", "IN", "ZA", "TH", "IE", "NZ"} <= lht
    assert not {"US", "FR", "DE", "CN", "BR", "KR", "MM", "CA"} & lht


def _country_mass(atom) -> tuple[dict[str, float], dict[str, float]]:
    """Per-country mass of an area prior and of the posterior after this one atom,
    fused as the reasoner fuses (map tempered by the atom's confidence)."""
    from avgeo.geo.regions import cell_countries

    grid = global_grid(3)
    raw = atom.likelihood.log_map(grid)
    post = np.log(grid.area_km2) + tempered_map(atom, raw, global_log_mean(raw, grid))
    post = np.exp(post - post.max())
    post /= post.sum()
    prior = grid.area_km2 / grid.area_km2.sum()
    codes = cell_countries(grid)
    out = []
    for w in (prior, post):
        out.append({c: float(w[codes == c].sum()) for c in ("GB", "JP", "AU", "IN", "US",
                                                            "FR", "KR", "KP", "CN")})
    return out[0], out[1]


def test_confident_left_driving_atom_moves_mass(tmp_path, photo):
    # A tiny random CLIP with a large logit scale, shown the "left" prompt's own text
    # embedding as the image: the zero-shot softmax is then sure the cars drive on the left.
    folder = _tiny_clip(tmp_path / "sharp", logit_scale=float(np.log(1000.0)))
    bb = vb.load_backbone(folder)
    image = vb.embed_texts(bb, [vb.CONCEPT_PROMPT.format(LEFT)])[0]
    eng = vb.ImageBackboneEngine(path=folder)
    atoms = eng._concept_atoms(bb, image, {"concept_min_prob": 0.5}, EngineContext())
    side = next(a for a in atoms if a.value["group"] == "driving side")
    assert side.value["concept"] == LEFT and side.confidence > 0.9
    assert isinstance(side.likelihood, CountryLikelihood)
    prior, post = _country_mass(side)
    for c in ("GB", "JP", "AU", "IN"):
        assert post[c] > 2 * prior[c], (c, prior[c], post[c])
    for c in ("US", "FR", "CN"):
        assert post[c] < 0.8 * prior[c], (c, prior[c], post[c])


def test_unsure_driving_side_barely_moves(tiny_clip, photo):
    eng = vb.ImageBackboneEngine(path=tiny_clip)
    eng.atoms(photo, EngineContext(options={"geoclip": False, "concept_min_prob": 0.0}))
    side = next(s for s in eng.last_concepts if s.group == "driving side")
    assert side.prob < 0.6  # random tiny weights: near-uniform scores
    lik = vb.concept_likelihood(side)
    ratio = max(lik.weights.values()) / min(lik.weights.values())
    assert 1.0 <= ratio < 1.3
    sure = vb.ConceptScore("driving side", LEFT, 0.98, {LEFT: 0.98, RIGHT: 0.01,
                                                        "no cars": 0.01})
    lik = vb.concept_likelihood(sure)
    eps = vb.CONCEPT_UNINFORMATIVE
    want = (eps + (1 - eps) * 0.99) / (eps + (1 - eps) * 0.02)  # (left + none) / (right + none)
    assert max(lik.weights.values()) / min(lik.weights.values()) == pytest.approx(want)
    assert lik.weights["GB"] == lik.weights["JP"] > lik.weights["US"] == lik.weights["FR"]


def test_sign_script_concept_uses_cldr():
    alts = dict.fromkeys(vb.CONCEPT_GROUPS["sign script"], 0.01)
    alts["signs written in Korean Hangul"] = 1 - 0.01 * (len(alts) - 1)
    score = vb.ConceptScore("sign script", "signs written in Korean Hangul",
                            alts["signs written in Korean Hangul"], alts)
    lik = vb.concept_likelihood(score)
    w = lik.weights
    assert sorted(w, key=lambda c: -w[c])[:2] in (["KR", "KP"], ["KP", "KR"])
    assert w["KR"] > 5 * w["FR"] and w["KR"] > 5 * w["CN"]
    assert vb.concept_likelihood(vb.ConceptScore(
        "road bollards", "no roadside bollards", 0.9,
        dict.fromkeys(vb.CONCEPT_GROUPS["road bollards"], 0.25))) is None
