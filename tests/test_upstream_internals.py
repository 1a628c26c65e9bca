"""Pins for the private internals of other libraries that ecgfm_suite keeps using, each for a measured reason
stated in the using module's docstring:

- wfdb ``wfdb.io._signal._rd_segment`` and ``Record._arrange_fields`` (``data/reader.py``: ``decode_samples``);
- neurokit2 ``neurokit2.ecg.ecg_delineate._prominence_ecg_delineator`` (``models/controls.py``);
- numba's dispatcher uuid slot ``_MemoMixin__uuid`` and ``_set_uuid`` (``analysis/_jit_cache.py``), with
  the names of shap's kernels that its fallback leaves uncached.

Beside them, the things those modules assume of the libraries' undocumented but non-underscore API
(wfdb's header grammar and signal-format sizes, numba's ``stats``/``enable_caching``) are checked by
behaviour. Each check fails with a message naming the installed and the verified version, the code that
depends on it and what to re-check; a version change alone fails nothing.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import pickle
import subprocess
import sys
import warnings
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import wfdb

from ecgfm_suite.analysis import _jit_cache
from ecgfm_suite.data.reader import (
    BYTES_PER_SAMPLE,
    COMPRESSED_FMTS,
    decode_samples,
    read_header,
    signal_length_problem,
)
from ecgfm_suite.models import controls

#: the versions these pins were last verified against (2026-12-07)
VERIFIED = {"wfdb": "4.3.1", "neurokit2": "0.3.0", "numba": "0.68.1", "shap": "0.51.0"}
REPO = Path(__file__).resolve().parents[1]


def changed(lib: str, what: str, where: str, recheck: str) -> str:
    """The failure message: which library changed how, who depends on it, what to re-check."""
    return (f"{lib} {version(lib)} (these pins were verified against {VERIFIED[lib]}): {what}. "
            f"Depends on it: {where}. Re-check: {recheck}")


def _check_params(lib: str, func: object, name: str, passed: list[str], *, positional: bool, where: str,
                  recheck: str) -> None:
    """``func`` still takes ``passed`` (by name, or in that order when ``positional``) and requires nothing else."""
    assert callable(func), changed(lib, f"{name} is gone", where, recheck)
    params = [p for p in inspect.signature(func).parameters.values() if p.name != "self"]
    names = [p.name for p in params]
    if positional:
        assert names[: len(passed)] == passed, changed(lib, f"{name}{inspect.signature(func)} no longer starts "
                                                       f"with {passed}", where, recheck)
    else:
        missing = [p for p in passed if p not in names]
        assert not missing, changed(lib, f"{name}{inspect.signature(func)} lost {missing}", where, recheck)
    required = [p.name for p in params if p.default is p.empty and p.name not in passed
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not required, changed(lib, f"{name} now also requires {required}", where, recheck)


# --------------------------------------------------------------------------------------------------- wfdb

WFDB_WHERE = "ecgfm_suite/data/reader.py: decode_samples (read_signal's decode, kept for speed)"
WFDB_RECHECK = ("decode_samples against the single-segment branch of wfdb.rdrecord (wfdb/io/record.py) and "
                "update it, or make read_signal call wfdb.rdrecord (public, several times slower: measure again "
                "and update the README's read figure)")


def test_wfdb_private_decoder_names_and_signatures() -> None:
    try:
        signal_module = importlib.import_module("wfdb.io._signal")
    except ImportError:
        pytest.fail(changed("wfdb", "module wfdb.io._signal is gone", WFDB_WHERE, WFDB_RECHECK))
    check = {"where": WFDB_WHERE, "recheck": WFDB_RECHECK}
    _check_params("wfdb", getattr(signal_module, "_rd_segment", None), "wfdb.io._signal._rd_segment",
                  ["file_name", "dir_name", "pn_dir", "fmt", "n_sig", "sig_len", "byte_offset", "samps_per_frame",
                   "skew", "init_value", "sampfrom", "sampto", "channels", "ignore_skew", "return_res"],
                  positional=False, **check)
    record = wfdb.Record
    _check_params("wfdb", getattr(record, "_arrange_fields", None), "Record._arrange_fields",
                  ["channels", "sampfrom", "smooth_frames"], positional=False, **check)
    # non-underscore methods that decode_samples calls as rdrecord does (positional ones in rdrecord's order)
    _check_params("wfdb", getattr(record, "check_read_inputs", None), "Record.check_read_inputs",
                  ["sampfrom", "sampto", "channels", "physical", "smooth_frames", "return_res"], positional=True,
                  **check)
    _check_params("wfdb", getattr(record, "dac", None), "Record.dac", ["expanded", "return_res", "inplace"],
                  positional=False, **check)
    _check_params("wfdb", getattr(record, "convert_dtype", None), "Record.convert_dtype",
                  ["physical", "return_res", "smooth_frames"], positional=True, **check)


def _assert_decodes_as_rdrecord(record: Path, layout: str) -> None:
    """``decode_samples`` gives every field of ``wfdb.rdrecord(physical=True)``, arrays bit for bit."""
    theirs = vars(wfdb.rdrecord(str(record)))
    what = f"decode_samples no longer gives what wfdb.rdrecord gives for {layout}"
    try:
        ours = vars(decode_samples(read_header(record), record))
    except Exception as exc:  # noqa: BLE001 - any failure of the private path is the news
        pytest.fail(changed("wfdb", f"{what}: it raises {type(exc).__name__}: {exc}", WFDB_WHERE, WFDB_RECHECK))
    assert ours.keys() == theirs.keys(), changed("wfdb", f"{what} (fields {sorted(ours.keys() ^ theirs.keys())})",
                                                  WFDB_WHERE, WFDB_RECHECK)
    for name, value in theirs.items():
        if isinstance(value, np.ndarray):
            same = ours[name].dtype == value.dtype and np.array_equal(ours[name], value, equal_nan=True)
        else:
            same = repr(ours[name]) == repr(value)
        assert same, changed("wfdb", f"{what} (field {name!r})", WFDB_WHERE, WFDB_RECHECK)


SIZE_WHERE = "ecgfm_suite/data/reader.py: BYTES_PER_SAMPLE, signal_length_problem (run on every scanned record)"
SIZE_RECHECK = "BYTES_PER_SAMPLE against the WFDB signal(5) specification and wfdb's reader (wfdb/io/_signal.py)"


@pytest.mark.parametrize("fmt", sorted(BYTES_PER_SAMPLE, key=int))
def test_wfdb_reads_exactly_the_bytes_our_size_check_expects(tmp_path: Path, fmt: str) -> None:
    """A file of the size ``BYTES_PER_SAMPLE`` gives decodes (identically through the private decoder); one frame
    less does not. So the size check neither passes files wfdb cannot read nor flags ones it can."""
    n, m = 300, 2
    (tmp_path / "r.hea").write_text(f"r {m} 250 {n}\n" + "".join(f"r.dat {fmt} 40 16 0 0 0 0 S{i}\n"
                                                                   for i in range(m)))
    size = n * m * BYTES_PER_SAMPLE[fmt]
    data = np.random.default_rng(int(fmt)).integers(0, 256, int(size), dtype=np.uint8).tobytes()
    (tmp_path / "r.dat").write_bytes(data)
    assert signal_length_problem(read_header(tmp_path / "r"), tmp_path) is None
    try:
        full = wfdb.rdrecord(str(tmp_path / "r")).p_signal.shape
    except ValueError as exc:
        pytest.fail(changed("wfdb", f"format {fmt}: wfdb cannot read {n} samples from {int(size)} bytes ({exc})",
                            SIZE_WHERE, SIZE_RECHECK))
    assert full == (n, m), changed("wfdb", f"format {fmt} decodes to {full}", SIZE_WHERE, SIZE_RECHECK)
    _assert_decodes_as_rdrecord(tmp_path / "r", f"format {fmt}")
    (tmp_path / "r.dat").write_bytes(data[: int(size) - math.ceil(m * BYTES_PER_SAMPLE[fmt])])
    assert signal_length_problem(read_header(tmp_path / "r"), tmp_path) is not None
    try:
        wfdb.rdrecord(str(tmp_path / "r"))
    except ValueError:
        return
    pytest.fail(changed("wfdb", f"format {fmt}: wfdb now reads {n} samples from one frame less than "
                        f"{int(size)} bytes", SIZE_WHERE, SIZE_RECHECK))


@pytest.mark.parametrize("layout", [*sorted(COMPRESSED_FMTS), "samples per frame"])
def test_wfdb_private_decoder_equals_rdrecord_on_written_records(tmp_path: Path, layout: str) -> None:
    """FLAC formats (no size check: left to the decoder) and frame smoothing (``_arrange_fields``'s job)."""
    rng = np.random.default_rng(3)
    if layout == "samples per frame":  # lead II at twice the frame rate
        e_d = [rng.integers(-90, 90, 300), rng.integers(-90, 90, 600)]
        wfdb.Record(record_name="r", n_sig=2, fs=250, sig_len=300, file_name=["r.dat"] * 2, fmt=["16"] * 2,
                    samps_per_frame=[1, 2], adc_gain=[40.0] * 2, baseline=[0, 0], units=["mV"] * 2,
                    sig_name=["I", "II"], e_d_signal=e_d, adc_res=[16] * 2, adc_zero=[0, 0],
                    init_value=[int(s[0]) for s in e_d], checksum=[0, 0], block_size=[0, 0],
                    ).wrsamp(expanded=True, write_dir=str(tmp_path))
    else:
        wfdb.wrsamp("r", fs=250, units=["mV", "mV"], sig_name=["I", "II"], d_signal=rng.integers(-90, 90, (300, 2)),
                    fmt=[layout] * 2, adc_gain=[40.0] * 2, baseline=[3, -2], write_dir=str(tmp_path))
        assert signal_length_problem(read_header(tmp_path / "r"), tmp_path) is None
    _assert_decodes_as_rdrecord(tmp_path / "r", f"layout {layout!r}")


HEADER_WHERE = "ecgfm_suite/data/reader.py: read_header (_RECORD_FIELDS, _SIGNAL_FIELDS; wfdb.io.header's grammar)"
HEADER_RECHECK = ("_RECORD_FIELDS/_SIGNAL_FIELDS and _parse_header_lines against wfdb.rdheader's parsing "
                  "(wfdb/io/_header.py: RECORD_SPECS, SIGNAL_SPECS, _parse_record_line, _parse_signal_lines)")


@pytest.mark.parametrize("text", [
    # every optional field absent
    "r 1 500 20\nr.dat 16\n",
    # every field present: counter frequency, base counter, time and date; samples per frame, skew, byte offset,
    # baseline, units, ADC resolution and zero, initial value, checksum, block size, description
    "r 2 128.5/64(3) 100 10:11:12.5 05/06/2007\nr.dat 16x2:3+24 200(5)/uV 12 0 1 2 0 ECG lead\n"
    "r.dat 16x2 0/mV 12 7 0 0 0 II\n",
    # baseline from the ADC zero; gain 0 means 200
    "r 2 500 1000\nr.dat 212 100 12 -3 5 0 0 V1\nr.dat 212 0 12 -3 5 0 0 V2\n# comment\n",
])
def test_wfdb_rdheader_reads_fields_as_read_header_does(tmp_path: Path, text: str) -> None:
    (tmp_path / "r.hea").write_text(text)
    ours, theirs = vars(read_header(tmp_path / "r")), vars(wfdb.rdheader(str(tmp_path / "r")))
    diff = sorted(k for k in ours.keys() | theirs.keys() if repr(ours.get(k)) != repr(theirs.get(k)))
    assert not diff, changed("wfdb", f"wfdb.rdheader reads {text!r} differently in {diff}: "
                             f"{[(ours.get(k), theirs.get(k)) for k in diff]}", HEADER_WHERE, HEADER_RECHECK)


# ---------------------------------------------------------------------------------------------- neurokit2

NK_WHERE = "ecgfm_suite/models/controls.py: prominence_delineator, _delineate (the handcrafted control's PR/QT)"
NK_RECHECK = ("that neurokit2.ecg_delineate(method='prominence') still runs the function controls.py resolves, and "
              "that it returns per-beat lists aligned with rpeaks; else call the public ecg_delineate (slower, "
              "see controls.py's docstring) and update tests/models/test_controls.py's reference features")


def _nk_delineator() -> Any:
    try:
        return controls.prominence_delineator()
    except (ImportError, AttributeError) as exc:
        pytest.fail(changed("neurokit2", f"cannot resolve the prominence delineator ({exc})", NK_WHERE, NK_RECHECK))


def test_neurokit2_prominence_delineator_name_and_signature() -> None:
    _check_params("neurokit2", _nk_delineator(), "_prominence_ecg_delineator", ["ecg", "rpeaks", "sampling_rate"],
                  positional=True, where=NK_WHERE, recheck=NK_RECHECK)


def _simulated_lead() -> tuple[np.ndarray, np.ndarray]:
    import neurokit2 as nk

    ecg = nk.ecg_clean(nk.ecg_simulate(duration=10, sampling_rate=250, heart_rate=70, random_state=0),
                       sampling_rate=250)
    return ecg, np.asarray(nk.ecg_findpeaks(ecg, sampling_rate=250)["ECG_R_Peaks"])


def test_neurokit2_ecg_delineate_runs_the_private_delineator(monkeypatch: pytest.MonkeyPatch) -> None:
    import neurokit2 as nk

    module = importlib.import_module("neurokit2.ecg.ecg_delineate")
    original = _nk_delineator()
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "_prominence_ecg_delineator", spy)
    ecg, peaks = _simulated_lead()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nk.ecg_delineate(ecg, peaks, sampling_rate=250, method="prominence")
    assert calls, changed("neurokit2", "ecg_delineate(method='prominence') no longer calls _prominence_ecg_delineator",
                          NK_WHERE, NK_RECHECK)


def test_neurokit2_private_delineator_gives_ecg_delineates_waves_beat_for_beat() -> None:
    import neurokit2 as nk

    ecg, peaks = _simulated_lead()
    assert len(peaks) >= 8
    private = _nk_delineator()(ecg, rpeaks=peaks, sampling_rate=250)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, public = nk.ecg_delineate(ecg, peaks, sampling_rate=250, method="prominence")
    for key in ("ECG_P_Onsets", "ECG_P_Peaks", "ECG_T_Offsets"):
        values = np.asarray(private.get(key, []), dtype=float)
        assert len(values) == len(peaks), changed("neurokit2", f"{key} has {len(values)} entries for {len(peaks)} "
                                                  "R-peaks (controls._delineate needs one per beat)", NK_WHERE,
                                                  NK_RECHECK)
        sanitised = [v for v in values if v > 0 or np.isnan(v)]  # as ecg_delineate sanitises
        assert np.array_equal(np.asarray(sanitised), np.asarray(public[key], dtype=float), equal_nan=True), \
            changed("neurokit2", f"{key} differs from ecg_delineate's", NK_WHERE, NK_RECHECK)
    waves = controls._delineate(ecg, peaks, 250.0)
    finite = {key: float(np.isfinite(v).mean()) for key, v in waves.items()}
    assert finite and min(finite.values()) >= 0.5, changed(
        "neurokit2", f"on a clean simulated ECG the delineated share of beats is only {finite}", NK_WHERE, NK_RECHECK)


# -------------------------------------------------------------------------------------------- numba, shap

NUMBA_WHERE = "ecgfm_suite/analysis/_jit_cache.py: _fix_link_uuids (shap's masked-model kernels from the disk cache)"
NUMBA_RECHECK = ("_fix_link_uuids against numba's _MemoMixin (numba/core/dispatcher.py) and how its cache index "
                 "keys a dispatcher argument (numba/core/caching.py); if it can no longer be done, "
                 "_fix_link_uuids must return False so that the kernels stay uncached (the fallback)")


def test_numba_dispatcher_uuid_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh dispatcher has no uuid in the slot ``_fix_link_uuids`` reads; ``_set_uuid`` sets it and numba's
    pickling then uses it; a dispatcher whose uuid was drawn already (pickled) is refused (the fallback)."""
    from numba import njit

    monkeypatch.setattr(_jit_cache, "_LINKS", ("pin_identity",))  # a name no shap link has

    @njit
    def pin_identity(x):
        return x

    assert getattr(pin_identity, "_MemoMixin__uuid", "missing") is None, changed(
        "numba", "a fresh dispatcher has no _MemoMixin__uuid slot (or a uuid in it already)", NUMBA_WHERE,
        NUMBA_RECHECK)
    _check_params("numba", getattr(pin_identity, "_set_uuid", None), "Dispatcher._set_uuid", ["u"], positional=True,
                  where=NUMBA_WHERE, recheck=NUMBA_RECHECK)
    assert _jit_cache._fix_link_uuids(SimpleNamespace(pin_identity=pin_identity)), changed(
        "numba", "_fix_link_uuids refuses a fresh dispatcher", NUMBA_WHERE, NUMBA_RECHECK)
    wanted = "ecgfm-suite/shap.links.pin_identity"
    assert pin_identity._MemoMixin__uuid == wanted and pin_identity._uuid == wanted, changed(
        "numba", "_set_uuid no longer sets the uuid numba uses", NUMBA_WHERE, NUMBA_RECHECK)
    assert pickle.loads(pickle.dumps(pin_identity)) is pin_identity, changed(
        "numba", "a dispatcher no longer pickles by its uuid", NUMBA_WHERE, NUMBA_RECHECK)

    @njit
    def pin_drawn(x):
        return x

    pickle.dumps(pin_drawn)  # draws a random uuid
    assert not _jit_cache._fix_link_uuids(SimpleNamespace(pin_identity=pin_drawn)), changed(
        "numba", "_fix_link_uuids no longer sees a uuid numba drew", NUMBA_WHERE, NUMBA_RECHECK)


def test_shap_kernels_that_take_a_link_are_the_ones_the_fallback_leaves_uncached() -> None:
    """``_TAKE_LINKS`` names shap's private kernels; the links themselves must be numba dispatchers."""
    from numba.extending import is_jitted

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap
    where = "ecgfm_suite/analysis/_jit_cache.py: _TAKE_LINKS, _LINKS (the uncached fallback)"
    recheck = "_TAKE_LINKS and _LINKS against shap/utils/_masked_model.py and shap/links.py"
    assert all(is_jitted(getattr(shap.links, name, None)) for name in _jit_cache._LINKS), changed(
        "shap", f"shap.links.{_jit_cache._LINKS} are not all numba dispatchers", where, recheck)
    take_link = {(name, attr) for name, module in list(sys.modules.items()) if name.split(".")[0] == "shap"
                 for attr, obj in list(vars(module).items())
                 if is_jitted(obj) and "link" in inspect.signature(obj.py_func).parameters}
    expected = {(name, attr) for name, attrs in _jit_cache._TAKE_LINKS.items() for attr in attrs}
    assert take_link == expected, changed("shap", f"the numba kernels taking a link are {sorted(take_link)}, "
                                          f"not {sorted(expected)}", where, recheck)


PIN_KERNELS = """
from numba import njit


@njit
def identity(x):
    return x


@njit
def logit(x):
    return x


@njit
def apply(link, x):
    return link(x) + 1.0
"""

PIN_RUN = """
import json, pickle, sys
import pinkern
from ecgfm_suite.analysis._jit_cache import _cache_kernels, _fix_link_uuids
mode = sys.argv[1]
if mode == "drawn":  # a uuid was drawn before ours could be set: the fallback
    pickle.dumps(pinkern.identity)
fixed = mode != "random" and _fix_link_uuids(pinkern)
_cache_kernels("pinkern", uncached=None if fixed or mode == "random" else {"pinkern": frozenset({"apply"})})
out = pinkern.apply(pinkern.identity, 1.0)
stats = pinkern.apply.stats
print(json.dumps({"fixed": fixed, "out": out, "cached": stats.cache_path is not None,
                  "hits": sum(stats.cache_hits.values())}))
"""


@pytest.mark.slow  # four fresh processes that import numba and compile a tiny kernel
def test_numba_fixed_uuid_makes_a_kernels_cache_entry_load_in_another_process(tmp_path: Path) -> None:
    """What the private uuid slot buys, on a kernel that takes a dispatcher like shap's: with fixed uuids a second
    process loads the first one's entry; with numba's random uuid it compiles and adds one; in the fallback the
    kernel stays uncached. Also pins the non-underscore API ``_cache_kernels`` uses (``is_jitted``,
    ``stats.cache_path``, ``enable_caching``)."""
    (tmp_path / "pinkern.py").write_text(PIN_KERNELS)
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])}

    def run(mode: str) -> tuple[dict, int]:
        done = subprocess.run([sys.executable, "-c", PIN_RUN, mode], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1]), len(list(cache.rglob("*apply*.nbc")))

    first, entries = run("fixed")
    assert first == {"fixed": True, "out": 2.0, "cached": True, "hits": 0} and entries == 1, changed(
        "numba", f"a kernel switched to the disk cache by _cache_kernels did not save an entry ({first}, "
        f"{entries} entries)", "ecgfm_suite/analysis/_jit_cache.py: _cache_kernels",
        "_cache_kernels against numba.extending.is_jitted, Dispatcher.stats and Dispatcher.enable_caching")
    second, entries = run("fixed")
    assert second["hits"] == 1 and entries == 1, changed(
        "numba", f"with fixed link uuids a second process no longer loads the kernel ({second}, {entries} entries)",
        NUMBA_WHERE, NUMBA_RECHECK)
    random_uuid, entries = run("random")
    assert random_uuid["hits"] == 0 and entries == 2, changed(
        "numba", f"a link dispatcher's random uuid no longer changes the kernel's cache key ({random_uuid}, "
        f"{entries} entries)", NUMBA_WHERE,
        "numba now keys dispatcher arguments stably across processes: drop the private uuid fix (_fix_link_uuids) "
        "and _TAKE_LINKS from _jit_cache.py after checking shap's kernels load from the cache without it")
    fallback, entries = run("drawn")
    assert fallback == {"fixed": False, "out": 2.0, "cached": False, "hits": 0} and entries == 2, changed(
        "numba", f"in the fallback the kernel did not stay uncached ({fallback}, {entries} entries)",
        NUMBA_WHERE, NUMBA_RECHECK)


def test_numba_rereads_its_cache_dir_when_imported_before_the_suite_set_it(tmp_path: Path) -> None:
    """``configure_numba_cache`` relies on ``numba.core.config.reload_config`` when numba came first."""
    script = ("import sys; from pathlib import Path; import numba; from numba.core import config; "
              "from ecgfm_suite.analysis._jit_cache import configure_numba_cache; "
              "configure_numba_cache(Path(sys.argv[1])); print(config.CACHE_DIR)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(tmp_path / "numba"), changed(
        "numba", f"numba.core.config.reload_config() no longer re-reads NUMBA_CACHE_DIR ({done.stdout.strip()!r})",
        "ecgfm_suite/analysis/_jit_cache.py: configure_numba_cache",
        "how numba re-reads its settings (numba/core/config.py); else set NUMBA_CACHE_DIR before numba is imported")
