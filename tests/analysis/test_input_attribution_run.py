"""Input attribution on a (model, task): known answers on synthetic LUDB records from encoders that see one lead
or one part of the record, the fixed resolution in the payload, identical payloads whatever the clock, the table
rows, the invariants and the figure."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.analysis import input_attribution as ia
from ecgfm_suite.analysis.inputs import AnalysisOptions, ModelTaskData
from ecgfm_suite.analysis.registry import ANALYSES, analyse
from ecgfm_suite.analysis.store import AnalysisStore, plain
from ecgfm_suite.data.preprocess import canonical_lead
from ecgfm_suite.embeddings.encode import embed_array
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.spec import ModelSpec

pytestmark = pytest.mark.slow  # shap's masked-model kernel compiles (~4 s) in the first process using the cache dir

OPTIONS = AnalysisOptions(input_segments_per_lead=2, input_time_segments=8, input_permutations=1)


@dataclasses.dataclass
class Sighted:
    """An encoder that sees one lead of the record and only its first ``part`` of the samples (their spread,
    mean slope and peak): every other lead and segment is a dummy player, worth exactly 0."""

    spec: ModelSpec
    lead: str
    part: float = 1.0
    embed_dim: int = 3
    checkpoint_sha256: str | None = None

    @property
    def input_spec(self):
        return self.spec.input_spec

    def prepare(self, x, fs, leads):
        row = np.asarray(x, dtype=np.float64)[[canonical_lead(name) for name in leads].index(self.lead)]
        seen = row[: int(round(self.part * len(row)))]
        return np.array([[seen.std(), np.abs(np.diff(seen)).mean(), seen.max()]], dtype=np.float32)

    def encode(self, batch):
        return np.asarray(batch, dtype=np.float32)


def _spec(model: str) -> ModelSpec:
    base = MODELS.get(model)  # random_cnn: 12 leads; openecg_codec_v6: lead II (I where II is absent); 10-s windows
    return dataclasses.replace(base, id=f"sighted_{model}", family="test")


@pytest.fixture(scope="module")
def lvh(synthetic_data_dir, tmp_path_factory):
    """LUDB LVH on the synthetic records and their signals."""
    from ecgfm_suite.data.reader import read_and_validate
    from ecgfm_suite.engine.runner import Runner
    from ecgfm_suite.engine.settings import resolve

    cache = tmp_path_factory.mktemp("index-cache")
    td = Runner(resolve({"data_dir": str(synthetic_data_dir), "cache_dir": str(cache)}, env={})).task_data("ludb_lvh")
    return td, [read_and_validate(td.records.iloc[i].to_dict()) for i in range(len(td.keys))]


def _data(lvh, encoder: Sighted, cache_dir: Path) -> ModelTaskData:
    td, signals = lvh
    first = signals[0]
    X = embed_array(encoder, np.stack([s.data for s in signals]), float(first.fs), first.leads)
    return ModelTaskData(model=encoder.spec.id, task=td, X=X, have=np.ones(len(X), bool), encoder=encoder,
                         levels=("frac100",), seeds=(0,), n_boot=50, cache_dir=cache_dir)


def test_a_multi_lead_model_that_reads_v2_gets_all_lead_share_on_v2(lvh, analysis_cache_dir):
    data = _data(lvh, Sighted(_spec("random_cnn"), "V2"), analysis_cache_dir)
    payload = ia.run(data, OPTIONS).payload
    assert payload["profile"] == "leads" and "time_profile" not in payload
    assert payload["resolution"] | {"evaluations": None, "requested": None} == {
        "n_segments": 2, "permutations": 1, "records_per_class": 1, "max_records": 2, "seed": 0,
        "evaluations": None, "requested": None}
    assert len(payload["records"]) == 2
    for rec in payload["records"]:
        assert np.shape(rec["values"]) == (12, 2, 1)
        # 24 players, one forward and one backward pass: 2·24 distinct coalitions of 49 asked (+1: f(record))
        assert (rec["evaluations"], rec["requested"]) == (48, 50)
    share = payload["lead_importance"]["lvh"]["share"]
    assert share["V2"] == pytest.approx(1.0) and sum(v for lead, v in share.items() if lead != "V2") == 0.0
    assert payload["lead_importance"]["lvh"]["top_lead"] == "V2"
    assert ia.problems(plain(payload)) == []
    rows = ia.rows("k", plain(payload))
    assert {r["lead_or_segment"] for r in rows} == set(payload["model_leads"])
    assert rows[0]["lead_or_segment"] == "V2" and rows[0]["share"] == pytest.approx(1.0)
    assert {(r["scarcity"], r["segments"], r["permutations"], r["records"]) for r in rows} == {("frac100", 2, 1, 2)}


def test_a_single_lead_model_gets_a_time_profile_where_it_looks(lvh, analysis_cache_dir):
    """openecg's lead II, first quarter of the record seen: of 8 segments only the first 2 carry attribution."""
    data = _data(lvh, Sighted(_spec("openecg_codec_v6"), "II", part=0.25), analysis_cache_dir)
    payload = ia.run(data, OPTIONS).payload
    assert payload["profile"] == "time" and "lead_importance" not in payload
    assert payload["resolution"]["n_segments"] == 8
    assert all(rec["player_leads"] == ["II"] and np.shape(rec["values"]) == (1, 8, 1) for rec in payload["records"])
    share = payload["time_profile"]["lvh"]["share"]
    assert sum(share[:2]) == pytest.approx(1.0) and share[2:] == [0.0] * 6
    assert payload["time_profile"]["lvh"]["top_segment"] in (0, 1)
    assert payload["segment_labels"][:2] == ["0.0–1.2 s", "1.2–2.5 s"]  # the synthetic records are 10 s long
    assert ia.problems(plain(payload)) == []
    rows = ia.rows("k", plain(payload))
    assert [r["lead_or_segment"] for r in rows] == payload["segment_labels"]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


def test_two_runs_store_the_same_payload_whatever_the_clock(lvh, analysis_cache_dir, tmp_path, monkeypatch):
    """Through the registry (which times the run): identical payloads but for the seconds, also when the clock
    jumps by minutes per call as on a machine under load."""
    encoder = Sighted(_spec("random_cnn"), "V1", part=0.5)
    first, _ = analyse("input_attribution", _data(lvh, encoder, analysis_cache_dir), AnalysisStore(tmp_path / "a"),
                       OPTIONS)
    clock = iter(range(0, 10**9, 300))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    second, _ = analyse("input_attribution", _data(lvh, encoder, analysis_cache_dir), AnalysisStore(tmp_path / "b"),
                        OPTIONS)
    assert second["seconds"] != first["seconds"]
    for payload in (first, second):
        payload.pop("seconds")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["payload_version"] == ANALYSES.get("input_attribution").payload_version == 2


def test_broken_payloads_are_named(lvh, analysis_cache_dir):
    payload = plain(ia.run(_data(lvh, Sighted(_spec("openecg_codec_v6"), "II"), analysis_cache_dir),
                           OPTIONS).payload)
    coarser = {**payload, "resolution": {**payload["resolution"], "n_segments": 4}}
    assert any("not (players, 4, outputs)" in p for p in ia.problems(coarser))
    as_if_12_leads = {**payload, "model_leads": list(MODELS.get("random_cnn").input_spec.leads)}
    assert any("time profile for a model that reads 12 leads" in p for p in ia.problems(as_if_12_leads))
    skewed = {**payload, "time_profile": {"lvh": {**payload["time_profile"]["lvh"], "share": [0.5] * 8}}}
    assert any("shares sum to 4.0" in p for p in ia.problems(skewed))


def test_the_figure_draws_lead_bars_or_the_time_profile_over_the_trace(lvh, analysis_cache_dir):
    from ecgfm_suite.report.figures import figures_for

    for model, lead in (("random_cnn", "V2"), ("openecg_codec_v6", "II")):
        out = ia.run(_data(lvh, Sighted(_spec(model), lead, part=0.5), analysis_cache_dir), OPTIONS)
        png = figures_for("input_attribution", plain(out.payload), out.figure_input)["traces"]
        assert png.startswith(b"\x89PNG")
        assert figures_for("input_attribution", plain(out.payload), []) == {}  # no trace to draw
