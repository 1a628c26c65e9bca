"""Label vocabularies: each dataset's statements/codes → task classes (stdlib only).

One place for the mappings, so the catalog declares class sets and the labelers map records
from the same tables. Sources: the data README vocabularies (LUDB), ``scp_statements.csv``
(PTB-XL), the 2021 ``weights.csv``/``weights_abbreviations.csv`` headers (Challenge), and
REFERENCE.csv's classes (CinC 2017); the tests cross-check these against the files.
"""

from __future__ import annotations

from collections.abc import Mapping


def classes_of(mapping: Mapping[str, str]) -> tuple[str, ...]:
    """The distinct classes of a mapping, in first-seen order."""
    return tuple(dict.fromkeys(mapping.values()))


# --- LUDB (statements normalised by the loader: lower case, stripped, no final '.') ---
#: rhythm statements that name a rhythm (README counts: sinus rhythm 143, sinus bradycardia 25,
#: AF 15, sinus arrhythmia 8, sinus tachycardia 4, typical flutter 3). "wandering atrial pacemaker"
#: only ever appears beside one of these and "aberrant conduction" beside AF: they qualify the
#: rhythm and are not classes. "irregular sinus rhythm" (2 records) has no class: unlabelled.
LUDB_RHYTHM: dict[str, str] = {
    "sinus rhythm": "sinus_rhythm",
    "sinus bradycardia": "sinus_bradycardia",
    "sinus tachycardia": "sinus_tachycardia",
    "sinus arrhythmia": "sinus_arrhythmia",
    "atrial fibrillation": "atrial_fibrillation",
    "atrial flutter, typical": "atrial_flutter",
}
LUDB_AXIS: dict[str, str] = {
    "normal": "normal",
    "left axis deviation": "left_axis_deviation",
    "vertical": "vertical",
    "horizontal": "horizontal",
    "right axis deviation": "right_axis_deviation",
}
#: spellings as published ("intravintricular", "av-block")
LUDB_CONDUCTION: dict[str, str] = {
    "incomplete right bundle branch block": "irbbb",
    "complete right bundle branch block": "crbbb",
    "incomplete left bundle branch block": "ilbbb",
    "complete left bundle branch block": "clbbb",
    "left anterior hemiblock": "lahb",
    "i degree av block": "avb1",
    "iii degree av-block": "avb3",
    "non-specific intravintricular conduction delay": "ivcd",
    "sinoatrial blockade, undefined": "sa_block",
}

# --- PTB-XL (scp_statements.csv 1.0.x) ---
PTBXL_SUPERDIAG: tuple[str, ...] = ("NORM", "MI", "STTC", "CD", "HYP")
PTBXL_SUBDIAG: tuple[str, ...] = (
    "AMI", "CLBBB", "CRBBB", "ILBBB", "IMI", "IRBBB", "ISCA", "ISCI", "ISC_", "IVCD", "LAFB/LPFB", "LAO/LAE",
    "LMI", "LVH", "NORM", "NST_", "PMI", "RAO/RAE", "RVH", "SEHYP", "STTC", "WPW", "_AVB",
)
PTBXL_FORM: tuple[str, ...] = (
    "NDT", "NST_", "DIG", "LNGQT", "ABQRS", "PVC", "STD_", "VCLVH", "QWAVE", "LOWT", "NT_", "PAC", "LPR", "INVT",
    "LVOLT", "HVOLT", "TAB_", "STE_", "PRC(S)",
)
PTBXL_RHYTHM: tuple[str, ...] = (
    "SR", "AFIB", "STACH", "SARRH", "SBRAD", "PACE", "SVARR", "BIGU", "AFLT", "SVTAC", "PSVT", "TRIGU",
)

# --- Challenge 2021: the scored classes; "a|b" = codes scored as one class (weights.csv header) ---
CHALLENGE_SCORED: dict[str, tuple[str, ...]] = {
    "AF": ("164889003",), "AFL": ("164890007",), "BBB": ("6374002",), "Brady": ("426627000",),
    "CLBBB|LBBB": ("733534002", "164909002"), "CRBBB|RBBB": ("713427006", "59118001"),
    "IAVB": ("270492004",), "IRBBB": ("713426002",), "LAD": ("39732003",), "LAnFB": ("445118002",),
    "LPR": ("164947007",), "LQRSV": ("251146004",), "LQT": ("111975006",), "NSIVCB": ("698252002",),
    "NSR": ("426783006",), "PAC|SVPB": ("284470004", "63593006"), "PR": ("10370003",),
    "PRWP": ("365413008",), "PVC|VPB": ("427172004", "17338001"), "QAb": ("164917005",),
    "RAD": ("47665007",), "SA": ("427393009",), "SB": ("426177001",), "STach": ("427084000",),
    "TAb": ("164934002",), "TInv": ("59931005",),
}
CHALLENGE_CODE_TO_CLASS: dict[str, str] = {code: cls for cls, codes in CHALLENGE_SCORED.items() for code in codes}

# --- CinC 2017: REFERENCE.csv classes (N normal, A AF, O other rhythm, ~ noisy) ---
CINC2017_CLASSES: tuple[str, ...] = ("N", "A", "O", "~")

# --- demographics ---
SEX: dict[str, str] = {"F": "female", "M": "male"}  # class 1 (positive) = male

# --- harmonised cross-continental rhythm ---
SR, SB, STACH, AF_AFL = "sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "af_or_flutter"
HARMONISED_LUDB: dict[str, str] = {
    "sinus rhythm": SR, "sinus bradycardia": SB, "sinus tachycardia": STACH,
    "atrial fibrillation": AF_AFL, "atrial flutter, typical": AF_AFL,
}
#: SNOMED CT: 426783006 NSR, 426177001 SB, 427084000 STach, 164889003 AF, 164890007 AFL
HARMONISED_SNOMED: dict[str, str] = {
    "426783006": SR, "426177001": SB, "427084000": STACH, "164889003": AF_AFL, "164890007": AF_AFL,
}
HARMONISED_PTBXL: dict[str, str] = {"SR": SR, "SBRAD": SB, "STACH": STACH, "AFIB": AF_AFL, "AFLT": AF_AFL}
#: O (other rhythm) and ~ (noisy) name no harmonised rhythm
HARMONISED_CINC2017: dict[str, str] = {"N": SR, "A": AF_AFL}
HARMONISED_RHYTHM: tuple[str, ...] = (SR, SB, STACH, AF_AFL)
