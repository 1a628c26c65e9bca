"""Robustness: the cell's own probe on perturbed test records, against the same records clean.

Per (model, task), at the headline scarcity level: a seeded, label-stratified sample of the test split (at most
``AnalysisOptions.robustness_max_records``, the same records for every model) is read raw, perturbed
(``data.perturb``: seeded per record, so every model sees the same perturbed signal) and embedded through the
model's own preprocessing (``embeddings.embed_array``). The cell's probes (one per seed, their scores averaged
as ``comparison`` averages them) score the clean embeddings the cell used and the perturbed ones. Per
perturbation:

- ``clean`` and ``value``: the main metric on the sampled records, clean and perturbed;
- ``drop``: clean − perturbed in the metric's better direction (positive: worse under the perturbation), with
  a paired bootstrap CI over the same records (``metrics.paired_bootstrap``, stratified as the cells') and its
  permutation p-value;
- ``cosine``: mean cosine similarity of each record's perturbed embedding to its clean one (1: the encoder
  does not see the perturbation at all).

Perturbed embeddings are cached like clean ones, with the perturbation and its seed in the key
(``embeddings.cache.perturbed_description``). A perturbation that does not apply (lead dropout on a
single-lead model) or that the model cannot take (its preprocessing or encoder raises on the perturbed records)
is a row with its ``reason``, never a crash of the pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import AnalysisSkip, CacheError, DataError, EcgfmError, RecordError
from .inputs import AnalysisOptions, ModelTaskData, Output, headline_level, probe_runs, within

if TYPE_CHECKING:
    from ..data.perturb import Perturbation
    from ..data.records import Signal
    from ..embeddings.cache import CacheMode, EmbeddingCache
    from ..models.protocol import Encoder

#: (record key, its raw signal)
Raw = tuple[str, "Signal"]

#: what an encoder may raise on a record it cannot take (its own checks, numpy/scipy shapes, torch kernels)
_CANNOT_TAKE = (EcgfmError, ValueError, RuntimeError)


def sample_records(task_type: str, y: np.ndarray, rows: np.ndarray, max_records: int, seed: int) -> np.ndarray:
    """At most ``max_records`` of ``rows`` (task row indices), stratified as the bootstrap stratifies them
    (``metrics.strata``): each stratum's records in a seeded order, the i-th of a stratum of size s ranked at
    i / s, the lowest ranks kept. Every stratum keeps its first record (so a rare class stays), the rest in
    proportion; the same rows whatever the model (call it with the task's test rows, not a model's)."""
    from ..metrics import strata

    rows = np.sort(np.asarray(rows))  # the same sample whatever order the rows come in
    if len(rows) <= max_records:
        return rows
    codes = strata(task_type, np.asarray(y)[rows])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    rank = np.empty(len(rows))
    for code in np.unique(codes):
        members = order[codes[order] == code]
        rank[members] = np.arange(len(members)) / len(members)
    keep = np.lexsort((np.argsort(order), rank))[:max_records]
    return rows[np.sort(keep)]


def embed_signals(encoder: Encoder, signals: Sequence[Signal]) -> np.ndarray:
    """Embeddings (N, D) of raw signals of any rates, lengths and lead sets, through the model's own
    preprocessing: ``embed_array`` on each group of records sharing rate, leads and length."""
    from ..embeddings.encode import embed_array

    out = np.zeros((len(signals), encoder.embed_dim), dtype=np.float32)
    groups: dict[tuple[float, tuple[str, ...], int], list[int]] = {}
    for i, sig in enumerate(signals):
        groups.setdefault((sig.fs, tuple(sig.leads), sig.data.shape[1]), []).append(i)
    for (fs, leads, _), members in groups.items():
        out[members] = embed_array(encoder, np.stack([signals[i].data for i in members]), fs, leads)
    return out


def clean_description(encoder: Encoder, records: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What the embeddings of these records (key, content hash) depend on, for a cache key: the model, its
    checkpoint, config and input spec (its window policy included), the encode path and the records."""
    from .._io import sha256_json
    from ..embeddings.cache import model_description

    return {**model_description(encoder, encoder.input_spec), "encode": "embed_array",
            "records": sha256_json(list(records)), "dtype": "float32"}


def perturbed_embeddings(encoder: Encoder, raw: Sequence[Raw], perturbation: Perturbation, seed: int,
                         cache: EmbeddingCache,
                         description: Mapping[str, Any]) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """(keys embedded, their embeddings, record → why it was left out) of the perturbed records.

    A record the perturbation cannot apply to (lead dropout of as many leads as the model reads) is left out with
    the reason; an error of the model's preprocessing or encoder propagates (the caller makes it the row's reason).
    """
    from ..data.perturb import record_rng
    from ..data.preprocess import lead_sources
    from ..data.records import Signal
    from ..embeddings.cache import perturbed_description

    spec = encoder.input_spec
    left_out: dict[str, str] = {}

    def compute() -> tuple[tuple[str, ...], np.ndarray, dict[str, Any]]:
        keys, signals = [], []
        for key, sig in raw:
            read = [i for i in lead_sources(sig.leads, spec.leads, spec.lead_fallbacks) if i is not None]
            try:
                data = perturbation.apply(sig.data, sig.fs, record_rng(seed, perturbation.name, key), read)
            except EcgfmError as exc:
                left_out[key] = str(exc)
                continue
            keys.append(key)
            signals.append(Signal(data, sig.fs, sig.leads))
        X = embed_signals(encoder, signals)
        if not np.isfinite(X).all():
            raise DataError("the encoder gave non-finite embeddings of the perturbed records", perturbation.name)
        return tuple(keys), X, {"left_out": left_out}

    cached = cache.get_or_compute(perturbed_description(description, perturbation.to_dict(), seed), compute)
    return list(cached.keys), np.asarray(cached.X), dict(cached.manifest.get("left_out", left_out))


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (1 where both are the zero vector, 0
    where only one is)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    return np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, np.clip(cos, -1.0, 1.0)))


def drop_row(metric: str, task_type: str, y: np.ndarray, clean: np.ndarray, perturbed: np.ndarray, *,
             n_boot: int, seed: int, y_val: np.ndarray | None = None,
             scores_val: np.ndarray | None = None) -> dict[str, float]:
    """clean, perturbed value and drop (clean − perturbed, positive = worse) with its paired bootstrap CI and
    permutation p-value; ``y_val`` and the clean validation scores where the metric is thresholded."""
    from ..metrics import METRICS, paired_bootstrap, point_estimate

    c = paired_bootstrap(metric, y, clean, perturbed, n_boot=n_boot, seed=seed, task_type=task_type, y_val=y_val,
                         scores_val_a=scores_val, scores_val_b=scores_val)
    clean_value = point_estimate(metric, task_type, y, clean, y_val=y_val, scores_val=scores_val)
    sign = 1.0 if METRICS.get(metric).higher_is_better else -1.0
    low, high = sorted((sign * c.ci_low, sign * c.ci_high))
    return {"clean": clean_value, "value": clean_value - c.diff, "drop": sign * c.diff, "drop_ci_low": low,
            "drop_ci_high": high, "p_value": c.p_value}


def read_raw(data: ModelTaskData, rows: np.ndarray) -> tuple[list[Raw], list[int], dict[str, str]]:
    """The raw signals of task rows (validated as the benchmark reads them): (raw, their rows, unreadable)."""
    from ..data.reader import read_and_validate

    raw, kept, unreadable = [], [], {}
    for i in rows:
        key = str(data.task.keys[i])
        try:
            raw.append((key, read_and_validate(data.task.records.iloc[i].to_dict())))
            kept.append(int(i))
        except RecordError as exc:
            unreadable[key] = exc.reason
    return raw, kept, unreadable


def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """The cell's probe on perturbed test records (see ``robustness``)."""
    from .._io import sha256_json
    from ..data.perturb import DEFAULT_PERTURBATIONS, PERTURBATIONS
    from ..embeddings.cache import EmbeddingCache
    from ..metrics import METRICS, point_estimate

    names = DEFAULT_PERTURBATIONS if options.robustness is None else options.robustness
    if not names:
        raise AnalysisSkip("no perturbation selected (--ecgfm-robustness none)")
    encoder = data.encoder
    assert encoder is not None, "robustness needs the model (its spec says needs_encoder)"
    td, metric, task_type = data.task, data.task.task.main_metric, data.task_type
    level = headline_level(data.levels)
    runs = probe_runs(data, level)
    sampled = sample_records(task_type, data.y, td.indices("test"), options.robustness_max_records, options.seed)
    no_embedding = {str(td.keys[i]): "no embedding" for i in sampled if not data.have[i]}
    raw, kept, unreadable = read_raw(data, sampled[data.have[sampled]])
    if not raw:
        raise AnalysisSkip(f"no readable test record with an embedding among the {len(sampled)} sampled")
    row_of = {key: i for (key, _), i in zip(raw, kept, strict=True)}
    y = data.y

    def scores(X: np.ndarray) -> np.ndarray:
        return np.mean([np.asarray(r.probe.predict_scores(X), dtype=np.float64) for r in runs], axis=0)

    val_rows = data.rows("val")
    validation = ({"y_val": y[val_rows], "scores_val": scores(data.X[val_rows])}
                  if METRICS.get(metric).thresholded else {})
    try:  # a metric undefined on the sample (one class only) is a skip of the pair, named
        point_estimate(metric, task_type, y[kept], scores(data.X[kept]), **validation)
    except DataError as exc:
        raise AnalysisSkip(f"{metric} is undefined on the {len(kept)} sampled test records: {exc.reason}") from None
    cache = EmbeddingCache(data.cache_dir, cast("CacheMode", options.embedding_cache))
    description = clean_description(encoder, [(k, str(td.records["content_hash"].iloc[row_of[k]])) for k, _ in raw])
    out = []
    for name in names:
        perturbation = PERTURBATIONS.get(name)
        entry: dict[str, Any] = {"perturbation": name, "kind": perturbation.kind, "parameter": perturbation.value,
                                 "n": 0, "reason": None}
        reason = perturbation.not_applicable(encoder.input_spec.leads)
        if reason is not None:
            out.append({**entry, "reason": reason})
            continue
        try:
            keys, Xp, left_out = perturbed_embeddings(encoder, raw, perturbation, options.seed, cache, description)
        except CacheError:
            raise  # an unreachable cache store is not the model's doing
        except _CANNOT_TAKE as exc:
            out.append({**entry, "reason": f"the model cannot take the perturbed records: {type(exc).__name__}: "
                                           f"{exc}"})
            continue
        if not keys:
            out.append({**entry, "left_out": left_out,
                        "reason": f"no sampled record can take it ({next(iter(left_out.values()), '')})"})
            continue
        at = np.array([row_of[k] for k in keys])
        try:
            row = drop_row(metric, task_type, y[at], scores(data.X[at]), scores(Xp), n_boot=data.n_boot,
                           seed=options.seed, **validation)
        except DataError as exc:
            out.append({**entry, "n": len(at), "left_out": left_out,
                        "reason": f"{metric} is undefined on the {len(at)} records it applies to: {exc.reason}"})
            continue
        out.append({**entry, **row, "n": len(at), "cosine": float(row_cosine(data.X[at], Xp).mean()),
                    "left_out": left_out})
    return Output({
        "model": data.model, "task": td.task.id, "level": level, "seeds": [r.seed for r in runs], "metric": metric,
        "higher_is_better": METRICS.get(metric).higher_is_better, "n_test": int(len(data.rows("test"))),
        "sample": {"max_records": options.robustness_max_records, "seed": options.seed, "n": len(raw),
                   "keys_sha256": sha256_json(sorted(row_of)), "stratified_by": "bootstrap strata"},
        "excluded": {**no_embedding, **unreadable}, "perturbation_seed": options.seed,
        "scores": "mean over the cell's seed probes", "drop": "clean − perturbed in the better direction (> 0: worse)",
        "perturbations": out,
    })


def rows(key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``robustness.csv``: one row per (model, task, perturbation); a perturbation that did not run has its
    ``reason`` and no numbers."""
    columns = ("n", "clean", "value", "drop", "drop_ci_low", "drop_ci_high", "p_value", "cosine")
    return [{"model": payload["model"], "task": payload["task"], "scarcity": payload["level"],
             "perturbation": p["perturbation"], "metric": payload["metric"], "n_sampled": payload["sample"]["n"],
             "n_test": payload["n_test"], **{c: p.get(c) for c in columns}, "reason": p.get("reason")}
            for p in payload["perturbations"]]


def problems(p: Mapping[str, Any]) -> list[str]:
    """Cosines in [-1, 1]; a drop equal to clean − perturbed in the better direction, inside its CI's span; the
    metric's values in range; no more records than were sampled; a row that did not run has no numbers."""
    from ..metrics import METRICS

    spec = METRICS.get(p["metric"])
    sign = 1.0 if p["higher_is_better"] else -1.0
    found = []
    for row in p["perturbations"]:
        name = row["perturbation"]
        if row.get("reason"):
            if row.get("drop") is not None:
                found.append(f"{name}: skipped ({row['reason']}) but has a drop")
            continue
        if not within(row["cosine"], -1, 1):
            found.append(f"{name}: cosine {row['cosine']}")
        if not 0 < row["n"] <= p["sample"]["n"]:
            found.append(f"{name}: {row['n']} records of {p['sample']['n']} sampled")
        for what in ("clean", "value"):
            if row[what] is None or not spec.low - 1e-9 <= row[what] <= spec.high + 1e-9:
                found.append(f"{name}: {what} {row[what]} outside [{spec.low}, {spec.high}]")
        clean, value, drop = row["clean"], row["value"], row["drop"]
        if None in (clean, value, drop) or abs(drop - sign * (clean - value)) > 1e-9 * max(1, abs(clean)):
            found.append(f"{name}: drop {row['drop']} is not clean − perturbed ({row['clean']} − {row['value']})")
        if not within(row["p_value"], 0, 1):
            found.append(f"{name}: p-value {row['p_value']}")
    return found
