"""Scores of rows with missing values, put on the complete rows' scale.

A row with missing entries is scored on what it has (its missing entries
completed by the model, ``_likelihoods.mean_over_completions``), and that
score drifts with the number of entries missing, in a direction that depends
on the table: on benchmarks/missing_share.py's tables, normal rows with 70% of
their entries removed landed between the 7th percentile of the complete
normal rows' scores (satimage-2, 36 columns) and the 88th (thyroid, 6
columns). The drift is not additive per entry, and the model's own samples
cannot measure it (they agree with the model's completions by construction).

So the detector keeps a few complete rows it did not train on (the reference)
and measures the drift on them, pattern by pattern: a row missing the columns
M gets its score plus the median, over the reference rows, of (score of the
complete reference row - score of the reference row with M removed): an
estimate of what the row would score complete. On the same tables this puts
such rows between the 43rd and the 64th percentile at every share up to 70%
(``elbo``; ``iwae`` and ``reconstruction`` alike).
"""

from __future__ import annotations

import numpy as np

# Complete held-out rows kept as the reference. In a trial on
# benchmarks/missing_share.py's tables, 32 held-out rows put holey rows at the
# 45th-57th percentile, as close as 128 training rows did (47th-58th). Each
# distinct pattern of missing columns costs scoring this many rows: 16 would
# score 1,200 rows of distinct patterns in 0.32 s instead of 0.52 s with the
# same percentiles (41st-63rd at 70% missing, against 43rd-64th), but a
# median of fewer rows is a noisier estimate for each single pattern.
REFERENCE_ROWS = 32
# Below this many complete held-out rows, complete training rows are used
# too (rows the model trained on: their drift is measured all the same).
MIN_HELD_OUT = 8
# Masked reference rows scored per call: bounds the memory of the step.
BLOCK_ROWS = 65536


def reference_rows(X, held_out, seed):
    """Up to ``REFERENCE_ROWS`` complete rows of validated ``X``, drawn with
    ``seed``: held-out ones (``held_out``: their indices, or None) when there
    are at least ``MIN_HELD_OUT``, else any; None when no row is complete."""
    complete = ~np.isnan(X).any(axis=1)
    candidates = np.flatnonzero(complete)
    if held_out is not None:
        held_out_complete = held_out[complete[held_out]]
        if held_out_complete.size >= MIN_HELD_OUT:
            candidates = held_out_complete
    if candidates.size == 0:
        return None
    rng = np.random.RandomState(seed)
    chosen = rng.choice(candidates, min(REFERENCE_ROWS, candidates.size), replace=False)
    return np.array(X[np.sort(chosen)], dtype=np.float64)


def row_shifts(X, reference, score_rows):
    """Per row of validated ``X``, what to add to its score: the drift its
    pattern of missing entries causes on the ``reference`` rows (0 for
    complete rows, and for every row without a reference); ``score_rows``
    scores validated rows as the scores to correct were."""
    shifts = np.zeros(X.shape[0], dtype=np.float64)
    # One pass without a boolean copy of X for the usual complete input.
    if reference is None or not np.isnan(np.sum(X)):
        return shifts
    missing = np.isnan(X)
    holey = np.flatnonzero(missing.any(axis=1))
    patterns, which = np.unique(missing[holey], axis=0, return_inverse=True)
    shifts[holey] = pattern_shifts(patterns, reference, score_rows)[which.ravel()]
    return shifts


def spread_over_missing(contributions, X, shifts):
    """Per-entry anomaly ``contributions`` (higher: more anomalous) of
    validated ``X`` whose row sums follow the corrected scores: each row's
    missing entries share its ``shifts`` equally, being what it corrects."""
    if not shifts.any():  # complete rows, or no reference: nothing to spread
        return contributions
    missing = np.isnan(X)
    count = missing.sum(axis=1, keepdims=True)
    share = np.divide(shifts[:, None], count, out=np.zeros_like(contributions), where=count > 0)
    return contributions - np.where(missing, share, 0.0)


def pattern_shifts(patterns, reference, score_rows):
    """Per row of boolean ``patterns`` (True: missing), the median over the
    ``reference`` rows of their complete score minus their score with those
    entries missing."""
    complete = score_rows(reference)
    k = reference.shape[0]
    per_block = max(1, BLOCK_ROWS // k)
    shifts = np.empty(patterns.shape[0], dtype=np.float64)
    for start in range(0, patterns.shape[0], per_block):
        block = patterns[start : start + per_block]
        masked = np.repeat(reference[None], block.shape[0], axis=0)
        masked[np.broadcast_to(block[:, None, :], masked.shape)] = np.nan
        masked_scores = score_rows(masked.reshape(-1, reference.shape[1]))
        drift = complete[None, :] - masked_scores.reshape(block.shape[0], k)
        shifts[start : start + block.shape[0]] = np.median(drift, axis=1)
    return shifts
