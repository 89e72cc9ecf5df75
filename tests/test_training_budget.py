"""The default training budget: a cosine schedule that ends by itself."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skvae import VAEAnomalyDetector, _training
from skvae._adam import Adam
from skvae._network import VAEModule
from skvae._training import (
    BUDGET_STEPS,
    MAX_AUTO_BATCH,
    MIN_EPOCHS,
    REFERENCE_BATCH,
    TrainingSettings,
    cosine_schedule,
    train,
    training_budget,
)

# The default budget with a small network, so the test stays fast.
SMALL = dict(n_components=2, hidden_layer_sizes=(8,), random_state=0)


def test_cosine_schedule_starts_at_one_and_reaches_zero():
    assert cosine_schedule(0, 100) == 1.0
    assert cosine_schedule(50, 100) == pytest.approx(0.5)
    assert cosine_schedule(100, 100) == 0.0
    factors = [cosine_schedule(step, 100) for step in range(101)]
    assert all(a >= b for a, b in zip(factors[:-1], factors[1:], strict=True))


@pytest.mark.parametrize("n_rows", [10, 300, 8192, 20_000, 50_000, 1_000_000, 10**8])
def test_automatic_budget_keeps_steps_times_step_size(n_rows):
    batch, epochs, factor = training_budget(n_rows)
    assert REFERENCE_BATCH <= batch <= MAX_AUTO_BATCH
    assert factor == pytest.approx(math.sqrt(batch / REFERENCE_BATCH))
    steps = epochs * math.ceil(n_rows / batch)
    assert epochs >= MIN_EPOCHS
    # BUDGET_STEPS reference steps' travel (steps x factor), rounded to whole
    # epochs; more only to reach MIN_EPOCHS.
    assert steps * factor >= BUDGET_STEPS * 0.5 or epochs == MIN_EPOCHS
    assert steps * factor <= BUDGET_STEPS * 1.5 or epochs == MIN_EPOCHS


@pytest.mark.parametrize("n_rows", [10, 300, 2_000, 8_192])
def test_small_data_gets_the_budget_in_reference_steps(n_rows):
    batch, epochs, factor = training_budget(n_rows)
    steps = epochs * math.ceil(n_rows / batch)
    assert (batch, factor) == (REFERENCE_BATCH, 1.0)
    assert abs(steps - BUDGET_STEPS) <= 0.05 * BUDGET_STEPS


def test_larger_data_takes_fewer_larger_steps():
    budgets = [training_budget(n) for n in (5_000, 20_000, 45_000)]
    steps = [
        epochs * math.ceil(n / batch)
        for n, (batch, epochs, _) in zip((5_000, 20_000, 45_000), budgets, strict=True)
    ]
    assert steps[0] > steps[1] > steps[2]
    # Beyond a few hundred thousand rows the cost is MIN_EPOCHS passes.
    assert training_budget(10**7)[1] == MIN_EPOCHS


def test_larger_inputs_train_in_larger_batches():
    batches = [training_budget(n)[0] for n in (1_000, 50_000, 1_000_000)]
    assert batches[0] < batches[1] < batches[2]


def test_set_batch_size_and_max_iter_are_kept():
    assert training_budget(50_000, batch_size=64, max_iter=7) == (64, 7, 1.0)


def test_training_anneals_the_step_size_to_zero():
    module = VAEModule(3, 2, (8,))
    generator = torch.Generator().manual_seed(0)
    module.reset_parameters(generator)
    optimizer = Adam(module.parameters(), lr=1e-2)
    x = torch.randn(100, 3, generator=generator)
    settings = TrainingSettings(
        batch_size=32, max_iter=6, n_iter_no_change=100, tol=0.0, schedule="cosine"
    )
    history = train(module, optimizer, x, None, settings, generator)
    assert history.n_iter == 6
    # The last of 24 steps ran at the factor of step 23; the base is kept.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * cosine_schedule(23, 24))
    assert optimizer.param_groups[0]["lr"] < 1e-4
    assert history.learning_rate == 1e-2


def test_default_fit_converges_without_warning():
    X = np.random.RandomState(0).normal(size=(300, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        detector = VAEAnomalyDetector(**SMALL).fit(X)
    _, budget_epochs, _ = training_budget(270)  # 10% held out for early stopping
    # The whole budget, or fewer epochs when early stopping ended the fit.
    assert 0 < detector.n_iter_ <= budget_epochs
    # The loss curve is no longer falling at the end: the last 10 epochs'
    # mean is within 3% of the whole descent of the 10 before them (each
    # epoch's loss is a Monte Carlo estimate, so single epochs still jitter).
    curve = detector.loss_curve_
    descent = curve[0] - min(curve)
    assert abs(np.mean(curve[-10:]) - np.mean(curve[-20:-10])) < 0.03 * descent


def test_a_chosen_max_iter_that_is_reached_still_warns():
    X = np.random.RandomState(0).normal(size=(300, 4))
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        VAEAnomalyDetector(**SMALL, max_iter=3).fit(X)


def test_default_fit_is_deterministic():
    X = np.random.RandomState(1).normal(size=(200, 3))
    first = VAEAnomalyDetector(**SMALL).fit(X).score_samples(X)
    second = VAEAnomalyDetector(**SMALL).fit(X).score_samples(X)
    np.testing.assert_array_equal(first, second)


def test_partial_fit_keeps_a_constant_step(monkeypatch):
    seen = []
    real = _training._set_learning_rate

    def spy(optimizer, learning_rate):
        seen.append(learning_rate)
        real(optimizer, learning_rate)

    monkeypatch.setattr(_training, "_set_learning_rate", spy)
    X = np.random.RandomState(0).normal(size=(500, 3))
    VAEAnomalyDetector(**SMALL).partial_fit(X)
    assert len(set(seen)) == 1
