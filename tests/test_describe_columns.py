"""Saying what was done: describe_columns() on both estimators, the table
``skvae detect`` prints, the report's table, and model files old and new."""

import io
import warnings

import numpy as np
import pandas as pd
import pytest

import skvae
from skvae import VAEAnomalyDetector, VAETransformer
from skvae._columns import ColumnSchema
from skvae.cli import main

from .conftest import FAST


def export(n=120, seed=0):
    """A small table as a spreadsheet exports it."""
    rng = np.random.RandomState(seed)
    price = rng.gamma(3.0, 500.0, n)
    frame = pd.DataFrame(
        {
            "order_id": np.arange(5001, 5001 + n),
            "price": [f"${v:,.2f}" for v in price],
            "ordered": (
                pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.randint(0, 365, n), "D")
            ).strftime("%d/%m/%Y"),
            "store": rng.choice(["north", "south", "east"], n),
            "weight": (price / 100 + rng.normal(0, 1, n)).round(2),
            "notes": None,
        }
    )
    frame.loc[::10, "weight"] = np.nan
    return frame


def fitted(Estimator, frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Estimator(**FAST).fit(frame)


@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
def test_every_column_is_described_with_how_it_was_read_and_modelled(Estimator):
    table = fitted(Estimator, export()).describe_columns()
    expected = pd.DataFrame(
        {
            "column": ["order_id", "price", "ordered", "store", "weight", "notes"],
            "read as": [
                "",
                "text -> number (thousands ',', currency '$')",
                "text -> date (%d/%m/%Y) -> days since 1970 + weekday",
                "category (3 levels)",
                "number",
                "",
            ],
            "modelled as": [
                "left out",
                "gaussian",
                "gaussian + categorical (7 levels)",
                "categorical (3 levels)",
                "gaussian",
                "left out",
            ],
            "missing": [0.0, 0.0, 0.0, 0.0, 0.1, 1.0],
            "left out because": [
                "integer sequence, one value per row: an identifier",
                "",
                "",
                "",
                "",
                "no values",
            ],
        }
    )
    pd.testing.assert_frame_equal(table.drop(columns="dtype"), expected)
    assert list(table["dtype"][:2]) == ["int64", str(export()["price"].dtype)]


def test_an_array_is_described_as_numbers():
    X = np.random.RandomState(0).normal(size=(50, 2))
    X[0, 1] = np.nan
    table = VAEAnomalyDetector(**FAST).fit(X).describe_columns()
    assert list(table["column"]) == ["x0", "x1"]
    assert list(table["read as"]) == ["number", "number"]
    assert list(table["missing"]) == [0.0, 0.02]


def test_a_typed_model_file_keeps_the_readings_and_scores_the_same():
    frame = export()
    detector = fitted(VAEAnomalyDetector, frame)
    buffer = io.BytesIO()
    detector.save(buffer)
    buffer.seek(0)
    loaded = skvae.load(buffer)
    pd.testing.assert_frame_equal(loaded.describe_columns(), detector.describe_columns())
    np.testing.assert_array_equal(loaded.score_samples(frame), detector.score_samples(frame))


def test_a_schema_saved_by_the_previous_version_still_loads():
    # What main wrote before readings existed: six keys, one entry per column.
    state = {
        "kinds": ["gaussian", "categorical", "bernoulli"],
        "categories": [None, ["x", "y"], None],
        "masked": [True, False, False],
        "dtypes": ["float64", "object", "bool"],
        "ordered": [False, False, False],
        "names": ["a", "c", "d"],
    }
    schema = ColumnSchema.from_dict(state)
    assert schema.to_dict() == state  # and written back byte for byte
    assert list(schema.describe()["read as"]) == ["number", "category (2 levels)", "yes/no"]
    with pytest.raises(ValueError, match="bad column reading"):
        ColumnSchema.from_dict(
            {**state, "readings": [None, {"read": "magic"}, None], "missing": [0.0, 0.0, 0.0]}
        )


def test_detect_prints_the_column_table_unless_quiet(tmp_path, capsys):
    export(300).to_csv(tmp_path / "orders.csv", index=False)
    args = ["detect", str(tmp_path / "orders.csv"), "--max-iter", "2"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # The file's reading line first, then the table of its columns.
    assert lines[0].startswith(f"read {tmp_path / 'orders.csv'}: 300 rows x 6 columns")
    assert lines[1] == "Columns (how each was read, and modelled):"
    price = next(line for line in lines if line.split()[:1] == ["price"])
    assert "text -> number (thousands ',', currency '$')" in price and "gaussian" in price
    # The forgotten id is named in the warning, and no explanation cites it.
    assert "left out column(s) order_id (integer sequence" in err
    assert "order_id=" not in out
    assert "read text column(s)" not in err  # the table said it
    assert main([*args, "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "Columns (how each" not in out
    assert "read text column(s) price (text -> number (thousands ',', currency '$'))" in err


def test_the_report_shows_how_each_column_was_read(tmp_path):
    pytest.importorskip("matplotlib")
    export(300).to_csv(tmp_path / "orders.csv", index=False)
    report = tmp_path / "report.html"
    args = ["detect", str(tmp_path / "orders.csv"), "--max-iter", "2", "--quiet"]
    assert main([*args, "--report", str(report)]) == 0
    page = report.read_text()
    columns = page[page.index('<div id="columns">') :]
    assert "text -&gt; number (thousands ',', currency '$')" in columns
    assert "integer sequence, one value per row: an identifier" in columns
