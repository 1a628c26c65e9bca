"""Every user-facing option, declared once: CLI flag, ini key, environment variable, default, parser.

Precedence is CLI > environment > ini > default. The pytest plugin and the CLI both build their
flags from ``OPTIONS``, so the README table, ``--help`` and behaviour cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError
from .shard import parse_shard
from .storage import StorePath, location


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _location(value: str) -> Path | StorePath:
    """A local directory, or an fsspec URL (``s3://bucket/prefix``) for storage shared between machines."""
    return location(value)


def _timestamp(value: str) -> dt.datetime:
    """ISO 8601 time (``2026-11-25T06:40:05Z``); one without a zone is UTC."""
    try:
        t = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise SpecError(f"expected an ISO 8601 time such as 2026-11-25T06:40:05Z, got {value!r}") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _seeds(value: str) -> tuple[int, ...]:
    """``"3"`` → seeds 0,1,2; ``"0,7,9"`` → those seeds."""
    try:
        if "," in value:
            return tuple(int(v) for v in _csv(value))
        n = int(value)
    except ValueError:
        raise SpecError(f"--ecgfm-seeds expects a count or a comma list of integers, got {value!r}") from None
    if n < 1:
        raise SpecError(f"--ecgfm-seeds must be >= 1, got {n}")
    return tuple(range(n))


def _workers(value: str) -> int | None:
    """``auto`` → None (decided from the cores); else a positive count."""
    return None if value.strip().lower() == "auto" else _positive_int(value)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise SpecError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


def _bool(value: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SpecError(f"expected a boolean, got {value!r}")


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise SpecError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise SpecError(f"expected a positive integer, got {n}")
    return n


def _update_mode(value: str) -> str:
    if value not in ("all", "new-only"):
        raise SpecError(f"expected all or new-only, got {value!r} (before a path, write --ecgfm-update-baselines=all)")
    return value


def _checkpoints(value: str) -> tuple[tuple[str, Path], ...]:
    pairs = []
    for item in _csv(value):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SpecError(f"--ecgfm-checkpoint expects NAME=PATH, got {item!r}")
        pairs.append((name.strip(), Path(path).expanduser()))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # flag without the --ecgfm- prefix
    dest: str
    env: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    flag: bool = False  # store_true style
    multiple: bool = False  # may be repeated; values are comma-joined
    bare: str | None = None  # the value when the flag is given without one (``--flag`` = ``--flag=<bare>``)

    @property
    def cli(self) -> str:
        return f"--ecgfm-{self.name}"

    @property
    def ini(self) -> str:
        return f"ecgfm_{self.dest}"


OPTIONS: tuple[Option, ...] = (
    Option("data-dir", "data_dir", "ECGFM_DATA_DIR", "~/.cache/ecgfm-suite/data", _path,
           "root below which datasets are found by content (any layout)"),
    Option("weights-dir", "weights_dir", "ECGFM_WEIGHTS_DIR", "~/.cache/ecgfm-suite/weights", _path,
           "root of model checkpoints, one entry per model as named in `ecgfm-suite models`"),
    Option("cache-dir", "cache_dir", "ECGFM_CACHE_DIR", "~/.cache/ecgfm-suite/cache", _location,
           "embedding, preprocessing and dataset-index cache (safe to share between runs and xdist workers); an "
           "fsspec URL (s3://bucket/prefix, gs://…) shares the embeddings between machines, preprocessed arrays "
           "and indexes then stay in the default local dir"),
    Option("reports-dir", "reports_dir", "ECGFM_REPORTS_DIR", "reports", _location,
           "where run directories reports/<run-id>/ are written; reports/latest links the newest; with an "
           "fsspec URL the run is written to the default local dir and uploaded to <url>/<run-id>/ at the end, "
           "run.json last"),
    Option("models", "models", "ECGFM_MODELS", None, _csv,
           "comma list of model ids (default: every model whose weights are present, plus the controls)"),
    Option("tasks", "tasks", "ECGFM_TASKS", None, _csv,
           "comma list of task ids (default: every task whose data is present)"),
    Option("scarcity", "scarcity", "ECGFM_SCARCITY", None, _csv,
           "comma list of scarcity levels (frac1..frac100, shot1..shot20); default frac10,frac100 (+shot10 for small tasks)"),
    Option("seeds", "seeds", "ECGFM_SEEDS", "3", _seeds,
           "number of seeds (N → 0..N-1) or a comma list; seeds vary the training subset and the probe"),
    Option("probes", "probes", "ECGFM_PROBES", "linear", _csv,
           "probes fitted per cell (linear, knn, mlp); the first one is the cell's headline"),
    Option("n-boot", "n_boot", "ECGFM_N_BOOT", "1000", _positive_int, "bootstrap resamples for CIs"),
    Option("read-workers", "read_workers", "ECGFM_READ_WORKERS", "1", _positive_int,
           "processes reading records while the main process preprocesses them (capped at the available "
           "cores); more helps only where cores are idle: on 2 busy cores one process was fastest"),
    Option("workers", "workers", "ECGFM_WORKERS", "auto", _workers,
           "processes that fit a cell's seeds and run the analyses, this one included: auto = the available "
           "cores + 1 (1 on one core or on a pytest-xdist worker), 1 = everything in the pytest process; worker processes are "
           "spawned, so a script that calls the library needs the usual `if __name__ == \"__main__\":` guard"),
    Option("device", "device", "ECGFM_DEVICE", "auto", _choice("auto", "cpu", "cuda"),
           "torch device: auto picks CUDA when present, else CPU"),
    Option("cache", "cache", "ECGFM_CACHE", "use", _choice("use", "refresh", "off"),
           "cache mode: use, refresh (recompute embeddings and rescan dataset indexes, overwriting) or off "
           "(no embedding, prepared-array or dataset-index cache)"),
    Option("allow-random-init", "allow_random_init", "ECGFM_ALLOW_RANDOM_INIT", "false", _bool,
           "run models whose checkpoint is absent with random weights (reported as random-init)", flag=True),
    Option("strict", "strict", "ECGFM_STRICT", "false", _bool,
           "stop on the first bad record instead of excluding it", flag=True),
    Option("checkpoint", "checkpoints", "ECGFM_CHECKPOINT", None, _checkpoints,
           "NAME=PATH: use this checkpoint for a registered model (repeatable)", multiple=True),
    Option("model-file", "model_files", "ECGFM_MODEL_FILE", None, lambda v: tuple(_path(p) for p in _csv(v)),
           "ModelSpec YAML file of a bring-your-own model (repeatable)", multiple=True),
    Option("run-id", "run_id", "ECGFM_RUN_ID", None, str, "name of the run directory (default: timestamp)"),
    Option("update-baselines", "update_baselines", "ECGFM_UPDATE_BASELINES", None, _update_mode,
           "rewrite the baseline entries of the cells that ran and passed their floors (all, the value when "
           "given bare) or only add missing entries (new-only)", bare="all"),
    Option("shard", "shard", "ECGFM_SHARD", None, parse_shard,
           "K/N: run only the K-th of N disjoint, cost-balanced parts of the selected cells (one CI matrix job "
           "each; `ecgfm-suite merge` joins their run directories)"),
    Option("shard-as-of", "shard_as_of", "ECGFM_SHARD_AS_OF", None, _timestamp,
           "ISO time: shard costs count only the embedding-cache entries written before it, so shard jobs that "
           "start at different times against a shared cache (a bucket) still agree on the split"),
    Option("baselines-dir", "baselines_dir", "ECGFM_BASELINES_DIR", "benchmarks/baselines", _path,
           "directory of the committed baselines <model>.yml (relative to the pytest rootdir)"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    weights_dir: Path
    cache_dir: Path | StorePath
    reports_dir: Path | StorePath
    models: tuple[str, ...] | None
    tasks: tuple[str, ...] | None
    scarcity: tuple[str, ...] | None
    seeds: tuple[int, ...]
    probes: tuple[str, ...]
    n_boot: int
    device: str
    cache: str
    allow_random_init: bool
    strict: bool
    checkpoints: tuple[tuple[str, Path], ...] = ()
    model_files: tuple[Path, ...] = ()
    run_id: str | None = None
    update_baselines: str | None = None
    baselines_dir: Path = Path("benchmarks/baselines")
    shard: tuple[int, int] | None = None
    shard_as_of: dt.datetime | None = None
    read_workers: int = 1
    #: processes for probe seeds and analyses (None: the available cores + 1)
    workers: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def local_cache_dir(self) -> Path:
        """Where machine-local caches live (prepared arrays, numba): the cache dir, or its default for a URL."""
        return self.cache_dir if isinstance(self.cache_dir, Path) else _local_default("cache-dir")

    @property
    def local_cache(self) -> Path | None:
        """The local cache dir for prepared arrays and dataset indexes; None under ``--ecgfm-cache off``."""
        return None if self.cache == "off" else self.local_cache_dir

    @property
    def local_reports_dir(self) -> Path:
        """Where runs are written; for a URL reports dir, the local staging dir uploaded at the end."""
        return self.reports_dir if isinstance(self.reports_dir, Path) else _local_default("reports-dir")

    def resolved_device(self, worker_id: str | None = None) -> str:
        """``auto`` → cuda/cpu; on CUDA an xdist worker (``gwK``) gets its own GPU (see ``worker_device``)."""
        if self.device == "cpu":
            return "cpu"
        import torch

        if self.device == "auto" and not torch.cuda.is_available():
            return "cpu"
        return worker_device("cuda", worker_id, torch.cuda.device_count())


def _local_default(name: str) -> Path:
    default = next(opt.default for opt in OPTIONS if opt.name == name)
    return _path(str(default))


def worker_device(device: str, worker_id: str | None, n_gpus: int) -> str:
    """Pin pytest-xdist worker ``gwK`` to ``cuda:{K % n_gpus}`` so ``-n N`` spreads the models over the GPUs.

    The controller (no worker id), CPU runs and single-GPU machines keep ``device`` unchanged.
    """
    if device != "cuda" or n_gpus < 2 or not worker_id:
        return device
    match = re.fullmatch(r"gw(\d+)", worker_id)
    if match is None:
        raise SpecError(f"unexpected pytest-xdist worker id {worker_id!r} (expected gw<N>)")
    return f"cuda:{int(match.group(1)) % n_gpus}"


def resolve(cli: Mapping[str, Any] | None = None, ini: Mapping[str, Any] | None = None,
            env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings; ``cli`` values are raw strings (or bools for flags), None meaning 'not given'."""
    cli = cli or {}
    ini = ini or {}
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw: Any = None
        source = "default"
        for candidate, where in ((cli.get(opt.dest), opt.cli), (env.get(opt.env), opt.env), (ini.get(opt.dest), opt.ini)):
            if candidate not in (None, "", [], False):
                raw, source = candidate, where
                break
        if raw is None:
            raw = opt.default
        if raw is None:
            values[opt.dest] = () if opt.multiple else None
            continue
        if isinstance(raw, (list, tuple)):
            raw = ",".join(str(r) for r in raw)
        if isinstance(raw, bool):
            raw = str(raw)
        try:
            values[opt.dest] = opt.parse(str(raw))
        except SpecError as exc:
            raise SpecError(exc.reason, source) from None
    return Settings(**values)
