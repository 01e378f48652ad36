"""The vision-language reasoner: a Qwen-VL-style multimodal model loaded from a folder the
user names (local files only, never a hub), shown the file's image(s) next to the same atom
prompt as the text policy; loading, key-frame selection, generation and TRL records."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avgeo.atoms import Atom
from avgeo.errors import AvgeoError, BackboneMissingError, WeightsError
from avgeo.reasoning.reasoner.prompt import PromptConfig, render_prompt

#: Families whose processor/model pair this module drives (Qwen2-VL, Qwen2.5-VL, Qwen3-VL);
#: another image-text-to-text folder is tried the same way if its config has a vision part.
KNOWN_VLM_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")

#: The format spec a pretrained instruction model needs to answer zero-shot; fine-tuning
#: keeps it so that the SFT/GRPO prompts are the ones the engine later sends.
INSTRUCTION = (
    "Where was this captured? Use the image(s) and the atoms below. Answer exactly as\n"
    "<think>short reasoning</think>\n"
    "continent: CC | country: CC | admin1: name | city: name | lat, lon\n"
    "with two-letter codes, '-' for a level you do not commit to, and lat, lon with three "
    "decimals.")


@dataclass(frozen=True)
class VlmConfig:
    """How many images a file contributes and how large they may be (pixels per side);
    the processor's own min/max pixels then fix the number of image tokens."""

    max_images: int = 4
    max_side: int = 448
    #: Video key frames: scene cuts first, then evenly spaced frames to fill `max_images`.
    scene_threshold: float = 0.12


# ---------------------------------------------------------------- folders


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None


def is_vlm_dir(path: str | Path | None) -> bool:
    """True when `path` holds a transformers model with a vision part."""
    if path is None:
        return False
    conf = _read_config(Path(path))
    if not conf:
        return False
    return conf.get("model_type") in KNOWN_VLM_TYPES or isinstance(conf.get("vision_config"), dict)


def _offline() -> None:
    # A folder named by the user is read as is: no hub look-ups for missing files.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _images_only_processor_class(model_type: str):
    """The family's processor class with its video processor made optional: the video
    processors of the Qwen-VL families need torchvision, and the reasoner feeds video as key
    frames (images), so a folder must load without it."""
    import importlib

    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = PROCESSOR_MAPPING_NAMES.get(model_type)
    if not name:
        raise WeightsError(f"no processor class is known for model type {model_type!r}",
                           "use a Qwen2-VL, Qwen2.5-VL or Qwen3-VL folder")
    module = importlib.import_module(f"transformers.models.{model_type}.processing_{model_type}")
    base = getattr(module, name)

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template,
                      **kwargs)

    # Same public name: checkpoints the trainers write name a class AutoProcessor knows.
    return type(name, (base,), {"__init__": __init__, "__module__": __name__,
                                "__qualname__": name, "images_only": True})


def _processor_fallback(path: Path, model_type: str):
    from transformers import AutoImageProcessor, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    cls = _images_only_processor_class(model_type)
    return cls(image_processor=image_processor, tokenizer=tok,
               chat_template=getattr(tok, "chat_template", None))


def load_vlm_processor(path: str | Path):
    """The folder's processor (tokenizer + image processor + chat template), padding left."""
    _offline()
    p = Path(path)
    conf = _read_config(p) or {}
    model_type = str(conf.get("model_type", ""))
    try:
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(p, local_files_only=True)
    except ImportError:
        # The family's video processor needs torchvision; images alone do not.
        proc = None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise WeightsError(f"cannot load the processor in {p}: {exc}",
                           "pass a folder written by save_pretrained with the tokenizer, "
                           "preprocessor_config.json and a chat template") from exc
    if proc is None or not hasattr(proc, "image_processor"):
        try:
            proc = _processor_fallback(p, model_type)
        except (OSError, ValueError, TypeError, KeyError, ImportError) as exc:
            raise WeightsError(f"cannot load the processor in {p}: {exc}",
                               "the folder needs tokenizer files and "
                               "preprocessor_config.json") from exc
    tok = proc.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(proc, "chat_template", None) and not getattr(tok, "chat_template", None):
        raise WeightsError(f"{p} has no chat template",
                           "save the processor with its chat template (chat_template.jinja)")
    return proc


def _dtype():
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_vlm(path: str | Path, device: str | None = None):
    """(model in eval mode, processor) from a local folder; BackboneMissingError when the
    folder is not a vision-language model."""
    _offline()
    p = Path(path).expanduser()
    if not is_vlm_dir(p):
        raise BackboneMissingError(f"{p} is not a vision-language model folder",
                                   "pass a folder with a Qwen-VL-style config.json and weights")
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackboneMissingError("the vision-language reasoner needs transformers",
                                   "pip install transformers trl") from exc
    import torch
    from transformers import AutoModelForImageTextToText

    proc = load_vlm_processor(p)
    try:
        model = AutoModelForImageTextToText.from_pretrained(p, local_files_only=True,
                                                            dtype=_dtype())
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"cannot load the vision-language model in {p}: {exc}") from exc
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(dev)
    model.eval()
    return model, proc


def save_vlm(model, processor, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Write model, processor parts and the avgeo header (kind 'vlm')."""
    from avgeo.reasoning.reasoner.policy import POLICY_FORMAT, POLICY_VERSION

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_processor(processor, out)
    header = {"format": POLICY_FORMAT, "version": POLICY_VERSION, "kind": "vlm", **(meta or {})}
    (out / "avgeo_reasoner.json").write_text(json.dumps(header, indent=1, default=str))
    return out


def save_processor(processor, out: Path) -> None:
    if getattr(type(processor), "images_only", False):
        # Written as the parts a stock checkpoint has, so that a machine with torchvision
        # loads it with AutoProcessor and one without takes the images-only path again.
        processor.tokenizer.save_pretrained(out)
        processor.image_processor.save_pretrained(out)
    else:
        processor.save_pretrained(out)


# ---------------------------------------------------------------- images


def media_images(source: Any, cfg: VlmConfig = VlmConfig()) -> list:
    """RGB PIL images the model sees for a file: a photo itself; a video's key frames
    (scene cuts, topped up with evenly spaced frames); nothing for a sound recording.
    `source` is a `Media` or a path."""
    from PIL import Image

    from avgeo.media import Media, open_media

    media = source if isinstance(source, Media) else open_media(source)
    if media.kind == "photo":
        return [media.image(max_side=cfg.max_side)]
    if media.kind != "video" or media.video_stream is None or cfg.max_images < 1:
        return []
    frames = list(media.scene_changes(threshold=cfg.scene_threshold,
                                      max_frames=cfg.max_images, max_side=cfg.max_side))
    if len(frames) < cfg.max_images and media.duration_s:
        have = [f.t_s for f in frames]
        fps = cfg.max_images / max(float(media.duration_s), 1e-3)
        for f in media.frames(fps=fps, max_frames=cfg.max_images, max_side=cfg.max_side):
            if len(frames) >= cfg.max_images:
                break
            if all(abs(f.t_s - t) > 0.5 for t in have):
                frames.append(f)
                have.append(f.t_s)
    frames.sort(key=lambda f: f.t_s)
    return [Image.fromarray(f.image) for f in frames]


#: Side of the blank frame that stands in for "no picture" (a sound recording) in a training
#: set that mixes files with and without images.
BLANK_SIDE = 56


def blank_image():
    """A mid-grey frame meaning "no picture". TRL's trainers call the processor on a whole
    batch, which needs every row to carry an image once any row does, so a sound recording
    in a mixed set is shown this instead; the engine does the same for a policy trained so
    (its header says `blank_for_no_image`)."""
    from PIL import Image

    return Image.new("RGB", (BLANK_SIDE, BLANK_SIDE), (128, 128, 128))


def example_images(source: str, cfg: VlmConfig = VlmConfig(), log=print) -> list:
    """Images of a training example's file ('' / 'sim' sources have none); a file that
    cannot be read gives none, with a note."""
    if not source or source == "sim" or not Path(source).is_file():
        return []
    try:
        return media_images(source, cfg)
    except AvgeoError as exc:
        log(f"no images from {source}: {exc.message}")
        return []


# ---------------------------------------------------------------- prompts and generation


def user_text(atoms: Sequence[Atom], media_kind: str,
              prompt_cfg: PromptConfig = PromptConfig()) -> str:
    """The user turn's text: the format instruction, then the text policy's atom prompt."""
    return INSTRUCTION + "\n\n" + render_prompt(atoms, media_kind, prompt_cfg)


def conversation(text: str, images: Sequence | None = None) -> list[dict]:
    """One user turn with its images first (the layout TRL builds from an 'images' column)."""
    content: list[dict] = [{"type": "image", "image": im} for im in (images or [])]
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def generate_vlm(model, processor, texts: Sequence[str], images: Sequence[Sequence] | None = None,
                 max_new_tokens: int = 96, batch_size: int = 8, greedy: bool = True,
                 temperature: float = 1.0) -> list[str]:
    """Completion text for each (user text, images); files with images are run one at a
    time, text-only ones in batches."""
    import torch

    images = list(images) if images is not None else [[] for _ in texts]
    device = next(model.parameters()).device
    out: list[str | None] = [None] * len(texts)
    order = [i for i in range(len(texts)) if not images[i]]
    singles = [i for i in range(len(texts)) if images[i]]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches += [[i] for i in singles]
    tok = processor.tokenizer
    for idx in batches:
        convs = [conversation(texts[i], images[i]) for i in idx]
        enc = processor.apply_chat_template(convs, add_generation_prompt=True, tokenize=True,
                                            return_dict=True, return_tensors="pt",
                                            processor_kwargs={"padding": True})
        enc = {k: v.to(device) if hasattr(v, "to") else v for k, v in enc.items()}
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=not greedy,
                                 temperature=temperature if not greedy else None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        new = gen[:, enc["input_ids"].shape[1]:]
        for i, text in zip(idx, processor.batch_decode(new, skip_special_tokens=True),
                           strict=True):
            out[i] = text
    return [t or "" for t in out]
