"""Typing a messy table: numbers written as text, dates, forgotten ids and
many-level categories are read as what they are, and column_types wins.

Each test builds the kind of table a spreadsheet or database export gives
and checks where the planted outlier ranks, or the exact warning."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from skvae import VAEAnomalyDetector
from skvae._columns import infer_schema
from skvae._typing import MAX_LEVELS, OTHER, TypingNote

from .conftest import FAST

SETTINGS = {**FAST, "max_iter": 60}


def rank_of(scores, row):
    """1 for the lowest (most anomalous) score."""
    return int(np.sum(scores <= scores[row]))


def fit_quietly(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return VAEAnomalyDetector(**{**SETTINGS, **params}).fit(X)


def penguins(n=344, seed=0):
    """Body mass as an export writes it: "3,750", linked to flipper length."""
    rng = np.random.RandomState(seed)
    flipper = rng.normal(200, 14, n)
    mass = 50 * flipper - 6000 + rng.normal(0, 250, n)
    return pd.DataFrame(
        {
            "species": rng.choice(["Adelie", "Gentoo", "Chinstrap"], n),
            "flipper_length_mm": flipper.round(),
            "body_mass_g": [f"{v:,.0f}" for v in np.round(mass, -1)],
        }
    )


def test_thousands_separators_are_numbers_and_the_planted_mass_ranks_first():
    frame = penguins()
    frame.loc[10, "body_mass_g"] = "60,000"
    detector = fit_quietly(frame)
    assert detector.column_schema_.kinds == ["categorical", "gaussian", "gaussian"]
    assert rank_of(detector.score_samples(frame), 10) <= 3
    read_as = detector.describe_columns().set_index("column")["read as"]
    assert read_as["body_mass_g"] == "text -> number (thousands ',')"


def test_currency_is_parsed_and_a_planted_million_ranks_first():
    rng = np.random.RandomState(1)
    n = 442
    amount = rng.gamma(4.0, 400.0, n)
    frame = pd.DataFrame(
        {
            "amount": [f"${v:,.2f}" for v in amount],
            "items": rng.poisson(amount / 200) + 1,
            "store": rng.choice(["north", "south"], n),
        }
    )
    frame.loc[200, "amount"] = "$1,250,000.00"
    detector = fit_quietly(frame)
    assert rank_of(detector.score_samples(frame), 200) <= 3
    assert detector.column_schema_.readings[0]["currency"] == "$"


@pytest.mark.parametrize(
    "texts, expected",
    [
        (["3,750", "60,000", "1,234,567"], [3750, 60000, 1234567]),
        (["$1,658.08", "$ 12.50", "-$3.00"], [1658.08, 12.5, -3.0]),
        (["€ 1.234,50", "€ 99,00", "€ 0,5"], [1234.5, 99.0, 0.5]),
        (["12%", " 7.5% ", "100%"], [12, 7.5, 100]),
        ([" 7 ", "8", "  9"], [7, 8, 9]),
        (["1,5", "2,25", "3"], [1.5, 2.25, 3.0]),
        (["(1,234)", "1,000", "-"], [-1234, 1000, np.nan]),
        (["1 234,5", "12 000,0", "7,0"], [1234.5, 12000, 7.0]),
    ],
)
def test_numbers_in_disguise_are_read_as_their_values(texts, expected):
    frame = pd.DataFrame({"value": texts * 4, "other": np.arange(12.0)})
    schema = infer_schema(frame)
    assert schema.readings[0]["read"] == "text number"
    np.testing.assert_allclose(schema.encode(frame)[:3, 0], expected)


def test_codes_with_leading_zeros_stay_text():
    frame = pd.DataFrame({"zip": ["02134", "10001", "02139"] * 4})
    schema = infer_schema(frame)
    assert schema.kinds == ["categorical"] and schema.readings is None


def test_a_value_the_learned_rule_cannot_read_is_a_clear_error_at_scoring_time():
    frame = penguins()
    detector = fit_quietly(frame)
    new = frame.iloc[:3].copy()
    new.loc[1, "body_mass_g"] = "about 4 kg"
    message = (
        "Column 'body_mass_g' holds 'about 4 kg' (1 value(s) like it), which does not read "
        "as a number the way fit read this column (text -> number (thousands ',')); "
        "correct it or leave it empty (a missing value)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        detector.score_samples(new)
    # A currency fit never saw is not silently read as one it did.
    euros = frame.iloc[:3].assign(body_mass_g="€4,000")
    with pytest.raises(ValueError, match="holds '€4,000'"):
        detector.score_samples(euros)
    # Empty cells and "n/a" are missing values, not errors.
    gaps = frame.iloc[:3].assign(body_mass_g=["n/a", None, "4,100"])
    assert np.isfinite(detector.score_samples(gaps)).all()


def visits(n=800, seed=2, start="2014-01-01"):
    """A visit log with its date written as text, one level per day."""
    rng = np.random.RandomState(seed)
    days = pd.Timestamp(start) + pd.to_timedelta(rng.randint(0, 730, n), unit="D")
    duration = rng.gamma(3.0, 10.0, n)
    return pd.DataFrame(
        {
            "date": days.strftime("%Y-%m-%d"),
            "minutes": duration.round(1),
            "pages": (duration / 3 + rng.normal(0, 1, n)).round(1),
        }
    )


def test_a_date_as_text_is_days_and_weekday_not_a_category_per_date():
    frame = visits()
    detector = fit_quietly(frame)
    schema = detector.column_schema_
    assert schema.kinds == ["gaussian", "categorical", "gaussian", "gaussian"]
    assert max(len(c) for c in schema.categories if c is not None) == 7
    assert detector.describe_columns().loc[0, "read as"] == (
        "text -> date (%Y-%m-%d) -> days since 1970 + weekday"
    )
    # Rows from the month after training, with typical values, are flagged
    # about as often as new rows from the training period (as one category
    # per date, every unseen date was the least likely category).
    same_period = visits(n=300, seed=3)
    later = same_period.assign(
        date=(pd.Timestamp("2016-01-01") + pd.to_timedelta(np.arange(300) % 30, "D")).strftime(
            "%Y-%m-%d"
        )
    )
    flagged = np.mean(detector.predict(same_period) == -1)
    assert np.mean(detector.predict(later) == -1) < flagged + 0.1
    # Explanations name the date column, never a day.
    assert list(detector.feature_contributions(frame.iloc[:2]).columns) == [
        "date",
        "minutes",
        "pages",
    ]


def test_a_datetime64_column_fits_and_a_date_a_century_off_ranks_first():
    frame = visits()
    frame["date"] = pd.to_datetime(frame["date"]) + pd.to_timedelta(
        np.random.RandomState(0).randint(0, 24, len(frame)), unit="h"
    )
    frame.loc[5, "date"] = pd.Timestamp("1915-06-01")
    detector = fit_quietly(frame)
    assert detector.describe_columns().loc[0, "read as"] == (
        "datetime -> days since 1970 + weekday, hour"
    )
    assert rank_of(detector.score_samples(frame), 5) <= 3
    # A date that does not parse at scoring time is an error naming it.
    text = visits().iloc[:4]
    text.loc[2, "date"] = "2014-02-30"
    date_detector = fit_quietly(visits())
    with pytest.raises(ValueError, match="holds '2014-02-30'.*format fit read this column in"):
        date_detector.score_samples(text)


def cars(n=300, seed=4):
    rng = np.random.RandomState(seed)
    power = rng.normal(120, 30, n)
    return pd.DataFrame(
        {
            "car_id": np.arange(1, n + 1),
            "power": power,
            "weight": 8 * power + 300 + rng.normal(0, 60, n),
            "plate": [f"C-{i:05d}" for i in rng.permutation(n)],
        }
    )


def test_a_forgotten_id_column_is_left_out_with_a_warning_naming_it():
    frame = cars()
    frame.loc[17, "weight"] = 4000.0
    with pytest.warns(UserWarning) as caught:
        detector = VAEAnomalyDetector(**SETTINGS).fit(frame)
    messages = [str(w.message) for w in caught if w.category is UserWarning]
    assert messages == [
        "left out column(s) car_id (integer sequence, one value per row: an identifier); "
        "plate (text with 300 distinct values in 300 rows: an identifier or free text); "
        "declare a column's kind in column_types to model it"
    ]
    # The warning points at this file, not inside skvae or scikit-learn.
    assert caught[0].filename == __file__
    contributions = detector.feature_contributions(frame)
    assert list(contributions.columns) == ["power", "weight"]
    assert rank_of(detector.score_samples(frame), 17) <= 3
    # Still the table the detector was fitted on: scoring needs every column.
    with pytest.raises(ValueError):
        detector.score_samples(frame.drop(columns="car_id"))


def test_many_levels_keep_the_most_frequent_and_share_one_other_level():
    rng = np.random.RandomState(5)
    n = 5000
    # 1,461 product codes, the first ten common: a category with very many levels.
    codes = np.where(rng.rand(n) < 0.5, rng.randint(0, 10, n), rng.randint(0, 1461, n))
    frame = pd.DataFrame({"product": [f"P{c:04d}" for c in codes], "price": rng.gamma(2, 10, n)})
    schema = infer_schema(frame)
    levels = schema.categories[0]
    assert len(levels) == MAX_LEVELS + 1 and levels[-1] == OTHER
    assert {f"P{c:04d}" for c in range(10)} <= set(levels)
    assert schema.describe().loc[0, "read as"] == (
        f"category ({frame['product'].nunique()} levels, the {MAX_LEVELS} most frequent kept)"
    )
    rare = next(f"P{c:04d}" for c in range(1460, 0, -1) if f"P{c:04d}" not in levels)
    new = pd.DataFrame({"product": ["P0003", rare, "P9999", None], "price": 1.0})
    np.testing.assert_array_equal(schema.encode(new)[:, 0], [3, MAX_LEVELS, MAX_LEVELS, np.nan])


def test_column_types_win_over_every_rule():
    frame = cars(60)
    frame["mass"] = [f"{v:,.0f}" for v in frame["weight"] * 10]
    frame["day"] = pd.date_range("2020-01-01", periods=60).strftime("%d/%m/%Y")
    frame["when"] = pd.date_range("2020-01-01", periods=60, freq="h")
    declared = {
        "car_id": "gaussian",
        "mass": "categorical",
        "day": "categorical",
        "when": "gaussian",
        "power": "ignore",
        "plate": "categorical",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left out or retyped unasked
        schema = infer_schema(frame, declared)
    table = schema.describe().set_index("column")
    assert table.loc["car_id", "modelled as"] == "gaussian"
    assert table.loc["mass", "modelled as"] == "categorical (60 levels)"
    assert table.loc["day", "modelled as"] == "categorical (60 levels)"
    assert table.loc["when", "modelled as"] == "gaussian"  # days, no parts
    assert table.loc["power", "left out because"] == "declared 'ignore' in column_types"
    assert table.loc["plate", "modelled as"] == "categorical (60 levels)"
    # Text dates declared as such parse; text that is not dates is a clear error.
    assert infer_schema(frame[["day"]], {"day": "datetime"}).readings[0]["format"] == "%d/%m/%Y"
    with pytest.raises(ValueError, match="declares column 'plate' 'datetime'"):
        infer_schema(frame[["plate"]], {"plate": "datetime"})
    with pytest.raises(ValueError, match="'datetime' and 'ignore' apply to DataFrame columns"):
        infer_schema(np.zeros((3, 2)), {0: "ignore"})


def test_text_read_as_numbers_or_dates_is_said_once():
    frame = visits(100)
    frame["minutes"] = frame["minutes"].map("{:,.1f}".format)
    with pytest.warns(TypingNote, match=r"read text column\(s\) date \(text -> date") as caught:
        infer_schema(frame)
    assert len(caught) == 1 and "minutes (text -> number)" in str(caught[0].message)


def test_an_array_scores_by_position_under_a_typed_frames_rules():
    frame = cars(120)
    detector = fit_quietly(frame.drop(columns="plate"))
    as_array = frame.drop(columns="plate").to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(
        detector.score_samples(as_array), detector.score_samples(frame.drop(columns="plate"))
    )
