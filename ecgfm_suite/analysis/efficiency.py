"""Efficiency: what a model costs to run at its released configuration and the benchmark's window policy.

Per (model, task), since a record's cost follows the task's records (a 30-s CinC 2017 record is three
10-s windows under ``cover``):

- ``params``: parameters of the model's torch module (0 for ``handcrafted``, which has none);
- ``gflops_per_window``: ``torch.utils.flop_counter.FlopCounterMode`` over one model-ready window of a test
  record (matrix products, convolutions and attention; elementwise ops and the preprocessing are not counted),
  and ``gflops_per_record`` = that × the mean windows per record of the task's records with embeddings under the
  run's window policy; None, with the reason, for a model that runs no torch ops;
- ``peak_memory_mb``: the peak memory added while encoding that one window: on CUDA the increase of
  ``torch.cuda.max_memory_allocated``, on CPU the increase of the process's peak resident set over its resident
  set just before (Linux: the peak reset through ``/proc/self/clear_refs``, after glibc's free heap went back to
  the kernel, so memory freed by earlier work does not hide the encode's; elsewhere the lifetime peak of
  ``resource.getrusage``, a lower bound). Weights are not in it (loaded before): ``param_mb`` says their size;
- ``records_per_s``: records / encode seconds as the run's own encoding of the task's datasets recorded them in
  the embedding cache's manifests (the model's forward passes; ``records_per_s_with_preparation`` adds reading
  and preprocessing), with the entry's time: on a warm run the encoding happened when the entry was written.

``efficiency_front`` (per task) puts each model's headline main metric against its GFLOPs per record and
marks the Pareto front: the models no other model beats on both (the question a team choosing a model for a
device asks).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AnalysisSkip, DataError, RecordError
from .inputs import AnalysisOptions, ModelTaskData, Output, TaskInputs, headline_level, within

if TYPE_CHECKING:
    from ..models.protocol import Encoder

FLOP_COUNTER = ("torch.utils.flop_counter.FlopCounterMode: matrix products, convolutions and attention of one "
                "window; elementwise ops and the preprocessing are not counted")
#: peak-memory measurements per pair, their median reported (one varies by about a third with the allocator's state)
MEMORY_REPEATS = 3
PER_RECORD = "per window × mean windows per record of the task's records with embeddings"
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def torch_module(encoder: Encoder) -> Any | None:
    """The encoder's torch module (``TorchEncoder.module``), or None for a model that is not one."""
    module = getattr(encoder, "module", None)
    if module is None or "torch" not in sys.modules:
        return None
    import torch

    return module if isinstance(module, torch.nn.Module) else None


def parameter_size(encoder: Encoder) -> tuple[int, float]:
    """(parameters, MB of parameters and buffers) of the encoder's torch module; (0, 0.0) without one."""
    module = torch_module(encoder)
    if module is None:
        return 0, 0.0
    tensors = [*module.parameters(), *module.buffers()]
    return (sum(int(p.numel()) for p in module.parameters()),
            sum(int(t.numel()) * t.element_size() for t in tensors) / 2**20)


def count_flops(encode: Callable[[np.ndarray], Any], windows: np.ndarray) -> int:
    """FLOPs torch's counter sees while ``encode`` runs on ``windows``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        encode(windows)
    return int(counter.get_total_flops())


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_memory_mb(encoder: Encoder, windows: np.ndarray) -> tuple[float, str]:
    """(MB, how measured) of the memory ``encoder.encode(windows)`` adds at its peak (see the module docstring)."""
    device = getattr(encoder, "device", None)
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        encoder.encode(windows)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, "torch.cuda.max_memory_allocated increase"
    from ..embeddings.encode import _glibc

    libc = _glibc()
    if libc is not None:  # freed heap back to the kernel: else the encode reuses it unseen and a later pair reads 0
        libc.malloc_trim(0)
    try:
        before = _status_kb("VmRSS")
        _CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set (Linux ≥ 4.0)
        encoder.encode(windows)
        return max(_status_kb("VmHWM") - before, 0) / 1024, "peak RSS increase (/proc/self VmHWM reset)"
    except (OSError, KeyError, ValueError):
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB elsewhere
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        encoder.encode(windows)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (after - before) * scale / 2**20, "lifetime peak RSS increase (getrusage; a lower bound)"


def device_name(encoder: Encoder) -> str:
    """Where the encoder runs: the CUDA device's name, or the CPU and its cores (not this process's torch threads:
    the analyses run with one, the run's encoding with torch's default)."""
    device = getattr(encoder, "device", None)
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def recorded_timings(cache_dir: Path, encoder: Encoder, versions: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Dataset → the encode timings of the newest clean embedding-cache entry of this model (checkpoint, input
    spec and window policy) for that dataset version; datasets without one are absent."""
    from .._io import canonical_json
    from ..embeddings.cache import EmbeddingCache

    spec = canonical_json(encoder.input_spec.to_dict())
    found: dict[str, tuple[float, dict[str, Any]]] = {}
    for path in EmbeddingCache(cache_dir).manifest_paths():
        try:
            manifest = json.loads(path.read_text())
            d, timings = manifest["description"], manifest["timings"]
            dataset, written = d["dataset"], Path(str(path)).stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a perturbed entry (no timings), or one being written
        if (versions.get(dataset) != d.get("dataset_version") or d.get("model") != encoder.spec.id
                or d.get("checkpoint_sha256") != encoder.checkpoint_sha256 or "perturbation" in d
                or canonical_json(d.get("input_spec")) != spec or int(timings.get("records", 0)) < 1):
            continue
        if dataset not in found or written > found[dataset][0]:
            found[dataset] = (written, {**timings, "written": written, "entry": manifest.get("key")})
    return {dataset: info for dataset, (_, info) in found.items()}


def windows_per_record(data: ModelTaskData, timings: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Mean windows per record of the task's records with embeddings under the run's window policy: from their
    lengths and rates, else (``official``, whose count only the family knows) the cache entries' recorded means."""
    from ..data.preprocess import expected_window_counts

    records = data.task.records[data.have]
    assert data.encoder is not None  # run() checked
    counts = expected_window_counts(records["n_samples"].to_numpy(), records["fs"].to_numpy(), data.encoder.input_spec)
    if counts is not None:
        return float(np.mean(counts)) if len(counts) else None
    datasets = np.asarray(data.task.dataset)[data.have]
    means = [timings[d]["windows_mean"] for d in datasets if "windows_mean" in timings.get(d, {})]
    return float(np.mean(means)) if len(means) == len(datasets) and means else None


def one_window(data: ModelTaskData) -> np.ndarray:
    """The first model-ready window of the first readable test record with an embedding, as a batch of one."""
    from ..data.preprocess import RecordWindows
    from ..data.reader import read_and_validate

    assert data.encoder is not None  # run() checked
    problems = []
    for i in data.rows("test"):
        try:
            sig = read_and_validate(data.task.records.iloc[i].to_dict())
        except RecordError as exc:
            problems.append(exc.reason)
            continue
        windows = RecordWindows(data.encoder.prepare, data.encoder.input_spec)(sig.data, sig.fs, sig.leads)
        return np.asarray(windows[:1], dtype=np.float32)
    raise AnalysisSkip(f"no readable test record to measure the model on ({'; '.join(problems[:2])})")


def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """Parameters, FLOPs, peak memory and recorded throughput of the model on this task (see ``efficiency``)."""
    encoder = data.encoder
    assert encoder is not None, "efficiency needs the model (its spec says needs_encoder)"
    timings = recorded_timings(data.cache_dir, encoder, data.task.dataset_versions)
    window = one_window(data)
    encoder.encode(window)  # warm-up: one-time allocations of the first call are not the model's cost
    params, param_mb = parameter_size(encoder)
    flops = count_flops(encoder.encode, window) if torch_module(encoder) is not None else None
    measured = [peak_memory_mb(encoder, window) for _ in range(MEMORY_REPEATS)]
    peak, method = float(np.median([mb for mb, _ in measured])), measured[0][1]
    per_record = windows_per_record(data, {d: {**t, "windows_mean": t.get("windows", 0) / t["records"]}
                                           for d, t in timings.items()})
    gflops_window = None if flops is None else flops / 1e9
    records = sum(int(t["records"]) for t in timings.values())
    encode_s = sum(float(t["encode_s"]) for t in timings.values())
    prepare_s = sum(float(t["prepare_s"]) for t in timings.values())
    missing = sorted(set(data.task.dataset_versions) - set(timings))
    return Output({
        "model": data.model, "task": data.task.task.id, "device": device_name(encoder), "params": params,
        "param_mb": param_mb, "window_shape": list(window.shape[1:]), "gflops_per_window": gflops_window,
        "flops_counter": FLOP_COUNTER if flops is not None else "not counted: the model runs no torch ops",
        "window_policy": encoder.input_spec.policy, "windows_per_record": per_record,
        "gflops_per_record": None if gflops_window is None or per_record is None else gflops_window * per_record,
        "per_record": PER_RECORD, "peak_memory_mb": peak,
        "memory_method": f"{method}, encoding one window, median of {MEMORY_REPEATS}",
        "records_per_s": records / encode_s if records and not missing and encode_s > 0 else None,
        "records_per_s_with_preparation": (records / (encode_s + prepare_s)
                                           if records and not missing and encode_s + prepare_s > 0 else None),
        "timings": timings,
        "timings_missing": dict.fromkeys(missing, "no embedding-cache entry of this model's encoding of it "
                                                  "(cache off, or another cache dir)"),
    })


def rows(key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``efficiency.csv``: one row per (model, task)."""
    columns = ("model", "task", "params", "param_mb", "gflops_per_window", "windows_per_record", "gflops_per_record",
               "peak_memory_mb", "records_per_s", "records_per_s_with_preparation", "device", "window_policy",
               "memory_method")
    return [{c: payload.get(c) for c in columns}]


def problems(p: Mapping[str, Any]) -> list[str]:
    """Counts and sizes are non-negative, rates positive, and GFLOPs per record = per window × windows per record."""
    found = [f"{name} {p[name]}" for name in ("params", "param_mb", "peak_memory_mb", "gflops_per_window")
             if p[name] is not None and not within(p[name], 0, np.inf)]
    found += [f"{name} {p[name]}" for name in ("records_per_s", "records_per_s_with_preparation", "windows_per_record")
              if p[name] is not None and not p[name] > 0]
    if p["gflops_per_record"] is not None and not np.isclose(p["gflops_per_record"],
                                                             p["gflops_per_window"] * p["windows_per_record"]):
        found.append(f"GFLOPs per record {p['gflops_per_record']} ≠ per window × windows per record")
    return found


# --------------------------------------------------------------------------- across models, per task

def pareto_front(cost: np.ndarray, value: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Mask of the points no other point dominates: at most the cost and at least as good, better in one."""
    cost, good = np.asarray(cost, dtype=float), np.asarray(value, dtype=float) * (1 if higher_is_better else -1)
    dominated = ((cost[None, :] <= cost[:, None]) & (good[None, :] >= good[:, None])
                 & ((cost[None, :] < cost[:, None]) | (good[None, :] > good[:, None])))
    return np.asarray(~dominated.any(axis=1))


def run_front(inputs: TaskInputs) -> Output:
    """Each model's headline main metric (with its CI) against its GFLOPs per record, the Pareto front marked."""
    from ..metrics import METRICS

    results = [r for r in inputs.results() if r.task == inputs.task and r.main.is_finite()]
    levels: dict[str, list[str]] = {}
    for r in results:
        levels.setdefault(r.model, []).append(r.scarcity)
    points, unmeasured = [], {}
    for model, model_levels in sorted(levels.items()):
        level = headline_level(model_levels)
        r = next(r for r in results if r.model == model and r.scarcity == level)
        try:
            stored = inputs.store.read("efficiency", f"{model}-{inputs.task}")
        except DataError as exc:  # a results line naming a model no analysis can be stored under
            unmeasured[model] = str(exc)
            continue
        if stored is None or stored.get("gflops_per_record") is None:
            unmeasured[model] = ("no efficiency payload (skipped or not run)" if stored is None
                                 else stored["flops_counter"])
            continue
        points.append({"model": model, "level": level, "value": r.main.value, "ci_low": r.main.ci_low,
                       "ci_high": r.main.ci_high, "gflops_per_record": stored["gflops_per_record"],
                       "params": stored["params"]})
    if not points:
        raise AnalysisSkip(f"{inputs.task}: no model with a result and a FLOP count ({unmeasured})")
    metric = results[0].main_metric
    better = METRICS.get(metric).higher_is_better
    front = pareto_front(np.array([p["gflops_per_record"] for p in points]), np.array([p["value"] for p in points]),
                         better)
    for p, on in zip(points, front, strict=True):
        p["pareto"] = bool(on)
    return Output({"task": inputs.task, "metric": metric, "higher_is_better": better, "points": points,
                   "unmeasured": unmeasured, "level": "each model's headline level (most training data)"})


def front_rows(key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``efficiency_front.csv``: one row per (task, model) with a FLOP count."""
    return [{"task": payload["task"], "model": p["model"], "scarcity": p["level"], "metric": payload["metric"],
             "value": p["value"], "ci_low": p["ci_low"], "ci_high": p["ci_high"],
             "gflops_per_record": p["gflops_per_record"], "pareto": p["pareto"]} for p in payload["points"]]


def front_problems(p: Mapping[str, Any]) -> list[str]:
    """The cheapest model and the best one are on the front (each is dominated by nobody)."""
    points = p["points"]
    sign = 1 if p["higher_is_better"] else -1
    cheapest = min(points, key=lambda q: (q["gflops_per_record"], -sign * q["value"]))
    best = max(points, key=lambda q: (sign * q["value"], -q["gflops_per_record"]))
    return [f"{q['model']} ({why}) is not on the Pareto front" for q, why in ((cheapest, "cheapest"), (best, "best"))
            if not q["pareto"]]
