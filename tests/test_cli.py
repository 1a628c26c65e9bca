"""The command line, called as ``main([...])`` (what ``.venv/bin/ecgfm-suite`` runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecgfm_suite.cli import main


def test_datasets_json_lists_every_shared_dataset(data_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path))
    assert main(["datasets", "--data-dir", str(data_dir), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(list((tmp_path / "indexes").glob("*.json.gz"))) == len(listing)  # the next call reuses the scans
    assert main(["datasets", "--data-dir", str(data_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == listing
    by_id = {d["dataset"]: d for d in listing}
    assert set(by_id) == {"ludb", "brugada_huca", "challenge2021", "code15", "cinc2017", "ptbxl"}
    for d in listing:
        assert {"dataset", "records", "excluded", "regions", "tasks"} <= set(d)
    assert by_id["ludb"]["records"] == 200
    assert by_id["cinc2017"]["tasks"]["cinc2017_af"]["A"] == 738
    assert any("S0001" in e["record"] for e in by_id["challenge2021"]["excluded"])


def test_datasets_on_a_folder_without_data(tmp_path, capsys):
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 1
    assert str(tmp_path) in capsys.readouterr().out


def test_embed_reproduces_the_official_embeddings(parity_dir, tmp_path, capsys):
    """`embed` on the HuBERT-ECG parity fixture (a HF directory carrying its own config) gives the official vectors."""
    fixture = parity_dir / "hubert_ecg_small" / "seed0"
    out = tmp_path / "emb.npy"
    code = main(["embed", "--model", "hubert_ecg_small", "--checkpoint", str(fixture / "hubert-ecg-small-seed0"),
                 "--input", str(fixture / "raw_input.npy"), "--fs", "500", "--output", str(out)])
    assert code == 0
    np.testing.assert_allclose(np.load(out), np.load(fixture / "embeddings.npy"), rtol=1e-4, atol=1e-5)


def test_embed_with_config_override(parity_dir, tmp_path):
    """--config sizes a family by the official constructor names (ECGFounder's filter_list, m_blocks_list)."""
    fixture = parity_dir / "ecgfounder_12lead" / "seed0"
    manifest = json.loads((fixture / "manifest.json").read_text())
    out = tmp_path / "emb.npy"
    code = main(["embed", "--model", "ecgfounder_12lead", "--checkpoint", str(fixture / "12_lead_ECGFounder.pth"),
                 "--config", json.dumps(manifest["small_config"]), "--input", str(fixture / "raw_input.npy"),
                 "--fs", "500", "--leads", "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6", "--output", str(out)])
    assert code == 0
    np.testing.assert_allclose(np.load(out), np.load(fixture / "embeddings.npy"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("argv, needle", [
    (["embed", "--model", "nope", "--input", "x.npy", "--fs", "500", "--output", "o.npy"], "unknown model"),
])
def test_errors_are_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_embed_refuses_a_wrong_array(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 500), np.float32))
    assert main(["embed", "--model", "random_cnn", "--input", str(bad), "--fs", "100", "--output",
                 str(tmp_path / "o.npy")]) == 2
    assert "(N, leads, samples)" in capsys.readouterr().err
