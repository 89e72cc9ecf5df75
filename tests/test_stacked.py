"""Stacked training of several networks (skvae._stacked): the same numbers as
the networks one by one, and the cross-conformal fold models built on it."""

import numpy as np
import pandas as pd
import pytest
import torch

import skvae._anomaly as anomaly_module
import skvae._stacked as stacked_module
from skvae import VAEAnomalyDetector
from skvae._adam import Adam
from skvae._likelihoods import elbo
from skvae._network import ColumnLayout, VAEModule
from skvae._stacked import (
    StackedVAE,
    _clip_member_gradients,
    batch_plan,
    can_stack,
    stacked_moments,
    train_stacked,
    trimmed_means,
)
from skvae._training import TrainingSettings, _batch_loss, train

MIXED = ColumnLayout(
    ("gaussian", "categorical", "bernoulli", "gaussian"), (0, 3, 0, 0), (True, False, False, False)
)


def _members(n, layout=None, decoder_variance="feature", n_features=4):
    modules = []
    for seed in range(n):
        module = VAEModule(n_features, 2, (8, 6), decoder_variance=decoder_variance, layout=layout)
        module.reset_parameters(torch.Generator().manual_seed(seed))
        modules.append(module)
    return modules


def _mixed_rows(n, seed):
    rng = np.random.RandomState(seed)
    x = np.column_stack(
        [rng.randn(n), rng.randint(0, 3, n), rng.randint(0, 2, n), rng.randn(n)]
    ).astype(np.float32)
    x[rng.rand(n) < 0.2, 0] = np.nan
    x[rng.rand(n) < 0.1, 1] = np.nan
    return torch.from_numpy(x)


@pytest.mark.parametrize("decoder_variance", ["feature", "sample"])
def test_stacked_elbo_and_gradients_are_each_members(decoder_variance):
    modules = _members(3, MIXED, decoder_variance)
    stack = StackedVAE(modules)
    x = torch.stack([_mixed_rows(7, seed) for seed in range(3)])
    noise = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(5))
    together = elbo(stack, x, noise, 0.7)
    together.sum().backward()
    for k, module in enumerate(modules):
        alone = elbo(module, x[k], noise[k], 0.7)
        torch.testing.assert_close(together[k], alone, rtol=1e-5, atol=1e-5)
        alone.sum().backward()
        for (name, parameter), stacked in zip(
            module.named_parameters(), stack.parameters(), strict=True
        ):
            if parameter.grad is None:  # unused: the per-row variance replaces it
                assert stacked.grad is None
                continue
            torch.testing.assert_close(stacked.grad[k], parameter.grad, msg=name)


def test_trimmed_means_leave_out_padding_and_the_worst_rows(monkeypatch):
    from skvae import _training

    monkeypatch.setattr(_training, "ROBUST_TRIM", None)  # a fixed share: the worst rows
    losses = torch.tensor([[3.0, 1.0, 2.0, 9.0, 0.5], [4.0, 8.0, 1.0, 2.0, 100.0]])
    counts = [5, 4]  # the second member's last entry is padding
    got = trimmed_means(losses, counts, 0.4)
    expected = [_batch_loss(losses[k, :n], 0.4) for k, n in enumerate(counts)]
    torch.testing.assert_close(got, torch.stack(expected))
    # No trimming: plain means of the real rows.
    torch.testing.assert_close(
        trimmed_means(losses, counts, 0.0), torch.tensor([15.5 / 5, 15.0 / 4])
    )


def test_trimmed_means_follow_the_robust_trim_rule(monkeypatch):
    from skvae import _training

    monkeypatch.setattr(_training, "ROBUST_TRIM", 3.0)
    generator = torch.Generator().manual_seed(0)
    losses = torch.rand(4, 10, generator=generator, dtype=torch.float64)
    losses[0, 2] = 50.0  # one clear outlier: only it is left out
    losses[1, :3] = 80.0  # more outliers than the trim fraction allows out
    losses[2, 6] = 70.0  # an outlier in the padding of member 2 counts for nothing
    counts = [10, 9, 6, 7]  # member 3: no outlier, nothing is left out
    got = trimmed_means(losses, counts, 0.2)
    expected = [_batch_loss(losses[k, :n], 0.2) for k, n in enumerate(counts)]
    torch.testing.assert_close(got, torch.stack(expected))
    assert got[3] == pytest.approx(losses[3, :7].mean().item())
    assert got[0] == pytest.approx(torch.cat([losses[0, :2], losses[0, 3:]]).mean().item())
    assert got[2] == pytest.approx(losses[2, :6].mean().item())


def test_fold_models_stack_under_the_robust_trim(monkeypatch):
    from skvae import _training

    monkeypatch.setattr(_training, "ROBUST_TRIM", 3.0)
    calls = _spy_on_stacked_training(monkeypatch)
    X = _small_table()
    X[:3] += 8.0
    detector = VAEAnomalyDetector(random_state=0, max_iter=5, calibration="cross").fit(X)
    assert calls == [(6, True)]
    alone = VAEAnomalyDetector(random_state=0, max_iter=5, calibration="split").fit(X)
    np.testing.assert_allclose(detector.score_samples(X), alone.score_samples(X), rtol=1e-5)
    assert detector.loss_curve_ == pytest.approx(alone.loss_curve_, rel=1e-5)


@pytest.mark.parametrize(
    "robust_trim, member_0",
    [
        (None, [0.0, 1.0 / 2, 2.0 / 2]),  # a fixed share: its 2 best of 3 rows
        (3.0, [3.0 / 3, 1.0 / 3, 2.0 / 3]),  # no loss 3 robust SDs above the median
    ],
)
def test_trimmed_means_work_for_training_after_validation_with_the_same_rows(
    monkeypatch, robust_trim, member_0
):
    from skvae import _training

    monkeypatch.setattr(_training, "ROBUST_TRIM", robust_trim)
    losses = torch.tensor([[3.0, 1.0, 2.0], [4.0, 8.0, 1.0]])
    with torch.inference_mode():
        trimmed_means(losses, [3, 2], 0.4)
    weights = torch.ones(2, 3, requires_grad=True)
    trimmed_means(losses * weights, [3, 2], 0.4).sum().backward()
    # Member 1 keeps both of its real rows (0.4 of 2 rounds to none out).
    expected = torch.tensor([member_0, [4.0 / 2, 8.0 / 2, 0.0]])
    torch.testing.assert_close(weights.grad, expected)


def test_gradient_clipping_is_per_member():
    big, small = torch.full((2, 3), 1000.0), torch.full((2, 3), 0.1)
    parameter = torch.zeros(2, 2, 3, requires_grad=True)
    parameter.grad = torch.stack([big, small])
    _clip_member_gradients([parameter], 100.0)
    assert torch.linalg.vector_norm(parameter.grad[0]) == pytest.approx(100.0, rel=1e-5)
    torch.testing.assert_close(parameter.grad[1], small)


def _settings(**overrides):
    base = dict(batch_size=16, max_iter=4, n_iter_no_change=10, tol=1e-4, trim_fraction=0.2)
    return TrainingSettings(**{**base, "schedule": "cosine", **overrides})


def test_stacked_training_matches_training_one_by_one():
    """Equal row counts give each member the batches, noise, steps and
    early-stopping record of its own ``train`` call."""
    x_trains = [_mixed_rows(40, seed) for seed in range(3)]
    x_vals = [_mixed_rows(9, 10 + seed) for seed in range(3)]
    settings = _settings()
    stack_modules = _members(3, MIXED)
    stack = StackedVAE(stack_modules)
    optimizer = Adam(stack.parameters(), 1e-2)
    generators = [torch.Generator().manual_seed(20 + k) for k in range(3)]
    plans = [batch_plan(40, 16, 3)] * 3
    histories = train_stacked(stack, optimizer, x_trains, x_vals, settings, generators, plans)
    for k, module in enumerate(_members(3, MIXED)):
        alone_optimizer = Adam(module.parameters(), 1e-2)
        generator = torch.Generator().manual_seed(20 + k)
        alone = train(module, alone_optimizer, x_trains[k], x_vals[k], settings, generator)
        assert histories[k].n_iter == alone.n_iter == 4
        np.testing.assert_allclose(histories[k].loss_curve, alone.loss_curve, rtol=1e-4)
        np.testing.assert_allclose(
            histories[k].validation_scores, alone.validation_scores, rtol=1e-4
        )
        for got, expected in zip(stack_modules[k].parameters(), module.parameters(), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        moments = stacked_moments(optimizer, k)
        for index, state in alone_optimizer.state_dict()["state"].items():
            torch.testing.assert_close(
                moments[index]["exp_avg"], state["exp_avg"], atol=1e-5, rtol=1e-3
            )


def test_stacked_members_stop_early_on_their_own_and_keep_their_best_weights():
    # Member 1's validation rows are far off: its score stops improving first.
    x_trains = [torch.randn(30, 4, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    x_vals = [x_trains[0][:6] * 1.0, torch.full((7, 4), 50.0)]  # unequal sizes: padding
    settings = _settings(max_iter=60, n_iter_no_change=3, trim_fraction=0.0)
    stack = StackedVAE(_members(2))
    histories = train_stacked(
        stack,
        Adam(stack.parameters(), 5e-2),
        x_trains,
        x_vals,
        settings,
        [torch.Generator().manual_seed(k) for k in range(2)],
        [[16, 14], [15, 15]],  # the members' own batches differ
    )
    assert histories[1].stopped_early and histories[1].n_iter < histories[0].n_iter
    for history, module, x_val in zip(histories, stack.members, x_vals, strict=True):
        assert len(history.loss_curve) == len(history.validation_scores) == history.n_iter
        # The weights written back are the best epoch's: their validation
        # ELBO is the best recorded.
        with torch.no_grad():
            score = elbo(module, x_val).double().mean().item()
        assert score == pytest.approx(history.best_validation_score, rel=1e-4)
        assert history.best_validation_score == max(history.validation_scores)


def test_stacked_training_raises_on_divergence():
    stack = StackedVAE(_members(2))
    x = [torch.randn(20, 4), torch.randn(20, 4)]
    x[1][3, 2] = 1e30  # its squared error overflows float32
    generators = [torch.Generator().manual_seed(k) for k in range(2)]
    with pytest.raises(stacked_module.StackedDivergence):
        train_stacked(
            stack,
            Adam(stack.parameters(), 1e-3),
            x,
            [None, None],
            _settings(),
            generators,
            [[16, 4], [16, 4]],
        )


def test_batch_plans_keep_a_members_own_batches_when_they_make_as_many_steps():
    assert batch_plan(40, 16, 3) == [16, 16, 8]
    assert batch_plan(33, 16, 3) == [16, 16, 1]
    assert batch_plan(30, 16, 3) == [10, 10, 10]  # 2 own batches: 3 equal ones
    assert batch_plan(9, 4, 4) == [3, 2, 2, 2]  # 4-row batches would make 3
    assert batch_plan(3, 4, 4) is None


def test_can_stack_needs_one_architecture_and_validation_for_all_or_none():
    same = _members(2)
    assert can_stack(same, [torch.zeros(3, 4)] * 2, [None, None])
    assert not can_stack(same, [torch.zeros(3, 4)] * 2, [None, torch.zeros(2, 4)])
    assert not can_stack([same[0], *_members(1, MIXED)], [torch.zeros(3, 4)] * 2, [None, None])


def _spy_on_stacked_training(monkeypatch):
    calls = []
    real = anomaly_module.fit_stacked

    def spy(estimators, prepared, lead):
        result = real(estimators, prepared, lead)
        calls.append((len(estimators), result))
        return result

    monkeypatch.setattr(anomaly_module, "fit_stacked", spy)
    return calls


def _small_table(n=60, seed=0):
    return np.random.RandomState(seed).randn(n, 3)


def test_a_fit_and_its_fold_models_train_as_one_stack(monkeypatch):
    calls = _spy_on_stacked_training(monkeypatch)
    X = _small_table()
    detector = VAEAnomalyDetector(random_state=0, max_iter=5, calibration="cross").fit(X)
    assert calls == [(6, True)]
    models = detector.calibration_models_
    assert len(models) == 5
    assert len({id(m.module_) for m in [detector, *models]}) == 6
    for model in [detector, *models]:
        assert model.n_iter_ == 5 and len(model.validation_scores_) == 5
        assert not hasattr(model, "_budget_share")
        assert np.isfinite(model.offset_)
    # The model itself trains as it does on its own (split calibration).
    alone = VAEAnomalyDetector(random_state=0, max_iter=5, calibration="split").fit(X)
    np.testing.assert_allclose(detector.score_samples(X), alone.score_samples(X), rtol=1e-5)
    assert detector.loss_curve_ == pytest.approx(alone.loss_curve_, rel=1e-5)
    assert detector.offset_ == pytest.approx(alone.offset_, rel=1e-5)
    # Deterministic, and each fold model is a working detector.
    again = VAEAnomalyDetector(random_state=0, max_iter=5, calibration="cross").fit(X)
    np.testing.assert_array_equal(detector.pvalues(X), again.pvalues(X))
    np.testing.assert_array_equal(detector.calibration_scores_, again.calibration_scores_)
    assert np.isfinite(models[0].score_samples(X)).all()


def test_a_warm_refit_keeps_its_model_and_stacks_the_fold_models_only(monkeypatch):
    X = _small_table()
    detector = VAEAnomalyDetector(random_state=0, max_iter=3, calibration="cross", warm_start=True)
    detector.fit(X)
    calls = _spy_on_stacked_training(monkeypatch)
    detector.fit(X)
    assert calls == [(5, True)]
    assert detector.n_iter_ == 6 and len(detector.calibration_models_) == 5


def test_fold_models_read_the_columns_as_the_model_does_and_stack(monkeypatch):
    calls = _spy_on_stacked_training(monkeypatch)
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"a": rng.randn(40), "b": rng.randn(40)})
    frame.loc[3, "a"] = np.nan  # four folds' rows have no missing value
    detector = VAEAnomalyDetector(random_state=0, max_iter=3, calibration="cross").fit(frame)
    assert calls == [(6, True)]
    for model in detector.calibration_models_:
        assert model.column_schema_ == detector.column_schema_
        assert model.module_.masked_columns == detector.module_.masked_columns
        assert not hasattr(model, "_fixed_schema")


def test_fold_models_that_cannot_be_stacked_are_fitted_one_by_one(monkeypatch):
    calls = _spy_on_stacked_training(monkeypatch)
    monkeypatch.setattr("skvae._base.can_stack", lambda *args: False)
    X = _small_table()
    detector = VAEAnomalyDetector(random_state=0, max_iter=3, calibration="cross").fit(X)
    assert calls == [(6, False), (5, False)]
    assert len(detector.calibration_models_) == 5
    assert all(m.n_iter_ == 3 for m in detector.calibration_models_)
    # The same folds and seeds as a stacked fit: the same schedule, close weights.
    monkeypatch.undo()
    stacked = VAEAnomalyDetector(random_state=0, max_iter=3, calibration="cross").fit(X)
    pairs = zip(detector.calibration_models_, stacked.calibration_models_, strict=True)
    for alone, member in pairs:
        np.testing.assert_allclose(alone.score_samples(X), member.score_samples(X), rtol=1e-4)


def test_a_diverging_stack_falls_back_to_one_by_one(monkeypatch):
    calls = []

    def diverge(*args, **kwargs):
        calls.append(1)
        raise stacked_module.StackedDivergence

    monkeypatch.setattr("skvae._base.train_stacked", diverge)
    X = _small_table()
    detector = VAEAnomalyDetector(random_state=0, max_iter=3, calibration="cross").fit(X)
    assert calls == [1, 1]  # the fit with its fold models, then the fold models alone
    assert len(detector.calibration_models_) == 5
    assert all(m.n_iter_ >= 1 for m in detector.calibration_models_)


def test_ctrl_c_stops_every_fold_model_at_once_and_keeps_their_best_weights(monkeypatch):
    real = stacked_module._stacked_epoch
    epochs = []

    def interrupted_on_the_third_epoch(*args, **kwargs):
        epochs.append(1)
        if len(epochs) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stacked_module, "_stacked_epoch", interrupted_on_the_third_epoch)
    X = _small_table()
    with pytest.warns(RuntimeWarning, match="interrupted after 2 epochs"):
        detector = VAEAnomalyDetector(random_state=0, max_iter=20, calibration="cross").fit(X)
    assert len(epochs) == 3
    assert detector.n_iter_ == 2
    assert [m.n_iter_ for m in detector.calibration_models_] == [2] * 5
    assert np.isfinite(detector.pvalues(X)).all()


def test_verbose_shows_the_progress_of_a_stacked_fit(capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    VAEAnomalyDetector(random_state=0, max_iter=3, calibration="cross", verbose=True).fit(
        _small_table()
    )
    err = capsys.readouterr().err
    assert "6 networks" in err and "3/3" in err and "val_elbo=" in err


def test_large_tables_fit_their_fold_models_one_by_one(monkeypatch):
    calls = _spy_on_stacked_training(monkeypatch)
    monkeypatch.setattr(anomaly_module, "STACKED_MAX_ROWS", 59)
    detector = VAEAnomalyDetector(random_state=0, max_iter=2, calibration="cross")
    detector.fit(_small_table(60))
    assert calls == [] and len(detector.calibration_models_) == 5
