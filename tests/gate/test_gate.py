"""The regression gate's library parts: baseline files, decisions, tolerances, session updates, compare CLI.

Results here are CellResults built field by field (the gate only reads a cell's main metric and its
provenance); the whole gate on real cells and a degraded real checkpoint is in test_gate_pytester.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

# In-process pytester runs drop modules first imported inside them and C extensions cannot be re-imported:
# import what planning cells imports before any inner run (as tests/test_plugin.py does).
import ecgfm_suite.data.scarcity  # noqa: F401
import ecgfm_suite.data.tasks.build  # noqa: F401
import ecgfm_suite.engine.runner  # noqa: F401
from ecgfm_suite import __version__
from ecgfm_suite.cli import main as cli_main
from ecgfm_suite.errors import BaselineError, SpecError
from ecgfm_suite.gate.baselines import (
    Baseline,
    BaselineEntry,
    BaselineStore,
    content_sha256,
    digest_test_records,
    preprocessing_sha256,
)
from ecgfm_suite.gate.compare import compare_runs, load_entries
from ecgfm_suite.gate.floors import Floors
from ecgfm_suite.gate.regression import GateConfig, Status, Tolerance, compare, decide
from ecgfm_suite.gate.session import Gate
from ecgfm_suite.results import CellResult, MetricSummary, RunDir

pytest_plugins = ["pytester"]
CELL_TEST = (Path(__file__).resolve().parents[2] / "benchmarks" / "test_matrix.py").read_text()
SHA_A = "a" * 64
SHA_B = "b" * 64
SPEC = {"fs": 500, "leads": ("II",), "window": 5000, "pipeline": "openecg_rank"}


def summary(value: float, se: float = 0.05, half: float | None = None) -> MetricSummary:
    half = 1.96 * se if half is None else half
    return MetricSummary(value=value, ci_low=value - half, ci_high=value + half, se=se, seed_mean=value,
                         seed_std=0.0, per_seed=(value, value))


def result(cell_id: str, value: float, *, se: float = 0.05, checkpoint: str | None = SHA_A,
           versions: dict[str, str] | None = None, metric: str | None = None, preprocessing: dict | None = None,
           seeds: tuple[int, ...] = (0, 1), n_test: int = 40) -> CellResult:
    model, task, scarcity = cell_id.split("-")
    metric = metric or ("mae" if task.endswith("age") else "auroc")
    return CellResult(
        cell_id=cell_id, model=model, checkpoint_sha256=checkpoint, random_init=False, task=task,
        task_type="regression" if metric == "mae" else "binary",
        dataset_versions=versions if versions is not None else {"ludb": "1.0.1"},
        preprocessing=dict(SPEC if preprocessing is None else preprocessing), scarcity=scarcity, seeds=seeds,
        probe="linear", probe_params=(), n_train=100, n_val=40, n_test=n_test, classes=("a", "b"),
        main_metric=metric, metrics={metric: summary(value, se)},
    )


KEYS = [f"ludb/{i}" for i in range(1, 41)]


def entry(cell_id: str, value: float, test_keys: list[str] | None = KEYS, **kw) -> BaselineEntry:
    sha = None if test_keys is None else digest_test_records(test_keys)
    return BaselineEntry.from_result(result(cell_id, value, **kw), test_sha256=sha)


# ---------------------------------------------------------------------------------------- file format

def test_written_file_is_sorted_rounded_alias_free_and_round_trips(tmp_path):
    shared_versions = {"ludb": "1.0.1"}  # one dict object in every result: a naive dump would alias it
    results = [result("m-ludb_sex-frac100", 0.736629871, versions=shared_versions),
               result("m-ludb_lvh-frac10", 0.61234567, se=0.0812345, versions=shared_versions),
               result("m-ludb_age-frac100", 10.7414321, se=1.1, versions=shared_versions)]
    baseline = Baseline(model="m").with_entries(
        BaselineEntry.from_result(r, test_sha256=digest_test_records(KEYS)) for r in results)
    path = tmp_path / "m.yml"
    baseline.write(path)
    text = path.read_text()
    assert "&" not in text and "*" not in text
    raw = yaml.safe_load(text)
    assert list(raw) == ["header", "results"]
    assert list(raw["header"]) == sorted(raw["header"])
    assert list(raw["results"]) == sorted(r.cell_id for r in results)
    for items in raw["results"].values():
        assert len(items) == 1 and list(items[0]) == sorted(items[0])
    sex = raw["results"]["m-ludb_sex-frac100"][0]
    assert sex["value"] == 0.7366 and sex["seeds"] == [0, 1] and sex["datasets"] == ["ludb"]
    assert sex["test_records_sha256"] == hashlib.sha256(json.dumps(sorted(KEYS), separators=(",", ":")).encode()
                                                        ).hexdigest()
    assert raw["results"]["m-ludb_lvh-frac10"][0]["se"] == 0.0812
    assert raw["header"] == {"checkpoint_sha256": SHA_A, "dataset_versions": {"ludb": "1.0.1"}, "model": "m",
                             "preprocessing_sha256": preprocessing_sha256(SPEC), "schema_version": 2,
                             "suite_version": __version__, "entries": 3,
                             "content_sha256": content_sha256(raw["header"], raw["results"])}
    assert "seeds: [0, 1]" in text  # scalar lists inline, for one-line diffs
    again = Baseline.load(path)
    assert again.entries == baseline.entries
    assert again.to_yaml() == text


def test_partial_update_records_what_each_entry_was_measured_with(tmp_path):
    old = [entry(f"m-ludb_{t}-frac100", 0.7) for t in ("sex", "lvh", "axis")]
    new = entry("m-ludb_sex-frac100", 0.8, checkpoint=SHA_B)  # same data: replaces the entry
    baseline = Baseline(model="m").with_entries(old).with_entries([new])
    raw = yaml.safe_load(baseline.to_yaml())
    assert raw["header"]["checkpoint_sha256"] == SHA_A  # what most entries were measured with
    [sex] = raw["results"]["m-ludb_sex-frac100"]
    assert sex["value"] == 0.8 and sex["recorded_with"] == {"checkpoint_sha256": SHA_B}
    assert "recorded_with" not in raw["results"]["m-ludb_lvh-frac100"][0]
    parsed = Baseline.parse(baseline.to_yaml(), tmp_path / "m.yml", model="m")
    assert parsed.entries["m-ludb_sex-frac100"] == (new,)
    assert parsed.entries["m-ludb_lvh-frac100"][0].checkpoint_sha256 == SHA_A


def test_entries_for_other_data_coexist_and_each_applies_to_its_own_data(tmp_path):
    reference = entry("m-ludb_sex-frac100", 0.7)
    newer = entry("m-ludb_sex-frac100", 0.8, versions={"ludb": "1.0.2"})
    subset = entry("m-ludb_sex-frac100", 0.6, test_keys=KEYS[:-1], n_test=39)
    baseline = Baseline(model="m").with_entries([reference, newer, subset])
    assert len(baseline) == 3 and baseline.match(newer) == newer and baseline.match(subset) == subset
    raw = yaml.safe_load(baseline.to_yaml())
    assert raw["header"]["entries"] == 3 and len(raw["results"]["m-ludb_sex-frac100"]) == 3
    assert [e.get("recorded_with") for e in raw["results"]["m-ludb_sex-frac100"]] == [
        None, None, {"dataset_versions": {"ludb": "1.0.2"}}]
    parsed = Baseline.parse(baseline.to_yaml(), tmp_path / "m.yml", model="m")
    assert parsed.entries == baseline.entries
    # only_missing adds an entry for new data and leaves the entry for the same data alone
    again = parsed.with_entries([entry("m-ludb_sex-frac100", 0.1), entry("m-ludb_sex-frac100", 0.9,
                                                                         versions={"ludb": "2.0"})], only_missing=True)
    assert len(again) == 4 and again.match(reference).value == 0.7
    # an entry whose test records are unknown replaces, and matches, none of two entries it cannot tell apart
    unknown = entry("m-ludb_sex-frac100", 0.5, test_keys=None)
    assert baseline.match(unknown) is None
    merged = baseline.with_entries([unknown])
    assert len(merged) == 4 and merged.match(unknown) == unknown
    assert Baseline.parse(merged.to_yaml(), tmp_path / "m.yml", model="m").entries == merged.entries


GOOD = Baseline(model="m").with_entries([entry("m-ludb_sex-frac100", 0.7)]).to_yaml()
TWO = Baseline(model="m").with_entries([entry("m-ludb_sex-frac100", 0.7), entry("m-ludb_lvh-frac100", 0.7)]).to_yaml()


def _edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


@pytest.mark.parametrize("text, reason", [
    ("header: {model: m\nresults: [", "not valid YAML"),
    (GOOD[: GOOD.index("metric:")], "missing"),  # truncated mid-entry
    ("\x00\x01garbage: [[[", "not valid YAML"),
    ("- 1\n- 2\n", "exactly the keys 'header' and 'results'"),
    (_edit("  - ci_high:", "  - ci_high: &x 0.8\n    extra: *x\n    ci_hig:"), "aliases"),
    (_edit("results:\n", "results:\n  m-ludb_sex-frac100: {}\n"), "duplicate key 'm-ludb_sex-frac100'"),
    (_edit("value: 0.7", "value: '0.7'"), "value must be a finite number"),
    (_edit("value: 0.7", "value: .nan"), "value must be a finite number"),
    (_edit("value: 0.7", "value: 1.7"), "outside the range of auroc"),
    (_edit("se: 0.05", "se: -0.05"), "se must be >= 0"),
    (_edit("    se: 0.05\n", ""), "missing se"),
    (_edit("    se: 0.05\n", "    se: 0.05\n    sd: 0.1\n"), "unknown sd"),
    (_edit("metric: auroc", "metric: accuracy"), "unknown metric 'accuracy'"),
    (_edit("schema_version: 2", "schema_version: 3"), "newer than this suite's"),
    (_edit("schema_version: 2", "schema_version: 0"), "unsupported baseline schema 0"),
    (_edit("model: m", "model: other"), "named for model 'm'"),
    (_edit(f"checkpoint_sha256: {SHA_A}", "checkpoint_sha256: abc"), "64 lower-case hex digits"),
    (_edit("ludb: 1.0.1", "ludb: 1.0"), "quote them"),
    (_edit("datasets: [ludb]", "datasets: [ptbxl]"), "ptbxl have no version in the header"),
    (_edit("  m-ludb_sex-frac100:", "  other-ludb_sex-frac100:"), "belongs to model 'other'"),
    (_edit("  m-ludb_sex-frac100:", "  m-ludb_sex:"), "not a cell id"),
    (_edit("seeds: [0, 1]", "seeds: 3"), "seeds must be a non-empty list"),
    (_edit("n_test: 40", "n_test: 0"), "n_test must be a positive integer"),
    (_edit("test_records_sha256: ", "test_records_sha256: x"), "test_records_sha256 must be 64"),
    # ids and digests with a trailing newline ("$" of re.match matches before it)
    (_edit(f"sha256: {digest_test_records(KEYS)}", f'sha256: "{digest_test_records(KEYS)}\\n"'),
     "test_records_sha256 must be 64"),
    (_edit("model: m", 'model: "m\\n"'), "header.model must be a model id"),
    (_edit("  m-ludb_sex-frac100:", '  "m-ludb_sex-frac100\\n":'), "not a cell id"),
    # integrity: a file cut at an entry boundary, or edited without the writer
    (TWO[: TWO.index("  m-ludb_sex-frac100:")], "header.entries says 2 entries but the file holds 1"),
    (TWO[: TWO.index("results:")] + "results:\n", "header.entries says 2 entries but the file holds 0"),
    (_edit("value: 0.7", "value: 0.8"), "content_sha256 does not match the file's content"),
    (_edit("entries: 1", "entries: 0"), "header.entries says 0 entries but the file holds 1"),
    (_edit("  entries: 1\n", ""), "header: missing entries"),
    (_edit("  - ci_high:", "    ci_high:"), "must be a non-empty list of entries"),
    (GOOD + GOOD[GOOD.index("  - ci_high:"):], "a second entry for the same data"),
])
def test_corrupted_or_hand_edited_baseline_is_a_clear_error(tmp_path, text, reason):
    path = tmp_path / "m.yml"
    path.write_text(text)
    with pytest.raises(BaselineError) as err:
        Baseline.load(path)
    assert reason in str(err.value)
    assert err.value.path == str(path)
    assert "--ecgfm-update-baselines" in str(err.value)  # and how to get out of it


def test_schema_1_files_are_still_read(tmp_path):
    raw = yaml.safe_load(GOOD)
    for key in ("entries", "content_sha256"):
        del raw["header"][key]
    raw["header"]["schema_version"] = 1
    raw["results"] = {cell: items[0] for cell, items in raw["results"].items()}  # schema 1: one entry per cell
    path = tmp_path / "m.yml"
    path.write_text(yaml.safe_dump(raw))
    old = Baseline.load(path)
    assert old.entries == Baseline.parse(GOOD, path, model="m").entries
    old.write(path)  # written back as schema 2
    assert Baseline.load(path).entries == old.entries and "schema_version: 2" in path.read_text()
    raw["results"]["m-ludb_sex-frac100"] = [raw["results"]["m-ludb_sex-frac100"]]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BaselineError, match="must be a mapping"):
        Baseline.load(path)


def test_committed_baselines_read_with_their_integrity_checked():
    directory = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"
    for path in sorted(directory.glob("*.yml")):
        if path.name.endswith(".obtained.yml"):
            continue
        baseline = Baseline.load(path)
        raw = yaml.safe_load(path.read_text())
        assert raw["header"]["schema_version"] == 2 and raw["header"]["entries"] == len(baseline) > 0
        assert baseline.to_yaml() == path.read_text()  # exactly what the writer writes


def test_ci_bounds_swapped_is_an_error(tmp_path):
    text = GOOD.replace("ci_high:", "tmp_high:").replace("ci_low:", "ci_high:").replace("tmp_high:", "ci_low:")
    assert text != GOOD
    with pytest.raises(BaselineError, match="ci_low .* > ci_high"):
        Baseline.parse(text, tmp_path / "m.yml", model="m")


def test_unreadable_bytes_and_absent_file(tmp_path):
    path = tmp_path / "m.yml"
    assert Baseline.load(path) is None
    path.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(BaselineError, match="cannot read"):
        Baseline.load(path)
    store = BaselineStore(tmp_path)
    for _ in range(2):  # the error is cached per model, every cell of the model reports it
        with pytest.raises(BaselineError):
            store.load("m")


# ---------------------------------------------------------------------------------------- decisions

def test_drop_beyond_tolerance_regresses_and_gain_beyond_marks_stale():
    tol = Tolerance(abs_tol=0.01, z=1.96)
    base = entry("m-ludb_sex-frac100", 0.80, se=0.03)
    allowed = max(0.01, 1.96 * math.sqrt(0.03**2 + 0.03**2))  # 0.0832
    cases = {0.80 - allowed - 0.001: Status.REGRESSED, 0.80 - allowed + 0.001: Status.PASS,
             0.80 + allowed + 0.001: Status.IMPROVED, 0.80: Status.PASS}
    for value, status in cases.items():
        c = compare(entry("m-ludb_sex-frac100", value, se=0.03), base, tol)
        assert c.status is status, (value, c.message())
        assert c.allowed == pytest.approx(allowed)
    assert compare(entry("m-ludb_sex-frac100", 0.70, se=0.03), base, tol).failed
    assert not compare(entry("m-ludb_sex-frac100", 0.95, se=0.03), base, tol).failed


def test_lower_is_better_metric_regresses_upwards():
    tol = Tolerance(abs_tol=0.5, z=1.96)
    base = entry("m-ludb_age-frac100", 10.0, se=0.5)
    assert compare(entry("m-ludb_age-frac100", 12.0, se=0.5), base, tol).status is Status.REGRESSED
    assert compare(entry("m-ludb_age-frac100", 8.0, se=0.5), base, tol).status is Status.IMPROVED


def test_abs_tol_is_the_minimum_tolerance_when_ses_are_tiny():
    base = entry("m-ludb_sex-frac100", 0.80, se=0.0)
    tol = Tolerance(abs_tol=0.01, z=1.96)
    assert compare(entry("m-ludb_sex-frac100", 0.7905, se=0.0), base, tol).status is Status.PASS
    c = compare(entry("m-ludb_sex-frac100", 0.7895, se=0.0), base, tol)
    assert c.status is Status.REGRESSED and c.allowed == 0.01


@given(base=st.floats(0.3, 0.95), new=st.floats(0.3, 0.95), se_b=st.floats(0, 0.2), se_n=st.floats(0, 0.2),
       abs_tol=st.floats(0, 0.1), z=st.floats(0, 4))
def test_decision_matches_the_documented_formula(base, new, se_b, se_n, abs_tol, z):
    b = BaselineEntry(cell_id="m-t-frac10", metric="auroc", value=base, se=se_b, ci_low=0, ci_high=1, n_test=9,
                      seeds=(0,), checkpoint_sha256=None, preprocessing_sha256=SHA_A, suite_version="x",
                      dataset_versions={"d": "1"})
    n = BaselineEntry(**{**{f: getattr(b, f) for f in b.__slots__}, "value": new, "se": se_n})
    c = compare(n, b, Tolerance(abs_tol=abs_tol, z=z))
    tolerance = max(abs_tol, z * (se_b**2 + se_n**2) ** 0.5)
    expected = "regressed" if base - new > tolerance else "improved" if new - base > tolerance else "pass"
    if abs(abs(new - base) - tolerance) > 1e-12:  # not exactly on the boundary
        assert c.status == expected


def test_dataset_version_mismatch_is_incomparable_and_named():
    base = entry("m-ludb_sex-frac100", 0.8)
    c = compare(entry("m-ludb_sex-frac100", 0.8, versions={"ludb": "1.0.2"}), base, Tolerance())
    assert c.status is Status.INCOMPARABLE and c.failed
    assert "dataset ludb is version 1.0.2 here but 1.0.1 in the baseline" in c.message()
    c = compare(entry("m-ludb_sex-frac100", 0.8, versions={"ludb": "1.0.1", "ptbxl": "1.0.3"}), base, Tolerance())
    assert c.status is Status.INCOMPARABLE and "ludb+ptbxl here but from ludb" in c.message()
    c = compare(entry("m-ludb_sex-frac100", 0.8, metric="auprc"), base, Tolerance())
    assert c.status is Status.INCOMPARABLE and "main metric is auprc here but auroc" in c.message()


def test_different_test_records_are_incomparable_even_with_equal_dataset_versions():
    base = entry("m-ludb_sex-frac100", 0.8)
    subset = entry("m-ludb_sex-frac100", 0.8, test_keys=KEYS[:-1], n_test=39)
    c = compare(subset, base, Tolerance())
    assert c.status is Status.INCOMPARABLE and "test records differ from the baseline's (39 here, 40" in c.message()
    assert compare(entry("m-ludb_sex-frac100", 0.8, test_keys=list(reversed(KEYS))), base, Tolerance()).status \
        is Status.PASS  # the order of the keys does not matter
    assert compare(entry("m-ludb_sex-frac100", 0.8, test_keys=None), base, Tolerance()).status is Status.PASS


def test_failure_message_names_checkpoint_and_preprocessing_differences():
    base = entry("m-ludb_sex-frac100", 0.8)
    new = entry("m-ludb_sex-frac100", 0.5, checkpoint=SHA_B, preprocessing={**SPEC, "window": 2500},
                seeds=(0, 1, 2), n_test=38)
    message = compare(new, base, Tolerance()).message()
    assert message.startswith("regression: m-ludb_sex-frac100: auroc 0.5000")
    assert f"checkpoint differs from the baseline's (sha256 {SHA_B[:12]} here, {SHA_A[:12]} in the baseline)" in message
    assert "preprocessing spec differs" in message
    assert "seeds 0,1,2 here, 0,1 in the baseline" in message and "38 test records here, 40" in message
    assert compare(entry("m-ludb_sex-frac100", 0.8), base, Tolerance()).notes == ()


def test_no_entry_is_new_and_passes():
    c = compare(entry("m-ludb_sex-frac100", 0.8), None, Tolerance())
    assert c.status is Status.NEW and not c.failed
    assert decide(entry("m-ludb_sex-frac100", 0.8), (), Tolerance()).status is Status.NEW


def test_a_cell_is_compared_with_the_entry_for_its_own_data():
    reference = entry("m-ludb_sex-frac100", 0.8)
    release = entry("m-ludb_sex-frac100", 0.6, test_keys=[f"ludb/{i}" for i in range(1000)], n_test=1000)
    entries = (reference, release)
    assert decide(entry("m-ludb_sex-frac100", 0.6), entries, Tolerance()).status is Status.REGRESSED
    on_release = decide(release, entries, Tolerance())
    assert on_release.status is Status.PASS and on_release.base == release
    # other data: passes as "no baseline for this data", naming how it differs; strict: fails naming it
    real = entry("m-ludb_sex-frac100", 0.5, test_keys=KEYS[:30], n_test=30)
    c = decide(real, entries, Tolerance())
    assert c.status is Status.NO_BASELINE_FOR_DATA and not c.failed and c.n_entries == 2
    assert "no baseline for this data (ludb 1.0.1, test records " in c.message()
    assert "test records differ from the baseline's (30 here" in c.message()
    c = decide(real, entries, Tolerance(), strict=True)
    assert c.status is Status.INCOMPARABLE and c.failed
    assert "None of its 2 entries was measured on this data" in c.message() and "--ecgfm-baselines-dir" in c.message()
    newer = decide(entry("m-ludb_sex-frac100", 0.5, versions={"ludb": "1.0.2"}), entries, Tolerance(), strict=True)
    assert "dataset ludb is version 1.0.2 here but 1.0.1 in the baseline" in newer.message()
    # a different main metric is no question of data: never passes
    metric = decide(entry("m-ludb_sex-frac100", 0.8, metric="auprc"), entries, Tolerance())
    assert metric.status is Status.INCOMPARABLE and "main metric is auprc here but auroc" in metric.message()


# ---------------------------------------------------------------------------------------- tolerances

def test_gate_section_defaults_and_per_task_overrides(tmp_path):
    path = tmp_path / "thresholds.yml"
    assert GateConfig.load(path).for_task("ludb_sex") == Tolerance(abs_tol=0.01, z=1.96)
    path.write_text("schema_version: 1\ntasks: {ludb_sex: 0.5}\n"
                    "gate: {z: 2.5, tasks: {ludb_age: {abs_tol: 0.5}, ludb_lvh: {z: 1}}}\n")
    config = GateConfig.load(path)
    assert config.for_task("ludb_sex") == Tolerance(abs_tol=0.01, z=2.5)
    assert config.for_task("ludb_age") == Tolerance(abs_tol=0.5, z=2.5)
    assert config.for_task("ludb_lvh") == Tolerance(abs_tol=0.01, z=1.0)
    assert Floors.load(path).tasks == {"ludb_sex": 0.5}  # the floors reader accepts the gate section


@pytest.mark.parametrize("section, reason", [
    ("gate: [1]", "gate: must be a mapping"),
    ("gate: {abs_tol: 0.01, zz: 2}", "unknown keys ['zz']"),
    ("gate: {z: -1}", "gate.z must be a finite number >= 0"),
    ("gate: {abs_tol: .inf}", "gate.abs_tol must be a finite number >= 0"),
    ("gate: {tasks: {ludb_sx: {z: 1}}}", "did you mean ludb_sex"),
    ("gate: {tasks: {ludb_sex: 0.5}}", "gate.tasks.ludb_sex must be a mapping"),
    ("gate: {tasks: {ludb_sex: {floor: 0.5}}}", "gate.tasks.ludb_sex: unknown keys ['floor']"),
])
def test_bad_gate_section_names_the_file_and_key(tmp_path, section, reason):
    path = tmp_path / "thresholds.yml"
    path.write_text(f"schema_version: 1\n{section}\n")
    with pytest.raises(SpecError) as err:
        GateConfig.load(path)
    assert reason in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("text, reason", [
    ("tasks: {ludb_sx: 0.6}", "tasks.ludb_sx: unknown task 'ludb_sx'; did you mean ludb_sex"),
    ("tasks: {cinc2017_af: 2.0}", ("tasks.cinc2017_af: floor 2.0 is outside the range of cinc2017_af's main metric "
                                   "auroc [0, 1]")),
    ("tasks: {ludb_sex: -0.1}", "tasks.ludb_sex: floor -0.1 is outside the range"),
    ("tasks: {ludb_age: -1}", "tasks.ludb_age: floor -1 is outside the range of ludb_age's main metric mae [0, inf]"),
    ("tasks: {ludb_sex: .nan}", "tasks.ludb_sex must be a finite number"),
    ("tasks: {ludb_sex: '0.6'}", "tasks.ludb_sex must be a finite number, got '0.6'"),
    ("tasks: [ludb_sex]", "tasks must map task ids to floors"),
    ("models: {m: 0.6}", "models.m must map task ids to floors"),
    ("models: {m: {ludb_sx: 0.6}}", "models.m.ludb_sx: unknown task 'ludb_sx'"),
    ("models: {m: {ludb_sx: {frac10: 0.6}}}", "models.m.ludb_sx: unknown task 'ludb_sx'"),
    ("models: {m: {ludb_sex: {frac10: 1.5}}}", "models.m.ludb_sex.frac10: floor 1.5 is outside the range"),
    ("models: {m: {ludb_sex: {fraction10: 0.6}}}", "models.m.ludb_sex.fraction10:"),
    ("tasks: {ludb_sex: 0.6, ludb_sex: 0.7}", "not valid YAML: duplicate key 'ludb_sex'"),
    ("tasks: {ludb_sex: [0.6}", "not valid YAML:"),
    ("task: {ludb_sex: 0.6}", "unknown keys ['task']"),
])
def test_bad_floor_names_the_file_and_key_in_one_line(tmp_path, text, reason):
    path = tmp_path / "thresholds.yml"
    path.write_text(f"schema_version: 1\n{text}\n")
    with pytest.raises(SpecError) as err:
        Floors.load(path)
    assert reason in str(err.value) and str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    with pytest.raises(SpecError):
        Gate(thresholds=path, baselines_dir=tmp_path)


def test_valid_floors_per_task_model_and_level(tmp_path):
    path = tmp_path / "thresholds.yml"
    path.write_text("schema_version: 1\ntasks: {ludb_sex: 0.6, ludb_age: 20}\n"
                    "models: {m: {ludb_sex: {frac10: 0.55}, ludb_lvh: 0.5}}\n")
    floors = Floors.load(path)
    spec = r_cell(result("m-ludb_sex-frac10", 0.7))
    assert floors.floor_for(spec) == 0.55 and floors.floor_for(r_cell(result("m-ludb_lvh-frac100", 0.7))) == 0.5
    assert floors.floor_for(r_cell(result("x-ludb_age-frac100", 10))) == 20.0
    committed = Floors.load(Path(__file__).resolve().parents[2] / "benchmarks" / "thresholds.yml")
    assert committed.tasks  # the committed file passes its own checks


# ---------------------------------------------------------------------------------------- session updates

CELLS = ("m-ludb_sex-frac100", "m-ludb_lvh-frac100", "m-ludb_axis-frac100")


def _gate(tmp_path: Path, update: str | None, floors: str = "", strict: bool = False) -> Gate:
    thresholds = tmp_path / "thresholds.yml"
    thresholds.write_text(f"schema_version: 1\n{floors}")
    return Gate(thresholds=thresholds, baselines_dir=tmp_path / "baselines", update=update, strict=strict)


def test_without_baseline_cells_pass_and_an_obtained_file_is_written(tmp_path):
    gate = _gate(tmp_path, None)
    results = [result(c, 0.7) for c in CELLS]
    assert all(not gate.check(r_cell(r), r).failures for r in results)
    summary = gate.finish(results)
    assert not (tmp_path / "baselines" / "m.yml").exists()
    obtained = Baseline.load(tmp_path / "baselines" / "m.obtained.yml")
    assert sorted(obtained.entries) == sorted(CELLS)
    assert [c.status for c in summary.comparisons] == [Status.NEW] * 3


def r_cell(r: CellResult):
    from ecgfm_suite.results.cell import CellSpec

    return CellSpec.from_id(r.cell_id)


def test_update_all_rewrites_only_changed_cells_that_passed_their_floor(tmp_path):
    _gate(tmp_path, "all").finish([result(c, 0.7) for c in CELLS])
    path = tmp_path / "baselines" / "m.yml"
    before = Baseline.load(path)
    gate = _gate(tmp_path, "all", floors="tasks: {ludb_axis: 0.6}\n")
    new = [result("m-ludb_sex-frac100", 0.7), result("m-ludb_lvh-frac100", 0.5), result("m-ludb_axis-frac100", 0.5)]
    verdicts = {r.cell_id: gate.check(r_cell(r), r) for r in new}
    assert verdicts["m-ludb_lvh-frac100"].comparison.status is Status.REGRESSED
    assert not verdicts["m-ludb_lvh-frac100"].failures  # accepted in update mode...
    assert "below the floor" in verdicts["m-ludb_axis-frac100"].failures[0]  # ...but floors still fail
    summary = gate.finish(new)
    after = Baseline.load(path)
    assert summary.updated == ("m-ludb_lvh-frac100",)  # sex unchanged, axis failed its floor
    assert after.for_cell("m-ludb_lvh-frac100")[0].value == 0.5
    assert after.entries["m-ludb_axis-frac100"] == before.entries["m-ludb_axis-frac100"]
    assert "m-ludb_axis-frac100" in summary.refused


def test_update_new_only_adds_missing_entries_and_still_gates_the_others(tmp_path):
    _gate(tmp_path, "all").finish([result(CELLS[0], 0.7)])
    gate = _gate(tmp_path, "new-only")
    new = [result(CELLS[0], 0.4), result(CELLS[1], 0.6)]
    assert gate.check(r_cell(new[0]), new[0]).failures  # existing entry: still gated
    summary = gate.finish(new)
    after = Baseline.load(tmp_path / "baselines" / "m.yml")
    assert summary.updated == (CELLS[1],)
    assert after.for_cell(CELLS[0])[0].value == 0.7 and after.for_cell(CELLS[1])[0].value == 0.6


def test_update_prunes_the_obtained_file(tmp_path):
    _gate(tmp_path, None).finish([result(c, 0.7) for c in CELLS])
    obtained = tmp_path / "baselines" / "m.obtained.yml"
    assert obtained.exists()
    _gate(tmp_path, "new-only").finish([result(CELLS[0], 0.7)])
    assert sorted(Baseline.load(obtained).entries) == sorted(CELLS[1:])
    summary = _gate(tmp_path, "new-only").finish([result(c, 0.7) for c in CELLS[1:]])
    assert not obtained.exists() and summary.removed == (str(obtained),)


def test_cell_without_an_entry_for_its_data_passes_records_and_is_counted(tmp_path):
    reference = [result(c, 0.7) for c in CELLS]
    _gate(tmp_path, "all").finish(reference, dict.fromkeys(CELLS, digest_test_records(KEYS)))
    path = tmp_path / "baselines" / "m.yml"
    other_keys = [f"ptbxl/{i}" for i in range(40)]
    shas = {CELLS[0]: digest_test_records(KEYS), CELLS[1]: digest_test_records(other_keys),
            CELLS[2]: digest_test_records(KEYS)}
    runs = [result(CELLS[0], 0.7), result(CELLS[1], 0.2), result(CELLS[2], 0.3)]
    verdicts = {r.cell_id: _gate(tmp_path, None).check(r_cell(r), r, other_keys if r.cell_id == CELLS[1] else KEYS)
                for r in runs}
    assert verdicts[CELLS[1]].status == "no_baseline_for_data" and not verdicts[CELLS[1]].failures
    assert verdicts[CELLS[2]].status == "regressed" and verdicts[CELLS[2]].failures
    summary = _gate(tmp_path, None).finish(runs, shas)
    assert summary.counts() == {"compared": 2, "regressed": 1, "improved": 0, "within_tolerance": 1,
                                "no_baseline_for_data": 1, "no_baseline_entry": 0, "not_comparable": 0}
    lines = summary.lines()
    assert "no baseline for this data (1; passed, results in the obtained file; a strict gate fails them):" in lines
    assert lines[-1] == ("gate: 2 cell(s) compared with their baseline (1 regressed, 0 improved, 1 within tolerance); "
                         "1 without a baseline for their data; 0 without a baseline entry")
    assert summary.to_dict()["counts"]["no_baseline_for_data"] == 1
    obtained = Baseline.load(tmp_path / "baselines" / "m.obtained.yml")
    assert obtained.entries == {CELLS[1]: (entry(CELLS[1], 0.2, test_keys=other_keys),)}
    # strict: the same cell fails as not comparable
    strict = _gate(tmp_path, None, strict=True)
    verdict = strict.check(r_cell(runs[1]), runs[1], other_keys)
    assert verdict.status == "incomparable" and "None of its 1 entries was measured on this data" in verdict.failures[0]
    assert strict.finish(runs, shas).counts()["not_comparable"] == 1
    # new-only records an entry for this data beside the reference one; then the cell is compared
    _gate(tmp_path, "new-only").finish(runs, shas)
    after = Baseline.load(path)
    assert len(after.for_cell(CELLS[1])) == 2 and after.for_cell(CELLS[2])[0].value == 0.7
    assert not (tmp_path / "baselines" / "m.obtained.yml").exists()
    assert _gate(tmp_path, None, strict=True).check(r_cell(runs[1]), runs[1], other_keys).status == "pass"


def test_broken_baseline_fails_its_cells_and_is_never_overwritten(tmp_path):
    path = tmp_path / "baselines" / "m.yml"
    path.parent.mkdir()
    path.write_text("header: [\n")
    gate = _gate(tmp_path, "all")
    r = result(CELLS[0], 0.7)
    verdict = gate.check(r_cell(r), r)
    assert verdict.status == "error" and str(path) in verdict.failures[0]
    summary = gate.finish([r])
    assert path.read_text() == "header: [\n"
    assert "m" in summary.errors and summary.written == ()


def test_test_records_are_recorded_and_a_different_test_set_fails(tmp_path):
    r = result(CELLS[0], 0.7)
    props = dict(_gate(tmp_path, "all").check(r_cell(r), r, KEYS).properties())
    assert props["ecgfm_test_records_sha256"] == digest_test_records(KEYS)  # what finish() receives back
    _gate(tmp_path, "all").finish([r], {CELLS[0]: props["ecgfm_test_records_sha256"]})
    assert Baseline.load(tmp_path / "baselines" / "m.yml").entries[CELLS[0]] == (entry(CELLS[0], 0.7),)
    verdict = _gate(tmp_path, None, strict=True).check(r_cell(r), r, KEYS[1:])
    assert verdict.status == "incomparable" and "test records differ" in verdict.failures[0]
    assert not _gate(tmp_path, None, strict=True).check(r_cell(r), r, KEYS).failures


def test_verdict_properties_for_junit():
    gate_base = entry(CELLS[0], 0.8)
    c = compare(entry(CELLS[0], 0.5, checkpoint=SHA_B), gate_base, Tolerance())
    from ecgfm_suite.gate.session import CellVerdict

    props = dict(CellVerdict(cell_id=CELLS[0], comparison=c).properties())
    assert props["ecgfm_gate"] == "regressed"
    assert json.loads(props["ecgfm_gate_baseline"])["value"] == 0.8
    assert float(props["ecgfm_gate_change"]) == pytest.approx(-0.3)
    assert "checkpoint differs" in props["ecgfm_gate_notes"]


# ---------------------------------------------------------------------------------------- compare CLI

def _run(tmp_path: Path, name: str, results: list[CellResult]) -> Path:
    run = RunDir.create(tmp_path / "reports", name)
    for r in results:
        run.append(r)
    return run.path


def test_compare_cli_exit_codes_and_table(tmp_path, capsys):
    a = _run(tmp_path, "a", [result(c, 0.8) for c in CELLS])
    same = _run(tmp_path, "same", [result(c, 0.8) for c in CELLS])
    worse = _run(tmp_path, "worse", [result(CELLS[0], 0.5, checkpoint=SHA_B), *[result(c, 0.8) for c in CELLS[1:]],
                                     result("m-ludb_rhythm-frac100", 0.9)])
    assert cli_main(["compare", str(a), str(same)]) == 0
    assert "3 cells compared: 3 within tolerance" in capsys.readouterr().out
    assert cli_main(["compare", str(a), str(worse / "results.jsonl")]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(CELLS[0]))
    assert "0.8000 [0.7020, 0.8980]" in row and "0.5000 [0.4020, 0.5980]" in row and row.endswith("regressed")
    assert "-0.3000" in row and "checkpoint differs" in out and "only in B: 1 (m-ludb_rhythm-frac100)" in out
    assert cli_main(["compare", str(worse), str(a), "--json"]) == 0  # a gain is not a failure
    data = json.loads(capsys.readouterr().out)
    assert data["cells"][CELLS[0]]["status"] == "improved" and data["only_a"] == ["m-ludb_rhythm-frac100"]


def test_compare_cli_accepts_a_baseline_file_and_reports_bad_inputs(tmp_path, capsys):
    gate = _gate(tmp_path, "all")
    gate.finish([result(c, 0.8) for c in CELLS])
    baseline = tmp_path / "baselines" / "m.yml"
    newer_data = _run(tmp_path, "b", [result(c, 0.8, versions={"ludb": "2.0"}) for c in CELLS])
    assert cli_main(["compare", str(baseline), str(newer_data)]) == 1
    assert "dataset ludb is version 2.0 here but 1.0.1 in the baseline" in capsys.readouterr().out
    assert cli_main(["compare", str(tmp_path / "nowhere"), str(newer_data)]) == 2
    assert "no such run directory" in capsys.readouterr().err
    other = _run(tmp_path, "other", [result("x-ludb_sex-frac100", 0.8)])
    assert cli_main(["compare", str(other), str(newer_data)]) == 2
    assert "no cell in common" in capsys.readouterr().err
    (tmp_path / "reports" / "bad").mkdir()
    (tmp_path / "reports" / "bad" / "results.jsonl").write_text("{not json\n")
    assert cli_main(["compare", str(tmp_path / "reports" / "bad"), str(newer_data)]) == 2
    assert "unreadable results" in capsys.readouterr().err


def test_compare_reads_test_record_digests_from_gate_json(tmp_path, capsys):
    runs = {}
    for name, keys in (("a", KEYS), ("b", KEYS[:-1])):
        path = _run(tmp_path, name, [result(CELLS[0], 0.8)])
        r = result(CELLS[0], 0.8)
        Gate(thresholds=tmp_path / "none.yml", baselines_dir=tmp_path / name).finish(
            [r], {CELLS[0]: digest_test_records(keys)}).write(path / "gate.json")
        runs[name] = path
    assert load_entries(runs["a"])[CELLS[0]][0].test_sha256 == digest_test_records(KEYS)
    assert cli_main(["compare", str(runs["a"]), str(runs["b"])]) == 1
    assert "test records differ" in capsys.readouterr().out
    (runs["b"] / "gate.json").write_text("{}")
    assert cli_main(["compare", str(runs["a"]), str(runs["b"])]) == 2
    assert "unreadable gate summary" in capsys.readouterr().err


def test_load_entries_keeps_full_precision(tmp_path):
    run = _run(tmp_path, "a", [result(CELLS[0], 0.123456789)])
    assert load_entries(run)[CELLS[0]][0].value == 0.123456789
    assert compare_runs(load_entries(run), load_entries(run), GateConfig()).comparisons[0].change == 0.0


# ---------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("args, env, expected", [
    ((), {}, "None"),
    (("--ecgfm-update-baselines",), {}, "all"),
    (("--ecgfm-update-baselines=new-only",), {}, "new-only"),
    (("--ecgfm-update-baselines", "new-only"), {}, "new-only"),
    ((), {"ECGFM_UPDATE_BASELINES": "new-only"}, "new-only"),
])
def test_update_baselines_option(pytester: pytest.Pytester, monkeypatch, args, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makeconftest("""
def pytest_collection_finish(session):
    from ecgfm_suite.pytest_plugin import KEY
    bench = session.config.stash[KEY]
    print("UPDATE", bench.settings.update_baselines, "DIR", bench.gate.store.directory)
""")
    result = pytester.runpytest("--collect-only", "-q", *args)
    result.stdout.fnmatch_lines([f"UPDATE {expected} DIR {pytester.path / 'benchmarks' / 'baselines'}"])


def test_update_baselines_bad_value_is_a_usage_error_with_a_hint(pytester: pytest.Pytester):
    result = pytester.runpytest("--collect-only", "--ecgfm-update-baselines", "benchmarks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ecgfm-update-baselines*expected all or new-only, got 'benchmarks'*"
                                 "write --ecgfm-update-baselines=all*"])


@pytest.mark.parametrize("broken", ["floor", "task", "truncated"])
@pytest.mark.real_data
def test_bad_thresholds_or_truncated_baseline_error_the_cells_at_setup(pytester: pytest.Pytester, data_dir: Path,
                                                                      broken: str):
    pytester.makepyfile(test_cells=CELL_TEST)
    benchmarks = pytester.path / "benchmarks"
    (benchmarks / "baselines").mkdir(parents=True)
    thresholds, baseline = benchmarks / "thresholds.yml", benchmarks / "baselines" / "random_cnn.yml"
    if broken == "truncated":  # cut at an entry boundary: still valid YAML, one entry fewer
        text = Baseline(model="random_cnn").with_entries(
            [entry(f"random_cnn-ludb_{t}-frac100", 0.7) for t in ("lvh", "sex")]).to_yaml()
        baseline.write_text(text[: text.index("  random_cnn-ludb_sex-frac100:")])
        message = (f"ecgfm-suite: {baseline}: header.entries says 2 entries but the file holds 1 (truncated or cut in "
                   "a merge?)*")
    else:
        thresholds.write_text("schema_version: 1\ntasks: {ludb_sex: 2.0}\n" if broken == "floor"
                              else "schema_version: 1\ntasks: {ludb_sx: 0.6}\n")
        message = (f"ecgfm-suite: {thresholds}: tasks.ludb_sex: floor 2.0 is outside the range of ludb_sex's main "
                   "metric auroc [[]0, 1]" if broken == "floor"
                   else f"ecgfm-suite: {thresholds}: tasks.ludb_sx: unknown task 'ludb_sx'; did you mean ludb_sex?*")
    result = pytester.runpytest("--ecgfm-models=random_cnn", "--ecgfm-tasks=ludb_sex", "--ecgfm-scarcity=frac100",
                                f"--ecgfm-data-dir={data_dir}", f"--ecgfm-weights-dir={pytester.path / 'weights'}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])


@pytest.mark.real_data
def test_broken_baseline_errors_only_its_models_cells_at_setup(pytester: pytest.Pytester, data_dir: Path):
    pytester.makepyfile(test_cells=CELL_TEST)
    baselines = pytester.path / "benchmarks" / "baselines"
    baselines.mkdir(parents=True)
    (baselines / "random_cnn.yml").write_text(GOOD.replace("model: m", "model: random_cnn"))
    result = pytester.runpytest("--ecgfm-models=random_cnn,ecg_fm", "--ecgfm-tasks=ludb_sex",
                                "--ecgfm-scarcity=frac100", f"--ecgfm-data-dir={data_dir}", "-rs",
                                f"--ecgfm-weights-dir={pytester.path / 'weights'}")
    result.assert_outcomes(errors=1, skipped=1)  # ecg_fm has no weights here: skipped as usual
    result.stdout.fnmatch_lines([f"ecgfm-suite: {baselines / 'random_cnn.yml'}: results.m-ludb_sex-frac100[[]0]: "
                                 "the cell belongs to model 'm'*"])
