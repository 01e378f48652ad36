"""Mains hum (electrical network frequency, ENF): detect a 50 or 60 Hz line and its
harmonics in audio, measure its precise frequency and track over time, and turn the grid
into a country likelihood (the `hum` engine)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy.signal import resample_poly
from scipy.stats import chi2

from avgeo.perception.audio.grid_frequency import (
    BOTH,
    HZ_50,
    HZ_60,
    japan_grid_hz,
)
from avgeo.perception.base import EngineContext, register
from avgeo.reasoning.likelihood import CountryLikelihood, _normalise

if TYPE_CHECKING:
    from avgeo.atoms import Atom
    from avgeo.geo.grid import Grid
    from avgeo.media import Media

NOMINALS_HZ: tuple[int, int] = (50, 60)
#: Work at no more than this rate: harmonics up to ~900 Hz are plenty, and it keeps the
#: FFTs of an hour of audio cheap.
WORK_RATE_MAX_HZ = 2000
#: Lowest rate at which the 60 Hz fundamental and its noise band fit below Nyquist.
WORK_RATE_MIN_HZ = 140
#: Half-width of the search window around the fundamental (scaled by k for harmonic k):
#: grids stay within ±0.2 Hz, weak grids and recorder clock errors need a little more.
MAX_DEV_HZ = 0.35
#: Noise floor is measured this far either side of the search window.
NOISE_BAND_HZ = 6.0
#: Track frames (~1–2 s per point, as in ENF forensics) and long Welch segments.
FRAME_S = 2.0
FRAME_HOP_S = 1.0
LONG_SEG_S = 8.0
LONG_HOP_S = 4.0
#: Zero-padding factor: FFT bins 8x finer than the resolution, refined by interpolation.
ZERO_PAD = 8
#: False-alarm rate per harmonic on the long-term spectrum, and per frame for the track.
ALPHA_LONG = 1e-3
ALPHA_FRAME = 1e-2
#: Extra margin over the chi-square threshold: the interpolated maximum over zero-padded
#: bins slightly exceeds the maximum over independent bins.
MARGIN_DB = 1.5
MIN_SNR_DB = 3.0
#: Harmonic fundamentals (f_k / k) of one hum agree to well within this.
CONSISTENT_HZ = 0.05
DETECT_CONFIDENCE = 0.3
#: Median frame-to-frame jump of a track made of chance peaks (uniform over ±MAX_DEV_HZ);
#: a hum's track, even perturbed by speech or music, moves far less.
STEP_NOISE_HZ = 0.2
MIN_DURATION_S = 1.0


def working_rate(sample_rate: int | None) -> int:
    """The rate to analyse at: the source rate, capped at WORK_RATE_MAX_HZ."""
    if not sample_rate or sample_rate <= 0:
        return WORK_RATE_MAX_HZ
    return int(min(int(sample_rate), WORK_RATE_MAX_HZ))


@dataclass
class Harmonic:
    """One harmonic `k` of a nominal grid frequency as seen in the long-term spectrum."""

    k: int
    nominal_hz: int
    freq_hz: float
    snr_db: float
    threshold_db: float
    significant: bool

    @property
    def fundamental_hz(self) -> float:
        return self.freq_hz / self.k

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "freq_hz": round(self.freq_hz, 4),
                "snr_db": round(self.snr_db, 2), "threshold_db": round(self.threshold_db, 2),
                "significant": self.significant}


@dataclass
class HumResult:
    """What the hum detector found. `detected` False means unknown, not "no grid"."""

    detected: bool
    nominal_hz: int | None
    measured_hz: float | None
    snr_db: float | None
    confidence: float
    reason: str
    duration_s: float
    sample_rate: int
    harmonics: list[Harmonic] = field(default_factory=list)
    evidence_db: dict[int, float] = field(default_factory=dict)
    track_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    track_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    presence: float = 0.0
    track_std_hz: float | None = None
    track_step_hz: float | None = None

    @property
    def significant_harmonics(self) -> list[Harmonic]:
        return [h for h in self.harmonics if h.significant]

    def span_s(self) -> tuple[float, float]:
        """First and last second with the hum seen in a frame (else the whole clip)."""
        ok = np.isfinite(self.track_hz)
        if ok.any():
            half = FRAME_S / 2
            t = self.track_t_s[ok]
            return max(0.0, float(t[0]) - half), min(self.duration_s, float(t[-1]) + half)
        return 0.0, self.duration_s

    def track_stats(self) -> dict[str, Any]:
        ok = np.isfinite(self.track_hz)
        f = self.track_hz[ok]
        return {
            "n_frames": int(self.track_hz.size),
            "n_present": int(ok.sum()),
            "presence": round(self.presence, 3),
            "frame_s": FRAME_S,
            "hop_s": FRAME_HOP_S,
            "mean_hz": round(float(f.mean()), 4) if f.size else None,
            "std_hz": None if self.track_std_hz is None else round(self.track_std_hz, 4),
            "min_hz": round(float(f.min()), 4) if f.size else None,
            "max_hz": round(float(f.max()), 4) if f.size else None,
            "median_step_hz": (None if self.track_step_hz is None
                               else round(self.track_step_hz, 4)),
        }

    def to_value(self, max_track_points: int = 600) -> dict[str, Any]:
        """JSON-friendly summary (the atom's `value`); the track is decimated to at most
        `max_track_points` points by averaging."""
        t, f = self.track_t_s, self.track_hz
        if f.size > max_track_points:
            step = math.ceil(f.size / max_track_points)
            n = f.size // step * step
            t = t[:n].reshape(-1, step).mean(axis=1)
            fb = f[:n].reshape(-1, step)
            ok = np.isfinite(fb)
            cnt = ok.sum(axis=1)
            sums = np.where(ok, fb, 0.0).sum(axis=1)
            f = np.full(cnt.shape, np.nan)
            np.divide(sums, cnt, out=f, where=cnt > 0)
        return {
            "nominal_hz": self.nominal_hz,
            "measured_hz": None if self.measured_hz is None else round(self.measured_hz, 4),
            "snr_db": None if self.snr_db is None else round(self.snr_db, 2),
            "confidence": round(self.confidence, 3),
            "harmonics": [h.to_dict() for h in self.harmonics],
            "evidence_db": {str(k): round(v, 2) for k, v in self.evidence_db.items()},
            "track": self.track_stats(),
            "track_t_s": [round(float(x), 2) for x in t],
            "track_hz": [None if not np.isfinite(x) else round(float(x), 4) for x in f],
            "duration_s": round(self.duration_s, 3),
            "sample_rate": self.sample_rate,
        }


@dataclass
class _Band:
    """Bin indices for one harmonic in one spectrum layout."""

    k: int
    nominal_hz: int
    lo: int  # search window [lo, hi)
    hi: int
    noise: np.ndarray  # bins of the noise band, window and main lobe excluded
    n_indep: int  # independent bins in the search window (for the max-statistic)


def _plan(sample_rate: int, seg_s: float, nfft: int) -> dict[int, list[_Band]]:
    """Harmonics of each nominal frequency that fit below Nyquist, minus the shared ones
    (multiples of 300 Hz say nothing about which grid)."""
    df = sample_rate / nfft
    guard_hz = 2.0 / seg_s  # Hann main-lobe half-width
    top_hz = 0.95 * sample_rate / 2
    plan: dict[int, list[_Band]] = {}
    for g in NOMINALS_HZ:
        bands = []
        k = 1
        while True:
            centre = k * g
            dev = k * MAX_DEV_HZ
            if centre + dev + guard_hz + NOISE_BAND_HZ >= top_hz:
                break
            if centre % 300 != 0:
                lo = math.floor((centre - dev) / df)
                hi = math.ceil((centre + dev) / df) + 1
                b0 = math.floor((centre - dev - guard_hz - NOISE_BAND_HZ) / df)
                b1 = math.ceil((centre + dev + guard_hz + NOISE_BAND_HZ) / df) + 1
                idx = np.arange(max(b0, 1), b1)
                far = np.abs(idx * df - centre) > dev + guard_hz
                n_indep = max(1, math.ceil(2 * dev * seg_s))
                bands.append(_Band(k, g, lo, hi, idx[far], n_indep))
            k += 1
        plan[g] = bands
    return plan


def _peak(power: np.ndarray, band: _Band, df: float) -> tuple[float, float, float]:
    """(frequency Hz, peak power, noise floor) in a band; the peak refined by a parabola
    through the log powers of the top bin and its neighbours (Gaussian interpolation)."""
    win = power[band.lo:band.hi]
    i = int(np.argmax(win))
    j = band.lo + i
    p = float(power[j])
    offset = 0.0
    if 0 < i < win.size - 1:
        a, b, c = power[j - 1], power[j], power[j + 1]
        if a > 0 and b > 0 and c > 0:
            la, lb, lc = math.log(a), math.log(b), math.log(c)
            den = la - 2 * lb + lc
            if den < 0:
                offset = 0.5 * (la - lc) / den
                p = math.exp(lb - 0.25 * (la - lc) * offset)
    floor = float(np.median(power[band.noise])) if band.noise.size else 0.0
    return (j + offset) * df, p, floor


def _ratio(peak: float, floor: float, scale: float) -> float:
    """Peak-to-floor ratio, safe for silence and for noiseless synthetic tones."""
    if peak <= 0.0:
        return 0.0
    return peak / max(floor, 1e-12 * scale, np.finfo(float).tiny)


def _threshold_ratio(alpha: float, n_indep: int, dof: float) -> float:
    """Peak/median ratio that noise alone exceeds with probability `alpha`, for the
    largest of `n_indep` independent chi-square(dof) bins."""
    return float(chi2.isf(alpha / n_indep, dof) / chi2.median(dof))


class _Segmenter:
    """Cuts a stream into overlapping segments of `seg_n` samples every `hop_n`, holding at
    most one segment in memory."""

    def __init__(self, seg_n: int, hop_n: int) -> None:
        self.seg_n, self.hop_n = seg_n, hop_n
        self.buf = np.zeros(0)
        self.count = 0

    def feed(self, x: np.ndarray):
        self.buf = np.concatenate([self.buf, x]) if self.buf.size else x
        start = 0
        while self.buf.size - start >= self.seg_n:
            yield self.buf[start:start + self.seg_n]
            self.count += 1
            start += self.hop_n
        self.buf = self.buf[start:].copy()


class HumAccumulator:
    """Streams audio at one working rate (chunks of any size) and keeps bounded state: the
    summed long-term power spectra and, per track frame and harmonic, the peak frequency
    and its peak-to-floor ratio."""

    def __init__(self, sample_rate: int) -> None:
        if sample_rate < WORK_RATE_MIN_HZ:
            raise ValueError(f"sample rate {sample_rate} Hz is too low for 50/60 Hz hum")
        self.fs = int(sample_rate)
        self.frame_n = round(FRAME_S * self.fs)
        self.long_n = round(LONG_SEG_S * self.fs)
        self.frame_nfft = 1 << math.ceil(math.log2(ZERO_PAD * self.frame_n))
        self.long_nfft = 1 << math.ceil(math.log2(ZERO_PAD * self.long_n))
        self.frame_win = np.hanning(self.frame_n + 1)[:-1]
        self.long_win = np.hanning(self.long_n + 1)[:-1]
        self.frame_plan = _plan(self.fs, FRAME_S, self.frame_nfft)
        self.long_plan = _plan(self.fs, LONG_SEG_S, self.long_nfft)
        self._frames = _Segmenter(self.frame_n, round(FRAME_HOP_S * self.fs))
        self._long = _Segmenter(self.long_n, round(LONG_HOP_S * self.fs))
        self.frame_psd = np.zeros(self.frame_nfft // 2 + 1)
        self.long_psd = np.zeros(self.long_nfft // 2 + 1)
        self.n_samples = 0
        self.energy = 0.0
        self.peak_abs = 0.0
        # Per frame, per grid: (n_harmonics,) arrays of fundamental deviation and ratio.
        self._dev: dict[int, list[np.ndarray]] = {g: [] for g in NOMINALS_HZ}
        self._rat: dict[int, list[np.ndarray]] = {g: [] for g in NOMINALS_HZ}

    def add(self, samples: np.ndarray) -> None:
        """Feed the next samples (mono, at the accumulator's rate)."""
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        if not x.size:
            return
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        self.n_samples += x.size
        self.energy += float(np.dot(x, x))
        self.peak_abs = max(self.peak_abs, float(np.max(np.abs(x))))
        for seg in self._frames.feed(x):
            self._add_frame(seg)
        for seg in self._long.feed(x):
            self._add_long(seg)

    def _spectrum(self, seg: np.ndarray, win: np.ndarray, nfft: int) -> np.ndarray:
        y = (seg - seg.mean()) * win
        return np.abs(np.fft.rfft(y, nfft)) ** 2

    def _add_long(self, seg: np.ndarray) -> None:
        self.long_psd += self._spectrum(seg, self.long_win, self.long_nfft)

    def _add_frame(self, seg: np.ndarray) -> None:
        p = self._spectrum(seg, self.frame_win, self.frame_nfft)
        self.frame_psd += p
        df = self.fs / self.frame_nfft
        scale = float(p.max()) if p.size else 0.0
        for g, bands in self.frame_plan.items():
            dev = np.empty(len(bands), dtype=np.float32)
            rat = np.empty(len(bands), dtype=np.float32)
            for i, b in enumerate(bands):
                f, pk, fl = _peak(p, b, df)
                dev[i] = f / b.k - g
                rat[i] = _ratio(pk, fl, scale)
            self._dev[g].append(dev)
            self._rat[g].append(rat)

    def _flush_short(self) -> None:
        """A clip shorter than one frame but long enough to use: analyse it zero-padded."""
        if self._frames.count == 0 and self._frames.buf.size >= MIN_DURATION_S * self.fs:
            buf = self._frames.buf
            seg = np.zeros(self.frame_n)
            seg[:buf.size] = buf - buf.mean()
            self._frames.buf = np.zeros(0)
            self._frames.count = 1
            self._add_frame(seg)

    def result(self) -> HumResult:
        """Decide from everything fed so far."""
        self._flush_short()
        duration_s = self.n_samples / self.fs
        n_frames = self._frames.count
        base = dict(duration_s=duration_s, sample_rate=self.fs)
        if duration_s < MIN_DURATION_S or n_frames == 0:
            return HumResult(False, None, None, None, 0.0, "too short for hum analysis", **base)
        if self.energy <= 0.0 or self.peak_abs < 1e-7:
            return HumResult(False, None, None, None, 0.0, "silent", **base)

        n_long = self._long.count
        if n_long >= 4:
            psd, seg_s, nfft, n_avg, plan = (self.long_psd / n_long, LONG_SEG_S,
                                             self.long_nfft, n_long, self.long_plan)
        else:
            psd, seg_s, nfft, n_avg, plan = (self.frame_psd / n_frames, FRAME_S,
                                             self.frame_nfft, n_frames, self.frame_plan)
        # Welch with Hann windows at 50% overlap: ~2n/1.056 degrees of freedom.
        dof = 2.0 if n_avg == 1 else max(2.0, 2.0 * n_avg / 1.056)
        df = self.fs / nfft
        scale = float(psd.max())

        harmonics: dict[int, list[Harmonic]] = {}
        evidence: dict[int, float] = {}
        for g, bands in plan.items():
            hs = []
            for b in bands:
                f, pk, fl = _peak(psd, b, df)
                snr_db = 10 * math.log10(max(_ratio(pk, fl, scale), 1e-12))
                thr_db = 10 * math.log10(_threshold_ratio(ALPHA_LONG, b.n_indep, dof))
                thr_db = max(thr_db + MARGIN_DB, MIN_SNR_DB)
                hs.append(Harmonic(b.k, g, f, snr_db, thr_db, snr_db >= thr_db))
            _keep_consistent(hs)
            harmonics[g] = hs
            evidence[g] = float(sum(min(h.snr_db - h.threshold_db, 30.0)
                                    for h in hs if h.significant))

        best = max(NOMINALS_HZ, key=lambda g: evidence[g])
        other = 60 if best == 50 else 50
        hs = harmonics[best]
        sig = [h for h in hs if h.significant]
        t_s = (np.arange(n_frames) * FRAME_HOP_S + FRAME_S / 2).clip(max=duration_s)
        if not sig:
            return HumResult(False, None, None, None, 0.0, "no line at 50/60 Hz or harmonics",
                             harmonics=hs, evidence_db=evidence, track_t_s=t_s,
                             track_hz=np.full(n_frames, np.nan), **base)

        weights = np.array([10 ** (h.snr_db / 10) - 1 if h.significant else 0.0 for h in hs])
        measured = float(sum(w * h.fundamental_hz for w, h in zip(weights, hs, strict=True))
                         / weights.sum())
        track, presence, std, step = self._track(best, weights)

        # Confidence: strength above threshold, verified continuity, number of harmonics,
        # and whether the other grid's harmonics explain the sound as well.
        c_snr = 1.0 - math.exp(-evidence[best] / 15.0)
        frame_thr_db = 10 * math.log10(_threshold_ratio(ALPHA_FRAME, 2, 2.0))
        expected_frame_db = max(h.snr_db for h in sig) - 10 * math.log10(seg_s / FRAME_S)
        if n_frames >= 4 and expected_frame_db >= frame_thr_db + 6:
            # Strong enough to be seen in most frames: a real hum must be, and steadily.
            c_pres = float(np.clip((presence - 0.15) / 0.45, 0.0, 1.0))
            c_step = 0.6 if step is None else float(
                np.clip((STEP_NOISE_HZ - step) / 0.1, 0.0, 1.0))
            c_stab = c_pres * c_step
        else:
            c_stab = 0.6  # too weak or short to verify frame by frame
        c_harm = 1.0 if len(sig) >= 2 else 0.8
        c_amb = evidence[best] / (evidence[best] + evidence[other])
        confidence = float(np.clip(c_snr * c_stab * c_harm * c_amb, 0.0, 1.0))
        detected = confidence >= DETECT_CONFIDENCE
        reason = "" if detected else (
            f"weak or unsteady {best} Hz line (confidence {confidence:.2f})")
        return HumResult(
            detected, best if detected else None, measured,
            max(h.snr_db for h in sig), confidence, reason,
            harmonics=hs, evidence_db=evidence, track_t_s=t_s, track_hz=track,
            presence=presence, track_std_hz=std, track_step_hz=step, **base)

    def _track(self, g: int, weights: np.ndarray
               ) -> tuple[np.ndarray, float, float | None, float | None]:
        """Per-frame fundamental: the long-term-SNR-weighted mean of the harmonics seen
        in that frame. Returns (track Hz, presence, std Hz, median step Hz)."""
        dev = np.vstack(self._dev[g]).astype(np.float64)
        rat = np.vstack(self._rat[g]).astype(np.float64)
        thr = np.array([_threshold_ratio(ALPHA_FRAME, b.n_indep, 2.0)
                        for b in self.frame_plan[g]])
        # Long-term plan and frame plan list the same harmonics (same rate, same rule)
        # unless the noise band only fits in one; align by k.
        ks_long = [b.k for b in (self.long_plan if self._long.count >= 4
                                 else self.frame_plan)[g]]
        w_by_k = dict(zip(ks_long, weights, strict=True))
        w = np.array([w_by_k.get(b.k, 0.0) for b in self.frame_plan[g]])
        seen = (rat >= thr) & (w > 0)
        ww = np.where(seen, w * rat, 0.0)
        tot = ww.sum(axis=1)
        # A frame has the hum when the harmonics carrying most of its long-term power are
        # seen in it: one chance peak on a minor harmonic does not count.
        share = np.where(seen, w, 0.0).sum(axis=1) / max(float(w.sum()), 1e-300)
        present = (share >= 0.5) & (tot > 0)
        track = np.full(dev.shape[0], np.nan)
        track[present] = g + (ww[present] * dev[present]).sum(axis=1) / tot[present]
        presence = float(present.mean())
        f = track[present]
        std = float(f.std()) if f.size >= 2 else None
        both = present[1:] & present[:-1]
        steps = np.abs(np.diff(track))[both]
        step = float(np.median(steps)) if steps.size >= 3 else None
        return track, presence, std, step


def _keep_consistent(hs: list[Harmonic]) -> None:
    """Demote significant harmonics whose fundamental (f_k / k) disagrees with the
    strongest ones: the harmonics of one hum move together, chance lines do not."""
    sig = [h for h in hs if h.significant]
    if len(sig) < 2:
        return
    w = np.array([10 ** (h.snr_db / 10) for h in sig])
    f0 = np.array([h.fundamental_hz for h in sig])
    order = np.argsort(f0)
    cum = np.cumsum(w[order])
    ref = float(f0[order][np.searchsorted(cum, cum[-1] / 2)])  # weighted median
    for h in sig:
        if abs(h.fundamental_hz - ref) > CONSISTENT_HZ:
            h.significant = False


def detect_hum(samples: np.ndarray, sample_rate: int, chunk_s: float = 30.0) -> HumResult:
    """Detect mains hum in a mono signal at any sample rate (resampled to at most
    WORK_RATE_MAX_HZ). Silence, noise and too-short input give `detected=False`."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim > 1:
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    sample_rate = int(sample_rate)
    work = working_rate(sample_rate)
    if work < WORK_RATE_MIN_HZ:
        return HumResult(False, None, None, None, 0.0,
                         f"sample rate {sample_rate} Hz is too low for 50/60 Hz hum",
                         duration_s=x.size / max(sample_rate, 1), sample_rate=sample_rate)
    if work != sample_rate:
        gcd = math.gcd(work, sample_rate)
        x = resample_poly(x, work // gcd, sample_rate // gcd)
    acc = HumAccumulator(work)
    step = max(1, round(chunk_s * work))
    for i in range(0, x.size, step):
        acc.add(x[i:i + step])
    return acc.result()


# --- geography ------------------------------------------------------------------------


@dataclass
class MainsGridLikelihood(CountryLikelihood):
    """Countries on the detected grid get 1, others `off` (sea too); split grids with no
    geographic rule get 1; Japan is split by longitude at the Itoigawa–Fuji River line."""

    nominal_hz: int = 50
    off: float = 0.01

    def log_map(self, grid: Grid) -> np.ndarray:
        from avgeo.geo.regions import cell_countries

        codes = np.asarray(cell_countries(grid))
        uniq, inv = np.unique(codes, return_inverse=True)
        vals = np.array([self.weights.get(str(u), self.off) for u in uniq], dtype=np.float64)
        out = vals[inv]
        jp = codes == "JP"
        if jp.any():
            on = japan_grid_hz(grid.lat[jp], grid.lon[jp]) == self.nominal_hz
            out[jp] = np.where(on, 1.0, self.off)
        return _normalise(np.log(np.maximum(out, 1e-300)))

    def describe(self) -> dict[str, Any]:
        return {"type": "mains_grid", "nominal_hz": self.nominal_hz, "off": self.off,
                "n_countries": sum(1 for v in self.weights.values() if v >= 1.0),
                "japan": "split at the Itoigawa–Fuji River line"}


def grid_likelihood(nominal_hz: int, confidence: float) -> MainsGridLikelihood:
    """Likelihood of a detected `nominal_hz` grid: off-grid countries get
    1 - 0.99·confidence (a sure detection leaves them 1%)."""
    if nominal_hz not in NOMINALS_HZ:
        raise ValueError(f"nominal_hz must be 50 or 60, got {nominal_hz}")
    off = float(1.0 - 0.99 * np.clip(confidence, 0.0, 1.0))
    on = HZ_50 if nominal_hz == 50 else HZ_60
    weights = {c: 1.0 for c in on | BOTH}
    for c in (HZ_60 if nominal_hz == 50 else HZ_50):
        weights[c] = off
    return MainsGridLikelihood(weights=weights, floor=off, nominal_hz=nominal_hz, off=off)


def _fmt_s(t: float) -> str:
    return f"{t:.0f}" if t >= 10 or t == 0 else f"{t:.1f}"


def hum_evidence(r: HumResult) -> str:
    """One line, e.g. "50 Hz mains hum (SNR 23 dB, harmonics 100, 150 Hz, measured
    50.03 Hz) over 0–482 s"."""
    sig = r.significant_harmonics
    upper = [f"{h.k * r.nominal_hz}" for h in sig if h.k > 1]
    parts = [f"SNR {r.snr_db:.0f} dB"]
    if upper:
        parts.append(f"harmonics {', '.join(upper)} Hz")
    if not any(h.k == 1 for h in sig):
        parts.append("fundamental not seen")
    parts.append(f"measured {r.measured_hz:.2f} Hz")
    t0, t1 = r.span_s()
    return f"{r.nominal_hz} Hz mains hum ({', '.join(parts)}) over {_fmt_s(t0)}–{_fmt_s(t1)} s"


class HumEngine:
    """Mains-hum engine: one `mains_hum` atom when a 50/60 Hz grid is heard, else none."""

    name: ClassVar[str] = "hum"
    media_kinds: ClassVar[tuple[str, ...]] = ("audio", "video")

    def __init__(self, chunk_s: float = 30.0) -> None:
        self.chunk_s = chunk_s

    def available(self) -> tuple[bool, str]:
        return True, ""

    def analyse(self, media: Media) -> HumResult | None:
        """Stream the media's audio through the detector (None without an audio track)."""
        if not getattr(media, "has_audio", False):
            return None
        work = working_rate(getattr(media, "sample_rate", None))
        if work < WORK_RATE_MIN_HZ:
            return None
        acc = HumAccumulator(work)
        for ch in media.audio_chunks(sample_rate=work, chunk_s=self.chunk_s):
            acc.add(ch.samples)
        return acc.result()

    def atoms(self, media: Media, ctx: EngineContext) -> list[Atom]:
        from avgeo.atoms import Atom

        r = self.analyse(media)
        if r is None or not r.detected or r.nominal_hz is None:
            return []  # no hum is unknown, never evidence for either grid
        t0, t1 = r.span_s()
        return [Atom(
            name=f"mains_hum_{r.nominal_hz}hz", engine=self.name, kind="mains_hum",
            evidence=hum_evidence(r), confidence=r.confidence, start_s=t0, end_s=t1,
            value=r.to_value(), likelihood=grid_likelihood(r.nominal_hz, r.confidence),
            group="mains_hum")]


@register("hum")
def _make_hum_engine() -> HumEngine:
    return HumEngine()
