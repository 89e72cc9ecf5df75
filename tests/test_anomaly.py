import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from skvae import VAEAnomalyDetector
from skvae._training import EVAL_CHUNK_ROWS
from skvae.datasets import load_demo

from .conftest import FAST


@pytest.mark.parametrize("scoring", ["elbo", "iwae", "reconstruction"])
def test_far_rows_score_lowest(blobs, scoring):
    detector = VAEAnomalyDetector(**FAST, scoring=scoring).fit(blobs)
    scores = detector.score_samples(blobs)
    assert scores.shape == (len(blobs),)
    assert np.all(np.isfinite(scores))
    assert set(np.argsort(scores)[:5]) == {200, 201, 202, 203, 204}


def test_decision_function_is_scores_minus_offset(blobs):
    detector = VAEAnomalyDetector(**FAST).fit(blobs)
    np.testing.assert_allclose(
        detector.decision_function(blobs), detector.score_samples(blobs) - detector.offset_
    )
    predictions = detector.predict(blobs)
    assert set(np.unique(predictions)) <= {-1, 1}
    np.testing.assert_array_equal(predictions == -1, detector.decision_function(blobs) < 0)


@pytest.mark.parametrize("contamination", [0.05, 0.2, 0.5])
def test_contamination_sets_share_of_training_outliers(blobs, contamination):
    detector = VAEAnomalyDetector(**FAST, contamination=contamination).fit(blobs)
    share = np.mean(detector.predict(blobs) == -1)
    assert abs(share - contamination) <= 1.0 / len(blobs) + 1e-12


def test_auto_contamination_is_tukey_fence(blobs):
    detector = VAEAnomalyDetector(**FAST).fit(blobs)
    scores = detector.score_samples(blobs)
    q1, q3 = np.percentile(scores, [25, 75])
    assert detector.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1))
    flagged = np.flatnonzero(detector.predict(blobs) == -1)
    assert {200, 201, 202, 203, 204} <= set(flagged)


def test_fit_predict_matches_fit_then_predict(blobs):
    a = VAEAnomalyDetector(**FAST).fit_predict(blobs)
    b = VAEAnomalyDetector(**FAST).fit(blobs).predict(blobs)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("scoring", ["elbo", "iwae", "reconstruction"])
def test_scores_are_deterministic_across_calls_and_fits(blobs, scoring):
    first = VAEAnomalyDetector(**FAST, scoring=scoring).fit(blobs)
    second = VAEAnomalyDetector(**FAST, scoring=scoring).fit(blobs)
    np.testing.assert_array_equal(first.score_samples(blobs), first.score_samples(blobs))
    np.testing.assert_array_equal(first.score_samples(blobs), second.score_samples(blobs))


def test_different_seeds_give_different_models(blobs):
    a = VAEAnomalyDetector(**{**FAST, "random_state": 0}).fit(blobs).score_samples(blobs)
    b = VAEAnomalyDetector(**{**FAST, "random_state": 1}).fit(blobs).score_samples(blobs)
    assert not np.array_equal(a, b)


def test_iwae_bound_is_at_least_the_elbo_on_average(blobs):
    iwae = VAEAnomalyDetector(**FAST, scoring="iwae", n_importance_samples=64).fit(blobs)
    # score() is the Monte Carlo ELBO with the same 64 samples: IWAE is tighter.
    assert np.mean(iwae.score_samples(blobs)) >= iwae.score(blobs) - 0.05


def test_score_is_mean_elbo_whatever_the_scoring(blobs):
    reconstruction = VAEAnomalyDetector(**FAST, scoring="reconstruction").fit(blobs)
    elbo = VAEAnomalyDetector(**FAST).fit(blobs)
    assert reconstruction.score(blobs) == pytest.approx(elbo.score(blobs))
    assert reconstruction.score(blobs) != pytest.approx(
        np.mean(reconstruction.score_samples(blobs))
    )


def test_plug_in_elbo_is_close_to_the_monte_carlo_elbo(blobs):
    detector = VAEAnomalyDetector(**FAST, n_importance_samples=256).fit(blobs)
    plug_in = np.mean(detector.score_samples(blobs))
    assert abs(plug_in - detector.score(blobs)) < 0.1 * abs(detector.score(blobs))


def test_trim_fraction_reaches_training(blobs):
    """trim_fraction="auto" trains exactly as 0.2 does, and each other value differently."""
    scores = {
        trim: VAEAnomalyDetector(**FAST, trim_fraction=trim).fit(blobs).score_samples(blobs)
        for trim in ["auto", 0.2, 0.0, 0.3]
    }
    np.testing.assert_array_equal(scores["auto"], scores[0.2])
    assert not np.array_equal(scores[0.0], scores[0.2])
    assert not np.array_equal(scores[0.3], scores[0.2])
    assert not np.array_equal(scores[0.0], scores[0.3])


def test_trimming_keeps_training_outliers_anomalous():
    # 10% of the training rows form a tight far cluster: without trimming the
    # VAE learns them as a second mode; trimmed training keeps them strange.
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(450, 3)), rng.normal(2.5, 0.2, size=(50, 3))])
    y = np.r_[np.zeros(450), np.ones(50)]
    # A constant step: under the cosine schedule's smaller late steps the
    # untrimmed model learns the far cluster less, and the contrast shrinks.
    params = {**FAST, "max_iter": 60, "learning_rate": "constant"}
    plain = VAEAnomalyDetector(**params, trim_fraction=0.0).fit(X)
    trimmed = VAEAnomalyDetector(**params, trim_fraction=0.2).fit(X)
    auc_plain = roc_auc_score(y, -plain.score_samples(X))
    auc_trimmed = roc_auc_score(y, -trimmed.score_samples(X))
    assert auc_trimmed > 0.95
    assert auc_trimmed > auc_plain + 0.05


def test_beats_random_on_real_data():
    # The packaged demo is ADBench's thyroid data, so CI always has it.
    X, y = load_demo(return_X_y=True)
    detector = VAEAnomalyDetector(max_iter=30, random_state=0).fit(X)
    auc = roc_auc_score(y, -detector.score_samples(X))
    assert auc > 0.75, auc


def test_bernoulli_likelihood_on_binary_data():
    rng = np.random.RandomState(0)
    X = (rng.uniform(size=(300, 6)) < 0.2).astype(float)
    X[-3:] = 1.0  # all ones: rare under independent 0.2 coin flips
    detector = VAEAnomalyDetector(**FAST, likelihood="bernoulli").fit(X)
    scores = detector.score_samples(X)
    assert np.all(scores <= 0)  # a Bernoulli log-likelihood bound is never positive
    assert set(np.argsort(scores)[:3]) == {297, 298, 299}


def test_feature_contributions_point_at_the_shifted_feature(blobs):
    detector = VAEAnomalyDetector(**FAST).fit(blobs[:200])
    rows = np.zeros((4, 4))
    rows[np.arange(4), np.arange(4)] = 8.0  # row i is off in feature i only
    contributions = detector.feature_contributions(rows)
    assert contributions.shape == (4, 4)
    np.testing.assert_array_equal(np.argmax(contributions, axis=1), np.arange(4))


def test_feature_contributions_add_up_to_the_score(blobs):
    reconstruction = VAEAnomalyDetector(**FAST, scoring="reconstruction").fit(blobs)
    np.testing.assert_allclose(
        reconstruction.feature_contributions(blobs).sum(axis=1),
        -reconstruction.score_samples(blobs),
        rtol=1e-5,
    )
    elbo = VAEAnomalyDetector(**FAST).fit(blobs)
    # -score = row sum + KL (>= 0) + sum(log(scale_)).
    rest = -elbo.score_samples(blobs) - elbo.feature_contributions(blobs).sum(axis=1)
    assert np.all(rest >= np.sum(np.log(elbo.scale_)) - 1e-4)


def test_feature_contributions_keep_names_and_index():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["x", "y", "z"], index=range(5, 105))
    detector = VAEAnomalyDetector(**FAST).fit(frame)
    contributions = detector.feature_contributions(frame)
    assert list(contributions.columns) == ["x", "y", "z"]
    pd.testing.assert_index_equal(contributions.index, frame.index)


def test_embed_gives_latent_means(blobs):
    detector = VAEAnomalyDetector(**FAST).fit(blobs)
    Z = detector.embed(blobs)
    assert Z.shape == (len(blobs), 2)
    np.testing.assert_array_equal(Z, detector.embed(blobs))
    # The means of q(z|x), computed here from the fitted encoder on the
    # standardised rows: not a sample, not the decoder's side.
    x = torch.from_numpy(((blobs - detector.mean_) / detector.scale_).astype(np.float32))
    with torch.no_grad():
        means, _ = detector.module_.encode(x)
    np.testing.assert_allclose(Z, means.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scoring", ["elbo", "iwae"])
def test_scores_do_not_depend_on_chunking(blobs, scoring):
    # More rows than one scoring chunk: a row's score is the same whichever
    # chunk (and position in it) it lands in.
    detector = VAEAnomalyDetector(**FAST, scoring=scoring, n_importance_samples=4).fit(blobs)
    rng = np.random.RandomState(1)
    X = rng.normal(size=(EVAL_CHUNK_ROWS + 100, blobs.shape[1]))
    whole = detector.score_samples(X)
    np.testing.assert_allclose(whole[-150:], detector.score_samples(X[-150:]), rtol=1e-6)
    np.testing.assert_allclose(whole[:7], detector.score_samples(X[:7]), rtol=1e-6)
