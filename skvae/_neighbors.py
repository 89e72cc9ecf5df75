"""The neighbour term of ``VAEAnomalyDetector(novelty=True)``.

On clean training rows (novelty detection) the distance of a row to its
k-th nearest training row is the strongest single score on the benchmark
datasets: a kNN detector on standardised columns ranks anomalies better
than every VAE variant measured, while the VAE's bound is better on other
tables (celeba 0.803 against 0.786, mammography 0.884 against 0.879;
benchmarks/results/ablation.md, variants "trim 0" and "kNN, standardised
features"). The two disagree where each is wrong, so the detector adds
them: the row's bound minus its k-th neighbour distance put on the bound's
scale, each centred and scaled by the median and interquartile range of
the training rows. On the 16 development datasets (novelty setting, seeds 0-2,
benchmarks/results/ablation.md) the sum reaches a mean ROC-AUC of 0.9461,
against 0.9336 for the bound alone (variant "trim 0") and 0.9479 for the
distance alone ("kNN, standardised features"); beside the benchmark's peers
it has the best mean ROC-AUC and mean rank (benchmarks/RESULTS.md).

Distances are Euclidean in the encoder's input: standardised numeric
columns, one-hot categories and the missing-value indicators, missing
entries at the column mean (the missing-value correction of
``skvae._missing_reference`` then moves such rows as it does the bound).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

# The k of the distance: PyOD's kNN default.
N_NEIGHBORS = 5
# Training rows kept to measure distances to: the development datasets'
# novelty fits (at most 10,000 rows) keep all of theirs; a cap of 4,096
# lowers their mean ROC-AUC from 0.9461 to 0.9450, of 1,024 to 0.9417
# (ablation variants "novelty, ... neighbour rows"). Scoring compares each
# row with all of them: 39,000 to 62,000 rows/s on 2 threads, against
# 1.2 to 2.8 million without (benchmarks/novelty_speed.py).
MAX_ROWS = 10_000


def select_rows(n_rows, held_out, seed):
    """Positions of the training rows the distances are measured to: those
    not ``held_out`` (so the calibration rows stay unseen), at most
    ``MAX_ROWS`` of them drawn with ``seed``."""
    rows = np.arange(n_rows) if held_out is None else np.setdiff1d(np.arange(n_rows), held_out)
    if rows.size > MAX_ROWS:
        rows = np.sort(np.random.RandomState(seed).choice(rows, MAX_ROWS, replace=False))
    return rows


def robust_spread(values):
    """Interquartile range of ``values``; their standard deviation when
    that is 0 (mostly tied values), and 1 when both are."""
    q1, q3 = np.percentile(values, [25, 75])
    for spread in (q3 - q1, np.std(values)):
        if spread > 0:
            return float(spread)
    return 1.0


class NeighborSearch:
    """Exact k-th neighbour distances to the embedded training rows."""

    def __init__(self, embedded):
        self.n_neighbors = min(N_NEIGHBORS, embedded.shape[0] - 1)
        # Brute force: at 10,000 rows of 10 columns it outran a k-d tree 4x.
        self._index = NearestNeighbors(n_neighbors=self.n_neighbors, algorithm="brute")
        self._index.fit(embedded)

    def distances(self, embedded):
        """Distance of each embedded row to its k-th nearest training row."""
        return self._index.kneighbors(embedded)[0][:, -1]

    def own_distances(self):
        """The same for the training rows, each without itself."""
        return self._index.kneighbors(None)[0][:, -1]

    def distances_leaving_out(self, embedded, own):
        """``distances`` of the embedded rows, those that are training rows
        (``own``: a boolean mask) measured without themselves."""
        distances = self._index.kneighbors(embedded, n_neighbors=self.n_neighbors + 1)[0]
        return np.where(own, distances[:, -1], distances[:, -2])


def merge_rows(batch, positions, earlier, seed):
    """After ``partial_fit``: the ``positions`` of the ``batch`` rows and the
    ``earlier`` neighbour rows, at most ``MAX_ROWS`` of them together, drawn
    uniformly from both with ``seed`` (so rows of every batch stay, in
    proportion to the pool, not to the rows seen: the latest batches weigh a
    little more). Earlier rows equal to a batch row are dropped first: a
    second epoch over the same rows would otherwise find each row's earlier
    copy at distance 0, and training rows would look too normal."""
    in_batch = {row.tobytes() for row in batch[positions]}
    earlier = earlier[[row.tobytes() not in in_batch for row in earlier]]
    n_pool = positions.size + earlier.shape[0]
    if n_pool <= MAX_ROWS:
        return positions, earlier
    kept = np.sort(np.random.RandomState(seed).choice(n_pool, MAX_ROWS, replace=False))
    from_batch = kept < positions.size
    return positions[kept[from_batch]], earlier[kept[~from_batch] - positions.size]
