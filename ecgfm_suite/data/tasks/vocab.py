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

# --- CODE-15%: the seed's six abnormalities (Ribeiro et al. 2020, Nat Commun 11:1760), harmonised ---
#: the Zenodo release's ``exams.csv`` columns, kept as the class names so results read as the seed's:
#: first-degree AV block, right and left bundle branch block (complete: QRS >= 120 ms), sinus
#: bradycardia, sinus tachycardia, atrial fibrillation
CODE15_ABNORMALITIES: tuple[str, ...] = ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")
AB_1DAVB, AB_RBBB, AB_LBBB, AB_SB, AB_ST, AB_AF = CODE15_ABNORMALITIES
#: ``normal_ecg`` of exams.csv; class 1 (positive) = normal
CODE15_NORMAL: tuple[str, ...] = ("abnormal_ecg", "normal_ecg")
#: classes only a rhythm statement decides: a record stating no rhythm cannot say whether they are present
ABNORMALITY_RHYTHMS: frozenset[str] = frozenset({AB_SB, AB_ST, AB_AF})
#: statement → (classes it may stand for, reason): a record holding it, and none of those classes by another
#: statement, cannot say whether they are present (unlabelled)
Unsure = dict[str, tuple[tuple[str, ...], str]]

#: LUDB statements (rhythm and conduction). Incomplete bundle branch blocks are not CODE's RBBB/LBBB, typical
#: flutter is not AF and a III degree block is not 1dAVb: those records are negative for the class.
ABNORMALITY_LUDB: dict[str, str] = {
    "i degree av block": AB_1DAVB, "complete right bundle branch block": AB_RBBB,
    "complete left bundle branch block": AB_LBBB, "sinus bradycardia": AB_SB, "sinus tachycardia": AB_ST,
    "atrial fibrillation": AB_AF,
}
#: PTB-XL SCP codes, on the same decisions: IRBBB/ILBBB, AFLT, 2AVB/3AVB are negative. Rhythm statements are
#: ``PTBXL_RHYTHM``.
ABNORMALITY_PTBXL: dict[str, str] = {
    "1AVB": AB_1DAVB, "CRBBB": AB_RBBB, "CLBBB": AB_LBBB, "SBRAD": AB_SB, "STACH": AB_ST, "AFIB": AB_AF,
}
#: LPR, a prolonged PR interval, is how first-degree AV block is defined (PR > 200 ms), yet PTB-XL's
#: cardiologists coded it apart from 1AVB (and the Challenge kept both codes): which they meant cannot be told
ABNORMALITY_PTBXL_UNSURE: Unsure = {
    "LPR": ((AB_1DAVB,), "prolonged PR interval (LPR) without 1AVB: first-degree AV block cannot be told"),
}
#: Challenge 2021 SNOMED CT codes (2021 dx_mapping tables): 270492004 IAVB; 59118001 RBBB and 713427006 CRBBB,
#: 164909002 LBBB and 733534002 CLBBB (the Challenge scores each pair as one; CRBBB-only sources such as its
#: PTB-XL copy write 713427006); 426177001 SB; 427084000 STach; 164889003 AF and its qualified forms 426749004
#: chronic, 282825002 paroxysmal, 314208002 rapid, 195080001 "AF and flutter". As above, 713426002 IRBBB,
#: 251120003 ILBBB, 164890007 AFL, 195042002 2nd degree and 27885002 complete heart block are negative.
ABNORMALITY_SNOMED: dict[str, str] = {
    "270492004": AB_1DAVB, "59118001": AB_RBBB, "713427006": AB_RBBB, "164909002": AB_LBBB,
    "733534002": AB_LBBB, "426177001": AB_SB, "427084000": AB_ST, "164889003": AB_AF, "426749004": AB_AF,
    "282825002": AB_AF, "314208002": AB_AF, "195080001": AB_AF,
}
ABNORMALITY_SNOMED_UNSURE: Unsure = {
    "6374002": ((AB_RBBB, AB_LBBB), "bundle branch block of unstated side (6374002): RBBB and LBBB cannot be told"),
    "233917008": ((AB_1DAVB,), "AV block of unstated degree (233917008): first-degree AV block cannot be told"),
    "204384007": ((AB_1DAVB,), "incomplete AV block of unstated degree (204384007): first-degree AV block "
                               "cannot be told"),
    "164947007": ((AB_1DAVB,), "prolonged PR interval (164947007) without 270492004: first-degree AV block "
                               "cannot be told"),
    "426627000": ((AB_SB,), "bradycardia of unstated rhythm (426627000) without 426177001: sinus bradycardia "
                            "cannot be told"),
}
#: SNOMED CT codes of the 2021 tables that state the rhythm (sinus and its variants, atrial, junctional and
#: ventricular rhythms and tachycardias, pacing); single ectopic or escape beats are not rhythms
CHALLENGE_RHYTHM_CODES: frozenset[str] = frozenset({
    "426783006", "426177001", "427084000", "164889003", "164890007", "427393009", "426627000", "10370003",
    "233892002", "61277005", "426664006", "195080001", "106068003", "713422000", "29320008", "251166008",
    "233897008", "74615001", "426749004", "49260003", "426648003", "282825002", "67198005", "425856008",
    "314208002", "17366009", "426761007", "81898007", "164896001", "111288001", "164895002", "195101003",
    "251268003", "251266004",
})
#: Challenge sources whose labels cannot say whether some of the six are present: per the 2021
#: dx_mapping_scored.csv counts no record of the source carries those classes' codes, so absence means
#: nothing there (tests check every zero count is covered here or below)
ABNORMALITY_SOURCE_GAPS: dict[str, str] = {
    "cpsc_2018": "CPSC 2018 labels 9 classes, neither sinus bradycardia nor sinus tachycardia (SB and STach "
                 "0 of 6,877 records): SB and ST cannot be told",
    "st_petersburg_incart": "St Petersburg INCART codes no first-degree AV block, LBBB or sinus bradycardia "
                            "(0 of 74 records): they cannot be told",
    "ptb": "PTB's labels are clinical diagnoses, not ECG statements (no IAVB, RBBB, LBBB or SB code among its "
           "516 records): the six cannot be told",
}
#: per Challenge source, statements that may hide a class there
ABNORMALITY_SOURCE_UNSURE: dict[str, Unsure] = {
    # every other source coding flutter codes AF too (e.g. Chapman-Shaoxing: AF 1,780, AFL 445)
    "ningbo": {"164890007": ((AB_AF,), "Ningbo codes no AF (0 of 34,905 records) but 7,615 atrial flutter "
                                       "(164890007): its AF may be coded as flutter, so AF cannot be told")},
}

# --- MIMIC-IV-ECG: the ECG machine's report statements (``machine_measurements.csv`` report_0 … report_17) ---
# Free text, one statement per cell, written by the carts' interpretation software (e.g. "Sinus rhythm",
# "Sinus rhythm with 1st degree A-V block", "Atrial fibrillation with PVC(s) or aberrant ventricular conduction.",
# "Possible right atrial abnormality"). Statements are matched, lower-cased and without the final '.', by the
# regular expressions below (``re.search``); a statement opening with a hedge ("possible", "probable",
# "consider", "borderline" but for the summary "Borderline ECG", ...) never counts as stating its finding.
MIMIC_HEDGE = r"^(possible|probable|consider|suspect|cannot rule out|rule out|questionable)\b|^borderline (?!ecg$)|\?"
#: a statement that names the rhythm: SB, ST and AF cannot be told without one
MIMIC_RHYTHM_STATEMENT = (r"\bsinus\b|\brhythm\b|fibrillation|flutter|tachycardia|bradycardia|\bpaced\b|pacing"
                          r"|pacemaker")
#: harmonised rhythm ← statement pattern (sinus arrhythmia alone, junctional, paced ... rhythms have no class)
MIMIC_HARMONISED_RHYTHM: dict[str, str] = {
    r"\bsinus rhythm\b": SR, r"\bsinus bradycardia\b": SB, r"\bsinus tachycardia\b": STACH,
    r"\batrial fibrillation\b": AF_AFL, r"\batrial flutter\b": AF_AFL,
}
#: the seed's six ← statement pattern, on the decisions above: an incomplete bundle branch block is not CODE's
#: RBBB/LBBB, flutter is not AF, a higher-degree block is not 1dAVb (those records are negative for the class)
MIMIC_ABNORMALITY: dict[str, str] = {
    r"\b(1st|first)[ -]degree a-?v block\b": AB_1DAVB,
    r"(?<!incomplete )\bright bundle branch block\b|\brbbb\b": AB_RBBB,
    r"(?<!incomplete )\bleft bundle branch block\b|\blbbb\b": AB_LBBB,
    r"\bsinus bradycardia\b": AB_SB, r"\bsinus tachycardia\b": AB_ST, r"\batrial fibrillation\b": AB_AF,
}
#: statement pattern → (classes it may stand for, reason), as ``Unsure`` above
MIMIC_ABNORMALITY_UNSURE: dict[str, tuple[tuple[str, ...], str]] = {
    r"(?<!right )(?<!left )\bbundle branch block\b": (
        (AB_RBBB, AB_LBBB), "bundle branch block of unstated side: RBBB and LBBB cannot be told"),
    r"(?<!degree )(?<!complete )\ba-?v block\b": (
        (AB_1DAVB,), "A-V block of unstated degree: first-degree AV block cannot be told"),
    r"\b(prolonged|long) pr\b": (
        (AB_1DAVB,), "prolonged PR interval without first-degree A-V block: it cannot be told"),
}
#: the MIMIC-IV-ECG statements task: findings that 12-lead machine reads state often (classes too rare in the
#: data at hand are dropped at build time, with the counts); class ← statement pattern, several may match
MIMIC_STATEMENTS: dict[str, str] = {
    "sinus_rhythm": r"\bsinus rhythm\b",
    "sinus_bradycardia": r"\bsinus bradycardia\b",
    "sinus_tachycardia": r"\bsinus tachycardia\b",
    "sinus_arrhythmia": r"\bsinus arrhythmia\b",
    "atrial_fibrillation": r"\batrial fibrillation\b",
    "atrial_flutter": r"\batrial flutter\b",
    "pvc": r"\bpvcs?\b|\bpvc\(s\)|premature ventricular|ventricular premature",
    "pac": r"\bapcs?\b|\bapc\(s\)|\bpacs?\b|\bpac\(s\)|premature atrial|atrial premature|premature supraventricular",
    "first_degree_av_block": r"\b(1st|first)[ -]degree a-?v block\b",
    "rbbb": r"(?<!incomplete )\bright bundle branch block\b",
    "incomplete_rbbb": r"\bincomplete right bundle branch block\b",
    "lbbb": r"(?<!incomplete )\bleft bundle branch block\b",
    "left_anterior_fascicular_block": r"\bleft anterior (fascicular block|hemiblock)\b",
    "left_axis_deviation": r"\bleft axis deviation\b",
    "right_axis_deviation": r"\bright axis deviation\b",
    "lvh": r"\bleft ventricular hypertrophy\b",
    "left_atrial_abnormality": r"\bleft atrial (abnormality|enlargement)\b",
    "low_qrs_voltage": r"\blow qrs voltages?\b",
    "prolonged_qt": r"\b(prolonged|long) qt\b",
    "poor_r_wave_progression": r"\bpoor r[- ]wave progression\b",
    "infarct": r"\binfarct",
    "st_t_abnormality": r"\bst-t\b|\bst (segment )?(depression|elevation|changes?|abnormalit)|\bt[- ]wave",
    "paced": r"\bpaced\b|\bpacing\b|\bpacemaker\b",
    "normal_ecg": r"^normal ecg$",
    "abnormal_ecg": r"^abnormal ecg$",
    "borderline_ecg": r"^borderline ecg$",
}
#: plausible interval durations in ms from the machine's onsets and offsets (qrs_end − qrs_onset; t_end −
#: qrs_onset): a normal QRS lasts 80–120 ms and the widest (paced, hyperkalaemic, bundle branch block) stay under
#: 250; a QT outside 200–700 ms is a mismeasured T end, not a patient. Outside them a value is excluded.
MIMIC_PLAUSIBLE_QRS_MS: tuple[float, float] = (40.0, 250.0)
MIMIC_PLAUSIBLE_QT_MS: tuple[float, float] = (200.0, 700.0)
