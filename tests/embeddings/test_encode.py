"""The batched encode path: per-record pooling, batching, read-only memmaps, the OOM retry, embed_dim."""

from __future__ import annotations

import mmap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecgfm_suite.embeddings.encode import aggregate_windows, embed_array, encode_prepared
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.protocol import Encoder, TorchEncoder

torch = pytest.importorskip("torch")

SPEC = MODELS.get("random_cnn")  # 12 leads; only its metadata is used
WIDTH = 8
COUNTS = (1, 3, 2, 5, 1)  # windows per record: batches of 5 cut records apart


class ConvEncoder(TorchEncoder):
    """A small conv + mean pooling, enough to see whether windows reach the right record."""

    def forward_embed(self, x: Any) -> Any:
        return self.module(x).mean(-1)


def _encoder(batch_size: int = 64) -> ConvEncoder:
    torch.manual_seed(0)
    return ConvEncoder(SPEC, torch.nn.Conv1d(12, WIDTH, 5), embed_dim=WIDTH, checkpoint_sha256=None,
                       batch_size=batch_size)


def _windows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((sum(COUNTS), 12, 200)).astype(np.float32)
    return windows, np.concatenate([[0], np.cumsum(COUNTS)])


def _reference(encoder: ConvEncoder, windows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One window at a time in float64, then the mean of each record's windows (no batching, no reduceat)."""
    conv = encoder.module.double()
    try:
        with torch.no_grad():
            per_window = [conv(torch.from_numpy(w[None].astype(np.float64))).mean(-1)[0].numpy() for w in windows]
    finally:
        encoder.module.float()
    return np.stack([np.mean(per_window[a:b], axis=0) for a, b in zip(offsets[:-1], offsets[1:], strict=True)])


def test_encode_prepared_pools_each_records_windows_across_batch_boundaries() -> None:
    encoder = _encoder(batch_size=2)  # encode_prepared's batches of 5 are split again into 2 + 2 + 1
    windows, offsets = _windows()
    out = encode_prepared(encoder, windows, offsets, batch_windows=5)
    assert isinstance(encoder, Encoder) and out.shape == (len(COUNTS), WIDTH) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(encoder, windows, offsets), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, encode_prepared(encoder, windows, offsets), rtol=1e-5, atol=1e-6)  # one batch


def test_encode_prepared_reads_a_read_only_memmap_and_never_writes_the_callers_windows(tmp_path) -> None:
    class InPlace(ConvEncoder):
        def forward_embed(self, x: Any) -> Any:
            out = super().forward_embed(x)
            x.zero_()  # a forward that reuses its input buffer must not reach the caller's array
            return out

    windows, offsets = _windows()
    np.save(tmp_path / "windows.npy", windows)
    mapped = np.load(tmp_path / "windows.npy", mmap_mode="r")
    encoder = InPlace(SPEC, _encoder().module, embed_dim=WIDTH, checkpoint_sha256=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a non-writable array
        from_map = encode_prepared(encoder, mapped, offsets)
    in_memory = windows.copy()
    np.testing.assert_array_equal(encode_prepared(encoder, in_memory, offsets), from_map)
    np.testing.assert_array_equal(in_memory, windows)
    np.testing.assert_array_equal(np.load(tmp_path / "windows.npy"), windows)


def test_encode_retries_a_chunk_with_half_the_batch_after_out_of_memory() -> None:
    class Tight(ConvEncoder):
        def forward_embed(self, x: Any) -> Any:
            if len(x) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward_embed(x)

    windows, offsets = _windows()
    encoder = Tight(SPEC, _encoder().module, embed_dim=WIDTH, checkpoint_sha256=None, batch_size=8)
    np.testing.assert_array_equal(encoder.encode(windows), _encoder().encode(windows))
    assert encoder.batch_size == 2


def test_out_of_memory_at_batch_size_one_is_raised_not_retried_forever() -> None:
    class Full(ConvEncoder):
        def forward_embed(self, x: Any) -> Any:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    encoder = Full(SPEC, _encoder().module, embed_dim=WIDTH, checkpoint_sha256=None, batch_size=4)
    with pytest.raises(torch.OutOfMemoryError):
        encoder.encode(_windows()[0])
    assert encoder.batch_size == 1


def test_no_windows_give_an_empty_matrix_of_the_embedding_width() -> None:
    encoder = _encoder()
    windows, offsets = _windows()
    assert encode_prepared(encoder, windows[:0], offsets[:1]).shape == (0, WIDTH)
    assert encoder.encode(windows[:0]).shape == (0, WIDTH)


def test_embed_array_prepares_each_record_then_pools_its_windows() -> None:
    encoder = _encoder()
    raw = np.random.default_rng(1).standard_normal((2, 12, 5000)).astype(np.float32)  # LUDB-like: 10 s at 500 Hz
    leads = SPEC.input_spec.leads
    prepared = [encoder.prepare(r, 500.0, leads) for r in raw]
    expected = np.stack([encoder.encode(p).mean(axis=0) for p in prepared])
    np.testing.assert_allclose(embed_array(encoder, raw, 500.0, leads), expected, rtol=1e-6, atol=1e-7)


def test_embed_dim_defaults_to_the_spec_and_a_loader_passes_the_module_width() -> None:
    module = torch.nn.Conv1d(12, WIDTH, 5)
    assert ConvEncoder(SPEC, module, checkpoint_sha256=None).embed_dim == SPEC.embed_dim
    assert ConvEncoder(SPEC, module, embed_dim=WIDTH, checkpoint_sha256=None).embed_dim == WIDTH


def test_aggregate_windows_refuses_an_unknown_pooling() -> None:
    with pytest.raises(ValueError, match="median"):
        aggregate_windows(np.zeros((2, 3), np.float32), np.array([0, 2]), "median")


def test_aggregate_windows_is_each_records_mean_and_the_identity_for_single_windows() -> None:
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((sum(COUNTS), 16)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(COUNTS)])
    expected = np.stack([emb[a:b].astype(np.float64).mean(axis=0)
                         for a, b in zip(offsets[:-1], offsets[1:], strict=True)])
    np.testing.assert_allclose(aggregate_windows(emb, offsets), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(aggregate_windows(emb, np.arange(len(emb) + 1)), emb)


def test_embed_array_follows_the_window_policy_and_official_is_the_familys_own() -> None:
    encoder = _encoder()  # random_cnn's spec: 10-s windows, no policy of its own (cover)
    raw = np.random.default_rng(3).standard_normal((1, 12, 12_500)).astype(np.float32)  # 25 s at 500 Hz
    leads = SPEC.input_spec.leads
    tiles = [raw[0][:, s : s + 5000] for s in (0, 5000, 7500)]  # the last tile aligned to the end
    cover = np.mean([encoder.encode(encoder.prepare(t, 500.0, leads))[0] for t in tiles], axis=0)
    np.testing.assert_allclose(embed_array(encoder, raw, 500.0, leads)[0], cover, rtol=1e-5, atol=1e-6)
    official = encoder.encode(encoder.prepare(raw[0], 500.0, leads)).mean(axis=0)  # its first 10 s
    np.testing.assert_allclose(embed_array(encoder, raw, 500.0, leads, window_policy="official")[0], official,
                               rtol=1e-5, atol=1e-6)


def test_the_progress_bar_counts_windows_not_records(monkeypatch) -> None:
    import tqdm.auto

    bars: list[Any] = []

    class Recorder:
        def __init__(self, total: int, **kwargs: Any) -> None:
            self.total, self.done, self.desc = total, 0, kwargs.get("desc")
            bars.append(self)

        def __enter__(self) -> Recorder:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: int) -> None:
            self.done += n

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    windows, offsets = _windows()
    encode_prepared(_encoder(), windows, offsets, batch_windows=4, desc="m/d")
    (bar,) = bars
    assert bar.total == bar.done == sum(COUNTS) and bar.desc == f"m/d ({len(COUNTS)} rec)"


def test_large_buffers_are_reused_while_encoding_and_the_allocator_restored_after(monkeypatch) -> None:
    """glibc maps batch-sized buffers afresh each batch (page faults: a fifth of a transformer's encode); while
    encoding they are kept, after it the defaults come back and the memory is trimmed, also after an error."""
    from ecgfm_suite.embeddings import encode

    calls: list[tuple[Any, ...]] = []

    class FakeGlibc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append(("mallopt", param, value))
            return 1

        def malloc_trim(self, pad: int) -> int:
            calls.append(("malloc_trim", pad))
            return 1

    monkeypatch.setattr(encode, "_glibc", FakeGlibc)
    windows, offsets = _windows()
    out = encode_prepared(_encoder(), windows, offsets)
    reuse = [("mallopt", encode._M_MMAP_MAX, 0), ("mallopt", encode._M_TRIM_THRESHOLD, 1 << 30)]
    restore = [("mallopt", encode._M_MMAP_MAX, encode._DEFAULT_MMAP_MAX),
               ("mallopt", encode._M_TRIM_THRESHOLD, encode._DEFAULT_TRIM_THRESHOLD), ("malloc_trim", 0)]
    assert calls == reuse + restore
    calls.clear()
    with pytest.raises(RuntimeError), encode.large_buffers_reused():
        raise RuntimeError("a failing encode")
    assert calls == reuse + restore
    monkeypatch.setattr(encode, "_glibc", lambda: None)  # not glibc: nothing to tune, the same vectors
    np.testing.assert_array_equal(encode_prepared(_encoder(), windows, offsets), out)


def _mapped_rss_kb(path: Any) -> int:
    """Resident kB of this process's mappings of ``path`` (Linux ``/proc/self/smaps``)."""
    total, inside = 0, False
    with open("/proc/self/smaps", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
                inside = fields[-1] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc/self/smaps")
def test_encoding_a_mapped_prepared_set_does_not_keep_its_pages_resident(tmp_path) -> None:
    """RSS would climb towards the size of windows.npy as the batches are read; each batch's pages are dropped
    after it is encoded (the page cache keeps them), and the embeddings are those of the in-memory array."""
    from ecgfm_suite.embeddings import encode

    if encode._glibc() is None:
        pytest.skip("pages are released through glibc's madvise")
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 4, 2500)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    windows = rng.standard_normal((int(offsets[-1]), 12, 200)).astype(np.float32)  # ~48 MB
    path = (tmp_path / "windows.npy").resolve()
    np.save(path, windows)
    encoder = _encoder()
    mapped = np.load(path, mmap_mode="r")
    out = encode_prepared(encoder, mapped, offsets)
    released_kb = _mapped_rss_kb(path)
    np.testing.assert_array_equal(out, encode_prepared(encoder, windows, offsets))
    assert released_kb < windows.nbytes / 1024 / 20, released_kb
    float(np.asarray(mapped).sum())  # a plain read of the map: every page stays resident
    assert _mapped_rss_kb(path) > windows.nbytes / 1024 * 0.9
    encode.release_mapped_pages(mapped)
    assert _mapped_rss_kb(path) <= 2 * mmap.PAGESIZE // 1024  # the pages the slice shares: .npy header, file end
    writable = np.load(path, mmap_mode="r+")
    float(np.asarray(writable).sum())
    encode.release_mapped_pages(writable)  # a writable map may hold the only copy of its data: left alone
    assert _mapped_rss_kb(path) > windows.nbytes / 1024 * 0.9
