"""Data layer: find datasets, read records in mV, declare tasks, split, make model-ready arrays."""
