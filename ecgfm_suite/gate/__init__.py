"""Gating: absolute floors per cell (thresholds.yml); baselines and regressions build on this."""
