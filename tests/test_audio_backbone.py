"""Tests for the opt-in `audio_backbone` engine, on tiny random-weight CLAP / AST / wav2vec2
models saved to tmp_path (nothing is downloaded)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch
import transformers as tf

from avgeo.errors import BackboneMissingError, ConfigError
from avgeo.media import open_media
from avgeo.perception.audio import backbone as bbm
from avgeo.perception.audio.backbone import AudioBackboneEngine, load_backbone
from avgeo.perception.base import REGISTRY, EngineContext

AST_LABELS = {0: "dog", 1: "rain", 2: "bird"}


def _wav(path: Path, samples: np.ndarray, sr: int) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    sr = 22050
    t = np.arange(int(12.0 * sr)) / sr
    return _wav(tmp_path_factory.mktemp("wav") / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * t), sr)


@pytest.fixture(scope="module")
def silence(tmp_path_factory) -> Path:
    return _wav(tmp_path_factory.mktemp("wav") / "silence.wav", np.zeros(16000 * 3), 16000)


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ast")
    torch.manual_seed(0)
    cfg = tf.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_mel_bins=16, max_length=128, patch_size=16,
                       frequency_stride=16, time_stride=16, id2label=AST_LABELS,
                       label2id={v: k for k, v in AST_LABELS.items()})
    model = tf.ASTForAudioClassification(cfg)
    with torch.no_grad():  # a head that always says "bird": the expected atoms are known
        model.classifier.dense.weight.zero_()
        model.classifier.dense.bias.copy_(torch.tensor([-5.0, -5.0, 5.0]))
    model.save_pretrained(d)
    tf.ASTFeatureExtractor(num_mel_bins=16, max_length=128, sampling_rate=16000).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clap")
    torch.manual_seed(0)
    text = tf.ClapTextConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=64, projection_dim=16)
    audio = tf.ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=16,
                               patch_embeds_hidden_size=16, hidden_size=32, depths=[1, 1],
                               num_attention_heads=[2, 2], patch_size=4, patch_stride=(4, 4),
                               projection_dim=16, enable_fusion=False)
    tf.ClapModel(tf.ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                               projection_dim=16)).save_pretrained(d)
    # a character-level BPE vocabulary (no merges) is enough for a working tokenizer
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab["\u0120" + c] = len(vocab)
    (d / "v.json").write_text(json.dumps(vocab))
    (d / "m.txt").write_text("#version: 0.2\n")
    tok = tf.RobertaTokenizer(str(d / "v.json"), str(d / "m.txt"))
    fe = tf.ClapFeatureExtractor(feature_size=16, sampling_rate=48000, hop_length=4800,
                                 fft_window_size=9600, max_length_s=4, truncation="rand_trunc",
                                 padding="repeatpad")
    tf.ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("w2v")
    torch.manual_seed(0)
    cfg = tf.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                            conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2)
    tf.Wav2Vec2Model(cfg).save_pretrained(d)
    tf.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(d)
    return d


def _run(path: Path, media_path: Path, **opts):
    eng = REGISTRY["audio_backbone"]()
    ctx = EngineContext(options={"audio_backbone": str(path), **opts})
    atoms = eng.atoms(open_media(media_path), ctx)
    return eng, ctx, atoms


def _check_spans(emb, duration_s: float, window_s: float) -> None:
    assert emb.vectors.dtype == np.float32 and emb.vectors.shape[0] == len(emb)
    assert np.all(np.diff(emb.start_s) > 0) and emb.start_s[0] == 0.0
    assert np.all(emb.end_s - emb.start_s <= window_s + 1e-6)
    assert np.all(emb.end_s - emb.start_s >= bbm.MIN_TAIL_S - 1e-6)
    assert emb.end_s[-1] <= duration_s + 0.05
    assert np.all(np.isfinite(emb.vectors))


def test_missing_or_incomplete_folder(tmp_path, monkeypatch, tone):
    monkeypatch.delenv(bbm.ENV_VAR, raising=False)
    ok, why = AudioBackboneEngine().available()
    assert not ok and bbm.ENV_VAR in why
    with pytest.raises(BackboneMissingError):
        AudioBackboneEngine().atoms(open_media(tone), EngineContext())
    with pytest.raises(BackboneMissingError, match="not found"):
        load_backbone(tmp_path / "nope")
    with pytest.raises(BackboneMissingError, match=r"config\.json"):
        load_backbone(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BackboneMissingError, match="weights"):
        load_backbone(tmp_path)
    monkeypatch.setenv(bbm.ENV_VAR, str(tmp_path))
    assert not AudioBackboneEngine().available()[0]


def test_ast_embeddings_and_sound_events(ast_dir, tone, monkeypatch):
    monkeypatch.setenv(bbm.ENV_VAR, str(ast_dir))  # the env var alone configures it
    assert AudioBackboneEngine().available() == (True, "")
    eng = AudioBackboneEngine()
    ctx = EngineContext()
    atoms = eng.atoms(open_media(tone), ctx)
    emb = eng.last_embeddings
    assert ctx.options["backbone_embeddings"] is emb and emb.family == "ast"
    _check_spans(emb, 12.0, 1.28)
    assert emb.vectors.shape == (9, 32)  # 9 full 1.28 s windows; the 0.48 s tail is dropped
    assert eng.last_scores.shape == (9, 3)
    # the head only ever says "bird": one atom, spanning every window
    assert [a.name for a in atoms] == ["bird"]
    a = atoms[0]
    assert a.kind == "sound_event" and a.likelihood is None and a.engine == "audio_backbone"
    assert a.start_s == 0.0 and a.end_s == pytest.approx(emb.end_s[-1])
    assert a.confidence == pytest.approx(1 / (1 + np.exp(-5.0)), abs=1e-4)
    assert a.value["windows"] == 9


def test_ast_pooled_vector_matches_the_model(ast_dir, tone):
    eng, _, _ = _run(ast_dir, tone)
    model = tf.ASTModel.from_pretrained(ast_dir, local_files_only=True).eval()
    fe = tf.ASTFeatureExtractor.from_pretrained(ast_dir, local_files_only=True)
    wav = open_media(tone).read_audio(16000)[:int(1.28 * 16000)]
    with torch.no_grad():
        ref = model(**fe([wav], sampling_rate=16000, return_tensors="pt")).pooler_output[0]
    np.testing.assert_allclose(eng.last_embeddings.vectors[0], ref.numpy(), atol=1e-4)


def test_clap_embeddings_and_zero_shot(clap_dir, tone):
    labels = ["dog barking", "rain on a roof", "bird song"]
    eng, _ctx, atoms = _run(clap_dir, tone, clap_labels=labels, backbone_min_conf=0.0,
                           backbone_top_k=1)
    emb = eng.last_embeddings
    assert emb.family == "clap"
    _check_spans(emb, 12.0, 4.0)
    assert emb.vectors.shape == (3, 16)  # three 4 s windows of a 12 s tone
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    probs = eng.last_scores
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # top-1 with no threshold: every window's best prompt is covered by exactly one atom
    assert {a.name for a in atoms} == {labels[i] for i in probs.argmax(axis=1)}
    assert sum(a.value["windows"] for a in atoms) == 3
    assert all(a.kind == "sound_event" and a.likelihood is None for a in atoms)

    # the zero-shot scores are ClapModel's own audio-to-text logits
    model = tf.ClapModel.from_pretrained(clap_dir, local_files_only=True).eval()
    proc = tf.ClapProcessor.from_pretrained(clap_dir, local_files_only=True)
    wav = open_media(tone).read_audio(48000)[:4 * 48000]
    inp = proc(text=labels, audio=[wav], sampling_rate=48000, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = model(**inp).logits_per_audio.softmax(-1)[0].numpy()
    np.testing.assert_allclose(probs[0], ref, atol=1e-4)

    with pytest.raises(ConfigError):
        _run(clap_dir, tone, clap_labels=["only one"])


def test_clap_without_labels_gives_embeddings_only(clap_dir, silence):
    eng, _ctx, atoms = _run(clap_dir, silence)
    assert atoms == [] and eng.last_embeddings.vectors.shape == (1, 16)
    assert np.all(np.isfinite(eng.last_embeddings.vectors))


def test_generic_wav2vec2_mean_pool(w2v_dir, tone, silence):
    eng, _ctx, atoms = _run(w2v_dir, tone, backbone_window_s=5.0)
    emb = eng.last_embeddings
    assert atoms == [] and emb.family == "generic"
    _check_spans(emb, 12.0, 5.0)
    assert emb.vectors.shape == (3, 32)  # 5 s + 5 s + a 2 s tail
    assert emb.end_s[-1] == pytest.approx(12.0, abs=1e-3)
    model = tf.AutoModel.from_pretrained(w2v_dir, local_files_only=True).eval()
    fe = tf.AutoFeatureExtractor.from_pretrained(w2v_dir, local_files_only=True)
    wav = open_media(tone).read_audio(16000)[10 * 16000:]
    with torch.no_grad():
        ref = model(**fe([wav], sampling_rate=16000, return_tensors="pt")).last_hidden_state
    np.testing.assert_allclose(emb.vectors[2], ref.mean(dim=1)[0].numpy(), atol=1e-4)

    eng, _, _ = _run(w2v_dir, silence)
    assert eng.last_embeddings.vectors.shape == (1, 32)
    assert np.all(np.isfinite(eng.last_embeddings.vectors))


def test_real_recording(ast_dir, media_dir):
    path = media_dir / "jura_dawn_0600.wav"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    media = open_media(path)
    eng, _ctx, atoms = _run(ast_dir, path, backbone_max_s=20.0)
    emb = eng.last_embeddings
    _check_spans(emb, min(20.0, media.duration_s), 1.28)
    dur_s = min(20.0, media.duration_s)
    full = int(dur_s // 1.28)
    assert len(emb) == full + (dur_s - full * 1.28 >= bbm.MIN_TAIL_S)  # + a long-enough tail
    assert [a.name for a in atoms] == ["bird"]


def test_not_in_default_engines():
    from avgeo.pipeline import DEFAULT_ENGINES

    assert "audio_backbone" not in DEFAULT_ENGINES
