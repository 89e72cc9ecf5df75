"""novelty=True: clean training rows, scored by the bound minus a distance
to the training rows (skvae._neighbors)."""

import io
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

import skvae
from skvae import ModelFileError, VAEAnomalyDetector, _neighbors

from .conftest import FAST
from .test_persistence import rewritten


def _rings(rng, n):
    """Two thin concentric rings: normal rows lie on them, the space between
    is empty, and a small VAE's density smears across it."""
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(rng.rand(n) < 0.5, 1.0, 3.0)
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)] + 0.05 * rng.normal(size=(n, 2))


def _between_rings(rng, n):
    points = rng.uniform(-3.5, 3.5, size=(4 * n, 2))
    radius = np.hypot(*points.T)
    return points[(np.abs(radius - 1) > 0.3) & (np.abs(radius - 3) > 0.3)][:n]


def _fit(X, **params):
    return VAEAnomalyDetector(**{**FAST, "max_iter": 30, **params}).fit(X)


@pytest.fixture(scope="module")
def rings():
    rng = np.random.RandomState(0)
    X = _rings(rng, 600)
    test = np.vstack([_rings(rng, 300), _between_rings(rng, 200)])
    y = np.r_[np.zeros(300), np.ones(200)]
    return X, test, y, _fit(X, novelty=True)


def test_the_distance_term_finds_what_the_density_smears_over(rings):
    X, test, y, detector = rings
    plain = _fit(X)
    assert roc_auc_score(y, -plain.score_samples(test)) < 0.8
    assert roc_auc_score(y, -detector.score_samples(test)) > 0.95


def test_score_is_the_bound_minus_the_scaled_kth_neighbour_distance(rings):
    X, test, _, detector = rings
    embed = (detector.neighbor_rows_ - detector.mean_) / detector.scale_
    distance = (
        NearestNeighbors(n_neighbors=5)
        .fit(embed)
        .kneighbors((test - detector.mean_) / detector.scale_)[0][:, -1]
    )
    center, slope = detector.neighbor_scaling_
    bound = detector._bounds_as_observed(test)
    expected = bound - slope * (distance - center)
    np.testing.assert_allclose(detector.score_samples(test), expected, rtol=1e-5, atol=1e-4)
    assert slope > 0


def test_novelty_trains_on_every_row_and_plain_fits_have_no_distance_term(rings):
    X, *_, detector = rings
    assert detector._trim_fraction() == 0.0
    assert _fit(X, novelty=True, trim_fraction=0.1)._trim_fraction() == 0.1
    plain = _fit(X, max_iter=2)
    assert plain._trim_fraction() == 0.2
    assert plain.neighbor_rows_ is None and plain.neighbor_scaling_ is None


def test_new_normal_rows_are_flagged_at_the_rates_asked_for():
    # The calibration rows are not among the neighbour rows, and training
    # rows are measured without themselves: otherwise training rows look
    # more normal than new ones and new normal rows are flagged too often.
    # 600 calibration rows, so that their own sampling noise stays small.
    rng = np.random.RandomState(1)
    X, new = rng.normal(size=(2000, 4)), rng.normal(size=(4000, 4))
    detector = _fit(
        X, novelty=True, contamination=0.1, calibration="split", validation_fraction=0.3
    )
    assert detector.neighbor_rows_.shape[0] == 2000 - 600
    assert 0.07 < np.mean(detector.predict(new) == -1) < 0.14
    assert 0.07 < np.mean(detector.pvalues(new) <= 0.1) < 0.14


def test_cross_conformal_fold_models_each_keep_their_own_rows():
    rng = np.random.RandomState(2)
    X, new = rng.normal(size=(300, 3)), rng.normal(size=(2000, 3))
    detector = _fit(X, novelty=True, calibration="cross")
    for model in detector.calibration_models_:
        assert model.novelty and model.neighbor_rows_.shape[0] < detector.neighbor_rows_.shape[0]
    assert 0.05 < np.mean(detector.pvalues(new) <= 0.1) < 0.16


def test_at_most_max_rows_are_kept(monkeypatch):
    monkeypatch.setattr(_neighbors, "MAX_ROWS", 100)
    X = np.random.RandomState(3).normal(size=(400, 3))
    detector = _fit(X, novelty=True, max_iter=2)
    assert detector.neighbor_rows_.shape == (100, 3)
    assert all(any(np.array_equal(row, x) for x in X) for row in detector.neighbor_rows_)


def test_partial_fit_draws_the_rows_from_every_batch(monkeypatch):
    monkeypatch.setattr(_neighbors, "MAX_ROWS", 150)
    X = np.random.RandomState(4).normal(size=(400, 3))
    detector = VAEAnomalyDetector(**FAST, novelty=True)
    batches = np.split(X, 4)
    for batch in batches:
        detector.partial_fit(batch)
    rows = detector.neighbor_rows_
    assert rows.shape == (150, 3)
    for batch in (batches[0], batches[-1]):
        assert any(np.array_equal(row, x) for row in rows for x in batch)
    assert np.isfinite(detector.score_samples(X)).all()


def test_same_seed_same_scores(rings):
    X, test, _, detector = rings
    again = _fit(X, novelty=True)
    np.testing.assert_array_equal(again.score_samples(test), detector.score_samples(test))
    np.testing.assert_array_equal(again.neighbor_rows_, detector.neighbor_rows_)


def test_rows_with_missing_values_stay_on_the_complete_rows_scale():
    rng = np.random.RandomState(5)
    z = rng.normal(size=(1400, 2))
    table = z @ rng.normal(size=(2, 8)) + 0.3 * rng.normal(size=(1400, 8))
    detector = _fit(table[:1000], novelty=True, calibration="split", max_iter=40)
    test = table[1000:]
    holey = test.copy()
    for row in holey:
        row[rng.choice(8, 4, replace=False)] = np.nan
    reference = np.sort(detector.score_samples(test))
    percentiles = np.searchsorted(reference, detector.score_samples(holey)) / len(test)
    assert 0.3 < np.median(percentiles) < 0.7


def test_mixed_frame_with_missing_values_round_trips_through_a_model_file(tmp_path):
    rng = np.random.RandomState(6)
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(size=300),
            "kind": rng.choice(["a", "b", "c"], 300),
            "flag": rng.choice([True, False], 300),
        }
    )
    frame.loc[::9, "amount"] = np.nan
    detector = _fit(frame, novelty=True, max_iter=5)
    assert np.isnan(detector.neighbor_rows_).any()
    scores = detector.score_samples(frame)
    assert np.isfinite(scores).all()
    detector.save(tmp_path / "m.skvae")
    loaded = skvae.load(tmp_path / "m.skvae")
    np.testing.assert_allclose(loaded.score_samples(frame), scores, rtol=1e-6)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(detector)).score_samples(frame), scores)


def _saved(detector):
    buffer = io.BytesIO()
    detector.save(buffer)
    return buffer.getvalue()


def _without(data, attribute):
    """The model file ``data`` with ``attribute`` stored as None."""

    def header(h):
        h["fitted"][attribute] = None
        return h

    def arrays(name, content):
        return None if attribute in name else content

    return rewritten(data, header=header, arrays=arrays)


def _array_replaced(data, attribute, change):
    def arrays(name, content):
        if attribute not in name:
            return content
        buffer = io.BytesIO()
        np.save(buffer, change(np.load(io.BytesIO(content))))
        return buffer.getvalue()

    return rewritten(data, arrays=arrays)


def test_model_files_with_inconsistent_neighbour_state_are_refused(rings):
    X, *_ = rings
    data = _saved(_fit(X, novelty=True, max_iter=2, calibration="split"))
    for attribute in ("neighbor_scaling_", "neighbor_rows_"):
        with pytest.raises(ModelFileError, match="go together"):
            skvae.load(io.BytesIO(_without(data, attribute)))
    negative = _array_replaced(data, "neighbor_scaling_", lambda a: np.array([1.0, -1.0]))
    with pytest.raises(ModelFileError, match="positive scale"):
        skvae.load(io.BytesIO(negative))
    infinite = _array_replaced(data, "neighbor_rows_", lambda a: np.where(a == a[0, 0], np.inf, a))
    with pytest.raises(ModelFileError, match="infinite"):
        skvae.load(io.BytesIO(infinite))


def test_files_written_before_novelty_load_without_the_term(rings):
    X, *_ = rings
    plain = _saved(_fit(X, max_iter=2, calibration="split"))

    def header(h):
        del h["fitted"]["neighbor_rows_"], h["fitted"]["neighbor_scaling_"]
        return h

    older = skvae.load(io.BytesIO(rewritten(plain, header=header)))
    assert not hasattr(older, "neighbor_rows_")
    np.testing.assert_array_equal(
        older.score_samples(X), skvae.load(io.BytesIO(plain)).score_samples(X)
    )


def test_neighbour_rows_with_an_unknown_category_code_are_refused():
    frame = pd.DataFrame(
        {"x": np.random.RandomState(7).normal(size=120), "kind": ["a", "b", "c"] * 40}
    )
    data = _saved(_fit(frame, novelty=True, max_iter=2, calibration="split"))

    def bad_code(rows):
        rows[0, 1] = 7.0
        return rows

    with pytest.raises(ModelFileError, match="not categorical codes"):
        skvae.load(io.BytesIO(_array_replaced(data, "neighbor_rows_", bad_code)))


def test_fit_predict_is_not_offered_as_in_local_outlier_factor(rings):
    *_, detector = rings
    assert not hasattr(detector, "fit_predict")
    with pytest.raises(AttributeError, match="fit_predict") as error:
        detector.fit_predict(rings[0])
    assert "novelty=True" in str(error.value.__cause__)
    assert hasattr(VAEAnomalyDetector(), "fit_predict")


def test_a_one_row_batch_keeps_the_earlier_rows():
    X = np.random.RandomState(8).normal(size=(101, 3))
    detector = VAEAnomalyDetector(**FAST, novelty=True).partial_fit(X[:100])
    detector.partial_fit(X[100:])
    assert detector.neighbor_rows_.shape == (101, 3)
    single = VAEAnomalyDetector(**FAST, novelty=True).partial_fit(X[:1])
    assert single.neighbor_rows_ is None
    assert np.isfinite(single.score_samples(X)).all()


def test_epochs_of_partial_fit_keep_each_row_once_and_flag_at_the_rate_asked_for():
    rng = np.random.RandomState(9)
    X, new = rng.normal(size=(2000, 4)), rng.normal(size=(4000, 4))
    detector = VAEAnomalyDetector(**FAST, novelty=True, contamination=0.1)
    for _ in range(3):
        for batch in np.split(X, 4):
            detector.partial_fit(batch)
    assert detector.neighbor_rows_.shape == (2000, 4)
    assert np.unique(detector.neighbor_rows_, axis=0).shape[0] == 2000
    # The last batch sets offset_: its rows measured without their earlier
    # copies look like new rows, not closer.
    assert 0.06 < np.mean(detector.predict(new) == -1) < 0.15


def test_a_model_whose_novelty_was_switched_off_after_the_fit_saves_and_loads(rings):
    X, test, _, detector = rings
    switched = pickle.loads(pickle.dumps(detector)).set_params(novelty=False)
    loaded = skvae.load(io.BytesIO(_saved(switched)))
    np.testing.assert_allclose(loaded.score_samples(test), detector.score_samples(test), rtol=1e-6)


def test_a_category_first_seen_in_a_later_batch_is_kept_and_saved(tmp_path):
    rng = np.random.RandomState(10)
    first = pd.DataFrame({"x": rng.normal(size=100), "kind": pd.Categorical(["a", "b"] * 50)})
    later = pd.DataFrame({"x": rng.normal(size=50), "kind": pd.Categorical(["c"] * 50)})
    detector = VAEAnomalyDetector(**FAST, novelty=True).partial_fit(first).partial_fit(later)
    loaded = skvae.load(io.BytesIO(_saved(detector)))
    np.testing.assert_allclose(loaded.score_samples(later), detector.score_samples(later))


def test_objects_pickled_before_novelty_existed_keep_working(rings):
    X, *_ = rings
    detector = _fit(X, max_iter=2)
    state = detector.__getstate__()
    del state["novelty"]
    old = VAEAnomalyDetector.__new__(VAEAnomalyDetector)
    old.__setstate__(state)
    assert old.novelty is False and hasattr(old, "fit_predict")
    old.partial_fit(X[:50])
    assert np.isfinite(old.score_samples(X)).all()


def test_clearing_the_training_rows_as_the_readme_says_leaves_none_in_the_file():
    rng = np.random.RandomState(11)
    X = rng.normal(size=(300, 3))
    X[::10, 0] = np.nan
    detector = _fit(X, novelty=True, max_iter=5, calibration="cross")
    for model in [detector, *(detector.calibration_models_ or [])]:
        model.missing_reference_ = None
        model.neighbor_rows_ = model.neighbor_scaling_ = None
    data = _saved(detector)
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        nested = [n for n in outer.namelist() if "calibration_models_" in n]
        assert len(nested) == 5
        names = list(outer.namelist())
        for name in nested:
            names += zipfile.ZipFile(io.BytesIO(np.load(io.BytesIO(outer.read(name))))).namelist()
    assert not [n for n in names if "neighbor_rows_" in n or "missing_reference_" in n]
    loaded = skvae.load(io.BytesIO(data))
    # In memory and from the file alike: the bound alone, without the term.
    np.testing.assert_allclose(loaded.score_samples(X), detector.score_samples(X), rtol=1e-6)
    np.testing.assert_allclose(
        detector.score_samples(X[1:4]), detector._bounds_as_observed(X[1:4]), rtol=1e-9
    )
