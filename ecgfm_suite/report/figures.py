"""Figures of the analyses as PNG bytes (matplotlib, Agg backend; no display, no files of its own).

Each function draws one analysis payload (the JSON ``ecgfm_suite.analysis`` stores) and
returns PNG bytes, or None when there is nothing to draw. ``figures_for`` maps an analysis
kind to its figures; the analysis tests call it and store the PNGs beside the JSON, and the
report embeds them as data URIs.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # type-only: the report imports no analysis module to draw
    from matplotlib.figure import Figure

DPI = 72
MAX_PANELS = 6


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


#: colours of a figure's palette: plots of a few lines, bars and colour maps lose nothing visible at 256
PALETTE_COLOURS = 256


def to_png(fig: Figure) -> bytes:
    """The figure as a palette PNG: every figure is embedded in the report as base64, and a 256-colour palette
    makes the analysis figures of the default job about 2.6× smaller than 24-bit RGBA."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def projection(payload: Mapping[str, Any]) -> bytes | None:
    """UMAP of the test embeddings coloured by label (and by source for pooled tasks), with its scores."""
    Y = np.asarray(payload["coords"], dtype=float)
    if len(Y) == 0:
        return None
    panels = [("label", np.asarray(payload["groups"]), list(payload["group_names"]))]
    if payload.get("source") is not None:
        names = sorted(set(payload["source"]))
        panels.append((payload["source_by"], np.array([names.index(s) for s in payload["source"]]), names))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    cmap = plt.get_cmap("tab10" if max(len(p[2]) for p in panels) <= 10 else "tab20")
    for ax, (what, codes, names) in zip(axes[0], panels, strict=True):
        for code, name in enumerate(names):
            mask = codes == code
            if mask.any():
                ax.scatter(Y[mask, 0], Y[mask, 1], s=8, color=cmap(code % cmap.N), label=f"{name} ({int(mask.sum())})")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=1.5, loc="best")
        ax.set_title(f"coloured by {what}", fontsize=8)
    s = payload["scores"]
    sep = (payload.get("separability") or {}).get("auroc")

    def f(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    fig.suptitle(f"{payload['model']} · {payload['task']}: UMAP of {s['n_records']} test records · silhouette "
                 f"{f(s['silhouette'])} · kNN acc {f(s['knn_accuracy'])} (chance {f(s['knn_chance'])}) · "
                 f"trustworthiness {f(s['trustworthiness'])} · source AUROC {f(sep)}", fontsize=8)
    return to_png(fig)


def transfer_matrix(payload: Mapping[str, Any]) -> bytes | None:
    """Metric of each (training region → test region) pair; the diagonal is in-region."""
    rows, cols = payload["train_regions"], payload["test_regions"]
    if not rows or not cols:
        return None
    values = np.full((len(rows), len(cols)), np.nan)
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            v = payload["cells"].get(a, {}).get(b, {}).get("value")
            values[i, j] = np.nan if v is None else v
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.0 * len(cols) + 2.5, 0.7 * len(rows) + 1.8))
    image = ax.imshow(values, cmap="viridis" if payload["metric"] != "mae" else "viridis_r")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8, color="white")
    ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=30)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("test region", fontsize=8)
    ax.set_ylabel("training region", fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8).set_label(payload["metric"], fontsize=8)
    ax.set_title(f"{payload['model']} · {payload['task']}: transfer ({payload['metric']})", fontsize=9)
    return to_png(fig)


def label_efficiency(payload: Mapping[str, Any]) -> bytes | None:
    """Metric against the fraction of training data, one line per model; dashed: the control's full-data score."""
    task, payloads = payload["task"], payload["models"]
    if not payloads:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    reference = None
    for model, p in sorted(payloads.items()):
        pts = p["points"]
        x = [q["fraction"] for q in pts]
        y = [q["value"] for q in pts]
        low = [q["value"] - q["ci_low"] if q.get("ci_low") is not None else 0 for q in pts]
        high = [q["ci_high"] - q["value"] if q.get("ci_high") is not None else 0 for q in pts]
        ax.errorbar(x, y, yerr=[low, high], marker="o", markersize=3, capsize=2, label=f"{model} (AUC {p['auc']:.3f})")
        reference = p.get("reference") if reference is None else reference
    if reference is not None:
        ax.axhline(reference, linestyle="--", color="grey", linewidth=1, label="random_cnn, full data")
    ax.set_xscale("log")
    ax.set_xlabel("fraction of the training split", fontsize=8)
    ax.set_ylabel(next(iter(payloads.values()))["metric"], fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"{task}: label efficiency", fontsize=9)
    return to_png(fig)


def cka_heatmap(payload: Mapping[str, Any]) -> bytes | None:
    names = payload["models"]
    matrix = np.asarray(payload["cka"], dtype=float)
    if len(names) < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(0.9 * len(names) + 2.6, 0.8 * len(names) + 1.6))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if matrix[i, j] > 0.6 else "white")
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=30)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8).set_label("linear CKA", fontsize=8)
    ax.set_title(f"{payload['task']}: linear CKA on {payload['n_records']} test records", fontsize=9)
    return to_png(fig)


#: kind → ``"module:attr"`` drawing ``(payload, extra) -> {figure name: PNG bytes or None}`` for analyses whose
#: figures live in their own module under ``report/plots/`` (imported on first use)
PLOTS: dict[str, str] = {
    "robustness": "ecgfm_suite.report.plots.robustness:draw",
    "efficiency_front": "ecgfm_suite.report.plots.efficiency:draw",
    "input_attribution": "ecgfm_suite.report.plots.input_attribution:draw",
    "subgroups": "ecgfm_suite.report.plots.subgroups:draw",
    "calibration": "ecgfm_suite.report.plots.calibration:draw",
    "ranks": "ecgfm_suite.report.plots.ranks:draw",
}


def figures_for(kind: str, payload: Mapping[str, Any], extra: Any = None) -> dict[str, bytes]:
    """Figures of one stored analysis: name → PNG (empty when the kind has none or nothing to draw)."""
    drawn: Mapping[str, bytes | None]
    if kind in PLOTS:
        from ..registry import resolve

        drawn = resolve(PLOTS[kind])(payload, extra)
    elif kind == "projection":
        drawn = {"map": projection(payload)}
    elif kind == "transfer":
        drawn = {"matrix": transfer_matrix(payload)}
    elif kind == "cka":
        drawn = {"heatmap": cka_heatmap(payload)}
    elif kind == "label_efficiency":
        drawn = {"curves": label_efficiency(payload)}
    else:
        drawn = {}
    return {name: png for name, png in drawn.items() if png is not None}
