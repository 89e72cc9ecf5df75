import signal
import sys
import warnings
from collections import Counter

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skvae import _anomaly

# (estimator.method, "result" or "error") -> calls made by tests/test_bad_input.py.
BAD_INPUT_CASES = Counter()

# Small, fast settings for tests on 2 cores: every test file builds on these
# (overriding what a test is about) instead of writing its own copy.
FAST = dict(n_components=2, hidden_layer_sizes=(16,), max_iter=20, batch_size=64, random_state=0)
# Smaller still, for tests that fit many models (property, soak and estimator checks).
TINY = {**FAST, "hidden_layer_sizes": (8,), "max_iter": 2}


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(autouse=True)
def _sigint_handler_restored(request):
    """Each test leaves the SIGINT handler as it found it (the Ctrl-C tests
    install Python's default one for their own duration); one that does not
    is named on stderr and its change undone."""
    before = signal.getsignal(signal.SIGINT)
    yield
    if signal.getsignal(signal.SIGINT) is not before:
        print(f"\n{request.node.nodeid} left the SIGINT handler changed", file=sys.stderr)
        signal.signal(signal.SIGINT, before)


@pytest.fixture(autouse=True, scope="module")
def _split_calibration_under_auto(request):
    """calibration="auto" means split calibration here, except in test files
    that set REAL_CALIBRATION_RULE: cross-conformal calibration (the default
    for 10 to 2,000 rows) fits every detector 5 more times, and the tests of
    other behaviour need not pay for it. tests/test_cross_conformal.py tests
    the real rule, scikit-learn's checks included; CLI subprocesses use it too.
    Module-scoped, so that module-scoped fixtures are fitted under it."""
    with pytest.MonkeyPatch.context() as patch:
        if not getattr(request.module, "REAL_CALIBRATION_RULE", False):
            patch.setattr(_anomaly, "CROSS_CONFORMAL_MAX_ROWS", 0)
        yield


@pytest.fixture
def blobs():
    """200 normal rows in 4 dimensions plus 5 far-away rows (the last five)."""
    rng = np.random.RandomState(0)
    inliers = rng.normal(size=(200, 4))
    outliers = rng.normal(loc=7.0, size=(5, 4))
    return np.vstack([inliers, outliers])


def pytest_terminal_summary(terminalreporter):
    """Report how many malformed-input cases the property tests tried."""
    if not BAD_INPUT_CASES:
        return
    errors = sum(n for (_, kind), n in BAD_INPUT_CASES.items() if kind == "error")
    results = sum(n for (_, kind), n in BAD_INPUT_CASES.items() if kind == "result")
    methods = len({method for method, _ in BAD_INPUT_CASES})
    terminalreporter.write_line(
        f"bad-input cases tried: {errors + results} over {methods} methods and CLI commands "
        f"({errors} clear errors, {results} checked results)"
    )
