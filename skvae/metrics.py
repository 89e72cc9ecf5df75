"""Scorers for tuning detectors with labels where 1 marks an anomaly.

scikit-learn's built-in ``"roc_auc"`` scorer treats a high
``decision_function`` as the positive class, but a detector's high score means
*normal*. These scorers flip the sign, so ``GridSearchCV(detector,
scoring=outlier_roc_auc)`` works with the usual y (1 = anomaly, 0 = normal).
"""

from __future__ import annotations

from sklearn.metrics import average_precision_score, roc_auc_score


def outlier_roc_auc(estimator, X, y):
    """ROC-AUC of ``-score_samples(X)`` against ``y`` (1 = anomaly).

    Examples
    --------
    >>> import numpy as np
    >>> from skvae import VAEAnomalyDetector
    >>> from skvae.metrics import outlier_roc_auc
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(200, 3)), rng.normal(6, 1, size=(10, 3))])
    >>> y = np.r_[np.zeros(200), np.ones(10)]
    >>> detector = VAEAnomalyDetector(max_iter=20, random_state=0).fit(X)
    >>> outlier_roc_auc(detector, X, y) > 0.9
    True
    """
    return roc_auc_score(y, -estimator.score_samples(X))


def outlier_average_precision(estimator, X, y):
    """Average precision of ``-score_samples(X)`` against ``y`` (1 = anomaly)."""
    return average_precision_score(y, -estimator.score_samples(X))
