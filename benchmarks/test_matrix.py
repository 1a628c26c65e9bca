"""The benchmark: one test per cell (model × task × scarcity), parametrized by the ecgfm plugin.

Select with ``--ecgfm-models/--ecgfm-tasks/--ecgfm-scarcity/--ecgfm-seeds`` or ``-k <model>``.
A cell fails when its main metric is below its floor or regressed from its baseline entry.
"""

import pytest

from ecgfm_suite.errors import CellSkip
from ecgfm_suite.pytest_plugin import junit_properties


def test_cell(ecgfm_cell, ecgfm_model, ecgfm_session, record_property):
    try:
        result = ecgfm_session.run_cell(ecgfm_cell, ecgfm_model)
    except CellSkip as skip:
        pytest.skip(str(skip))
    for name, value in junit_properties(result):
        record_property(name, value)
    verdict = ecgfm_session.check(ecgfm_cell, result)
    for name, value in verdict.properties():
        record_property(name, value)
    if verdict.failures:
        pytest.fail("\n".join(verdict.failures), pytrace=False)
