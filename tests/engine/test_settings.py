from pathlib import Path

import pytest

from ecgfm_suite.engine.settings import OPTIONS, resolve
from ecgfm_suite.errors import SpecError


def test_precedence_cli_over_env_over_ini_over_default():
    env = {"ECGFM_SEEDS": "4", "ECGFM_DATA_DIR": "/from/env"}
    s = resolve(cli={"seeds": "2"}, ini={"seeds": "7", "cache": "off"}, env=env)
    assert s.seeds == (0, 1)  # CLI wins
    assert s.data_dir == Path("/from/env")  # env beats default
    assert s.cache == "off"  # ini beats default
    assert resolve(env={}).seeds == (0, 1, 2)  # default: 3 seeds


def test_seed_list_and_csv_options():
    s = resolve(cli={"seeds": "0,7", "models": "a, b", "checkpoints": ["x=/a/b", "y=/c"]}, env={})
    assert s.seeds == (0, 7)
    assert s.models == ("a", "b")
    assert s.checkpoints == (("x", Path("/a/b")), ("y", Path("/c")))


@pytest.mark.parametrize(
    "cli, needle",
    [({"seeds": "zero"}, "--ecgfm-seeds"), ({"device": "tpu"}, "--ecgfm-device"),
     ({"cache": "maybe"}, "--ecgfm-cache"), ({"checkpoints": ["noequals"]}, "NAME=PATH"),
     ({"n_boot": "0"}, "--ecgfm-n-boot")],
)
def test_bad_values_name_the_option(cli, needle):
    with pytest.raises(SpecError) as err:
        resolve(cli=cli, env={})
    assert needle in str(err.value)


def test_env_errors_name_the_variable():
    with pytest.raises(SpecError, match="ECGFM_SEEDS"):
        resolve(env={"ECGFM_SEEDS": "-1"})


def test_every_option_is_documented_in_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [o.cli for o in OPTIONS if o.cli not in readme or o.env not in readme]
    assert not missing, f"README lacks {missing}"


@pytest.mark.parametrize("seeds", ["1,1", "0,2,0", "0,-1", ","])
def test_seed_lists_with_a_repeated_or_negative_seed_are_refused(seeds):
    """A seed counted twice would weigh double in the mean and shrink seed_std: refused, naming the option."""
    with pytest.raises(SpecError, match="--ecgfm-seeds"):
        resolve(cli={"seeds": seeds}, env={})


def test_probe_lists_must_be_non_empty_and_distinct():
    with pytest.raises(SpecError, match="probe linear listed more than once"):
        resolve(cli={"probes": "linear,knn,linear"}, env={})
    with pytest.raises(SpecError, match="--ecgfm-probes"):
        resolve(cli={"probes": ","}, env={})


@pytest.mark.parametrize("run_id", ["latest", "../x", "/tmp/abs", "a/b", ".hidden", "-flag", "a b", "x" * 129, "ü"])
def test_run_ids_are_one_safe_folder_name_never_latest(run_id):
    with pytest.raises(SpecError) as err:
        resolve(cli={"run_id": run_id}, env={})
    assert str(err.value).startswith("--ecgfm-run-id: ")
    with pytest.raises(SpecError, match="ECGFM_RUN_ID"):
        resolve(env={"ECGFM_RUN_ID": run_id})


def test_safe_run_ids_pass():
    for run_id in ("first", "20261207-031500-1234", "main.v2_shard-1", "L"):
        assert resolve(cli={"run_id": run_id}, env={}).run_id == run_id


def test_explicit_records_which_options_the_user_set_and_where():
    s = resolve(cli={"seeds": "2"}, ini={"cache": "off"}, env={"ECGFM_DATA_DIR": "/from/env"})
    assert s.explicit == frozenset({"seeds", "cache", "data_dir"})
    assert (s.source("seeds"), s.source("cache"), s.source("data_dir")) == ("--ecgfm-seeds", "ecgfm_cache",
                                                                          "ECGFM_DATA_DIR")
    assert s.source("weights_dir") == "--ecgfm-weights-dir"  # not set: named by its flag
    assert resolve(env={}).explicit == frozenset()


def test_the_window_policy_is_an_option_by_flag_environment_and_ini_defaulting_to_cover():
    from ecgfm_suite.data.preprocess import DEFAULT_WINDOW_POLICY, WINDOW_POLICIES

    option = next(o for o in OPTIONS if o.dest == "windows")
    assert (option.cli, option.env, option.ini) == ("--ecgfm-windows", "ECGFM_WINDOWS", "ecgfm_windows")
    assert resolve(env={}).windows == option.default == DEFAULT_WINDOW_POLICY == "cover"
    assert "windows" not in resolve(env={}).explicit  # the default leaves a model file's own policy in force
    for policy in WINDOW_POLICIES:  # the option accepts exactly the policies the spec knows
        assert resolve(cli={"windows": policy}, env={}).windows == policy
    s = resolve(cli={"windows": "first"}, ini={"windows": "cover"}, env={"ECGFM_WINDOWS": "official"})
    assert (s.windows, s.source("windows")) == ("first", "--ecgfm-windows")
    s = resolve(ini={"windows": "cover"}, env={"ECGFM_WINDOWS": "official"})
    assert (s.windows, s.source("windows")) == ("official", "ECGFM_WINDOWS")
    assert resolve(ini={"windows": "first"}, env={}).source("windows") == "ecgfm_windows"
    with pytest.raises(SpecError, match="--ecgfm-windows"):
        resolve(cli={"windows": "sliding"}, env={})
