"""Rows with missing values are put on the complete rows' scale by the drift
their pattern causes on complete held-out reference rows."""

import copy
import io
import warnings

import numpy as np
import pandas as pd
import pytest

import skvae
from skvae import ModelFileError, VAEAnomalyDetector
from skvae._missing_reference import REFERENCE_ROWS

from .test_persistence import rewritten

SCORINGS = ["elbo", "iwae", "reconstruction"]


def _table(rng, n, d=24):
    """``d`` numeric columns driven by three latent factors: many columns
    that predict each other, where scores drift most with missing entries."""
    z = rng.normal(size=(n, 3))
    weights = np.random.RandomState(1).normal(size=(3, d))
    return z @ weights + 0.3 * rng.normal(size=(n, d))


def _remove(X, rng, n_missing):
    out = X.copy()
    for row in out:
        row[rng.choice(X.shape[1], n_missing, replace=False)] = np.nan
    return out


def _fit(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few epochs: not converged
        settings = dict(
            n_components=4,
            hidden_layer_sizes=(32, 16),
            max_iter=40,
            calibration="split",
            random_state=0,
        )
        return VAEAnomalyDetector(**{**settings, **params}).fit(X)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.RandomState(0)
    detector = _fit(_table(rng, 1500))
    test = _table(rng, 400)
    return detector, test, _remove(test[:120], rng, n_missing=17)


def _median_percentile(detector, test, holey):
    reference = np.sort(detector.score_samples(test))
    return 100.0 * np.median(np.searchsorted(reference, detector.score_samples(holey)) / 400)


@pytest.mark.parametrize("scoring", SCORINGS)
def test_normal_rows_missing_most_values_score_like_complete_ones(fitted, scoring):
    detector, test, holey = fitted
    detector.set_params(scoring=scoring)
    assert 35 <= _median_percentile(detector, test, holey) <= 70
    # The hard case this guards: scored on what they have, the same rows
    # fall to the bottom of the complete rows' scores (measured: 5th, 3rd,
    # 1st percentile).
    bare = copy.deepcopy(detector)
    bare.missing_reference_ = None
    assert _median_percentile(bare, test, holey) < 20


def test_a_row_with_an_absurd_value_stays_anomalous(fitted):
    detector, test, holey = fitted
    detector.set_params(scoring="elbo")
    strange = holey[:20].copy()
    for row in strange:
        row[np.flatnonzero(~np.isnan(row))[0]] = 40.0
    assert np.all(detector.score_samples(strange) < detector.score_samples(test).min())


def test_the_reference_is_complete_rows_of_the_training_data():
    rng = np.random.RandomState(1)
    X = _table(rng, 1000)
    X[:500] = _remove(X[:500], rng, n_missing=2)
    detector = _fit(X, max_iter=3)
    reference = detector.missing_reference_
    assert reference.shape == (REFERENCE_ROWS, X.shape[1])
    assert np.isfinite(reference).all()
    # Every reference row is a complete row of X (in the model's columns).
    assert all(np.any(np.all(X == row, axis=1)) for row in reference)


def test_without_a_complete_row_there_is_no_reference_and_scores_stay_finite():
    rng = np.random.RandomState(2)
    X = _remove(_table(rng, 200, d=6), rng, n_missing=1)
    detector = _fit(X, max_iter=3)
    assert detector.missing_reference_ is None
    assert np.isfinite(detector.score_samples(X)).all()


def test_the_reference_travels_in_model_files(fitted):
    detector, _, holey = fitted
    detector.set_params(scoring="elbo")
    buffer = io.BytesIO()
    detector.save(buffer)
    loaded = skvae.load(io.BytesIO(buffer.getvalue()))
    np.testing.assert_array_equal(loaded.missing_reference_, detector.missing_reference_)
    np.testing.assert_array_equal(loaded.score_samples(holey), detector.score_samples(holey))


def test_rows_sharing_a_pattern_are_scored_as_alone(fitted):
    detector, _, holey = fitted
    detector.set_params(scoring="elbo")
    twice = np.vstack([holey[:5], holey[:5]])
    scores = detector.score_samples(twice)
    np.testing.assert_array_equal(scores[:5], scores[5:])
    np.testing.assert_array_equal(scores[:1], detector.score_samples(holey[:1]))


def test_partial_fit_keeps_the_reference_through_a_batch_without_complete_rows():
    rng = np.random.RandomState(3)
    detector = VAEAnomalyDetector(
        n_components=2, hidden_layer_sizes=(8,), random_state=0
    ).partial_fit(_table(rng, 100, d=6))
    first = detector.missing_reference_.copy()
    assert first.shape == (REFERENCE_ROWS, 6)
    detector.partial_fit(_remove(_table(rng, 100, d=6), rng, n_missing=1))
    np.testing.assert_array_equal(detector.missing_reference_, first)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.__setitem__((0, 1), 7.0), "column 1 holds values that are not categorical"),
        (lambda a: a.__setitem__((0, 2), 0.5), "column 2 holds values that are not bernoulli"),
        (lambda a: a.__setitem__((0, 0), np.nan), "NaN"),
    ],
)
def test_a_tampered_reference_is_a_clear_error(change, message):
    rng = np.random.RandomState(4)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=200),
            "kind": pd.Categorical(rng.choice(["a", "b", "c"], size=200)),
            "flag": rng.rand(200) > 0.5,
        }
    )
    detector = _fit(frame, max_iter=2)

    def tamper(name, content):
        if "missing_reference_" not in name:
            return content
        array = np.load(io.BytesIO(content))
        change(array)
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array)
        return buffer.getvalue()

    buffer = io.BytesIO()
    detector.save(buffer)
    data = rewritten(buffer.getvalue(), arrays=tamper)
    with pytest.raises(ModelFileError, match=f"missing_reference_ .*{message}"):
        skvae.load(io.BytesIO(data))


def test_a_model_saved_without_its_reference_scores_holey_rows_uncorrected(fitted):
    detector, test, holey = fitted
    detector.set_params(scoring="elbo")
    bare = copy.deepcopy(detector)
    bare.missing_reference_ = None
    buffer = io.BytesIO()
    bare.save(buffer)
    loaded = skvae.load(io.BytesIO(buffer.getvalue()))
    assert loaded.missing_reference_ is None
    np.testing.assert_array_equal(loaded.score_samples(holey), bare.score_samples(holey))
    np.testing.assert_array_equal(loaded.score_samples(test), detector.score_samples(test))
    assert not np.allclose(loaded.score_samples(holey), detector.score_samples(holey))


def test_calibrate_takes_its_held_out_rows_as_the_reference():
    rng = np.random.RandomState(5)
    detector = VAEAnomalyDetector(n_components=2, hidden_layer_sizes=(8,), random_state=0)
    for _ in range(3):
        detector.partial_fit(_table(rng, 100, d=6))
    held_out = _table(rng, 300, d=6)
    detector.calibrate(held_out)
    reference = detector.missing_reference_
    assert reference.shape == (REFERENCE_ROWS, 6)
    assert all(np.any(np.all(held_out == row, axis=1)) for row in reference)
    # Without a complete row, X leaves the reference as it was.
    detector.calibrate(_remove(held_out, rng, n_missing=1))
    np.testing.assert_array_equal(detector.missing_reference_, reference)


def test_a_failed_calibrate_leaves_the_reference_as_it_was(fitted):
    detector, test, _ = fitted
    before = detector.missing_reference_.copy()
    rows = test[:50].copy()
    rows[0, 0] = 1e300  # beyond float64 reach in standardised units: a ValueError
    with pytest.raises(ValueError, match="too far from the training data"):
        detector.calibrate(rows)
    np.testing.assert_array_equal(detector.missing_reference_, before)
