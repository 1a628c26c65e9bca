"""Plain-text leaderboard: one row per (task, scarcity), one column per model, main metric [95% CI]."""

from __future__ import annotations

from collections.abc import Sequence

from .cell import CellResult


def leaderboard_text(results: Sequence[CellResult]) -> str:
    if not results:
        return "(no cells ran)"
    models = sorted({r.model for r in results})
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in results:
        m = r.main
        flag = " (random init)" if r.random_init else ""
        rows.setdefault((r.task, r.scarcity, r.main_metric), {})[r.model] = (
            f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]{flag}"
        )
    header = ["task", "scarcity", "metric", *models]
    table = [header] + [[t, s, metric, *(cells.get(model, "-") for model in models)]
                        for (t, s, metric), cells in sorted(rows.items())]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
