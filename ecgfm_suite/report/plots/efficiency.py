"""Main metric against compute for one task: one point per model (its headline cell), the Pareto front joined."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..figures import pyplot, to_png


def draw(payload: Mapping[str, Any], extra: Any = None) -> dict[str, bytes | None]:
    """``front``: main metric (95 % CI) against GFLOPs per record on a log axis; the models on the Pareto front
    filled and joined by a step line, the others hollow; models without a FLOP count named below."""
    points = payload["points"]
    if not points:
        return {"front": None}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.9))
    for p in points:
        ax.errorbar(p["gflops_per_record"], p["value"], yerr=[[p["value"] - p["ci_low"]], [p["ci_high"] - p["value"]]],
                    fmt="o", markersize=6, capsize=2, color="#1f77b4",
                    markerfacecolor="#1f77b4" if p["pareto"] else "white")
        ax.annotate(p["model"], (p["gflops_per_record"], p["value"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=7)
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["gflops_per_record"])
    ax.step([p["gflops_per_record"] for p in front], [p["value"] for p in front], where="post", color="#1f77b4",
            linewidth=1, alpha=0.6, label="Pareto front")
    if min(p["gflops_per_record"] for p in points) > 0:
        ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per record (torch FLOP counter; per window × windows per record)", fontsize=8)
    ax.set_ylabel(f"{payload['metric']} ({'higher' if payload['higher_is_better'] else 'lower'} is better)",
                  fontsize=8)
    ax.legend(fontsize=7)
    missing = "; ".join(f"{m}: {why}" for m, why in sorted(payload["unmeasured"].items()))
    ax.set_title(f"{payload['task']}: main metric against compute" + (f"\nno FLOP count: {missing}" if missing else ""),
                 fontsize=8, wrap=True)
    return {"front": to_png(fig)}
