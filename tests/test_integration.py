"""skvae estimators inside scikit-learn's machinery: pipelines, search, pickling, pandas."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skvae import VAEAnomalyDetector, VAETransformer
from skvae.metrics import outlier_roc_auc

from .conftest import FAST


def labelled_data(seed=0):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(size=(240, 3)), rng.normal(loc=5.0, size=(12, 3))])
    y = np.r_[np.zeros(240, int), np.ones(12, int)]
    order = rng.permutation(len(y))
    return X[order], y[order]


def test_detector_in_pipeline(blobs):
    pipe = Pipeline([("scale", StandardScaler()), ("vae", VAEAnomalyDetector(**FAST))])
    pipe.fit(blobs)
    assert pipe.predict(blobs).shape == (len(blobs),)
    assert set(np.argsort(pipe.score_samples(blobs))[:5]) == {200, 201, 202, 203, 204}
    assert np.isfinite(pipe.decision_function(blobs)).all()


def test_column_transformer_feeds_transformer():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=120),
            "b": rng.normal(size=120),
            "colour": rng.choice(["red", "green", "blue"], size=120),
        }
    )
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["a", "b"]),
            ("cat", OneHotEncoder(sparse_output=False), ["colour"]),
        ]
    )
    pipe = make_pipeline(pre, VAETransformer(**FAST)).set_output(transform="pandas")
    out = pipe.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["vaetransformer0", "vaetransformer1"]
    assert out.shape == (120, 2)


def test_grid_search_on_score_without_labels(blobs):
    search = GridSearchCV(
        VAETransformer(**FAST), {"n_components": [1, 2], "beta": [0.5, 1.0]}, cv=2
    )
    search.fit(blobs)
    assert search.best_params_["n_components"] in (1, 2)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_grid_search_on_roc_auc_with_labels():
    X, y = labelled_data()
    search = GridSearchCV(
        VAEAnomalyDetector(**FAST), {"n_components": [1, 2]}, scoring=outlier_roc_auc, cv=2
    )
    search.fit(X, y)
    assert search.best_score_ > 0.9


def test_builtin_roc_auc_scorer_uses_decision_function():
    # scikit-learn's "roc_auc" scorer ranks by decision_function, which is
    # high for inliers: with y = 1 for inliers it measures detection.
    X, y = labelled_data()
    scores = cross_val_score(VAEAnomalyDetector(**FAST), X, 1 - y, scoring="roc_auc", cv=2)
    assert scores.min() > 0.9


def test_cross_val_score_uses_mean_elbo(blobs):
    scores = cross_val_score(VAETransformer(**FAST), blobs, cv=3)
    assert scores.shape == (3,)
    assert np.isfinite(scores).all()


def test_clone_gives_unfitted_copy_with_same_params(blobs):
    detector = VAEAnomalyDetector(**FAST).fit(blobs)
    copy = clone(detector)
    assert copy.get_params() == detector.get_params()
    assert not hasattr(copy, "module_")


def test_pandas_in_and_out():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["x", "y", "z"])
    vae = VAETransformer(**FAST).set_output(transform="pandas").fit(frame)
    np.testing.assert_array_equal(vae.feature_names_in_, ["x", "y", "z"])
    out = vae.transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["vaetransformer0", "vaetransformer1"]
    pd.testing.assert_index_equal(out.index, frame.index)


def test_feature_names_checked_at_transform_time():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["x", "y", "z"])
    detector = VAEAnomalyDetector(**FAST).fit(frame)
    with pytest.raises(ValueError, match="feature names"):
        detector.score_samples(frame.rename(columns={"z": "w"}))
    with pytest.raises(ValueError, match="feature names"):
        detector.score_samples(frame[["z", "y", "x"]])


@pytest.mark.parametrize("dump,load", [(pickle.dumps, pickle.loads), ("joblib", "joblib")])
def test_pickle_round_trip_gives_identical_scores(blobs, tmp_path, dump, load):
    detector = VAEAnomalyDetector(**FAST, scoring="iwae").fit(blobs)
    if dump == "joblib":
        joblib.dump(detector, tmp_path / "model.joblib")
        restored = joblib.load(tmp_path / "model.joblib")
    else:
        restored = load(dump(detector))
    np.testing.assert_array_equal(restored.score_samples(blobs), detector.score_samples(blobs))
    np.testing.assert_array_equal(restored.predict(blobs), detector.predict(blobs))


def test_pickled_state_holds_only_cpu_tensors(blobs):
    """A CUDA-fitted model loads on a CPU-only machine: the pickled state is on CPU."""
    detector = VAEAnomalyDetector(**FAST).fit(blobs)
    state = detector.__getstate__()
    assert state["device_"] == "cpu"
    assert all(t.device.type == "cpu" for t in state["module_"].state_dict().values())
    # Pickling must not move the live model.
    assert detector.module_ is not state["module_"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fitted_model_scores_the_same_after_cpu_load(blobs):
    detector = VAEAnomalyDetector(**FAST, device="cuda").fit(blobs)
    assert detector.device_ == "cuda"
    restored = pickle.loads(pickle.dumps(detector))
    assert restored.device_ == "cpu"
    np.testing.assert_allclose(
        restored.score_samples(blobs), detector.score_samples(blobs), rtol=1e-4
    )
