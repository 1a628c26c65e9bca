"""Probes on frozen embeddings: linear, k-NN and MLP, selected on the validation split.

``fit_probe(kind, task_type, X_train, y_train, X_val, y_val, seed=...)`` returns a
``FittedProbe`` whose ``predict_scores`` feeds ``ecgfm_suite.metrics.evaluate``. The
probe modules (and scikit-learn) are imported on first use through ``PROBES``.
"""

from .base import PROBES, FittedProbe, ProbeSpec, SeedProbe, check_embeddings, fit_probe

__all__ = ["PROBES", "FittedProbe", "ProbeSpec", "SeedProbe", "check_embeddings", "fit_probe"]
