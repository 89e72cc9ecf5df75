"""The benchmark harness runs on any folder of npz files, without PyOD."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def quality():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import quality

        yield quality
    finally:
        sys.path.remove(str(BENCHMARKS))


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
