"""Dask: dask-ml's wrappers, the joblib backend and skvae.dask on a real
LocalCluster (worker processes on loopback), against the same work in-process."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV

from skvae import VAEAnomalyDetector, VAETransformer

from .conftest import FAST

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
skvae_dask = pytest.importorskip("skvae.dask")

pytestmark = pytest.mark.slow

N_ROWS, N_BLOCKS = 800, 4


@pytest.fixture(scope="module")
def client():
    # One cluster for the module: starting worker processes that import torch
    # is the slow part.
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            death_timeout=120,
        ) as cluster,
        distributed.Client(cluster, timeout=120) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(N_ROWS - 4, 4)), rng.normal(loc=8.0, size=(4, 4))])
    frame = pd.DataFrame(X, columns=list("abcd"), index=np.arange(N_ROWS) * 10)
    return X, frame


def _in_process_stream(estimator, batches):
    for batch in batches:
        estimator.partial_fit(batch)
    return estimator


def test_incremental_over_a_dask_array_equals_partial_fit_in_process(client, data):
    X, _ = data
    blocks = da.from_array(X, chunks=(N_ROWS // N_BLOCKS, 4))
    wrapped = dask_ml_wrappers.Incremental(VAEAnomalyDetector(**FAST), shuffle_blocks=False)
    wrapped.fit(blocks)
    local = _in_process_stream(VAEAnomalyDetector(**FAST), np.array_split(X, N_BLOCKS))
    assert wrapped.estimator_.n_iter_ == N_BLOCKS
    np.testing.assert_allclose(
        wrapped.estimator_.score_samples(X), local.score_samples(X), rtol=1e-6
    )
    assert wrapped.estimator_.offset_ == pytest.approx(local.offset_, rel=1e-6)


def test_parallel_post_fit_predicts_and_transforms_a_dask_dataframe(client, data):
    X, frame = data
    frames = dd.from_pandas(frame, npartitions=N_BLOCKS)
    detector = VAEAnomalyDetector(**FAST).fit(frame)
    labels = dask_ml_wrappers.ParallelPostFit(detector).predict(frames).compute()
    np.testing.assert_array_equal(labels, detector.predict(frame))
    assert (labels[-4:] == -1).all()
    vae = VAETransformer(**FAST).fit(frame)
    latent = dask_ml_wrappers.ParallelPostFit(vae).transform(frames).compute()
    np.testing.assert_allclose(latent, vae.transform(frame), rtol=1e-6)


def test_scores_of_a_dask_dataframe_keep_its_index(client, data):
    _, frame = data
    frames = dd.from_pandas(frame, npartitions=N_BLOCKS)
    detector = VAEAnomalyDetector(**FAST).fit(frame)
    for function in ("score_samples", "decision_function", "predict"):
        result = getattr(skvae_dask, function)(detector, frames).compute()
        assert isinstance(result, pd.Series)
        pd.testing.assert_index_equal(result.index, frame.index)
        np.testing.assert_allclose(result.to_numpy(), getattr(detector, function)(frame), rtol=1e-6)
    vae = VAETransformer(**FAST).fit(frame)
    latent = skvae_dask.transform(vae, frames).compute()
    assert list(latent.columns) == ["vaetransformer0", "vaetransformer1"]
    np.testing.assert_allclose(latent.to_numpy(), vae.transform(frame), rtol=1e-6)


def test_scores_of_a_dask_array_equal_in_process(client, data):
    X, _ = data
    blocks = da.from_array(X, chunks=(N_ROWS // N_BLOCKS, 2))  # split columns too
    detector = VAEAnomalyDetector(**FAST).fit(X)
    scores = skvae_dask.score_samples(detector, blocks).compute()
    np.testing.assert_allclose(scores, detector.score_samples(X), rtol=1e-6)
    vae = VAETransformer(**FAST).fit(X)
    np.testing.assert_allclose(
        skvae_dask.transform(vae, blocks).compute(), vae.transform(X), rtol=1e-6
    )


@pytest.mark.parametrize("kind", ["array", "frame"])
def test_partial_fit_blocks_equals_partial_fit_in_process(client, data, kind):
    X, frame = data
    if kind == "array":
        collection = da.from_array(X, chunks=(N_ROWS // N_BLOCKS, 4))
        batches = np.array_split(X, N_BLOCKS)
    else:
        collection = dd.from_pandas(frame, npartitions=N_BLOCKS)
        batches = [frame.iloc[i * 200 : (i + 1) * 200] for i in range(N_BLOCKS)]
    untouched = VAEAnomalyDetector(**FAST)
    trained = skvae_dask.partial_fit_blocks(untouched, collection, random_state=0)
    order = np.random.RandomState(0).permutation(N_BLOCKS)
    local = _in_process_stream(VAEAnomalyDetector(**FAST), [batches[i] for i in order])
    assert not hasattr(untouched, "module_")
    assert trained.n_iter_ == N_BLOCKS
    rows = X if kind == "array" else frame
    np.testing.assert_allclose(trained.score_samples(rows), local.score_samples(rows), rtol=1e-6)
    # A second epoch continues the model.
    again = skvae_dask.partial_fit_blocks(trained, collection, random_state=1)
    assert again.n_iter_ == 2 * N_BLOCKS


def test_grid_search_on_the_dask_joblib_backend_equals_in_process(client, data):
    import joblib

    X, _ = data
    grid = {"n_components": [1, 2], "beta": [0.5, 1.0]}
    estimator = VAETransformer(**{**FAST, "max_iter": 5})
    with joblib.parallel_backend("dask"):
        on_cluster = GridSearchCV(estimator, grid, cv=2, n_jobs=-1).fit(X)
    in_process = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(X)
    np.testing.assert_allclose(
        on_cluster.cv_results_["mean_test_score"],
        in_process.cv_results_["mean_test_score"],
        rtol=1e-6,
    )
    assert on_cluster.best_params_ == in_process.best_params_


def test_non_dask_input_is_refused_clearly(data):
    X, _ = data
    detector = VAEAnomalyDetector(**FAST).fit(X)
    with pytest.raises(TypeError, match="Dask array or DataFrame, got ndarray"):
        skvae_dask.score_samples(detector, X)


def test_skvae_imports_without_dask():
    code = "import skvae, sys; assert not any(m.startswith('dask') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_scaling_benchmark_runs_end_to_end(tmp_path):
    """benchmarks/dask_scale.py on a few thousand rows (its own cluster)."""
    from pathlib import Path

    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(benchmarks))
    try:
        import dask_scale
    finally:
        sys.path.remove(str(benchmarks))
    arguments = ["--rows", "4000", "--partitions", "4", "--features", "5", "--batch-size", "256"]
    dask_scale.main([*arguments, "--compare-incremental", "--output", str(tmp_path)])
    text = (tmp_path / "results" / "dask_incremental.md").read_text()
    for step in ("write Parquet", "train: partial_fit_blocks", "score: decision_function"):
        assert f"| {step}" in text
    assert "| train: dask-ml Incremental" in text
    assert "4,000 |" in text and "injected outliers" in text
    assert "Scaling out on Dask" in (tmp_path / "RESULTS.md").read_text()
