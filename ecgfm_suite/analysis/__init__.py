"""Representation analyses: what a frozen embedding encodes, beyond the probe's accuracy.

One module per analysis, each a set of pure functions on arrays (no pytest, no files):

- ``dimension_attribution``: exact linear SHAP of the probe over embedding dimensions, its concentration
  and the stability of the top dimensions across seeds and scarcity levels;
- ``input_attribution``: SHAP of the whole model-plus-probe pipeline over lead × time-segment groups;
- ``projection``: 2-D UMAP of the test embeddings and the structure scores that quantify it;
- ``representation``: effective rank (RankMe) and linear CKA between models;
- ``transfer``: train on one region, test on every other one;
- ``label_efficiency``: metric-versus-training-size curves, their area and the control's reach point;
- ``comparison``: paired bootstrap / permutation comparison of models on the same test records.

``stage`` runs them on a benchmark run (the ``analysis`` tests of ``benchmarks/test_representation.py``)
and stores JSON under ``<run dir>/analysis/``; the report only assembles what it finds there.
Heavy libraries (shap, umap, numba) are imported inside the functions that need them.
"""
