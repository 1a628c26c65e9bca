"""The standard parity check against fixtures made with each model's OFFICIAL code.

``run_parity(model_id, parity_dir)`` loads ``<parity_dir>/<model_id>/seed0/manifest.json``, builds
OUR encoder through the registered loader (``load(spec, checkpoint, config=small_config)``) and
checks three things, each with ``np.testing.assert_allclose`` semantics
(``|ours - official| <= atol + rtol * |official|`` element-wise):

1. model-ready input: ``encoder.prepare(raw_input[i], 500, raw_leads)`` vs ``model_input.npy``;
2. the network alone: ``encoder.encode(model_input windows)`` vs the official per-window vectors
   (``embeddings_per_*.npy`` when the fixture has one, else ``embeddings.npy``), so an
   architecture bug is not masked by (or blamed on) preprocessing;
3. end to end: ``embed_array(encoder, raw_input, 500, raw_leads, window_policy="official")`` vs
   ``embeddings.npy`` (the fixtures follow each model's official test-time windows, not ``cover``).

The returned dict holds, per check, ``max_abs`` (largest absolute error) and ``max_rel``
(largest absolute error divided by the largest official magnitude), for reporting the
tolerance each model actually needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.embeddings.encode import embed_array
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.registry import resolve

#: LUDB records in the fixtures are 500 Hz, standard lead order (see fm-parity/README.md)
RAW_FS = 500.0


def fixture_dir(model_id: str, parity_dir: Path) -> Path:
    return Path(parity_dir) / model_id / "seed0"


def read_manifest(model_id: str, parity_dir: Path) -> dict[str, Any]:
    return json.loads((fixture_dir(model_id, parity_dir) / "manifest.json").read_text())


def _errors(ours: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    scale = float(np.abs(ref).max()) or 1.0
    return {"max_abs": float(diff.max()), "max_rel": float(diff.max()) / scale}


def compare(name: str, ours: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> dict[str, float]:
    """Assert ``ours`` reproduces ``ref`` within tolerance; return the max errors."""
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} vs official {ref.shape}"
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol, err_msg=f"{name} differs from the official fixture")
    return _errors(ours, ref)


def _per_window_reference(folder: Path, n_records: int) -> np.ndarray | None:
    """Official per-window vectors (``embeddings_per_segment/crop/chunk.npy``), flattened to (N, D)."""
    found = sorted(folder.glob("embeddings_per_*.npy"))
    if not found:
        return None
    ref = np.load(found[0], allow_pickle=False)
    assert ref.shape[0] == n_records, f"{found[0].name}: first axis {ref.shape[0]} != {n_records} records"
    return ref.reshape(-1, ref.shape[-1])


def run_parity(
    model_id: str,
    parity_dir: Path,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    checkpoint_name: str | None = None,
    config: Mapping[str, Any] | None = None,
    input_rtol: float | None = None,
    input_atol: float | None = None,
    raw_leads: Sequence[str] = STD_LEADS,
) -> dict[str, dict[str, float]]:
    """Run the three parity checks for ``model_id``; returns max errors per check.

    ``checkpoint_name`` picks another file in the fixture folder (default: the manifest's
    ``checkpoint``); ``config`` replaces the manifest's ``small_config`` (for fixtures whose
    small config is not a flat mapping of constructor arguments); ``input_rtol``/``input_atol``
    default to ``rtol``/``atol``. ``raw_leads`` names the rows of ``raw_input.npy`` for OUR
    ``prepare``: standard order, unless the official pipeline reads rows positionally under another
    assumption (ECGFM-KED treats every record as MIMIC-ordered, so its fixture fed LUDB's standard
    rows unswapped — labelling them in MIMIC order asks our pipeline for exactly that input).
    """
    folder = fixture_dir(model_id, parity_dir)
    manifest = read_manifest(model_id, parity_dir)
    spec = MODELS.get(model_id)
    load = resolve(spec.loader)
    checkpoint = folder / (checkpoint_name or manifest["checkpoint"])
    encoder = load(spec, checkpoint, config=manifest["small_config"] if config is None else config)
    assert encoder.checkpoint_sha256 is not None, "a loaded checkpoint must report its sha256"
    listed = manifest.get("files", {}).get(checkpoint.name, {}).get("sha256")
    if listed and checkpoint.is_file():
        assert encoder.checkpoint_sha256 == listed, f"checkpoint digest {encoder.checkpoint_sha256} != manifest {listed}"

    raw = np.load(folder / "raw_input.npy", allow_pickle=False)
    model_input = np.load(folder / "model_input.npy", allow_pickle=False)
    official = np.load(folder / "embeddings.npy", allow_pickle=False)
    n_records = raw.shape[0]

    # 1. preprocessing: (records, windows, *shape), squeezing the window axis for one-window fixtures
    ours_input = np.stack([encoder.prepare(rec, RAW_FS, raw_leads) for rec in raw])
    if ours_input.shape != model_input.shape and ours_input.shape[1] == 1:
        ours_input = ours_input[:, 0]
    result = {"input": compare(f"{model_id} model input", ours_input, model_input,
                                rtol if input_rtol is None else input_rtol,
                                atol if input_atol is None else input_atol)}

    # 2. the network alone, on the official model-ready input
    per_window = _per_window_reference(folder, n_records)
    if per_window is not None:
        windows_in = model_input.reshape(len(per_window), *model_input.shape[2:])
        result["windows"] = compare(f"{model_id} per-window embeddings", encoder.encode(windows_in), per_window,
                                     rtol, atol)
    else:
        result["windows"] = compare(f"{model_id} embeddings of the official input", encoder.encode(model_input),
                                     official, rtol, atol)

    # 3. end to end through the shared embedding path
    ours = embed_array(encoder, raw, RAW_FS, raw_leads, window_policy="official")
    result["embeddings"] = compare(f"{model_id} embeddings", ours, official, rtol, atol)
    return result


def broken_state_dicts(state: Mapping[str, Any], key: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Three corruptions of a state dict, each with the text its CheckpointError must name:
    ``key`` missing, ``key`` mis-shaped, and an unexpected extra key."""
    import torch

    missing = {k: v for k, v in state.items() if k != key}
    reshaped = dict(state)
    reshaped[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
    extra = dict(state)
    extra["stray.weight"] = torch.zeros(3)
    return {"missing": (missing, key), "shape": (reshaped, key), "unexpected": (extra, "stray.weight")}


def seed_init_mismatches(ours: Mapping[str, Any], model_id: str, parity_dir: Path,
                         official: Mapping[str, Any], *, alias: tuple[str, str] | None = None) -> tuple[int, list[str]]:
    """Compare OUR seeded random init with the fixture's weights, which are the official
    initialisation under ``torch.manual_seed(0)`` except for the manifest's ``perturbed_tensors``.

    Returns (tensors compared, keys that differ). ``alias`` = (ours, manifest) substrings for
    fixtures that list a perturbed tensor under an aliased name only.
    """
    import torch

    perturbed = set(read_manifest(model_id, parity_dir)["perturbed_tensors"])
    compared, differ = 0, []
    for key, value in ours.items():
        if key in perturbed or (alias and key.replace(*alias) in perturbed) or key not in official:
            continue
        compared += 1
        if not torch.equal(value, official[key]):
            differ.append(key)
    return compared, differ


def compare_trunk_states(encoder: Any, folder: Path, name: str) -> dict[str, float]:
    """Our module on the official model-ready input vs the official ``hidden_states.npy`` (before pooling)."""
    import torch

    with torch.inference_mode():
        hidden = encoder.module(torch.from_numpy(np.load(folder / "model_input.npy"))).numpy()
    return compare(name, hidden, np.load(folder / "hidden_states.npy"), rtol=1e-4, atol=1e-5)
