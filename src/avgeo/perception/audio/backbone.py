"""The opt-in `audio_backbone` engine: a transformers audio encoder (CLAP, AST or any
AutoModel) loaded from a local folder embeds fixed windows; AST heads and CLAP prompts add
"sound_event" atoms (no geographic likelihood: the labels are not places)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from avgeo.atoms import Atom
from avgeo.errors import BackboneMissingError, ConfigError, WeightsError
from avgeo.perception.base import EngineContext, register
from avgeo.perception.local_model import resolve_model_dir

if TYPE_CHECKING:
    from avgeo.media import Media

ENV_VAR = "AVGEO_AUDIO_BACKBONE"
ENGINE = "audio_backbone"
SETUP_HINT = (f"set {ENV_VAR} (or the audio_backbone option) to a local folder saved with "
              "save_pretrained (config.json + weights + preprocessor_config.json)")
GENERIC_WINDOW_S = 10.0
MIN_TAIL_S = 1.0
AST_FRAME_S = 0.01  # AST's Kaldi fbank uses a 10 ms frame shift


@dataclass
class BackboneEmbeddings:
    """One vector per analysed window (same layout as BirdNET's `Embeddings`)."""

    start_s: np.ndarray  # float64 (n,)
    end_s: np.ndarray  # float64 (n,)
    vectors: np.ndarray  # float32 (n, d)
    family: str = ""
    source: str = ""

    def __len__(self) -> int:
        return int(self.start_s.shape[0])


@dataclass
class Backbone:
    """A loaded encoder: `family` is "clap", "ast" or "generic"."""

    family: str
    path: Path
    model: Any
    extractor: Any
    tokenizer: Any = None
    sample_rate: int = 16000
    window_s: float = GENERIC_WINDOW_S
    id2label: dict[int, str] = field(default_factory=dict)
    multi_label: bool = True


def resolve_path(options: dict[str, Any] | None = None) -> Path:
    """The configured backbone folder; BackboneMissingError when unset or incomplete."""
    return resolve_model_dir(options, "audio_backbone", ENV_VAR, "audio backbone", SETUP_HINT)


def _family(cfg: dict[str, Any]) -> str:
    mt = str(cfg.get("model_type", ""))
    if mt == "clap":
        return "clap"
    if mt == "audio-spectrogram-transformer":
        return "ast"
    return "generic"


@lru_cache(maxsize=2)
def _load(path: str, mtime: float) -> Backbone:
    import torch  # noqa: F401  (transformers needs it; fail here with a clear message)
    import transformers as tf

    p = Path(path)
    cfg = json.loads((p / "config.json").read_text())
    family = _family(cfg)
    kw: dict[str, Any] = {"local_files_only": True}
    tokenizer = None
    try:
        if family == "clap":
            model = tf.ClapModel.from_pretrained(p, **kw)
            try:
                proc = tf.ClapProcessor.from_pretrained(p, **kw)
                extractor, tokenizer = proc.feature_extractor, proc.tokenizer
            except (OSError, ValueError, TypeError):
                # an audio-only export (no tokenizer files): embeddings, but no zero-shot
                extractor = tf.ClapFeatureExtractor.from_pretrained(p, **kw)
            window_s = float(getattr(extractor, "nb_max_samples", 0)
                             / extractor.sampling_rate) or GENERIC_WINDOW_S
        elif family == "ast":
            heads = "ASTForAudioClassification" in (cfg.get("architectures") or [])
            cls = tf.ASTForAudioClassification if heads else tf.ASTModel
            model = cls.from_pretrained(p, **kw)
            extractor = tf.ASTFeatureExtractor.from_pretrained(p, **kw)
            window_s = float(extractor.max_length) * AST_FRAME_S
        else:
            model = tf.AutoModel.from_pretrained(p, **kw)
            extractor = tf.AutoFeatureExtractor.from_pretrained(p, **kw)
            window_s = GENERIC_WINDOW_S
    except OSError as exc:
        raise WeightsError(f"cannot load the audio backbone in {p}: {str(exc).splitlines()[0]}",
                           SETUP_HINT) from exc
    model.eval()
    id2label: dict[int, str] = {}
    if family == "ast" and hasattr(model, "classifier"):
        id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    sr = int(getattr(extractor, "sampling_rate", 16000))
    single = getattr(model.config, "problem_type", None) == "single_label_classification"
    return Backbone(family=family, path=p, model=model, extractor=extractor, tokenizer=tokenizer,
                    sample_rate=sr, window_s=window_s, id2label=id2label, multi_label=not single)


def load_backbone(path: str | Path) -> Backbone:
    """Load (cached per folder and config mtime) the encoder saved in `path`."""
    p = resolve_path({"audio_backbone": str(path)})
    return _load(str(p.resolve()), (p / "config.json").stat().st_mtime)


def iter_windows(chunks: Iterable[np.ndarray], sample_rate: int, window_s: float,
                 hop_s: float | None = None,
                 min_tail_s: float = MIN_TAIL_S) -> Iterator[tuple[float, np.ndarray]]:
    """(start_s, samples) windows over a stream of mono chunks; the last, shorter window is
    kept (unpadded: each extractor pads its own way) when at least `min_tail_s` long."""
    win = max(1, round(window_s * sample_rate))
    hop = round((hop_s or window_s) * sample_rate)
    if hop <= 0 or hop > win:
        raise ConfigError(f"backbone hop must be in (0, window] s, got {hop_s}")
    buf = np.zeros(0, dtype=np.float32)
    offset = 0
    for ch in chunks:
        buf = np.concatenate([buf, np.asarray(ch, dtype=np.float32).reshape(-1)])
        pos = 0
        while pos + win <= buf.shape[0]:
            yield (offset + pos) / sample_rate, buf[pos:pos + win]
            pos += hop
        buf = buf[pos:]
        offset += pos
    if buf.shape[0] >= max(1, round(min_tail_s * sample_rate)):
        yield offset / sample_rate, buf


def _batches(windows: Iterable[tuple[float, np.ndarray]],
             size: int) -> Iterator[list[tuple[float, np.ndarray]]]:
    # equal-length windows only, so no extractor has to pad within a batch
    batch: list[tuple[float, np.ndarray]] = []
    for w in windows:
        if batch and (len(batch) >= size or w[1].shape[0] != batch[0][1].shape[0]):
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch


def _forward(bb: Backbone, wavs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """(embeddings (n, d), per-label scores (n, L) or None) for same-length windows."""
    import torch

    with torch.no_grad():
        inputs = bb.extractor(wavs, sampling_rate=bb.sample_rate, return_tensors="pt")
        if bb.family == "clap":
            out = bb.model.get_audio_features(**inputs)
            emb = out if isinstance(out, torch.Tensor) else out.pooler_output
            return emb.float().numpy(), None
        if bb.family == "ast":
            base = getattr(bb.model, "audio_spectrogram_transformer", bb.model)
            pooled = base(input_values=inputs["input_values"]).pooler_output
            scores = None
            if hasattr(bb.model, "classifier"):
                logits = bb.model.classifier(pooled)
                scores = (torch.sigmoid(logits) if bb.multi_label
                          else torch.softmax(logits, dim=-1)).float().numpy()
            return pooled.float().numpy(), scores
        hidden = bb.model(**inputs).last_hidden_state
        return hidden.mean(dim=1).float().numpy(), None


def embed_media(bb: Backbone, media: Media, window_s: float | None = None,
                hop_s: float | None = None, max_s: float | None = None,
                batch: int = 4) -> tuple[BackboneEmbeddings, np.ndarray | None]:
    """Embed the media's audio window by window: (embeddings, AST label scores or None)."""
    win = float(window_s or bb.window_s)
    chunks = (c.samples for c in media.audio_chunks(sample_rate=bb.sample_rate,
                                                    chunk_s=max(30.0, win), max_s=max_s))
    starts: list[float] = []
    ends: list[float] = []
    vecs: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for group in _batches(iter_windows(chunks, bb.sample_rate, win, hop_s), max(1, batch)):
        emb, sc = _forward(bb, [w for _, w in group])
        for t, w in group:
            starts.append(t)
            ends.append(t + w.shape[0] / bb.sample_rate)
        vecs.append(emb)
        if sc is not None:
            scores.append(sc)
    dim = vecs[0].shape[1] if vecs else 0
    out = BackboneEmbeddings(
        start_s=np.asarray(starts, np.float64), end_s=np.asarray(ends, np.float64),
        vectors=np.concatenate(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32),
        family=bb.family, source=bb.path.name)
    return out, (np.concatenate(scores) if scores else None)


def clap_label_scores(bb: Backbone, vectors: np.ndarray, labels: list[str]) -> np.ndarray:
    """Zero-shot probabilities (n windows, len(labels)): softmax over the prompts of CLAP's
    scaled audio–text cosine similarity."""
    import torch

    if bb.tokenizer is None:
        raise BackboneMissingError(f"the CLAP backbone in {bb.path} has no tokenizer",
                                   "save the ClapProcessor (tokenizer included) to that folder")
    if len(labels) < 2:
        raise ConfigError("clap_labels needs at least two prompts",
                          "zero-shot scores are relative: give competing prompts")
    with torch.no_grad():
        tok = bb.tokenizer(labels, padding=True, return_tensors="pt")
        out = bb.model.get_text_features(**tok)
        text = out if isinstance(out, torch.Tensor) else out.pooler_output
        text = torch.nn.functional.normalize(text.float(), dim=-1)
        audio = torch.nn.functional.normalize(torch.from_numpy(vectors).float(), dim=-1)
        scale = bb.model.logit_scale_a.exp().float()
        return torch.softmax(audio @ text.T * scale, dim=-1).numpy()


def scores_to_atoms(start_s: np.ndarray, end_s: np.ndarray, scores: np.ndarray,
                    labels: list[str], min_conf: float, top_k: int, family: str,
                    source: str) -> list[Atom]:
    """One "sound_event" atom per (label, run of adjacent windows) where the label is among
    a window's top `top_k` with score ≥ `min_conf`; pooled per label."""
    if scores.size == 0:
        return []
    k = max(1, min(top_k, scores.shape[1]))
    top = np.argsort(-scores, axis=1)[:, :k]
    hits: dict[int, list[int]] = {}
    for w in np.argsort(start_s):
        for j in top[w]:
            if scores[w, j] >= min_conf:
                hits.setdefault(int(j), []).append(int(w))
    atoms: list[Atom] = []
    for j, ws in hits.items():
        runs: list[list[int]] = []
        for w in ws:
            # adjacent when this window starts before the previous one ended (+ slack)
            if runs and start_s[w] <= end_s[runs[-1][-1]] + 0.5:
                runs[-1].append(w)
            else:
                runs.append([w])
        label = labels[j]
        for run in runs:
            a, b = float(start_s[run[0]]), float(end_s[run[-1]])
            s = scores[run, j]
            atoms.append(Atom(
                name=label, engine=ENGINE, kind="sound_event",
                evidence=f"{family.upper()} backbone '{source}' hears '{label}' {a:.1f}–{b:.1f} s "
                         f"(score {float(s.max()):.2f}, mean {float(s.mean()):.2f} over "
                         f"{len(run)} window{'s' if len(run) > 1 else ''})",
                confidence=float(s.max()), start_s=a, end_s=b,
                value={"label": label, "label_index": j, "score_mean": float(s.mean()),
                       "windows": len(run), "family": family, "backbone": source},
                likelihood=None, group=f"{ENGINE}:{label}"))
    return atoms


@register(ENGINE)
class AudioBackboneEngine:
    """Audio embeddings (and, where the model allows, sound-event labels) from a local
    transformers checkpoint. Opt-in: nothing is downloaded.

    Options (ctx.options): audio_backbone (folder; else env AVGEO_AUDIO_BACKBONE),
    backbone_window_s (the model's native length: CLAP max_length_s, AST max_length × 10 ms,
    else 10 s), backbone_hop_s (= window), backbone_max_s (None), backbone_min_conf (0.3),
    backbone_top_k (3), backbone_batch (4), clap_labels (list of ≥ 2 text prompts).
    Sets ctx.options["backbone_embeddings"] to the BackboneEmbeddings it computed.
    """

    name: ClassVar[str] = ENGINE
    media_kinds: ClassVar[tuple[str, ...]] = ("audio", "video")

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = path
        self.last_embeddings: BackboneEmbeddings | None = None
        self.last_scores: np.ndarray | None = None

    def _options(self, ctx: EngineContext | None) -> dict[str, Any]:
        opts = dict(ctx.options) if ctx is not None else {}
        if self.path and not opts.get("audio_backbone"):
            opts["audio_backbone"] = str(self.path)
        return opts

    def available(self) -> tuple[bool, str]:
        from importlib.util import find_spec

        if find_spec("transformers") is None:
            return False, "install transformers to use audio backbones"
        try:
            resolve_path(self._options(None))
        except BackboneMissingError as exc:
            return False, f"{exc.message}: {exc.hint}"
        return True, ""

    def atoms(self, media: Media, ctx: EngineContext) -> list[Atom]:
        if not getattr(media, "has_audio", True):
            return []
        opts = self._options(ctx)
        bb = load_backbone(resolve_path(opts))
        emb, scores = embed_media(
            bb, media, window_s=opts.get("backbone_window_s"), hop_s=opts.get("backbone_hop_s"),
            max_s=opts.get("backbone_max_s"), batch=int(opts.get("backbone_batch", 4)))
        self.last_embeddings = emb
        ctx.options["backbone_embeddings"] = emb
        if len(emb) == 0:
            self.last_scores = None
            return []
        min_conf = float(opts.get("backbone_min_conf", 0.3))
        top_k = int(opts.get("backbone_top_k", 3))
        labels: list[str] = []
        if scores is not None and bb.id2label:
            labels = [bb.id2label.get(i, f"label {i}") for i in range(scores.shape[1])]
        elif bb.family == "clap" and opts.get("clap_labels"):
            labels = [str(x) for x in opts["clap_labels"]]
            scores = clap_label_scores(bb, emb.vectors, labels)
        self.last_scores = scores
        if scores is None or not labels:
            return []
        return scores_to_atoms(emb.start_s, emb.end_s, scores, labels, min_conf, top_k,
                               bb.family, bb.path.name)
