"""The training loop as it should run: early stopping, warm start, KL warm-up, verbosity.

What happens when training goes wrong (divergence, Ctrl-C) is in test_reliability.py.
"""

import sys

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skvae import VAETransformer
from skvae._likelihoods import elbo
from skvae._network import VAEModule

from .conftest import FAST


@pytest.mark.parametrize("tol", [0.5, 0.0])
def test_early_stopping_records_curves_and_restores_best(blobs, tol):
    # A constant step: under the cosine schedule the steps depend on max_iter,
    # so a shorter fit would not retrace the longer one.
    params = {**FAST, "max_iter": 500, "n_iter_no_change": 3, "tol": tol}
    params["learning_rate"] = "constant"
    vae = VAETransformer(**params).fit(blobs)
    assert vae.n_iter_ < 500
    assert len(vae.loss_curve_) == vae.n_iter_ == len(vae.validation_scores_)
    assert vae.best_validation_score_ == max(vae.validation_scores_)
    best = int(np.argmax(vae.validation_scores_))
    if tol == 0:  # three epochs without improvement after the best: weights went back
        assert best == vae.n_iter_ - 4
    # The restored weights are the best epoch's: a fit stopped after that
    # epoch (same random_state, so the same split and draws) is the same model.
    stopped = VAETransformer(**{**params, "max_iter": best + 1}).fit(blobs)
    assert stopped.validation_scores_ == vae.validation_scores_[: best + 1]
    for (name, a), b in zip(
        vae.module_.state_dict().items(), stopped.module_.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(vae.score_samples(blobs), stopped.score_samples(blobs))


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


def test_verbose_shows_progress_with_loss(blobs, capsys, monkeypatch):
    # The bar is drawn only on a terminal (tests/test_cli_polish.py checks both ways).
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    VAETransformer(**{**FAST, "max_iter": 3, "verbose": True}).fit(blobs)
    err = capsys.readouterr().err
    assert "loss=" in err and "3/3" in err


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e6])
def test_gradient_clipping_matches_torch(scale):
    # _clip_gradients replaces clip_grad_norm_ for speed; it must give the
    # same gradients, below the threshold (untouched) and above it (scaled).
    from skvae._training import MAX_GRAD_NORM, _clip_gradients

    generator = torch.Generator().manual_seed(0)
    ours, theirs = VAEModule(4, 2, (8,)), VAEModule(4, 2, (8,))
    ours.reset_parameters(generator)
    theirs.load_state_dict(ours.state_dict())
    x = scale * torch.randn(32, 4, generator=generator)
    for module in (ours, theirs):
        (-elbo(module, x).mean()).backward()
    _clip_gradients(list(ours.parameters()), MAX_GRAD_NORM)
    torch.nn.utils.clip_grad_norm_(theirs.parameters(), MAX_GRAD_NORM)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ours.parameters()]))
    if scale == 1e6:
        assert norm == pytest.approx(MAX_GRAD_NORM, rel=1e-4)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=0)
