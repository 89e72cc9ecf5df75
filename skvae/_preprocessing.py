"""Input standardisation kept inside the estimators (numpy only)."""

from __future__ import annotations

import numpy as np


def fit_standardiser(X):
    """Column means and scales of ``X``, computed in float64.

    A constant column gets scale 1, so standardising it gives zeros instead
    of NaN or inf; a non-finite scale (huge magnitudes) falls back to the
    column's largest absolute deviation.
    """
    X64 = np.asarray(X, dtype=np.float64)
    mean = X64.mean(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = X64.std(axis=0)
    bad = ~np.isfinite(scale)
    if bad.any():
        scale[bad] = np.max(np.abs(X64[:, bad] - mean[bad]), axis=0)
    # As sklearn's StandardScaler: a spread below float64 rounding noise of the
    # mean is a constant column.
    constant = scale <= 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    scale[constant] = 1.0
    return mean, scale
