"""Rows with missing values are scored on the same footing as complete rows."""

import numpy as np
import pandas as pd
import pytest

from skvae import VAEAnomalyDetector, VAETransformer

SCORINGS = ["elbo", "iwae", "reconstruction"]


def _table(rng, n):
    """Eight correlated numeric columns, a category and a flag driven by
    three latent factors: values the model can predict from each other."""
    z = rng.normal(size=(n, 3))
    weights = np.random.RandomState(0).normal(size=(3, 8))
    frame = pd.DataFrame(z @ weights + 0.3 * rng.normal(size=(n, 8)))
    frame.columns = [f"x{j}" for j in range(8)]
    frame["kind"] = np.where(z[:, 0] > 0.5, "a", np.where(z[:, 1] > 0, "b", "c"))
    frame["flag"] = (z[:, 2] + 0.3 * rng.normal(size=n)) > 0
    return frame


def _remove(frame, rng, share):
    """``frame`` with ``share`` of each row's entries set missing."""
    out = frame.copy()
    out["flag"] = out["flag"].astype(object)
    k = int(round(share * frame.shape[1]))
    for i in range(len(out)):
        out.iloc[i, rng.choice(frame.shape[1], k, replace=False)] = np.nan
    return out


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.RandomState(42)
    train = _remove(_table(rng, 1500), np.random.RandomState(7), share=0.1)
    test = _table(rng, 400)
    detector = VAEAnomalyDetector(
        n_components=4, hidden_layer_sizes=(32, 16), max_iter=60, random_state=0
    ).fit(train)
    return detector, test, _remove(test.iloc[:120], rng, share=0.7)


@pytest.mark.parametrize("scoring", SCORINGS)
def test_rows_missing_most_values_score_near_the_middle_not_at_the_top(fitted, scoring):
    """Summing over observed entries only put such rows at the very top (the
    most normal); counted as the complete rows the model predicts, rows whose
    observed values are typical land between the 20th and 80th percentile
    of complete rows."""
    detector, test, holey = fitted
    detector.set_params(scoring=scoring)
    reference = detector.score_samples(test)
    percentile = np.array([100.0 * np.mean(reference < s) for s in detector.score_samples(holey)])
    assert 20 <= np.median(percentile) <= 80
    assert np.mean(percentile > 80) < 0.4
    assert np.mean(percentile >= 99) < 0.1


def test_a_row_with_an_absurd_value_stays_anomalous_when_others_are_missing(fitted):
    detector, test, holey = fitted
    detector.set_params(scoring="elbo")
    strange = holey.iloc[:20].copy()
    observed = strange["x0"].notna()
    strange.loc[observed, "x0"] = 40.0
    strange.loc[~observed, "x1"] = 40.0
    assert np.all(detector.score_samples(strange) < np.percentile(detector.score_samples(test), 1))


@pytest.mark.parametrize("scoring", SCORINGS)
def test_a_row_with_no_observed_value_gets_a_finite_score_and_explanation(fitted, scoring):
    detector, test, _ = fitted
    detector.set_params(scoring=scoring)
    empty = test.iloc[:2].copy()
    empty["flag"] = empty["flag"].astype(object)
    empty.loc[:, :] = np.nan
    scores = detector.score_samples(empty)
    contributions = np.asarray(detector.feature_contributions(empty))
    assert np.isfinite(scores).all() and np.isfinite(contributions).all()
    # Nothing observed tells the rows apart.
    assert scores[0] == scores[1]


@pytest.mark.parametrize("scoring", SCORINGS)
def test_missing_features_contribute_their_predicted_value_not_zero(fitted, scoring):
    detector, _, holey = fitted
    detector.set_params(scoring=scoring)
    contributions = np.asarray(detector.feature_contributions(holey))
    missing = holey.isna().to_numpy()
    assert np.isfinite(contributions).all()
    assert np.all(contributions[missing] != 0.0)  # never the -0.0 of "not counted"
    if scoring == "reconstruction":
        # The rows still add up to the score: missing entries included.
        np.testing.assert_allclose(
            contributions.sum(axis=1), -detector.score_samples(holey), rtol=1e-5
        )


@pytest.mark.parametrize("scoring", SCORINGS)
def test_a_rows_score_does_not_depend_on_the_rows_scored_with_it(fitted, scoring):
    detector, test, holey = fitted
    detector.set_params(scoring=scoring)
    together = detector.score_samples(pd.concat([test.iloc[:30], holey.iloc[:30]]))
    np.testing.assert_array_equal(together[:30], detector.score_samples(test.iloc[:30]))
    np.testing.assert_array_equal(together[30:], detector.score_samples(holey.iloc[:30]))
    np.testing.assert_array_equal(together[30:31], detector.score_samples(holey.iloc[:1]))


def test_the_transformers_elbo_puts_numeric_rows_missing_most_values_near_the_middle():
    """Numeric columns only, 6 of 8 values missing: completed entries at
    their predicted mean ranked such rows at the 93rd percentile; with the
    noise gap of real values put back they land near the middle (measured:
    53rd)."""
    rng = np.random.RandomState(3)
    X = _table(rng, 600).drop(columns=["kind", "flag"]).to_numpy().copy()
    X[:500][rng.rand(500, 8) < 0.1] = np.nan
    transformer = VAETransformer(
        n_components=3, hidden_layer_sizes=(16,), max_iter=30, random_state=0
    ).fit(X[:500])
    reference = transformer.score_samples(X[500:])
    holey = X[500:560].copy()
    for row in holey:
        row[rng.choice(8, 6, replace=False)] = np.nan
    percentile = np.array(
        [100.0 * np.mean(reference < s) for s in transformer.score_samples(holey)]
    )
    assert 20 <= np.median(percentile) <= 80
    assert np.mean(percentile > 80) < 0.4
    assert np.mean(percentile >= 99) < 0.1
