"""Cross-conformal calibration: every training row calibrates, so p-values work on small files."""

import copy
import io
import pickle
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

import skvae
from skvae import VAEAnomalyDetector, _anomaly
from skvae.conformal import benjamini_hochberg, conformal_pvalues, cross_conformal_pvalues

from .conftest import FAST, TINY
from .test_conformal import gaussian_rows

# This file tests the default rule itself (tests/conftest.py shortens it elsewhere).
REAL_CALIBRATION_RULE = True
N_ROWS = 180  # a small file: split calibration would have 18 rows
FAR = np.array([[6.0, -6.0, 6.0, -6.0]])
# scikit-learn's checks with cross-conformal calibration, the default on their small data.
SMALL = {**TINY, "max_iter": 3}


@pytest.fixture(scope="module")
def small_file():
    """180 rows with one planted outlier (the first), and the detector on them."""
    X = np.vstack([FAR, gaussian_rows(N_ROWS - 1, 11)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return X, VAEAnomalyDetector(**FAST, calibration="cross").fit(X)


def test_cross_conformal_pvalues_follow_vovks_definition():
    rng = np.random.RandomState(0)
    folds = [rng.normal(size=n) for n in (4, 5, 3)]
    scores = [rng.normal(size=6) for _ in folds]
    expected = [
        (1 + sum(np.sum(c <= s[j]) for c, s in zip(folds, scores, strict=True))) / (1 + 12)
        for j in range(6)
    ]
    np.testing.assert_allclose(cross_conformal_pvalues(folds, scores), expected)
    # One fold is the split conformal p-value.
    np.testing.assert_array_equal(
        cross_conformal_pvalues(folds[:1], scores[:1]), conformal_pvalues(folds[0], scores[0])
    )
    with pytest.raises(ValueError, match="one set of scores per fold"):
        cross_conformal_pvalues(folds, scores[:2])


def test_every_training_row_calibrates_out_of_fold(small_file):
    X, detector = small_file
    models = detector.calibration_models_
    assert len(models) == 5
    assert detector.calibration_scores_.shape == (N_ROWS,)
    np.testing.assert_array_equal(
        detector.calibration_scores_,
        np.sort(np.concatenate([model.calibration_scores_ for model in models])),
    )
    # Each fold model holds 36 rows' scores, of rows it did not train on: the
    # planted outlier is among them for exactly one fold model, and scores
    # lowest there (a model that never saw it finds it strange).
    assert [model.calibration_scores_.size for model in models] == [36] * 5
    far = [model.score_samples(X[:1])[0] for model in models]
    holding = [k for k, model in enumerate(models) if far[k] in model.calibration_scores_]
    assert len(holding) == 1
    assert far[holding[0]] == models[holding[0]].calibration_scores_[0]


def test_a_planted_outlier_in_new_rows_is_flagged_by_bh_on_a_small_file(small_file):
    _, detector = small_file
    batch = np.vstack([gaussian_rows(9, 12), FAR])
    p = detector.pvalues(batch)
    # The outlier scores below every row of every fold but one: the planted
    # training row, the same point, ties with it in the one fold it is in.
    assert p[-1] == pytest.approx(2 / (N_ROWS + 1))
    assert benjamini_hochberg(p, 0.1)[-1]
    # Split calibration on the same file: 18 rows, p >= 1/19 > 0.1 / 10, BH flags nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = VAEAnomalyDetector(**FAST, calibration="split").fit(small_file[0])
    assert split.calibration_scores_.size == 18
    assert not benjamini_hochberg(split.pvalues(batch), 0.1).any()


def test_pvalues_of_fresh_clean_rows_are_close_to_uniform():
    X = gaussian_rows(N_ROWS, 13)
    detector = VAEAnomalyDetector(**FAST).fit(X)  # "auto": cross on 180 rows
    assert detector.calibration_models_ is not None
    p = detector.pvalues(gaussian_rows(2000, 14))
    grid = np.linspace(0.0, 1.0, 101)
    ecdf = np.searchsorted(np.sort(p), grid, side="right") / p.size
    # DKW: 180 calibration rows put their empirical CDF within 0.145 of the
    # true one with probability 0.999; 2,000 test rows add at most 0.04.
    gap = np.max(np.abs(ecdf - grid))
    assert gap < 0.15, gap
    # Small p-values are not much more frequent than they should be.
    assert np.mean(p <= 0.05) < 0.1 and np.mean(p <= 0.2) < 0.3


def test_same_random_state_same_pvalues_different_seed_different(small_file):
    X, detector = small_file
    batch = gaussian_rows(50, 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = VAEAnomalyDetector(**FAST, calibration="cross").fit(X)
        other = VAEAnomalyDetector(**{**FAST, "random_state": 1}, calibration="cross").fit(X)
    np.testing.assert_array_equal(again.calibration_scores_, detector.calibration_scores_)
    np.testing.assert_array_equal(again.pvalues(batch), detector.pvalues(batch))
    assert not np.array_equal(other.calibration_scores_, detector.calibration_scores_)


def test_saved_model_keeps_its_fold_models_and_pvalues(small_file):
    X, detector = small_file
    buffer = io.BytesIO()
    detector.save(buffer)
    restored = skvae.load(io.BytesIO(buffer.getvalue()))
    assert len(restored.calibration_models_) == 5
    np.testing.assert_array_equal(restored.calibration_scores_, detector.calibration_scores_)
    batch = np.vstack([gaussian_rows(20, 16), FAR])
    np.testing.assert_array_equal(restored.pvalues(batch), detector.pvalues(batch))
    np.testing.assert_array_equal(restored.score_samples(X), detector.score_samples(X))
    for saved, loaded in zip(
        detector.calibration_models_, restored.calibration_models_, strict=True
    ):
        assert loaded.get_params() == saved.get_params()
        for name, value in vars(saved).items():
            if name == "module_":
                for key, weights in value.state_dict().items():
                    assert torch.equal(loaded.module_.state_dict()[key], weights), key
            else:
                assert pickle.dumps(getattr(loaded, name)) == pickle.dumps(value), name
    # A truncated fold model makes the file fail to load, naming the attribute.
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    damaged = io.BytesIO()
    with zipfile.ZipFile(damaged, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "arrays/calibration_models_.2.npy":
                fold_file = np.lib.format.read_array(io.BytesIO(content))
                cut = io.BytesIO()
                np.lib.format.write_array(cut, fold_file[: fold_file.size // 2])
                content = cut.getvalue()
            target.writestr(name, content)
    with pytest.raises(skvae.ModelFileError, match="calibration_models_"):
        skvae.load(io.BytesIO(damaged.getvalue()))


def test_auto_rule_cross_for_small_files_split_otherwise(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert VAEAnomalyDetector(**FAST).fit(gaussian_rows(9, 17)).calibration_models_ is None
        assert len(VAEAnomalyDetector(**FAST).fit(gaussian_rows(10, 17)).calibration_models_) == 5
        monkeypatch.setattr(_anomaly, "CROSS_CONFORMAL_MAX_ROWS", 40)
        assert VAEAnomalyDetector(**FAST).fit(gaussian_rows(40, 17)).calibration_models_
        above = VAEAnomalyDetector(**FAST).fit(gaussian_rows(41, 17))
    assert above.calibration_models_ is None


def test_cross_needs_ten_rows():
    with pytest.raises(ValueError, match=r"calibration='cross' needs at least 10 rows"):
        VAEAnomalyDetector(**FAST, calibration="cross").fit(gaussian_rows(9, 18))


def test_partial_fit_and_calibrate_go_back_to_split_calibration(small_file):
    X, detector = small_file
    model = copy.deepcopy(detector)
    held_out = gaussian_rows(40, 19)
    model.calibrate(held_out)
    assert model.calibration_models_ is None
    expected = conformal_pvalues(model.score_samples(held_out), model.score_samples(X))
    np.testing.assert_array_equal(model.pvalues(X), expected)
    streamed = copy.deepcopy(detector).partial_fit(held_out)
    assert streamed.calibration_models_ is None and streamed.calibration_scores_.size == 40


def test_a_fold_that_cannot_be_fitted_keeps_split_calibration_under_auto():
    X = gaussian_rows(30, 20)
    X[1:, 3] = np.nan  # column 3 observed in row 0 only: its fold's model cannot fit it
    with pytest.warns(UserWarning, match="cross-conformal calibration skipped"):
        detector = VAEAnomalyDetector(**FAST).fit(X)
    assert detector.calibration_models_ is None and detector.calibration_scores_.size == 3
    with pytest.raises(ValueError, match="no observed value"):
        VAEAnomalyDetector(**FAST, calibration="cross").fit(X)


def test_the_default_rule_is_cross_up_to_2000_rows():
    assert _anomaly.CROSS_CONFORMAL_MAX_ROWS == 2000 and _anomaly.CROSS_CONFORMAL_MIN_ROWS == 10
    assert _anomaly.CROSS_CONFORMAL_BUDGET_SHARE == 1.0  # fold models train as the model does


def test_fold_models_train_for_their_share_of_the_automatic_budget(monkeypatch):
    from skvae import _training

    monkeypatch.setattr(_training, "BUDGET_STEPS", 40)  # a short budget keeps the test fast
    X = gaussian_rows(60, 21)
    # Neither early stopping nor a flat training loss ends a fit before its budget.
    params = {**FAST, "max_iter": "auto", "early_stopping": False, "n_iter_no_change": 10**6}
    params["calibration"] = "cross"

    def epochs(share):
        monkeypatch.setattr(_anomaly, "CROSS_CONFORMAL_BUDGET_SHARE", share)
        detector = VAEAnomalyDetector(**params).fit(X)
        return detector.n_iter_, [model.n_iter_ for model in detector.calibration_models_]

    full, folds = epochs(1.0)  # the default: fold models train as the model does
    assert folds == [full] * 5
    main, short = epochs(0.25)
    assert main == full  # the fitted model itself is untouched
    assert short == [round(full / 4)] * 5


@parametrize_with_checks([VAEAnomalyDetector(**SMALL)])
def test_sklearn_compatible_with_cross_conformal_calibration(estimator, check):
    check(estimator)


def test_a_model_file_without_fold_models_loads_with_split_pvalues(small_file):
    """Files written before cross-conformal calibration have no calibration_models_."""
    X, detector = small_file
    split = copy.deepcopy(detector)
    split.calibrate(X)
    del split.calibration_models_
    buffer = io.BytesIO()
    split.save(buffer)
    restored = skvae.load(io.BytesIO(buffer.getvalue()))
    assert not hasattr(restored, "calibration_models_")
    expected = conformal_pvalues(split.calibration_scores_, split.score_samples(X[:5]))
    np.testing.assert_array_equal(restored.pvalues(X[:5]), expected)


def test_fold_models_read_an_id_column_as_the_model_does():
    # With a fold left out, ids 1..n no longer fill a range: a fold model that
    # typed its own rows would model the id column and warn once more.
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"id": np.arange(1, 61), "a": rng.randn(60), "b": rng.randn(60)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = VAEAnomalyDetector(**FAST, calibration="cross").fit(frame)
    left_out = [w for w in caught if "left out column(s) id" in str(w.message)]
    assert len(left_out) == 1 and left_out[0].filename == __file__
    assert detector.column_schema_.kinds == ["gaussian", "gaussian"]
    for model in detector.calibration_models_:
        assert model.column_schema_ == detector.column_schema_
        assert model.n_features_in_ == 3 and model.module_.layout == detector.module_.layout


def test_fold_models_that_reach_max_iter_warn_once_for_all():
    X = gaussian_rows(60, 22)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        VAEAnomalyDetector(**{**FAST, "max_iter": 2}, calibration="cross").fit(X)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert messages == [
        "VAEAnomalyDetector reached max_iter=2 epochs without converging; increase max_iter.",
        "5 of 5 cross-conformal fold models reached max_iter=2 epochs without converging; "
        "increase max_iter.",
    ]
    assert all(w.filename == __file__ for w in caught)
