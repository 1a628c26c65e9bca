"""Lead names in headers: unknown (a garbled signal line) or repeated names exclude the record in every loader.

Accepted, a garbled name would leave the real lead missing and zero-filled by every model that reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.data.datasets import brugada, challenge, cinc2017, code15, ludb, ptbxl
from ecgfm_suite.data.reader import read_signal
from ecgfm_suite.data.records import DatasetIndex, record_leads
from ecgfm_suite.errors import RecordError
from fixtures.challenge_layouts import (
    ecg_like,
    write_challenge_record,
    write_code15_record,
    write_dx_table,
)
from fixtures.layouts import (
    STD_LEADS,
    write_brugada,
    write_cinc2017,
    write_ludb,
    write_ptbxl,
    write_record,
)


def rename_lead(hea: Path, signal: int, name: str) -> None:
    """Replace the lead name (last field) of the ``signal``-th signal line (0-based) of a header."""
    lines = hea.read_text().splitlines()
    body = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    i = body[1 + signal]
    lines[i] = lines[i].rstrip().rsplit(" ", 1)[0] + f" {name}"
    hea.write_text("\n".join(lines) + "\n")


def _ludb(root: Path) -> tuple[Callable[[Path], DatasetIndex], Path, int]:
    write_ludb(root)
    return ludb.scan, root / "data" / "2.hea", 4


def _ptbxl(root: Path) -> tuple[Callable[[Path], DatasetIndex], Path, int]:
    write_ptbxl(root, records500=False)
    return ptbxl.scan, root / "records100" / "00000" / "00002_lr.hea", 4


def _brugada(root: Path) -> tuple[Callable[[Path], DatasetIndex], Path, int]:
    write_brugada(root)
    return brugada.scan, root / "files" / "251972" / "251972.hea", 3


def _code15(root: Path) -> tuple[Callable[[Path], DatasetIndex], Path, int]:
    rng = np.random.default_rng(0)
    for exam in ("101", "102", "103"):
        write_code15_record(root / "exams_part0", exam, ecg_like(12, 2000, 400, rng), patient_id=exam, age="50",
                            sex="Male", chagas="False")
    return code15.scan, root / "exams_part0" / "102.hea", 3


def _challenge(root: Path) -> tuple[Callable[[Path], DatasetIndex], Path, int]:
    rng = np.random.default_rng(0)
    for name in ("A0001", "A0002", "A0003"):
        write_challenge_record(root / "cpsc_2018", name, ecg_like(12, 5000, 500, rng), fs=500, leads=STD_LEADS,
                               dx=("426783006",))
    write_dx_table(root / "dx_mapping_scored.csv")
    return challenge.scan, root / "cpsc_2018" / "A0002.hea", 3


LOADERS = {"ludb": _ludb, "ptbxl": _ptbxl, "brugada": _brugada, "code15": _code15, "challenge": _challenge}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize(("name", "reason"), [
    ("V3 0.2 junk", "signal 9 names an unknown lead 'V3 0.2 junk'"),  # a signal line with a field too many
    ("12", "signal 9 names an unknown lead '12'"),
    ("V2", "lead V2 named more than once"),
    ("v2", "lead V2 named more than once"),  # the same lead after canonicalisation
])
def test_unknown_or_repeated_lead_excludes_the_record(loader: str, name: str, reason: str, tmp_path: Path) -> None:
    scan, hea, n_records = LOADERS[loader](tmp_path / loader)
    before = scan(tmp_path / loader)
    assert len(before.records) == n_records and not before.excluded
    rename_lead(hea, 8, name)  # V3
    index = scan(tmp_path / loader)
    assert len(index.records) == n_records - 1
    [ex] = index.excluded
    assert ex.record.endswith(hea.stem) and reason in ex.reason and ex.reason.startswith(f"{hea.name}: ")
    assert all("V3" in leads.split(",") for leads in index.records["leads"])
    with pytest.raises(RecordError, match=reason) as err:
        scan(tmp_path / loader, strict=True)
    assert err.value.path == str(hea)


def test_cinc2017_lead_must_be_named_ecg(tmp_path: Path) -> None:
    written = write_cinc2017(tmp_path)
    hea = written.root / "A00003.hea"
    rename_lead(hea, 0, "0 ECG")
    index = cinc2017.scan(written.root)
    assert len(index.records) == len(written.labels) - 1
    [ex] = index.excluded
    assert ex.record == "A00003" and "signal 1 names lead '0 ECG', CinC 2017 headers name it ECG" in ex.reason


def test_reader_refuses_a_garbled_lead_name(tmp_path: Path) -> None:
    path = write_record(tmp_path, "r", n_leads=12, n_samples=1000)
    assert read_signal({"path": str(path), "format": "wfdb"}).leads == STD_LEADS
    rename_lead(path.with_name("r.hea"), 0, "I garbage")
    with pytest.raises(RecordError, match="signal 1 names an unknown lead 'I garbage'") as err:
        read_signal({"path": str(path), "format": "wfdb"})
    assert err.value.path == str(path) + ".hea"
    with pytest.raises(RecordError, match="lead I named more than once"):
        read_signal({"path": str(path), "format": "wfdb", "leads": ",".join(("I", *STD_LEADS[:-1]))})


def test_record_leads_canonicalises_known_names() -> None:
    assert record_leads(["i", "AVR", " aVl ", "v6"], "x.hea") == ("I", "aVR", "aVL", "V6")
    with pytest.raises(RecordError, match="signal 2 names an unknown lead None"):
        record_leads(["I", None], "x.hea")
