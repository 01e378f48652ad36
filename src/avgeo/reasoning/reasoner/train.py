"""Training the reasoner: a supervised warm start (SFT on target chains for the atoms),
then GRPO with TRL's `GRPOTrainer` on the haversine + hierarchical reward. Both stages use
the transformers Trainer, so checkpoints, resume and `accelerate launch`/`torchrun` DDP come
from it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avgeo.errors import ConfigError
from avgeo.reasoning.reasoner.parse import parse_completion
from avgeo.reasoning.reasoner.policy import PolicyConfig
from avgeo.reasoning.reasoner.prompt import (
    Answer,
    PromptConfig,
    render_prompt,
    render_target,
)
from avgeo.reasoning.reasoner.reward import RewardConfig, Truth, make_reward_func, score
from avgeo.reasoning.reasoner.simulate import Example, SimConfig, simulate

#: Error counted for a malformed answer: the largest great-circle distance on Earth.
MAX_ERROR_KM = math.pi * 6371.0088


@dataclass
class TrainConfig:
    """Everything `avgeo train reasoner` can set."""

    n_train: int = 2000
    n_heldout: int = 200
    sft_steps: int = 300
    grpo_steps: int = 60
    batch_size: int = 16
    sft_lr: float = 2e-3
    grpo_lr: float = 2e-5
    #: Group size: completions sampled per prompt, whose rewards are compared.
    num_generations: int = 8
    prompts_per_step: int = 4
    #: KL penalty to the reference (SFT) policy.
    beta: float = 0.04
    temperature: float = 1.0
    max_completion_tokens: int = 64
    save_steps: int = 50
    seed: int = 0
    #: SFT targets: 'truth' (the example's own chain) or 'fusion' (the fusion engine's chain).
    sft_target: str = "truth"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sim: SimConfig = field(default_factory=SimConfig)


# ---------------------------------------------------------------- data


def examples_from_manifest(manifest: str | Path, use_metadata: bool = False,
                           engines=None, log: Callable[[str], None] = print) -> list[Example]:
    """Real atoms (`extract_atoms`) for every located row of a manifest."""
    from avgeo.data.manifest import read_manifest
    from avgeo.errors import AvgeoError
    from avgeo.pipeline import extract_atoms
    from avgeo.reasoning.reasoner.reward import truths_of

    df = read_manifest(manifest)
    if "lat" not in df or "lon" not in df:
        raise ConfigError(f"manifest {manifest} has no lat/lon", "add lat and lon columns")
    df = df[np.isfinite(df["lat"].astype(float)) & np.isfinite(df["lon"].astype(float))]
    truths = truths_of(df["lat"].astype(float).tolist(), df["lon"].astype(float).tolist())
    out = []
    for f, t in zip(df["file"], truths, strict=True):
        try:
            media, atoms, _, _ = extract_atoms(f, engines, use_metadata=use_metadata)
        except AvgeoError as exc:
            log(f"skip {f}: {exc.message}")
            continue
        out.append(Example(atoms, media.kind, t, source=str(f)))
    return out


def load_examples(source: str, n: int, seed: int, cfg: TrainConfig,
                  log: Callable[[str], None] = print) -> list[Example]:
    """'sim' / 'sim:N' for simulated examples, else a manifest of located media."""
    if source == "sim" or source.startswith("sim:"):
        if ":" in source:
            try:
                n = int(source.split(":", 1)[1])
            except ValueError as exc:
                raise ConfigError(f"bad source {source!r}", "use sim or sim:N") from exc
        return simulate(n, seed=seed, cfg=cfg.sim)
    if not Path(source).is_file():
        raise ConfigError(f"{source} is neither 'sim[:N]' nor a manifest file",
                          "pass sim, sim:5000 or a CSV/Parquet manifest with file, lat, lon")
    return examples_from_manifest(source, log=log)


def fusion_answer(ex: Example) -> Answer:
    """The fusion engine's chain and point for an example's atoms."""
    from avgeo.reasoning import chain as chain_mod
    from avgeo.reasoning import summary
    from avgeo.reasoning.fusion import fuse

    result = fuse(ex.atoms)
    support = result.support()
    pe = summary.point_estimate(result.fine or result.coarse, ex.atoms)
    labels = chain_mod.support_labels(result, support, (pe.lat, pe.lon))
    chain = {c.level: c for c in chain_mod.chain_of_region(support, labels)}

    def get(level: str, code: bool) -> str:
        c = chain.get(level)
        return "" if c is None else (c.code if code else c.name)

    return Answer(get("continent", True), get("country", True), get("admin1", False),
                  get("city", False), pe.lat, pe.lon)


def truth_answer(t: Truth) -> Answer:
    return Answer(t.continent, t.country, t.admin1, t.city, t.lat, t.lon)


def sft_records(examples: Sequence[Example], cfg: TrainConfig) -> list[dict]:
    rows = []
    for ex in examples:
        ans = fusion_answer(ex) if cfg.sft_target == "fusion" else truth_answer(ex.truth)
        rows.append({"prompt": render_prompt(ex.atoms, ex.media_kind, cfg.prompt),
                     "completion": render_target(ex.atoms, ans)})
    return rows


def grpo_records(examples: Sequence[Example], cfg: TrainConfig) -> list[dict]:
    return [{"prompt": render_prompt(ex.atoms, ex.media_kind, cfg.prompt),
             "true_lat": ex.truth.lat, "true_lon": ex.truth.lon,
             "true_continent": ex.truth.continent, "true_country": ex.truth.country,
             "true_admin1": ex.truth.admin1, "true_city": ex.truth.city}
            for ex in examples]


# ---------------------------------------------------------------- generation / evaluation


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 64,
             batch_size: int = 32, greedy: bool = True, temperature: float = 1.0) -> list[str]:
    """Completions (text after the prompt) for each prompt."""
    import torch

    out: list[str] = []
    device = next(model.parameters()).device
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(list(prompts[i:i + batch_size]), return_tensors="pt", padding=True)
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=not greedy,
                                 temperature=temperature if not greedy else None,
                                 top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        new = gen[:, enc["input_ids"].shape[1]:]
        out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return out


@dataclass
class EvalSummary:
    n: int
    parse_rate: float
    mean_reward: float
    median_error_km: float
    mean_error_km: float
    country_acc: float
    continent_acc: float


def evaluate_completions(completions: Sequence[str], truths: Sequence[Truth],
                         reward_cfg: RewardConfig = RewardConfig()) -> EvalSummary:
    """Malformed answers count as MAX_ERROR_KM away and miss every level."""
    errs, rewards, ok, hits_c, hits_k = [], [], [], [], []
    for c, t in zip(completions, truths, strict=True):
        p = parse_completion(c)
        parts = score(p, t, reward_cfg)
        rewards.append(parts.total)
        ok.append(p is not None)
        errs.append(parts.error_km if p is not None else MAX_ERROR_KM)
        hits_c.append(parts.hits.get("country", False))
        hits_k.append(parts.hits.get("continent", False))
    n = len(errs)
    return EvalSummary(n, float(np.mean(ok)) if n else math.nan,
                       float(np.mean(rewards)) if n else math.nan,
                       float(np.median(errs)) if n else math.nan,
                       float(np.mean(errs)) if n else math.nan,
                       float(np.mean(hits_c)) if n else math.nan,
                       float(np.mean(hits_k)) if n else math.nan)


def evaluate_policy(model, tokenizer, examples: Sequence[Example], cfg: TrainConfig
                    ) -> EvalSummary:
    prompts = [render_prompt(e.atoms, e.media_kind, cfg.prompt) for e in examples]
    comps = generate(model, tokenizer, prompts, cfg.max_completion_tokens)
    return evaluate_completions(comps, [e.truth for e in examples], cfg.reward)


# ---------------------------------------------------------------- training


def _last_checkpoint(d: Path) -> str | None:
    if not d.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(d))


def _bf16_ok() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def run_sft(model, tokenizer, records: list[dict], out_dir: Path, cfg: TrainConfig,
            resume: bool = False):
    """Supervised warm start: cross-entropy on the completion tokens only."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(out_dir), max_steps=cfg.sft_steps,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.sft_lr,
        lr_scheduler_type="cosine", warmup_steps=max(1, cfg.sft_steps // 20),
        weight_decay=0.01, logging_steps=max(1, cfg.sft_steps // 20),
        save_steps=cfg.save_steps, save_total_limit=2, report_to="none", seed=cfg.seed,
        completion_only_loss=True, max_length=cfg.policy.max_positions, packing=False,
        eos_token=tokenizer.eos_token, pad_token=tokenizer.pad_token,
        dataloader_num_workers=0, disable_tqdm=True, bf16=_bf16_ok())
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records),
                         processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=_last_checkpoint(out_dir) if resume else None)
    return trainer.model, trainer.state.log_history


def run_grpo(model_dir: Path, tokenizer, records: list[dict], out_dir: Path, cfg: TrainConfig,
             resume: bool = False):
    """GRPO: per prompt a group of `num_generations` samples, advantages relative to the
    group's mean reward, a KL penalty `beta` to the frozen starting policy."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(out_dir), max_steps=cfg.grpo_steps,
        per_device_train_batch_size=cfg.num_generations * cfg.prompts_per_step,
        num_generations=cfg.num_generations, beta=cfg.beta, learning_rate=cfg.grpo_lr,
        temperature=cfg.temperature, max_completion_length=cfg.max_completion_tokens,
        lr_scheduler_type="constant", logging_steps=1, save_steps=cfg.save_steps,
        save_total_limit=2, report_to="none", seed=cfg.seed, disable_tqdm=True,
        top_k=0, top_p=1.0, remove_unused_columns=False, dataloader_num_workers=0,
        loss_type="grpo", bf16=_bf16_ok(), model_init_kwargs={"dtype": "float32"})
    reward_fn = make_reward_func(cfg.reward)
    # A path, not a module: the trainer loads the frozen KL reference from the same place.
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=[reward_fn], args=args,
                          train_dataset=Dataset.from_list(records), processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=_last_checkpoint(out_dir) if resume else None)
    return trainer.model, trainer.state.log_history


def train_reasoner(source: str, out_dir: str | Path, cfg: TrainConfig | None = None,
                   resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """SFT then GRPO; writes OUT/sft_policy, OUT/policy (the final one), OUT/report.json."""
    from avgeo.reasoning.reasoner.policy import (
        build_policy,
        load_policy,
        save_policy,
        train_tokenizer,
    )

    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log(f"examples from {source}")
    train_ex = load_examples(source, cfg.n_train, cfg.seed, cfg, log)
    if not train_ex:
        raise ConfigError(f"no located examples in {source}", "check the manifest's lat/lon")
    held = simulate(cfg.n_heldout, seed=cfg.seed + 10_000, cfg=cfg.sim) \
        if cfg.n_heldout > 0 else []
    sft_rows = sft_records(train_ex, cfg)
    sft_dir, policy_dir = out / "sft_policy", out / "policy"
    report: dict = {"config": asdict(cfg), "source": source, "n_train": len(train_ex)}

    if resume and (sft_dir / "avgeo_reasoner.json").is_file():
        model, tok, _ = load_policy(sft_dir)
        model.train()
        log("resume: SFT done, loaded OUT/sft_policy")
    else:
        tok_dir = out / "tokenizer"
        if resume and tok_dir.is_dir():
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
        else:
            tok = train_tokenizer((r["prompt"] + r["completion"] for r in sft_rows),
                                  cfg.policy.vocab_size)
            tok.save_pretrained(tok_dir)
        model = build_policy(tok, cfg.policy)
        if held:
            report["untrained"] = asdict(evaluate_policy(model, tok, held, cfg))
            log(f"untrained: {report['untrained']}")
        if cfg.sft_steps > 0:
            model, hist = run_sft(model, tok, sft_rows, out / "sft", cfg, resume)
            report["sft_history"] = hist
        save_policy(model, tok, sft_dir, {"stage": "sft", "source": source})
    model.eval()
    if held:
        report["sft"] = asdict(evaluate_policy(model, tok, held, cfg))
        log(f"sft: {report['sft']}")
    model.train()
    if cfg.grpo_steps > 0:
        model, hist = run_grpo(sft_dir, tok, grpo_records(train_ex, cfg), out / "grpo", cfg,
                               resume)
        report["grpo_history"] = hist
    save_policy(model, tok, policy_dir, {"stage": "grpo" if cfg.grpo_steps else "sft",
                                         "source": source, "config": asdict(cfg)})
    model.eval()
    if held:
        report["grpo"] = asdict(evaluate_policy(model, tok, held, cfg))
        log(f"grpo: {report['grpo']}")
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report
