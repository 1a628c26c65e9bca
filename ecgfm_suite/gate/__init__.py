"""Gating: absolute floors (``floors``), committed baselines (``baselines``), the regression rule
(``regression``), the per-session gate the pytest plugin calls (``session``) and ``compare`` for stored runs."""
