"""The outlier scorers: label 1 marks an anomaly, and a low score is anomalous."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from skvae.metrics import outlier_average_precision, outlier_roc_auc


class FixedScores:
    """Stands in for a fitted detector: ``score_samples`` returns set scores."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def score_samples(self, X):
        return self.scores[np.asarray(X, dtype=int).ravel()]


# Rows 0..4 from most to least anomalous (lowest score first); anomalies at
# ranks 1, 3 and 4. Precision at each anomaly: 1/1, 2/3, 3/4, so the average
# precision is (1 + 2/3 + 3/4) / 3 = 29/36; of the 3 x 2 anomaly-normal pairs,
# 4 put the anomaly first (not rows 2 and 3 against row 1), so the ROC-AUC is 2/3.
SCORES = [-9.0, -5.0, -4.0, -3.0, 2.0]
LABELS = np.array([1, 0, 1, 1, 0])
ROWS = np.arange(5).reshape(-1, 1)


def test_outlier_average_precision_by_hand_and_as_scikit_learn_computes_it():
    ap = outlier_average_precision(FixedScores(SCORES), ROWS, LABELS)
    assert ap == pytest.approx(29 / 36)
    assert ap == pytest.approx(average_precision_score(LABELS, -np.array(SCORES)))
    # Read the wrong way round (high score anomalous) it would be much lower.
    assert average_precision_score(LABELS, SCORES) < 0.7


def test_outlier_roc_auc_by_hand():
    assert outlier_roc_auc(FixedScores(SCORES), ROWS, LABELS) == pytest.approx(2 / 3)
    assert roc_auc_score(LABELS, SCORES) == pytest.approx(1 / 3)
