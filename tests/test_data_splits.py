"""Leak-free splits (no H3 cell, country, recordist or duplicate group in two splits) and
near-duplicate detection of re-encoded photos and audio."""

from __future__ import annotations

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from avgeo.data.dedup import duplicate_groups, find_duplicates
from avgeo.data.splits import assign_splits, leaks


def _random_manifest(n: int = 600, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = rng.uniform([-50, -180], [60, 180], size=(40, 2))
    pick = rng.integers(0, len(centres), n)
    latlon = centres[pick] + rng.normal(0, 0.3, size=(n, 2))
    return pd.DataFrame({
        "file": [f"f{i}.jpg" for i in range(n)], "lat": latlon[:, 0], "lon": latlon[:, 1],
        "country": rng.choice(["FR", "DE", "US", "JP", "BR", "KE"], n),
        "recordist": [f"user{k}" if k < 60 else "" for k in rng.integers(0, 120, n)]})


@pytest.mark.parametrize("by", [("h3",), ("country",), ("h3", "recordist"), ("recordist",)])
def test_splits_never_share_a_key(by):
    df = _random_manifest()
    split = assign_splits(df, by=by, h3_res=4, seed=3)
    assert set(split) <= {"train", "val", "test"}
    assert all(not v for v in leaks(df, split, by, h3_res=4).values())
    # deterministic, and another seed gives another assignment
    assert split.equals(assign_splits(df, by=by, h3_res=4, seed=3))
    if by != ("country",):
        assert not split.equals(assign_splits(df, by=by, h3_res=4, seed=4))


def test_split_fractions_roughly_hold_and_groups_stay_together():
    df = _random_manifest(2000, seed=2)
    df["lat"] = np.random.default_rng(5).uniform(-60, 70, len(df))
    df["lon"] = np.random.default_rng(6).uniform(-180, 180, len(df))
    split = assign_splits(df, by=("h3",), h3_res=5, seed=0)
    share = split.value_counts(normalize=True)
    assert 0.7 < share["train"] < 0.9 and 0.03 < share["test"] < 0.17
    groups = [""] * len(df)
    groups[0] = groups[1] = groups[2] = "g"
    forced = assign_splits(df, by=("h3",), h3_res=5, seed=0, groups=groups)
    assert forced.iloc[0] == forced.iloc[1] == forced.iloc[2]


def _write_mp3(x: np.ndarray, rate: int, path) -> None:
    with av.open(str(path), "w") as out:
        st = out.add_stream("libmp3lame", rate=rate)
        st.layout = "mono"
        fr = av.AudioFrame.from_ndarray(x[None, :].astype(np.float32), format="fltp",
                                        layout="mono")
        fr.sample_rate = rate
        for p in st.encode(fr):
            out.mux(p)
        for p in st.encode(None):
            out.mux(p)


def test_dedup_finds_reencoded_photo_and_audio(media_dir, tmp_path):
    from avgeo.media import open_media

    Image.open(media_dir / "arezzo_dscn0010.jpg").resize((320, 240)).save(
        tmp_path / "copy.jpg", quality=50)
    x = open_media(media_dir / "jura_dawn_0600.wav").read_audio(16000)
    _write_mp3(0.7 * x, 16000, tmp_path / "jura_copy.mp3")
    files = [media_dir / n for n in ("arezzo_dscn0010.jpg", "arezzo_dscn0021.jpg",
                                     "arezzo_dscn0029.jpg", "lund_01.jpg", "lund_29.jpg",
                                     "jura_dawn_0600.wav", "colombia_spinetail.wav",
                                     "wuhan_enf_ref001.wav")]
    files += [tmp_path / "copy.jpg", tmp_path / "jura_copy.mp3"]
    pairs, _ = find_duplicates(files)
    found = {(p.a.rsplit("/", 1)[-1], p.b.rsplit("/", 1)[-1], p.method) for p in pairs}
    assert found == {("arezzo_dscn0010.jpg", "copy.jpg", "dhash"),
                     ("jura_dawn_0600.wav", "jura_copy.mp3", "audio")}
    groups = duplicate_groups([str(f) for f in files], pairs)
    assert groups[0] == groups[8] != "" and groups[5] == groups[9] != ""
    assert groups[1] == ""
    # forced into one split even when their cells differ
    df = pd.DataFrame({"file": [str(f) for f in files],
                       "lat": np.linspace(-50, 50, len(files)),
                       "lon": np.linspace(-170, 170, len(files))})
    for seed in range(5):
        s = assign_splits(df, by=("h3",), seed=seed, groups=groups)
        assert s.iloc[0] == s.iloc[8] and s.iloc[5] == s.iloc[9]
