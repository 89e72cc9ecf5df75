"""``skvae.load``: the model-file reader that knows every estimator class.

It sits above the estimators and hands ``_persistence`` the class table, so
the file format never imports the estimators that call it.
"""

from __future__ import annotations

from . import _persistence
from ._anomaly import VAEAnomalyDetector
from ._transformer import VAETransformer

ESTIMATORS = {cls.__name__: cls for cls in (VAEAnomalyDetector, VAETransformer)}


def load(file, *, device="cpu"):
    """Read an estimator written by ``save``; no code in the file is run.

    Parameters
    ----------
    file : str, path-like or binary file object
        A file written by ``VAEAnomalyDetector.save`` or
        ``VAETransformer.save``.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to put the network.

    Returns
    -------
    estimator : VAEAnomalyDetector or VAETransformer
        Fitted, scoring exactly as the saved one did.

    Raises
    ------
    ModelFileError
        The file is not an skvae model file, is truncated or damaged, was
        altered into something ``save`` would not write, exceeds the size
        limits, or has a format version this skvae cannot read. A subclass
        of ValueError.

    Examples
    --------
    >>> import io, numpy as np, skvae
    >>> X = np.random.RandomState(0).normal(size=(50, 3))
    >>> detector = skvae.VAEAnomalyDetector(max_iter=3, random_state=0).fit(X)
    >>> buffer = io.BytesIO()
    >>> detector.save(buffer)
    >>> loaded = skvae.load(io.BytesIO(buffer.getvalue()))
    >>> bool(np.array_equal(loaded.score_samples(X), detector.score_samples(X)))
    True
    """
    return _persistence.load(file, ESTIMATORS, device=device)
