import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

from ecgfm_suite._io import append_line, atomic_open, sha256_json, write_atomic
from ecgfm_suite.errors import EcgfmWarning, SpecError
from ecgfm_suite.registry import Registry, resolve


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_sha256_json_is_order_independent():
    assert sha256_json({"a": 1, "b": [1, 2]}) == sha256_json({"b": [1, 2], "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


def test_registry_duplicates_and_suggestions():
    reg: Registry[int] = Registry("widget")
    reg.register("ludb_rhythm", 1)
    with pytest.raises(SpecError, match="duplicate"):
        reg.register("ludb_rhythm", 2)
    with pytest.raises(SpecError, match="did you mean ludb_rhythm"):
        reg.get("ludb_rythm")
    assert list(reg) == ["ludb_rhythm"]


def test_resolve_module_attr():
    assert resolve("json:dumps") is json.dumps
    with pytest.raises(SpecError):
        resolve("json.dumps")


# -- fault injection shared by the cache and run-directory tests -------------------------------------------
needs_proc_fd = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names fsynced files via /proc/self/fd")
needs_rlimit = pytest.mark.skipif(resource is None or not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def record_syncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Log, in order, ("fsync", path) for every ``os.fsync`` of a file or folder and ("replace", dst) for every
    ``os.replace``: what makes a write survive a power loss, and when."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        real_replace(src, dst, **kwargs)
        events.append(("replace", os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(dst))),
                                               os.path.basename(dst))))  # the name, not what a link points to

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def read_only(monkeypatch: pytest.MonkeyPatch, root: Path) -> list[str]:
    """Make everything below ``root`` read-only as a read-only mount does (EROFS on any attempt to create,
    write, rename or delete), for root too, whom permission bits do not stop. Returns the refused paths."""
    root = Path(root).resolve()
    refused: list[str] = []

    def guard(fn, writes=lambda *a, **k: True):
        def guarded(path, *args, **kwargs):
            if (isinstance(path, str | os.PathLike) and Path(os.path.abspath(path)).is_relative_to(root)
                    and writes(*args, **kwargs)):
                refused.append(str(path))
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return fn(path, *args, **kwargs)
        return guarded

    monkeypatch.setattr(os, "open", guard(os.open, lambda flags, *a, **k: bool(flags & _WRITES)))
    opened = guard(io.open, lambda mode="r", *a, **k: any(c in mode for c in "wax+"))
    monkeypatch.setattr(io, "open", opened)
    monkeypatch.setattr(builtins, "open", opened)
    for name in ("mkdir", "replace", "rename", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    return refused


#: run in the child before the test's code: ``disk_full_after(n)`` makes any write that would take a file past
#: n bytes write up to n, then fail (RLIMIT_FSIZE: the short write and error a full disk gives; SIGXFSZ ignored)
_FULL_DISK_PRELUDE = """
import resource, signal, warnings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
def disk_full_after(nbytes):
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
warnings.simplefilter("always")
"""


def run_on_a_full_disk(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (which calls ``disk_full_after(n)`` when the disk should fill) in a fresh interpreter: the
    file-size limit is per process, so it cannot touch this pytest process's own files."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", _FULL_DISK_PRELUDE + textwrap.dedent(code)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@needs_proc_fd
def test_an_atomic_write_is_fsynced_then_renamed_then_its_folder_fsynced(tmp_path, monkeypatch):
    """Without the folder's fsync a power loss can undo the rename; without the file's, leave a 0-byte file."""
    events = record_syncs(monkeypatch)
    write_atomic(tmp_path / "run.json", "{}")
    [(op1, tmp_file), *rest] = events
    assert op1 == "fsync" and Path(tmp_file).parent == tmp_path.resolve() and Path(tmp_file).name.endswith(".tmp")
    assert rest == [("replace", str((tmp_path / "run.json").resolve())), ("fsync", str(tmp_path.resolve()))]


@needs_rlimit
def test_an_append_on_a_full_disk_is_an_error_naming_the_file_and_leaves_it_whole(tmp_path):
    target = tmp_path / "results.jsonl"
    target.write_text('{"a": 1}\n')
    child = run_on_a_full_disk(f"""
        from ecgfm_suite._io import append_line
        disk_full_after({target.stat().st_size + 10})
        try:
            append_line({str(target)!r}, '{{"b": "' + 'x' * 4000 + '"}}')
        except OSError as exc:
            print(exc)
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("[Errno 27] cannot append a line (File too large)") and str(target) in child.stdout
    assert target.read_text() == '{"a": 1}\n'  # not a byte of the half line is left


def test_an_append_after_a_torn_last_line_cuts_it_off_with_a_warning(tmp_path):
    target = tmp_path / "results.jsonl"
    target.write_text('{"a": 1}\n{"b": 2, "tor')  # a power loss mid-append
    with pytest.warns(EcgfmWarning, match=f"^{target}: cut off a torn last line \\(13 bytes\\)"):
        append_line(target, '{"c": 3}')
    assert target.read_text() == '{"a": 1}\n{"c": 3}\n'
    target.write_text('{"b": 2, "tor')
    with pytest.warns(EcgfmWarning, match="torn"):
        append_line(target, '{"c": 3}')
    assert target.read_text() == '{"c": 3}\n'

