from pathlib import Path

import pytest

from ecgfm_suite.errors import SpecError
from ecgfm_suite.settings import OPTIONS, resolve


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
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [o.cli for o in OPTIONS if o.cli not in readme or o.env not in readme]
    assert not missing, f"README lacks {missing}"
