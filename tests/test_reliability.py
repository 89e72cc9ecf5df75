"""When things go wrong: extreme values, divergence, Ctrl-C; and threads and determinism.

The training loop's ordinary behaviour is in test_training.py.
"""

import functools
import signal
import sys
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skvae import TrainingDivergedError, VAEAnomalyDetector, VAETransformer, _training
from skvae._adam import Adam

from .conftest import FAST


@pytest.fixture(scope="module")
def models():
    X = np.random.RandomState(0).normal(size=(150, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "X": X,
            "elbo": VAEAnomalyDetector(**FAST).fit(X),
            "iwae": VAEAnomalyDetector(**FAST, scoring="iwae").fit(X),
            "reconstruction": VAEAnomalyDetector(**FAST, scoring="reconstruction").fit(X),
            "transformer": VAETransformer(**FAST).fit(X),
        }


# ------------------------------------------------------------ extreme values
@pytest.mark.parametrize("scoring", ["elbo", "iwae", "reconstruction"])
@pytest.mark.parametrize("magnitude", [1e20, 1e30, 1e39, 1e100])
def test_far_rows_get_finite_scores_ordered_by_distance(models, scoring, magnitude):
    """Beyond float32 range the rows are evaluated in float64: finite and lowest."""
    detector, X = models[scoring], models["X"]
    rows = np.vstack([X[:5], [[magnitude, 0, 0]], [[0, -magnitude, 0]], [[magnitude] * 3]])
    scores = detector.score_samples(rows)
    assert np.isfinite(scores).all()
    assert scores[5:].max() < scores[:5].min()
    assert scores[7] < min(scores[5], scores[6])  # farther in every column: lower
    # The ordinary rows score exactly as they do alone (float32, unchanged).
    np.testing.assert_array_equal(scores[:5], detector.score_samples(X[:5]))
    assert np.isfinite(detector.decision_function(rows)).all()
    assert (detector.predict(rows)[5:] == -1).all()
    assert np.isfinite(detector.feature_contributions(rows)).all()
    assert np.isfinite(detector.embed(rows)).all()
    assert np.isfinite(detector.score(rows))


def test_transformer_handles_far_rows_and_far_latent_points(models):
    vae, X = models["transformer"], models["X"]
    rows = np.vstack([X[:3], np.full((1, 3), 1e39)])
    assert np.isfinite(vae.transform(rows)).all()
    assert np.isfinite(vae.score_samples(rows)).all()
    assert np.isfinite(vae.inverse_transform(np.full((2, 2), 1e39))).all()


@pytest.mark.parametrize("method", ["score_samples", "predict", "score", "feature_contributions"])
def test_rows_beyond_float64_range_are_a_clear_error(models, method):
    detector, X = models["elbo"], models["X"]
    rows = np.vstack([X[:3], [[1e300, 0.0, 0.0]]])
    with pytest.raises(ValueError, match=r"1 row\(s\) of X \(row 3 first\) are too far"):
        getattr(detector, method)(rows)


@pytest.mark.parametrize("magnitude", [1e30, 1e300])
@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
def test_fit_on_huge_values_scores_finite(Estimator, magnitude):
    X = np.random.RandomState(0).normal(size=(60, 3))
    X[0] = magnitude
    X[1, 1] = -magnitude
    estimator = Estimator(**FAST).fit(X)
    assert np.isfinite(estimator.score_samples(X)).all()
    if Estimator is VAEAnomalyDetector:
        assert np.isfinite(estimator.offset_)
        assert (estimator.predict(X)[:2] == -1).all()


# -------------------------------------------------------------- divergence
# Which of these recover is measured, not chosen: a change to training that
# moves a case from one column to the other must show up here (and be checked).
HUGE_STEPS = [
    (VAEAnomalyDetector, 1e2, "recovers"),
    (VAEAnomalyDetector, 1e6, "recovers"),  # the cosine schedule shrinks the steps
    (VAEAnomalyDetector, 1e12, "raises"),
    (VAETransformer, 1e2, "recovers"),
    (VAETransformer, 1e4, "recovers"),  # after one division of the step
    (VAETransformer, 1e6, "recovers"),  # the cosine schedule shrinks the steps
    (VAETransformer, 1e12, "raises"),
]


@pytest.mark.parametrize("Estimator, learning_rate, outcome", HUGE_STEPS)
def test_huge_learning_rates_recover_or_fail_clearly(Estimator, learning_rate, outcome):
    """Never a model that scores NaN: recover (finite scores) or raise."""
    X = np.random.RandomState(0).normal(size=(100, 3)) * 1e3
    estimator = Estimator(**{**FAST, "max_iter": 10, "learning_rate_init": learning_rate})
    if outcome == "raises":
        with pytest.raises(TrainingDivergedError, match="learning_rate_init"):
            estimator.fit(X)
        assert not hasattr(estimator, "module_")
        return
    estimator.fit(X)
    assert np.isfinite(estimator.score_samples(X)).all()
    assert np.isfinite(estimator.loss_curve_).all()


def test_a_fit_that_diverges_on_huge_values_raises_and_leaves_the_estimator_unfitted(blobs):
    detector = VAEAnomalyDetector(**{**FAST, "learning_rate_init": 1e6})
    with pytest.raises(TrainingDivergedError, match="Scale the input or lower learning_rate_init"):
        detector.fit(blobs * 1e6)
    assert not hasattr(detector, "module_") and not hasattr(detector, "offset_")


def test_divergence_retries_are_counted_and_lower_the_step(monkeypatch):
    """MAX_DIVERGENCE_RETRIES recoveries, each dividing the step by DIVERGENCE_LR_FACTOR."""
    X = np.random.RandomState(0).normal(size=(60, 3))
    real_epoch = _training._run_epoch
    calls = {"n": 0}

    def nan_first_epochs(*args):
        calls["n"] += 1
        return float("nan") if calls["n"] <= _training.MAX_DIVERGENCE_RETRIES else real_epoch(*args)

    monkeypatch.setattr(_training, "_run_epoch", nan_first_epochs)
    vae = VAETransformer(**{**FAST, "max_iter": 3}).fit(X)
    step = vae.learning_rate_init
    expected = step / _training.DIVERGENCE_LR_FACTOR**_training.MAX_DIVERGENCE_RETRIES
    assert vae._learning_rate == pytest.approx(expected)
    assert vae.n_iter_ == 3 and np.isfinite(vae.score_samples(X)).all()
    # One more failure is the error.
    calls["n"] = -1
    with pytest.raises(TrainingDivergedError):
        VAETransformer(**{**FAST, "max_iter": 3}).fit(X)


def test_non_finite_weights_would_be_an_error_not_nan_scores(models):
    """The last line of defence: a model that evaluates to NaN raises."""
    detector = models["elbo"]
    broken = VAEAnomalyDetector(**FAST).fit(models["X"])
    with torch.no_grad():
        broken.module_.output_mean.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="too far from the training data"):
        broken.score_samples(models["X"][:3])
    assert np.isfinite(detector.score_samples(models["X"][:3])).all()


def test_divergence_recovers_by_lowering_the_step(blobs, monkeypatch):
    calls = {"n": 0}
    real_epoch = _training._run_epoch

    def flaky_epoch(*args):
        calls["n"] += 1
        return float("nan") if calls["n"] == 2 else real_epoch(*args)

    monkeypatch.setattr(_training, "_run_epoch", flaky_epoch)
    vae = VAETransformer(**{**FAST, "max_iter": 5}).fit(blobs)
    assert vae._learning_rate == pytest.approx(vae.learning_rate_init / 10)
    assert np.isfinite(vae.score_samples(blobs)).all()


def test_persistent_divergence_is_a_clear_error_and_keeps_old_model(blobs, monkeypatch):
    vae = VAETransformer(**FAST).fit(blobs)
    scores = vae.score_samples(blobs)
    monkeypatch.setattr(_training, "_run_epoch", lambda *args: float("nan"))
    with pytest.raises(TrainingDivergedError, match="learning_rate_init"):
        vae.fit(blobs)
    np.testing.assert_array_equal(vae.score_samples(blobs), scores)


# ------------------------------------------------------------- interruption
@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
def test_ctrl_c_in_the_middle_of_an_epoch_keeps_the_best_weights(Estimator, monkeypatch):
    """KeyboardInterrupt raised inside a mini-batch step, in the 4th epoch."""
    X = np.random.RandomState(0).normal(size=(200, 3))
    real_step = Adam.step
    steps = {"n": 0}
    batches_per_epoch = -(-180 // FAST["batch_size"])  # 180 training rows

    def step(self, *args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 3 * batches_per_epoch + 2:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Adam, "step", step)
    # A constant step: under the default cosine schedule a fit's steps depend
    # on max_iter, and the reference below stops early by max_iter.
    settings = {**FAST, "learning_rate": "constant"}
    with pytest.warns(RuntimeWarning, match="interrupted after 3 epochs") as caught:
        estimator = Estimator(**settings).fit(X)
    # An interrupted fit did not run out of iterations: no ConvergenceWarning.
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert estimator.n_iter_ == 3 and len(estimator.loss_curve_) == 3
    best = int(np.argmax(estimator.validation_scores_))
    assert estimator.best_validation_score_ == estimator.validation_scores_[best]
    assert estimator.module_.training is False
    scores = estimator.score_samples(X)
    assert np.isfinite(scores).all()
    # The weights kept are the best epoch's, not the half-updated 4th epoch's:
    # a fresh fit stopped after the same epochs gives the same model.
    monkeypatch.setattr(Adam, "step", real_step)
    reference = Estimator(**{**settings, "max_iter": best + 1}).fit(X)
    np.testing.assert_array_equal(scores, reference.score_samples(X))


def test_keyboard_interrupt_between_epochs_keeps_best_weights(blobs, monkeypatch):
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


# -------------------------------------------------------------- concurrency
@pytest.mark.parametrize("kind", ["elbo", "iwae", "transformer"])
def test_threads_score_like_sequential_calls(models, kind):
    estimator = models[kind]
    rng = np.random.RandomState(1)
    batches = [rng.normal(size=(rng.randint(1, 300), 3)) for _ in range(16)]
    batches[3] = np.vstack([batches[3], [[1e30, 0, 0]]])  # the float64 path too
    methods = ["score_samples", "predict" if kind != "transformer" else "transform"]
    expected = [[getattr(estimator, m)(b) for m in methods] for b in batches]
    results = [None] * len(batches)
    errors = []
    barrier = threading.Barrier(8)

    def work(i):
        try:
            if i < 8:
                barrier.wait()
            for _ in range(3):
                results[i] = [getattr(estimator, m)(batches[i]) for m in methods]
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for got, want in zip(results, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------- determinism
@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
def test_same_random_state_gives_bit_identical_models_and_scores(Estimator, blobs):
    first = Estimator(**FAST).fit(blobs)
    second = Estimator(**FAST).fit(blobs)
    assert np.array_equal(first.score_samples(blobs), second.score_samples(blobs))
    assert first.loss_curve_ == second.loss_curve_
    for (name, a), b in zip(
        first.module_.state_dict().items(), second.module_.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("value", [1e30, 0.1, -7.3e12])
def test_a_constant_column_standardises_to_zero_as_array_and_frame(value):
    """Found by the property test: the float sum of a constant 1e30 column is
    off by rounding, so its rows sat 1e14 standardised units from the mean."""
    X = np.random.RandomState(0).normal(size=(9, 3))
    X[:, 1] = value
    array_model = VAEAnomalyDetector(**FAST).fit(X)
    frame_model = VAEAnomalyDetector(**FAST).fit(pd.DataFrame(X, columns=list("abc")))
    assert array_model.mean_[1] == value and array_model.scale_[1] == 1.0
    np.testing.assert_array_equal(
        array_model.score_samples(X),
        frame_model.score_samples(pd.DataFrame(X, columns=list("abc"))),
    )
    assert np.isfinite(array_model.score_samples(X)).all()


def _lines_of_training(fit):
    """(function name, line) of each line ``_training.py`` runs during ``fit()``."""
    lines = []

    def local(frame, event, arg):
        if event == "line":
            lines.append((frame.f_code.co_name, frame.f_lineno))
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename == TRAINING else None)
    try:
        fit()
    finally:
        sys.settrace(None)
    return lines


def _fit_with_sigint_at(fit, position):
    """``fit()`` with a real SIGINT sent at the ``position``-th line of _training.py."""
    count = [0]

    def local(frame, event, arg):
        if event == "line":
            count[0] += 1
            if count[0] == position:
                signal.raise_signal(signal.SIGINT)
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename == TRAINING else None)
    try:
        return fit()
    finally:
        sys.settrace(None)


TRAINING = _training.__file__


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "raise_signal"), reason="needs signal.raise_signal")
def test_ctrl_c_at_every_line_of_training_leaves_a_consistent_model():
    """A real SIGINT at each line the training loop runs (2 epochs, ~360 lines).

    fit either returns a model whose history, best score and weights agree
    (the weights are those of a fit stopped after the best epoch), or, for an
    interrupt before the first epoch or after the weights are restored,
    raises KeyboardInterrupt and leaves the estimator unfitted. Never half
    of an epoch's bookkeeping, and never gradients left switched off.
    """
    X = np.random.RandomState(0).normal(size=(40, 3))
    params = {**FAST, "hidden_layer_sizes": (8,), "max_iter": 2}

    def fit(estimator):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return estimator.fit(X)

    lines = _lines_of_training(lambda: fit(VAEAnomalyDetector(**params)))
    references = {}
    returned = 0
    for position, (function, _) in enumerate(lines, start=1):
        estimator = VAEAnomalyDetector(**params)
        try:
            _fit_with_sigint_at(functools.partial(fit, estimator), position)
        except KeyboardInterrupt:
            assert not hasattr(estimator, "module_"), position
            assert function not in {"_run_epoch", "mean_elbo", "_end_of_epoch", "_record_best"}
            continue
        finally:
            assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled(), position
        returned += 1
        scores = estimator.validation_scores_
        assert len(estimator.loss_curve_) == estimator.n_iter_ == len(scores), position
        assert np.isfinite(estimator.score_samples(X)).all(), position
        if not scores:
            continue
        best = int(np.argmax(scores))
        assert estimator.best_validation_score_ == scores[best], position
        if best not in references:
            references[best] = fit(VAEAnomalyDetector(**{**params, "max_iter": best + 1}))
        expected = references[best].module_.state_dict().values()
        for got, want in zip(estimator.module_.state_dict().values(), expected, strict=True):
            assert torch.equal(got, want), position
    assert returned > 0.8 * len(lines)


def test_threads_score_mixed_tables_like_sequential_calls():
    """The DataFrame path (categories, missing values) shares nothing either."""
    rng = np.random.RandomState(0)

    def table(n):
        frame = pd.DataFrame(
            {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y"], n)}
        )
        frame.loc[frame.index[::5], "a"] = np.nan
        return frame

    detector = VAEAnomalyDetector(**FAST).fit(table(200))
    batches = [table(rng.randint(1, 200)) for _ in range(12)]
    expected = [detector.score_samples(batch) for batch in batches]
    results = [None] * len(batches)
    barrier = threading.Barrier(len(batches))

    def work(i):
        barrier.wait()
        for _ in range(3):
            results[i] = detector.score_samples(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
def test_an_epoch_ending_with_non_finite_weights_counts_as_divergence(Estimator, monkeypatch):
    """The loss of a batch is measured before its step: a step that throws
    the weights to inf must not be kept as the best epoch's weights."""
    X = np.random.RandomState(0).normal(size=(100, 3))
    real_step = Adam.step
    steps = {"n": 0}

    def step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        steps["n"] += 1
        if steps["n"] == 2:  # the last batch of the first epoch (90 rows, 64 a batch)
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return result

    monkeypatch.setattr(Adam, "step", step)
    estimator = Estimator(**{**FAST, "max_iter": 3}).fit(X)
    cut = estimator.learning_rate_init / _training.DIVERGENCE_LR_FACTOR
    assert estimator._learning_rate == pytest.approx(cut)
    assert all(torch.isfinite(p).all() for p in estimator.module_.parameters())
    assert np.isfinite(estimator.score_samples(X)).all()
