"""Warm starts: each fit is a run of its own, judged on its own terms.

The flags of one run (stopped early, interrupted) and its best validation
score must not decide how a later warm refit ends or which weights it keeps.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skvae import VAEAnomalyDetector, VAETransformer
from skvae._adam import Adam

from .conftest import FAST

X = np.random.RandomState(0).normal(size=(200, 3))


@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
def test_a_warm_refit_that_reaches_max_iter_warns_after_an_early_stop(Estimator):
    # tol is out of reach: the second epoch is not an improvement, so the
    # first fit stops early after 2 epochs.
    estimator = Estimator(**{**FAST, "n_iter_no_change": 1, "tol": 1e6, "warm_start": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        estimator.fit(X)
    assert estimator.n_iter_ == 2
    estimator.set_params(n_iter_no_change=100, tol=0.0, max_iter=3)
    with pytest.warns(ConvergenceWarning, match="reached max_iter=3"):
        estimator.fit(X)
    assert estimator.n_iter_ == 5


@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
def test_a_warm_refit_after_ctrl_c_is_not_reported_as_interrupted(Estimator, monkeypatch):
    real_step = Adam.step
    steps = {"n": 0}

    def step(self, *args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 5:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Adam, "step", step)
    estimator = Estimator(**{**FAST, "max_iter": 3, "warm_start": True})
    with pytest.warns(RuntimeWarning, match="interrupted after 1 epochs"):
        estimator.fit(X)
    monkeypatch.setattr(Adam, "step", real_step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(X)
    messages = [str(w.message) for w in caught]
    assert not any("interrupted" in m for m in messages), messages
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught), messages


def _held_out_rows(detector, X):
    """The rows behind ``calibration_scores_``: a fit calibrates on the scores
    of its held-out validation rows, and every row's score is distinct."""
    scores = detector.score_samples(X)
    rows = np.flatnonzero(np.isin(scores, detector.calibration_scores_))
    assert rows.size == detector.calibration_scores_.size
    return rows


@pytest.mark.parametrize("random_state", [1, None, np.random.RandomState(3)])
def test_warm_refits_hold_out_the_rows_the_first_fit_held_out(random_state):
    """calibration_scores_ must stay scores of rows no run trained on."""
    detector = VAEAnomalyDetector(
        **{**FAST, "max_iter": 5, "warm_start": True, "random_state": random_state}
    )
    held_out = _held_out_rows(detector.fit(X), X)
    assert held_out.size == 20
    for _ in range(2):
        np.testing.assert_array_equal(_held_out_rows(detector.fit(X), X), held_out)


@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_a_warm_refit_keeps_its_own_best_epoch(Estimator, random_state):
    """The refit's weights are those of its best epoch, scored on its own
    validation rows, never the previous fit's weights restored."""
    estimator = Estimator(
        **{**FAST, "max_iter": 5, "warm_start": True, "random_state": random_state}
    )
    estimator.fit(X)
    first = [p.detach().clone() for p in estimator.module_.parameters()]
    estimator.fit(X)
    assert estimator.n_iter_ == 10
    assert estimator.best_validation_score_ == max(estimator.validation_scores_[5:])
    assert not all(
        torch.equal(a, b) for a, b in zip(first, estimator.module_.parameters(), strict=True)
    )
