"""Training the reasoner: a supervised warm start (SFT on target chains for the atoms),
then GRPO with TRL's `GRPOTrainer` on the haversine + hierarchical reward, for the small
text policy or a local vision-language model (`TrainConfig.vlm`). Both stages use the
transformers Trainer, so checkpoints, resume and `accelerate launch`/`torchrun` DDP come
from it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avgeo.atoms import Atom
from avgeo.errors import ConfigError
from avgeo.reasoning.reasoner.parse import parse_completion
from avgeo.reasoning.reasoner.policy import PolicyConfig
from avgeo.reasoning.reasoner.prompt import (
    Answer,
    PromptConfig,
    render_prompt,
    render_prompt_within,
    render_target,
)
from avgeo.reasoning.reasoner.reward import RewardConfig, Truth, make_reward_func, score
from avgeo.reasoning.reasoner.simulate import Example, SimConfig, simulate
from avgeo.reasoning.reasoner.vlm import VlmConfig

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
    #: Room for the completion: the default policy's chains run to about 80 tokens; at 64,
    #: 14 % of its held-out answers were cut before the coordinate (unparsable).
    max_completion_tokens: int = 88
    save_steps: int = 50
    seed: int = 0
    #: SFT targets: 'truth' (the example's own chain) or 'fusion' (the fusion engine's chain).
    sft_target: str = "truth"
    #: A local vision-language model folder (Qwen-VL style) to fine-tune instead of the
    #: small text policy; '' for the text policy.
    vlm: str = ""
    vlm_images: VlmConfig = field(default_factory=VlmConfig)
    #: None: on for a vision-language model (memory), off for the small policy (speed).
    gradient_checkpointing: bool | None = None
    #: Engines run on a manifest's files ('' = the default set) and whether metadata atoms
    #: are kept (off by default: the reasoner learns from content).
    engines: str = ""
    use_metadata: bool = False
    #: Real located examples (an `avgeo extract` folder) added to a simulated training set;
    #: rows whose split is 'test' are never used.
    real: str = ""
    #: How many times each real example is repeated among the simulated ones.
    real_repeat: int = 1
    #: Fraction of training examples without any geographic atom that are kept (the
    #: held-out set keeps them all). Their answer is the prior's whatever the prompt says,
    #: so they teach little beyond one default chain, yet in a realistic mix they are a
    #: third of the data and crowd out the examples where evidence must be read.
    prior_only_keep: float = 1.0
    #: torch CPU threads while a run trains and evaluates (0 keeps torch's default). One
    #: suits the small policy on a shared CPU: its matrices are too small for threads to
    #: gain, and with other jobs running they wait on each other. With one thread and a
    #: static cache a GRPO step took 9.2 s (median of 80, one other job on the 2-core
    #: machine). Ignored when a GPU trains.
    cpu_threads: int = 1
    #: Key/value cache of GRPO's sampling: 'static' preallocates it instead of growing it
    #: one token at a time (same samples, less copying on CPU), 'dynamic' grows it, 'auto'
    #: is static for the small policy and the model's default for a vision-language one.
    generation_cache: str = "auto"
    #: A trained policy folder (an earlier run's OUT/sft_policy or OUT/policy, or the shipped
    #: one) that GRPO starts from instead of running SFT; '' runs SFT.
    init_policy: str = ""
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


def examples_from_extract(folder: str | Path, log: Callable[[str], None] = print,
                          exclude_splits: Sequence[str] = ("test",)) -> list[Example]:
    """Real atoms from an `avgeo extract` folder (no perception re-run): every file that
    was extracted without error, is located, and is not in an excluded split."""
    from avgeo.data.extract import atoms_by_row, read_shards
    from avgeo.reasoning.reasoner.reward import truths_of

    files = read_shards(folder, "files")
    if files.empty:
        raise ConfigError(f"{folder} holds no extracted files",
                          "run `avgeo extract MANIFEST --out DIR` first")
    lat = files["lat"].astype(float)
    lon = files["lon"].astype(float)
    split = files.get("split")
    held = np.zeros(len(files), bool) if split is None else \
        split.fillna("").astype(str).str.lower().isin([s.lower() for s in exclude_splits])
    keep = (files["status"] == "ok") & np.isfinite(lat) & np.isfinite(lon) & ~held
    dropped = int(len(files) - keep.sum())
    if dropped:
        log(f"{folder}: {dropped} of {len(files)} files unlocated, failed or held out")
    sub = files[keep]
    atoms = atoms_by_row(folder)
    truths = truths_of(sub["lat"].astype(float).tolist(), sub["lon"].astype(float).tolist())
    return [Example(atoms.get(int(r), []), str(k or "unknown"), t, source=str(f))
            for r, k, f, t in zip(sub["row"], sub["kind"], sub["file"], truths, strict=True)]


def _is_extract_dir(p: Path) -> bool:
    from avgeo.data.extract import CONFIG_NAME

    return p.is_dir() and (p / CONFIG_NAME).is_file()


def load_examples(source: str, n: int, seed: int, cfg: TrainConfig,
                  log: Callable[[str], None] = print) -> list[Example]:
    """'sim' / 'sim:N' for simulated examples (plus `cfg.real`'s real ones), an
    `avgeo extract` folder, or a manifest of located media."""
    if source == "sim" or source.startswith("sim:"):
        if ":" in source:
            try:
                n = int(source.split(":", 1)[1])
            except ValueError as exc:
                raise ConfigError(f"bad source {source!r}", "use sim or sim:N") from exc
        out = simulate(n, seed=seed, cfg=cfg.sim)
        if cfg.real:
            if not _is_extract_dir(Path(cfg.real)):
                raise ConfigError(f"{cfg.real} is not an `avgeo extract` folder",
                                  "run `avgeo extract MANIFEST --out DIR --no-metadata`")
            real = examples_from_extract(cfg.real, log)
            log(f"real examples from {cfg.real}: {len(real)} (x{cfg.real_repeat})")
            out = out + real * max(1, cfg.real_repeat)
            np.random.default_rng(seed).shuffle(out)
        return out
    p = Path(source)
    if _is_extract_dir(p):
        return examples_from_extract(p, log)
    if not p.is_file():
        raise ConfigError(f"{source} is neither 'sim[:N]', an extract folder nor a manifest",
                          "pass sim, sim:5000, an `avgeo extract` folder or a CSV/Parquet "
                          "manifest with file, lat, lon")
    return examples_from_manifest(source, cfg.use_metadata, cfg.engines or None, log)


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


def _sft_answer(ex: Example, cfg: TrainConfig) -> Answer:
    return fusion_answer(ex) if cfg.sft_target == "fusion" else truth_answer(ex.truth)


def _truth_columns(t: Truth) -> dict:
    return {"true_lat": t.lat, "true_lon": t.lon, "true_continent": t.continent,
            "true_country": t.country, "true_admin1": t.admin1, "true_city": t.city}


def prompt_renderer(cfg: TrainConfig, tokenizer=None,
                    budget: int | None = None) -> Callable[[Sequence[Atom], str], str]:
    """(atoms, media kind) → prompt; with a tokenizer, cut to the atom lines that fit the
    policy's positions less room for the completion."""
    if tokenizer is None:
        return lambda atoms, kind: render_prompt(atoms, kind, cfg.prompt)
    room = budget if budget is not None else \
        cfg.policy.max_positions - cfg.max_completion_tokens - 8

    def n_tokens(s: str) -> int:
        return len(tokenizer(s)["input_ids"])

    return lambda atoms, kind: render_prompt_within(atoms, kind, cfg.prompt, n_tokens, room)


def sft_records(examples: Sequence[Example], cfg: TrainConfig, tokenizer=None) -> list[dict]:
    render = prompt_renderer(cfg, tokenizer)
    return [{"prompt": render(ex.atoms, ex.media_kind),
             "completion": render_target(ex.atoms, _sft_answer(ex, cfg))} for ex in examples]


def grpo_records(examples: Sequence[Example], cfg: TrainConfig, tokenizer=None) -> list[dict]:
    render = prompt_renderer(cfg, tokenizer)
    return [{"prompt": render(ex.atoms, ex.media_kind), **_truth_columns(ex.truth)}
            for ex in examples]


def _images_of(ex: Example, cfg: TrainConfig, log: Callable[[str], None]) -> list:
    from avgeo.reasoning.reasoner.vlm import example_images

    if "images" not in ex.extra:  # decoded once, shared by the SFT and GRPO records
        ex.extra["images"] = example_images(ex.source, cfg.vlm_images, log)
    return ex.extra["images"]


def vlm_records(examples: Sequence[Example], cfg: TrainConfig, stage: str,
                log: Callable[[str], None] = print) -> list[dict]:
    """Conversational records for TRL's vision-language path: the user turn's text (format
    instruction + atom prompt) and the file's images in an 'images' column, which the
    trainers place before the text. SFT rows carry the target as an assistant turn, GRPO
    rows the truth columns the reward reads. The 'images' column is left out when no
    example has an image (simulated atoms)."""
    from avgeo.reasoning.reasoner.vlm import user_text

    rows = []
    for ex in examples:
        row: dict = {"prompt": [{"role": "user",
                                 "content": user_text(ex.atoms, ex.media_kind, cfg.prompt)}],
                     "images": _images_of(ex, cfg, log)}
        if stage == "sft":
            row["completion"] = [{"role": "assistant",
                                  "content": render_target(ex.atoms, _sft_answer(ex, cfg))}]
        else:
            row.update(_truth_columns(ex.truth))
        rows.append(row)
    if not any(r["images"] for r in rows):
        for r in rows:
            del r["images"]
    elif not all(r["images"] for r in rows):
        from avgeo.reasoning.reasoner.vlm import blank_image

        for r in rows:
            r["images"] = r["images"] or [blank_image()]
    return rows


def _mixes_images(examples: Sequence[Example], cfg: TrainConfig, log) -> bool:
    flags = [bool(_images_of(e, cfg, log)) for e in examples]
    return any(flags) and not all(flags)


# ---------------------------------------------------------------- generation / evaluation


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 88,
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


@dataclass
class CompletionScores:
    """Per completion: parsed or not, reward, error (km) and level hits."""

    parsed: np.ndarray
    reward: np.ndarray
    error_km: np.ndarray
    country: np.ndarray
    continent: np.ndarray


def score_completions(completions: Sequence[str], truths: Sequence[Truth],
                      reward_cfg: RewardConfig = RewardConfig()) -> CompletionScores:
    """Malformed answers count as MAX_ERROR_KM away and miss every level."""
    rows = []
    for c, t in zip(completions, truths, strict=True):
        p = parse_completion(c)
        parts = score(p, t, reward_cfg)
        rows.append((p is not None, parts.total,
                     parts.error_km if p is not None else MAX_ERROR_KM,
                     parts.hits.get("country", False), parts.hits.get("continent", False)))
    cols = [np.asarray(c) for c in zip(*rows, strict=True)] if rows else \
        [np.zeros(0, bool), np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)]
    return CompletionScores(*cols)


def summarize_scores(s: CompletionScores) -> EvalSummary:
    n = len(s.reward)

    def mean(a: np.ndarray) -> float:
        return float(np.mean(a)) if n else math.nan

    return EvalSummary(n, mean(s.parsed), mean(s.reward),
                       float(np.median(s.error_km)) if n else math.nan, mean(s.error_km),
                       mean(s.country), mean(s.continent))


def evaluate_completions(completions: Sequence[str], truths: Sequence[Truth],
                         reward_cfg: RewardConfig = RewardConfig()) -> EvalSummary:
    """Malformed answers count as MAX_ERROR_KM away and miss every level."""
    return summarize_scores(score_completions(completions, truths, reward_cfg))


def policy_completions(model, tokenizer, examples: Sequence[Example], cfg: TrainConfig
                       ) -> list[str]:
    """The policy's greedy completion for each example's prompt."""
    render = prompt_renderer(cfg, tokenizer)
    prompts = [render(e.atoms, e.media_kind) for e in examples]
    return generate(model, tokenizer, prompts, cfg.max_completion_tokens)


def evaluate_policy(model, tokenizer, examples: Sequence[Example], cfg: TrainConfig
                    ) -> EvalSummary:
    comps = policy_completions(model, tokenizer, examples, cfg)
    return evaluate_completions(comps, [e.truth for e in examples], cfg.reward)


def evaluate_fusion(examples: Sequence[Example], cfg: TrainConfig) -> EvalSummary:
    """The fusion engine's own chain and point on the same examples: the rule-based
    reference the learned policy is compared with."""
    comps = [render_target(e.atoms, fusion_answer(e)) for e in examples]
    return evaluate_completions(comps, [e.truth for e in examples], cfg.reward)


def evaluate_vlm(model, processor, examples: Sequence[Example], cfg: TrainConfig,
                 log: Callable[[str], None] = print, blank: bool = False) -> EvalSummary:
    """`evaluate_policy` for a vision-language model (each file's images shown; `blank`:
    a blank frame where a file has none, as the policy was trained)."""
    from avgeo.reasoning.reasoner.vlm import blank_image, generate_vlm, user_text

    texts = [user_text(e.atoms, e.media_kind, cfg.prompt) for e in examples]
    images = [_images_of(e, cfg, log) or ([blank_image()] if blank else []) for e in examples]
    comps = generate_vlm(model, processor, texts, images, cfg.max_completion_tokens)
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


def _checkpointing(cfg: TrainConfig) -> bool:
    return bool(cfg.vlm) if cfg.gradient_checkpointing is None else cfg.gradient_checkpointing


def _tokenizer_of(processing_class):
    return getattr(processing_class, "tokenizer", processing_class)


def run_sft(model, processing_class, records: list[dict], out_dir: Path, cfg: TrainConfig,
            resume: bool = False, callbacks: Sequence | None = None, grad_clip: float = 1.0):
    """Supervised warm start: cross-entropy on the completion tokens only. The processing
    class is the policy's tokenizer, or a vision-language model's processor."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = _tokenizer_of(processing_class)
    args = SFTConfig(
        output_dir=str(out_dir), max_steps=cfg.sft_steps,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.sft_lr,
        lr_scheduler_type="cosine", warmup_steps=max(1, cfg.sft_steps // 20),
        weight_decay=0.01, logging_steps=max(1, cfg.sft_steps // 20),
        save_steps=cfg.save_steps, save_total_limit=2, report_to="none", seed=cfg.seed,
        completion_only_loss=True, packing=False,
        # Image tokens must not be cut: no truncation for a vision-language model.
        max_length=None if cfg.vlm else cfg.policy.max_positions,
        eos_token=tok.eos_token, max_grad_norm=grad_clip,
        gradient_checkpointing=_checkpointing(cfg),
        dataloader_num_workers=0, disable_tqdm=True, bf16=_bf16_ok())
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records),
                         processing_class=processing_class, callbacks=list(callbacks or []))
    trainer.train(resume_from_checkpoint=_last_checkpoint(out_dir) if resume else None)
    return trainer.model, trainer.state.log_history


def _cache_implementation(cfg: TrainConfig) -> str | None:
    if cfg.generation_cache == "auto":
        return None if cfg.vlm else "static"
    return None if cfg.generation_cache == "dynamic" else cfg.generation_cache


@contextmanager
def cpu_threads(n: int):
    """torch's intra-op thread count set to `n` for the block (n <= 0, or a GPU present:
    left alone), restored afterwards."""
    import torch

    if n <= 0 or torch.cuda.is_available():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_grpo(model_dir: Path, processing_class, records: list[dict], out_dir: Path,
             cfg: TrainConfig, resume: bool = False, callbacks: Sequence | None = None,
             grad_clip: float = 1.0):
    """GRPO: per prompt a group of `num_generations` samples, advantages relative to the
    group's mean reward, a KL penalty `beta` to the frozen starting policy."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    init = {"dtype": "bfloat16" if _bf16_ok() else "float32"}
    if cfg.vlm:
        init["local_files_only"] = True
    args = GRPOConfig(
        output_dir=str(out_dir), max_steps=cfg.grpo_steps,
        per_device_train_batch_size=cfg.num_generations * cfg.prompts_per_step,
        num_generations=cfg.num_generations, beta=cfg.beta, learning_rate=cfg.grpo_lr,
        temperature=cfg.temperature, max_completion_length=cfg.max_completion_tokens,
        lr_scheduler_type="constant", logging_steps=1, save_steps=cfg.save_steps,
        save_total_limit=2, report_to="none", seed=cfg.seed, disable_tqdm=True,
        top_k=0, top_p=1.0, remove_unused_columns=False, dataloader_num_workers=0,
        gradient_checkpointing=_checkpointing(cfg), max_grad_norm=grad_clip,
        loss_type="grpo", bf16=_bf16_ok(), model_init_kwargs=init,
        cache_implementation=_cache_implementation(cfg))
    reward_fn = make_reward_func(cfg.reward)
    # A path, not a module: the trainer loads the frozen KL reference from the same place.
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=[reward_fn], args=args,
                          train_dataset=Dataset.from_list(records),
                          processing_class=processing_class, callbacks=list(callbacks or []))
    trainer.train(resume_from_checkpoint=_last_checkpoint(out_dir) if resume else None)
    return trainer.model, trainer.state.log_history


def metrics_callback(run_dir: str | Path, tensorboard: bool = True):
    """A transformers TrainerCallback that writes every Trainer log row (loss, reward, KL,
    learning rate, ...) to the shared metrics log (`avgeo.training.MetricsLog`: run_dir/
    metrics.csv and TensorBoard events). A resumed trainer keeps the rows up to its
    checkpoint's step, so the log reads like one uninterrupted run."""
    from transformers import TrainerCallback

    from avgeo.training.metrics import MetricsLog

    class MetricsCallback(TrainerCallback):
        def __init__(self) -> None:
            self.log: MetricsLog | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.log = MetricsLog(run_dir, tensorboard=tensorboard,
                                      resume_step=state.global_step or None)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.log is None or not logs:
                return
            scalars = {k: float(v) for k, v in logs.items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            if scalars:
                self.log.log(state.global_step, scalars)

        def on_train_end(self, args, state, control, **kwargs):
            if self.log is not None:
                self.log.close()
                self.log = None

    return MetricsCallback()


def _start_run(cfg: TrainConfig, run, out: Path, source: str, callbacks: Sequence | None):
    """Seeds everything, writes the run's config record, and returns (callbacks for the SFT
    trainer, for the GRPO trainer): the caller's plus one metrics log per stage."""
    from avgeo.training import TrainerConfig, atomic_write_text, record, seed_everything

    run = run or TrainerConfig(seed=cfg.seed)
    seed_everything(cfg.seed, deterministic=run.deterministic)
    run_dir = Path(run.run_dir) if run.run_dir else out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    rec = record(reasoner=cfg, run=run)
    rec["source"] = source
    atomic_write_text(run_dir / "config.json", json.dumps(rec, indent=1, default=str) + "\n")
    extra = list(callbacks or [])
    return ([*extra, metrics_callback(run_dir / "sft", run.tensorboard)],
            [*extra, metrics_callback(run_dir / "grpo", run.tensorboard)], run)


def _thin_prior_only(examples: list[Example], cfg: TrainConfig,
                     log: Callable[[str], None]) -> list[Example]:
    """Keep `cfg.prior_only_keep` of the examples that carry no geographic atom (a fixed
    draw per seed; real examples are always kept)."""
    if cfg.prior_only_keep >= 1.0:
        return examples
    rng = np.random.default_rng(cfg.seed + 20_000)
    out = [e for e in examples
           if e.source != "sim" or any(a.likelihood is not None for a in e.atoms)
           or rng.random() < cfg.prior_only_keep]
    log(f"kept {len(out)} of {len(examples)} examples "
        f"({cfg.prior_only_keep:.0%} of those without geographic atoms)")
    return out


def _sft_done(cfg: TrainConfig, sft_dir: Path, resume: bool,
              log: Callable[[str], None]) -> bool:
    """Whether OUT/sft_policy is ready and SFT is skipped: a resumed run that wrote it, or
    `cfg.init_policy`, which becomes OUT/sft_policy (copied once; a resumed run keeps its
    copy)."""
    if not cfg.init_policy:
        return resume and (sft_dir / "avgeo_reasoner.json").is_file()
    src = Path(cfg.init_policy).expanduser()
    if not (src / "avgeo_reasoner.json").is_file():
        raise ConfigError(f"--init-policy {src} is not a reasoner policy folder",
                          "pass an earlier run's OUT/sft_policy or OUT/policy")
    if not (sft_dir / "avgeo_reasoner.json").is_file():
        import shutil

        if sft_dir.exists():
            shutil.rmtree(sft_dir)
        shutil.copytree(src, sft_dir)
        log(f"GRPO starts from {src} (copied to {sft_dir}); no SFT")
    return True


def _heldout(cfg: TrainConfig) -> list[Example]:
    return simulate(cfg.n_heldout, seed=cfg.seed + 10_000, cfg=cfg.sim) \
        if cfg.n_heldout > 0 else []


def train_reasoner(source: str, out_dir: str | Path, cfg: TrainConfig | None = None,
                   resume: bool = False, log: Callable[[str], None] = print,
                   callbacks: Sequence | None = None, run=None) -> dict:
    """SFT then GRPO; writes OUT/sft_policy, OUT/policy (the final one), OUT/report.json,
    and the run's config.json plus sft/ and grpo/ metrics logs under `run.run_dir`
    (default OUT/run). `run`: the shared core's `TrainerConfig` (run_dir, tensorboard,
    deterministic, grad_clip); TRL runs its own loop, so its other settings do not apply.
    `callbacks`: more transformers TrainerCallbacks, given to both trainers."""
    cfg = cfg or TrainConfig()
    if cfg.sft_target not in ("truth", "fusion"):
        raise ConfigError(f"sft_target {cfg.sft_target!r}", "use truth or fusion")
    _check_cache(cfg)
    with cpu_threads(cfg.cpu_threads):
        return _train_reasoner(source, out_dir, cfg, resume, log, callbacks, run)


def _check_cache(cfg: TrainConfig) -> None:
    from transformers.generation.configuration_utils import ALL_CACHE_IMPLEMENTATIONS

    ok = ("auto", "dynamic", *ALL_CACHE_IMPLEMENTATIONS)
    if cfg.generation_cache not in ok:
        raise ConfigError(f"generation_cache {cfg.generation_cache!r}",
                          f"use one of {', '.join(sorted(set(ok)))}")


def _train_reasoner(source: str, out_dir: str | Path, cfg: TrainConfig, resume: bool,
                    log: Callable[[str], None], callbacks: Sequence | None, run) -> dict:
    from avgeo.reasoning.reasoner.policy import (
        build_policy,
        load_policy,
        save_policy,
        train_tokenizer,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sft_cb, grpo_cb, run = _start_run(cfg, run, out, source, callbacks)
    if cfg.vlm:
        return train_vlm_reasoner(source, out, cfg, resume, log, (sft_cb, grpo_cb), run)
    log(f"examples from {source}")
    train_ex = _thin_prior_only(load_examples(source, cfg.n_train, cfg.seed, cfg, log), cfg,
                                log)
    if not train_ex:
        raise ConfigError(f"no located examples in {source}", "check the manifest's lat/lon")
    held = _heldout(cfg)
    sft_rows = sft_records(train_ex, cfg)
    sft_dir, policy_dir = out / "sft_policy", out / "policy"
    report: dict = {"config": asdict(cfg), "source": source, "n_train": len(train_ex)}
    if held:
        report["fusion"] = asdict(evaluate_fusion(held, cfg))
        log(f"fusion: {report['fusion']}")

    if _sft_done(cfg, sft_dir, resume, log):
        model, tok, _ = load_policy(sft_dir)
        model.train()
        log("SFT done: loaded OUT/sft_policy")
    else:
        tok_dir = out / "tokenizer"
        if resume and tok_dir.is_dir():
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
        else:
            tok = train_tokenizer((r["prompt"] + r["completion"] for r in sft_rows),
                                  cfg.policy.vocab_size)
            tok.save_pretrained(tok_dir)
        sft_rows = sft_records(train_ex, cfg, tok)
        model = build_policy(tok, cfg.policy)
        if held:
            report["untrained"] = asdict(evaluate_policy(model, tok, held, cfg))
            log(f"untrained: {report['untrained']}")
        if cfg.sft_steps > 0:
            model, hist = run_sft(model, tok, sft_rows, out / "sft", cfg, resume, sft_cb,
                                  run.grad_clip)
            report["sft_history"] = hist
        save_policy(model, tok, sft_dir, {"stage": "sft", "source": source,
                                          "config": asdict(cfg)})
    model.eval()
    if held:
        report["sft"] = asdict(evaluate_policy(model, tok, held, cfg))
        log(f"sft: {report['sft']}")
    model.train()
    if cfg.grpo_steps > 0:
        model, hist = run_grpo(sft_dir, tok, grpo_records(train_ex, cfg, tok), out / "grpo",
                               cfg, resume, grpo_cb, run.grad_clip)
        report["grpo_history"] = hist
    save_policy(model, tok, policy_dir, {"stage": "grpo" if cfg.grpo_steps else "sft",
                                         "source": source, "config": asdict(cfg)})
    model.eval()
    if held:
        report["grpo"] = asdict(evaluate_policy(model, tok, held, cfg))
        log(f"grpo: {report['grpo']}")
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def train_vlm_reasoner(source: str, out_dir: str | Path, cfg: TrainConfig,
                       resume: bool = False, log: Callable[[str], None] = print,
                       callbacks: tuple[Sequence, Sequence] = ((), ()), run=None) -> dict:
    """The same two stages for a local vision-language model: SFT from `cfg.vlm` into
    OUT/sft_policy, then GRPO from there into OUT/policy. Each example shows its file's
    images (a photo, or a video's key frames); simulated examples are text only."""
    from avgeo.reasoning.reasoner.vlm import is_vlm_dir, load_vlm, save_vlm

    base = Path(cfg.vlm).expanduser()
    if not is_vlm_dir(base):
        raise ConfigError(f"--vlm {base} is not a vision-language model folder",
                          "pass a local Qwen2-VL / Qwen2.5-VL / Qwen3-VL folder written by "
                          "save_pretrained (config.json, weights, tokenizer, "
                          "preprocessor_config.json)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sft_cb, grpo_cb = callbacks
    grad_clip = run.grad_clip if run is not None else 1.0
    log(f"examples from {source}; vision-language model {base}")
    train_ex = _thin_prior_only(load_examples(source, cfg.n_train, cfg.seed, cfg, log), cfg,
                                log)
    if not train_ex:
        raise ConfigError(f"no located examples in {source}", "check the manifest's lat/lon")
    held = _heldout(cfg)
    sft_dir, policy_dir = out / "sft_policy", out / "policy"
    blank = _mixes_images(train_ex, cfg, log)
    report: dict = {"config": asdict(cfg), "source": source, "n_train": len(train_ex),
                    "vlm": str(base),
                    "n_with_images": sum(bool(_images_of(e, cfg, log)) for e in train_ex),
                    "blank_for_no_image": blank}
    meta = {"source": source, "base": str(base), "blank_for_no_image": blank}
    if held:
        report["fusion"] = asdict(evaluate_fusion(held, cfg))

    if _sft_done(cfg, sft_dir, resume, log):
        model, proc = load_vlm(sft_dir)
        log("SFT done: loaded OUT/sft_policy")
    else:
        model, proc = load_vlm(base)
        if held:
            report["untrained"] = asdict(evaluate_vlm(model, proc, held, cfg, log, blank))
            log(f"untrained: {report['untrained']}")
        if cfg.sft_steps > 0:
            model.train()
            model, hist = run_sft(model, proc, vlm_records(train_ex, cfg, "sft", log),
                                  out / "sft", cfg, resume, sft_cb, grad_clip)
            report["sft_history"] = hist
        save_vlm(model, proc, sft_dir, {"stage": "sft", **meta})
    model.eval()
    if held:
        report["sft"] = asdict(evaluate_vlm(model, proc, held, cfg, log, blank))
        log(f"sft: {report['sft']}")
    if cfg.grpo_steps > 0:
        model, hist = run_grpo(sft_dir, proc, vlm_records(train_ex, cfg, "grpo", log),
                               out / "grpo", cfg, resume, grpo_cb, grad_clip)
        report["grpo_history"] = hist
    save_vlm(model, proc, policy_dir, {"stage": "grpo" if cfg.grpo_steps else "sft",
                                       **meta, "config": asdict(cfg)})
    model.eval()
    if held:
        report["grpo"] = asdict(evaluate_vlm(model, proc, held, cfg, log, blank))
        log(f"grpo: {report['grpo']}")
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report
