"""What the report tests read from a page (an ``html.parser`` walk, independent of the templates' code), and
the page in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest


class Page(HTMLParser):
    """Root attributes, images, scripts, links, cell rows, skipped rows, outcome counts and pivot cells."""

    def __init__(self) -> None:
        super().__init__()
        self.root: dict[str, str] = {}
        self.images: list[str] = []
        self.scripts = 0
        self.links: list[str] = []
        self.cell_rows: list[str] = []
        self.skipped_rows: list[str] = []
        self.outcomes: dict[str, str] = {}
        self.pivot: dict[str, str] = {}  # cell id → text of its leaderboard cell
        self._open: tuple[str, str] | None = None  # (kind, key) of the element whose text is being read
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.root = a
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "script":
            self.scripts += 1
        elif tag == "tr" and "data-cell" in a:
            self.cell_rows.append(a["data-cell"])
        elif tag == "tr" and "data-skipped" in a:
            self.skipped_rows.append(a["data-skipped"])
        elif tag == "span" and "data-outcome" in a:
            self._open, self._text = ("outcome", a["data-outcome"]), []
        elif tag == "td" and "num" in a.get("class", "").split() and a.get("title"):
            self._open, self._text = ("pivot", a["title"]), []
        if "href" in a:
            self.links.append(a["href"])
        if "src" in a and tag != "img":
            self.links.append(a["src"])

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag in ("span", "td") and (tag == "span") == (self._open[0] == "outcome"):
            kind, key = self._open
            text = "".join(self._text).strip()
            if kind == "outcome":
                self.outcomes[key] = text
            else:
                self.pivot[key] = text
            self._open = None


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing (skips when that is impossible)."""
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    if Path(binary).exists():
        return binary
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"])
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"installing chromium failed ({' '.join(cmd)}): {done.stderr.strip()[-300:]}")
    return "/usr/bin/chromium"


def headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)
