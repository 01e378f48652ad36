"""The one place that wires the stages: media → perception engines → fusion → precision →
`Prediction`. Engines come from the registry; a missing optional engine is skipped with a
note, never a crash."""

from __future__ import annotations

import importlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from avgeo import __version__
from avgeo.atoms import Atom
from avgeo.errors import AvgeoError, ConfigError
from avgeo.geo.grid import cell_to_str
from avgeo.perception.base import REGISTRY, EngineContext
from avgeo.prediction import (
    AtomOut,
    ChainItem,
    Counterfactual,
    CredibleRegion,
    Engines,
    HeatCell,
    Prediction,
    Region,
    SkippedEngine,
    TimelineSegment,
)

#: Engine modules imported (and so registered) on first use, in run order. Speech runs
#: before the species model so that speech is not analysed as a soundscape.
ENGINE_MODULES = {
    "meta": "avgeo.perception.meta.engine",
    "hum": "avgeo.perception.audio.hum",
    "speech": "avgeo.perception.audio.speech",
    "birdnet": "avgeo.perception.audio.birdnet",
    "sae": "avgeo.perception.audio.sae.engine",
    "audio_backbone": "avgeo.perception.audio.backbone",
    "ocr": "avgeo.perception.vision.engine",
    "image_backbone": "avgeo.perception.vision.backbone",
}
#: Need weights the user names (a local folder): run only when asked for by name.
OPTIONAL_ENGINES = ("audio_backbone", "image_backbone")
DEFAULT_ENGINES = tuple(n for n in ENGINE_MODULES if n not in OPTIONAL_ENGINES)
#: Stages that read atoms rather than media; named in --engines like engines, off by default.
REASONING_STAGES = ("reasoner", "flow")
HEATMAP_CELLS = 400


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


def parse_engines(spec: str | Iterable[str] | None) -> list[str]:
    if spec is None:
        return list(DEFAULT_ENGINES)
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if "all" in names:
        names = [*DEFAULT_ENGINES, *[n for n in names if n != "all"]]
    unknown = [n for n in names if n not in ENGINE_MODULES and n not in REASONING_STAGES]
    if unknown:
        raise ConfigError(f"unknown engine(s): {', '.join(unknown)}",
                          f"choose from {', '.join([*ENGINE_MODULES, *REASONING_STAGES])}")
    return [n for n in (*ENGINE_MODULES, *REASONING_STAGES) if n in names]


def _load_engine(name: str):
    """(engine, None) or (None, reason it is unavailable)."""
    try:
        importlib.import_module(ENGINE_MODULES[name])
    except ImportError as exc:
        return None, f"not installed ({exc.name or exc})"
    factory = REGISTRY.get(name)
    if factory is None and name == "meta":
        factory = _MetaAdapter
    if factory is None:
        return None, "engine module did not register"
    engine = factory()
    ok, why = engine.available()
    return (engine, None) if ok else (None, why)


class _MetaAdapter:
    """Fits the metadata reader (which reads from a path) to the engine protocol."""

    name = "meta"
    media_kinds = ("photo", "audio", "video")

    def __init__(self) -> None:
        from avgeo.perception.meta.engine import MetadataEngine

        self._inner = MetadataEngine()

    def available(self) -> tuple[bool, str]:
        return True, ""

    def atoms(self, media, ctx: EngineContext) -> list[Atom]:
        return self._inner.atoms(media.path, media)


def _timeline(atoms: list[Atom], duration_s: float | None) -> list[TimelineSegment]:
    timed = [a for a in atoms if a.start_s is not None]
    if not timed or not duration_s:
        return []
    seg = max(5.0, duration_s / 30.0)
    out = []
    t = 0.0
    while t < duration_s:
        end = min(t + seg, duration_s)
        names = sorted({a.name for a in timed if a.start_s < end
                        and (a.end_s if a.end_s is not None else a.start_s) >= t})
        if names:
            out.append(TimelineSegment(start_s=round(t, 3), end_s=round(end, 3), atoms=names))
        t = end
    return out


def _capture_time(atoms: list[Atom]):
    """Capture time (UTC datetime) from metadata atoms, which carry it as ISO text."""
    from datetime import datetime

    for a in atoms:
        t = a.value.get("capture_time_utc") if a.value else None
        if isinstance(t, datetime):
            return t
        if isinstance(t, str):
            try:
                return datetime.fromisoformat(t)
            except ValueError:
                continue
    return None


def extract_atoms(path: str | os.PathLike, engines: str | Iterable[str] | None = None,
                  use_metadata: bool = True, limits=None, timer: _Timer | None = None,
                  on_stage: Callable[[str, int, int], None] | None = None):
    """Perception only: (media, atoms, engines report, context) for one file.

    `on_stage(name, done, total)` is called as each stage starts (for progress bars)."""
    from avgeo.media import open_media

    path = Path(path)
    timer = timer or _Timer()
    names = parse_engines(engines)
    if not use_metadata:
        names = [n for n in names if n != "meta"]
    with timer.stage("media"):
        media = open_media(path, limits=limits)
        validate = getattr(media, "validate", None)
        if callable(validate):
            validate()

    ctx = EngineContext(use_metadata=use_metadata)
    atoms: list[Atom] = []
    report = Engines()
    stages = [n for n in names if n not in REASONING_STAGES]
    for name in names:
        if name in REASONING_STAGES:
            continue
        if on_stage is not None:
            on_stage(name, stages.index(name), len(stages) + 1)
        with timer.stage(name):
            engine, why = _load_engine(name)
            if engine is None:
                report.skipped.append(SkippedEngine(name=name, reason=why or "unavailable"))
                continue
            if media.kind not in engine.media_kinds:
                continue
            try:
                found = engine.atoms(media, ctx)
            except AvgeoError:
                raise
            except Exception as exc:  # one engine's bug must not lose the others' evidence
                report.skipped.append(SkippedEngine(
                    name=name, reason=f"failed: {type(exc).__name__}: {exc}"[:300]))
                continue
        report.used.append(name)
        atoms.extend(found)
        if name == "meta" and use_metadata:
            ctx.capture_time_utc = _capture_time(found)
        if name == "birdnet":
            emb = getattr(engine, "last_embeddings", None)
            if emb is not None:
                # The SAE reads the same windows: hand them over instead of a second pass.
                ctx.options["birdnet_embeddings"] = (emb.start_s, emb.vectors)
        if name == "speech":
            ctx.options["speech_segments"] = [(a.start_s, a.end_s) for a in found
                                              if a.kind == "speech" and a.start_s is not None]
    return media, atoms, report, ctx


def _run_reasoner(atoms: list[Atom], kind: str, report: Engines, media=None):
    """The learned reasoner's answer, or a skipped-engine note when it cannot run. `media`
    gives a vision-language policy ($AVGEO_REASONER_POLICY) the file's images."""
    from avgeo.prediction import ReasonerAnswer

    # Local weights only; never reach for a hub, and keep stderr to one-line errors.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        from avgeo.reasoning.reasoner.engine import reason

        hf_logging.disable_progress_bar()
        out = reason(atoms, kind, media=media)
    except ImportError as exc:
        report.skipped.append(SkippedEngine(name="reasoner",
                                            reason=f"not installed ({exc.name or exc})"))
        return None
    except AvgeoError as exc:
        report.skipped.append(SkippedEngine(name="reasoner", reason=exc.one_line()))
        return None
    report.used.append("reasoner")
    where = None
    if out.parsed and out.lat is not None and out.lon is not None:
        from avgeo.reasoning.reasoner.reward import truth_of

        where = truth_of(out.lat, out.lon)  # the labels the reward would score it against
    return ReasonerAnswer(chain=out.chain, lat=out.lat, lon=out.lon, parsed=out.parsed,
                          text=out.text, policy=out.policy,
                          point_country=where.country if where else "",
                          point_admin1=where.admin1 if where else "")


def read_chain(result, support, point):
    """Region labels of the support and the Chain of Region; one code path for `locate` and
    the benchmark runner."""
    from avgeo.reasoning import chain as chain_mod

    labels = chain_mod.support_labels(result, support, (point.lat, point.lon))
    return labels, chain_mod.chain_of_region(support, labels)


def locate(source: str | os.PathLike | bytes, engines: str | Iterable[str] | None = None,
           use_metadata: bool = True, top_k: int = 5, explain: bool = True, limits=None,
           filename: str | None = None, weights=None,
           on_stage: Callable[[str, int, int], None] | None = None) -> Prediction:
    """Locate one photo, recording or video. `source` is a path or the file's bytes.
    `on_stage(name, done, total)` reports progress through the stages."""
    if isinstance(source, bytes | bytearray):
        suffix = Path(filename or "upload").suffix
        with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
            fh.write(source)
            tmp = fh.name
        try:
            pred = locate(tmp, engines, use_metadata, top_k, explain, limits, filename, weights,
                          on_stage)
        finally:
            os.unlink(tmp)
        return pred
    path = Path(source)
    timer = _Timer()
    media, atoms, report, ctx = extract_atoms(path, engines, use_metadata, limits, timer,
                                              on_stage)
    if on_stage is not None:
        n_stages = len([n for n in parse_engines(engines) if n not in REASONING_STAGES])
        on_stage("fusion", n_stages, n_stages + 1)

    from avgeo.reasoning import rationale as rat
    from avgeo.reasoning import summary
    from avgeo.reasoning.fusion import FusionWeights, fuse

    weights = weights or FusionWeights.load()
    if "flow" in parse_engines(engines):
        # Precision stage: the flow-matching density prior replaces the histogram prior.
        from dataclasses import replace

        weights = replace(weights, prior="flow")
    with timer.stage("fusion"):
        result = fuse(atoms, weights)
        support = result.support()
        pe = summary.point_estimate(result.fine or result.coarse, atoms)
        regions = summary.top_regions(result.coarse, k=top_k)
        creds = [summary.credible_region(support.cells, support.area_km2, support.log_prob, q)
                 for q in (0.5, 0.9)]
    with timer.stage("chain"):
        labels, chain = read_chain(result, support, pe)
    with timer.stage("rationale"):
        groups = result.coarse.groups
        contribs, prior_lo, top, second = rat.contributions(support, labels.country, groups)
        from avgeo.geo.regions import country_name

        by_key = {c.key: c.log_odds for c in contribs}
        atom_out = []
        for a in atoms:
            key = f"{a.engine}:{a.pool_key}"
            d = a.to_dict()
            d["contribution"] = by_key.get(key)
            atom_out.append(AtomOut(**d))
        sentences = rat.sentences(contribs, prior_lo, weights.prior,
                                  country_name(top) if top else "no country",
                                  country_name(second) if second else None)
        cfs: list[Counterfactual] = []
        if explain and contribs:
            keys = [c.key for c in contribs[:5]]
            ev = {c.key: c.evidence for c in contribs}
            cfs = [Counterfactual(**cf.__dict__) for cf in
                   rat.counterfactuals(support, labels.country, keys, ev, (pe.lat, pe.lon))]

    reasoner_answer = None
    if "reasoner" in parse_engines(engines):
        with timer.stage("reasoner"):
            reasoner_answer = _run_reasoner(atoms, media.kind, report, media)

    order = np.argsort(-support.log_prob)[:HEATMAP_CELLS]
    prob = support.prob
    heatmap = [HeatCell(cell=cell_to_str(support.cells[i]), probability=float(prob[i]))
               for i in order if prob[i] > 1e-6]

    notes = list(ctx.notes)
    if not use_metadata:
        notes.append("metadata atoms turned off (--no-metadata)")
    if not [a for a in atoms if a.likelihood is not None]:
        notes.append("no geographic evidence found: the answer is the prior alone")
    timings = {k: round(v, 4) for k, v in timer.times.items()}
    timings["total"] = round(sum(timer.times.values()), 4)
    return Prediction(
        file=filename or str(path), kind=media.kind, duration_s=media.duration_s,
        lat=round(pe.lat, 7), lon=round(pe.lon, 7), point_method=pe.method,
        chain=[ChainItem(**c.__dict__) for c in chain],
        regions=[Region(**r.__dict__) for r in regions],
        credible_regions=[CredibleRegion(**c.__dict__) for c in creds],
        atoms=atom_out, rationale=sentences,
        timeline=_timeline(atoms, media.duration_s), heatmap=heatmap, counterfactuals=cfs,
        engines=report, reasoner=reasoner_answer, timings_s=timings,
        use_metadata=use_metadata, notes=notes, version=__version__)
