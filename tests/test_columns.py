"""Mixed column types and missing values: typing, encoding, likelihoods, round trips."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from skvae import VAEAnomalyDetector, VAETransformer
from skvae._columns import ColumnSchema, infer_schema
from skvae._likelihoods import feature_log_likelihood, reconstruction_feature_log_likelihood
from skvae._network import UNSEEN_CODE, ColumnLayout, VAEModule
from skvae._preprocessing import column_moments, standardiser_from_moments

from .conftest import FAST

ESTIMATORS = [VAETransformer, VAEAnomalyDetector]


def mixed_frame(n=300, seed=0):
    """Float, nullable int, 0/1 int, nullable bool, object bool, category,
    str and object-string columns, with missing values in every kind but
    the plain int64 one (which cannot hold them)."""
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame(
        {
            "f": rng.normal(size=n),
            "i": pd.array(rng.randint(0, 100, size=n), dtype="Int64"),
            "i01": rng.randint(0, 2, size=n),
            "b": pd.array(rng.uniform(size=n) < 0.3, dtype="boolean"),
            "ob": (rng.uniform(size=n) < 0.6).astype(object),
            "c": pd.Categorical(rng.choice(["x", "y", "z"], size=n), categories=["z", "y", "x"]),
            "s": pd.array(rng.choice(["red", "green"], size=n), dtype="str"),
            "o": rng.choice(["north", "south", "east"], size=n).astype(object),
        }
    )
    frame.loc[::7, "f"] = np.nan
    frame.loc[::11, "i"] = pd.NA
    frame.loc[::13, "b"] = pd.NA
    frame.loc[::6, "ob"] = None
    frame.loc[::5, "c"] = np.nan
    frame.loc[::9, "s"] = None
    frame.loc[::8, "o"] = pd.NA
    return frame


EXPECTED_KINDS = {
    "f": "gaussian",
    "i": "gaussian",
    "i01": "bernoulli",
    "b": "bernoulli",
    "ob": "bernoulli",
    "c": "categorical",
    "s": "categorical",
    "o": "categorical",
}


def test_column_kinds_are_inferred_from_dtypes():
    schema = infer_schema(mixed_frame())
    assert dict(zip(schema.names, schema.kinds, strict=True)) == EXPECTED_KINDS
    # A category dtype keeps its declared order; other categories are sorted.
    assert schema.categories[5] == ["z", "y", "x"]
    assert schema.categories[6] == ["green", "red"]
    assert schema.categories[7] == ["east", "north", "south"]


def test_column_types_override_and_are_checked():
    frame = mixed_frame()
    schema = infer_schema(frame, {"i": "categorical", 0: "bernoulli"})
    assert schema.kinds[1] == "categorical" and schema.kinds[0] == "bernoulli"
    assert schema.categories[1] == sorted(frame["i"].dropna().unique())
    with pytest.raises(ValueError, match="column_types names column 'nope'"):
        infer_schema(frame, {"nope": "gaussian"})
    with pytest.raises(ValueError, match=r"column_types\['f'\] must be one of"):
        infer_schema(frame, {"f": "poisson"})


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_mixed_frame_with_missing_values_fits_and_scores(Estimator):
    frame = mixed_frame()
    est = Estimator(**FAST).fit(frame)
    assert est.column_schema_.kinds == list(EXPECTED_KINDS.values())
    # Indicators only for the numeric columns that had missing values.
    assert est.column_schema_.masked == [True, True, False, True, True, False, False, False]
    # Encoder input: 5 numeric values + 3 + 2 + 3 one-hot codes + 4 indicators.
    assert est.module_.encoder[0].in_features == 5 + 8 + 4
    scores = est.score_samples(frame)
    assert scores.shape == (len(frame),) and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, Estimator(**FAST).fit(frame).score_samples(frame))
    # Non-Gaussian columns are used as they are, Gaussian ones standardised.
    np.testing.assert_allclose(est.mean_[2:], 0.0)
    np.testing.assert_allclose(est.scale_[2:], 1.0)
    assert est.mean_[0] == pytest.approx(frame["f"].mean())


def test_numeric_input_without_missing_values_keeps_the_plain_network(blobs):
    frame = pd.DataFrame(blobs, columns=list("abcd"))
    vae = VAETransformer(**FAST).fit(frame)
    assert vae.column_schema_.masked == [False] * 4
    assert vae.module_.encoder[0].in_features == 4
    assert vae.module_.uniform_kind == "gaussian"
    # The statistics check_array's copy of the frame gave before columns were typed.
    mean, scale = standardiser_from_moments(column_moments(np.asarray(frame)))
    np.testing.assert_array_equal(vae.mean_, mean)
    np.testing.assert_array_equal(vae.scale_, scale)


@pytest.mark.parametrize("scoring", ["elbo", "iwae", "reconstruction"])
def test_nan_in_a_float_array_is_missing(blobs, scoring):
    X = blobs.copy()
    X[::10, 1] = np.nan
    detector = VAEAnomalyDetector(**FAST, scoring=scoring).fit(X)
    assert detector.column_schema_.masked == [False, True, False, False]
    assert detector.module_.encoder[0].in_features == 5
    assert detector.mean_[1] == pytest.approx(np.nanmean(X[:, 1]))
    scores = detector.score_samples(X)
    assert np.isfinite(scores).all()
    # The far rows still score lowest, with or without a missing entry.
    assert set(np.argsort(scores)[:5]) == {200, 201, 202, 203, 204}
    # NaN in a column that had none in fit is scored too (no indicator).
    holes = X.copy()
    holes[:, 0] = np.nan
    assert np.isfinite(detector.score_samples(holes)).all()


def test_missing_entries_drop_out_of_the_likelihood():
    layout = ColumnLayout(("gaussian", "bernoulli", "categorical"), (0, 0, 3), (True, True, False))
    module = VAEModule(3, 2, (8,), layout=layout)
    module.reset_parameters(torch.Generator().manual_seed(0))
    x = torch.tensor([[0.5, 1.0, 2.0], [np.nan, np.nan, np.nan], [0.1, np.nan, 0.0]])
    log_p = reconstruction_feature_log_likelihood(module, x)
    assert torch.isfinite(log_p).all()
    assert (log_p[1] == 0).all() and log_p[2, 1] == 0
    assert (log_p[0] < 0).all() and log_p[2, 0] != 0 and log_p[2, 2] < 0


def test_unseen_category_gets_the_least_likely_categorys_log_probability():
    layout = ColumnLayout(("gaussian", "categorical"), (0, 4), (False, False))
    module = VAEModule(2, 2, (8,), layout=layout)
    module.reset_parameters(torch.Generator().manual_seed(0))
    location = torch.randn(1, 1 + 4, generator=torch.Generator().manual_seed(1))
    log_var = torch.zeros(1, 1)
    log_p = torch.log_softmax(location[0, 1:], dim=-1)
    for code in range(4):
        x = torch.tensor([[0.0, float(code)]])
        got = feature_log_likelihood(module, x, location, log_var)[0, 1]
        assert got == pytest.approx(log_p[code].item())
    unseen = torch.tensor([[0.0, UNSEEN_CODE]])
    assert feature_log_likelihood(module, unseen, location, log_var)[0, 1] == pytest.approx(
        log_p.min().item()
    )


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_unseen_categories_and_all_missing_rows_get_defined_scores(Estimator):
    frame = mixed_frame()
    est = Estimator(**FAST).fit(frame)
    strange = frame[:4].copy()
    strange["o"] = ["west", "north", "up", None]
    strange["c"] = pd.Categorical(["w", "x", "y", None])
    assert np.isfinite(est.score_samples(strange)).all()
    empty = pd.DataFrame({name: pd.Series([None, None], dtype=object) for name in frame})
    scores = est.score_samples(empty)
    assert np.isfinite(scores).all()
    # Nothing observed tells the two rows apart: both score as the model's
    # predicted row (tests/test_missing_values.py has the rule).
    assert scores[0] == scores[1]


def test_unseen_category_scores_lower_than_its_row_with_a_seen_one():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"x": rng.normal(size=400), "k": rng.choice(["a", "b"], size=400)})
    detector = VAEAnomalyDetector(**{**FAST, "max_iter": 40}).fit(frame)
    seen = detector.score_samples(frame[:50])
    unseen = detector.score_samples(frame[:50].assign(k="zzz"))
    # The encoder sees no category for an unseen one, so the latent code and
    # the other columns' terms move too: lower on the whole, not row by row.
    assert np.mean(unseen < seen) > 0.9
    assert unseen.mean() < seen.mean() - 0.1


def test_detector_finds_rows_that_break_the_link_between_kinds():
    # The category decides the mean of x and the flag: rows whose category
    # disagrees with both are anomalies that no single column reveals.
    rng = np.random.RandomState(0)
    n = 600
    kind = rng.choice(["low", "high"], size=n)
    x = np.where(kind == "low", -2.0, 2.0) + rng.normal(scale=0.5, size=n)
    flag = kind == "high"
    kind[:10] = np.where(kind[:10] == "low", "high", "low")
    frame = pd.DataFrame({"x": x, "flag": flag, "kind": kind})
    frame.loc[50:120, "x"] = np.nan
    # 120 epochs: the default cosine schedule anneals the step to zero, and
    # 60 epochs of it leave the link between the kinds half learned.
    detector = VAEAnomalyDetector(**{**FAST, "max_iter": 120, "batch_size": 128}).fit(frame)
    scores = detector.score_samples(frame)
    assert set(np.argsort(scores)[:10]) == set(range(10))


def test_bernoulli_columns_must_hold_values_in_unit_interval():
    frame = pd.DataFrame({"a": np.r_[0.0, 1.0, 0.5, 2.0], "b": [1, 2, 3, 4]})
    with pytest.raises(ValueError, match="Column 'a' is modelled as Bernoulli"):
        VAETransformer(**FAST, column_types={"a": "bernoulli"}).fit(frame)


def test_strings_in_a_numeric_column_are_a_clear_error():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    with pytest.raises(ValueError, match="Column 'b' is modelled as gaussian"):
        VAETransformer(**FAST, column_types={"b": "gaussian"}).fit(frame)


def test_object_array_columns_can_be_declared_categorical():
    rng = np.random.RandomState(0)
    X = np.empty((200, 2), dtype=object)
    X[:, 0] = rng.normal(size=200)
    X[:, 1] = rng.choice(["a", "b", "c"], size=200)
    X[::10, 1] = None
    with pytest.raises(ValueError, match="could not convert|string"):
        VAEAnomalyDetector(**FAST).fit(X)
    detector = VAEAnomalyDetector(**FAST, column_types={1: "categorical"}).fit(X)
    assert detector.column_schema_.categories[1] == ["a", "b", "c"]
    assert np.isfinite(detector.score_samples(X)).all()
    vae = VAETransformer(**FAST, column_types={1: "categorical"}).fit(X)
    back = vae.inverse_transform(vae.transform(X[:5]))
    assert back.dtype == object and set(back[:, 1]) <= {"a", "b", "c"}


def test_inverse_transform_and_sample_give_the_original_dtypes():
    frame = mixed_frame()
    vae = VAETransformer(**FAST).fit(frame)
    for out in (vae.inverse_transform(vae.transform(frame[:20])), vae.sample(30, random_state=0)):
        assert isinstance(out, pd.DataFrame)
        assert list(out.columns) == list(frame.columns)
        pd.testing.assert_series_equal(out.dtypes, frame.dtypes)
        assert list(out["c"].cat.categories) == ["z", "y", "x"]
        assert set(out["s"]) <= {"red", "green"} and set(out["o"]) <= {"north", "south", "east"}
        assert set(out["ob"]) <= {True, False}
        assert out.notna().all().all()
    # Sampling is reproducible and draws every category in proportion.
    draws = vae.sample(2000, random_state=1)
    pd.testing.assert_frame_equal(draws, vae.sample(2000, random_state=1))
    share = draws["o"].value_counts(normalize=True)
    expected = frame["o"].value_counts(normalize=True)
    np.testing.assert_allclose(share[expected.index], expected, atol=0.1)


@pytest.mark.parametrize("scoring", ["elbo", "iwae", "reconstruction"])
def test_every_scoring_works_on_mixed_data(scoring):
    frame = mixed_frame()
    detector = VAEAnomalyDetector(**FAST, scoring=scoring, n_importance_samples=4).fit(frame)
    assert np.isfinite(detector.score_samples(frame)).all()
    assert np.isfinite(detector.score(frame))


def test_schema_round_trips_through_json():
    frame = mixed_frame()
    vae = VAETransformer(**FAST).fit(frame)
    state = json.loads(json.dumps(vae.column_schema_.to_dict()))
    schema = ColumnSchema.from_dict(state)
    assert schema == vae.column_schema_
    np.testing.assert_array_equal(schema.encode(frame), vae.column_schema_.encode(frame))


def test_pickle_and_warm_start_keep_the_schema():
    frame = mixed_frame()
    detector = VAEAnomalyDetector(**{**FAST, "warm_start": True, "max_iter": 5}).fit(frame)
    restored = pickle.loads(pickle.dumps(detector))
    np.testing.assert_array_equal(restored.score_samples(frame), detector.score_samples(frame))
    schema = detector.column_schema_
    # A warm-started fit on rows without some categories keeps the first schema.
    detector.fit(frame[frame["o"] == "north"])
    assert detector.column_schema_ == schema
    assert np.isfinite(detector.score_samples(frame)).all()


def test_fit_on_frame_score_on_array_by_position():
    frame = mixed_frame()[["f", "i01", "c"]]
    detector = VAEAnomalyDetector(**FAST).fit(frame)
    with pytest.warns(UserWarning, match="feature names"):
        scores = detector.score_samples(frame.to_numpy())
    np.testing.assert_allclose(scores, detector.score_samples(frame))


def test_a_change_of_scaling_leaves_a_mixed_model_unchanged():
    # Streaming training re-expresses the network when the standardisation
    # moves; with missing values and categories the density must not move.
    frame = mixed_frame()
    vae = VAETransformer(**{**FAST, "decoder_variance": "sample"}).fit(frame)
    before, latent = vae.score_samples(frame), vae.transform(frame)
    moved = pickle.loads(pickle.dumps(vae))
    gaussian = np.array([kind == "gaussian" for kind in vae.column_schema_.kinds])
    new_mean = np.where(gaussian, vae.mean_ + 0.3 * vae.scale_, 0.0)
    new_scale = np.where(gaussian, vae.scale_ * 1.7, 1.0)
    moved.module_.change_input_units(new_scale / vae.scale_, (new_mean - vae.mean_) / vae.scale_)
    moved.mean_, moved.scale_ = new_mean, new_scale
    np.testing.assert_allclose(moved.score_samples(frame), before, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(moved.transform(frame), latent, rtol=1e-4, atol=1e-5)


def test_partial_fit_on_mixed_batches_keeps_the_first_schema():
    frame = mixed_frame(n=400)
    detector = VAEAnomalyDetector(**FAST)
    for batch in np.array_split(np.arange(len(frame)), 4):
        detector.partial_fit(frame.iloc[batch])
    first = infer_schema(frame.iloc[:100])
    assert detector.column_schema_.categories == first.categories
    assert detector.n_iter_ == 4
    observed = frame["f"].dropna()
    assert detector.mean_[0] == pytest.approx(observed.mean())
    assert detector.scale_[0] == pytest.approx(observed.std(ddof=0))
    assert np.isfinite(detector.score_samples(frame)).all()


def test_mixed_model_file_round_trips(tmp_path):
    frame = mixed_frame()
    detector = VAEAnomalyDetector(**FAST).fit(frame)
    detector.save(tmp_path / "mixed.skvae")
    loaded = VAEAnomalyDetector.load(tmp_path / "mixed.skvae")
    assert loaded.column_schema_ == detector.column_schema_
    np.testing.assert_array_equal(loaded.score_samples(frame), detector.score_samples(frame))
    contributions = loaded.feature_contributions(frame)
    assert list(contributions.columns) == list(frame.columns)


@pytest.mark.parametrize("scoring", ["elbo", "reconstruction"])
def test_feature_contributions_are_per_original_column(scoring):
    frame = mixed_frame()
    detector = VAEAnomalyDetector(**FAST, scoring=scoring).fit(frame)
    contributions = detector.feature_contributions(frame)
    assert list(contributions.columns) == list(frame.columns)
    values = contributions.to_numpy()
    assert np.isfinite(values).all()
    # Missing entries contribute their predicted value's share (never a
    # -0.0 of "not counted"); observed categorical ones contribute too.
    assert (values[frame.isna().to_numpy()] != 0).all()
    assert (values[frame["o"].notna().to_numpy(), 7] != 0).all()
    if scoring == "reconstruction":
        np.testing.assert_allclose(values.sum(axis=1), -detector.score_samples(frame), rtol=1e-5)
    # A strange category is blamed on its own column (compared where the
    # column was observed: a missing entry also carries its share of the
    # row's missing-value correction).
    odd = frame[:20].copy()
    odd["o"] = "nowhere"
    blamed = detector.feature_contributions(odd).to_numpy()
    observed = frame["o"][:20].notna().to_numpy()
    assert observed.sum() >= 10
    assert (blamed[observed, 7] >= contributions.to_numpy()[:20][observed, 7] - 1e-6).all()


@pytest.mark.parametrize("scoring", ["elbo", "iwae", "reconstruction"])
def test_numeric_frame_scores_exactly_as_its_array(blobs, scoring):
    # Typing columns must not change the numbers for plain numeric tables.
    frame = pd.DataFrame(blobs, columns=list("abcd"))
    on_frame = VAEAnomalyDetector(**FAST, scoring=scoring).fit(frame)
    on_array = VAEAnomalyDetector(**FAST, scoring=scoring).fit(np.asarray(frame))
    np.testing.assert_array_equal(on_frame.score_samples(frame), on_array.score_samples(blobs))
    assert on_frame.module_.config() == on_array.module_.config()


def test_log_jacobian_counts_every_gaussian_entry_missing_ones_included():
    # Rescaling a column by 10 leaves the standardised model as it was and
    # lowers each row's density by log 10, also where the value is missing:
    # a missing entry is scored as its completion, in the same units.
    frame = mixed_frame()[["f", "i01", "c"]]
    assert frame["f"].isna().any()
    scaled = frame.assign(f=frame["f"] * 10.0)
    base = VAEAnomalyDetector(**FAST).fit(frame).score_samples(frame)
    moved = VAEAnomalyDetector(**FAST).fit(scaled).score_samples(scaled)
    np.testing.assert_allclose(moved - base, -np.log(10.0), atol=1e-3)
