"""skvae.plotting: Display objects draw what the estimator computed."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from skvae import VAEAnomalyDetector, VAETransformer  # noqa: E402
from skvae.plotting import (  # noqa: E402
    FeatureContributionDisplay,
    LatentSpaceDisplay,
    LossCurveDisplay,
    ScoreDistributionDisplay,
)

from .conftest import FAST  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    frame.iloc[-1] = [0.0, 0.0, 9.0, 0.0]
    detector = VAEAnomalyDetector(**{**FAST, "n_components": 3}).fit(frame)
    yield detector, frame
    plt.close("all")


def test_score_distribution_shows_scores_and_threshold(fitted):
    detector, frame = fitted
    display = ScoreDistributionDisplay.from_estimator(detector, frame)
    np.testing.assert_array_equal(display.scores, detector.score_samples(frame))
    assert display.threshold_line_.get_xdata()[0] == detector.offset_
    counted = sum(patch.get_height() for patch in display.ax_.patches)
    assert counted == len(frame)
    assert display.figure_ is display.ax_.figure


def test_score_distribution_with_labels_draws_two_groups(fitted):
    detector, frame = fitted
    labels = np.r_[np.zeros(len(frame) - 1), 1]
    _, ax = plt.subplots()
    display = ScoreDistributionDisplay.from_estimator(detector, frame, y=labels, ax=ax)
    assert display.ax_ is ax
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["normal (label)", "anomaly (label)", "threshold"]


def test_latent_space_projects_and_colours_by_score(fitted):
    detector, frame = fitted
    display = LatentSpaceDisplay.from_estimator(detector, frame)
    assert display.embedding.shape == (len(frame), 2)  # 3 latent dims, projected
    assert display.axis_labels == ("latent PC 1", "latent PC 2")
    np.testing.assert_allclose(
        np.sort(display.scatter_.get_array()), np.sort(detector.score_samples(frame))
    )


def test_latent_space_of_transformer_coloured_by_labels():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(120, 3))
    vae = VAETransformer(**FAST).fit(X)
    labels = np.where(np.arange(120) < 60, "left", "right")
    display = LatentSpaceDisplay.from_estimator(vae, X, y=labels)
    np.testing.assert_allclose(display.embedding, vae.transform(X))
    assert [t.get_text() for t in display.ax_.get_legend().get_texts()] == ["left", "right"]


def test_loss_curves_are_the_fitted_curves(fitted):
    detector, _ = fitted
    display = LossCurveDisplay.from_estimator(detector)
    train_line, validation_line = display.lines_
    np.testing.assert_allclose(train_line.get_ydata(), detector.loss_curve_)
    np.testing.assert_allclose(validation_line.get_ydata(), -np.array(detector.validation_scores_))


def test_feature_contributions_of_one_row(fitted):
    detector, frame = fitted
    display = FeatureContributionDisplay.from_estimator(
        detector, frame, row=len(frame) - 1, max_features=3
    )
    assert display.shown_features_[0] == "c"  # the feature set to 9
    assert len(display.bars_) == 3
    np.testing.assert_allclose(
        display.contributions, detector.feature_contributions(frame.iloc[[-1]]).to_numpy()[0]
    )
