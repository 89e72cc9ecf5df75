"""Conformal p-values and Benjamini–Hochberg flags: valid on clean data, powerful on outliers."""

import numpy as np
import pandas as pd
import pytest

from skvae import VAEAnomalyDetector
from skvae.conformal import benjamini_hochberg, conformal_pvalues

from .conftest import FAST


def gaussian_rows(n, seed):
    """Correlated 4-D Gaussian rows, so the VAE has structure to learn."""
    rng = np.random.RandomState(seed)
    mixing = np.array([[1.0, 0.8, 0.0, 0.0], [0.0, 0.6, 0.5, 0.0], [0, 0, 1, 0], [0, 0, 0.3, 1]])
    return rng.normal(size=(n, 4)) @ mixing


@pytest.fixture(scope="module")
def clean_detector():
    return VAEAnomalyDetector(**FAST, validation_fraction=0.2).fit(gaussian_rows(3000, 0))


def test_calibration_scores_are_the_held_out_rows():
    X = gaussian_rows(500, 1)
    detector = VAEAnomalyDetector(**FAST).fit(X)
    assert detector.calibration_scores_.shape == (50,)  # validation_fraction=0.1
    assert np.all(np.diff(detector.calibration_scores_) >= 0)
    # They are scores of training rows, fitted or not.
    assert np.isin(detector.calibration_scores_, detector.score_samples(X)).all()


def test_without_validation_set_calibration_falls_back_to_training_rows():
    X = gaussian_rows(200, 2)
    detector = VAEAnomalyDetector(**FAST, early_stopping=False).fit(X)
    np.testing.assert_array_equal(detector.calibration_scores_, np.sort(detector.score_samples(X)))


def test_pvalues_follow_the_definition(clean_detector):
    X = gaussian_rows(50, 3)
    scores = clean_detector.score_samples(X)
    calibration = clean_detector.calibration_scores_
    expected = [(1 + np.sum(calibration <= s)) / (1 + calibration.size) for s in scores]
    np.testing.assert_allclose(clean_detector.pvalues(X), expected)


def test_pvalues_are_uniform_on_fresh_clean_data(clean_detector):
    p = clean_detector.pvalues(gaussian_rows(4000, 4))
    assert clean_detector.calibration_scores_.size == 600
    # Given the 600 calibration rows, the p-values' CDF is within DKW's 0.08 of
    # the uniform one with probability 0.999; 4,000 test rows add 0.03 at most.
    grid = np.linspace(0.0, 1.0, 101)
    ecdf = np.searchsorted(np.sort(p), grid, side="right") / p.size
    assert np.max(np.abs(ecdf - grid)) < 0.1
    shares = np.histogram(p, bins=10, range=(0, 1))[0] / p.size
    assert np.all(np.abs(shares - 0.1) < 0.05), shares


def test_benjamini_hochberg_flags_little_on_clean_data(clean_detector):
    p = clean_detector.pvalues(gaussian_rows(2000, 5))
    for fdr in (0.05, 0.2):
        # With no outliers every flag is false: BH keeps P(any flag) <= fdr.
        assert benjamini_hochberg(p, fdr).mean() <= fdr / 10


def test_benjamini_hochberg_finds_planted_outliers(clean_detector):
    # The smallest p-value is 1 / 601: BH can flag k of m rows only when
    # 1 / 601 <= fdr * k / m, so the test batch is kept small.
    X = np.vstack([gaussian_rows(200, 6), np.full((10, 4), 6.0) * [1, -1, 1, -1]])
    flagged = benjamini_hochberg(clean_detector.pvalues(X), 0.1)
    assert flagged[-10:].all()
    assert flagged[:-10].mean() < 0.02


def test_benjamini_hochberg_matches_the_step_up_definition():
    rng = np.random.RandomState(0)
    p = np.r_[rng.uniform(size=80), rng.uniform(0, 0.01, size=20)]
    fdr = 0.1
    order = np.argsort(p)
    passing = [k for k in range(1, p.size + 1) if p[order[k - 1]] <= fdr * k / p.size]
    expected = np.zeros(p.size, bool)
    expected[order[: max(passing)]] = True
    np.testing.assert_array_equal(benjamini_hochberg(p, fdr), expected)
    assert not benjamini_hochberg([0.5, 0.9], 0.05).any()
    with pytest.raises(ValueError, match="fdr"):
        benjamini_hochberg(p, 1.5)


def test_conformal_pvalues_need_calibration_scores():
    with pytest.raises(ValueError, match="calibration"):
        conformal_pvalues([], [1.0])


def test_pvalues_keep_rows_in_order_for_dataframes():
    frame = pd.DataFrame(gaussian_rows(300, 7), columns=list("abcd"))
    detector = VAEAnomalyDetector(**FAST).fit(frame)
    p = detector.pvalues(frame)
    np.testing.assert_array_equal(p[::-1], detector.pvalues(frame.iloc[::-1]))


def test_saved_model_keeps_its_pvalues(tmp_path):
    import skvae

    X = gaussian_rows(300, 8)
    detector = VAEAnomalyDetector(**FAST).fit(X)
    detector.save(tmp_path / "model.skvae")
    restored = skvae.load(tmp_path / "model.skvae")
    np.testing.assert_array_equal(restored.calibration_scores_, detector.calibration_scores_)
    np.testing.assert_array_equal(restored.pvalues(X), detector.pvalues(X))
