"""The run report: a self-contained HTML page (``index.html``, plus ``pages/`` for a large run) and CSV tables.

``write_report(run_dir)`` assembles what the cells, their tests (``outcomes.jsonl``) and the analysis
stage stored; ``figures`` draws the analyses' PNGs (called by the analysis tests, which store them
beside their JSON); ``html_link`` is the snippet pytest-html's summary shows.
"""

from .build import html_link, write_report

__all__ = ["html_link", "write_report"]
