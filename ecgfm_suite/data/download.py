"""Fetch the public datasets from their official servers, each file verified before it lands.

Sources and checksums:

- PhysioNet (LUDB, Brugada-HUCA, CinC 2017, PTB-XL, Challenge 2021, MIMIC-IV-ECG): the project's
  ``<server>/<slug>/<version>/SHA256SUMS.txt``; slug and version come from the
  :data:`~ecgfm_suite.data.datasets.DATASETS` spec URL, so the registry is the one source of truth.
- Zenodo (CODE-15%, record 4916206): the record's API listing (``/api/records/<id>``), md5 per file.
- The Challenge's SNOMED mapping tables live in ``physionetchallenges/evaluation-2021``, not on
  PhysioNet: fetched at a pinned commit, sha256 pinned here (the shared copy's digest).

Every file goes to ``<name>.part`` first (resumed with an HTTP ``Range`` request after an
interrupted transfer or an earlier run), is hashed, and only then ``os.replace``-d into
place; a mismatch deletes the part file and raises :class:`DataError` with both digests.
Files already present with the right digest are skipped. ``base_url`` replaces every
server (a mirror or a test server) and keeps each server's path layout:
``<base>/<slug>/<version>/…`` (PhysioNet), ``<base>/api/records/<id>`` (Zenodo),
``<base>/<owner>/<repo>/<commit>/<file>`` (GitHub raw).

Not fetched: the CODE-15% Chagas labels (``code15_chagas_labels.zip`` on
physionetchallenges.org publishes no checksum) and the Challenge 2025 WFDB conversion
(``prepare_code15_data.py``). The CODE-15% loader reads what is fetched (``exams.csv`` and the
extracted ``exams_part*.hdf5``), the converted form, or both; ``code15_chagas_labels.csv`` placed
beside ``exams.csv`` adds the Chagas labels.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .._io import write_atomic
from ..errors import DataError, SpecError
from .datasets import DATASETS

if TYPE_CHECKING:
    import requests

PHYSIONET = "https://physionet.org/files"
ZENODO = "https://zenodo.org"
GITHUB_RAW = "https://raw.githubusercontent.com"

#: (connect, read) seconds
TIMEOUT: tuple[float, float] = (15.0, 120.0)
#: attempts per file after the first (each resumes where the last one stopped)
RETRIES = 4
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteFile:
    """One file to fetch: where from, where to (relative to the dataset folder), its published digest."""

    url: str
    path: str
    algorithm: str  # "sha256" or "md5"
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadPlan:
    """Which of a dataset's published files to fetch (``fnmatch`` patterns on relative paths)."""

    include: tuple[str, ...] = ("*",)
    #: unzip verified ``.zip`` files into the dataset folder (loaders read the extracted records)
    extract: bool = False
    #: (GitHub ``owner/repo/commit/file``, destination, sha256) fetched beside the release
    pinned: tuple[tuple[str, str, str], ...] = ()


_EVAL_2021 = "physionetchallenges/evaluation-2021/e2a75fc01f729cb74cc4e853e054ce81e28381fc"

PLANS: dict[str, DownloadPlan] = {
    "ludb": DownloadPlan(),
    "brugada_huca": DownloadPlan(),
    # the release also holds every team's entry under sources/; only the training set is needed
    "cinc2017": DownloadPlan(include=("training2017.zip", "REFERENCE-v3.csv"), extract=True),
    "ptbxl": DownloadPlan(),
    "challenge2021": DownloadPlan(include=("training/*",), pinned=(
        (f"{_EVAL_2021}/dx_mapping_scored.csv", "dx_mapping_scored.csv",
         "fad13ad9f7ca230e7e6392ac8a264cb7cd157879525129f964c5f708eabb41d0"),
        (f"{_EVAL_2021}/dx_mapping_unscored.csv", "dx_mapping_unscored.csv",
         "ce53c9e35406e922f1634a38bb13c31e8cf7603291641a16c201d8e679f4fe94"),
    )),
    "code15": DownloadPlan(include=("exams.csv", "exams_part*.zip"), extract=True),
    # open access (no PhysioNet credentialing): the two tables the loader reads and the 800,035 records (~90 GB)
    "mimic_iv_ecg": DownloadPlan(include=("record_list.csv", "machine_measurements.csv", "files/*")),
}

_PHYSIONET_URL = re.compile(r"^https://physionet\.org/content/(?P<slug>[\w.-]+)/(?P<version>[\w.-]+)/?$")
_ZENODO_URL = re.compile(r"^https://zenodo\.org/records?/(?P<record>\d+)/?$")
_SHA256_LINE = re.compile(r"^(?P<digest>[0-9a-fA-F]{64}) [ *]?(?P<path>\S.*)$")


def _safe_relpath(path: str, source: str) -> str:
    """A listed path must stay inside the dataset folder (a hostile mirror could list ``../x``)."""
    pure = PurePosixPath(path.strip())
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise DataError(f"listed path {path!r} leaves the dataset folder", source)
    return pure.as_posix()


def parse_sha256sums(text: str, source: str) -> dict[str, str]:
    """``SHA256SUMS.txt`` (``sha256sum`` format) → relative path → digest; malformed lines raise."""
    sums = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SHA256_LINE.match(line.rstrip("\r"))
        if m is None:
            raise DataError(f"line {n} is not '<sha256> <path>': {line[:80]!r}", source)
        sums[_safe_relpath(m["path"], source)] = m["digest"].lower()
    return sums


def _session() -> requests.Session:
    import requests

    session = requests.Session()
    # byte ranges must refer to the stored bytes, so no transparent compression
    session.headers.update({"Accept-Encoding": "identity", "User-Agent": "ecgfm-suite"})
    return session


def _get_text(session: requests.Session, url: str) -> str:
    import requests

    last: Exception | None = None
    for _ in range(RETRIES + 1):
        try:
            resp = session.get(url, timeout=TIMEOUT)
        except (requests.ConnectionError, requests.Timeout) as exc:
            last = exc
            continue
        if resp.status_code != 200:
            raise DataError(f"HTTP {resp.status_code} fetching the file list", url)
        return resp.text
    raise DataError(f"cannot fetch the file list: {last}", url)


def _selected(paths: Iterable[str], include: tuple[str, ...]) -> list[str]:
    return sorted(p for p in paths if any(fnmatch.fnmatchcase(p, pat) for pat in include))


def list_files(dataset: str, session: requests.Session, base_url: str | None = None) -> list[RemoteFile]:
    """The files :func:`download` fetches for ``dataset``, with their published digests (fetches the listing)."""
    spec, plan = DATASETS.get(dataset), PLANS.get(dataset)
    if plan is None:
        raise SpecError(f"no download plan for dataset {dataset!r} (known: {', '.join(sorted(PLANS))})")
    files: list[RemoteFile] = []
    if m := _PHYSIONET_URL.match(spec.url):
        root = f"{(base_url or PHYSIONET).rstrip('/')}/{m['slug']}/{m['version']}"
        sums_url = f"{root}/SHA256SUMS.txt"
        sums = parse_sha256sums(_get_text(session, sums_url), sums_url)
        files += [RemoteFile(url=f"{root}/{p}", path=p, algorithm="sha256", digest=sums[p])
                  for p in _selected(sums, plan.include)]
    elif m := _ZENODO_URL.match(spec.url):
        base = (base_url or ZENODO).rstrip("/")
        api = f"{base}/api/records/{m['record']}"
        try:
            listing = {f["key"]: f for f in json.loads(_get_text(session, api))["files"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"unexpected Zenodo record listing: {exc}", api) from None
        for key in _selected(listing, plan.include):
            algorithm, _, digest = str(listing[key].get("checksum", "")).partition(":")
            if algorithm not in ("md5", "sha256") or not digest:
                raise DataError(f"no usable checksum for {key!r}: {listing[key].get('checksum')!r}", api)
            files.append(RemoteFile(url=f"{api}/files/{key}/content", path=_safe_relpath(key, api),
                                    algorithm=algorithm, digest=digest.lower()))
    else:
        raise SpecError(f"dataset {dataset!r}: cannot derive a download source from {spec.url!r}")
    if not files:
        raise DataError(f"the listing names no file matching {', '.join(plan.include)}", spec.url)
    files += [RemoteFile(url=f"{(base_url or GITHUB_RAW).rstrip('/')}/{src}", path=dest, algorithm="sha256",
                         digest=digest) for src, dest, digest in plan.pinned]
    return files


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fetch(session: requests.Session, remote: RemoteFile, dest: Path) -> None:
    """Put ``remote`` at ``dest``, verified; nothing is fetched when ``dest`` already has the right digest.

    Bytes go to ``dest.part``; an interrupted transfer (or a part file left by an earlier run)
    is resumed with ``Range: bytes=<size>-``. A server that ignores the range (200) restarts
    the part; one that says 416 has nothing more to send, and the part is verified as it is.
    """
    import requests

    if dest.is_file() and _digest(dest, remote.algorithm) == remote.digest:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last: Exception | None = None
    for _ in range(RETRIES + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with session.get(remote.url, headers=headers, stream=True, timeout=TIMEOUT) as resp:
                if resp.status_code == 416 and have:
                    break
                if resp.status_code == 200:
                    mode = "wb"
                elif resp.status_code == 206 and have:
                    if not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                        raise DataError(f"asked for bytes {have}- of {remote.url}, server sent "
                                        f"{resp.headers.get('Content-Range')!r}", dest)
                    mode = "ab"
                else:
                    raise DataError(f"HTTP {resp.status_code} for {remote.url}", dest)
                with open(part, mode) as fh:
                    for block in resp.iter_content(_CHUNK):
                        fh.write(block)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            last = exc  # the part file keeps what arrived; the next attempt asks for the rest
    else:
        raise DataError(f"transfer failed after {RETRIES + 1} attempts: {last}", remote.url)
    got = _digest(part, remote.algorithm)
    if got != remote.digest:
        part.unlink(missing_ok=True)
        raise DataError(f"{remote.algorithm} mismatch for {remote.path}: published {remote.digest}, "
                        f"downloaded {got} (file discarded)", dest)
    os.replace(part, dest)


def _extract(archive: Path, digest: str) -> None:
    """Unzip ``archive`` beside itself once per archive digest (a marker file records it).

    Members are extracted into a temporary folder first and then moved into place, so an
    interrupted extraction leaves no half-written member where a loader would find it.
    ``zipfile`` drops absolute paths and ``..`` components from member names.
    """
    marker = archive.with_name(f".{archive.name}.extracted")
    if marker.is_file() and marker.read_text().strip() == digest:
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", dir=archive.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot extract: {exc}", archive) from None
        for entry in sorted(tmp.iterdir()):
            target = archive.parent / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_atomic(marker, digest + "\n")


def download(datasets: list[str], data_dir: Path, *, base_url: str | None = None, progress: bool = True
             ) -> list[Path]:
    """Fetch ``datasets`` (registry ids) into ``data_dir/<id>/``; return those folders.

    Re-running skips verified files and resumes partial ones. Raises :class:`SpecError` for
    an unknown dataset and :class:`DataError` (naming the file) for a failed transfer or a
    checksum mismatch.
    """
    from tqdm.auto import tqdm

    unknown = [d for d in datasets if d not in PLANS]
    if unknown:
        raise SpecError(f"cannot download {', '.join(unknown)} (known: {', '.join(sorted(PLANS))})")
    data_dir = Path(data_dir).expanduser()
    session = _session()
    folders = []
    with session:
        for dataset in datasets:
            folder = data_dir / dataset
            files = list_files(dataset, session, base_url)
            for remote in tqdm(files, desc=dataset, unit="file", disable=not progress):
                dest = folder / remote.path
                fetch(session, remote, dest)
                if PLANS[dataset].extract and dest.suffix == ".zip":
                    _extract(dest, remote.digest)
            folders.append(folder)
    return folders
