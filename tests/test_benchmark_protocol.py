"""The benchmark protocol: subsampling, the novelty split, the CPU cap and
the summary (mean rank, worst dataset), on tiny inputs."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def harness():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _harness

        yield _harness
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_subsample_follows_the_shared_rule(harness):
    y = np.r_[np.zeros(900, dtype=int), np.ones(100, dtype=int)]
    np.random.RandomState(5).shuffle(y)
    X = np.arange(1000.0)[:, None]
    X_small, y_small = harness.subsample(X, y, max_rows=301)

    rng = np.random.RandomState(0)
    anomalies = rng.choice(np.flatnonzero(y == 1), 30, replace=False)  # round(301 * 0.1)
    normals = rng.choice(np.flatnonzero(y == 0), 271, replace=False)
    expected = np.sort(np.concatenate([anomalies, normals]))
    np.testing.assert_array_equal(X_small[:, 0], expected)
    np.testing.assert_array_equal(y_small, y[expected])
    # Small enough already: untouched.
    X_same, y_same = harness.subsample(X, y, max_rows=1000)
    assert X_same is X and y_same is y


def test_novelty_split_fits_on_half_the_normal_rows(harness):
    y = np.r_[np.zeros(101, dtype=int), np.ones(9, dtype=int)]
    np.random.RandomState(1).shuffle(y)
    fit, score = harness.setting_split("novelty", y)
    assert len(fit) == 50 and (y[fit] == 0).all()
    assert np.intersect1d(fit, score).size == 0
    np.testing.assert_array_equal(np.sort(np.r_[fit, score]), np.arange(110))
    assert y[score].sum() == 9
    # Seed 0 by default: the same split every time; another seed, another split.
    np.testing.assert_array_equal(harness.setting_split("novelty", y)[0], fit)
    assert not np.array_equal(harness.setting_split("novelty", y, seed=1)[0], fit)
    every, same = harness.setting_split("contaminated", y)
    np.testing.assert_array_equal(every, np.arange(110))
    np.testing.assert_array_equal(same, every)
    with pytest.raises(ValueError, match="setting must be one of"):
        harness.setting_split("semi", y)


def test_rank_summary_ranks_per_dataset_and_finds_the_worst(harness):
    auc = {"a": {"x": 0.9, "y": 0.8, "z": 0.8}, "b": {"x": 0.6, "y": 0.7, "z": 0.5}}
    table = {
        (name, label): dict(
            roc_auc=v,
            average_precision=v / 2,
            fit_s=1.0,
            score_s=0.5,
            fit_cpu_s=0.8,
            score_cpu_s=0.1,
        )
        for name, values in auc.items()
        for label, v in values.items()
    }
    names, summary = harness.rank_summary(["a", "b"], ["x", "y", "z"], table)
    assert names == ["a", "b"]
    # a: x 1, y and z tie for 2-3 (2.5 each); b: y 1, x 2, z 3.
    assert summary["x"]["rank"] == pytest.approx(1.5)
    assert summary["y"]["rank"] == pytest.approx(1.75)
    assert summary["z"]["rank"] == pytest.approx(2.75)
    assert summary["x"]["roc_auc"] == pytest.approx(0.75)
    assert summary["z"]["average_precision"] == pytest.approx(0.325)
    assert (summary["x"]["worst"], summary["x"]["worst_roc_auc"]) == ("b", 0.6)
    assert summary["y"]["seconds"] == pytest.approx(1.5)
    assert summary["y"]["cpu_s"] == pytest.approx(0.9)
    assert summary["y"]["total_fit_cpu_s"] == pytest.approx(1.6)
    # A dataset some detector has not finished is left out for every detector.
    del table["b", "z"]
    names, summary = harness.rank_summary(["a", "b"], ["x", "y", "z"], table)
    assert names == ["a"] and summary["x"]["rank"] == 1.0


class _Spin:
    def fit(self, X):
        while True:
            pass


class _Broken:
    def fit(self, X):
        raise RuntimeError("cannot fit this")


def _dataset():
    rng = np.random.RandomState(0)
    y = (np.arange(60) < 6).astype(int)
    return ("tiny", rng.normal(size=(60, 2)) + 3 * y[:, None], y)


def test_a_fit_past_the_cpu_cap_or_failing_scores_chance(harness):
    def detector(key, model):
        return harness.Detector(
            key,
            lambda X, seed: model.fit(X),
            {key: lambda m, X: np.zeros(len(X))},
            seeded=False,
        )

    harness.set_threads(1)  # imports torch here, not in each worker under the cap
    rows = harness.run(
        [_dataset()],
        [detector("spin", _Spin()), detector("broken", _Broken())],
        seeds=[0],
        n_jobs=2,
        settings=("contaminated", "novelty"),
        cpu_cap_s=1,
        warm_up=False,  # the spinning one would spin here, uncapped
    )
    by = {(r["setting"], r["detector"]): r for r in rows}
    assert "over the 1 s CPU cap" in by["contaminated", "spin"]["status"]
    assert by["novelty", "broken"]["status"] == "failed: RuntimeError: cannot fit this"
    for row in rows:
        assert row["roc_auc"] == 0.5
        # The anomaly rate of the rows scored: 6 of 60, or 6 of the 33 novelty rows.
        expected = 0.1 if row["setting"] == "contaminated" else round(6 / 33, 4)
        assert row["average_precision"] == pytest.approx(expected)
