"""Subgroup performance of one (model, task): the main metric per subgroup with its CI, one panel per attribute."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..figures import pyplot, to_png


def draw(payload: Mapping[str, Any], extra: Any = None) -> dict[str, bytes | None]:
    """``subgroups``: per attribute, a point (95 % CI) per evaluated subgroup, its n in the label, and the largest
    gap in the panel title (starred where its CI excludes 0); None when no subgroup has a value."""
    panels = [(name, a) for name, a in payload["attributes"].items()
              if any(s["value"] is not None for s in a["subgroups"])]
    if not panels:
        return {"subgroups": None}
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.6, 3.2), squeeze=False, sharey=True)
    for ax, (name, a) in zip(axes[0], panels, strict=True):
        shown = [s for s in a["subgroups"] if s["value"] is not None]
        x = range(len(shown))
        ax.errorbar(x, [s["value"] for s in shown], yerr=[[s["value"] - s["ci_low"] for s in shown],
                                                          [s["ci_high"] - s["value"] for s in shown]],
                    fmt="o", capsize=3, markersize=5)
        ax.set_xticks(list(x), [f"{s['subgroup']}\n(n={s['n']})" for s in shown], fontsize=7)
        gap = a["gap"] or {}
        title = name if gap.get("gap") is None else (
            f"{name}: gap {gap['gap']:.3f} [{gap['ci_low']:.3f}, {gap['ci_high']:.3f}]"
            + (" *" if gap["excludes_zero"] else ""))
        ax.set_title(title, fontsize=8)
    axes[0][0].set_ylabel(payload["metric"], fontsize=8)
    fig.suptitle(f"{payload['model']} · {payload['task']} ({payload['scarcity']}): subgroups", fontsize=9)
    return {"subgroups": to_png(fig)}
