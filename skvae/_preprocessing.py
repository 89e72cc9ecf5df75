"""Input standardisation kept inside the estimators (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ColumnMoments:
    """Per-column statistics that can be merged across batches.

    ``m2`` is the sum of squared deviations from ``mean``; ``minimum`` and
    ``maximum`` give the largest absolute deviation when ``m2`` overflows.
    ``count`` is the number of rows, or, once a batch had missing values
    (NaN), an array with the number of observed values of each column.
    """

    count: int | np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    def to_dict(self):
        count = self.count.tolist() if isinstance(self.count, np.ndarray) else self.count
        return {
            "count": count,
            **{name: getattr(self, name).tolist() for name in ("mean", "m2", "minimum", "maximum")},
        }

    @classmethod
    def from_dict(cls, stored):
        """Rebuild from ``to_dict``; ValueError for anything it would not write."""
        names = ("mean", "m2", "minimum", "maximum")
        if not isinstance(stored, dict) or set(stored) != {"count", *names}:
            raise ValueError(f"expected the keys count, {', '.join(names)}")
        count = stored["count"]
        counts = count if isinstance(count, list) else [count]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts):
            raise ValueError(f"count must be positive integers, got {count!r:.100}")
        arrays = [np.asarray(stored[name], dtype=np.float64) for name in names]
        mean, m2, minimum, maximum = arrays
        if any(a.ndim != 1 or a.shape != mean.shape for a in arrays):
            raise ValueError("the moments must be lists of one length")
        if isinstance(count, list):
            if len(count) != mean.shape[0]:
                raise ValueError("count must hold one value per column")
            count = np.asarray(count, dtype=np.int64)
        if not (np.isfinite(mean).all() and np.isfinite(minimum).all()):
            raise ValueError("the means and extremes must be finite")
        if not (np.isfinite(maximum).all() and np.all(m2 >= 0) and np.all(minimum <= maximum)):
            raise ValueError("the moments are inconsistent")
        return cls(count, *arrays)


def column_moments(X):
    """The :class:`ColumnMoments` of ``X``, computed in float64 over the
    observed (non-NaN) values of each column."""
    X64 = np.asarray(X, dtype=np.float64)
    missing = np.isnan(X64)
    if missing.any():
        return _moments_with_missing(X64, missing)
    mean = X64.mean(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        # The same operations as X64.std, so one batch's scales are bit for
        # bit those of np.std.
        m2 = ((X64 - mean) ** 2).sum(axis=0)
    return ColumnMoments(X64.shape[0], mean, m2, X64.min(axis=0), X64.max(axis=0))


def _moments_with_missing(X64, missing):
    """Moments of the observed values. A column with none gets count 0, mean
    0 and extremes (inf, -inf): merging it into other moments changes
    nothing."""
    count = (~missing).sum(axis=0)
    seen = count > 0
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.where(seen, np.nansum(X64, axis=0) / np.maximum(count, 1), 0.0)
        m2 = np.nansum((X64 - mean) ** 2, axis=0)
    minimum = np.where(missing, np.inf, X64).min(axis=0)
    maximum = np.where(missing, -np.inf, X64).max(axis=0)
    return ColumnMoments(count, mean, m2, minimum, maximum)


def merge_moments(a, b):
    """Moments of the rows of two batches (Chan, Golub and LeVeque's update)."""
    count = a.count + b.count
    share_a, share_b = a.count / count, b.count / count
    with np.errstate(over="ignore", invalid="ignore"):
        # A convex combination cannot overflow where the means are finite.
        mean = a.mean * share_a + b.mean * share_b
        delta = b.mean - a.mean
        m2 = a.m2 + b.m2 + delta**2 * (a.count * share_b)
    return ColumnMoments(
        count, mean, m2, np.minimum(a.minimum, b.minimum), np.maximum(a.maximum, b.maximum)
    )


def standardiser_from_moments(moments):
    """Column means and scales from :class:`ColumnMoments`.

    A constant column gets scale 1, so standardising it gives zeros instead
    of NaN or inf; a non-finite scale (huge magnitudes) falls back to the
    column's largest absolute deviation.
    """
    mean = moments.mean.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.sqrt(moments.m2 / moments.count)
    bad = ~np.isfinite(scale)
    if bad.any():
        scale[bad] = np.maximum(moments.maximum[bad] - mean[bad], mean[bad] - moments.minimum[bad])
    # As sklearn's StandardScaler: a spread below float64 rounding noise of the
    # mean is a constant column. Rounding in merged batch means can exceed
    # that bound, so equal extremes count as constant too.
    constant = scale <= 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    exact = moments.minimum == moments.maximum
    constant |= exact
    scale[constant] = 1.0
    # A column of one value standardises to exactly 0: its mean, summed in
    # floating point, can be off by rounding, which at 1e30 is 1e14 units.
    mean[exact] = moments.minimum[exact]
    return mean, scale
