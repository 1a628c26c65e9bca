"""Reliability diagrams of one (model, task): observed frequency against mean predicted probability per bin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..figures import MAX_PANELS, pyplot, to_png


def draw(payload: Mapping[str, Any], extra: Any = None) -> dict[str, bytes | None]:
    """``reliability``: one panel per output (the first ``MAX_PANELS``; the top label first for multiclass), the
    probe's bins and the recalibrated ones, the diagonal being perfect calibration; None without a scored output."""
    outputs = [(name, o) for name, o in payload["outputs"].items() if o["reason"] is None]
    outputs.sort(key=lambda item: item[0] != "top-label")
    outputs = outputs[:MAX_PANELS]
    if not outputs:
        return {"reliability": None}
    plt = pyplot()
    fig, axes = plt.subplots(1, len(outputs), figsize=(2.9 * len(outputs) + 0.6, 3.1), squeeze=False)
    for ax, (name, o) in zip(axes[0], outputs, strict=True):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        for key, label, style in (("reliability", f"probe, ECE {o['ece']['value']:.3f}", "o-"),
                                  ("ts_reliability", f"T={o['temperature']:.2f}, ECE {o['ts_ece']['value']:.3f}",
                                   "s--")):
            bins = o[key]
            ax.plot(bins["mean_predicted"], bins["observed"], style, markersize=3, linewidth=1, label=label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name} ({o['bins']} bins, n={o['n']})", fontsize=8)
        ax.set_xlabel("mean predicted", fontsize=7)
        ax.legend(fontsize=6, loc="upper left")
    axes[0][0].set_ylabel("observed frequency", fontsize=8)
    fig.suptitle(f"{payload['model']} · {payload['task']} ({payload['scarcity']}): reliability", fontsize=9)
    return {"reliability": to_png(fig)}
