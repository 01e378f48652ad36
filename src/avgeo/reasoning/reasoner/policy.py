"""The offline default policy: a small Llama-style transformer with a byte-level BPE
tokenizer trained locally (digits split one per token) on rendered prompts and outputs;
saved/loaded as a transformers model directory under `weights/`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from avgeo.errors import BackboneMissingError, WeightsError

THINK_TOKENS = ("<think>", "</think>")
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
POLICY_FORMAT = "avgeo-reasoner-policy"
POLICY_VERSION = 1


@dataclass(frozen=True)
class PolicyConfig:
    """Size of the default policy (about 1M parameters at the defaults)."""

    vocab_size: int = 1536
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    max_positions: int = 768
    seed: int = 0


def _require_transformers():
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackboneMissingError("the learned reasoner needs transformers and tokenizers",
                                   "pip install transformers tokenizers trl") from exc


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1536):
    """A byte-level BPE (any text round-trips) whose digits are single tokens, so that the
    policy composes coordinates digit by digit; '<think>' tags are ordinary tokens so that
    decoding with special tokens skipped keeps them."""
    _require_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens(list(THINK_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS,
                                   unk_token=UNK, bos_token=None, padding_side="left",
                                   model_max_length=4096)
    return fast


def build_policy(tokenizer, cfg: PolicyConfig = PolicyConfig()):
    """A freshly initialised causal LM sized by `cfg` for `tokenizer`."""
    _require_transformers()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    conf = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, rope_theta=10000.0)
    model = LlamaForCausalLM(conf)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_policy(model, tokenizer, out_dir: str | Path, meta: dict | None = None,
                half: bool = True) -> Path:
    """Write model + tokenizer + a small JSON header; fp16 on disk keeps it a few MB."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = next(model.parameters()).dtype
    if half:
        model.to(torch.float16)
    try:
        model.save_pretrained(out, safe_serialization=True)
    finally:
        model.to(dtype)
    tokenizer.save_pretrained(out)
    header = {"format": POLICY_FORMAT, "version": POLICY_VERSION, **(meta or {})}
    (out / "avgeo_reasoner.json").write_text(json.dumps(header, indent=1, default=str))
    return out


def default_policy_dir() -> Path:
    return Path(str(resources.files("avgeo.reasoning.reasoner").joinpath("weights/default")))


def load_policy(path: str | Path | None = None):
    """(model in float32 eval mode, tokenizer, header) from a policy directory."""
    _require_transformers()
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    p = Path(path) if path is not None else default_policy_dir()
    head = p / "avgeo_reasoner.json"
    if not head.is_file():
        raise WeightsError(f"no reasoner policy at {p}",
                           "train one with `avgeo train reasoner sim --out DIR`")
    header = json.loads(head.read_text())
    if header.get("format") != POLICY_FORMAT or int(header.get("version", 0)) > POLICY_VERSION:
        raise WeightsError(f"{p} is not a reasoner policy this avgeo can read "
                           f"(format {header.get('format')!r} v{header.get('version')})")
    try:
        tok = PreTrainedTokenizerFast.from_pretrained(p)
        model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot load the reasoner policy at {p}: {exc}") from exc
    tok.padding_side = "left"
    model.eval()
    return model, tok, header


def policy_config_dict(cfg: PolicyConfig) -> dict:
    return asdict(cfg)
