"""Real dataset sizes on one machine: time, peak memory and cache size of a benchmark run at 2k, 20k, 200k records.

Each size is a dataset in the PTB-XL release layout (``ptbxl_database.csv``, ``scp_statements.csv``,
``records100/<thousands>/<id>_lr.{hea,dat}``) written from the shared PTB-XL records: every new record is a
shared one, circularly shifted, rescaled and with added noise, under its source's labels and fold. At each
size, as separate processes whose whole process tree is measured:

- the data layer: ``ecgfm-suite datasets`` with an empty cache (``datasets cold``: the index scan) and again
  (``warm``: the index cache hit);
- one control's cells and the analysis stage: ``pytest benchmarks/test_matrix.py benchmarks/test_representation.py``
  on ``random_cnn`` × ``ptbxl_superdiag``, ``frac10`` + ``frac100``, 1 seed, from an empty cache (``benchmark
  cold``: scan, prepare, encode, fit, bootstrap, analyses) and again (``warm``);
- the peak anonymous memory of the process tree (the sum of ``RssAnon`` over the process and its descendants,
  sampled from ``/proc`` every ``SAMPLE_S``; mapped files and page cache are not counted, a spike shorter than
  the interval can be missed) and the size of the cache a cold run leaves.

Run ``python benchmarks/bench_scale_data.py 2000 20000 [200000] [--root DIR] [--json FILE]`` for the table
(datasets are written under ``--root``, default the temp dir, and deleted after each size; 200k records take
~5 GB), or ``pytest benchmarks/bench_scale_data.py --benchmark-only`` (sizes from ``ECGFM_SCALE_RECORDS``,
default 2000,20000). The README's scale table comes from the former.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_PTBXL = Path(os.environ.get("ECGFM_DATA_DIR", REPO.parent / "shared" / "ecg-data")) / "ptb-xl"
SAMPLE_S = 0.1
#: the issue's targets: process-tree anonymous memory at 200k records and projected at MIMIC-IV-ECG's size
PEAK_TARGET_BYTES = 4 * 2**30
MIMIC_RECORDS, MIMIC_TARGET_BYTES = 800_035, 8 * 2**30
MODEL, TASK = "random_cnn", "ptbxl_superdiag"
NOISE_MV, MAX_SHIFT_S, SCALE = 0.02, 2.0, (0.8, 1.25)


# ------------------------------------------------------------------------------------------- dataset writer

@dataclass(frozen=True, slots=True)
class _Source:
    """One shared PTB-XL record: its database row, header signal lines and (samples, leads) digital signal."""

    row: dict[str, str]
    signal_lines: tuple[list[str], ...]
    fs: float
    digital: np.ndarray


def _read_source(root: Path) -> list[_Source]:
    with open(root / "ptbxl_database.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    sources = []
    for row in rows:
        header = (root / f"{row['filename_lr']}.hea").read_text().split("\n")
        first = header[0].split()
        n_leads, fs, n_samples = int(first[1]), float(first[2]), int(first[3])
        lines = tuple(line.split() for line in header[1 : 1 + n_leads])
        if any(f[1] != "16" for f in lines):
            raise ValueError(f"{row['filename_lr']}: expected WFDB format 16")
        digital = np.fromfile(root / f"{row['filename_lr']}.dat", dtype="<i2").reshape(n_samples, n_leads)
        sources.append(_Source(row, lines, fs, digital))
    return sources


def write_ptbxl_copy(dest: Path, n_records: int, *, source: Path = SHARED_PTBXL, seed: int = 0) -> Path:
    """``n_records`` PTB-XL records at 100 Hz in the release layout below ``dest``, each a shared record shifted,
    rescaled and noised (a new patient per copy, the source's labels and fold)."""
    sources = _read_source(source)
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "scp_statements.csv", dest / "scp_statements.csv")
    columns = list(sources[0].row)
    with open(dest / "ptbxl_database.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for ecg_id in range(1, n_records + 1):
            src = sources[(ecg_id - 1) % len(sources)]
            copy_round = (ecg_id - 1) // len(sources)
            folder = f"{ecg_id // 1000 * 1000:05d}"
            name = f"{ecg_id:05d}_lr"
            gain = float(src.signal_lines[0][2].split("(")[0].split("/")[0])
            max_shift = round(MAX_SHIFT_S * src.fs)
            shift = int(rng.integers(-max_shift, max_shift + 1))
            scaled = np.roll(src.digital, shift, axis=0) * rng.uniform(*SCALE)
            noisy = scaled + rng.normal(0.0, NOISE_MV * gain, scaled.shape)
            digital = np.clip(np.rint(noisy), -32767, 32767).astype("<i2")  # -32768 is format 16's missing value
            out_dir = dest / "records100" / folder
            out_dir.mkdir(parents=True, exist_ok=True)
            digital.tofile(out_dir / f"{name}.dat")
            lines = [f"{name} {len(src.signal_lines)} {src.fs:g} {len(digital)}"]
            for j, fields in enumerate(src.signal_lines):
                checksum = int(digital[:, j].astype(np.int64).sum() % 65536)
                lines.append(" ".join([f"{name}.dat", *fields[1:5], str(int(digital[0, j])), str(checksum),
                                       *fields[7:]]))
            (out_dir / f"{name}.hea").write_text("\n".join(lines) + "\n")
            row = dict(src.row)
            row.update(ecg_id=str(ecg_id), patient_id=f"{copy_round * 100_000 + float(src.row['patient_id']):.1f}",
                       filename_lr=f"records100/{folder}/{name}",
                       filename_hr=f"records500/{folder}/{ecg_id:05d}_hr")
            writer.writerow(row)
    return dest


# ------------------------------------------------------------------------------------------- measurement

def _children() -> dict[int, list[int]]:
    """Parent pid → child pids, from ``/proc/<pid>/stat``."""
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(stat.parent.name))
    return out


def tree_rss_anon(pid: int) -> int:
    """Bytes of anonymous resident memory (``RssAnon``) of ``pid`` and all its descendants."""
    children, total, todo = _children(), 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


@dataclass(frozen=True, slots=True)
class Measured:
    """One command: wall time, peak process-tree RssAnon, exit status, and the machine's 1-min load at its end."""

    wall_s: float
    peak_rss_anon: int
    returncode: int
    load_1min: float


def measure(cmd: Sequence[str], env: Mapping[str, str], log: Path) -> Measured:
    """Run ``cmd`` (output to ``log``), sampling its process tree's anonymous memory until it exits."""
    peak = 0
    with open(log, "ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(SAMPLE_S):
                peak = max(peak, tree_rss_anon(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
    return Measured(wall, peak, rc, os.getloadavg()[0])


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@dataclass(frozen=True, slots=True)
class ScaleRow:
    records: int
    write_s: float
    datasets_cold: Measured
    datasets_warm: Measured
    benchmark_cold: Measured
    benchmark_warm: Measured
    cache_bytes: int


def run_size(n_records: int, root: Path) -> ScaleRow:
    """Write one dataset of ``n_records`` under ``root`` and measure the data layer and the benchmark on it."""
    # the log sits in a folder of its own: a file changing directly in a folder above the dataset root would
    # invalidate the index cache (its fingerprint covers them) and make every warm figure a rescan
    data, log = root / f"ptbxl{n_records}", root / "logs" / f"scale{n_records}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_ptbxl_copy(data / "ptb-xl", n_records)
    write_s = time.perf_counter() - t0
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("ECGFM_")}
        datasets_env = {**base, "ECGFM_DATA_DIR": str(data), "ECGFM_CACHE_DIR": str(root / f"cache{n_records}ds")}
        datasets = [sys.executable, "-m", "ecgfm_suite", "datasets", "--data-dir", str(data)]
        ds_cold, ds_warm = (measure(datasets, datasets_env, log) for _ in range(2))
        cache = root / f"cache{n_records}"
        bench = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                 "benchmarks/test_matrix.py", "benchmarks/test_representation.py", "--ecgfm-models", MODEL,
                 "--ecgfm-tasks", TASK, "--ecgfm-scarcity", "frac10,frac100", "--ecgfm-seeds", "1",
                 "--ecgfm-data-dir", str(data), "--ecgfm-cache-dir", str(cache),
                 "--ecgfm-reports-dir", str(root / f"reports{n_records}")]
        cold = measure(bench, base, log)
        cache_bytes = _du(cache)
        warm = measure(bench, base, log)
    finally:
        shutil.rmtree(data, ignore_errors=True)
        for leftover in (f"cache{n_records}ds", f"cache{n_records}", f"reports{n_records}"):
            shutil.rmtree(root / leftover, ignore_errors=True)
    return ScaleRow(n_records, write_s, ds_cold, ds_warm, cold, warm, cache_bytes)


def growth_exponent(rows: Sequence[ScaleRow]) -> float | None:
    """log(time ratio) / log(size ratio) of the cold benchmark between the two largest sizes (1 = linear)."""
    if len(rows) < 2:
        return None
    a, b = sorted(rows, key=lambda r: r.records)[-2:]
    return math.log(b.benchmark_cold.wall_s / a.benchmark_cold.wall_s) / math.log(b.records / a.records)


def projected_peak(rows: Sequence[ScaleRow], n_records: int = MIMIC_RECORDS) -> float | None:
    """Peak process-tree RssAnon at ``n_records``, linear through the two largest sizes' cold-run peaks."""
    if len(rows) < 2:
        return None
    a, b = sorted(rows, key=lambda r: r.records)[-2:]
    slope = (b.benchmark_cold.peak_rss_anon - a.benchmark_cold.peak_rss_anon) / (b.records - a.records)
    return b.benchmark_cold.peak_rss_anon + slope * (n_records - b.records)


def markdown(rows: Sequence[ScaleRow]) -> str:
    gb = 1e9
    lines = ["| records | `datasets` cold / warm | benchmark cold / warm | peak RssAnon (tree) cold / warm | cache "
             "| load (1 min) |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.records:,} | {r.datasets_cold.wall_s:.1f} / {r.datasets_warm.wall_s:.1f} s "
                     f"| {r.benchmark_cold.wall_s:.0f} / {r.benchmark_warm.wall_s:.0f} s "
                     f"| {r.benchmark_cold.peak_rss_anon / gb:.2f} / {r.benchmark_warm.peak_rss_anon / gb:.2f} GB "
                     f"| {r.cache_bytes / 1e6:,.0f} MB | {r.benchmark_cold.load_1min:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("records", nargs="+", type=int)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path)
    ns = parser.parse_args(argv)
    rows = []
    for n in ns.records:
        root = Path(tempfile.mkdtemp(prefix="ecgfm-scale-", dir=ns.root))
        rows.append(run_size(n, root))
        print(json.dumps(asdict(rows[-1])), flush=True)
        if ns.json:
            ns.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(markdown(rows))
    exponent, projected = growth_exponent(rows), projected_peak(rows)
    if exponent is not None and projected is not None:
        print(f"cold benchmark time exponent between the two largest sizes: {exponent:.2f}; "
              f"peak RssAnon projected to {MIMIC_RECORDS:,} records: {projected / 1e9:.2f} GB")
    return 0 if all(r.benchmark_cold.returncode == 0 for r in rows) else 1


# ------------------------------------------------------------------------------------------- pytest-benchmark

SIZES = [int(n) for n in os.environ.get("ECGFM_SCALE_RECORDS", "2000,20000").split(",")]


@pytest.fixture(scope="module")
def measured_rows() -> list[ScaleRow]:
    return []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="samples memory from Linux /proc")
@pytest.mark.parametrize("n_records", SIZES)
def test_bench_scale_data(benchmark, tmp_path, measured_rows, n_records):
    if not (SHARED_PTBXL / "ptbxl_database.csv").exists():
        pytest.skip(f"the shared PTB-XL records are not at {SHARED_PTBXL} (set ECGFM_DATA_DIR)")
    row = benchmark.pedantic(run_size, args=(n_records, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(asdict(row))
    measured_rows.append(row)
    log = tmp_path / "logs" / f"scale{n_records}.log"
    assert row.benchmark_cold.returncode == 0 and row.benchmark_warm.returncode == 0, log
    if n_records <= 200_000:
        assert row.benchmark_cold.peak_rss_anon < PEAK_TARGET_BYTES
    if len(measured_rows) == len(SIZES) > 1:
        exponent, projected = growth_exponent(measured_rows), projected_peak(measured_rows)
        assert exponent is not None and projected is not None
        benchmark.extra_info.update(time_exponent=exponent, projected_mimic_peak=projected)
        assert exponent <= 1.1 and projected < MIMIC_TARGET_BYTES


if __name__ == "__main__":
    raise SystemExit(main())
