"""Safe loading: allow-listed unpickling, refusal of code, strict key matching."""

import os
import pickle
import zipfile

import pytest
import torch

from ecgfm_suite.errors import CheckpointError
from ecgfm_suite.models.checkpoints import (
    Stub,
    load_safetensors,
    load_torch,
    match_state_dict,
)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/ecgfm_pwned",))


class ConfigLike:
    """Stands in for a config class of a package we do not import (pickled by reference)."""

    def __init__(self):
        self.hidden = 8


def test_plain_state_dict_loads(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"model": {"w": torch.ones(2)}}, path)
    assert torch.equal(load_torch(path)["model"]["w"], torch.ones(2))


def test_code_execution_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(2)}, "cfg": Evil()}, path)
    with pytest.raises(CheckpointError) as err:
        load_torch(path, stub_globals=["tests.*"])
    assert "system" in str(err.value) and str(path) in str(err.value)
    assert not os.path.exists("/tmp/ecgfm_pwned")


def test_allow_listed_config_class_becomes_inert_stub(tmp_path):
    path = tmp_path / "cfg.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}, "hparams": ConfigLike()}, path)
    with pytest.raises(CheckpointError, match="ConfigLike"):
        load_torch(path)
    loaded = load_torch(path, stub_globals=["tests.models.test_checkpoints.ConfigLike"])
    assert isinstance(loaded["hparams"], Stub)
    assert loaded["hparams"].state == {"hidden": 8}
    assert torch.equal(loaded["state_dict"]["w"], torch.zeros(3))


def test_garbage_file_gives_clear_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError) as err:
        load_torch(path)
    assert str(path) in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_torch(tmp_path / "absent.pt")


def test_truncated_zip_checkpoint(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(1000)}, good)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[:500])
    assert not zipfile.is_zipfile(bad) or True
    with pytest.raises(CheckpointError):
        load_torch(bad)


def test_bad_safetensors(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_safetensors(path)


def test_match_state_dict_lists_problems():
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state["extra.weight"] = torch.zeros(1)
    del state["1.bias"]
    state["0.weight"] = torch.zeros(5, 5)
    with pytest.raises(CheckpointError) as err:
        match_state_dict(module, state, path="ck.pt")
    msg = str(err.value)
    assert "1.bias" in msg and "extra.weight" in msg and "0.weight" in msg and "ck.pt" in msg


def test_match_state_dict_prefix_and_drop():
    module = torch.nn.Linear(3, 2)
    state = {f"enc.{k}": v + 1 for k, v in module.state_dict().items()}
    state["head.weight"] = torch.zeros(1)
    match_state_dict(module, state, path="ck.pt", strip_prefix="enc.", drop=["head.*"])
    assert torch.equal(module.bias, state["enc.bias"])
    with pytest.raises(CheckpointError, match="prefix"):
        match_state_dict(module, {"bias": torch.zeros(2)}, path="ck.pt", strip_prefix="enc.")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes the foreign protocol, then refuses
def test_raw_pickle_protocol_is_never_used(tmp_path):
    """A non-zip legacy pickle with a reducer is refused as well."""
    path = tmp_path / "legacy.pt"
    with open(path, "wb") as fh:
        pickle.dump(Evil(), fh)
    with pytest.raises(CheckpointError):
        load_torch(path)
    assert not os.path.exists("/tmp/ecgfm_pwned")


def test_checkpoint_problem_names_why_a_named_checkpoint_cannot_load(tmp_path):
    from ecgfm_suite.models.checkpoints import checkpoint_problem

    good = tmp_path / "w.pt"
    good.write_bytes(b"PK\x03\x04")
    empty = tmp_path / "empty.pt"
    empty.touch()
    assert checkpoint_problem(good, "ecg_fm") is None
    assert checkpoint_problem(tmp_path / "typo.pt", "ecg_fm") == "does not exist"
    assert checkpoint_problem(tmp_path, "ecg_fm") == "is a directory; the ecg_fm family reads one checkpoint file"
    assert checkpoint_problem(tmp_path, "hubert_ecg") is None  # a Hugging Face model folder
    assert checkpoint_problem(tmp_path, "onnx") is not None
    assert checkpoint_problem(empty, "merl") == "is an empty file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its mode")
def test_checkpoint_problem_unreadable(tmp_path):
    from ecgfm_suite.models.checkpoints import checkpoint_problem

    locked = tmp_path / "w.pt"
    locked.write_bytes(b"PK\x03\x04")
    locked.chmod(0)
    assert checkpoint_problem(locked, "ecg_fm") == "cannot be read (permissions)"
