"""The whole regression gate through pytest, on LUDB cells of the real openecg codec (the synthetic LUDB of
``synthetic_data_dir``, so the gate is tested without the real data).

A module fixture encodes LUDB once with the shipped codec_v6 weights (the accepted checkpoint: its results are
the baseline every run is gated against) and once with a copy whose weights got strong Gaussian noise (the
degraded checkpoint), so every pytester run after it reads embeddings from the shared cache. Which cells the
degradation really hurts is decided here independently, from the baseline YAML and the run's results.jsonl with
the documented rule, and must equal the set of failing tests.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ecgfm_suite.engine.runner import Runner, run_cell
from ecgfm_suite.engine.settings import resolve
from ecgfm_suite.gate.baselines import Baseline, digest_test_records
from ecgfm_suite.gate.session import Gate
from ecgfm_suite.metrics import METRICS

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]

CELL_TEST = (Path(__file__).resolve().parents[2] / "benchmarks" / "test_matrix.py").read_text()
MODEL = "openecg_codec_v6"
TASKS = ("ludb_age", "ludb_axis", "ludb_lvh", "ludb_rhythm", "ludb_sex")
CELLS = tuple(sorted(f"{MODEL}-{t}-frac100" for t in TASKS))
ABS_TOL, Z = 0.01, 1.96  # the documented defaults (no thresholds.yml in the pytester rootdir)


@dataclass(frozen=True)
class GateEnv:
    data_dir: Path
    cache: Path
    baselines: Path  # the accepted baseline, written by the library from the shipped checkpoint's results
    degraded: Path  # the degraded checkpoint file


def _degrade(source: Path, target: Path) -> None:
    """Noise of twice each weight tensor's spread on every tensor: on the synthetic LUDB it takes ludb_lvh from
    AUROC 1.00 to about 0.33 (beyond tolerance by about 0.3) and leaves sex, axis and age well within theirs.
    (Noise on the upper transformer alone, which regressed some real LUDB cells, stays within every tolerance
    here: the residual stream carries the lower layers' features through.)"""
    import torch

    from ecgfm_suite.models.checkpoints import load_torch

    ckpt = load_torch(source)
    gen = torch.Generator().manual_seed(0)
    for name, tensor in ckpt["model_state"].items():
        if tensor.is_floating_point() and tensor.numel() > 1:
            ckpt["model_state"][name] = tensor + 2 * tensor.std() * torch.randn(tensor.shape, generator=gen)
    torch.save(ckpt, target)


def _settings(env_dirs: dict[str, Path], checkpoint: Path | None = None):
    cli = {"data_dir": str(env_dirs["data"]), "cache_dir": str(env_dirs["cache"]),
           "weights_dir": str(env_dirs["weights"]), "models": MODEL, "tasks": ",".join(TASKS),
           "scarcity": "frac100", "seeds": "2", "n_boot": "100", "device": "cpu"}
    if checkpoint is not None:
        cli["checkpoints"] = f"{MODEL}={checkpoint}"
    return resolve(cli=cli, env={})


def _run(settings) -> tuple[list, dict[str, str]]:
    """The cells run by the library: results and the digest of each cell's test records."""
    runner = Runner(settings)
    encoder = runner.load_encoder(MODEL)
    outs = [run_cell(runner, cell, encoder) for cell in runner.plan()]
    return [o.result for o in outs], {o.result.cell_id: digest_test_records(o.test_keys) for o in outs}


@pytest.fixture(scope="module")
def env(synthetic_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> GateEnv:
    root = tmp_path_factory.mktemp("gate")
    dirs = {"data": synthetic_data_dir, "cache": root / "cache", "weights": root / "weights"}
    results, test_shas = _run(_settings(dirs))
    shipped = Runner(_settings(dirs)).models[MODEL].checkpoint
    degraded = root / "codec_v6_degraded.pt"
    _degrade(shipped, degraded)
    _run(_settings(dirs, degraded))  # warms the embedding cache for the degraded checkpoint
    baselines = root / "accepted"
    Gate(thresholds=root / "no-thresholds.yml", baselines_dir=baselines, update="all").finish(results, test_shas)
    return GateEnv(synthetic_data_dir, dirs["cache"], baselines, degraded)


@dataclass(frozen=True)
class Outcome:
    failed: bool
    message: str
    props: dict[str, str]


class Bench:
    def __init__(self, pytester: pytest.Pytester, env: GateEnv) -> None:
        self.pytester, self.env = pytester, env
        self.baselines = pytester.path / "benchmarks" / "baselines"  # the default, relative to the rootdir
        self.runs = 0
        pytester.makepyfile(test_cells=CELL_TEST)

    def accept(self) -> Path:
        shutil.copytree(self.env.baselines, self.baselines)
        return self.baselines / f"{MODEL}.yml"

    def run(self, *args: str, degraded: bool = False, tasks: tuple[str, ...] = TASKS):
        self.runs += 1
        self.run_dir = self.pytester.path / "reports" / f"run{self.runs}"
        self.xml = self.pytester.path / f"junit{self.runs}.xml"
        checkpoint = (f"--ecgfm-checkpoint={MODEL}={self.env.degraded}",) if degraded else ()
        return self.pytester.runpytest(
            "-p", "no:randomly",
            f"--ecgfm-data-dir={self.env.data_dir}", f"--ecgfm-cache-dir={self.env.cache}",
            f"--ecgfm-weights-dir={self.pytester.path / 'weights'}",
            f"--ecgfm-reports-dir={self.pytester.path / 'reports'}",
            f"--ecgfm-run-id=run{self.runs}", f"--ecgfm-models={MODEL}", f"--ecgfm-tasks={','.join(tasks)}",
            "--ecgfm-scarcity=frac100", "--ecgfm-seeds=2", "--ecgfm-n-boot=100", "--ecgfm-device=cpu",
            f"--junitxml={self.xml}", *checkpoint, *args)

    def outcomes(self) -> dict[str, Outcome]:
        out = {}
        for case in ET.parse(self.xml).getroot().iter("testcase"):
            cell = case.get("name").split("[", 1)[1].rstrip("]")
            failure = case.find("failure")
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            out[cell] = Outcome(failure is not None, "" if failure is None else failure.get("message", ""), props)
        return out

    def results(self) -> dict[str, dict]:
        lines = (self.run_dir / "results.jsonl").read_text().splitlines()
        return {d["cell_id"]: d for d in map(json.loads, lines)}


@pytest.fixture
def bench(pytester: pytest.Pytester, env: GateEnv) -> Bench:
    return Bench(pytester, env)


def degraded_beyond_tolerance(baseline_file: Path, results: dict[str, dict]) -> set[str]:
    """The documented rule, evaluated from the raw files: worse by more than max(abs_tol, z·√(se²+se²))."""
    entries = yaml.safe_load(baseline_file.read_text())["results"]
    worse = set()
    for cell_id, r in results.items():
        [base] = entries[cell_id]  # one entry per cell: all measured on the same data
        new = r["metrics"][r["main_metric"]]
        drop = base["value"] - new["value"] if METRICS.get(r["main_metric"]).higher_is_better \
            else new["value"] - base["value"]
        if drop > max(ABS_TOL, Z * (new["se"] ** 2 + base["se"] ** 2) ** 0.5):
            worse.add(cell_id)
    return worse


def test_identical_checkpoint_passes_and_touches_no_file(bench: Bench):
    path = bench.accept()
    before = path.read_bytes()
    assert all(e["test_records_sha256"] for items in yaml.safe_load(before)["results"].values() for e in items)
    result = bench.run()
    result.assert_outcomes(passed=len(CELLS))
    outcomes = bench.outcomes()
    assert sorted(outcomes) == list(CELLS)
    for cell, o in outcomes.items():
        assert o.props["ecgfm_gate"] == "pass" and float(o.props["ecgfm_gate_change"]) == pytest.approx(0, abs=1e-4)
        main = json.loads(o.props[f"ecgfm_{'mae' if 'age' in cell else 'auroc'}"])  # metrics as JUnit properties
        assert main["ci_low"] <= main["value"] <= main["ci_high"]
    assert path.read_bytes() == before
    assert sorted(p.name for p in bench.baselines.iterdir()) == [f"{MODEL}.yml"]  # no obtained file
    gate = json.loads((bench.run_dir / "gate.json").read_text())
    assert {c: v["status"] for c, v in gate["cells"].items()} == dict.fromkeys(CELLS, "pass")
    result.stdout.fnmatch_lines(["*ecgfm-suite gate*", f"{len(CELLS)} cell(s) within tolerance of their baseline",
                                 (f"gate: {len(CELLS)} cell(s) compared with their baseline (0 regressed, 0 improved, "
                                  f"{len(CELLS)} within tolerance); 0 without a baseline for their data; 0 without a "
                                  "baseline entry")])


def test_degraded_checkpoint_fails_exactly_the_cells_it_degrades_reproducibly(bench: Bench):
    path = bench.accept()
    before = path.read_bytes()
    bench.run(degraded=True)
    first = bench.outcomes()
    degraded = degraded_beyond_tolerance(path, bench.results())
    assert 0 < len(degraded) < len(CELLS), "the degradation must hurt some cells and leave others within tolerance"
    assert {c for c, o in first.items() if o.failed} == degraded
    for cell in degraded:
        message = first[cell].message
        assert message.startswith(f"Failed: regression: {cell}:")
        assert "checkpoint differs from the baseline's" in message
        assert first[cell].props["ecgfm_gate"] == "regressed"
    improved = {c for c, o in first.items() if o.props["ecgfm_gate"] == "improved"}
    gate = json.loads((bench.run_dir / "gate.json").read_text())
    assert {c for c, v in gate["cells"].items() if v["status"] == "improved"} == improved
    assert path.read_bytes() == before  # no update flag: the baseline is never written
    # the same checkpoint and seeds give the same decisions
    bench.run(degraded=True)
    assert {c: (o.failed, o.props["ecgfm_gate"]) for c, o in bench.outcomes().items()} == \
        {c: (o.failed, o.props["ecgfm_gate"]) for c, o in first.items()}
    # --lf reruns exactly the regressed cells, and they fail again
    bench.run("--lf", degraded=True)
    again = bench.outcomes()
    assert set(again) == degraded and all(o.failed for o in again.values())


def test_update_all_with_k_rewrites_only_the_selected_cells(bench: Bench):
    path = bench.accept()
    before = yaml.safe_load(path.read_text())["results"]
    picked = {f"{MODEL}-ludb_rhythm-frac100", f"{MODEL}-ludb_axis-frac100"}
    result = bench.run("--ecgfm-update-baselines", "-k", "ludb_rhythm or ludb_axis", degraded=True)
    result.assert_outcomes(passed=2)
    after = yaml.safe_load(path.read_text())
    new = bench.results()
    assert set(new) == picked
    for cell in CELLS:
        if cell in picked:
            main = new[cell]["metrics"][new[cell]["main_metric"]]
            [written] = after["results"][cell]  # the same data: the entry is replaced, not added
            assert written["value"] == round(main["value"], 4)
            assert written["se"] == round(main["se"], 4)
            assert written["recorded_with"]["checkpoint_sha256"] == new[cell]["checkpoint_sha256"]
        else:
            assert after["results"][cell] == before[cell]  # deselected by -k: untouched
    assert after["header"]["checkpoint_sha256"] != new[f"{MODEL}-ludb_rhythm-frac100"]["checkpoint_sha256"]
    # the accepted values are now the baseline: the same run passes without the flag
    bench.run("-k", "ludb_rhythm or ludb_axis", degraded=True).assert_outcomes(passed=2)


def test_update_new_only_adds_missing_entries_only(bench: Bench):
    path = bench.accept()
    missing = {f"{MODEL}-ludb_sex-frac100", f"{MODEL}-ludb_rhythm-frac100"}
    Baseline.load(path).without(missing).write(path)
    before = yaml.safe_load(path.read_text())["results"]
    bench.run("--ecgfm-update-baselines=new-only", degraded=True)
    outcomes = bench.outcomes()
    after = yaml.safe_load(path.read_text())["results"]
    new = bench.results()
    assert set(after) == set(CELLS)
    for cell in CELLS:
        if cell in missing:
            assert after[cell][0]["value"] == round(new[cell]["metrics"][new[cell]["main_metric"]]["value"], 4)
            assert outcomes[cell].props["ecgfm_gate"] == "new" and not outcomes[cell].failed
        else:
            assert after[cell] == before[cell]
    # existing entries are still gated in new-only mode
    stays = {c: r for c, r in new.items() if c not in missing}
    assert {c for c, o in outcomes.items() if o.failed} == degraded_beyond_tolerance(path, stays)


def test_cells_without_baseline_pass_record_and_write_obtained(bench: Bench):
    result = bench.run()
    result.assert_outcomes(passed=len(CELLS))
    assert not (bench.baselines / f"{MODEL}.yml").exists()
    obtained = Baseline.load(bench.baselines / f"{MODEL}.obtained.yml")
    accepted = Baseline.load(bench.env.baselines / f"{MODEL}.yml")
    assert obtained.entries == accepted.entries  # the same values the library accepted, same seeds
    result.stdout.fnmatch_lines([f"no baseline entry ({len(CELLS)}):*", f"wrote *{MODEL}.obtained.yml*"])


def _recorded_on_other_data(bench: Bench, **change) -> Path:
    """The accepted baseline as if measured on other data (``dataset_versions`` or ``test_sha256`` changed),
    written by the library (a hand edit breaks the file's digest)."""
    path = bench.baselines / f"{MODEL}.yml"
    accepted = Baseline.load(bench.env.baselines / f"{MODEL}.yml")
    Baseline(model=MODEL).with_entries(dataclasses.replace(e, **change) for e in accepted.all()).write(path)
    return path


def test_cells_on_other_data_than_the_baseline_pass_as_no_baseline_for_this_data(bench: Bench):
    """The committed baselines were measured on the shared data; a user running on the full release (other test
    records, same dataset versions) must not see every cell fail."""
    path = _recorded_on_other_data(bench, test_sha256=digest_test_records(["ptbxl/1", "ptbxl/2"]))
    before = path.read_bytes()
    result = bench.run()
    result.assert_outcomes(passed=len(CELLS))
    assert {c: o.props["ecgfm_gate"] for c, o in bench.outcomes().items()} == \
        dict.fromkeys(CELLS, "no_baseline_for_data")
    result.stdout.fnmatch_lines([
        f"no baseline for this data ({len(CELLS)}; passed, results in the obtained file; a strict gate fails them):",
        (f"  {MODEL}-ludb_age-frac100: ludb 1.0.1, test records * (*); the cell's test records differ from the "
         "baseline's*"),
        f"wrote *{MODEL}.obtained.yml (results without a baseline entry, for review)",
        (f"gate: 0 cell(s) compared with their baseline (0 regressed, 0 improved, 0 within tolerance); {len(CELLS)} "
         "without a baseline for their data; 0 without a baseline entry")])
    assert path.read_bytes() == before
    obtained = Baseline.load(bench.baselines / f"{MODEL}.obtained.yml")
    assert obtained.entries == Baseline.load(bench.env.baselines / f"{MODEL}.yml").entries
    gate = json.loads((bench.run_dir / "gate.json").read_text())
    assert gate["counts"]["no_baseline_for_data"] == len(CELLS) and gate["counts"]["compared"] == 0
    # accepting this data adds an entry beside the other data's: both apply, each to its own data
    bench.run("--ecgfm-update-baselines=new-only").assert_outcomes(passed=len(CELLS))
    both = Baseline.load(path)
    assert all(len(both.for_cell(c)) == 2 for c in CELLS)
    bench.run().assert_outcomes(passed=len(CELLS))
    assert {o.props["ecgfm_gate"] for o in bench.outcomes().values()} == {"pass"}


def test_explicit_baselines_dir_gates_strictly_and_names_both_versions(bench: Bench):
    _recorded_on_other_data(bench, dataset_versions={"ludb": "1.0.0"})
    result = bench.run(f"--ecgfm-baselines-dir={bench.baselines}", tasks=("ludb_sex",))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([("*not compared with the baseline: dataset ludb is version 1.0.1 here but 1.0.0 "
                                  "in the baseline*None of its 1 entries was measured on this data*")])


def test_corrupted_baseline_errors_the_models_cells_before_running_and_is_not_overwritten(bench: Bench):
    path = bench.accept()
    broken = path.read_text().replace("metric: auroc", "metric: [auroc", 1)
    path.write_text(broken)
    result = bench.run("--ecgfm-update-baselines", tasks=("ludb_sex", "ludb_lvh"))
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([(f"ecgfm-suite: {path}: not valid YAML: * at line *, column * (fix it, or delete "
                                  "the file and rerun with --ecgfm-update-baselines)")] * 2)
    assert path.read_text() == broken
    assert not (bench.run_dir / "results.jsonl").exists()  # no cell ran
    # each cell's outcome is an error with the gate's message (the report lists them)
    outcomes = [json.loads(line) for line in (bench.run_dir / "outcomes.jsonl").read_text().splitlines()]
    assert {o["cell_id"]: o["outcome"] for o in outcomes} == {f"{MODEL}-{t}-frac100": "error" for t in ("ludb_sex",
                                                                                                      "ludb_lvh")}
    assert all(o["reason"].startswith(f"ecgfm-suite: {path}: not valid YAML") for o in outcomes)


def test_under_xdist_the_controller_writes_each_baseline_once(bench: Bench):
    pytest.importorskip("xdist")
    tasks = ("ludb_lvh", "ludb_sex")  # --dist load spreads them over the two workers
    result = bench.run("-n", "2", "--ecgfm-update-baselines", tasks=tasks)
    result.assert_outcomes(passed=len(tasks))
    written = Baseline.load(bench.baselines / f"{MODEL}.yml")
    # identical to what the library accepted in one process, test-record digests included (they travel from
    # the workers to the controller as the cells' JUnit properties)
    accepted = Baseline.load(bench.env.baselines / f"{MODEL}.yml").entries
    assert written.entries == {c: accepted[c] for c in (f"{MODEL}-{t}-frac100" for t in tasks)}
    assert sorted(p.name for p in bench.baselines.iterdir()) == [f"{MODEL}.yml"]
