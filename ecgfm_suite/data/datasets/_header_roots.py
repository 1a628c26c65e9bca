"""Find dataset roots by a header comment (Challenge ``#Dx:``, Challenge 2025 ``# Chagas label:``).

These datasets have no marker file and their folder names vary between releases and
mirrors, so a folder is recognised by what its ``.hea`` files say. A folder is decided by
its first few headers (in name order): every Challenge header carries the comment, so
other datasets' folders (thousands of CinC 2017 headers) cost three small reads, not a
full pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ._common import Tree

#: headers are a few hundred bytes; a file longer than this is not a WFDB header worth reading
_MAX_HEADER_BYTES = 1 << 16
#: headers read per folder before deciding it does not belong to the dataset
HEADERS_PER_FOLDER = 3


def header_comments(hea: Path) -> list[str] | None:
    """Comment lines of ``hea`` without ``#`` (stripped), or None when it cannot be read."""
    try:
        with open(hea, "rb") as fh:
            text = fh.read(_MAX_HEADER_BYTES).decode("latin-1")
    except OSError:
        return None
    return [ln.strip()[1:].strip() for ln in text.splitlines() if ln.strip().startswith("#")]


def dirs_with_comment(tree: Tree, decide: Callable[[list[str]], bool | None]) -> list[Path]:
    """Folders of ``tree`` whose first headers include one that ``decide`` accepts.

    ``decide`` returns True (this folder belongs to the dataset), False (it does not) or
    None (this header says nothing: try the next, up to :data:`HEADERS_PER_FOLDER`).
    """
    found = []
    for folder, files in tree.items():
        headers = [name for name in files if name.endswith(".hea")][:HEADERS_PER_FOLDER]
        for name in headers:
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
    names = [str(d) for d in dirs]
    return [Path(os.path.commonpath(names))] if names else []
