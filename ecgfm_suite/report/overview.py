"""The report's overview figures, drawn when the report is built from what the run stored (one per question).

``heatmap``: models × tasks at each scarcity level, coloured by the main metric minus the best control's
(sign turned for metrics where lower is better, so brighter is always better), the CI width printed in
each cell, best (★) and not-significantly-worse (≈) marked. ``forest``: one task's models, point and
95 % CI at each level. ``efficiency``: small multiples of the label-efficiency curves over every level
that ran. Colour maps are viridis/cividis (readable in greyscale and by colour-blind readers).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from .figures import pyplot, to_png
from .findings import higher_is_better
from .tables import level_order

#: tasks per heatmap panel row before the panel wraps (a wide matrix stays legible)
HEATMAP_TASKS = 24


def _model_colours(models: Sequence[str]) -> dict[str, Any]:
    cmap = pyplot().get_cmap("viridis")
    return {m: cmap(0.9 * k / max(1, len(models) - 1)) for k, m in enumerate(models)}


def _relative(rows: Sequence[Mapping[str, Any]], controls: Collection[str]) -> dict[str, float]:
    """cell id → value minus the best control of its column (better is positive); the column's best model
    stands in where no control ran."""
    columns: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["value"] is not None and r["value"] == r["value"]:
            columns.setdefault((r["task"], r["scarcity"]), []).append(r)
    out = {}
    for members in columns.values():
        sign = 1.0 if higher_is_better(members[0]["metric"]) else -1.0
        reference = [m for m in members if m["model"] in controls] or members
        best = max(sign * m["value"] for m in reference)
        out.update({m["cell_id"]: sign * m["value"] - best for m in members})
    return out


def heatmap(rows: Sequence[Mapping[str, Any]], controls: Collection[str]) -> bytes | None:
    """Models × tasks, one panel per scarcity level (most training data first)."""
    if not rows:
        return None
    plt = pyplot()
    relative = _relative(rows, controls)
    levels = sorted({r["scarcity"] for r in rows}, key=level_order, reverse=True)
    models = sorted({r["model"] for r in rows})
    tasks = sorted({r["task"] for r in rows})
    by_key = {(r["model"], r["task"], r["scarcity"]): r for r in rows}
    span = max((abs(v) for v in relative.values()), default=0.0) or 1.0
    width = min(len(tasks), HEATMAP_TASKS)
    fig, axes = plt.subplots(len(levels), 1, squeeze=False,
                             figsize=(2.2 + 0.95 * width, 0.9 + len(levels) * (0.85 + 0.42 * len(models))))
    image = None
    for ax, level in zip(axes[:, 0], levels, strict=True):
        grid = np.full((len(models), len(tasks)), np.nan)
        for i, m in enumerate(models):
            for j, t in enumerate(tasks):
                r = by_key.get((m, t, level))
                if r is not None and r["cell_id"] in relative:
                    grid[i, j] = relative[r["cell_id"]]
                    mark = "★" if r["best"] else ("≈" if r["not_worse"] else "")
                    ci = (r["ci_high"] - r["ci_low"]) if r["ci_low"] is not None and r["ci_high"] is not None else None
                    text = f"{r['value']:.2f}{mark}" + ("" if ci is None else f"\n±{ci / 2:.2f}")
                    ax.text(j, i, text, ha="center", va="center", fontsize=6,
                            color="black" if grid[i, j] > -0.2 * span else "white")
        image = ax.imshow(grid, cmap="cividis", vmin=-span, vmax=span, aspect="auto")
        ax.set_xticks(range(len(tasks)), tasks if ax is axes[-1, 0] else [""] * len(tasks), rotation=40,
                      ha="right", fontsize=7)
        ax.set_yticks(range(len(models)), models, fontsize=7)
        ax.set_title(f"{level}", fontsize=8, loc="left")
    assert image is not None  # one panel per level, at least one level
    bar = fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.6, pad=0.01)
    bar.set_label("main metric − best control\n(better is brighter)", fontsize=7)
    fig.suptitle("Leaderboard: value, ±half the 95 % CI width; ★ best, ≈ not significantly worse", fontsize=8)
    return to_png(fig)


def forest(rows: Sequence[Mapping[str, Any]]) -> bytes | None:
    """One task's cells: point and 95 % CI per model, grouped by level (most training data on top)."""
    rows = [r for r in rows if r["value"] is not None and r["value"] == r["value"]]
    if not rows:
        return None
    plt = pyplot()
    levels = sorted({r["scarcity"] for r in rows}, key=level_order, reverse=True)
    models = sorted({r["model"] for r in rows})
    colours = _model_colours(models)
    fig, ax = plt.subplots(figsize=(5.8, 0.8 + 0.24 * len(rows) + 0.2 * len(levels)))
    y, ticks, labels = 0.0, [], []
    for level in levels:
        for r in sorted((r for r in rows if r["scarcity"] == level), key=lambda r: r["model"]):
            lo = r["value"] - r["ci_low"] if r["ci_low"] is not None else 0.0
            hi = r["ci_high"] - r["value"] if r["ci_high"] is not None else 0.0
            ax.errorbar([r["value"]], [y], xerr=[[lo], [hi]], fmt="D" if r["best"] else "o", markersize=4,
                        capsize=2, color=colours[r["model"]])
            ticks.append(y)
            labels.append(f"{r['model']} · {level}" + (" ★" if r["best"] else (" ≈" if r["not_worse"] else "")))
            y -= 1
        y -= 0.6
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlabel(f"{rows[0]['metric']} (point and 95 % CI)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{rows[0]['task']}: every model at every level", fontsize=9)
    return to_png(fig)


def efficiency(entries: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Label-efficiency curves of every task as small multiples (one colour per model throughout)."""
    tasks = [(task, p) for task, p in sorted(entries.items()) if p.get("models")]
    if not tasks:
        return None
    plt = pyplot()
    models = sorted({m for _, p in tasks for m in p["models"]})
    colours = _model_colours(models)
    cols = min(4, len(tasks))
    n_rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.0 * cols, 2.3 * n_rows + 0.6), squeeze=False)
    for ax, (task, payload) in zip(axes.flat, tasks, strict=False):
        for model, curve in sorted(payload["models"].items()):
            pts = sorted(curve["points"], key=lambda q: q["fraction"])
            x = [q["fraction"] for q in pts]
            y = [q["value"] for q in pts]
            ax.plot(x, y, marker="o", markersize=3, color=colours[model], linewidth=1)
            low = [q.get("ci_low", q["value"]) for q in pts]
            high = [q.get("ci_high", q["value"]) for q in pts]
            ax.fill_between(x, low, high, color=colours[model], alpha=0.15, linewidth=0)
        if payload.get("reference") is not None:
            ax.axhline(payload["reference"], linestyle="--", color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{task} ({next(iter(payload['models'].values()))['metric']})", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_axis_off()
    handles = [plt.Line2D([], [], color=colours[m], marker="o", markersize=3, label=m) for m in models]
    handles.append(plt.Line2D([], [], color="grey", linestyle="--", label="reference control, full data"))
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=7, frameon=False)
    fig.suptitle("Label efficiency: main metric (95 % CI band) against the fraction of the training split", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return to_png(fig)
