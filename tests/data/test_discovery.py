"""Discovery by content: written full layouts in arbitrary folders, decoys, merging, and the real data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecgfm_suite.data import reader
from ecgfm_suite.data.datasets import DATASETS
from ecgfm_suite.data.discovery import dataset_roots, discover, load_index
from ecgfm_suite.errors import DataError
from fixtures.layouts import write_brugada, write_cinc2017, write_ludb, write_ptbxl, write_record

MINE = ("ludb", "brugada_huca", "ptbxl", "cinc2017")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """All four datasets under names that say nothing, at different depths, plus decoys."""
    data = tmp_path_factory.mktemp("data")
    roots = {
        "ludb": write_ludb(data / "a" / "b" / "c" / "x1").root,
        "brugada_huca": write_brugada(data / "downloads" / "2024" / "x2").root,
        "ptbxl": write_ptbxl(data / "x3").root,
        "cinc2017": write_cinc2017(data / "a" / "zz").root,
    }
    # decoys: a CPSC-style REFERENCE.csv beside 12-lead records; another dataset's metadata.csv;
    # a files/<id>/<id>.hea record at 500 Hz; a stray .hea file at the top
    write_record(data / "cpsc", "A0001", n_samples=500)
    (data / "cpsc" / "REFERENCE.csv").write_text("Recording,First_label\nA0001,1\n")
    (data / "other").mkdir()
    (data / "other" / "metadata.csv").write_text("patient_id,diagnosis\n1,2\n")
    write_record(data / "other" / "files" / "7", "7", fs=500.0, n_samples=500)
    write_record(data, "stray", n_samples=200)
    return data, {k: v.resolve() for k, v in roots.items()}


def test_discover_finds_each_layout_by_content(written) -> None:
    data, roots = written
    found = discover(data)
    assert found == {k: [v] for k, v in roots.items()}  # absent datasets have no key, decoys are not found
    for dataset_id in MINE:
        assert dataset_roots(dataset_id, data) == [roots[dataset_id]]


def test_load_index_on_written_layouts(written) -> None:
    data, _ = written
    sizes = {d: len(load_index(d, data).records) for d in MINE}
    assert sizes == {"ludb": 4, "brugada_huca": 3, "ptbxl": 4, "cinc2017": 5}
    assert set(load_index("ptbxl", data, prefer="hr").records["fs"]) == {500.0}  # options reach scan


def test_absent_dataset_and_missing_dir(tmp_path: Path) -> None:
    write_ludb(tmp_path / "l")
    with pytest.raises(DataError) as err:
        load_index("cinc2017", tmp_path)
    assert err.value.path == str(tmp_path)
    assert "PhysioNet/CinC Challenge 2017" in err.value.reason and "expected REFERENCE.csv" in err.value.reason
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(DataError, match="data directory does not exist") as err:
        discover(missing)
    assert err.value.path == str(missing)
    with pytest.raises(DataError, match="data directory does not exist"):
        load_index("ludb", missing)
    with pytest.raises(DataError, match="not a directory"):
        discover(tmp_path / "l" / "ludb.csv")


def test_several_roots_merge_and_duplicates_are_excluded(tmp_path: Path) -> None:
    first = write_cinc2017(tmp_path / "copy1").root
    second = write_cinc2017(tmp_path / "copy2").root
    for name in ("A00001", "A00002"):  # copy2 keeps only A00003–A00005, which are also in copy1
        for ext in (".hea", ".mat"):
            (second / f"{name}{ext}").unlink()
    ref = second / "REFERENCE.csv"
    ref.write_text("".join(ln + "\n" for ln in ref.read_text().split() if ln[:6] not in ("A00001", "A00002")))
    index = load_index("cinc2017", tmp_path)
    assert index.root == tmp_path.resolve()
    assert list(index.records["record_id"]) == ["A00001", "A00002", "A00003", "A00004", "A00005"]
    assert index.records["path"].str.startswith(str(first.resolve())).all()
    dups = {ex.record: ex.reason for ex in index.excluded}
    assert set(dups) == {f"copy2/training2017/A0000{i}" for i in (3, 4, 5)}
    assert dups["copy2/training2017/A00003"] == f"duplicate of {first.resolve() / 'A00003'}"


def test_merged_exclusions_keep_their_root(tmp_path: Path) -> None:
    a = write_brugada(tmp_path / "one").root
    b = write_brugada(tmp_path / "two", metadata=False).root
    (a / "files" / "188981" / "188981.dat").write_bytes(b"\0" * 10)
    index = load_index("brugada_huca", tmp_path)
    assert [ex.record for ex in index.excluded][0] == "one/files/188981/188981"
    assert index.missing_label_files == [str(b.resolve() / "metadata.csv")]


@pytest.mark.real_data
def test_discover_real_data_reads_few_headers(data_dir: Path, monkeypatch) -> None:
    """Content checks open a few headers per candidate folder, not the ~4,850 records."""
    calls: list[int] = []
    parse = reader._parse_header_lines

    def counting(*args):
        calls.append(1)
        return parse(*args)

    monkeypatch.setattr(reader, "_parse_header_lines", counting)
    found = discover(data_dir)
    assert len(calls) <= 20
    assert set(found) <= set(DATASETS)
    assert found["ludb"] == [data_dir / "ludb"]
    assert found["brugada_huca"] == [data_dir / "brugada-huca"]
    assert found["ptbxl"] == [data_dir / "ptb-xl"]
    assert found["cinc2017"] == [data_dir / "cinc2017" / "training2017"]


@pytest.mark.real_data
def test_load_index_real_ludb(data_dir: Path) -> None:
    index = load_index("ludb", data_dir)
    assert len(index.records) == 200 and index.dataset == "ludb" and index.version == "1.0.1"


def test_symlinked_dataset_is_found_and_cycles_end(tmp_path: Path) -> None:
    elsewhere = write_ludb(tmp_path / "disk2" / "ludb").root
    data = tmp_path / "data"
    data.mkdir()
    (data / "ludb-link").symlink_to(elsewhere, target_is_directory=True)
    (data / "loop").symlink_to(data, target_is_directory=True)
    assert discover(data) == {"ludb": [data.resolve() / "ludb-link"]}
    assert len(load_index("ludb", data).records) == 4
