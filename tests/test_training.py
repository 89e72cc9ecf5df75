"""The training loop: early stopping, warm start, divergence, interruption, verbosity."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skvae import TrainingDivergedError, VAEAnomalyDetector, VAETransformer, _training
from skvae._network import VAEModule

from .conftest import FAST


def test_early_stopping_records_curves_and_restores_best(blobs):
    vae = VAETransformer(**{**FAST, "max_iter": 500, "n_iter_no_change": 3, "tol": 0.5}).fit(blobs)
    assert vae.n_iter_ < 500
    assert len(vae.loss_curve_) == vae.n_iter_ == len(vae.validation_scores_)
    assert vae.best_validation_score_ == max(vae.validation_scores_)
    # The restored weights are the best epoch's: re-evaluating the same
    # validation criterion on the model must give the best score.
    # Replay the generator: initialisation first, then the split.
    gen = torch.Generator().manual_seed(vae._seed)
    VAEModule(4, 2, (16,)).reset_parameters(gen)
    x = torch.from_numpy(((blobs - vae.mean_) / vae.scale_).astype(np.float32))
    _, x_val, _ = vae._split(x, gen)
    assert _training.mean_elbo(vae.module_, x_val) == pytest.approx(
        vae.best_validation_score_, rel=1e-5
    )


def test_without_early_stopping_training_loss_is_watched(blobs):
    vae = VAETransformer(**{**FAST, "early_stopping": False}).fit(blobs)
    assert vae.validation_scores_ is None
    assert vae.best_loss_ == min(vae.loss_curve_)


def test_max_iter_reached_warns(blobs):
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        VAETransformer(**{**FAST, "max_iter": 2}).fit(blobs)


def test_warm_start_continues_training(blobs):
    vae = VAETransformer(**{**FAST, "max_iter": 5, "warm_start": True}).fit(blobs)
    first = vae.module_
    weights = {k: v.clone() for k, v in first.state_dict().items()}
    vae.fit(blobs)
    assert vae.n_iter_ == 10 and len(vae.loss_curve_) == 10
    assert vae.module_ is not first
    # The first model was left intact: a warm start trains a copy.
    assert all(torch.equal(v, weights[k]) for k, v in first.state_dict().items())


def test_loss_goes_down(blobs):
    # A constant step: the cosine schedule's halved mean step needs longer.
    params = {**FAST, "max_iter": 60, "early_stopping": False, "learning_rate": "constant"}
    vae = VAETransformer(**params).fit(blobs)
    assert vae.loss_curve_[-1] < vae.loss_curve_[0] - 1.0


def test_kl_warmup_delays_early_stopping(blobs):
    vae = VAETransformer(
        **{**FAST, "max_iter": 40, "kl_warmup": 15, "n_iter_no_change": 1, "tol": 100}
    ).fit(blobs)
    assert vae.n_iter_ == 15  # the first epoch at full beta is the 15th


def test_divergence_recovers_by_lowering_the_step(blobs, monkeypatch):
    calls = {"n": 0}
    real_epoch = _training._run_epoch

    def flaky_epoch(*args):
        calls["n"] += 1
        return float("nan") if calls["n"] == 2 else real_epoch(*args)

    monkeypatch.setattr(_training, "_run_epoch", flaky_epoch)
    vae = VAETransformer(**{**FAST, "max_iter": 5}).fit(blobs)
    assert vae._history.learning_rate == pytest.approx(FAST.get("learning_rate_init", 1e-3) / 10)
    assert np.isfinite(vae.score_samples(blobs)).all()


def test_persistent_divergence_is_a_clear_error_and_keeps_old_model(blobs, monkeypatch):
    vae = VAETransformer(**FAST).fit(blobs)
    scores = vae.score_samples(blobs)
    monkeypatch.setattr(_training, "_run_epoch", lambda *args: float("nan"))
    with pytest.raises(TrainingDivergedError, match="learning_rate_init"):
        vae.fit(blobs)
    np.testing.assert_array_equal(vae.score_samples(blobs), scores)


def test_huge_learning_rate_never_yields_nan_scores(blobs):
    try:
        detector = VAEAnomalyDetector(**{**FAST, "learning_rate_init": 1e6}).fit(blobs * 1e6)
    except TrainingDivergedError:
        return
    assert np.isfinite(detector.score_samples(blobs * 1e6)).all()


def test_keyboard_interrupt_keeps_best_weights(blobs, monkeypatch):
    calls = {"n": 0}
    real_epoch = _training._run_epoch

    def interrupted_epoch(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(_training, "_run_epoch", interrupted_epoch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = VAEAnomalyDetector(**FAST).fit(blobs)
    assert any("interrupted" in str(w.message) for w in caught)
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert detector.n_iter_ == 3
    assert np.isfinite(detector.score_samples(blobs)).all()


def test_verbose_shows_progress_with_loss(blobs, capsys):
    VAETransformer(**{**FAST, "max_iter": 3, "verbose": True}).fit(blobs)
    err = capsys.readouterr().err
    assert "loss=" in err and "3/3" in err
