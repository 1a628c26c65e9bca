"""Challenge 2020/2021 loader on the real shared records, a synthetic nested release and corrupted copies.

Expected numbers come from the shared data README (counts per source, SNOMED counts,
demographics, quirks); sample values are cross-checked against wfdb and scipy.io directly.
"""

from __future__ import annotations

import filecmp
import hashlib
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb

from ecgfm_suite._io import sha256_file
from ecgfm_suite.data.datasets import challenge
from ecgfm_suite.data.reader import read_and_validate, read_signal
from ecgfm_suite.errors import RecordError
from fixtures.challenge_layouts import DX_ROWS, ecg_like, write_challenge_record, write_dx_table, write_nested_challenge

#: README: records here per source folder (130 headers)
README_COUNTS = {"cpsc_2018": 5, "cpsc_2018_extra": 22, "ptb": 1, "ptb-xl": 29, "georgia": 30,
                 "chapman_shaoxing": 13, "ningbo": 30}


@pytest.fixture(scope="module")
def real_root(data_dir: Path) -> Path:
    root = data_dir / "challenge-2020-2021"
    if not root.is_dir():
        pytest.skip(f"no Challenge records at {root}")
    return root


@pytest.fixture(scope="module")
def real_index(real_root: Path):
    return challenge.scan(real_root)


def _folder(row) -> str:
    return Path(row["path"]).parent.name


@pytest.mark.real_data
def test_find_roots_returns_the_one_challenge_folder(data_dir: Path, real_root: Path) -> None:
    assert challenge.find_roots(data_dir) == [real_root.resolve()]


@pytest.mark.real_data
def test_counts_per_source_and_the_one_exclusion(real_index) -> None:
    rows = real_index.records
    assert len(rows) + len(real_index.excluded) == sum(README_COUNTS.values()) == 130
    counts = Counter(rows.apply(_folder, axis=1))
    counts.update(ex.record.split("/")[0] for ex in real_index.excluded)
    assert counts == README_COUNTS
    # the source comes from the record-name prefix and must agree with the official folder
    assert (rows.apply(_folder, axis=1).str.replace("-", "") == rows["source"]).all()
    assert [ex.record for ex in real_index.excluded] == ["ptb/S0001"]
    reason = real_index.excluded[0].reason
    assert "implausible amplitude" in reason and "2000000/mV" in reason
    assert rows["key"].is_unique and (rows["key"] == "challenge2021/" + rows["record_id"]).all()
    assert set(rows["format"]) == {"challenge_mat"} and rows["patient_id"].isna().all()


@pytest.mark.real_data
def test_regions_rates_and_leads(real_index) -> None:
    rows = real_index.records
    regions = dict(zip(rows["source"], rows["region"], strict=True))
    assert regions == {"cpsc_2018": "China", "cpsc_2018_extra": "China", "ptbxl": "Germany", "georgia": "USA",
                       "chapman_shaoxing": "China", "ningbo": "China"}
    assert set(rows["fs"]) == {500.0}
    assert set(rows["leads"]) == {"I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"}
    extra = rows[rows["source"] == "cpsc_2018_extra"]["n_samples"]
    assert extra.min() == 5000 and extra.max() == 28934  # README: 5,000–28,934


@pytest.mark.real_data
def test_snomed_counts_match_the_readme(real_index) -> None:
    rows = real_index.records
    expected = {  # (source, code, abbreviation): count, from the README's per-source table
        ("georgia", "426177001", "SB"): 8, ("georgia", "427084000", "STach"): 6, ("georgia", "426783006", "NSR"): 6,
        ("ningbo", "284470004", "PAC"): 13, ("ningbo", "427084000", "STach"): 11, ("ningbo", "164934002", "TAb"): 7,
        ("cpsc_2018", "164889003", "AF"): 3, ("cpsc_2018", "284470004", "PAC"): 2,
        ("cpsc_2018_extra", "428750005", "NSSTTA"): 9, ("cpsc_2018_extra", "164867002", "OldMI"): 8,
        ("ptbxl", "426783006", "NSR"): 26, ("ptbxl", "164865005", "MI"): 3,
        ("chapman_shaoxing", "426177001", "SB"): 6, ("chapman_shaoxing", "164890007", "AFL"): 2,
    }
    for (source, code, abbrev), count in expected.items():
        sub = rows[rows["source"] == source]
        assert sum(code in dx for dx in sub["dx"]) == count, (source, code)
        assert sum(abbrev in ab for ab in sub["dx_abbrev"]) == count, (source, abbrev)
    for dx, ab in zip(rows["dx"], rows["dx_abbrev"], strict=True):
        assert len(dx) == len(ab) > 0


@pytest.mark.real_data
def test_code_missing_from_both_tables_is_kept_and_logged(real_index, caplog) -> None:
    row = real_index.records.set_index("record_id").loc["ningbo/JS20006"]
    assert "251238007" in row["dx"]
    assert row["dx_abbrev"][row["dx"].index("251238007")] == "251238007"
    assert real_index.records.attrs["unmapped_dx"] == {"251238007": ("ningbo/JS20006",)}
    tables = [Path(t) for t in real_index.records.attrs["dx_tables"]]
    assert tables[0].parent.name == "challenge-2020-2021" and tables[-1].parent.name == "evaluation-2020"


@pytest.mark.real_data
def test_sex_and_age(real_index, real_root: Path) -> None:
    rows = real_index.records
    # README: Male 65, Female 64, "female" 1 — the lower-case one is ptb/S0001, excluded for its gain
    assert rows["sex"].value_counts().to_dict() == {"M": 65, "F": 64}
    s0001 = challenge.parse_header(real_root / "ptb" / "S0001.hea")
    assert s0001.comments["sex"] == "female" and s0001.gains == (2_000_000.0,) * 12
    assert rows["age"].min() == 4 and rows["age"].max() == 89


@pytest.mark.real_data
def test_georgia_mat_name_quirk_reads_like_corrected_wfdb(real_index, tmp_path: Path) -> None:
    georgia = real_index.records[real_index.records["source"] == "georgia"]
    assert len(georgia) == 30
    with pytest.raises(ValueError, match="record line"):
        wfdb.rdheader(georgia["path"].iloc[0])  # why this loader parses headers itself
    for path in map(Path, georgia["path"]):
        hea = path.with_name(path.name + ".hea").read_text()
        first, rest = hea.split("\n", 1)
        assert first.startswith(f"{path.name}.mat ")
        (tmp_path / f"{path.name}.hea").write_text(first.replace(f"{path.name}.mat ", f"{path.name} ", 1) + "\n" + rest)
        shutil.copy(path.with_name(path.name + ".mat"), tmp_path)
        fixed = wfdb.rdrecord(str(tmp_path / path.name), physical=False)
        val = scipy.io.loadmat(path.with_name(path.name + ".mat"))["val"]
        assert np.array_equal(fixed.d_signal.T, val)
        ours = challenge.read_challenge_mat(path)
        physical = wfdb.rdrecord(str(tmp_path / path.name)).p_signal.T
        np.testing.assert_allclose(ours.data, physical, rtol=0, atol=1e-6)


@pytest.mark.real_data
def test_every_other_record_decodes_like_wfdb(real_index) -> None:
    rows = real_index.records[real_index.records["source"] != "georgia"]
    for _, row in rows.iterrows():
        ours = read_signal(row)  # the reader dispatches format "challenge_mat" here
        ref = wfdb.rdrecord(row["path"])
        assert ours.leads == tuple(row["leads"].split(",")) and ours.fs == ref.fs == row["fs"]
        np.testing.assert_allclose(ours.data, ref.p_signal.T, rtol=0, atol=1e-6)


@pytest.mark.real_data
def test_gain_200_records_are_decoded_in_mv(real_index, real_root: Path) -> None:
    rows = real_index.records
    ptbxl = rows[rows["source"] == "ptbxl"]
    ptp = {rid: float(np.median(np.ptp(read_signal(row).data, axis=1))) for rid, row in
           zip(ptbxl["record_id"], ptbxl.to_dict("records"), strict=True)}
    typical = np.median([v for k, v in ptp.items() if k not in ("ptbxl/HR00599", "ptbxl/HR20715")])
    for name in ("HR00599", "HR20715"):
        header = challenge.parse_header(real_root / "ptb-xl" / f"{name}.hea")
        assert set(header.gains) == {200.0}
        val = scipy.io.loadmat(real_root / "ptb-xl" / f"{name}.mat")["val"].astype(np.float64)
        sig = challenge.read_challenge_mat(real_root / "ptb-xl" / name)
        np.testing.assert_allclose(sig.data, val / 200.0, rtol=1e-6)
        assert ptp[f"ptbxl/{name}"] > 3 * typical  # README: ~5× the 1000/mV records; kept, not excluded
    assert abs(ptp["ptbxl/HR00599"] - 5.4) < 0.1  # README: ~5.4 mV median peak-to-peak


@pytest.mark.real_data
def test_flat_leads_are_kept_and_named(real_index) -> None:
    rows = real_index.records.set_index("record_id")
    assert rows.loc["ningbo/JS11438", "flat_leads"] == ("V1", "V2", "V3", "V4", "V5", "V6")
    assert rows.loc["ningbo/JS20004", "flat_leads"] == rows.loc["ningbo/JS20008", "flat_leads"] == ("V2", "V4", "V6")
    assert (rows["flat_leads"].map(len) > 0).sum() == 3
    sig = read_and_validate(rows.loc["ningbo/JS11438"].to_dict())  # validate_signal allows flat single leads
    assert np.ptp(sig.data[6:], axis=1).max() == 0 and np.ptp(sig.data[:6], axis=1).min() > 0


@pytest.mark.real_data
def test_record_line_without_date(real_index) -> None:
    rows = real_index.records.set_index("record_id")
    for name in ("JS00001", "JS00002", "JS00004", "JS00005"):
        assert rows.loc[f"chapman_shaoxing/{name}", "n_samples"] == 5000


@pytest.mark.real_data
def test_hashes_bytes_and_samples(real_index, real_root: Path, tmp_path: Path) -> None:
    rows = real_index.records
    for _, row in rows.head(10).iterrows():
        assert row["content_hash"] == sha256_file(row["path"] + ".mat")
    # found by the hashes, not in the README: Georgia E07509 and E07510 are one recording (same bytes, header time)
    dup = rows[rows["signal_hash"].duplicated(keep=False)]
    assert sorted(dup["record_id"]) == ["georgia/E07509", "georgia/E07510"]
    assert dup["content_hash"].nunique() == 1
    assert filecmp.cmp(real_root / "georgia" / "E07509.mat", real_root / "georgia" / "E07510.mat", shallow=False)
    # the same recording: byte copy under another name and source, and a MAT v5 re-save (other bytes)
    src = real_root / "cpsc_2018" / "A0689"
    val = scipy.io.loadmat(src.with_suffix(".mat"))["val"]
    hea = src.with_suffix(".hea").read_text()
    (tmp_path / "cpsc_2018").mkdir()
    shutil.copy(src.with_suffix(".mat"), tmp_path / "cpsc_2018")
    shutil.copy(src.with_suffix(".hea"), tmp_path / "cpsc_2018")
    (tmp_path / "copies").mkdir()
    shutil.copy(src.with_suffix(".mat"), tmp_path / "copies" / "Q9998.mat")
    (tmp_path / "copies" / "Q9998.hea").write_text(hea.replace("A0689", "Q9998"))
    scipy.io.savemat(tmp_path / "copies" / "A9999.mat", {"val": val}, format="5")
    (tmp_path / "copies" / "A9999.hea").write_text(hea.replace("A0689", "A9999"))
    (tmp_path / "other").mkdir()  # the same name again, later in path order: a duplicate record id
    shutil.copy(src.with_suffix(".mat"), tmp_path / "other")
    shutil.copy(src.with_suffix(".hea"), tmp_path / "other")
    index = challenge.scan(tmp_path)
    got = index.records.set_index("record_id")
    assert sorted(got.index) == ["cpsc_2018/A0689", "cpsc_2018/A9999", "cpsc_2018_extra/Q9998"]
    assert got["signal_hash"].nunique() == 1
    assert got.loc["cpsc_2018/A0689", "content_hash"] == got.loc["cpsc_2018_extra/Q9998", "content_hash"]
    assert got.loc["cpsc_2018/A9999", "content_hash"] != got.loc["cpsc_2018/A0689", "content_hash"]
    expected = hashlib.sha256(f"{val.dtype.str}{val.shape}".encode() + np.ascontiguousarray(val).tobytes())
    assert got.loc["cpsc_2018/A0689", "signal_hash"] == expected.hexdigest()
    assert [ex.record for ex in index.excluded] == ["other/A0689"]
    assert "duplicate record id cpsc_2018/A0689 (identical samples" in index.excluded[0].reason


def test_synthetic_nested_release_is_found_and_labelled(tmp_path: Path) -> None:
    written = write_nested_challenge(tmp_path)
    roots = challenge.find_roots(tmp_path)
    assert roots == [(tmp_path / "challenge-2021" / "training").resolve()]
    index = challenge.scan(roots[0])
    assert index.excluded == [] and index.missing_label_files == []
    rows = index.records.set_index(index.records["record_id"].str.split("/").str[1])
    assert sorted(rows.index) == sorted(written)
    abbrev = {code: ab for _, code, ab in DX_ROWS}
    for name, w in written.items():
        row = rows.loc[name]
        assert row["record_id"] == f"{w.source.replace('-', '')}/{name}"
        assert (row["fs"], row["n_samples"], row["leads"]) == (w.fs, w.n_samples, ",".join(w.leads))
        assert (pd.isna(row["sex"]) if w.sex is None else row["sex"] == w.sex) and row["dx"] == w.dx
        assert row["dx_abbrev"] == tuple(abbrev.get(c, c) for c in w.dx)
        sig = read_signal(row.to_dict())
        assert sig.data.shape == (len(w.leads), w.n_samples) and sig.fs == w.fs
    assert rows.loc["I0001", "region"] == "Russia" and rows.loc["JS10647", "source"] == "ningbo"
    assert rows.loc["JS10646", "source"] == "chapman_shaoxing"
    assert index.records.attrs["unmapped_dx"] == {"251238007": ("ningbo/JS10647",)}


def test_decoding_matches_written_millivolts(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    mv = ecg_like(3, 2570, 257, rng)
    path = write_challenge_record(tmp_path, "I0009", mv, fs=257, leads=("I", "II", "V2"), dx=("164889003",),
                                  gain=500.0, baseline=7)
    sig = challenge.read_challenge_mat(path)
    np.testing.assert_allclose(sig.data, np.round(mv * 500) / 500, atol=1e-6)
    assert sig.leads == ("I", "II", "V2") and sig.fs == 257


def test_gain_zero_means_200_as_in_wfdb(tmp_path: Path) -> None:
    path = write_challenge_record(tmp_path, "A0009", ecg_like(2, 1000, 500, np.random.default_rng(3)), fs=500,
                                  leads=("I", "II"), dx=("164889003",), gain=200.0)
    hea = path.with_name("A0009.hea")
    hea.write_text(hea.read_text().replace(" 200/mV ", " 0/mV "))
    np.testing.assert_allclose(challenge.read_challenge_mat(path).data, wfdb.rdrecord(str(path)).p_signal.T,
                               atol=1e-6)


@pytest.mark.real_data
def test_mapping_tables_2020_fallback_and_missing(real_root: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    only2020 = tmp_path / "only2020"
    write_challenge_record(only2020 / "records", "A0001", ecg_like(2, 5000, 500, rng), fs=500, leads=("I", "II"),
                           dx=("164889003", "426783006"))
    (only2020 / "evaluation-2020").mkdir()
    for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        shutil.copy(real_root / "evaluation-2020" / name, only2020 / "evaluation-2020")
    index = challenge.scan(only2020 / "records")  # tables one level up, inside evaluation-2020/
    assert index.records["dx_abbrev"].iloc[0] == ("AF", "NSR")
    assert all("evaluation-2020" in t for t in index.records.attrs["dx_tables"])
    # a 2021 table beside a 2020 one wins
    write_dx_table(only2020 / "dx_mapping_scored.csv", rows=(("atrial fibrillation", "164889003", "AF21"),))
    assert challenge.scan(only2020 / "records").records["dx_abbrev"].iloc[0] == ("AF21", "NSR")
    none = tmp_path / "deep" / "er" / "still" / "none"
    write_challenge_record(none, "A0002", ecg_like(2, 5000, 500, rng), fs=500, leads=("I", "II"), dx=("164889003",))
    index = challenge.scan(none)
    assert index.records["dx_abbrev"].iloc[0] == ("164889003",)
    assert index.missing_label_files == [str(none.resolve() / "dx_mapping_scored.csv"),
                                         str(none.resolve() / "dx_mapping_unscored.csv")]


def _corrupt(kind: str, folder: Path, real_root: Path) -> str:
    """Copy cpsc_2018/A0689 into ``folder`` and break it; return a regex the reason must match."""
    src = real_root / "cpsc_2018" / "A0689"
    folder.mkdir(parents=True, exist_ok=True)
    mat, hea = folder / "A0689.mat", folder / "A0689.hea"
    shutil.copy(src.with_suffix(".mat"), mat)
    shutil.copy(src.with_suffix(".hea"), hea)
    text = hea.read_text()
    if kind == "truncated":
        mat.write_bytes(src.with_suffix(".mat").read_bytes()[:50_000])
        return r"A0689\.mat.*cannot read MATLAB file"
    if kind == "mismatch":
        hea.write_text(text.replace("A0689 12 500 5000", "A0689 12 500 6000", 1))
        return r"shape \(12, 5000\), header says \(12, 6000\)"
    if kind == "altered":
        raw = bytearray(mat.read_bytes())
        raw[24 + 2 * 12 * 100] ^= 0x40  # one sample of lead I, inside the data
        mat.write_bytes(bytes(raw))
        return r"lead I: samples do not match the header \(checksum"
    if kind == "nan":
        val = scipy.io.loadmat(src.with_suffix(".mat"))["val"].astype(np.float64)
        val[3] = np.nan
        scipy.io.savemat(mat, {"val": val}, format="4")
        return r"NaN/inf samples in leads aVR"
    if kind == "malformed":
        hea.write_text(text.replace("1000/mV", "abc/mV", 1))
        return r"ADC gain 'abc/mV' is malformed"
    if kind == "no_rate":
        hea.write_text("A0689 12\n" + text.split("\n", 1)[1])  # record line cut after the signal count
        return r"gives no sampling rate"
    if kind == "zero_rate":
        hea.write_text(text.replace("A0689 12 500 5000", "A0689 12 0 5000", 1))
        return r"unknown or invalid sampling rate"
    raise AssertionError(kind)


KINDS = ("truncated", "mismatch", "altered", "nan", "malformed", "no_rate", "zero_rate")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.real_data
def test_bad_record_is_excluded_or_raises_when_strict(kind: str, real_root: Path, tmp_path: Path) -> None:
    pattern = _corrupt(kind, tmp_path / "cpsc_2018", real_root)
    good = real_root / "cpsc_2018" / "A1041"
    shutil.copy(good.with_suffix(".hea"), tmp_path / "cpsc_2018")
    shutil.copy(good.with_suffix(".mat"), tmp_path / "cpsc_2018")
    index = challenge.scan(tmp_path)
    assert list(index.records["record_id"]) == ["cpsc_2018/A1041"]
    assert [ex.record for ex in index.excluded] == ["cpsc_2018/A0689"]
    assert re.search(pattern, index.excluded[0].reason), index.excluded[0].reason
    with pytest.raises(RecordError) as err:
        challenge.scan(tmp_path, strict=True)
    assert "A0689" in str(err.value.path)
    assert re.search(pattern, str(err.value))


@pytest.mark.real_data
def test_missing_dx_and_bad_names_are_excluded(real_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cpsc_2018"
    folder.mkdir()
    for ext in (".hea", ".mat"):
        shutil.copy(real_root / "cpsc_2018" / f"A0689{ext}", folder)
    text = (folder / "A0689.hea").read_text()
    shutil.copy(folder / "A0689.mat", folder / "A0690.mat")
    (folder / "A0690.hea").write_text(text.replace("A0689", "A0690").replace("#Dx:", "#Diagnosis:"))
    shutil.copy(folder / "A0689.mat", folder / "A0691.mat")
    (folder / "A0691.hea").write_text(text.replace("A0689 12", "B0001 12", 1).replace("A0689.mat", "A0691.mat"))
    index = challenge.scan(tmp_path)
    reasons = {ex.record: ex.reason for ex in index.excluded}
    assert list(index.records["record_id"]) == ["cpsc_2018/A0689"]
    assert "no #Dx: comment" in reasons["cpsc_2018/A0690"]
    assert "record line names 'B0001', expected 'A0691'" in reasons["cpsc_2018/A0691"]
