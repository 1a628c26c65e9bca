"""The run report: a self-contained HTML page (``index.html``) and CSV tables in the run directory.

``write_report(run_dir)`` assembles what the cells and the analysis stage stored; ``figures``
draws the analyses' PNGs (called by the analysis tests, which store them beside their JSON).
"""

from .build import html_link, write_report

__all__ = ["html_link", "write_report"]
