import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

# Small, fast settings for tests on 2 cores.
FAST = dict(n_components=2, hidden_layer_sizes=(16,), max_iter=20, batch_size=64, random_state=0)


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture
def blobs():
    """200 normal rows in 4 dimensions plus 5 far-away rows (the last five)."""
    rng = np.random.RandomState(0)
    inliers = rng.normal(size=(200, 4))
    outliers = rng.normal(loc=7.0, size=(5, 4))
    return np.vstack([inliers, outliers])
