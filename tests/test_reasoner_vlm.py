"""The vision-language reasoner path on a tiny random-weight Qwen2-VL that the test builds
and saves itself (tokenizer trained offline, image processor from config): loading from a
local folder, key frames, generation through the strict parser, SFT + GRPO on shared
photos with checkpoints and resume, and the pipeline engine running the trained folder."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

pytest.importorskip("trl")

from avgeo.reasoning.reasoner.parse import parse_completion
from avgeo.reasoning.reasoner.reward import Truth, reward

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
           "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# The Qwen2-VL chat layout (what the released checkpoints' template renders for these turns).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tiny_tokenizer():
    """A byte-level BPE trained here on reasoner text, with the Qwen special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from avgeo.reasoning.reasoner.vlm import INSTRUCTION

    corpus = [INSTRUCTION, "avgeo reasoner v1\nmedia: photo\natoms: 1\n- gps [meta/metadata] "
              "c=1.00 | point 43.5,11.9 ±1km | GPS in EXIF\nanswer:\n",
              "<think>metadata gps. so EU IT</think>\ncontinent: EU | country: IT | "
              "admin1: Tuscany | city: Arezzo | 43.467, 11.885"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus * 4, trainer=trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", padding_side="left",
                                   chat_template=CHAT_TEMPLATE)


def build_tiny_vlm(out: Path, family: str = "qwen2_vl") -> Path:
    """A 2-layer, hidden-64 Qwen-VL of `family` (qwen2_vl, qwen2_5_vl, qwen3_vl) with a
    tiny vision tower, the tokenizer above and a small-pixel image processor built from
    config; saved like a checkpoint (no processor_config: the parts a release ships)."""
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    fast = _tiny_tokenizer()
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIAL}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    text = {"vocab_size": len(fast), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 4096, "rope_parameters": rope,
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"]}
    patch = 14
    if family == "qwen2_vl":
        vision = {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2,
                  "mlp_ratio": 2, "patch_size": patch, "spatial_merge_size": 2,
                  "temporal_patch_size": 2}
        names = ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration")
    elif family == "qwen2_5_vl":
        vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                  "patch_size": patch, "out_hidden_size": 64, "window_size": 56,
                  "fullatt_block_indexes": [0]}
        names = ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration")
    else:
        patch = 16
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                  "patch_size": patch, "out_hidden_size": 64, "num_position_embeddings": 64,
                  "deepstack_visual_indexes": [1]}
        text = {**text, "head_dim": 16, "rope_parameters": {**rope, "mrope_interleaved": True}}
        names = ("Qwen3VLConfig", "Qwen3VLForConditionalGeneration")
    conf = getattr(transformers, names[0])(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = getattr(transformers, names[1])(conf)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    fast.save_pretrained(out)
    # 4 to 16 merged patches per image keeps a step on CPU to seconds.
    side = 2 * patch
    Qwen2VLImageProcessorPil(patch_size=patch, min_pixels=side * side * 4,
                             max_pixels=side * side * 16).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_qwen2_vl"))


@pytest.fixture(scope="module")
def located_photos(manifest, media_dir) -> list[dict]:
    rows = [r for r in manifest if r["kind"] == "photo" and r["lat"] and r["lon"]]
    if len(rows) < 2:
        pytest.skip("needs two located shared photos")
    return rows[:2]


def test_folder_is_recognised_and_loads_locally(tiny_vlm, tmp_path) -> None:
    from avgeo.errors import BackboneMissingError
    from avgeo.reasoning.reasoner.vlm import is_vlm_dir, load_vlm

    assert is_vlm_dir(tiny_vlm) and not is_vlm_dir(tmp_path)
    from avgeo.reasoning.reasoner.policy import default_policy_dir

    assert not is_vlm_dir(default_policy_dir())  # the shipped text policy is not a VLM
    model, proc = load_vlm(tiny_vlm)
    assert model.config.model_type == "qwen2_vl"
    assert proc.tokenizer.padding_side == "left" and proc.image_processor is not None
    with pytest.raises(BackboneMissingError):
        load_vlm(tmp_path)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_other_qwen_vl_families_load_and_see_images(family, tmp_path, media_dir) -> None:
    from avgeo.reasoning.reasoner.vlm import generate_vlm, load_vlm, media_images, user_text

    model, proc = load_vlm(build_tiny_vlm(tmp_path / family, family))
    assert model.config.model_type == family
    imgs = media_images(media_dir / "lund_01.jpg")
    enc = proc.apply_chat_template(
        [[{"role": "user", "content": [{"type": "image", "image": imgs[0]},
                                       {"type": "text", "text": "x"}]}]],
        add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    assert int((enc["input_ids"] == model.config.image_token_id).sum()) >= 4
    texts = generate_vlm(model, proc, [user_text([], "photo")], [imgs], max_new_tokens=6)
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_key_frames_from_photo_video_and_audio(media_dir) -> None:
    from avgeo.reasoning.reasoner.vlm import VlmConfig, media_images

    cfg = VlmConfig(max_images=3, max_side=160)
    photo = media_images(media_dir / "lund_01.jpg", cfg)
    assert len(photo) == 1 and max(photo[0].size) <= 160 and photo[0].mode == "RGB"
    frames = media_images(media_dir / "carlsbad_gopro_max.mp4", cfg)
    assert 1 <= len(frames) <= 3 and all(max(f.size) <= 160 for f in frames)
    assert media_images(media_dir / "jura_dawn_0600.wav", cfg) == []


def test_random_model_output_goes_through_the_strict_parser(tiny_vlm, media_dir,
                                                             located_photos) -> None:
    from avgeo.reasoning.reasoner.vlm import generate_vlm, load_vlm, media_images, user_text

    model, proc = load_vlm(tiny_vlm)
    imgs = media_images(media_dir / located_photos[0]["file"])
    texts = generate_vlm(model, proc, [user_text([], "photo"), user_text([], "audio")],
                         [imgs, []], max_new_tokens=12)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    t = Truth(0.0, 0.0, "AF", "GH")
    for text in texts:
        p = parse_completion(text)
        # Random weights write junk: malformed → no reward, and no crash anywhere.
        assert (p is None and reward(text, t) == 0.0) or (p is not None and reward(text, t) > 0)


@pytest.mark.slow
def test_vlm_sft_grpo_checkpoint_resume_and_engine(tiny_vlm, media_dir, located_photos,
                                                   tmp_path) -> None:
    from avgeo.reasoning.reasoner.engine import ReasonerEngine
    from avgeo.reasoning.reasoner.train import TrainConfig, train_reasoner
    from avgeo.reasoning.reasoner.vlm import VlmConfig, is_vlm_dir

    man = tmp_path / "located.csv"
    with open(man, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "lat", "lon"])
        for r in located_photos:  # the shared manifest's own coordinates, read at run time
            w.writerow([str(media_dir / r["file"]), r["lat"], r["lon"]])
    out = tmp_path / "run"
    cfg = TrainConfig(vlm=str(tiny_vlm), n_heldout=2, sft_steps=1, grpo_steps=2, batch_size=2,
                      num_generations=2, prompts_per_step=1, max_completion_tokens=12,
                      save_steps=1, engines="meta", use_metadata=True,
                      vlm_images=VlmConfig(max_images=1, max_side=224))
    rep = train_reasoner(str(man), out, cfg, log=lambda s: None)
    assert rep["n_train"] == 2 and rep["n_with_images"] == 2
    losses = [h["loss"] for h in rep["sft_history"] if "loss" in h]
    assert losses and all(math.isfinite(v) for v in losses)
    rewards = [h["reward"] for h in rep["grpo_history"] if "reward" in h]
    assert len(rewards) == 2 and all(math.isfinite(v) and v >= 0.0 for v in rewards)
    for stage in ("untrained", "sft", "grpo"):
        assert 0.0 <= rep[stage]["parse_rate"] <= 1.0 and rep[stage]["n"] == 2
    assert any(p.name.startswith("checkpoint-") for p in (out / "grpo").iterdir())
    assert is_vlm_dir(out / "policy") and (out / "policy" / "avgeo_reasoner.json").is_file()

    cfg.grpo_steps = 3
    rep2 = train_reasoner(str(man), out, cfg, resume=True, log=lambda s: None)
    assert "untrained" not in rep2  # SFT was not redone
    assert max(h.get("step", 0) for h in rep2["grpo_history"]) == 3

    engine = ReasonerEngine(out / "policy")
    assert engine.is_vlm
    res = engine.reason([], "photo", media=media_dir / located_photos[0]["file"])
    assert res.policy and isinstance(res.text, str)
    assert res.parsed == (parse_completion(res.text) is not None)


def test_pipeline_runs_the_folder_the_environment_names(tiny_vlm, media_dir, located_photos,
                                                        monkeypatch) -> None:
    """`--engines reasoner` runs the vision-language folder $AVGEO_REASONER_POLICY names (a
    stock checkpoint without an avgeo header works zero-shot) and shows it the photo."""
    from avgeo.pipeline import locate
    from avgeo.reasoning.reasoner import engine as engine_mod

    monkeypatch.setenv(engine_mod.ENV_VAR, str(tiny_vlm))
    monkeypatch.setattr(engine_mod, "_ENGINES", {})
    pred = locate(media_dir / located_photos[0]["file"], engines="meta,reasoner",
                  use_metadata=False)
    assert "reasoner" in pred.engines.used and pred.reasoner is not None
    assert pred.reasoner.policy == str(tiny_vlm)
    assert pred.reasoner.parsed == (parse_completion(pred.reasoner.text) is not None)
    assert engine_mod._ENGINES[str(tiny_vlm)].is_vlm
