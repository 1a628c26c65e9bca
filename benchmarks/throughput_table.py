"""The README's encode-throughput table, from a ``bench_models.py --benchmark-json`` file.

    python benchmarks/throughput_table.py BENCH.json

Prints a heading line (device, records, date, load) and one markdown row per model, so the README's
figures are copied from a measurement, never typed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = ("| model | records/s (ours) | our encode path (s, min) | bare forward (s, min) | ratio | rounds |\n"
          "|---|---:|---:|---:|---:|---:|")


def throughput_table(bench_json: Path) -> str:
    data = json.loads(Path(bench_json).read_text())
    runs = [b for b in data["benchmarks"] if b["name"].startswith("test_bench_encode_throughput[")]
    if not runs:
        raise SystemExit(f"{bench_json}: no test_bench_encode_throughput results in it")
    infos = [b["extra_info"] for b in runs]
    devices = sorted({i.get("device", "cpu") for i in infos})
    records = sorted({i["records"] for i in infos})
    loads = [i["load_avg_1min"] for i in infos]
    lines = [f"device {', '.join(devices)}; {'/'.join(map(str, records))} LUDB records; "
             f"{data['datetime'][:16].replace('T', ' ')} UTC; 1-min load {min(loads)}–{max(loads)}", "", HEADER]
    for run, info in sorted(zip(runs, infos, strict=True), key=lambda r: r[0]["param"]):
        if "bare_forward_s" in info:
            bare, ratio = f"{info['bare_forward_s']:.4f}", f"{info['overhead']:.3f}"
        else:
            bare, ratio = "-", "- (not torch)"
        lines.append(f"| `{run['param']}` | {info['records_per_s']:.2f} | {info['encode_s']:.4f} | {bare} | {ratio} "
                     f"| {info['rounds']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(throughput_table(Path(sys.argv[1])))
