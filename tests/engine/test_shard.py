"""``--ecgfm-shard K/N``: disjoint, covering, deterministic, balanced; composes with ``-k``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecgfm_suite.analysis.registry import pair_analyses
from ecgfm_suite.engine.settings import resolve
from ecgfm_suite.engine.shard import assign_shards, cell_cost, parse_shard, recorded_encode_rates, shard_digest
from ecgfm_suite.errors import SpecError
from ecgfm_suite.results.cell import CellSpec

CELL_TEST = (Path(__file__).resolve().parents[2] / "benchmarks" / "test_matrix.py").read_text()

names = st.text("abcdefghij_", min_size=1, max_size=4)
cells_st = st.lists(st.builds(lambda m, t, s: CellSpec(model=m, task=t, scarcity=s), names, names,
                              st.sampled_from(["frac1", "frac10", "frac100", "shot10"])),
                    unique_by=lambda c: c.id, max_size=60)
costs_st = st.dictionaries(names, st.floats(0, 1e4, allow_nan=False), max_size=20)


def _cost(costs):
    return lambda c: costs.get(c.model, 1.0) * (1 + len(c.task))


@given(cells_st, st.integers(1, 9), costs_st)
def test_shards_are_disjoint_and_cover_the_plan(cells, n, costs):
    shards = assign_shards(cells, n, _cost(costs))
    assert len(shards) == n
    ids = [c.id for shard in shards for c in shard]
    assert len(ids) == len(set(ids))  # disjoint
    assert set(ids) == {c.id for c in cells}  # the union is the whole plan
    order = {c.id: i for i, c in enumerate(cells)}
    for shard in shards:  # each shard keeps the plan's (per-model) order
        assert [order[c.id] for c in shard] == sorted(order[c.id] for c in shard)
    owner = {(c.model, c.task): k for k, shard in enumerate(shards) for c in shard}
    assert all(owner[(c.model, c.task)] == k for k, shard in enumerate(shards) for c in shard)  # pairs stay whole


@given(cells_st, st.integers(1, 9), costs_st, st.randoms(use_true_random=False))
def test_split_does_not_depend_on_input_order(cells, n, costs, rnd):
    shuffled = list(cells)
    rnd.shuffle(shuffled)
    a = [{c.id for c in s} for s in assign_shards(cells, n, _cost(costs))]
    b = [{c.id for c in s} for s in assign_shards(shuffled, n, _cost(costs))]
    assert a == b


@given(cells_st, st.integers(1, 9), costs_st)
def test_costliest_shard_is_within_one_pair_of_the_mean(cells, n, costs):
    cost = _cost(costs)
    loads = [sum(cost(c) for c in shard) for shard in assign_shards(cells, n, cost)]
    total = sum(cost(c) for c in cells)
    pairs: dict[tuple[str, str], float] = {}
    for c in cells:
        pairs[(c.model, c.task)] = pairs.get((c.model, c.task), 0.0) + cost(c)
    biggest = max(pairs.values(), default=0.0)
    assert max(loads) <= total / n + biggest + 1e-6 * (1 + total)


def test_balance_beats_round_robin_on_skewed_costs():
    cells = [CellSpec(model=m, task=f"t{i}", scarcity="frac100") for m in ("big", "small") for i in range(10)]
    cost = _cost({"big": 100.0, "small": 1.0})
    loads = [sum(cost(c) for c in s) for s in assign_shards(cells, 2, cost)]
    assert max(loads) - min(loads) <= 100 * 3  # one big cell at most; round-robin by model would put all big on one
    assert all(any(c.model == "big" for c in s) for s in assign_shards(cells, 2, cost))


def test_bad_input_is_refused():
    cell = CellSpec(model="a", task="b", scarcity="frac1")
    with pytest.raises(SpecError, match="duplicated"):
        assign_shards([cell, cell], 2, lambda c: 1.0)
    with pytest.raises(SpecError, match="invalid expected cost"):
        assign_shards([cell], 2, lambda c: float("nan"))
    with pytest.raises(SpecError, match=">= 1"):
        assign_shards([cell], 0, lambda c: 1.0)


@pytest.mark.parametrize("value", ["3", "0/2", "3/2", "a/b", "1/0", "-1/2"])
def test_parse_shard_rejects(value):
    with pytest.raises(SpecError, match="K/N"):
        parse_shard(value)


def test_shard_option_from_env():
    assert resolve(env={"ECGFM_SHARD": "2/5"}).shard == (2, 5)
    with pytest.raises(SpecError) as err:
        resolve(env={"ECGFM_SHARD": "6/5"})
    assert err.value.path is not None and "ECGFM_SHARD" in str(err.value.path)


def test_costs_use_recorded_encode_rates(tmp_path):
    def entry(key: str, model: str, encode_s: float, records: int) -> None:
        d = tmp_path / "embeddings" / key[:2] / key
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps({"description": {"model": model},
                                                    "timings": {"encode_s": encode_s, "records": records}}))

    entry("aa1", "slow", 10.0, 100)
    entry("aa2", "slow", 30.0, 100)
    entry("bb1", "fast", 1.0, 100)
    (tmp_path / "embeddings" / "cc" / "cc1").mkdir(parents=True)
    (tmp_path / "embeddings" / "cc" / "cc1" / "manifest.json").write_text("{not json")  # ignored
    rates = recorded_encode_rates(tmp_path)
    assert rates == pytest.approx({"slow": 0.2, "fast": 0.01})
    cost = cell_cost({"t": 50}, rates)
    assert cost(CellSpec(model="slow", task="t", scarcity="frac1")) == pytest.approx(10.0)
    assert cost(CellSpec(model="other", task="t", scarcity="frac1")) == pytest.approx(50 * 0.105)  # median rate
    assert cell_cost({"t": 50}, {})(CellSpec(model="x", task="t", scarcity="frac1")) == 50  # record counts
    assert cell_cost({}, {})(CellSpec(model="x", task="absent", scarcity="frac1")) == 1


def test_digest_changes_with_the_split():
    cells = [CellSpec(model="m", task=f"t{i}", scarcity="frac1") for i in range(6)]
    assert shard_digest(assign_shards(cells, 2, lambda c: 1.0)) != shard_digest(assign_shards(cells, 3, lambda c: 1.0))


def _collected(result) -> list[str]:
    return sorted(line.split("[", 1)[1].rstrip("]") for line in result.stdout.lines if "::test_cell[" in line)


@pytest.mark.slow
def test_pytest_shards_partition_the_collection_and_k_applies_within(pytester, synthetic_data_dir, tmp_path,
                                                                    monkeypatch):
    pytester.makepyfile(test_cells=CELL_TEST)
    base = ["-p", "no:randomly", "--collect-only", "-q", f"--ecgfm-data-dir={synthetic_data_dir}",
            f"--ecgfm-cache-dir={tmp_path / 'cache'}", f"--ecgfm-weights-dir={tmp_path / 'w'}",
            "--ecgfm-models=random_cnn,openecg_codec_v6,ecg_fm", "--ecgfm-tasks=ludb_sex,ludb_lvh,ludb_axis",
            "--ecgfm-scarcity=frac10,frac100"]
    everything = _collected(pytester.runpytest(*base))
    assert len(everything) == 18
    shards = [_collected(pytester.runpytest(*base, "--ecgfm-shard=1/3"))]
    monkeypatch.setenv("ECGFM_SHARD", "2/3")  # the environment variable works like the flag
    shards.append(_collected(pytester.runpytest(*base)))
    monkeypatch.delenv("ECGFM_SHARD")
    shards.append(_collected(pytester.runpytest(*base, "--ecgfm-shard=3/3")))
    assert sorted(sum(shards, [])) == everything  # disjoint and covering
    assert [len(s) for s in shards] == [6, 6, 6]  # the ludb tasks cost the same: an exact balance
    picked = _collected(pytester.runpytest(*base, "--ecgfm-shard=2/3", "-k", "random_cnn or frac100"))
    assert picked == [c for c in shards[1] if "random_cnn" in c or "frac100" in c]  # -k selects within the shard
    assert picked and picked != shards[1]


ANALYSIS_TEST = (Path(__file__).resolve().parents[2] / "benchmarks" / "test_representation.py").read_text()


def _ids(result, test: str) -> list[str]:
    return sorted(line.split("[", 1)[1].rstrip("]") for line in result.stdout.lines if f"::{test}[" in line)


@pytest.mark.slow
def test_shards_and_k_collect_only_the_analyses_of_their_own_cells(pytester, synthetic_data_dir, tmp_path):
    """A shard analyses exactly the (model, task) pairs of its cells and leaves the analyses across models to
    merge; ``-k`` keeps a pair's analyses only where one of its cells is selected."""
    pytester.makepyfile(test_cells=CELL_TEST, test_representation=ANALYSIS_TEST)
    base = ["-p", "no:randomly", "--collect-only", "-q", f"--ecgfm-data-dir={synthetic_data_dir}",
            f"--ecgfm-cache-dir={tmp_path / 'cache'}", f"--ecgfm-weights-dir={tmp_path / 'w'}",
            "--ecgfm-models=random_cnn,handcrafted", "--ecgfm-tasks=ludb_sex,ludb_lvh",
            "--ecgfm-scarcity=frac10,frac100"]
    per_pair = len(pair_analyses("ludb_sex"))
    assert per_pair == len(pair_analyses("ludb_lvh")) >= 8
    whole = pytester.runpytest(*base)
    assert len(_ids(whole, "test_cell")) == 8 and len(_ids(whole, "test_model_task_analysis")) == 4 * per_pair
    assert _ids(whole, "test_task_analysis") == sorted([*(f"{t}-{x}" for t in ("ludb_sex", "ludb_lvh") for x in (
        "cka", "label_efficiency", "efficiency_front", "frac10-comparison", "frac100-comparison")),
        "all-tasks-ranks", "all-tasks-controls"])
    analysed = []
    for k in (1, 2):
        shard = pytester.runpytest(*base, f"--ecgfm-shard={k}/2")
        pairs = {cell.rsplit("-", 1)[0] for cell in _ids(shard, "test_cell")}
        analyses = _ids(shard, "test_model_task_analysis")
        assert len(pairs) == 2 and {a.rsplit("-", 1)[0] for a in analyses} == pairs  # its own pairs, all of them
        assert len(analyses) == 2 * per_pair and _ids(shard, "test_task_analysis") == []  # across models: at merge
        analysed += analyses
    assert sorted(analysed) == _ids(whole, "test_model_task_analysis")  # disjoint and covering
    picked = pytester.runpytest(*base, "-k", "test_model_task_analysis or random_cnn-ludb_lvh")
    assert _ids(picked, "test_cell") == ["random_cnn-ludb_lvh-frac10", "random_cnn-ludb_lvh-frac100"]
    assert {a.rsplit("-", 1)[0] for a in _ids(picked, "test_model_task_analysis")} == {"random_cnn-ludb_lvh"}
    only_analyses = pytester.runpytest(*base, "-m", "analysis")  # no cell selected: the plan's analyses
    assert _ids(only_analyses, "test_cell") == []
    assert len(_ids(only_analyses, "test_model_task_analysis")) == 4 * per_pair
