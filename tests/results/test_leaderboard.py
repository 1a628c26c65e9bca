"""The plain-text leaderboard marks the best cell and those not significantly worse (corrected p-values)."""

from __future__ import annotations

import numpy as np

from ecgfm_suite.results.cell import CellSpec
from ecgfm_suite.results.leaderboard import leaderboard_text
from ecgfm_suite.results.synthetic import synthetic_result


def test_marks_follow_the_corrected_verdicts_of_the_stored_comparison():
    rng = np.random.default_rng(0)
    results = [synthetic_result(CellSpec(model=m, task="ludb_lvh", scarcity="frac100"), (0,), rng)
               for m in ("a_fm", "b_fm", "random_cnn")]
    comparison = {"best": "a_fm", "correction": "bh", "verdict": {
        "a_fm": {"significantly_worse": False},
        # raw p 0.03 would be significant; the corrected one (0.09) is not: no worse mark
        "b_fm": {"significantly_worse": False, "p_value": 0.03, "p_corrected": 0.09},
        "random_cnn": {"significantly_worse": True, "p_value": 0.001, "p_corrected": 0.003}}}
    text = leaderboard_text(results, {"ludb_lvh-frac100": comparison})
    row = next(line for line in text.splitlines() if line.startswith("ludb_lvh"))
    cells = row.split("]")
    assert cells[1].startswith(" *") and cells[2].startswith(" =") and not cells[3].strip().startswith(("*", "="))
    assert text.splitlines()[-1].startswith("* best; = not significantly worse") and "bh" in text.splitlines()[-1]
    assert "*" not in leaderboard_text(results)  # without comparisons: no marks, no legend
