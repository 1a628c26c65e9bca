"""openecg codec v6: our re-implementation vs the package's own model on real LUDB records.

The package (``openecg.load_codec``) is the independent reference; it is imported here only.
Note: the codec was trained partly on LUDB (flagged in the catalog's ``pretrained_on``) — these
records test equality of computation, not generalisation.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.embeddings.encode import embed_array
from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.openecg_codec import DROP, load, rank_normalise

from .ludb_records import LUDB_FS, read_ludb

SPEC = MODELS.get("openecg_codec_v6")
RECORDS = (1, 2, 7, 40)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    found = SPEC.resolve_checkpoint(tmp_path_factory.mktemp("empty_weights_dir"))
    if found is None:
        pytest.skip("the openecg wheel (which ships codec_v6.pt) is not installed")
    assert found.name == "codec_v6.pt" and "openecg" in found.parts
    return found


@pytest.fixture(scope="module")
def package_model():
    openecg = pytest.importorskip("openecg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its TransformerEncoder warns about nested tensors
        return openecg.load_codec()


def _package_tokens(model, windows: np.ndarray) -> np.ndarray:
    """The package's upper-transformer output, captured by a forward hook as fm-specs.md §11 describes."""
    import torch

    captured = {}
    hook = model.upper_transformer.register_forward_hook(lambda m, i, o: captured.setdefault("tokens", o))
    try:
        with torch.no_grad():
            model(torch.from_numpy(windows[:, 0]), torch.zeros(len(windows), dtype=torch.long))
    finally:
        hook.remove()
    return captured["tokens"].numpy()


@pytest.mark.parametrize("lead", ["II", "V5"])
@pytest.mark.real_data
def test_tokens_and_embedding_equal_the_package_model(data_dir, checkpoint, package_model, lead) -> None:
    import torch

    encoder = load(SPEC, checkpoint, config={"lead": lead})
    assert encoder.input_spec.leads == (lead,) and encoder.embed_dim == 128
    records = [read_ludb(data_dir, r) for r in RECORDS]
    windows = np.concatenate([encoder.prepare(x, LUDB_FS, leads) for x, leads in records])
    assert windows.shape == (len(RECORDS), 1, 5000)
    reference = _package_tokens(package_model, windows)
    with torch.no_grad():
        ours = encoder.module.tokens(torch.from_numpy(windows)).numpy()
    assert ours.shape == reference.shape == (len(RECORDS), 500, 128)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)  # measured: 0.0 (bit-identical)
    emb = embed_array(encoder, np.stack([x for x, _ in records]), LUDB_FS, records[0][1])
    # tokens are bit-identical; the pooled mean differs only by float32 summation order (measured ≤ 7e-6 abs,
    # ≤ 8e-7 relative to the largest component on LUDB 1–20)
    np.testing.assert_allclose(emb, reference.mean(axis=1), rtol=1e-5, atol=1e-5)


@pytest.mark.real_data
def test_rank_normalisation_matches_opendsp(data_dir) -> None:
    from openecg.dsp import rank_normalize

    x, _ = read_ludb(data_dir, 3)
    for lead in x[:3]:
        np.testing.assert_array_equal(rank_normalise(lead[None])[0], rank_normalize(lead))
    ties = np.array([[3.0, 1.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(rank_normalise(ties)[0], rank_normalize(ties[0]))


@pytest.mark.real_data
def test_embedding_is_invariant_to_gain_and_offset(data_dir, checkpoint) -> None:
    encoder = load(SPEC, checkpoint)
    x, leads = read_ludb(data_dir, 12)
    a = embed_array(encoder, x[None], LUDB_FS, leads)
    b = embed_array(encoder, (3.0 * x + 0.5)[None], LUDB_FS, leads)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_parameter_count_and_declared_drops(checkpoint) -> None:
    """fm-specs.md §11 / model card: 1,159,572 parameters in the whole codec; we keep the encoder half."""
    import fnmatch

    from ecgfm_suite.models.checkpoints import load_torch

    state = load_torch(checkpoint)["model_state"]
    dropped = sum(v.numel() for k, v in state.items() if any(fnmatch.fnmatchcase(k, p) for p in DROP))
    ours = sum(p.numel() for p in load(SPEC, checkpoint).module.parameters())
    assert ours + dropped == SPEC.released_params == 1_159_572


def test_resamples_and_windows_other_rates(checkpoint) -> None:
    encoder = load(SPEC, checkpoint)
    x = np.random.default_rng(0).standard_normal((12, 250 * 25)).astype(np.float32)
    from ecgfm_suite.data.records import STD_LEADS

    w = encoder.prepare(x, 250.0, STD_LEADS)
    assert w.shape == (1, 1, 5000) and w.min() == -1.0 and w.max() == 1.0


def test_random_init_is_seeded() -> None:
    a, b = load(SPEC, None), load(SPEC, None)
    x = rank_normalise(np.random.default_rng(1).standard_normal((2, 1, 5000)))
    assert a.checkpoint_sha256 is None
    np.testing.assert_array_equal(a.encode(x), b.encode(x))


def test_bad_options_and_checkpoints(checkpoint, tmp_path) -> None:
    import torch

    with pytest.raises(SpecError, match="unknown lead"):
        load(SPEC, None, config={"lead": "X7"})
    with pytest.raises(SpecError, match="unknown constructor argument"):
        load(SPEC, None, config={"d_modle": 64})
    blob = torch.load(checkpoint, weights_only=True)
    torch.save({**blob, "model_config": {**blob["model_config"], "arch": "vit_mamba"}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="vit_mamba"):
        load(SPEC, tmp_path / "other.pt")
    state = dict(blob["model_state"])
    del state["lower_norms.2.bias"]
    torch.save({**blob, "model_state": state}, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="lower_norms.2.bias"):
        load(SPEC, tmp_path / "broken.pt")
