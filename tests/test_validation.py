"""Bad input gets a clear error, and a failed call leaves a fitted estimator as it was."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from skvae import VAEAnomalyDetector, VAETransformer

from .conftest import FAST

ESTIMATORS = [VAETransformer, VAEAnomalyDetector]


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[1.0, np.nan], [2.0, np.nan], [0.0, np.nan]]), "no observed value"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [0.0, 1.0]]), "infinity"),
        (np.empty((0, 3)), "0 sample"),
        (np.ones((1, 3)), "minimum of 2 is required"),
        (np.empty((5, 0)), "0 feature"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), "could not convert|string"),
        (np.ones(5), "Expected 2D array"),
    ],
)
def test_fit_rejects_bad_input_with_clear_message(Estimator, bad, message):
    with pytest.raises(ValueError, match=message):
        Estimator(**FAST).fit(bad)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_components": 0}, "n_components"),
        ({"max_iter": -1}, "max_iter"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (8, "x")}, "hidden_layer_sizes"),
        ({"device": "tpu"}, "device"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_wrong_parameter_values_are_named(Estimator, params, message):
    rng = np.random.RandomState(0)
    with pytest.raises(ValueError, match=message):
        Estimator(**{**FAST, **params}).fit(rng.normal(size=(20, 3)))


@pytest.mark.parametrize(
    "params, message", [({"contamination": 0.7}, "contamination"), ({"scoring": "mse"}, "scoring")]
)
def test_detector_parameters_are_validated(params, message):
    with pytest.raises(ValueError, match=message):
        VAEAnomalyDetector(**{**FAST, **params}).fit(np.random.RandomState(0).normal(size=(20, 3)))


def test_bernoulli_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VAEAnomalyDetector(**FAST, likelihood="bernoulli").fit(np.array([[0.0, 2.0], [1.0, 0.0]]))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_scoring_rejects_wrong_width_inf_and_empty(Estimator, blobs):
    est = Estimator(**FAST).fit(blobs)
    with pytest.raises(ValueError, match="3 features, but .* is expecting 4"):
        est.score_samples(blobs[:, :3])
    with pytest.raises(ValueError, match="infinity"):
        est.score_samples(np.where(blobs == blobs[0, 0], np.inf, blobs))
    with pytest.raises(ValueError, match="0 sample"):
        est.score_samples(blobs[:0])
    frame = pd.DataFrame(blobs, columns=list("abcd"))
    with pytest.raises(ValueError, match="infinity in column 'b'"):
        est.fit(frame).score_samples(frame.assign(b=np.inf))
    with pytest.raises(ValueError, match="0 sample"):
        est.score_samples(frame[:0])


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_failed_refit_leaves_fitted_estimator_unchanged(Estimator, blobs):
    est = Estimator(**FAST).fit(blobs)
    before = {k: v for k, v in vars(est).items() if k != "module_"}
    weights = {k: v.clone() for k, v in est.module_.state_dict().items()}
    scores = est.score_samples(blobs)
    infinite = np.where(blobs > 2, np.inf, blobs)
    for bad in (np.full_like(blobs, np.nan), blobs[:1], infinite):
        # Column names: a failed fit must not leave feature_names_in_ behind.
        bad_frame = pd.DataFrame(bad, columns=[f"c{i}" for i in range(bad.shape[1])])
        with pytest.raises(ValueError):
            est.fit(bad_frame)
    with pytest.raises(ValueError):
        est.set_params(n_components=-3).fit(blobs)
    est.set_params(n_components=FAST["n_components"])
    assert not hasattr(est, "feature_names_in_")
    np.testing.assert_array_equal(est.score_samples(blobs), scores)
    after = {k: v for k, v in vars(est).items() if k != "module_"}
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert pickle.dumps(after[key]) == pickle.dumps(value), key
    for key, value in est.module_.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_cuda_request_without_cuda_is_a_clear_error(blobs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        VAEAnomalyDetector(**FAST, device="cuda").fit(blobs)


@pytest.mark.parametrize("n_rows", [2, 3, 20, 63])
def test_tiny_inputs_fit_and_score(n_rows):
    """Fewer rows than batch_size, and validation splits too small to use."""
    X = np.random.RandomState(0).normal(size=(n_rows, 3))
    detector = VAEAnomalyDetector(**{**FAST, "batch_size": 256}).fit(X)
    scores = detector.score_samples(X)
    assert np.isfinite(scores).all()
    assert detector.validation_scores_ is None or n_rows >= 20
    assert np.isfinite(detector.score_samples(X[:1])).all()  # scoring one row works
