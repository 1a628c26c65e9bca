"""Mean rank of each model over the run's grid with its bootstrap interval, and its significance group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..figures import pyplot, to_png


def draw(payload: Mapping[str, Any], extra: Any = None) -> dict[str, bytes | None]:
    """``ranks``: per grid (the whole grid, then each level), models by mean rank with their 95 % intervals,
    labelled with their significance group; rank 1 is best."""
    grids = list(payload["grids"].items())
    if not grids:
        return {"ranks": None}
    plt = pyplot()
    n_models = len(payload["models"])
    fig, axes = plt.subplots(1, len(grids), figsize=(3.4 * len(grids) + 0.6, 0.35 * n_models + 1.6), squeeze=False)
    for ax, (name, grid) in zip(axes[0], grids, strict=True):
        models = sorted(grid["models"].items(), key=lambda kv: kv[1]["mean_rank"])
        y = range(len(models))
        ax.errorbar([m["mean_rank"] for _, m in models], list(y),
                    xerr=[[m["mean_rank"] - m["ci_low"] for _, m in models],
                          [m["ci_high"] - m["mean_rank"] for _, m in models]], fmt="o", capsize=3, markersize=4)
        ax.set_yticks(list(y), [f"{model} ({m['group']})" for model, m in models], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0.8, n_models + 0.2)
        ax.set_xlabel("mean rank (1 = best)", fontsize=7)
        ax.set_title(f"{name}: {grid['description']}", fontsize=7, wrap=True)
    fig.suptitle(f"ranks with 95 % bootstrap intervals · groups: {payload['correction']}-corrected paired tests",
                 fontsize=8)
    return {"ranks": to_png(fig)}
