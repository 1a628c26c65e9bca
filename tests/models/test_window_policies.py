"""Record-level window policies per model family: ``official`` is the family's own protocol untouched (what
the parity fixtures check), ``first`` its first window, ``cover`` tiles of one window over the whole record
(the last aligned to its end), each prepared by the family as a record of its own; and the policy reaches
the embedding cache key, the cells' preprocessing record and a model file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.data.preprocess import RecordWindows, native_length, tile_starts
from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.models import controls, ecg_cpc, ecg_fm, ecg_jepa, ecgfm_ked, ecgfounder, hubert_ecg, merl, st_mem
from ecgfm_suite.models import openecg_codec as codec
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.spec import ModelSpec

FS = 500.0
N_SAMPLES = 13_650  # 27.3 s: no window length divides it, so every cover ends on an overlapping tile

#: one catalog model per family → its encoder class, and how many windows its OFFICIAL protocol takes of the record
FAMILIES = {
    "random_cnn": (controls.RandomCNNEncoder, 1),
    "handcrafted": (controls.HandcraftedEncoder, 1),
    "openecg_codec_v6": (codec.OpenECGCodecEncoder, 1),
    "hubert_ecg_small": (hubert_ecg.HuBERTECGEncoder, 1),
    "ecgfounder_12lead": (ecgfounder.ECGFounderEncoder, 1),
    "merl": (merl.MerlEncoder, 1),
    "ecgfm_ked": (ecgfm_ked.KedEncoder, 1),
    "ecg_jepa": (ecg_jepa.ECGJEPAEncoder, 1),
    "ecg_fm": (ecg_fm.EcgFmEncoder, N_SAMPLES // 2500),  # non-overlapping 5-s segments, the tail dropped
    "ecg_cpc": (ecg_cpc.ECGCPCEncoder, N_SAMPLES // 1250),  # non-overlapping 2.5-s windows, the tail dropped
    "st_mem": (st_mem.STMEMEncoder, 3),  # NCrop(2250, 3)
}


def _bare_encoder(model_id: str, policy: str | None = None) -> object:
    """The family's encoder without its network: ``prepare`` reads only the input spec, and building the
    85M-parameter transformers with random weights would cost seconds each."""
    cls, _ = FAMILIES[model_id]
    spec: ModelSpec = MODELS.get(model_id)
    encoder = object.__new__(cls)
    encoder.spec = spec
    encoder.input_spec = replace(spec.input_spec, window_policy=policy)
    return encoder


@pytest.fixture(scope="module")
def record() -> np.ndarray:
    t = np.arange(N_SAMPLES) / FS
    beats = np.sin(2 * np.pi * 1.1 * t) ** 15  # a spiky 66-bpm trace, different in every lead
    noise = np.random.default_rng(0).standard_normal((12, N_SAMPLES))
    return (beats * np.linspace(0.5, 1.5, 12)[:, None] + 0.02 * noise + 0.1).astype(np.float32)


def test_every_catalog_family_is_covered():
    assert {MODELS.get(m).family for m in MODELS} == {MODELS.get(m).family for m in FAMILIES}


@pytest.mark.parametrize("model_id", sorted(FAMILIES))
def test_official_first_and_cover_per_family(model_id, record):
    official_count = FAMILIES[model_id][1]
    encoder = _bare_encoder(model_id)
    spec = encoder.input_spec

    def windows(policy: str) -> np.ndarray:
        return RecordWindows(encoder.prepare, replace(spec, window_policy=policy))(record, FS, STD_LEADS)

    official = windows("official")
    np.testing.assert_array_equal(official, encoder.prepare(record, FS, STD_LEADS))  # untouched: parity holds
    assert len(official) == official_count
    np.testing.assert_array_equal(windows("first"), official[:1])

    cover = windows("cover")
    length = native_length(FS, spec)
    starts = tile_starts(N_SAMPLES, length)
    assert len(cover) == len(starts) == -(-N_SAMPLES // length) > official_count
    assert cover.shape[1:] == official.shape[1:] and cover.dtype == np.float32 and np.isfinite(cover).all()
    assert starts[-1] + length == N_SAMPLES  # the tail is embedded, by a window aligned to the record's end
    for i in (0, len(starts) - 1):  # each tile is the family's own pipeline on that stretch alone
        tile = record[:, starts[i] : starts[i] + length]
        np.testing.assert_array_equal(cover[i], encoder.prepare(tile, FS, STD_LEADS)[0])
    assert RecordWindows(encoder.prepare, spec)(record, FS, STD_LEADS).shape == cover.shape  # cover by default


def test_st_mem_covers_with_tiles_of_its_9_s_crop_each_standardised_on_its_own(record):
    encoder = _bare_encoder("st_mem", "cover")
    cover = RecordWindows(encoder.prepare, encoder.input_spec)(record, FS, STD_LEADS)
    assert len(cover) == 4 and cover.shape[1:] == (12, 2250)  # 27.3 s = 9 + 9 + 9 + the last 9 s
    np.testing.assert_allclose(cover.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(cover.std(axis=(1, 2)), 1.0, rtol=1e-4)


@pytest.mark.parametrize("model_id", ["openecg_codec_v6", "hubert_ecg_small", "st_mem", "ecg_fm"])
def test_a_record_shorter_than_a_window_is_one_padded_window_whatever_the_policy(model_id, record):
    short = record[:, :1000]  # 2 s
    encoder = _bare_encoder(model_id)
    got = {p: RecordWindows(encoder.prepare, replace(encoder.input_spec, window_policy=p))(short, FS, STD_LEADS)
           for p in ("cover", "official", "first")}
    for policy, out in got.items():
        assert len(out) == 1, policy
        np.testing.assert_array_equal(out, got["official"])


# -- the policy through the runner -------------------------------------------------------------


def _half_window_model(folder: Path, windows: str | None) -> Path:
    """A model file of the random_cnn family with 5-s windows: a 10-s LUDB record gets 2 under ``cover``."""
    path = folder / "half.yml"
    path.write_text("id: half_cnn\nfamily: random_cnn\ninput_spec: {window: 500}\n"
                    + (f"windows: {windows}\n" if windows else ""))
    return path


def _cell(data_dir: Path, cache: Path, model_file: Path, **options: str):
    from ecgfm_suite.engine.runner import Runner, run_cell
    from ecgfm_suite.engine.settings import resolve
    from ecgfm_suite.results.cell import CellSpec

    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(cache), "model_files": str(model_file),
                        "models": "half_cnn", "tasks": "ludb_sex", "seeds": "1", "n_boot": "20", "workers": "1",
                        **options}, env={})
    runner = Runner(settings)
    return run_cell(runner, CellSpec(model="half_cnn", task="ludb_sex", scarcity="frac100"),
                    runner.load_encoder("half_cnn")).result


def test_the_policy_keys_the_cache_and_is_recorded_with_window_counts_in_every_cell(synthetic_data_dir, tmp_path):
    import json

    cache = tmp_path / "cache"
    model_file = _half_window_model(tmp_path, "first")
    by_file = _cell(synthetic_data_dir, cache, model_file)  # the model file's policy, the option left unset
    by_flag = _cell(synthetic_data_dir, cache, model_file, windows="cover")  # the option, set, overrides it
    official = _cell(synthetic_data_dir, cache, model_file, windows="official")
    default = _cell(synthetic_data_dir, cache, _half_window_model(tmp_path, None))  # neither: cover
    for result, policy, per_record in ((by_file, "first", 1), (by_flag, "cover", 2), (official, "official", 1),
                                       (default, "cover", 2)):
        pre = result.preprocessing
        assert pre["window_policy"] == policy and pre["window"] == 500
        (ludb,) = pre["windows_per_record"].values()
        assert ludb["min"] == ludb["max"] == per_record and ludb["windows"] == per_record * ludb["records"]
    assert by_flag.main.value == default.main.value  # the same policy: the same cached embeddings
    manifests = [json.loads(p.read_text()) for p in (cache / "embeddings").glob("*/*/manifest.json")]
    assert sorted(m["windows"]["policy"] for m in manifests) == ["cover", "first", "official"]  # one entry each
    keyed = {m["windows"]["policy"]: m["key"] for m in manifests}
    assert len(set(keyed.values())) == 3


def test_a_model_file_names_its_window_policy(tmp_path):
    from ecgfm_suite.errors import SpecError
    from ecgfm_suite.models.user_spec import load_model_file

    assert load_model_file(_half_window_model(tmp_path, "official")).input_spec.window_policy == "official"
    assert load_model_file(_half_window_model(tmp_path, None)).input_spec.window_policy is None  # the run's
    path = tmp_path / "both.yml"
    path.write_text("id: both\nfamily: random_cnn\nwindows: first\ninput_spec: {window_policy: cover}\n")
    with pytest.raises(SpecError, match="contradicts"):
        load_model_file(path)
    path.write_text("id: bad\nfamily: random_cnn\nwindows: sliding\n")
    with pytest.raises(SpecError, match="window_policy"):
        load_model_file(path)


@pytest.mark.real_data
def test_a_long_cinc2017_record_gets_several_windows_under_cover(data_dir):
    """On the shared CinC 2017 records (9–61 s at 300 Hz): ``cover`` embeds every 10 s of a long record, where
    the openecg codec's official protocol takes its first 10 s only."""
    from ecgfm_suite.data.discovery import load_index
    from ecgfm_suite.data.reader import read_signal

    records = load_index("cinc2017", data_dir).records
    longest = records.loc[records["n_samples"].idxmax()]
    assert longest["n_samples"] / longest["fs"] > 50
    signal = read_signal(longest.to_dict())
    encoder = _bare_encoder("openecg_codec_v6")
    cover = RecordWindows(encoder.prepare, replace(encoder.input_spec, window_policy="cover"))
    official = RecordWindows(encoder.prepare, replace(encoder.input_spec, window_policy="official"))
    n_windows = -(-int(longest["n_samples"]) // 3000)  # 10-s tiles at 300 Hz
    assert len(cover(signal.data, signal.fs, signal.leads)) == n_windows >= 6
    assert len(official(signal.data, signal.fs, signal.leads)) == 1


def test_the_report_says_which_policy_and_how_many_windows_made_each_number():
    from dataclasses import replace as with_fields

    from ecgfm_suite.gate.baselines import preprocessing_sha256
    from ecgfm_suite.report.tables import cell_rows
    from ecgfm_suite.results.cell import CellSpec
    from ecgfm_suite.results.synthetic import synthetic_result

    rng = np.random.default_rng(0)
    windows = {"cinc2017": {"policy": "cover", "records": 3, "windows": 9, "min": 1, "mean": 3.0, "max": 6},
               "ludb": {"policy": "cover", "records": 1, "windows": 1, "min": 1, "mean": 1.0, "max": 1}}
    covered = with_fields(synthetic_result(CellSpec(model="m", task="t", scarcity="frac100"), (0,), rng),
                          preprocessing={"fs": 500, "window_policy": "cover", "windows_per_record": windows})
    legacy = synthetic_result(CellSpec(model="n", task="t", scarcity="frac100"), (0,), rng)  # before the policies
    rows = {r["model"]: r for r in cell_rows([covered, legacy], {}, {})}
    assert (rows["m"]["window_policy"], rows["m"]["windows_per_record"]) == ("cover", 2.5)  # 10 windows / 4 records
    assert (rows["n"]["window_policy"], rows["n"]["windows_per_record"]) == ("official", None)
    # the gate's preprocessing digest is the model's spec and policy, not the data's window counts
    other_data = with_fields(covered, preprocessing={**covered.preprocessing, "windows_per_record": {}})
    assert preprocessing_sha256(covered.preprocessing) == preprocessing_sha256(other_data.preprocessing)
    first = {**covered.preprocessing, "window_policy": "first"}
    assert preprocessing_sha256(first) != preprocessing_sha256(covered.preprocessing)
