"""Conformal p-values for outlier scores, and the Benjamini–Hochberg procedure.

Numpy only. A score is "higher is more normal", as ``score_samples``. The
detector keeps the scores of rows it did not train on
(``VAEAnomalyDetector.calibration_scores_``); a new row's p-value is the share
of those rows that are at least as anomalous as it. For a new row drawn from
the same distribution as the calibration rows, the p-value is (super-)uniform:
``P(p <= a) <= a`` for every ``a``, whatever the model, so a threshold on it
is a false-positive rate, and many p-values together can be thresholded at a
false-discovery rate with :func:`benjamini_hochberg`.

With few rows the held-out share is small, and no p-value can be below
``1 / (1 + n_calibration)``. :func:`cross_conformal_pvalues` lets every
training row calibrate instead (Vovk's cross-conformal p-values): the rows are
split into folds, one model is fitted without each fold, and each fold's rows
are scored by the model that did not train on them.
"""

from __future__ import annotations

import numpy as np


def conformal_pvalues(calibration_scores, scores):
    """``(1 + #{calibration scores <= score}) / (1 + n_calibration)`` per score.

    Parameters
    ----------
    calibration_scores : array-like of shape (n_calibration,)
        Scores of held-out rows from the training distribution; higher is
        more normal.
    scores : array-like of shape (n_samples,)
        Scores of the rows to test.

    Returns
    -------
    pvalues : ndarray of shape (n_samples,)
        In ``[1 / (1 + n_calibration), 1]``; small for rows that score lower
        than almost every calibration row.

    Examples
    --------
    >>> from skvae.conformal import conformal_pvalues
    >>> conformal_pvalues([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 9.0])
    array([0.2, 0.6, 1. ])
    """
    # The one-fold case of the cross-conformal p-value.
    return cross_conformal_pvalues([calibration_scores], [scores])


def cross_conformal_pvalues(fold_calibration_scores, fold_scores):
    """Vovk's cross-conformal p-values from K fold models.

    ``(1 + sum_k #{i in fold k: s_i^k <= s^k(x)}) / (1 + n)``, where ``s^k`` is
    the model fitted without fold ``k``, ``s_i^k`` its scores of the rows of
    fold ``k`` and ``n`` the number of rows over all folds. Every row
    calibrates, so the smallest p-value is ``1 / (1 + n)``. Unlike split
    conformal p-values these are not guaranteed super-uniform in finite
    samples: the worst case is about ``P(p <= a) <= 2a`` (Vovk et al., 2018,
    "Cross-conformal predictive distributions"), while in practice they are
    close to uniform (tests/test_cross_conformal.py measures it).

    Parameters
    ----------
    fold_calibration_scores : sequence of K array-likes
        The scores ``s_i^k`` of each fold's rows under its fold model.
    fold_scores : sequence of K array-likes of shape (n_samples,)
        The scores ``s^k(x)`` of the rows to test under each fold model.

    Returns
    -------
    pvalues : ndarray of shape (n_samples,)
        In ``[1 / (1 + n), 1]``; small for rows that score lower than almost
        every row of every fold.

    Examples
    --------
    >>> from skvae.conformal import cross_conformal_pvalues
    >>> cross_conformal_pvalues([[1.0, 2.0], [3.0, 4.0]], [[0.0, 2.5], [0.0, 3.5]])
    array([0.2, 0.8])
    """
    if len(fold_calibration_scores) != len(fold_scores) or not fold_scores:
        raise ValueError("cross-conformal p-values need one set of scores per fold model.")
    counts = 0
    n = 0
    for calibration, scores in zip(fold_calibration_scores, fold_scores, strict=True):
        calibration = np.sort(np.asarray(calibration, dtype=np.float64).ravel())
        scores = np.asarray(scores, dtype=np.float64)
        counts = counts + np.searchsorted(calibration, scores, side="right")
        n += calibration.size
    if n == 0:
        raise ValueError("conformal p-values need at least one calibration score.")
    return (1.0 + counts) / (1.0 + n)


def benjamini_hochberg(pvalues, fdr=0.05):
    """Rows rejected by the Benjamini–Hochberg step-up procedure.

    Flags the largest set of rows whose expected share of false flags is at
    most ``fdr`` when the p-values of the normal rows are independent and
    uniform (conformal p-values sharing one calibration set are positively
    dependent, for which the procedure still holds).

    Parameters
    ----------
    pvalues : array-like of shape (n_samples,)
    fdr : float in (0, 1), default=0.05
        False-discovery-rate level.

    Returns
    -------
    rejected : ndarray of bool, shape (n_samples,)
        True for the rows flagged as outliers.

    Examples
    --------
    >>> from skvae.conformal import benjamini_hochberg
    >>> benjamini_hochberg([0.001, 0.02, 0.04, 0.5], fdr=0.05).tolist()
    [True, True, False, False]
    """
    if not 0.0 < fdr < 1.0:
        raise ValueError(f"fdr must be in (0, 1), got {fdr!r}.")
    pvalues = np.asarray(pvalues, dtype=np.float64).ravel()
    m = pvalues.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    ordered = np.sort(pvalues)
    below = np.flatnonzero(ordered <= fdr * np.arange(1, m + 1) / m)
    if below.size == 0:
        return np.zeros(m, dtype=bool)
    return pvalues <= ordered[below[-1]]
