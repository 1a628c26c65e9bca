"""Robustness: known answers on synthetic LUDB records (an encoder that cannot see a perturbation has cosine 1
and drop 0), the record sample, the drop's direction, the cache key, and skips with reasons."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.analysis import robustness
from ecgfm_suite.analysis.inputs import AnalysisOptions, ModelTaskData
from ecgfm_suite.data.perturb import PERTURBATIONS
from ecgfm_suite.embeddings.cache import EmbeddingCache, perturbed_description
from ecgfm_suite.errors import AnalysisSkip, CacheError, DataError
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.spec import ModelSpec


@dataclasses.dataclass
class ScaleFree:
    """An encoder blind to gain: features of the record divided by its largest absolute sample (x0.5 and x2 are
    exact in binary floating point, so the embedding does not change by a bit). Refuses records above ``limit``
    mV, as a model whose preprocessing checks amplitudes would. Counts the records it prepares."""

    spec: ModelSpec
    limit: float = math.inf
    prepared: int = 0
    embed_dim: int = 24
    checkpoint_sha256: str | None = None

    @property
    def input_spec(self):
        return self.spec.input_spec

    def prepare(self, x, fs, leads):
        x = np.nan_to_num(np.asarray(x, dtype=np.float64))
        if np.abs(x).max() > self.limit:
            raise DataError(f"implausible amplitude {np.abs(x).max():.2f} mV", "scale_free")
        self.prepared += 1
        z = x / np.abs(x).max()
        return np.concatenate([z.std(axis=1), np.abs(np.diff(z, axis=1)).mean(axis=1)])[None].astype(np.float32)

    def encode(self, batch):
        return np.asarray(batch, dtype=np.float32)


def _spec(leads: tuple[str, ...] | None = None) -> ModelSpec:
    base = MODELS.get("random_cnn")  # 12 leads, 10-s windows: one window per synthetic LUDB record
    input_spec = base.input_spec if leads is None else dataclasses.replace(base.input_spec, leads=leads)
    return dataclasses.replace(base, id="scale_free", family="test", input_spec=input_spec)


@pytest.fixture(scope="module")
def lvh(synthetic_data_dir, tmp_path_factory):
    """LUDB LVH on the synthetic records and their signals."""
    from ecgfm_suite.data.reader import read_and_validate
    from ecgfm_suite.engine.runner import Runner
    from ecgfm_suite.engine.settings import resolve

    cache = tmp_path_factory.mktemp("index-cache")
    td = Runner(resolve({"data_dir": str(synthetic_data_dir), "cache_dir": str(cache)}, env={})).task_data("ludb_lvh")
    return td, [read_and_validate(td.records.iloc[i].to_dict()) for i in range(len(td.keys))]


def _data(lvh, encoder, cache_dir: Path) -> ModelTaskData:
    td, signals = lvh
    X = robustness.embed_signals(encoder, signals)
    return ModelTaskData(model="scale_free", task=td, X=X, have=np.ones(len(X), bool), encoder=encoder,
                         levels=("frac100",), seeds=(0, 1), n_boot=200, cache_dir=cache_dir)


def _by_name(payload):
    return {p["perturbation"]: p for p in payload["perturbations"]}


def test_an_encoder_blind_to_a_perturbation_has_cosine_1_and_drop_0(lvh, tmp_path):
    data = _data(lvh, ScaleFree(_spec()), tmp_path)
    options = AnalysisOptions(robustness=("amplitude_x0.5", "amplitude_x2", "noise_snr5"))
    payload = robustness.run(data, options).payload
    rows = _by_name(payload)
    n_test = len(data.rows("test"))
    for name in ("amplitude_x0.5", "amplitude_x2"):
        row = rows[name]
        assert row["cosine"] == pytest.approx(1.0, abs=1e-12) and row["n"] == n_test
        assert (row["drop"], row["drop_ci_low"], row["drop_ci_high"]) == (0.0, 0.0, 0.0)
        assert row["value"] == row["clean"] and row["reason"] is None
    assert rows["noise_snr5"]["cosine"] < 0.9999  # the same encoder sees noise: the cosine is not 1 by construction
    assert robustness.problems(payload) == []
    assert payload["sample"]["n"] == n_test and payload["level"] == "frac100" and payload["seeds"] == [0, 1]
    table = robustness.rows("scale_free-ludb_lvh", payload)
    assert [r["perturbation"] for r in table] == ["amplitude_x0.5", "amplitude_x2", "noise_snr5"]
    assert {"model", "task", "scarcity", "perturbation", "n", "metric", "clean", "value", "drop", "drop_ci_low",
            "drop_ci_high", "cosine", "reason"} <= set(table[0])


def test_perturbed_embeddings_are_cached_with_the_perturbation_and_its_seed_in_the_key(lvh, tmp_path):
    encoder = ScaleFree(_spec())
    data = _data(lvh, encoder, tmp_path)
    options = AnalysisOptions(robustness=("noise_snr10", "time_shift"))
    encoder.prepared = 0
    first = robustness.run(data, options).payload
    n = first["sample"]["n"]
    assert encoder.prepared == 2 * n
    second = robustness.run(data, options).payload
    assert encoder.prepared == 2 * n and second == first  # nothing re-encoded, the same numbers
    other_seed = robustness.run(data, dataclasses.replace(options, seed=1)).payload
    assert encoder.prepared == 4 * n and other_seed != first
    assert len(EmbeddingCache(tmp_path).manifest_paths()) == 4
    off = robustness.run(data, dataclasses.replace(options, seed=2, embedding_cache="off")).payload
    assert encoder.prepared == 6 * n and len(EmbeddingCache(tmp_path).manifest_paths()) == 4  # --ecgfm-cache off
    assert off["perturbations"][0]["cosine"] < 1


def test_the_perturbation_and_seed_change_the_cache_key():
    clean = {"model": "m", "records": "abc"}
    keys = {EmbeddingCache.key(clean),
            *(EmbeddingCache.key(perturbed_description(clean, PERTURBATIONS.get(name).to_dict(), seed))
              for name in ("noise_snr10", "noise_snr5") for seed in (0, 1))}
    assert len(keys) == 5
    with pytest.raises(CacheError, match="perturbed again"):
        perturbed_description(perturbed_description(clean, {"name": "x"}, 0), {"name": "y"}, 0)


def test_a_model_that_cannot_take_a_perturbed_record_gets_a_row_with_the_reason(lvh, tmp_path):
    _, signals = lvh
    loudest = max(float(np.abs(s.data).max()) for s in signals)
    data = _data(lvh, ScaleFree(_spec(), limit=1.5 * loudest), tmp_path)
    payload = robustness.run(data, AnalysisOptions(robustness=("amplitude_x2", "amplitude_x0.5"))).payload
    rows = _by_name(payload)
    assert rows["amplitude_x2"]["reason"].startswith("the model cannot take the perturbed records: DataError: ")
    assert "implausible amplitude" in rows["amplitude_x2"]["reason"] and rows["amplitude_x2"].get("drop") is None
    assert rows["amplitude_x0.5"]["reason"] is None and rows["amplitude_x0.5"]["drop"] == 0.0
    assert robustness.problems(payload) == []
    assert [r["reason"] is None for r in robustness.rows("k", payload)] == [False, True]


def test_lead_dropout_is_a_reasoned_row_for_a_single_lead_model(lvh, tmp_path):
    data = _data(lvh, ScaleFree(_spec(leads=("II",))), tmp_path)
    rows = _by_name(robustness.run(data, AnalysisOptions(robustness=("lead_dropout1", "amplitude_x2"))).payload)
    assert "single-lead model" in rows["lead_dropout1"]["reason"] and rows["lead_dropout1"]["n"] == 0
    assert rows["amplitude_x2"]["drop"] == 0.0


def test_no_perturbation_selected_is_a_skip(lvh, tmp_path):
    with pytest.raises(AnalysisSkip, match="--ecgfm-robustness none"):
        robustness.run(_data(lvh, ScaleFree(_spec()), tmp_path), AnalysisOptions(robustness=()))


def test_the_sample_is_fixed_stratified_and_keeps_a_rare_class():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    y[8] = 2  # a class with one record (among the even rows)
    rows = np.arange(0, 2000, 2)
    chosen = robustness.sample_records("multiclass", y, rows, 100, seed=0)
    assert len(chosen) == 100 and set(chosen) <= set(rows.tolist())
    np.testing.assert_array_equal(chosen, robustness.sample_records("multiclass", y, rows[::-1], 100, seed=0))
    counts = np.bincount(y[chosen], minlength=3)
    expected = np.bincount(y[rows], minlength=3) * 100 / len(rows)
    assert counts[2] == 1 and abs(counts[1] - expected[1]) <= 1
    assert not np.array_equal(chosen, robustness.sample_records("multiclass", y, rows, 100, seed=1))
    np.testing.assert_array_equal(robustness.sample_records("binary", y[:50] % 2, np.arange(50), 100, seed=0),
                                  np.arange(50))


def test_the_drop_is_positive_when_the_perturbed_scores_are_worse_in_either_direction():
    y = np.linspace(20, 80, 40)
    mae = robustness.drop_row("mae", "regression", y, y + 0.0, y + 3.0, n_boot=100, seed=0)
    assert mae["clean"] == 0.0 and mae["value"] == pytest.approx(3.0)
    assert mae["drop"] == pytest.approx(3.0) and mae["drop_ci_low"] == pytest.approx(3.0)
    labels = np.tile([0, 1], 30)
    perfect, noisy = labels.astype(float), np.where(np.arange(60) % 3 == 0, 1 - labels, labels).astype(float)
    auroc = robustness.drop_row("auroc", "binary", labels, perfect, noisy, n_boot=200, seed=0)
    assert auroc["clean"] == 1.0 and auroc["drop"] > 0
    assert auroc["drop_ci_low"] <= auroc["drop"] <= auroc["drop_ci_high"]


def test_row_cosine_known_values():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(robustness.row_cosine(a, b), [1.0, -1.0, 1.0, 0.0])


def test_the_figure_draws_the_rows_that_ran_and_nothing_when_none_did(lvh, tmp_path):
    from ecgfm_suite.report.figures import figures_for

    data = _data(lvh, ScaleFree(_spec(leads=("II",))), tmp_path)
    payload = robustness.run(data, AnalysisOptions(robustness=("noise_snr10", "lead_dropout3"))).payload
    png = figures_for("robustness", payload)["drops"]
    assert png.startswith(b"\x89PNG")
    nothing = {**payload, "perturbations": [p for p in payload["perturbations"] if p["reason"]]}
    assert figures_for("robustness", nothing) == {}
