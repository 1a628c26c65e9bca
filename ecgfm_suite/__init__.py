"""ecgfm-suite: benchmark ECG foundation models on real cross-continental ECG data.

Importing the package is cheap: no torch, no data access, no network. Subpackages are
layered data → models → embeddings → probes/metrics → results → analysis → report/gate.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
