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
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import SpecError
from ..storage import StorePath, location
from .shard import parse_shard

if TYPE_CHECKING:  # type-only: the cache module imports filelock and the storage backends, preprocess scipy
    from ..data.preprocess import WindowPolicy
    from ..embeddings.cache import CacheMode

T = TypeVar("T")


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
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _distinct(values: tuple[T, ...], what: str) -> tuple[T, ...]:
    """Refuse a repeated entry: a seed counted twice would weigh double in the mean and CI."""
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise SpecError(f"{what} {', '.join(repeated)} listed more than once in {','.join(map(str, values))}")
    return values


def _seeds(value: str) -> tuple[int, ...]:
    """``"3"`` → seeds 0,1,2; ``"0,7,9"`` → those seeds (distinct, >= 0)."""
    try:
        numbers = tuple(int(v) for v in _csv(value))
    except ValueError:
        numbers = ()
    if "," not in value and len(numbers) == 1:
        if numbers[0] < 1:
            raise SpecError(f"--ecgfm-seeds must be >= 1, got {numbers[0]}")
        return tuple(range(numbers[0]))
    if not numbers or min(numbers) < 0:
        raise SpecError(f"--ecgfm-seeds expects a count or a comma list of integers >= 0, got {value!r}")
    return _distinct(numbers, "seed")


def _probes(value: str) -> tuple[str, ...]:
    """A non-empty list of distinct probe kinds (whether each is known is checked by ``validate``)."""
    probes = _csv(value)
    if not probes:
        raise SpecError(f"expected a comma list of probe kinds, got {value!r}")
    return _distinct(probes, "probe")


#: a run id is one path component of this alphabet (no separators, no leading dot or dash)
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: the reports dir's link to the newest run, never a run's own name
LATEST = "latest"


def _run_id(value: str) -> str:
    """A run directory name: writing through ``latest`` or outside the reports dir is refused."""
    if not _RUN_ID.fullmatch(value):
        raise SpecError(f"a run id is one folder name of letters, digits, '.', '_' and '-' (at most 128, starting "
                        f"with a letter or digit), got {value!r}")
    if value == LATEST:
        raise SpecError(f"{LATEST!r} is the link to the newest run, not a run id")
    return value


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


def _perturbations(value: str) -> tuple[str, ...]:
    """``default``, ``all``, ``none`` or a list of perturbation names (``data.perturb``, imported here only:
    it needs numpy, which collection does not)."""
    from ..data.perturb import parse_perturbations

    return parse_perturbations(value)


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
           "root below which datasets are found by content (any layout); one named that does not exist is an error"),
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
           "comma list of scarcity levels (frac1..frac100, shot1..shot20); default frac10,frac100 "
           "(+shot10 for small tasks)"),
    Option("seeds", "seeds", "ECGFM_SEEDS", "3", _seeds,
           "number of seeds (N → 0..N-1) or a comma list of distinct seeds >= 0; seeds vary the training subset "
           "and the probe"),
    Option("probes", "probes", "ECGFM_PROBES", "linear", _probes,
           "probes fitted per cell (linear, knn, mlp); the first one is the cell's headline"),
    Option("n-boot", "n_boot", "ECGFM_N_BOOT", "1000", _positive_int, "bootstrap resamples for CIs"),
    Option("read-workers", "read_workers", "ECGFM_READ_WORKERS", "1", _positive_int,
           "processes reading records while the main process preprocesses them (capped at the available "
           "cores); more helps only where cores are idle: on 2 busy cores one process was fastest"),
    Option("workers", "workers", "ECGFM_WORKERS", "auto", _workers,
           "processes that fit a cell's seeds and run the analyses, this one included: auto = the available "
           "cores + 1 (1 on one core or on a pytest-xdist worker), 1 = everything in the pytest process; "
           "worker processes are spawned, so a script that calls the library needs the usual "
           "`if __name__ == \"__main__\":` guard"),
    Option("windows", "windows", "ECGFM_WINDOWS", "cover", _choice("cover", "official", "first"),
           "which windows of a record are embedded (their embeddings averaged per record): cover = windows tiling "
           "the whole record, the last aligned to its end; official = each model's official test-time windows "
           "(ST-MEM's 3 crops, ECG-FM's and ECG-CPC's non-overlapping windows, else the first); first = the first "
           "window only. Overrides a model file's `windows`, which overrides the default"),
    Option("robustness", "robustness", "ECGFM_ROBUSTNESS", "default", _perturbations,
           "test-time perturbations of the robustness analysis: default (noise_snr10, baseline_wander, "
           "lead_dropout3), all, none, or a comma list of noise_snr20, noise_snr10, noise_snr5, baseline_wander, "
           "powerline_50, powerline_60, amplitude_x0.5, amplitude_x2, time_shift, lead_dropout1, lead_dropout3, "
           "lead_dropout6, resample_250"),
    Option("device", "device", "ECGFM_DEVICE", "auto", _choice("auto", "cpu", "cuda"),
           "torch device: auto picks CUDA when present, else CPU"),
    Option("cache", "cache", "ECGFM_CACHE", "use", _choice("use", "refresh", "off"),
           "cache mode: use, refresh (recompute embeddings and rescan dataset indexes, overwriting) or off "
           "(no embedding, prepared-array or dataset-index cache)"),
    Option("allow-random-init", "allow_random_init", "ECGFM_ALLOW_RANDOM_INIT", "false", _bool,
           "run models whose checkpoint is absent below the weights dir with random weights (reported as "
           "random-init); never stands in for a checkpoint you named", flag=True),
    Option("strict", "strict", "ECGFM_STRICT", "false", _bool,
           "stop on the first bad record instead of excluding it", flag=True),
    Option("checkpoint", "checkpoints", "ECGFM_CHECKPOINT", None, _checkpoints,
           "NAME=PATH: use this checkpoint for a registered model (repeatable); it must exist", multiple=True),
    Option("model-file", "model_files", "ECGFM_MODEL_FILE", None, lambda v: tuple(_path(p) for p in _csv(v)),
           "ModelSpec YAML file of a bring-your-own model (repeatable)", multiple=True),
    Option("run-id", "run_id", "ECGFM_RUN_ID", None, _run_id,
           "name of the run directory (default: timestamp): letters, digits, '.', '_', '-'; not 'latest'"),
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
    Option("strict-baselines", "strict_baselines", "ECGFM_STRICT_BASELINES", "false", _bool,
           "gate strictly: a cell whose data (dataset versions, test records) has no baseline entry fails as not "
           "comparable instead of passing as 'no baseline for this data' (also implied by naming "
           "--ecgfm-baselines-dir)", flag=True),
    Option("thresholds", "thresholds", "ECGFM_THRESHOLDS", "benchmarks/thresholds.yml", _path,
           "floors and regression tolerances (relative to the pytest rootdir); a file named explicitly must "
           "exist, the default one absent means no floors and the default tolerances (with a warning)"),
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
    cache: CacheMode
    allow_random_init: bool
    strict: bool
    checkpoints: tuple[tuple[str, Path], ...] = ()
    model_files: tuple[Path, ...] = ()
    run_id: str | None = None
    update_baselines: str | None = None
    baselines_dir: Path = Path("benchmarks/baselines")
    thresholds: Path = Path("benchmarks/thresholds.yml")
    strict_baselines: bool = False
    shard: tuple[int, int] | None = None
    shard_as_of: dt.datetime | None = None
    read_workers: int = 1
    #: processes for probe seeds and analyses (None: the available cores + 1)
    workers: int | None = None
    #: record-level window policy (``InputSpec.window_policy``) of models whose spec names none
    windows: WindowPolicy = "cover"
    #: perturbations of the robustness analysis (``data.perturb`` names; None: its default set)
    robustness: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: option dest → where the user set it (its flag, environment variable or ini key); defaults are absent
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def explicit(self) -> frozenset[str]:
        """Dests of the options the user set (flag, environment or ini): what they name must exist."""
        return frozenset(self.sources)

    def source(self, dest: str) -> str:
        """How the user set option ``dest`` (``--ecgfm-data-dir``, ``ECGFM_DATA_DIR``…), for messages; its flag
        when it was not set."""
        return self.sources.get(dest) or next(opt.cli for opt in OPTIONS if opt.dest == dest)

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
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        raw: Any = None
        source = "default"
        for candidate, where in ((cli.get(opt.dest), opt.cli), (env.get(opt.env), opt.env),
                                 (ini.get(opt.dest), opt.ini)):
            if candidate not in (None, "", [], False):
                raw, source = candidate, where
                break
        if raw is None:
            raw = opt.default
        else:
            sources[opt.dest] = source
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
    return Settings(**values, sources=sources)
