"""The runner's cell: seeds fitted in worker processes outside pytest-xdist give the results of a sequential run."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from ecgfm_suite.engine import pool as _pool
from ecgfm_suite.engine.runner import Runner, SeedJob, map_seeds, run_cell
from ecgfm_suite.engine.settings import resolve
from ecgfm_suite.errors import DataError
from ecgfm_suite.results.cell import CellSpec


def _job(task_type: str = "binary", n: int = 90, **overrides) -> SeedJob:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    third = n // 3
    fields = {"task_type": task_type, "scarcity": "frac50", "probes": ("linear",), "n_classes": None, "n_boot": 20,
              "train_rows": np.arange(third) + 100, "X_train": X[:third], "y_train": y[:third], "groups": None,
              "X_val": X[third:2 * third], "y_val": y[third:2 * third], "X_test": X[2 * third:],
              "y_test": y[2 * third:]}
    return SeedJob(**{**fields, **overrides})


def test_map_seeds_in_worker_processes_keeps_seed_order_and_sequential_numbers():
    job = _job()
    sequential = map_seeds(job, [3, 1, 2], workers=1)
    pooled = map_seeds(job, [3, 1, 2], workers=3)  # the first seed here, the others in 2 worker processes
    workers = _pool._POOL[1]._processes
    assert len(workers) == 2 and os.getpid() not in workers
    assert [fits[0].run.seed for fits in pooled] == [3, 1, 2]
    for seq, par in zip(sequential, pooled):
        assert seq[0].metrics == par[0].metrics
        assert np.array_equal(seq[0].scores, par[0].scores)
        assert np.array_equal(seq[0].run.train_rows, par[0].run.train_rows)
        assert seq[0].run.probe.params == par[0].run.probe.params
        assert seq[0].run.train_rows.min() >= 100  # task rows, not positions in the training split
        assert np.array_equal(par[0].run.probe.predict_scores(job.X_test), par[0].scores)


def test_an_error_in_a_worker_keeps_its_type_reason_and_path():
    bad = _job(y_val=np.zeros(30, dtype=np.int64) + 7, n_classes=None)  # a label a binary task cannot have
    with pytest.raises(DataError) as seq:
        map_seeds(bad, [0, 1], workers=1)
    with pytest.raises(DataError) as par:
        map_seeds(bad, [0, 1], workers=2)
    assert (par.value.reason, par.value.path) == (seq.value.reason, seq.value.path)


def test_a_fitted_probe_survives_pickling():
    fit = map_seeds(_job(task_type="binary"), [0], workers=1)[0][0]
    again = pickle.loads(pickle.dumps(fit.run.probe))
    assert again.params == fit.run.probe.params and type(again.params) is type(fit.run.probe.params)
    assert np.array_equal(again.predict_scores(_job().X_test), fit.scores)


@pytest.mark.real_data
def test_pooled_seeds_give_the_sequential_results(data_dir, tmp_path):
    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache"), "models": "random_cnn",
                        "tasks": "ludb_conduction", "seeds": "3", "n_boot": "50", "probes": "linear,knn"}, env={})
    cell = CellSpec(model="random_cnn", task="ludb_conduction", scarcity="frac100")
    outputs = []
    for worker in (None, "gw0"):  # no worker id: seeds in worker processes; an xdist worker: one after another
        runner = Runner(settings, worker_id=worker)
        outputs.append(run_cell(runner, cell, runner.load_encoder("random_cnn")))
    pooled, sequential = outputs
    assert pooled.result.metrics == sequential.result.metrics
    assert pooled.result.other_probes == sequential.result.other_probes
    assert pooled.result.per_class == sequential.result.per_class and len(pooled.result.per_class) == 4
    assert pooled.result.probe_params == sequential.result.probe_params
    assert np.array_equal(pooled.test_scores, sequential.test_scores)
    assert [p["seed"] for p in pooled.result.probe_params] == [0, 1, 2]


def test_workers_option_sets_the_processes_and_xdist_workers_keep_one(monkeypatch):
    from ecgfm_suite.data import prepared
    from ecgfm_suite.errors import SpecError

    monkeypatch.setattr(prepared, "available_cores", lambda: 4)
    assert Runner(resolve({}, env={})).pool_workers() == 5  # auto: the cores + 1
    assert Runner(resolve({}, env={"ECGFM_WORKERS": "auto"})).pool_workers() == 5
    assert Runner(resolve({"workers": "1"}, env={})).pool_workers() == 1
    assert Runner(resolve({}, env={"ECGFM_WORKERS": "3"})).pool_workers() == 3
    assert Runner(resolve({"workers": "3"}, env={}), worker_id="gw1").pool_workers() == 1
    with pytest.raises(SpecError, match="positive integer"):
        resolve({"workers": "0"}, env={})
    monkeypatch.setattr(prepared, "available_cores", lambda: 1)
    assert Runner(resolve({}, env={})).pool_workers() == 1  # one core: no pool


def test_without_semaphores_everything_runs_in_this_process_with_one_warning(monkeypatch, caplog):
    """Sandboxes without a writable /dev/shm cannot start a pool: a warning, then in-process, never a crash."""
    import multiprocessing

    from ecgfm_suite.engine import pool as _pool

    class NoSemaphores:
        def Lock(self):
            raise OSError(38, "Function not implemented")

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: NoSemaphores())
    _pool.pool_unavailable.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="ecgfm_suite.engine.pool"):
            assert Runner(resolve({"workers": "3"}, env={})).pool_workers() == 1
            assert Runner(resolve({}, env={})).pool_workers() == 1
        assert [r.getMessage() for r in caplog.records] == [
            ("cannot start worker processes (OSError: [Errno 38] Function not implemented); fitting and analysing "
             "in this process, as with --ecgfm-workers 1")]
    finally:
        _pool.pool_unavailable.cache_clear()
    monkeypatch.undo()
    assert _pool.pool_unavailable() is None  # this machine has them


@pytest.mark.real_data
def test_run_matrix_runs_the_plan_without_pytest_and_passes_over_skipped_cells(data_dir, tmp_path):
    from ecgfm_suite.engine.runner import run_matrix

    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache"), "models": "random_cnn",
                        "tasks": "ludb_sex,brugada_huca_brugada", "scarcity": "frac50,frac100", "seeds": "1",
                        "n_boot": "20", "workers": "1"}, env={})
    seen = []
    ran = run_matrix(Runner(settings), lambda out: seen.append(out.result.cell_id))
    # the Brugada labels need a metadata.csv the shared data lacks: its cells skip and are not counted
    assert ran == 2 and seen == ["random_cnn-ludb_sex-frac50", "random_cnn-ludb_sex-frac100"]


@pytest.mark.parametrize("name, reason", [("typo.pt", "does not exist"), (".", "is a directory"),
                                          ("empty.pt", "is an empty file")])
def test_a_named_checkpoint_that_cannot_load_is_an_error_not_a_skip_or_random_weights(tmp_path, name, reason):
    """Even with --ecgfm-allow-random-init: a path the user typed means that file, and a typo must not pass."""
    from ecgfm_suite.engine.runner import model_plans
    from ecgfm_suite.errors import CheckpointError

    (tmp_path / "empty.pt").touch()
    path = tmp_path / name
    for allow in ("false", "true"):
        settings = resolve({"checkpoints": f"ecg_fm={path}", "allow_random_init": allow}, env={})
        with pytest.raises(CheckpointError) as err:
            model_plans(settings)
        assert err.value.path == str(path) and reason in err.value.reason
        assert "ecg_fm" in err.value.reason and "--ecgfm-checkpoint" in err.value.reason
    with pytest.raises(CheckpointError, match="named by ECGFM_CHECKPOINT"):
        model_plans(resolve(env={"ECGFM_CHECKPOINT": f"ecg_fm={path}"}))


def test_a_checkpoint_looked_up_by_default_may_be_absent_and_random_init_is_announced(tmp_path):
    from ecgfm_suite.errors import CellSkip

    settings = resolve({"weights_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")}, env={})
    with pytest.raises(CellSkip, match=f"no checkpoint for ecgfm_ked: expected {tmp_path}/ecgfm_ked/"):
        Runner(settings).load_encoder("ecgfm_ked")
    allowed = Runner(resolve({"weights_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"),
                              "allow_random_init": "true"}, env={}))
    with pytest.warns(UserWarning, match="ecgfm_ked: no checkpoint at .* running with RANDOM weights"):
        encoder = allowed.load_encoder("ecgfm_ked")
    assert encoder.checkpoint_sha256 is None  # its CellResult says random_init


def test_a_checkpoint_override_must_name_a_known_non_control_model(tmp_path):
    from ecgfm_suite.engine.runner import model_plans
    from ecgfm_suite.errors import SpecError

    with pytest.raises(SpecError, match="--ecgfm-checkpoint: checkpoint override names unknown model 'ecg_fmm'; "
                                        "did you mean ecg_fm"):
        model_plans(resolve({"checkpoints": f"ecg_fmm={tmp_path}"}, env={}))
    with pytest.raises(SpecError, match="random_cnn is a control and takes no checkpoint"):
        model_plans(resolve({"checkpoints": f"random_cnn={tmp_path}"}, env={}))


@pytest.mark.parametrize("task", ["ludb_conduction", "ludb_axis"])  # multilabel, multiclass
@pytest.mark.real_data
def test_a_real_classification_cell_carries_per_class_metrics_with_cis(data_dir, tmp_path, task):
    import json

    from ecgfm_suite.metrics import PER_CLASS_METRICS, class_positives
    from ecgfm_suite.results import CellResult

    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache"), "models": "random_cnn",
                        "tasks": task, "seeds": "2", "n_boot": "100", "workers": "1"}, env={})
    runner = Runner(settings)
    result = run_cell(runner, CellSpec(model="random_cnn", task=task, scarcity="frac100"),
                      runner.load_encoder("random_cnn")).result
    assert result.task_type == {"ludb_conduction": "multilabel", "ludb_axis": "multiclass"}[task]
    assert [c.label for c in result.per_class] == list(result.classes)
    td = runner.task_data(task)
    split, y = np.asarray(td.split), np.asarray(td.y)
    n_classes = len(td.classes)
    for where, prevalence in (("train", "train_prevalence"), ("test", "test_prevalence")):  # frac100: the whole split
        expected = class_positives(result.task_type, y[split == where], n_classes) / (split == where).sum()
        assert [getattr(c, prevalence) for c in result.per_class] == pytest.approx(expected.tolist())
    for c in result.per_class:
        assert c.undefined is None and set(c.metrics) == set(PER_CLASS_METRICS)
        for m in c.metrics.values():
            assert m is not None and m.is_finite() and m.ci_low <= m.value <= m.ci_high and len(m.per_seed) == 2
    for metric in PER_CLASS_METRICS:  # every class is defined here: the macro is their plain mean, seed by seed
        per_class = np.mean([c.metrics[metric].per_seed for c in result.per_class], axis=0)
        assert result.metrics[metric].per_seed == pytest.approx(per_class.tolist(), rel=1e-12)
    assert CellResult.from_dict(json.loads(json.dumps(result.to_dict()))).per_class == result.per_class
