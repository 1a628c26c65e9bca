import json

import pytest

from ecgfm_suite._io import atomic_open, sha256_json, write_atomic
from ecgfm_suite.errors import SpecError
from ecgfm_suite.registry import Registry, resolve


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_sha256_json_is_order_independent():
    assert sha256_json({"a": 1, "b": [1, 2]}) == sha256_json({"b": [1, 2], "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


def test_registry_duplicates_and_suggestions():
    reg: Registry[int] = Registry("widget")
    reg.register("ludb_rhythm", 1)
    with pytest.raises(SpecError, match="duplicate"):
        reg.register("ludb_rhythm", 2)
    with pytest.raises(SpecError, match="did you mean ludb_rhythm"):
        reg.get("ludb_rythm")
    assert list(reg) == ["ludb_rhythm"]


def test_resolve_module_attr():
    assert resolve("json:dumps") is json.dumps
    with pytest.raises(SpecError):
        resolve("json.dumps")
