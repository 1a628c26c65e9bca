"""SHAP over the input of one (model, task): lead shares of a multi-lead model, or the time profile of a single-lead
model drawn over its trace, then the explained records with each (lead, segment) shaded by its SHAP value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..figures import MAX_PANELS, pyplot, to_png

if TYPE_CHECKING:  # type-only: the report imports no analysis module to draw
    from ...analysis.input_attribution import ExplainedRecord

MAX_RECORDS = 4


def draw(payload: Mapping[str, Any], extra: Any = None) -> dict[str, bytes | None]:
    """``traces``: the summary panel (lead bars, or the time profile over the first explained trace), then up to
    four explained records (red raises the score); None without a summary or a record's trace to draw."""
    records: Sequence[ExplainedRecord] = extra or []
    by_key = {rec.key: rec for rec in records}
    shown = [r for r in payload.get("records", []) if r["key"] in by_key][:MAX_RECORDS]
    time = payload.get("profile") == "time"
    summary = payload.get("time_profile" if time else "lead_importance") or {}
    if not summary or not shown:
        return {"traces": None}
    plt = pyplot()
    n_leads = max(len(r["player_leads"]) for r in shown)
    fig, axes = plt.subplots(1, 1 + len(shown), figsize=(3.6 + 4.0 * len(shown), max(3.4, 0.42 * n_leads + 1.8)),
                             squeeze=False, gridspec_kw={"width_ratios": [1.2 if time else 0.9] + [1.0] * len(shown)})
    if time:
        _time_profile(axes[0][0], summary, shown[0], by_key[shown[0]["key"]])
    else:
        _lead_bars(axes[0][0], summary)
    outputs = payload["outputs"]
    for ax, info in zip(axes[0][1:], shown, strict=True):
        _record(ax, info, by_key[info["key"]], outputs)
    res = payload["resolution"]
    grid = (f"{res['n_segments']} time segments" if time else f"{res['n_segments']} segments per lead")
    fig.suptitle(f"{payload['model']} · {payload['task']}: input attribution ({len(payload['records'])} records, "
                 f"{grid}, {res['permutations']} permutation{'s' if res['permutations'] > 1 else ''})", fontsize=9)
    return {"traces": to_png(fig)}


def _record(ax: Any, info: Mapping[str, Any], rec: ExplainedRecord, outputs: Sequence[str]) -> None:
    """One record's player leads, each (lead, segment) cell coloured by its SHAP value for the record's label."""
    values = np.asarray(info["values"])  # (players, segments, outputs)
    k = outputs.index(info["label"]) if info["label"] in outputs else 0
    scale = float(np.abs(values[:, :, k]).max()) or 1.0
    t = np.arange(rec.data.shape[1]) / rec.fs
    traces = [rec.data[rec.leads.index(lead)] for lead in info["player_leads"]]
    spread = max(float(np.ptp(tr)) for tr in traces) or 1.0  # one mV scale per record: amplitudes compare
    rows = len(traces)
    # the segments are equal in length, so one image cell per (lead, segment)
    ax.imshow(values[:, :, k], cmap="RdBu_r", vmin=-scale, vmax=scale, alpha=0.6, aspect="auto",
              interpolation="nearest", extent=(info["bounds_s"][0], info["bounds_s"][-1], -1.2 * rows + 0.6, 0.6))
    for row, trace in enumerate(traces):
        ax.plot(t, (trace - np.median(trace)) / spread * 1.2 - 1.2 * row, color="black", linewidth=0.5)
    ax.set_yticks([-i * 1.2 for i in range(rows)], info["player_leads"], fontsize=7)
    ax.set_xlabel(f"s (full scale {spread:.1f} mV)", fontsize=8)
    ax.set_title(f"{info['key']} ({info['label']})\nscore {info['output'][k]:.2f}, base {info['base'][k]:.2f}"
                 f" · SHAP of {outputs[k]}", fontsize=8)


def _lead_bars(ax: Any, importance: Mapping[str, Any]) -> None:
    """Horizontal bars: each lead's share of mean |SHAP|, one colour per output class."""
    outputs = list(importance)[:MAX_PANELS]
    leads = list(importance[outputs[0]]["share"])
    height = 0.8 / len(outputs)
    for j, name in enumerate(outputs):
        share = [importance[name]["share"][lead] for lead in leads]
        ax.barh(np.arange(len(leads)) + j * height - 0.4 + height / 2, share, height, label=name)
    ax.set_yticks(range(len(leads)), leads, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share of mean |SHAP|", fontsize=8)
    ax.legend(fontsize=6)
    ax.set_title("lead importance", fontsize=8)


def _time_profile(ax: Any, profile: Mapping[str, Any], info: Mapping[str, Any], rec: ExplainedRecord) -> None:
    """Each time segment's share of mean |SHAP| over the explained records (one step line per output class), drawn
    over the first explained record's trace: segment s is the same fraction of every record, so the profile is
    laid over this record's seconds."""
    bounds = np.asarray(info["bounds_s"])
    for name in list(profile)[:MAX_PANELS]:
        share = np.asarray(profile[name]["share"])
        ax.stairs(share, bounds, linewidth=1.2, label=name)
    ax.set_ylim(0, max(max(profile[name]["share"]) for name in profile) * 1.15 or 1.0)
    ax.set_ylabel("share of mean |SHAP|", fontsize=8)
    ax.set_xlabel(f"s of {info['key']} (trace: {info['player_leads'][0]})", fontsize=8)
    trace = rec.data[rec.leads.index(info["player_leads"][0])]
    behind = ax.twinx()
    behind.plot(np.arange(len(trace)) / rec.fs, trace, color="grey", linewidth=0.4, alpha=0.6)
    behind.set_yticks([])
    ax.set_zorder(behind.get_zorder() + 1)  # the profile over the trace
    ax.patch.set_visible(False)
    ax.legend(fontsize=6)
    ax.set_title("time profile (single-lead model)", fontsize=8)
