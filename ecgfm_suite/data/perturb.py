"""Test-time perturbations of raw ECGs: what a real ECG cart adds to a recording, before a model's own preprocessing.

A perturbation acts on one record (leads, samples) in mV at its own sampling rate, exactly as the reader
returns it, so every model sees the same perturbed signal through its own pipeline (resampling, filtering,
normalisation). Its randomness comes from a generator seeded by (seed, perturbation, record key): a record is
perturbed identically for every model, in every process and on every run, which pairs the models' drops and
lets the controls (``handcrafted``, ``random_cnn``) read as a reference.

- ``noise_snr{20,10,5}``: white Gaussian noise at that signal-to-noise ratio per lead (power of the lead about
  its mean over the noise's power), the electromyographic hiss of a tense patient;
- ``baseline_wander``: a 0.5 mV sinusoid of one random frequency in 0.1–0.5 Hz (respiration, movement), its
  phase random per lead;
- ``powerline_{50,60}``: 0.1 mV mains interference at 50 or 60 Hz, one random phase for every lead (sampled at
  the record's rate: at 100 Hz the 60 Hz hum is recorded aliased, as an unfiltered cart would record it);
- ``amplitude_x{0.5,2}``: gain error (a wrong calibration, a child's or an obese patient's amplitude);
- ``time_shift``: the record delayed by a random 0–2 s, the gap held at each lead's median (its isoelectric
  level, so the shift adds no step): the beat falls elsewhere in the model's windows;
- ``lead_dropout{1,3,6}``: that many random leads of those the model reads set to 0 mV (electrodes off);
  not applicable to a single-lead model, nor to a record with no more read leads than it drops;
- ``resample_250``: the record resampled to 250 Hz and back (``preprocess.resample``, scipy's polyphase
  ``resample_poly``): a device that stores at a lower rate. A record at 250 Hz or below loses nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import SpecError
from ..registry import Registry

#: bumps when a perturbation's output changes for the same record, seed and parameters (in every cache key)
PERTURB_VERSION = 1

Kind = Literal["noise", "baseline_wander", "powerline", "amplitude", "time_shift", "lead_dropout", "resample"]

WANDER_HZ: tuple[float, float] = (0.1, 0.5)
WANDER_MV = 0.5
POWERLINE_MV = 0.1
MAX_SHIFT_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Perturbation:
    """One perturbation: its kind and the kind's one parameter (``value``: SNR in dB for noise, mains frequency
    in Hz for powerline, gain for amplitude, leads zeroed for lead dropout, intermediate rate in Hz for
    resample; unused for baseline wander and time shift, whose ranges are the module's constants)."""

    name: str
    kind: Kind
    value: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """What a cache key and a stored payload need to tell this perturbation from any other."""
        return {"name": self.name, "kind": self.kind, "value": self.value, "version": PERTURB_VERSION}

    def not_applicable(self, model_leads: Sequence[str]) -> str | None:
        """Why the perturbation does not apply to a model reading ``model_leads`` (None: it applies)."""
        if self.kind == "lead_dropout" and len(model_leads) < 2:
            return f"lead dropout does not apply to a single-lead model (it reads {', '.join(model_leads)})"
        return None

    def apply(self, x: np.ndarray, fs: float, rng: np.random.Generator,
              read_leads: Sequence[int] | None = None) -> np.ndarray:
        """The perturbed copy of ``x`` (leads, samples) in mV sampled at ``fs``; ``read_leads`` are the rows the
        model reads (lead dropout chooses among them; default: every row). Raises ``SpecError`` where the record
        cannot take it (lead dropout of as many leads as the model reads)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] == 0:
            raise SpecError(f"expected a record (leads, samples > 0), got shape {x.shape}", self.name)
        t = np.arange(x.shape[1]) / fs
        if self.kind == "noise":
            return x + noise_at_snr(x, self.value, rng)
        if self.kind == "baseline_wander":
            freq = rng.uniform(*WANDER_HZ)
            phase = rng.uniform(0, 2 * np.pi, size=(x.shape[0], 1))
            return x + (WANDER_MV * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)
        if self.kind == "powerline":
            hum = POWERLINE_MV * np.sin(2 * np.pi * self.value * t + rng.uniform(0, 2 * np.pi))
            return x + hum.astype(np.float32)
        if self.kind == "amplitude":
            return x * np.float32(self.value)
        if self.kind == "time_shift":
            shift = min(round(rng.uniform(0, MAX_SHIFT_S) * fs), x.shape[1] - 1)
            out = np.empty_like(x)
            out[:, :shift] = np.nanmedian(x, axis=1, keepdims=True)
            out[:, shift:] = x[:, : x.shape[1] - shift]
            return out
        if self.kind == "lead_dropout":
            rows = np.arange(x.shape[0]) if read_leads is None else np.asarray(sorted(set(read_leads)), dtype=int)
            k = int(self.value)
            if len(rows) <= k:
                raise SpecError(f"cannot zero {k} of the {len(rows)} lead(s) the model reads and keep one", self.name)
            out = x.copy()
            out[rng.choice(rows, size=k, replace=False)] = 0.0
            return out
        from .preprocess import resample

        return resample(resample(x, fs, self.value, "poly"), self.value, fs, "poly")


def noise_at_snr(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise whose power is each lead's power about its mean / 10^(snr/10) (a flat lead gets none)."""
    power = np.nanvar(np.asarray(x, dtype=np.float64), axis=1, keepdims=True)
    sigma = np.sqrt(np.nan_to_num(power) / 10 ** (snr_db / 10))
    return (rng.standard_normal(x.shape) * sigma).astype(np.float32)


def record_rng(seed: int, perturbation: str, key: str) -> np.random.Generator:
    """The generator of one record's perturbation: a function of (seed, perturbation name, record key) only,
    stable across processes and platforms (Python's ``hash`` is salted per process)."""
    digest = hashlib.sha256(f"{perturbation}\0{key}".encode()).digest()
    return np.random.default_rng([int(seed), *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")
for _p in (
    *(Perturbation(name=f"noise_snr{snr}", kind="noise", value=float(snr)) for snr in (20, 10, 5)),
    Perturbation(name="baseline_wander", kind="baseline_wander"),
    *(Perturbation(name=f"powerline_{hz}", kind="powerline", value=float(hz)) for hz in (50, 60)),
    *(Perturbation(name=f"amplitude_x{gain:g}", kind="amplitude", value=gain) for gain in (0.5, 2.0)),
    Perturbation(name="time_shift", kind="time_shift"),
    *(Perturbation(name=f"lead_dropout{k}", kind="lead_dropout", value=float(k)) for k in (1, 3, 6)),
    Perturbation(name="resample_250", kind="resample", value=250.0),
):
    PERTURBATIONS.register(_p.name, _p)

#: ``--ecgfm-robustness default``: one perturbation of each common artefact of a real recording (muscle noise,
#: respiration, an electrode off), few enough that the analysis stage keeps its share of a cold run
DEFAULT_PERTURBATIONS: tuple[str, ...] = ("noise_snr10", "baseline_wander", "lead_dropout3")


def parse_perturbations(value: str) -> tuple[str, ...]:
    """``default``, ``all``, ``none`` or a comma list of perturbation names (distinct, registered)."""
    word = value.strip().lower()
    if word == "default":
        return DEFAULT_PERTURBATIONS
    if word == "all":
        return tuple(name for name, _ in PERTURBATIONS.registered())
    if word == "none":
        return ()
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    if not chosen:
        raise SpecError(f"expected default, all, none or a comma list of perturbations, got {value!r}")
    for name in chosen:
        PERTURBATIONS.get(name)  # SpecError naming the known ones, with close matches
    repeated = sorted({n for n in chosen if chosen.count(n) > 1})
    if repeated:
        raise SpecError(f"perturbation {', '.join(repeated)} listed more than once in {value!r}")
    return chosen
