"""Dataset registry. Each dataset module exports ``SPEC`` fields here and ``scan(root)``.

Datasets are recognised by content (a marker file or header comment), not folder names,
so any layout of a user's download is found.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...registry import Registry


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetSpec:
    id: str
    name: str
    version: str
    regions: tuple[str, ...]
    licence: str
    url: str
    #: how the dataset is recognised below the data dir (documentation; ``finder`` does it)
    marker: str
    #: "module:attr" of ``find_roots(data_dir) -> list[Path]``
    finder: str
    #: "module:attr" of ``scan(root, strict=False) -> DatasetIndex``
    scanner: str
    #: "module:attr" of ``outside_files(root) -> list[Path]``: the files outside the root that ``scan`` may read
    #: (existing or not), which the index cache watches besides the root's own; None: the scan reads only the root
    reads_outside: str | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")

_M = "ecgfm_suite.data.datasets"
for _spec in (
    DatasetSpec(id="ludb", name="LUDB", version="1.0.1", regions=("Russia",), licence="ODC-By-1.0",
                url="https://physionet.org/content/ludb/1.0.1/", marker="ludb.csv",
                finder=f"{_M}.ludb:find_roots", scanner=f"{_M}.ludb:scan"),
    DatasetSpec(id="brugada_huca", name="Brugada-HUCA", version="1.0.0", regions=("Spain",),
                licence="see PhysioNet page", url="https://physionet.org/content/brugada-huca/1.0.0/",
                marker="metadata.csv or files/<id>/<id>.hea",
                finder=f"{_M}.brugada:find_roots", scanner=f"{_M}.brugada:scan"),
    DatasetSpec(id="challenge2021", name="PhysioNet/CinC Challenge 2020/2021", version="1.0.3",
                regions=("China", "USA", "Germany", "Russia"), licence="CC-BY-4.0",
                url="https://physionet.org/content/challenge-2021/1.0.3/", marker="#Dx: header comment",
                finder=f"{_M}.challenge:find_roots", scanner=f"{_M}.challenge:scan",
                reads_outside=f"{_M}.challenge:outside_files"),
    # either form or both (one record per exam): the Zenodo release, and the Challenge 2025 WFDB conversion
    DatasetSpec(id="code15", name="CODE-15% (Zenodo release and/or Challenge 2025 WFDB)", version="2025",
                regions=("Brazil",), licence="CC-BY-4.0", url="https://zenodo.org/records/4916206",
                marker="exams.csv with exams_part*.hdf5, or WFDB headers with a '# Chagas label:' comment",
                finder=f"{_M}.code15_forms:find_roots", scanner=f"{_M}.code15_forms:scan"),
    DatasetSpec(id="cinc2017", name="PhysioNet/CinC Challenge 2017 (AF)", version="1.0.0",
                regions=("USA",), licence="see PhysioNet page",
                url="https://physionet.org/content/challenge-2017/1.0.0/", marker="REFERENCE.csv",
                finder=f"{_M}.cinc2017:find_roots", scanner=f"{_M}.cinc2017:scan"),
    DatasetSpec(id="ptbxl", name="PTB-XL", version="1.0.3", regions=("Germany",), licence="CC-BY-4.0",
                url="https://physionet.org/content/ptb-xl/1.0.3/", marker="ptbxl_database.csv",
                finder=f"{_M}.ptbxl:find_roots", scanner=f"{_M}.ptbxl:scan"),
    # open access on PhysioNet (no credentialing, unlike the MIMIC-IV clinical modules): 800,035 ECGs, ~90 GB
    DatasetSpec(id="mimic_iv_ecg", name="MIMIC-IV-ECG", version="1.0", regions=("USA",), licence="see PhysioNet page",
                url="https://physionet.org/content/mimic-iv-ecg/1.0/",
                marker="record_list.csv, or WFDB records under files/pNNNN/pXXXXXXXX/sYYYYYYYY/",
                finder=f"{_M}.mimic_iv_ecg:find_roots", scanner=f"{_M}.mimic_iv_ecg:scan"),
):
    DATASETS.register(_spec.id, _spec)
