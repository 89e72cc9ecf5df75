"""The benchmark harness runs on any folder of npz files, without PyOD."""

import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def benchmarks():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import ablation
        import quality

        yield quality, ablation
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def quality(benchmarks):
    return benchmarks[0]


def _write_dataset(path, seed):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(size=(150, 3)), rng.normal(6.0, 1.0, size=(8, 3))])
    y = np.r_[np.zeros(150), np.ones(8)]
    np.savez(path, X=X, y=y)


def test_quality_harness_writes_csv_and_results(tmp_path, quality):
    data = tmp_path / "data"
    data.mkdir()
    _write_dataset(data / "2_second.npz", 1)
    _write_dataset(data / "10_tenth.npz", 2)
    out = tmp_path / "out"

    quality.main(
        ["--data", str(data), "--seeds", "0", "--detectors", "iforest", "skvae"]
        + ["--output", str(out)]
    )

    with open(out / "results" / "quality.csv") as handle:
        rows = list(csv.DictReader(handle))
    # Datasets in ADBench's numeric order; three skvae scorings share one fit.
    assert [r["dataset"] for r in rows[::4]] == ["second", "tenth"]
    assert {r["detector"] for r in rows} == {
        quality.DEFAULT_LABEL,
        "skvae iwae",
        "skvae reconstruction",
        "IsolationForest",
    }
    assert all(float(r["roc_auc"]) > 0.95 for r in rows)
    results = (out / "RESULTS.md").read_text()
    assert "| **mean** |" in results
    assert "--detectors iforest skvae" in results
    assert "Highest mean ROC-AUC of every detector" in results


def test_quality_harness_rejects_an_empty_folder(tmp_path, quality):
    with pytest.raises(SystemExit, match="No .npz files"):
        quality.main(["--data", str(tmp_path), "--detectors", "iforest"])


@pytest.fixture
def mixed_types():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import mixed_types

        yield mixed_types
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_mixed_table_is_built_as_documented(mixed_types):
    X = np.random.RandomState(0).normal(size=(1000, 6))
    frame = mixed_types.make_mixed(X, missing=0.1, seed=3)
    assert [str(t) for t in frame.dtypes] == ["float64", "category", "boolean"] * 2
    assert list(frame["x1"].cat.categories) == ["q0", "q1", "q2", "q3", "q4"]
    share = frame.isna().mean()
    assert ((share > 0.07) & (share < 0.13)).all()
    observed = frame["x0"].notna()
    np.testing.assert_array_equal(frame["x0"][observed], X[observed.to_numpy(), 0])
    # The seed draws the holes: same seed, same table.
    pd.testing.assert_frame_equal(frame, mixed_types.make_mixed(X, missing=0.1, seed=3))


@pytest.mark.slow
def test_mixed_types_benchmark_writes_its_own_section(tmp_path, mixed_types):
    data = tmp_path / "data"
    data.mkdir()
    _write_dataset(data / "3_small.npz", 0)
    out = tmp_path / "out"
    mixed_types.main(
        ["--data", str(data), "--datasets", "small", "--seeds", "0", "--output", str(out)]
    )
    with open(out / "results" / "mixed_types.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows] == mixed_types.METHODS
    assert all(0.0 <= float(r["roc_auc"]) <= 1.0 for r in rows)
    results = (out / "RESULTS.md").read_text()
    assert "## Mixed column types and missing values" in results
    assert "native beats one-hot + impute in ROC-AUC on" in results


def test_ablation_adds_its_section_beside_the_quality_one(tmp_path, benchmarks):
    quality, ablation = benchmarks
    data = tmp_path / "data"
    data.mkdir()
    _write_dataset(data / "1_only.npz", 3)
    out = tmp_path / "out"
    quality.main(["--data", str(data), "--detectors", "iforest", "--output", str(out)])
    ablation.main(
        ["--data", str(data), "--seeds", "0", "1", "--variants", "default", "trim 0"]
        + ["--output", str(out)]
    )

    with open(out / "results" / "ablation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["setting"], r["detector"], r["seed"]) for r in rows] == [
        (setting, label, seed)
        for setting in ("contaminated", "novelty")
        for label in ("default", "trim 0")
        for seed in ("0", "1")
    ]
    # Novelty: half of the 150 normal rows fit the model.
    assert {r["n_fit"] for r in rows if r["setting"] == "novelty"} == {"75"}
    results = (out / "RESULTS.md").read_text()
    # Both sections, quality first, whichever script ran last.
    assert results.index("## Detection quality") < results.index("## Ablation")
    assert "Mean ROC-AUC of the default for each seed" in results
