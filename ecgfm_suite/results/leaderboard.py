"""Plain-text leaderboard: one row per (task, scarcity), one column per model, main metric [95% CI].

With the stored column comparisons (``analysis/comparison/<task>-<scarcity>.json``, passed in as plain
mappings: this layer reads no analysis) each cell is marked ``*`` when it is the column's best and ``=``
when it is not significantly worse than the best after the comparison's multiple-comparison correction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .cell import CellResult


def mark(comparison: Mapping[str, Any] | None, model: str) -> str:
    """``*`` best, ``=`` not significantly worse than the best (corrected p-values), else nothing."""
    if not comparison or model not in comparison.get("verdict", {}):
        return ""
    if comparison["best"] == model:
        return " *"
    return "" if comparison["verdict"][model]["significantly_worse"] else " ="


def leaderboard_text(results: Sequence[CellResult],
                     comparisons: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The leaderboard; ``comparisons`` maps ``"<task>-<scarcity>"`` to that column's stored comparison."""
    if not results:
        return "(no cells ran)"
    comparisons = comparisons or {}
    models = sorted({r.model for r in results})
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in results:
        m = r.main
        flag = " (random init)" if r.random_init else ""
        rows.setdefault((r.task, r.scarcity, r.main_metric), {})[r.model] = (
            f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]{mark(comparisons.get(f'{r.task}-{r.scarcity}'), r.model)}"
            f"{flag}"
        )
    header = ["task", "scarcity", "metric", *models]
    table = [header] + [[t, s, metric, *(cells.get(model, "-") for model in models)]
                        for (t, s, metric), cells in sorted(rows.items())]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    corrections = sorted({str(c.get("correction", "none")) for c in comparisons.values()})
    if corrections:
        lines.append(f"* best; = not significantly worse than the best (paired test, p corrected per column: "
                     f"{', '.join(corrections)})")
    return "\n".join(lines)
