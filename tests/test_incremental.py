"""partial_fit: streaming training, running standardisation, set_offset."""

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

import skvae._base
from skvae import VAEAnomalyDetector, VAETransformer
from skvae._preprocessing import column_moments, standardiser_from_moments

from .conftest import FAST


def _batches(X, n):
    return np.array_split(X, n)


@pytest.mark.parametrize("Estimator", [VAETransformer, VAEAnomalyDetector])
def test_one_partial_fit_call_standardises_as_fit(Estimator, blobs):
    streamed = Estimator(**FAST).partial_fit(blobs)
    fitted = Estimator(**FAST).fit(blobs)
    np.testing.assert_array_equal(streamed.mean_, fitted.mean_)
    np.testing.assert_array_equal(streamed.scale_, fitted.scale_)
    assert streamed.n_iter_ == 1 and len(streamed.loss_curve_) == 1
    assert streamed.validation_scores_ is None


def test_streamed_scaling_matches_the_whole_data(blobs):
    vae = VAETransformer(**FAST)
    for batch in _batches(blobs, 7):
        vae.partial_fit(batch)
    mean, scale = standardiser_from_moments(column_moments(blobs))
    np.testing.assert_allclose(vae.mean_, mean, rtol=1e-12)
    np.testing.assert_allclose(vae.scale_, scale, rtol=1e-12)
    assert vae.n_iter_ == 7


@pytest.mark.parametrize("decoder_variance", ["feature", "sample"])
@pytest.mark.parametrize("hidden", [(16,), ()])
def test_a_change_of_scaling_leaves_the_model_unchanged(blobs, decoder_variance, hidden):
    vae = VAETransformer(
        **{**FAST, "hidden_layer_sizes": hidden, "decoder_variance": decoder_variance}
    ).fit(blobs[:100])
    before = vae.score_samples(blobs)
    latent = vae.transform(blobs)
    moved = copy.deepcopy(vae)
    new_mean, new_scale = vae.mean_ + [0.5, -1.0, 2.0, 0.0], vae.scale_ * [2.0, 0.5, 1.0, 3.0]
    moved.module_.change_input_units(new_scale / vae.scale_, (new_mean - vae.mean_) / vae.scale_)
    moved.mean_, moved.scale_ = new_mean, new_scale
    np.testing.assert_allclose(moved.score_samples(blobs), before, rtol=1e-4)
    np.testing.assert_allclose(moved.transform(blobs), latent, rtol=1e-4, atol=1e-5)


def test_a_column_constant_in_the_first_batch_can_vary_later():
    rng = np.random.RandomState(0)
    first = np.column_stack([rng.normal(size=50), np.full(50, 3.0)])
    later = rng.normal(scale=[1.0, 1000.0], size=(50, 2))
    vae = VAETransformer(**FAST).partial_fit(first)
    assert vae.scale_[1] == 1.0
    vae.partial_fit(later)
    assert vae.scale_[1] > 100
    assert np.isfinite(vae.score_samples(np.vstack([first, later]))).all()


def test_bernoulli_data_is_not_standardised():
    X = (np.random.RandomState(0).uniform(size=(100, 3)) > 0.5).astype(float)
    vae = VAETransformer(**{**FAST, "likelihood": "bernoulli"})
    for batch in _batches(X, 3):
        vae.partial_fit(batch)
    np.testing.assert_array_equal(vae.mean_, 0.0)
    np.testing.assert_array_equal(vae.scale_, 1.0)


def test_streaming_training_learns_the_data(blobs):
    detector = VAEAnomalyDetector(**{**FAST, "learning_rate_init": 1e-2})
    rng = np.random.RandomState(1)
    for _ in range(20):
        detector.partial_fit(blobs[rng.permutation(len(blobs))[:100]])
    assert np.mean(detector.loss_curve_[-5:]) < detector.loss_curve_[0] - 1.0
    scores = detector.score_samples(blobs)
    # The five far-away rows score lowest.
    assert set(np.argsort(scores)[:5]) == set(range(200, 205))


def test_same_random_state_same_stream_same_model(blobs):
    models = [VAETransformer(**FAST), VAETransformer(**FAST)]
    for model in models:
        for batch in _batches(blobs, 4):
            model.partial_fit(batch)
    np.testing.assert_array_equal(models[0].score_samples(blobs), models[1].score_samples(blobs))


def test_pickling_between_batches_changes_nothing(blobs):
    """Dask moves the model between workers by pickling after each block."""
    straight, travelled = VAETransformer(**FAST), VAETransformer(**FAST)
    for batch in _batches(blobs, 4):
        straight.partial_fit(batch)
        travelled = pickle.loads(pickle.dumps(travelled.partial_fit(batch)))
    np.testing.assert_array_equal(straight.score_samples(blobs), travelled.score_samples(blobs))


def test_partial_fit_continues_and_fit_restarts(blobs):
    vae = VAETransformer(**FAST).fit(blobs)
    n_fit = vae.n_iter_
    vae.partial_fit(blobs[:50])
    assert vae.n_iter_ == n_fit + 1 and len(vae.loss_curve_) == n_fit + 1
    vae.fit(blobs)
    assert vae.n_iter_ == n_fit


def test_partial_fit_checks_features_against_the_first_call(blobs):
    vae = VAETransformer(**FAST).partial_fit(blobs)
    with pytest.raises(ValueError, match="X has 3 features, but VAETransformer is expecting 4"):
        vae.partial_fit(blobs[:, :3])
    frame = pd.DataFrame(blobs, columns=list("abcd"))
    vae = VAETransformer(**FAST).partial_fit(frame)
    with pytest.raises(ValueError, match="feature names"):
        vae.partial_fit(frame.rename(columns={"a": "z"}))


def test_a_failed_partial_fit_leaves_the_estimator_unchanged(blobs, monkeypatch):
    vae = VAETransformer(**FAST).partial_fit(blobs)
    weights = {k: v.clone() for k, v in vae.module_.state_dict().items()}
    adam = copy.deepcopy(vae._optimizer_state)
    attributes = dict(vae.__dict__)
    real_train = skvae._base.train

    def train_then_fail(*args, **kwargs):
        real_train(*args, **kwargs)  # the weights and the Adam state move
        raise RuntimeError("worker lost")

    monkeypatch.setattr(skvae._base, "train", train_then_fail)
    with pytest.raises(RuntimeError, match="worker lost"):
        vae.partial_fit(blobs + 1.0)
    assert vae.__dict__ == attributes
    assert all(torch.equal(v, weights[k]) for k, v in vae.module_.state_dict().items())
    for key, values in adam.items():
        for name, value in values.items():
            np.testing.assert_array_equal(vae._optimizer_state[key][name], value)


def test_offset_after_partial_fit_comes_from_the_last_batch(blobs):
    detector = VAEAnomalyDetector(**{**FAST, "contamination": 0.1})
    detector.partial_fit(blobs[:100]).partial_fit(blobs[100:])
    last = detector.score_samples(blobs[100:])
    assert detector.offset_ == pytest.approx(np.percentile(last, 10))
    np.testing.assert_array_equal(detector.calibration_scores_, np.sort(last))


def test_calibrate_sets_threshold_and_pvalues_from_held_out_rows(blobs):
    detector = VAEAnomalyDetector(**{**FAST, "contamination": 0.05}).partial_fit(blobs[:20])
    scores = detector.score_samples(blobs)
    assert detector.calibrate(blobs) is detector
    assert detector.offset_ == pytest.approx(np.percentile(scores, 5))
    np.testing.assert_array_equal(detector.calibration_scores_, np.sort(scores))
    np.testing.assert_array_equal(detector.score_samples(blobs), scores)
    assert (detector.predict(blobs) == -1).mean() == pytest.approx(0.05, abs=0.01)
    # Ranked against themselves, the rows' p-values are (rank + 1) / (n + 1).
    assert detector.pvalues(blobs).min() == pytest.approx(2 / (len(blobs) + 1))


def test_calibrate_needs_a_fitted_detector(blobs):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        VAEAnomalyDetector().calibrate(blobs)


def test_partial_fit_after_load_continues_like_the_original(blobs, tmp_path):
    import skvae

    original = VAEAnomalyDetector(**FAST).partial_fit(blobs[:100])
    original.save(tmp_path / "model.skvae")
    loaded = skvae.load(tmp_path / "model.skvae")
    for model in (original, loaded):
        model.partial_fit(blobs[100:])
    np.testing.assert_array_equal(loaded.score_samples(blobs), original.score_samples(blobs))
    assert loaded.offset_ == original.offset_
