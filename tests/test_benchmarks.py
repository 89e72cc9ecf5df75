"""The benchmark harness runs on any folder of npz files, without PyOD; its protocol
(subsampling, the novelty split, the CPU cap, mean rank and worst dataset) on tiny inputs."""

import csv
import importlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def import_script():
    """Import a module of benchmarks/ by name, as the scripts import each other."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def benchmarks(import_script):
    return import_script("quality"), import_script("ablation")


@pytest.fixture
def quality(import_script):
    return import_script("quality")


@pytest.fixture
def harness(import_script):
    return import_script("_harness")


@pytest.fixture
def mixed_types(import_script):
    return import_script("mixed_types")


def _write_dataset(path, seed):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(size=(150, 3)), rng.normal(6.0, 1.0, size=(8, 3))])
    y = np.r_[np.zeros(150), np.ones(8)]
    np.savez(path, X=X, y=y)


def _one_dataset(tmp_path, file_name, seed):
    """A data folder holding one ``_write_dataset`` file, and an output folder."""
    data = tmp_path / "data"
    data.mkdir()
    _write_dataset(data / file_name, seed)
    return data, tmp_path / "out"


def _read(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_quality_harness_writes_both_settings_and_reruns_one_detector(tmp_path, quality):
    data = tmp_path / "data"
    data.mkdir()
    _write_dataset(data / "2_second.npz", 1)
    _write_dataset(data / "10_tenth.npz", 2)
    out = tmp_path / "out"
    common = ["--data", str(data), "--large", "--seeds", "0", "--output", str(out)]

    quality.main([*common, "--detectors", "iforest", "skvae", "skvae-novelty", "--cap", "0"])

    rows = _read(out / "results" / "quality.csv")
    # Setting, then datasets in ADBench's numeric order, then detector;
    # novelty=True runs in the novelty setting only.
    ours = {
        "contaminated": (quality.DEFAULT_LABEL,),
        "novelty": (quality.DEFAULT_LABEL, quality.NOVELTY_LABEL),
    }
    assert [(r["setting"], r["dataset"], r["detector"]) for r in rows] == [
        (setting, name, label)
        for setting in ("contaminated", "novelty")
        for name in ("second", "tenth")
        for label in (*ours[setting], "IsolationForest")
    ]
    assert all(float(r["roc_auc"]) > 0.95 and r["status"] == "ok" for r in rows)
    # Novelty: fitted on half of the 150 normal rows, scores the rest and the 8 anomalies.
    assert {(r["n_fit"], r["n_scored"]) for r in rows if r["setting"] == "novelty"} == {
        ("75", "83")
    }
    results = (out / "RESULTS.md").read_text()
    assert "#### ROC-AUC per dataset (novelty)" in results
    assert "--detectors iforest skvae" in results
    assert "Best mean rank: **" in results
    # Each setting's checks are about the skvae its users fit.
    assert f"({quality.NOVELTY_LABEL} " in results.split("Checks on these numbers (novelty)")[1]

    # Rerunning one detector replaces its rows only; the others are kept as stored.
    quality.main([*common, "--detectors", "iforest", "--settings", "novelty"])
    again = _read(out / "results" / "quality.csv")
    assert len(again) == len(rows)
    for before, after in zip(rows, again, strict=True):
        rerun = before["detector"] == "IsolationForest" and before["setting"] == "novelty"
        assert (before["run"] != after["run"]) == rerun
        assert before["roc_auc"] == after["roc_auc"]  # seeded: same numbers
    results = (out / "RESULTS.md").read_text()
    assert results.count("Run 20") == 2  # both runs described, each with its command
    assert "--detectors iforest --settings novelty" in results


def test_quality_harness_rejects_an_empty_folder(tmp_path, quality):
    with pytest.raises(SystemExit, match="No .npz files"):
        quality.main(["--data", str(tmp_path), "--detectors", "iforest"])


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
    data, out = _one_dataset(tmp_path, "3_small.npz", 0)
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


def test_mixed_novelty_fits_each_detector_on_the_clean_half(tmp_path, import_script, monkeypatch):
    from skvae import _training

    mixed_novelty = import_script("mixed_novelty")
    monkeypatch.setattr(_training, "BUDGET_STEPS", 30)  # a short budget keeps the test fast
    data, out = _one_dataset(tmp_path, "3_small.npz", 0)
    mixed_novelty.main(
        ["--data", str(data), "--datasets", "small", "--seeds", "0"]
        + ["--threads", "1", "--output", str(out)]
    )

    rows = _read(out / "results" / "mixed_novelty.csv")
    assert [r["method"] for r in rows] == list(mixed_novelty.METHODS)
    # The 8 far anomalies are found whatever the method.
    assert all(float(r["roc_auc"]) > 0.9 for r in rows)
    assert "## Novelty detection on mixed tables" in (out / "RESULTS.md").read_text()


def test_ablation_adds_its_section_beside_the_quality_one(tmp_path, benchmarks):
    quality, ablation = benchmarks
    data, out = _one_dataset(tmp_path, "1_only.npz", 3)
    quality.main(["--data", str(data), "--large", "--detectors", "iforest", "--output", str(out)])
    ablation.main(
        ["--data", str(data), "--seeds", "0", "1", "--variants", "default", "trim 0, budget 1000"]
        + ["--output", str(out)]
    )

    # A variant that moves a library constant leaves it as it found it.
    from skvae import _training

    assert _training.BUDGET_STEPS == ablation.LIBRARY_CONSTANTS["skvae._training", "BUDGET_STEPS"]
    with open(out / "results" / "ablation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["setting"], r["detector"], r["seed"]) for r in rows] == [
        (setting, label, seed)
        for setting in ("contaminated", "novelty")
        for label in ("default", "trim 0, budget 1000")
        for seed in ("0", "1")
    ]
    # Novelty: half of the 150 normal rows fit the model.
    assert {r["n_fit"] for r in rows if r["setting"] == "novelty"} == {"75"}
    results = (out / "RESULTS.md").read_text()
    # Both sections, quality first, whichever script ran last.
    assert results.index("## Detection quality") < results.index("## Ablation")
    assert "Mean ROC-AUC of the default for each seed" in results


def test_score_rules_scores_one_fit_by_every_rule_beside_the_peers(tmp_path, import_script):
    score_rules = import_script("score_rules")
    data, out = _one_dataset(tmp_path, "1_only.npz", 4)
    score_rules.main(["--data", str(data), "--large", "--seeds", "0", "--output", str(out)])

    rows = _read(out / "results" / "score_rules.csv")
    labels = [*score_rules.RULES, *score_rules.PAIR_RULES, "kNN (PyOD defaults)", "IsolationForest"]
    expected = [(setting, label) for setting in ("contaminated", "novelty") for label in labels]
    assert [(r["setting"], r["detector"]) for r in rows] == expected
    # The 8 anomalies sit 6 SDs away: every rule finds them in both settings.
    assert all(float(r["roc_auc"]) > 0.9 for r in rows)
    results = (out / "RESULTS.md").read_text()
    assert results.index("## Scoring rules") < results.index("### Novelty setting")

    # Rerunning one detector with --merge keeps every other detector's rows.
    score_rules.main(
        ["--data", str(data), "--large", "--seeds", "0", "--output", str(out)]
        + ["--detectors", "iforest", "--merge"]
    )
    merged = _read(out / "results" / "score_rules.csv")
    assert [(r["setting"], r["detector"]) for r in merged] == expected
    kept = [r for r in rows if r["detector"] != "IsolationForest"]
    assert [r for r in merged if r["detector"] != "IsolationForest"] == kept
    score_rules.main(["--output", str(out), "--report-only"])
    section = (out / "results" / "score_rules.md").read_text()
    assert "Run of skvae-rules, skvae-pair, knn:" in section
    assert "Run of iforest:" in section and "--merge" in section


def test_a_training_row_is_not_its_own_neighbour(import_script):
    score_rules = import_script("score_rules")
    X = np.array([[0.0], [1.0], [3.0], [6.0], [10.0], [15.0], [21.0]])
    neighbours = score_rules._Neighbours(X)
    # The 5th nearest other row of 0 is 15; counting itself it would be 10.
    assert neighbours.distance(X, training=True)[0] == 15.0
    assert neighbours.distance(X[:1])[0] == 10.0


def test_cross_conformal_power_runs_each_share_and_restores_the_library(
    tmp_path, import_script, monkeypatch
):
    from skvae import _anomaly, _training

    power = import_script("cross_conformal_power")
    monkeypatch.setattr(_training, "BUDGET_STEPS", 30)  # a short budget keeps the test fast
    monkeypatch.setattr(_anomaly, "CROSS_CONFORMAL_MAX_ROWS", 2000)  # conftest turns it off
    data, out = _one_dataset(tmp_path, "1_only.npz", 5)
    power.main(
        ["--data", str(data), "--shares", "1.0", "0.5", "--seeds", "0"] + ["--output", str(out)]
    )

    rows = _read(out / "results" / "cross_conformal_power.csv")
    assert [(r["share"], r["n_fit"]) for r in rows] == [("1.0", "75"), ("0.5", "75")]
    for row in rows:
        assert 0.0 <= float(row["normal_p_le_0_05"]) <= float(row["normal_p_le_0_1"]) <= 1.0
        assert float(row["roc_auc_pvalues"]) > 0.9  # the 8 anomalies sit 6 SDs away
    assert _anomaly.CROSS_CONFORMAL_BUDGET_SHARE == 1.0
    assert "## Cross-conformal p-values" in (out / "RESULTS.md").read_text()


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


def test_fit_time_times_each_fit_per_table_without_pyod(tmp_path, import_script, monkeypatch):
    from skvae import _training

    fit_time = import_script("fit_time")
    monkeypatch.setattr(_training, "BUDGET_STEPS", 30)  # a short budget keeps the test fast
    data, out = _one_dataset(tmp_path, "1_only.npz", 6)
    detectors = ["skvae", "skvae, split calibration"]
    fit_time.main(
        ["--data", str(data), "--large", "--detectors", *detectors]
        + ["--output", str(out), "--threads", "1"]
    )

    rows = _read(out / "results" / "fit_time.csv")
    assert [(r["setting"], r["n_fit"], r["detector"]) for r in rows] == [
        (setting, n_fit, label)
        for setting, n_fit in (("contaminated", "158"), ("novelty", "75"))
        for label in detectors
    ]
    assert all(float(r["wall_s"]) > 0 and float(r["cpu_s"]) >= 0 for r in rows)
    assert "## Fit time at the defaults" in (out / "RESULTS.md").read_text()


def test_fit_time_report_sums_the_tables_and_judges_the_target(import_script):
    fit_time = import_script("fit_time")
    labels = ["skvae", "PyOD VAE"]
    walls = {"a": (1.0, 30.0), "b": (2.0, 4.0)}  # 30x on a, 2x on b; 34 / 3 = 11.3x summed
    rows = [
        dict(setting="novelty", dataset=name, n_fit=100, detector=label, seed=0, wall_s=wall)
        for name, pair in walls.items()
        for label, wall in zip(labels, pair, strict=True)
    ]
    text = fit_time.report(rows, labels, [], 2)
    assert "| a | 100 | 1.00 | 30.00 | 30.0x |" in text
    assert "| **sum** |  | **3.0** | **34.0** | **11.3x** |" in text
    assert "takes 11.3x skvae's default fit (target 10x: holds); 1 of 2 tables" in text
    rows[-1]["wall_s"] = 40.0  # b: 20x; summed 70 / 3
    assert "2 of 2 tables" in fit_time.report(rows, labels, [], 2)
    rows[1]["wall_s"] = 3.0  # a: 3x; summed 43 / 3 = 14.3x, still only 1 table at 10x
    assert "14.3x" in fit_time.report(rows, labels, [], 2)


def test_novelty_speed_times_both_fits_and_keeps_the_neighbour_rows(
    tmp_path, import_script, monkeypatch
):
    from skvae import _training

    novelty_speed = import_script("novelty_speed")
    monkeypatch.setattr(_training, "BUDGET_STEPS", 30)  # a short budget keeps the test fast
    out = tmp_path / "out"
    novelty_speed.main(
        ["--max-rows", "20000", "--score-rows", "2000", "--threads", "1", "--output", str(out)]
    )

    rows = _read(out / "results" / "novelty_speed.csv")
    assert [(r["table"], r["novelty"], r["neighbor_rows"]) for r in rows] == [
        ("20,000 x 10", "False", "0"),
        ("20,000 x 10", "True", "10000"),
    ]
    assert all(float(r["fit_s"]) > 0 and float(r["score_rows_per_s"]) > 0 for r in rows)
    assert "## What novelty=True costs" in (out / "RESULTS.md").read_text()
