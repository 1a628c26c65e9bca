"""``download`` against a local HTTP server (127.0.0.1 only) serving copies of the real shared files.

The server speaks just enough HTTP/1.1 for the client: ``Range: bytes=N-`` (206/416), and
three faults on demand — altered bytes, a connection closed mid-file, a listing path that
leaves the folder. LUDB is served with lines of its real ``SHA256SUMS.txt``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecgfm_suite.data import download as dl
from ecgfm_suite.data.datasets import challenge
from ecgfm_suite.data.discovery import discover, load_index
from ecgfm_suite.data.tasks.mimic_iv_ecg import statements
from ecgfm_suite.errors import DataError, SpecError
from fixtures.layouts import MimicStudy, write_mimic_iv_ecg

LUDB_FILES = ("ludb.csv", "LICENSE.txt", "data/1.hea", "data/1.dat", "data/2.hea", "data/2.dat")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        self.server.requests.append((path, rng))
        body = self.server.body(path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path in self.server.corrupt:
            body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
        start = 0
        if rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        cut = self.server.cut.pop(path, None)
        if cut is not None:  # promise the whole file, send part of it, hang up
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class FileServer(ThreadingHTTPServer):
    """Serves ``root`` (plus in-memory ``extra`` routes) on loopback, with injectable faults."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.extra: dict[str, bytes] = {}
        self.corrupt: set[str] = set()
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def body(self, path: str) -> bytes | None:
        if path in self.extra:
            return self.extra[path]
        target = (self.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        return target.read_bytes()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    srv = FileServer(tmp_path / "srv")
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "TIMEOUT", (2.0, 5.0))


@pytest.fixture
def ludb_tree(data_dir: Path, server: FileServer) -> Path:
    """``srv/ludb/1.0.1/``: a few real LUDB files and their lines of the real SHA256SUMS.txt."""
    src = data_dir / "ludb"
    if not (src / "SHA256SUMS.txt").is_file():
        pytest.skip(f"no LUDB SHA256SUMS.txt at {src}")
    dest = server.root / "ludb" / "1.0.1"
    for rel in LUDB_FILES:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, dest / rel)
    lines = [ln for ln in (src / "SHA256SUMS.txt").read_text().splitlines() if ln.split(" ", 1)[1] in LUDB_FILES]
    assert len(lines) == len(LUDB_FILES)
    (dest / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    return src


def _data_requests(server: FileServer) -> list[tuple[str, str | None]]:
    return [r for r in server.requests if not r[0].endswith("SHA256SUMS.txt")]


@pytest.mark.real_data
def test_full_download_verifies_and_skips_verified_files(ludb_tree: Path, server: FileServer, tmp_path: Path
                                                          ) -> None:
    out = tmp_path / "data"
    assert dl.download(["ludb"], out, base_url=server.url, progress=False) == [out / "ludb"]
    for rel in LUDB_FILES:
        assert (out / "ludb" / rel).read_bytes() == (ludb_tree / rel).read_bytes()
    assert not list(out.rglob("*.part"))
    assert sorted(p for p, _ in _data_requests(server)) == sorted(f"/ludb/1.0.1/{r}" for r in LUDB_FILES)
    server.requests.clear()
    dl.download(["ludb"], out, base_url=server.url, progress=False)
    assert _data_requests(server) == []  # everything already verified


@pytest.mark.real_data
def test_corrupted_file_is_rejected_and_not_left_in_place(ludb_tree: Path, server: FileServer, tmp_path: Path
                                                          ) -> None:
    server.corrupt.add("/ludb/1.0.1/data/1.dat")
    good = (ludb_tree / "data" / "1.dat").read_bytes()
    bad = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:]
    out = tmp_path / "data"
    with pytest.raises(DataError) as err:
        dl.download(["ludb"], out, base_url=server.url, progress=False)
    message = str(err.value)
    assert "data/1.dat" in message
    assert hashlib.sha256(good).hexdigest() in message and hashlib.sha256(bad).hexdigest() in message
    assert not (out / "ludb" / "data" / "1.dat").exists() and not list(out.rglob("*.part"))


@pytest.mark.real_data
def test_interrupted_transfer_resumes_with_a_range_request(ludb_tree: Path, server: FileServer, tmp_path: Path
                                                           ) -> None:
    cut = 100_000  # of 120,000 bytes; the client keeps the whole blocks it received (the last one is lost)
    server.cut["/ludb/1.0.1/data/1.dat"] = cut
    out = tmp_path / "data"
    dl.download(["ludb"], out, base_url=server.url, progress=False)
    assert (out / "ludb" / "data" / "1.dat").read_bytes() == (ludb_tree / "data" / "1.dat").read_bytes()
    asked = [rng for path, rng in server.requests if path == "/ludb/1.0.1/data/1.dat"]
    assert len(asked) == 2 and asked[0] is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", asked[1]).group(1))
    assert 0 < resumed_at <= cut


@pytest.mark.real_data
def test_part_file_from_an_earlier_run_is_resumed(ludb_tree: Path, server: FileServer, tmp_path: Path) -> None:
    out = tmp_path / "data"
    data = (ludb_tree / "data" / "2.dat").read_bytes()
    (out / "ludb" / "data").mkdir(parents=True)
    (out / "ludb" / "data" / "2.dat.part").write_bytes(data[:12_345])
    dl.download(["ludb"], out, base_url=server.url, progress=False)
    assert (out / "ludb" / "data" / "2.dat").read_bytes() == data
    assert ("/ludb/1.0.1/data/2.dat", "bytes=12345-") in server.requests


def test_listing_that_leaves_the_folder_is_refused(server: FileServer, tmp_path: Path) -> None:
    server.extra["/ludb/1.0.1/SHA256SUMS.txt"] = f"{'0' * 64} ../../outside.txt\n".encode()
    with pytest.raises(DataError, match="leaves the dataset folder"):
        dl.download(["ludb"], tmp_path / "data", base_url=server.url, progress=False)


def test_unknown_dataset_and_missing_server_file(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot download nope"):
        dl.download(["nope"], tmp_path, base_url=server.url, progress=False)
    with pytest.raises(DataError, match="HTTP 404"):
        dl.download(["ptbxl"], tmp_path, base_url=server.url, progress=False)


def _serve_zenodo_record(server: FileServer, files: dict[str, bytes]) -> None:
    """Serve ``files`` as CODE-15%'s Zenodo record 4916206 does: its API listing (size, md5) and each file."""
    api = "/api/records/4916206"
    server.extra[api] = json.dumps({"files": [
        {"key": k, "size": len(v), "checksum": f"md5:{hashlib.md5(v).hexdigest()}"} for k, v in files.items()
    ]}).encode()
    for key, body in files.items():
        server.extra[f"{api}/files/{key}/content"] = body


@pytest.mark.real_data
def test_zenodo_listing_md5_and_zip_extraction(data_dir: Path, server: FileServer, tmp_path: Path) -> None:
    code15 = data_dir / "code15-challenge2025"
    if not code15.is_dir():
        pytest.skip(f"no CODE-15% records at {code15}")
    files = {"exams.csv": (code15 / "PROVENANCE.tsv").read_bytes()}
    archive = tmp_path / "exams_part0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for ext in (".hea", ".dat"):
            zf.write(code15 / f"111102{ext}", f"exams_part0/111102{ext}")
    files["exams_part0.zip"] = archive.read_bytes()
    files["README.md"] = b"not selected"
    _serve_zenodo_record(server, files)
    out = tmp_path / "data"
    dl.download(["code15"], out, base_url=server.url, progress=False)
    assert (out / "code15" / "exams.csv").read_bytes() == files["exams.csv"]
    assert not (out / "code15" / "README.md").exists()
    assert (out / "code15" / "exams_part0" / "111102.dat").read_bytes() == (code15 / "111102.dat").read_bytes()
    from ecgfm_suite.data.datasets import code15 as loader

    assert list(loader.scan(out / "code15").records["exam_id"]) == ["111102"]


@pytest.mark.real_data
def test_code15_release_download_then_datasets_end_to_end(data_dir: Path, server: FileServer, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``download code15`` fetches Zenodo's exams.csv and zipped HDF5 parts; ``datasets`` then finds and labels
    the release with no configuration."""
    from ecgfm_suite.cli import main
    from fixtures.code15_native import exams_from_wfdb, write_release, zip_parts

    code15 = data_dir / "code15-challenge2025"
    if not code15.is_dir():
        pytest.skip(f"no CODE-15% records at {code15}")
    release = write_release(tmp_path / "written", exams_from_wfdb(code15)[:24], n_parts=2)
    files = zip_parts(release.root, tmp_path / "zips")
    _serve_zenodo_record(server, files)
    out = tmp_path / "data"
    assert main(["download", "code15", "--data-dir", str(out), "--base-url", server.url]) == 0
    assert sorted(p.name for p in (out / "code15").glob("exams*")) == [
        "exams.csv", "exams_part0.hdf5", "exams_part0.zip", "exams_part1.hdf5", "exams_part1.zip"]
    capsys.readouterr()
    assert main(["datasets", "--data-dir", str(out), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["dataset"], entry["records"], entry["excluded"]) == ("code15", 24, [])
    assert entry["version"].startswith("zenodo4916206.") and entry["sampling_rates"] == [400]
    counts = entry["tasks"]["code15_abnormalities"]
    for label in ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"):
        assert counts.get(label, 0) == sum(v[label] for v in release.labels.values())
    sexes = [("male" if v["sex"] == "M" else "female") for v in release.labels.values()]
    assert entry["tasks"]["sex"] == {s: sexes.count(s) for s in ("female", "male")}


@pytest.mark.real_data
def test_challenge_release_with_pinned_mapping_tables_scans(data_dir: Path, server: FileServer, tmp_path: Path
                                                            ) -> None:
    real = data_dir / "challenge-2020-2021"
    if not real.is_dir():
        pytest.skip(f"no Challenge records at {real}")
    release = server.root / "challenge-2021" / "1.0.3"
    sums = []
    for rel in ("training/cpsc_2018/g1/A0689.hea", "training/cpsc_2018/g1/A0689.mat", "training/georgia/g1/E00009.hea",
                "training/georgia/g1/E00009.mat", "RECORDS"):
        src = real / Path(rel).parts[1] / Path(rel).name if rel != "RECORDS" else real / "PROVENANCE.tsv"
        (release / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, release / rel)
        sums.append(f"{hashlib.sha256(src.read_bytes()).hexdigest()} {rel}")
    (release / "SHA256SUMS.txt").write_text("\n".join(sums) + "\n")
    commit = server.root / "physionetchallenges" / "evaluation-2021" / "e2a75fc01f729cb74cc4e853e054ce81e28381fc"
    commit.mkdir(parents=True)
    for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        shutil.copy(real / name, commit)  # the pinned sha256 must match the official tables
    out = tmp_path / "data"
    dl.download(["challenge2021"], out, base_url=server.url, progress=False)
    assert not (out / "challenge2021" / "RECORDS").exists()  # only training/ is selected
    roots = challenge.find_roots(out)
    assert roots == [(out / "challenge2021" / "training").resolve()]
    rows = challenge.scan(roots[0]).records
    assert list(rows["record_id"]) == ["cpsc_2018/A0689", "georgia/E00009"]
    assert rows["dx"].iloc[0] == ("164889003",) and rows["dx_abbrev"].iloc[0] == ("AF",)  # via the fetched tables
    assert rows["dx_abbrev"].iloc[1] == ("NSSTTA", "LAD", "STach")


def test_mimic_iv_ecg_release_download_is_found_and_labelled(server: FileServer, tmp_path: Path) -> None:
    """Open access: ``download mimic_iv_ecg`` fetches the two tables and the record tree (not the rest of the
    release), and the folder it makes is found and labelled with no configuration."""
    release = server.root / "mimic-iv-ecg" / "1.0"
    write_mimic_iv_ecg(release, [MimicStudy(subject_id=10000032, study_id=40689238, reports=("Sinus rhythm",)),
                                 MimicStudy(subject_id=10000635, study_id=43522917, reports=("Atrial fibrillation",))])
    (release / "machine_measurements_data_dictionary.csv").write_text("Column,Description\n")
    files = sorted(p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file())
    (release / "SHA256SUMS.txt").write_text("".join(f"{hashlib.sha256((release / f).read_bytes()).hexdigest()} {f}\n"
                                                    for f in files))
    out = tmp_path / "data"
    dl.download(["mimic_iv_ecg"], out, base_url=server.url, progress=False)
    assert not (out / "mimic_iv_ecg" / "machine_measurements_data_dictionary.csv").exists()
    assert discover(out) == {"mimic_iv_ecg": [out / "mimic_iv_ecg"]}
    index = load_index("mimic_iv_ecg", out)
    assert list(statements(index)) == [("sinus_rhythm",), ("atrial_fibrillation",)]
