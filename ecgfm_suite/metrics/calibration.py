"""Calibration of predicted probabilities: ECE (equal-mass bins), Brier score, logistic recalibration slope
and intercept, and temperature scaling.

Every score takes the outcome ``y`` (0/1), the predicted probability ``p`` and a (B, n) matrix of record
weights (``metrics.count_matrix`` of bootstrap resamples; one row of ones is the full sample), so a
bootstrap CI costs matrix products, not B refits:

- ECE: records are put in equal-mass bins by their order of ``p`` on the full sample (ties stay in one bin,
  so a constant predictor has one bin and ECE = |prevalence - p|); ECE = sum over bins of
  |sum w(y - p)| / sum w. Sampling noise alone gives a calibrated predictor an ECE above 0 (about 0.03
  with 10 bins of 300 records), so ``ece_consistency`` says how large it would be if ``p`` were calibrated.
- Brier: weighted mean of (y - p)^2.
- slope: of the logistic regression of y on logit(p) (1 = calibrated spread; < 1 over-confident);
  intercept: calibration-in-the-large, the logistic intercept with logit(p) as a fixed offset (0 =
  calibrated on average). Fitted by Newton's method on the full sample; each weight row takes one
  Newton step from that fit (``recalibration``).

Temperature scaling divides the logits (a sigmoid output's logit(p), a softmax's log p) by one T > 0, here
with a bias per output added (bias-corrected temperature scaling, Alexandari et al. 2020; for a sigmoid
output it is Platt scaling), all fitted on validation by maximum likelihood. The bias matters for linear
probes: their intercepts are not penalised, so a strongly regularised probe predicts near the prevalence,
and dividing its logit by T alone would scale the intercept away from the prevalence too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_softmax, logit, softmax
from scipy.stats import rankdata

from .bootstrap import count_matrix, percentile_ci, row_chunks

#: probabilities are clipped to [EPS, 1 - EPS] before taking logits (a probe's 0 or 1 has no finite logit)
EPS = 1e-6
#: Newton iterations and tolerance of the recalibration fits; a coefficient above MAX_SLOPE: a separable sample
MAX_ITER = 50
TOL = 1e-8
MAX_SLOPE = 1e3
#: weight cells (resamples × records) up to which every resample is refitted exactly
EXACT_LIMIT = 200_000
#: temperatures allowed: log T in [-LOG_T_BOUND, LOG_T_BOUND]
LOG_T_BOUND = 5.0


def clipped_logit(p: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)))


def equal_mass_bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index (0, 1, …) of each record: records in order of ``p`` cut into ``n_bins`` equal parts, a record
    placed by the first position of its value, so equal values (ties) share a bin."""
    first = rankdata(np.asarray(p, dtype=np.float64), method="min") - 1
    return np.unique(first * n_bins // len(first), return_inverse=True)[1].reshape(-1)


def ece(y: np.ndarray, p: np.ndarray, bins: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Expected calibration error per weight row: (B,)."""
    residual = np.asarray(y, dtype=np.float64) - np.asarray(p, dtype=np.float64)
    members = bins[:, None] == np.arange(int(bins.max()) + 1)[None, :]
    return np.abs(W @ (members * residual[:, None])).sum(axis=1) / W.sum(axis=1)


def brier(y: np.ndarray, p: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Brier score per weight row: (B,)."""
    residual = np.asarray(y, dtype=np.float64) - np.asarray(p, dtype=np.float64)
    return (W @ residual**2) / W.sum(axis=1)


def recalibration(y: np.ndarray, p: np.ndarray, W: np.ndarray, *,
                  exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(slope, intercept) per weight row (see the module docstring); NaN where the full-sample fit does not
    converge (a separable sample: the slope is infinite).

    The full sample is fitted by Newton's method from the null model (slope 0, intercept = logit of the
    prevalence). A weight row then starts from that fit: ``exact`` (default: at most EXACT_LIMIT weights in
    all) refits it to convergence; else it takes one Newton step, whose gradient and Hessian are weighted sums
    of per-record terms at the full fit (the one-step bootstrap of GLMs, Moulton & Zeger 1991): one matrix
    product for every row instead of a refit each, accurate where samples are large."""
    y = np.asarray(y, dtype=np.float64)
    x = clipped_logit(p)
    null = float(clipped_logit(np.array([y.mean()]))[0])
    a, b = _newton(y, x, np.array([null, 0.0]), slope=True)
    c = _newton(y, x, np.array([null]), slope=False)[0]
    if not (np.isfinite(b) and np.isfinite(c)):
        nan = np.full(len(W), np.nan)
        return nan, nan
    if not (W.size <= EXACT_LIMIT if exact is None else exact):
        mu = expit(a + b * x)
        r, v = y - mu, mu * (1 - mu)
        g0, g1, h00, h01, h11 = (W @ np.column_stack([r, r * x, v, v * x, v * x * x])).T
        mu = expit(c + x)
        g, h = (W @ np.column_stack([y - mu, mu * (1 - mu)])).T
        with np.errstate(divide="ignore", invalid="ignore"):
            return b + (h00 * g1 - h01 * g0) / (h00 * h11 - h01**2), c + g / h
    return _newton_rows(y, x, W, np.array([a, b]), slope=True)[1], _newton_rows(y, x, W, np.array([c]), slope=False)[0]


def _newton_rows(y: np.ndarray, x: np.ndarray, W: np.ndarray, start: np.ndarray, *, slope: bool) -> np.ndarray:
    """``_newton`` on every weight row at once from ``start``: (coefficients, rows), NaN where a row does not
    converge or a coefficient exceeds MAX_SLOPE."""
    theta = np.tile(start[:, None], (1, len(W)))
    active = np.arange(len(W))
    failed = np.zeros(len(W), dtype=bool)
    for _ in range(MAX_ITER):
        w = W[active]
        eta = theta[0, active, None] + (theta[1, active, None] * x if slope else x)
        mu = expit(eta)
        r, v = w * (y - mu), w * mu * (1 - mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            if slope:
                g0, g1, h00, h01, h11 = r.sum(axis=1), r @ x, v.sum(axis=1), v @ x, v @ (x * x)
                det = h00 * h11 - h01**2
                step = np.array([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det])
            else:
                step = (r.sum(axis=1) / v.sum(axis=1))[None, :]
        finite = np.isfinite(step).all(axis=0)
        theta[:, active[finite]] += step[:, finite]
        failed[active[~finite]] = True
        moving = np.abs(step).sum(axis=0) >= TOL
        active = active[finite & moving & (np.abs(theta[:, active]).max(axis=0) < MAX_SLOPE)]
        if len(active) == 0:
            break
    bad = failed | (np.abs(theta).max(axis=0) >= MAX_SLOPE) | np.isin(np.arange(len(W)), active)
    return np.where(bad[None, :], np.nan, theta)


def _newton(y: np.ndarray, x: np.ndarray, theta: np.ndarray, *, slope: bool) -> np.ndarray:
    """Logistic regression of y on ``a + b x`` (``slope``) or on ``a + x`` (x an offset) by Newton's method
    from ``theta``: the coefficients, NaN where it does not converge or a coefficient exceeds
    MAX_SLOPE (a separable sample)."""
    design = np.column_stack([np.ones_like(x), x]) if slope else np.ones((len(x), 1))
    offset = np.zeros_like(x) if slope else x
    for _ in range(MAX_ITER):
        mu = expit(design @ theta + offset)
        hessian = design.T @ (design * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            break
        theta = theta + step
        if not np.isfinite(theta).all() or np.abs(theta).max() >= MAX_SLOPE:
            break
        if np.abs(step).sum() < TOL:
            return theta
    return np.full_like(theta, np.nan)


def reliability(y: np.ndarray, p: np.ndarray, bins: np.ndarray) -> dict[str, list[float]]:
    """Per bin: mean predicted probability, observed frequency and record count (the reliability diagram)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    counts = np.bincount(bins)
    keep = counts > 0
    mean_p = np.bincount(bins, weights=p)[keep] / counts[keep]
    observed = np.bincount(bins, weights=y)[keep] / counts[keep]
    return {"mean_predicted": mean_p.tolist(), "observed": observed.tolist(), "n": counts[keep].tolist()}


def fit_temperature(y: np.ndarray, p: np.ndarray, *, softmax_output: bool) -> tuple[float, np.ndarray]:
    """(T, bias) minimising the log loss of the recalibrated probabilities (``apply_temperature``): scipy's
    L-BFGS-B with the exact gradient, log T bounded to [-LOG_T_BOUND, LOG_T_BOUND].

    ``softmax_output``: ``p`` is (n, C) class probabilities and ``y`` class indices (bias: one per class);
    else ``p`` is one sigmoid output's probabilities (n,) and ``y`` 0/1 (bias: one)."""
    y = np.asarray(y)
    if softmax_output:
        z = np.log(np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0))
        target = np.eye(z.shape[1])[y.astype(np.intp)]

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            t = np.exp(theta[0])
            f = z / t + theta[1:]
            residual = softmax(f, axis=1) - target
            value = -(log_softmax(f, axis=1) * target).sum(axis=1).mean()
            return float(value), np.r_[-(residual * z).sum() / t, residual.sum(axis=0)] / len(z)
    else:
        z, target = clipped_logit(p), y.astype(np.float64)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            t = np.exp(theta[0])
            f = z / t + theta[1]
            residual = expit(f) - target
            value = np.mean(np.logaddexp(0.0, f) - target * f)
            return float(value), np.array([-(residual * z).sum() / t, residual.sum()]) / len(z)

    n_bias = z.shape[1] if softmax_output else 1
    bounds = [(-LOG_T_BOUND, LOG_T_BOUND)] + [(None, None)] * n_bias
    fit = minimize(loss, np.zeros(1 + n_bias), jac=True, method="L-BFGS-B", bounds=bounds)
    return float(np.exp(fit.x[0])), np.asarray(fit.x[1:])


def apply_temperature(p: np.ndarray, temperature: float, bias: np.ndarray, *, softmax_output: bool) -> np.ndarray:
    """Probabilities with their logits divided by ``temperature`` and ``bias`` added."""
    if softmax_output:
        logp = np.log(np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0))
        return np.asarray(softmax(logp / temperature + bias, axis=1))
    return np.asarray(expit(clipped_logit(p) / temperature + float(np.asarray(bias).reshape(-1)[0])))


def calibration_samples(y: np.ndarray, predictions: Sequence[tuple[np.ndarray, np.ndarray]],
                        idx: np.ndarray) -> list[dict[str, tuple[float, np.ndarray]]]:
    """For each (probabilities, bins) of the same outcomes ``y``: each score on the full sample and on each
    resample (rows of ``idx``, record indices), name → (value, (B,) values). The resamples are weighted once,
    in memory-bounded chunks, for every prediction."""
    y = np.asarray(y, dtype=np.float64)
    full = np.ones((1, len(y)))
    names = ("ece", "brier", "slope", "intercept")
    exact = idx.size <= EXACT_LIMIT  # one method for every chunk

    def scores(p: np.ndarray, bins: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, ...]:
        return ece(y, p, bins, W), brier(y, p, W), *recalibration(y, p, W, exact=exact)

    values = [scores(p, bins, full) for p, bins in predictions]
    parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in predictions]
    for rows in row_chunks(len(idx), len(y)):
        W = count_matrix(idx[rows], len(y))
        for part, (p, bins) in zip(parts, predictions, strict=True):
            part.append(scores(p, bins, W))
    return [{name: (float(value[k][0]), np.concatenate([chunk[k] for chunk in part]) if part else np.empty(0))
             for k, name in enumerate(names)} for value, part in zip(values, parts, strict=True)]


def ece_interval(value: float, samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The basic (reverse-percentile) bootstrap interval of ECE, clipped to [0, 1].

    ECE is biased upwards (|noise| adds to every bin), and a resample's ECE more so; the percentile
    interval of a perfectly calibrated probe would then exclude 0. The basic interval 2·ECE − quantiles
    removes that shift."""
    low, high, _, _ = percentile_ci(samples, level)
    return float(np.clip(2 * value - high, 0.0, 1.0)), float(np.clip(2 * value - low, 0.0, 1.0))


def ece_consistency(y: np.ndarray, p: np.ndarray, bins: np.ndarray, n_draws: int,
                    rng: np.random.Generator) -> tuple[float, float]:
    """(noise floor, p-value) of an ECE by consistency resampling (Bröcker & Smith 2007): outcomes drawn
    from ``p`` itself are perfectly calibrated, so their ECE (same records, same bins) is what sampling
    noise alone gives. The floor is its 95th percentile; the p-value is the share of draws at least as far
    from calibrated as ``y`` (one-sided, with the +1 of a permutation test)."""
    p = np.asarray(p, dtype=np.float64)
    observed = float(ece(y, p, bins, np.ones((1, len(p))))[0])
    members = (bins[:, None] == np.arange(int(bins.max()) + 1)[None, :]).astype(np.float64)
    null = np.concatenate([np.abs((rng.random((rows.stop - rows.start, len(p))) < p) @ members - p @ members)
                           .sum(axis=1) for rows in row_chunks(n_draws, len(p))]) / len(p)
    return float(np.percentile(null, 95)), float((1 + (null >= observed - 1e-12).sum()) / (1 + n_draws))
