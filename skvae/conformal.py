"""Conformal p-values for outlier scores, and the Benjamini–Hochberg procedure.

Numpy only. A score is "higher is more normal", as ``score_samples``. The
detector keeps the scores of rows it did not train on
(``VAEAnomalyDetector.calibration_scores_``); a new row's p-value is the share
of those rows that are at least as anomalous as it. For a new row drawn from
the same distribution as the calibration rows, the p-value is (super-)uniform:
``P(p <= a) <= a`` for every ``a``, whatever the model, so a threshold on it
is a false-positive rate, and many p-values together can be thresholded at a
false-discovery rate with :func:`benjamini_hochberg`.
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
    calibration = np.sort(np.asarray(calibration_scores, dtype=np.float64).ravel())
    scores = np.asarray(scores, dtype=np.float64)
    if calibration.size == 0:
        raise ValueError("conformal p-values need at least one calibration score.")
    at_least_as_anomalous = np.searchsorted(calibration, scores, side="right")
    return (1.0 + at_least_as_anomalous) / (1.0 + calibration.size)


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
