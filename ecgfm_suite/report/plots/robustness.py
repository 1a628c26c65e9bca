"""Robustness of one (model, task): each perturbation's drop of the main metric with its paired CI, and how far
the embedding moved (mean cosine to the clean embedding)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..figures import pyplot, to_png


def draw(payload: Mapping[str, Any], extra: Any = None) -> dict[str, bytes | None]:
    """``drops``: horizontal bars of the drop (positive: worse) with its 95 % CI, the cosine beside each bar;
    perturbations that did not run are listed with their reason."""
    ran = [p for p in payload["perturbations"] if not p.get("reason")]
    if not ran:
        return {"drops": None}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.8, 0.45 * len(ran) + 1.6))
    y = list(range(len(ran)))
    drops = [p["drop"] for p in ran]
    err = [[p["drop"] - p["drop_ci_low"] for p in ran], [p["drop_ci_high"] - p["drop"] for p in ran]]
    ax.barh(y, drops, xerr=err, capsize=3, color=["#c0392b" if p["drop_ci_low"] > 0 else "#7f8c8d" for p in ran])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{p['perturbation']} (cos {p['cosine']:.2f}, n={p['n']})" for p in ran], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"drop of {payload['metric']} (clean − perturbed; > 0 worse), 95 % paired CI", fontsize=8)
    skipped = [f"{p['perturbation']}: {p['reason']}" for p in payload["perturbations"] if p.get("reason")]
    title = f"{payload['model']} · {payload['task']} ({payload['level']}): {payload['sample']['n']} test records"
    ax.set_title(title + ("\nnot run: " + "; ".join(skipped) if skipped else ""), fontsize=8)
    return {"drops": to_png(fig)}
