"""The registered tasks. Importing this module reads no data and imports only the stdlib.

Class sets come from ``vocab``; classes too rare in the data at hand are dropped at build time
with a logged reason.
"""

from __future__ import annotations

from .spec import TASKS, TaskSpec, register

__all__ = ["TASKS"]
from .vocab import (
    CHALLENGE_SCORED,
    CINC2017_CLASSES,
    CODE15_ABNORMALITIES,
    CODE15_NORMAL,
    HARMONISED_RHYTHM,
    LUDB_AXIS,
    LUDB_CONDUCTION,
    LUDB_RHYTHM,
    MIMIC_STATEMENTS,
    PTBXL_FORM,
    PTBXL_RHYTHM,
    PTBXL_SUBDIAG,
    PTBXL_SUPERDIAG,
    SEX,
    classes_of,
)

_M = "ecgfm_suite.data.tasks"
_ALL = ("ludb", "brugada_huca", "ptbxl", "challenge2021", "code15", "cinc2017")
_RU, _ES, _DE, _BR, _US = ("Russia",), ("Spain",), ("Germany",), ("Brazil",), ("USA",)
_SEX = tuple(sorted(SEX.values()))  # ("female", "male"): male is the positive class


def _clf(id: str, name: str, datasets: tuple[str, ...], type: str, classes: tuple[str, ...], labeler: str,
         regions: tuple[str, ...], description: str, split: str = "stratified") -> TaskSpec:
    return TaskSpec(id=id, name=name, datasets=datasets, type=type, classes=classes, main_metric="auroc",
                    labeler=f"{_M}.{labeler}", regions=regions, split=split, description=description)


def _regression(id: str, name: str, datasets: tuple[str, ...], labeler: str, regions: tuple[str, ...],
                description: str) -> TaskSpec:
    return TaskSpec(id=id, name=name, datasets=datasets, type="regression", classes=(), main_metric="mae",
                    labeler=f"{_M}.{labeler}", regions=regions, min_positives=10, description=description)


def _age(id: str, name: str, datasets: tuple[str, ...], regions: tuple[str, ...], description: str) -> TaskSpec:
    return _regression(id, name, datasets, "demographics:age", regions, description)


_SPECS = [
    # LUDB (Russia)
    _clf("ludb_rhythm", "LUDB rhythm", ("ludb",), "multiclass", classes_of(LUDB_RHYTHM), "ludb:rhythm", _RU,
         "rhythm statement of ludb.csv; 'irregular sinus rhythm' records are unlabelled"),
    _clf("ludb_axis", "LUDB electric axis", ("ludb",), "multiclass", classes_of(LUDB_AXIS), "ludb:axis", _RU,
         "electric axis of the heart"),
    _clf("ludb_conduction", "LUDB conduction abnormalities", ("ludb",), "multilabel", classes_of(LUDB_CONDUCTION),
         "ludb:conduction", _RU, "conduction abnormality statements; none = every class negative"),
    _clf("ludb_lvh", "LUDB left ventricular hypertrophy", ("ludb",), "binary", ("no_lvh", "lvh"), "ludb:lvh", _RU,
         "'left ventricular hypertrophy' among the hypertrophy statements"),
    _clf("ludb_ischemia", "LUDB ischemia/scar/STEMI", ("ludb",), "binary", ("no_ischemia", "ischemia"),
         "ludb:ischemia", _RU, "any ischemia, scar or STEMI statement"),
    _clf("ludb_sex", "LUDB sex", ("ludb",), "binary", _SEX, "demographics:sex", _RU, "sex from the header"),
    _age("ludb_age", "LUDB age", ("ludb",), _RU, "age in years from the header"),
    # Brugada-HUCA (Spain): labels only in metadata.csv
    _clf("brugada_huca_brugada", "Brugada syndrome", ("brugada_huca",), "binary", ("no_brugada", "brugada"),
         "brugada:brugada", _ES, "metadata.csv brugada 0 vs 1/2"),
    _clf("brugada_huca_basal_pattern", "Brugada basal type-1 pattern", ("brugada_huca",), "binary",
         ("no_basal_pattern", "basal_pattern"), "brugada:basal_pattern", _ES, "metadata.csv basal_pattern"),
    _clf("brugada_huca_sudden_death", "Brugada sudden death", ("brugada_huca",), "binary",
         ("no_sudden_death", "sudden_death"), "brugada:sudden_death", _ES, "metadata.csv sudden_death"),
    # PTB-XL (Germany): the authors' aggregation and official folds
    _clf("ptbxl_superdiag", "PTB-XL diagnostic superclasses", ("ptbxl",), "multilabel", PTBXL_SUPERDIAG,
         "ptbxl:superdiag", _DE, "5 diagnostic superclasses", split="official"),
    _clf("ptbxl_subdiag", "PTB-XL diagnostic subclasses", ("ptbxl",), "multilabel", PTBXL_SUBDIAG,
         "ptbxl:subdiag", _DE, "23 diagnostic subclasses", split="official"),
    _clf("ptbxl_form", "PTB-XL form statements", ("ptbxl",), "multilabel", PTBXL_FORM, "ptbxl:form", _DE,
         "19 form statements", split="official"),
    _clf("ptbxl_rhythm", "PTB-XL rhythm statements", ("ptbxl",), "multilabel", PTBXL_RHYTHM, "ptbxl:rhythm",
         _DE, "12 rhythm statements", split="official"),
    # Challenge 2021: each source its own region
    _clf("challenge2021_dx", "Challenge 2021 scored diagnoses", ("challenge2021",), "multilabel",
         tuple(CHALLENGE_SCORED), "challenge:dx", ("China", "USA", "Germany", "Russia"),
         "the 26 scored classes (equivalent codes merged); those present in the data"),
    # CODE-15% (Brazil)
    _clf("code15_chagas", "CODE-15% Chagas disease", ("code15",), "binary", ("no_chagas", "chagas"),
         "code15:chagas", _BR, "Chagas label of the Challenge 2025 conversion"),
    _clf("code15_abnormalities", "CODE-15% abnormalities (the seed's six)", ("code15",), "multilabel",
         CODE15_ABNORMALITIES, "code15:abnormalities", _BR,
         "1dAVb, RBBB, LBBB, SB, ST, AF of the Zenodo release's exams.csv; none = every class negative"),
    _clf("code15_normal_ecg", "CODE-15% normal ECG", ("code15",), "binary", CODE15_NORMAL, "code15:normal_ecg",
         _BR, "normal_ecg of the Zenodo release's exams.csv"),
    # CinC 2017 (USA, single lead)
    _clf("cinc2017_af", "CinC 2017 AF classification", ("cinc2017",), "multiclass", CINC2017_CLASSES,
         "cinc2017:af", _US, "normal / AF / other rhythm / noisy, single lead"),
    # MIMIC-IV-ECG (USA): the ECG machine's report statements and measurements
    _clf("mimic_iv_ecg_statements", "MIMIC-IV-ECG machine statements", ("mimic_iv_ecg",), "multilabel",
         tuple(MIMIC_STATEMENTS), "mimic_iv_ecg:statements", _US,
         "findings frequent in 12-lead machine reads, matched in report_0..report_17; hedged statements are not "
         "findings; none = every class negative"),
    _regression("mimic_iv_ecg_qrs_duration", "MIMIC-IV-ECG QRS duration", ("mimic_iv_ecg",),
                "mimic_iv_ecg:qrs_duration", _US, "qrs_end - qrs_onset of machine_measurements.csv, ms"),
    _regression("mimic_iv_ecg_qt_interval", "MIMIC-IV-ECG QT interval", ("mimic_iv_ecg",),
                "mimic_iv_ecg:qt_interval", _US, "t_end - qrs_onset of machine_measurements.csv, ms"),
    # harmonised cross-continental tasks
    _clf("rhythm", "Harmonised rhythm (cross-continental)",
         ("ludb", "ptbxl", "challenge2021", "cinc2017", "mimic_iv_ecg"),
         "multiclass", HARMONISED_RHYTHM, "harmonised:rhythm", ("Russia", "Germany", "China", "USA"),
         "sinus rhythm / bradycardia / tachycardia / AF-or-flutter mapped from each dataset's vocabulary"),
    _clf("abnormalities", "Harmonised CODE-15% abnormalities (cross-continental)",
         ("ludb", "ptbxl", "challenge2021", "code15", "mimic_iv_ecg"), "multilabel", CODE15_ABNORMALITIES,
         "harmonised:abnormalities", ("Russia", "Germany", "China", "USA", "Brazil"),
         "the seed's six (1dAVb, RBBB, LBBB, SB, ST, AF) mapped from each dataset's vocabulary; a record whose "
         "source cannot say whether a class is present is unlabelled"),
    _clf("sex", "Sex (cross-continental)", _ALL, "binary", _SEX, "demographics:sex",
         ("Russia", "Spain", "Germany", "China", "USA", "Brazil"), "sex from every dataset that records it"),
    _age("age", "Age (cross-continental)", _ALL, ("Russia", "Spain", "Germany", "China", "USA", "Brazil"),
         "age in years from every dataset that records it"),
]
for _spec in _SPECS:
    register(_spec)
