"""Find dataset roots by a header comment (Challenge ``#Dx:``, Challenge 2025 ``# Chagas label:``).

These datasets have no marker file and their folder names vary between releases and
mirrors, so a folder is recognised by what its ``.hea`` files say. Only comment lines are
read, and a folder is decided by its first header that answers (usually its first file).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ._common import Tree

#: headers are a few hundred bytes; a file longer than this is not a WFDB header worth reading
_MAX_HEADER_BYTES = 1 << 16


def header_comments(hea: Path) -> list[str] | None:
    """Comment lines of ``hea`` without ``#`` (stripped), or None when it cannot be read."""
    try:
        with open(hea, "rb") as fh:
            text = fh.read(_MAX_HEADER_BYTES).decode("latin-1")
    except OSError:
        return None
    return [ln.strip()[1:].strip() for ln in text.splitlines() if ln.strip().startswith("#")]


def dirs_with_comment(tree: Tree, decide: Callable[[list[str]], bool | None]) -> list[Path]:
    """Folders of ``tree`` holding a ``.hea`` whose comments ``decide`` accepts.

    ``decide`` returns True (this folder belongs to the dataset), False (it does not) or
    None (this header says nothing, try the folder's next one).
    """
    found = []
    for folder, files in tree.items():
        for name in files:
            if not name.endswith(".hea"):
                continue
            comments = header_comments(folder / name)
            verdict = None if comments is None else decide(comments)
            if verdict is not None:
                if verdict:
                    found.append(folder)
                break
    return sorted(found)


def common_root(dirs: Iterable[Path]) -> list[Path]:
    """The one folder holding all ``dirs`` (their deepest common ancestor), or ``[]``.

    One root per dataset keeps its record ids unique in one index; a second copy of a
    release below the same data dir is then caught as duplicate record ids and hashes.
    """
    dirs = [str(d) for d in dirs]
    return [Path(os.path.commonpath(dirs))] if dirs else []
