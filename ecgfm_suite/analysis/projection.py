"""UMAP of the test embeddings, and the scores that say what the picture only suggests.

UMAP's parameters are fixed in advance (umap-learn's defaults ``N_NEIGHBORS``/``MIN_DIST``, and
``N_EPOCHS`` = 200, the number umap-learn itself uses above 10,000 records; its default of 500
below that costs 2.5× the layout time for a picture that changes little), never tuned on the test
set. UMAP gets the exact Euclidean distance matrix (``metric="precomputed"``): for fewer than
4,096 records umap-learn computes exact neighbours anyway, but through one Python call per pair
(measured: 800 records, 1.0 s of 2.4 s); the embeddings are standardised with the training split's
statistics. The structure is quantified where it lives, in the embedding space:

- silhouette of the labels (and, for comparison, of the labels in the 2-D map);
- k-NN label accuracy (stratified 5-fold cross-validation over the test records), in the
  embedding space and in the map, with the majority-class rate as chance level;
- trustworthiness of the map (scikit-learn): are 2-D neighbours true neighbours;
- source separability: cross-validated AUROC of a logistic regression that predicts the
  source (dataset, or region within a dataset) from the embedding. High values mean the
  model encodes where the ECG was recorded, not only the heart.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnalysisSkip, DataError
from .inputs import AnalysisOptions, ModelTaskData, Output, source_column, within

N_NEIGHBORS = 15
MIN_DIST = 0.1
N_EPOCHS = 200
KNN_K = 10
CV_FOLDS = 5
#: a map needs at least this many records (UMAP's neighbour graph and the scores degenerate below)
MIN_RECORDS = 10
#: sources with fewer records are left out of the separability classifier (listed in the result)
MIN_PER_SOURCE = CV_FOLDS


def umap_2d(X: np.ndarray, *, seed: int, cache_dir: Path, n_neighbors: int = N_NEIGHBORS,
            min_dist: float = MIN_DIST) -> np.ndarray:
    """2-D UMAP of (already standardised) embeddings; seeded, so single-threaded and reproducible."""
    X = np.asarray(X, dtype=np.float32)
    if len(X) < MIN_RECORDS:
        raise DataError(f"{len(X)} records are too few for a map (need {MIN_RECORDS})", "X")
    from sklearn.metrics import pairwise_distances

    from ._jit_cache import import_umap

    umap = import_umap(cache_dir)
    k = min(n_neighbors, len(X) - 1)
    reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, metric="precomputed", random_state=seed,
                        n_jobs=1, n_epochs=N_EPOCHS, init="spectral" if len(X) > k + 2 else "random")
    distances = pairwise_distances(X.astype(np.float64), metric="euclidean")
    with warnings.catch_warnings():  # we never inverse-transform a map
        warnings.filterwarnings("ignore", message="using precomputed metric", category=UserWarning)
        return np.asarray(reducer.fit_transform(distances), dtype=np.float64)


def label_groups(task_type: str, y: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """One group per record for colouring and the label scores: the class (binary/multiclass); for
    multilabel the rarest positive class or "none"; for regression the quintile of the target."""
    y = np.asarray(y)
    if task_type in ("binary", "multiclass"):
        return y.astype(np.int64), list(classes)
    if task_type == "multilabel":
        counts = y.sum(axis=0)
        rarity = np.where(y > 0, counts[None, :], np.iinfo(np.int64).max)
        group = np.where(y.any(axis=1), rarity.argmin(axis=1), len(classes))
        return group.astype(np.int64), [*classes, "none"]
    if task_type == "regression":
        edges = np.quantile(y, [0.2, 0.4, 0.6, 0.8])
        group = np.searchsorted(edges, y, side="right")
        bounds = [float(np.min(y)), *edges.tolist(), float(np.max(y))]
        return group.astype(np.int64), [f"{bounds[i]:.3g}–{bounds[i + 1]:.3g}" for i in range(5)]
    raise DataError(f"unknown task type {task_type!r}", "task_type")


def _usable(groups: np.ndarray) -> bool:
    values = np.unique(groups)
    return len(values) >= 2 and len(values) < len(groups)


def silhouette(X: np.ndarray, groups: np.ndarray) -> float | None:
    """Euclidean silhouette of the groups; None when it is undefined (one group, or one record per group)."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(X, groups, metric="euclidean")) if _usable(groups) else None


def knn_accuracy(X: np.ndarray, groups: np.ndarray, *, k: int = KNN_K, seed: int = 0) -> float | None:
    """Cross-validated k-NN accuracy of the groups (folds capped by the smallest group); None if undefined."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    _, counts = np.unique(groups, return_counts=True)
    folds = min(CV_FOLDS, int(counts.min()))
    if len(counts) < 2 or folds < 2:
        return None
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    n_train = len(groups) - int(np.ceil(len(groups) / folds))
    model = KNeighborsClassifier(n_neighbors=max(1, min(k, n_train)))
    return float(cross_val_score(model, X, groups, cv=cv, scoring="accuracy").mean())


def trustworthiness(X: np.ndarray, Y: np.ndarray, *, k: int = KNN_K) -> float:
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    return float(sk_trustworthiness(X, Y, n_neighbors=max(1, min(k, (len(X) - 1) // 2))))


def source_separability(X: np.ndarray, source: np.ndarray, *, seed: int = 0,
                        max_per_source: int = 500) -> dict[str, Any]:
    """Cross-validated AUROC (macro one-vs-rest for > 2 sources) of predicting the source from the embedding.

    Sources are capped at ``max_per_source`` records (a seeded sample) so that one large dataset
    neither dominates nor makes the fit slow; sources below ``MIN_PER_SOURCE`` records are left out.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source = np.asarray(source).astype(str)
    names, counts = np.unique(source, return_counts=True)
    kept = [str(n) for n, c in zip(names, counts, strict=True) if c >= MIN_PER_SOURCE]
    left_out = {str(n): int(c) for n, c in zip(names, counts, strict=True) if c < MIN_PER_SOURCE}
    if len(kept) < 2:
        return {"auroc": None, "sources": {n: int(c) for n, c in zip(names, counts, strict=True)}, "left_out": left_out,
                "reason": f"fewer than 2 sources with >= {MIN_PER_SOURCE} records"}
    rng = np.random.default_rng(seed)
    rows = np.concatenate([
        np.sort(rng.permutation(np.flatnonzero(source == n))[:max_per_source]) for n in kept
    ])
    labels = np.searchsorted(np.array(kept), source[rows])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, np.asarray(X)[rows], labels, cv=cv, method="predict_proba")
    auroc = (roc_auc_score(labels, proba[:, 1]) if len(kept) == 2
             else roc_auc_score(labels, proba, multi_class="ovr", average="macro"))
    return {"auroc": float(auroc), "sources": {n: int((source[rows] == n).sum()) for n in kept},
            "left_out": left_out, "reason": None}


def structure_scores(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """Label structure of the embedding (X, standardised) and of its 2-D map (Y)."""
    _, counts = np.unique(groups, return_counts=True)
    return {
        "silhouette": silhouette(X, groups),
        "silhouette_map": silhouette(Y, groups),
        "knn_accuracy": knn_accuracy(X, groups, seed=seed),
        "knn_accuracy_map": knn_accuracy(Y, groups, seed=seed),
        "knn_chance": float(counts.max() / counts.sum()),
        "trustworthiness": trustworthiness(X, Y),
        "n_records": int(len(X)),
    }


# --------------------------------------------------------------------------- on a benchmark run

def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """2-D UMAP of the test embeddings and its structure scores (see ``projection``)."""
    from sklearn.preprocessing import StandardScaler

    train, test = data.rows("train"), data.rows("test")
    if len(test) > options.map_max_records:
        rng = np.random.default_rng(options.seed)
        test = np.sort(rng.choice(test, options.map_max_records, replace=False))
    if len(test) < MIN_RECORDS:
        raise AnalysisSkip(f"{len(test)} test records are too few for a map (need {MIN_RECORDS})")
    scaler = StandardScaler().fit(data.X[train])
    X_test = scaler.transform(data.X[test])
    Y = umap_2d(X_test, seed=options.seed, cache_dir=data.cache_dir)
    groups, group_names = label_groups(data.task_type, data.y[test], data.task.classes)
    source_name, source = source_column(data.task)
    separability = None
    if source is not None:
        every = np.flatnonzero(data.have)
        separability = {"by": source_name, **source_separability(
            data.X[every], source[every], seed=options.seed, max_per_source=options.separability_max_per_source)}
    return Output({
        "model": data.model, "task": data.task.task.id,
        "params": {"n_neighbors": N_NEIGHBORS, "min_dist": MIN_DIST, "n_epochs": N_EPOCHS,
                   "metric": "euclidean", "seed": options.seed, "fixed": True,
                   "fit_on": "test embeddings, standardised with training-split statistics"},
        "scores": structure_scores(X_test, Y, groups, seed=options.seed),
        "separability": separability,
        "coords": np.round(Y, 4), "groups": groups, "group_names": group_names,
        "source_by": source_name, "source": None if source is None else source[test],
    })


def problems(p: Mapping[str, Any]) -> list[str]:
    """Invariants a stored payload must satisfy: one point per record, bounded scores."""
    s = p["scores"]
    found = []
    if not len(p["coords"]) == s["n_records"] == len(p["groups"]):
        found.append(f"{len(p['coords'])} points, {s['n_records']} records, {len(p['groups'])} groups")
    for name, low in (("silhouette", -1), ("knn_accuracy", 0), ("trustworthiness", 0)):
        if not within(s[name], low, 1):
            found.append(f"{name} {s[name]} outside [{low}, 1]")
    if not within((p.get("separability") or {}).get("auroc"), 0, 1):
        found.append("source separability AUROC outside [0, 1]")
    return found
