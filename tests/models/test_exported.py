"""Exported encoders: our random CNN exported to TorchScript / ONNX must embed like the torch model."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.embeddings.encode import embed_array
from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.controls import load_random_cnn
from ecgfm_suite.models.exported import load_onnx, load_torchscript
from ecgfm_suite.models.spec import ModelSpec

from .ludb_records import LUDB_FS, read_ludb

CNN = MODELS.get("random_cnn")

# TorchScript is deprecated upstream (torch >= 2.10) but is the format users bring; exercising it is the point
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")


class Pooled:
    """The random CNN's trunk + global average pooling as one exportable module."""

    @staticmethod
    def build():
        import torch

        class Module(torch.nn.Module):
            def __init__(self, trunk: torch.nn.Module) -> None:
                super().__init__()
                self.trunk = trunk

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.trunk(x).mean(-1)

        return Module(load_random_cnn(CNN, None).module).eval()


def _spec(family: str, embed_dim: int = 256) -> ModelSpec:
    return ModelSpec(id=f"user_{family}", family=family, loader=f"ecgfm_suite.models.exported:load_{family}",
                     embed_dim=embed_dim, input_spec=CNN.input_spec, control=False, default=False)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    import torch

    folder = tmp_path_factory.mktemp("exports")
    module = Pooled.build()
    example = torch.zeros(2, 12, 1000)
    torch.jit.trace(module, example).save(str(folder / "cnn.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated (onnxscript is not installed)
        torch.onnx.export(module, (example,), str(folder / "cnn.onnx"), dynamo=False, input_names=["ecg"],
                          output_names=["embedding"], dynamic_axes={"ecg": {0: "batch"}, "embedding": {0: "batch"}})
        torch.onnx.export(module, (example[:1],), str(folder / "cnn_batch1.onnx"), dynamo=False,
                          input_names=["ecg"], output_names=["embedding"])
    return {"torchscript": folder / "cnn.pt", "onnx": folder / "cnn.onnx", "onnx_fixed": folder / "cnn_batch1.onnx"}


@pytest.fixture(scope="module")
def ludb(data_dir) -> tuple[np.ndarray, tuple[str, ...]]:
    records = [read_ludb(data_dir, r) for r in (1, 2, 3)]
    return np.stack([x for x, _ in records]), records[0][1]


@pytest.fixture(scope="module")
def reference(ludb) -> np.ndarray:
    x, leads = ludb
    return embed_array(load_random_cnn(CNN, None), x, LUDB_FS, leads)


@pytest.mark.parametrize(("family", "file", "loader"), [("torchscript", "torchscript", load_torchscript),
                                                        ("onnx", "onnx", load_onnx),
                                                        ("onnx", "onnx_fixed", load_onnx)])
@pytest.mark.real_data
def test_exported_graph_embeds_like_torch(exports, ludb, reference, family, file, loader) -> None:
    x, leads = ludb
    encoder = loader(_spec(family), exports[file])
    assert encoder.checkpoint_sha256 and len(encoder.checkpoint_sha256) == 64
    emb = embed_array(encoder, x, LUDB_FS, leads)
    np.testing.assert_allclose(emb, reference, rtol=1e-4, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])


def test_declared_width_must_match_the_graph(exports) -> None:
    with pytest.raises(CheckpointError, match=r"returns shape \(1, 256\)"):
        load_torchscript(_spec("torchscript", embed_dim=128), exports["torchscript"])
    with pytest.raises(CheckpointError, match=r"returns shape \(1, 256\)"):
        load_onnx(_spec("onnx", embed_dim=128), exports["onnx"])


def test_declared_input_must_match_the_graph(exports) -> None:
    six_leads = dataclasses.replace(_spec("onnx"), input_spec=dataclasses.replace(CNN.input_spec,
                                                                                  leads=CNN.input_spec.leads[:6]))
    with pytest.raises(CheckpointError, match=r"\(N, 6, 1000\)"):
        load_onnx(six_leads, exports["onnx"])
    with pytest.raises(CheckpointError, match="does not accept the declared input"):
        load_torchscript(dataclasses.replace(six_leads, family="torchscript"), exports["torchscript"])


def test_bad_files_and_options(tmp_path, exports) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a TorchScript archive"):
        load_torchscript(_spec("torchscript"), junk)
    with pytest.raises(CheckpointError, match="not a loadable ONNX graph"):
        load_onnx(_spec("onnx"), junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_onnx(_spec("onnx"), tmp_path / "absent.onnx")
    with pytest.raises(SpecError, match="needs its exported file"):
        load_torchscript(_spec("torchscript"), None)
    with pytest.raises(SpecError, match="unknown constructor argument"):
        load_onnx(_spec("onnx"), exports["onnx"], config={"hidden_size": 3})
