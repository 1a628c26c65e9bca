"""ModelSpec's own checks: an id is a whole safe name (it names cache folders, baselines and report rows)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ecgfm_suite.errors import SpecError
from ecgfm_suite.models.catalog import MODELS


@pytest.mark.parametrize("bad", ["random_cnn\n", "Random_cnn", "random cnn", "../x", ""])
def test_a_model_id_must_be_a_whole_safe_name_including_its_end(bad: str) -> None:
    spec = MODELS.get("random_cnn")
    with pytest.raises(SpecError, match="must match"):
        replace(spec, id=bad)
    assert replace(spec, id="random_cnn.v2").id == "random_cnn.v2"
