"""Score and train skvae estimators on Dask collections, block by block.

Needs the optional ``dask`` extra (``pip install "skvae[dask]"``): dask,
distributed and dask-ml. skvae itself never imports this module.

What already works without it: ``dask_ml.wrappers.Incremental`` trains
with ``partial_fit`` over the blocks of a Dask array, and
``dask_ml.wrappers.ParallelPostFit`` maps ``predict`` and ``transform`` over
the blocks of Dask arrays and DataFrames; ``joblib.parallel_backend("dask")``
runs ``GridSearchCV`` on the cluster. Fitted estimators travel to the
workers by pickling (the network is moved to the CPU for that).

Why this module calls Dask directly for the rest (dask-ml 2025.1.0):

- ``ParallelPostFit`` maps only ``predict``, ``predict_proba`` and
  ``transform``; it has no ``score_samples`` or ``decision_function``, which
  are what an outlier detector is for. Its results on a DataFrame are Dask
  arrays that have lost the DataFrame's index and column names.
  :func:`score_samples`, :func:`decision_function`, :func:`predict` and
  :func:`transform` keep both.
- ``Incremental`` builds one graph that chains ``partial_fit`` over every
  block. The tasks that load the blocks are free to run as soon as a worker
  thread is, while training consumes the blocks one at a time, so on data
  larger than the cluster's memory loaded blocks pile up in worker memory
  (and spill or pause the workers). Measured (benchmarks/RESULTS.md): over
  15 Parquet partitions of 250,000 rows, ``Incremental`` held all 15 in
  worker memory at once (286 MiB), :func:`partial_fit_blocks` at most 2
  (38 MiB), at the same training speed; it keeps at most ``read_ahead + 1``
  blocks in flight.

The model goes into each graph once, as a single key: the workers fetch it
once, not once per block.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd


def _dask():
    try:
        import dask
        import dask.array as da
        import dask.dataframe as dd
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "skvae.dask needs Dask: pip install 'skvae[dask]' (dask, distributed, dask-ml)."
        ) from error
    return dask, da, dd


def _call(block, model, method):
    return getattr(model, method)(block)


def _call_frame(partition, model, method, name):
    return pd.Series(_call(partition, model, method), index=partition.index, name=name)


def _transform_frame(partition, model, columns):
    return pd.DataFrame(
        _call(partition, model, "transform"), index=partition.index, columns=columns
    )


def _per_row(estimator, X, method):
    """``estimator.method`` of every block of X: a Dask array for an array, a
    Dask Series with X's index for a DataFrame."""
    dask, da, dd = _dask()
    model = dask.delayed(estimator, pure=True)
    dtype = int if method == "predict" else np.float64
    if isinstance(X, da.Array):
        X = X.rechunk({1: -1})
        return X.map_blocks(
            _call, model, method, drop_axis=1, dtype=dtype, meta=np.empty((0,), dtype=dtype)
        )
    if isinstance(X, dd.DataFrame):
        meta = pd.Series(np.empty((0,), dtype=dtype), name=method)
        return X.map_partitions(_call_frame, model, method, method, meta=meta)
    raise TypeError(f"X must be a Dask array or DataFrame, got {type(X).__name__}.")


def score_samples(estimator, X):
    """``estimator.score_samples`` of each row of a Dask array or DataFrame.

    Parameters
    ----------
    estimator : fitted VAEAnomalyDetector or VAETransformer
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame

    Returns
    -------
    scores : dask.array.Array of shape (n_samples,) or dask.dataframe.Series
        Lazy; a Series keeps X's index. Higher is more normal.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from skvae import VAEAnomalyDetector
    >>> from skvae import dask as skvae_dask
    >>> X = np.random.RandomState(0).normal(size=(400, 3))
    >>> detector = VAEAnomalyDetector(max_iter=5, random_state=0).fit(X)
    >>> scores = skvae_dask.score_samples(detector, da.from_array(X, chunks=(100, 3)))
    >>> bool(np.allclose(scores.compute(), detector.score_samples(X)))
    True
    """
    return _per_row(estimator, X, "score_samples")


def decision_function(estimator, X):
    """``estimator.decision_function`` of each row, as :func:`score_samples`."""
    return _per_row(estimator, X, "decision_function")


def predict(estimator, X):
    """``estimator.predict`` (+1 inlier, -1 outlier) of each row, as
    :func:`score_samples`."""
    return _per_row(estimator, X, "predict")


def transform(estimator, X):
    """``estimator.transform`` of each row: a Dask array of shape
    (n_samples, n_components), or a Dask DataFrame with X's index and the
    columns ``estimator.get_feature_names_out()``."""
    dask, da, dd = _dask()
    model = dask.delayed(estimator, pure=True)
    n_out = estimator.n_components
    if isinstance(X, da.Array):
        X = X.rechunk({1: -1})
        return X.map_blocks(
            _call,
            model,
            "transform",
            chunks=(X.chunks[0], (n_out,)),
            dtype=np.float64,
            meta=np.empty((0, 0)),
        )
    if isinstance(X, dd.DataFrame):
        columns = list(estimator.get_feature_names_out())
        meta = pd.DataFrame(np.empty((0, n_out)), columns=columns)
        return X.map_partitions(_transform_frame, model, columns, meta=meta)
    raise TypeError(f"X must be a Dask array or DataFrame, got {type(X).__name__}.")


def _blocks(X):
    _, da, dd = _dask()
    if isinstance(X, da.Array):
        return list(X.rechunk({1: -1}).to_delayed().ravel())
    if isinstance(X, dd.DataFrame):
        return list(X.to_delayed())
    raise TypeError(f"X must be a Dask array or DataFrame, got {type(X).__name__}.")


def _partial_fit(model, block):
    return model.partial_fit(block)


def partial_fit_blocks(
    estimator, X, *, shuffle_blocks=True, random_state=None, read_ahead=1, client=None
):
    """Train ``estimator`` with ``partial_fit`` on each block of X in turn, on
    the workers, loading at most ``read_ahead + 1`` blocks at a time.

    Each step runs on a worker (where its block is) and hands the updated
    model, pickled, to the next step: the data never comes to the client,
    and memory stays bounded by the blocks in flight whatever the size of X.
    One call is one epoch; call again for more. The result equals calling
    ``partial_fit`` on the blocks in the same order in one process.

    Parameters
    ----------
    estimator : VAEAnomalyDetector or VAETransformer
        Continued when fitted (as ``partial_fit`` does); not modified.
    X : dask.array.Array or dask.dataframe.DataFrame
        Its blocks (row chunks or partitions) are the ``partial_fit`` batches.
    shuffle_blocks : bool, default=True
        Visit the blocks in a random order (``partial_fit`` wants batches
        in a random order).
    random_state : int, RandomState instance or None, default=None
        Seeds the block order.
    read_ahead : int, default=1
        Blocks loaded while the current one trains.
    client : distributed.Client, default=None
        The current client when None.

    Returns
    -------
    estimator : the trained estimator (a new object)

    Notes
    -----
    For ``VAEAnomalyDetector``, ``offset_`` and ``calibration_scores_``
    come from the last block; set them from a held-out sample with
    ``calibrate``.
    """
    from distributed import get_client, wait
    from sklearn.utils import check_random_state

    client = client or get_client()
    blocks = _blocks(X)
    if shuffle_blocks:
        order = check_random_state(random_state).permutation(len(blocks))
        blocks = [blocks[i] for i in order]
    model = client.scatter(estimator)
    in_flight = deque()
    for block in blocks:
        model = client.submit(_partial_fit, model, client.compute(block), pure=False)
        in_flight.append(model)
        if len(in_flight) > read_ahead:
            wait(in_flight.popleft())
    return model.result()
