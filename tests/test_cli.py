"""The command line, called as ``main([...])`` (what ``.venv/bin/ecgfm-suite`` runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecgfm_suite.cli import main


@pytest.mark.real_data
def test_datasets_json_lists_every_shared_dataset(data_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path))
    assert main(["datasets", "--data-dir", str(data_dir), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(list((tmp_path / "indexes").glob("*.npz"))) == len(listing)  # the next call reuses the scans
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
    args = ["embed", "--model", "hubert_ecg_small", "--checkpoint", str(fixture / "hubert-ecg-small-seed0"),
            "--input", str(fixture / "raw_input.npy"), "--fs", "500"]
    assert main([*args, "--windows", "official", "--output", str(out)]) == 0  # the official protocol: its vectors
    np.testing.assert_allclose(np.load(out), np.load(fixture / "embeddings.npy"), rtol=1e-4, atol=1e-5)
    covered = tmp_path / "cover.npy"  # the benchmark's default covers the whole record: other vectors
    assert main([*args, "--output", str(covered)]) == 0
    assert np.load(covered).shape == np.load(out).shape and not np.allclose(np.load(covered), np.load(out))


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


def _embed(tmp_path, x: np.ndarray | None, *args: str, model: str = "random_cnn", fs: str = "500") -> list[str]:
    """argv of `embed` on ``x`` saved as input.npy (None: the caller wrote it)."""
    if x is not None:
        np.save(tmp_path / "input.npy", x)
    return ["embed", "--model", model, "--input", str(tmp_path / "input.npy"), f"--fs={fs}",
            "--output", str(tmp_path / "out.npy"), *args]


def _ecg(n: int = 2, leads: int = 12, samples: int = 5000) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.3, (n, leads, samples)).astype(np.float32)


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("ecgfm-suite: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_embed_with_a_checkpoint_that_is_not_there_is_an_error_not_random_weights(tmp_path, capsys):
    """Before: a typo'd --checkpoint embedded with random weights and exited 0."""
    typo = tmp_path / "typo.pt"
    assert main(_embed(tmp_path, _ecg(), "--checkpoint", str(typo), model="ecgfm_ked")) == 2
    _one_line_error(capsys, str(typo), "named by --checkpoint does not exist")
    assert main(_embed(tmp_path, None, "--checkpoint", str(tmp_path), model="ecgfm_ked")) == 2
    _one_line_error(capsys, "is a directory")
    assert not (tmp_path / "out.npy").exists()


def test_embed_without_weights_needs_allow_random_init_and_then_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECGFM_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.delenv("ECGFM_ALLOW_RANDOM_INIT", raising=False)
    assert main(_embed(tmp_path, _ecg(), model="ecgfm_ked")) == 2
    _one_line_error(capsys, f"no checkpoint for ecgfm_ked: expected {tmp_path / 'weights'}", "--allow-random-init")
    assert main(_embed(tmp_path, None, "--allow-random-init", model="ecgfm_ked")) == 0
    err = capsys.readouterr().err
    assert "ecgfm-suite: warning: ecgfm_ked: no checkpoint at" in err and "RANDOM weights" in err
    assert np.load(tmp_path / "out.npy").shape == (2, 768)


def _nan_input() -> np.ndarray:
    x = _ecg()
    x[1] = np.nan
    return x


@pytest.mark.parametrize("x, args, needles", [
    (_nan_input(), (), ["record 1: NaN/inf samples in leads I, II"]),
    (np.full((2, 12, 5000), np.inf, np.float32), (), ["record 0: NaN/inf"]),
    (_ecg() * 1000, (), ["record 0: implausible amplitude"]),  # µV given as mV
    (_ecg(samples=10), (), ["records of 10 samples at 500 Hz", "window of 10 s", "--pad"]),
    (_ecg(leads=3), ("--leads", "I,II,V7"), ["--leads: unknown lead name(s) 'V7'"]),
    (_ecg(leads=3), ("--leads", "I,ii,II"), ["--leads: lead(s) II named more than once"]),
    (_ecg(leads=3), ("--leads", "I,II"), ["--leads: names 2 leads but", "has 3"]),
    (_ecg(leads=13), (), ["13 leads, more than the 12 standard ones"]),
    (_ecg().astype(np.complex64), (), ["holds complex64 values"]),
    (np.zeros((0, 12, 5000), np.float32), (), ["got shape (0, 12, 5000)"]),
    (_ecg(), ("--config", "{oops"), ["--config: not valid JSON"]),
    (_ecg(), ("--config", "[1, 2]"), ["--config: expected a JSON object", "got list"]),
])
def test_embed_refuses_bad_input_in_one_line(tmp_path, capsys, x, args, needles):
    assert main(_embed(tmp_path, x, *args)) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path / "out.npy").exists()


def test_embed_of_a_model_that_reads_none_of_the_given_leads_is_refused(tmp_path, capsys):
    assert main(_embed(tmp_path, _ecg(leads=1), "--leads", "V1", model="openecg_codec_v6")) == 2
    _one_line_error(capsys, "--leads: the model reads leads II", "include none of them")


@pytest.mark.parametrize("fs", ["nan", "inf", "-inf", "0", "-500"])
def test_embed_refuses_a_sampling_rate_that_is_not_finite_and_positive(tmp_path, capsys, fs):
    assert main(_embed(tmp_path, _ecg(), fs=fs)) == 2
    _one_line_error(capsys, "--fs: the sampling rate must be a finite number > 0 Hz")


def test_embed_pads_short_records_only_when_asked_and_zeroes_a_few_nan_samples(tmp_path, capsys):
    assert main(_embed(tmp_path, _ecg(samples=4000), "--pad")) == 0  # 8 s for a 10 s window, padded as in the benchmark
    assert np.load(tmp_path / "out.npy").shape == (2, 256)
    x = _ecg()
    x[0, 3, 100:110] = np.nan
    assert main(_embed(tmp_path, x)) == 0
    assert "ecgfm-suite: warning: 1 record(s) have a few NaN/inf samples, set to 0" in capsys.readouterr().err
    clean = x.copy()
    clean[0, 3, 100:110] = 0.0
    first = np.load(tmp_path / "out.npy")
    assert main(_embed(tmp_path, clean)) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), first)


@pytest.mark.parametrize("write, needle", [
    (None, "input file does not exist"),
    (lambda p: p.write_text("not an array"), "not a .npy file"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "Object arrays cannot be loaded"),
    (lambda p: np.savez(p.with_suffix(""), a=np.zeros(3)) or p.with_suffix(".npz").rename(p), "an .npz archive"),
    (lambda p: p.mkdir(), "not a file"),
])
def test_embed_names_an_unreadable_input_file(tmp_path, capsys, write, needle):
    if write is not None:
        write(tmp_path / "input.npy")
    assert main(_embed(tmp_path, None)) == 2
    _one_line_error(capsys, str(tmp_path / "input.npy"), needle)


def test_embed_checks_the_output_path_before_encoding(tmp_path, capsys):
    assert main(_embed(tmp_path, _ecg())[:-1] + [str(tmp_path / "no" / "out.npy")]) == 2
    _one_line_error(capsys, "the output's folder does not exist")
    assert main(_embed(tmp_path, None)[:-1] + [str(tmp_path)]) == 2
    _one_line_error(capsys, "is a directory")


def test_datasets_names_a_missing_label_table(tmp_path, capsys):
    """LUDB and PTB-XL records without ludb.csv / ptbxl_database.csv were not found at all (every cell of
    their tasks skipped as 'no data'); now the dataset is found and the missing table named."""
    from fixtures.layouts import write_ludb, write_ptbxl

    ludb = write_ludb(tmp_path / "data" / "ludb").root
    for record in ("1", "2"):
        (ludb / "data" / f"{record}.avf").touch()  # LUDB's per-lead annotation files
    ptbxl = write_ptbxl(tmp_path / "data" / "ptb-xl").root
    (ludb / "ludb.csv").unlink()
    (ptbxl / "ptbxl_database.csv").unlink()
    assert main(["datasets", "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    listing = {d["dataset"]: d for d in json.loads(capsys.readouterr().out)}
    assert set(listing) == {"ludb", "ptbxl"}
    for name, table in (("ludb", ludb / "ludb.csv"), ("ptbxl", ptbxl / "ptbxl_database.csv")):
        assert listing[name]["missing_label_files"] == [str(table)] and listing[name]["records"] == 0
    assert main(["datasets", "--data-dir", str(tmp_path / "data")]) == 0
    assert f"label table missing: {ludb / 'ludb.csv'} (its tasks are skipped)" in capsys.readouterr().out


def test_embed_window_choices_are_the_data_layers_policies():
    from ecgfm_suite.cli import WINDOW_CHOICES
    from ecgfm_suite.data.preprocess import WINDOW_POLICIES

    assert WINDOW_CHOICES == WINDOW_POLICIES
