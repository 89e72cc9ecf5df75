"""Bad input gets a clear error, and a failed call leaves a fitted estimator as it was.

First a property-based test: malformed input to every public method of both estimators.

Every call must either return a correct result (finite, the right shape, equal
to the result for the same values as a float64 array) or raise a ValueError or
TypeError with a message, raised outside torch. A fitted model is never
changed by a call, a failed refit included. Each call counts as one case; the
test run prints the total (tests/conftest.py). Then the named cases, each
with the words its message must contain.
"""

import contextlib
import copy
import io
import os
import pickle
import re
import signal
import traceback
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import clone

import skvae
from skvae import VAEAnomalyDetector, VAETransformer

from .conftest import BAD_INPUT_CASES, FAST, TINY

WIDTH = 3
NAMES = ["a", "b", "c"]
# Seconds one call may take before it counts as a hang.
CALL_TIMEOUT = 20
SKVAE = os.path.dirname(skvae.__file__)
TORCH_WORDS = re.compile(r"torch|tensor|mat1|size mismatch|dtype=torch", re.IGNORECASE)
SETTINGS = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Mostly ordinary values, so that many inputs are valid and their results get
# checked; sometimes extreme finite ones. NaN and inf are put in separately.
ORDINARY = st.floats(-1e6, 1e6, allow_nan=False)
EXTREME = st.sampled_from([0.0, -0.0, 1e-300, 1e30, -1e30, 1e300, -1e300])
VALUES = st.one_of(*[ORDINARY] * 6, EXTREME)
SHAPES = ["as drawn"] * 3 + ["constant column", "duplicate columns", "NaN", "inf", "-inf"]


# ------------------------------------------------------------------ inputs
@st.composite
def matrices(draw, width=WIDTH):
    """A float64 matrix: often the right width, sometimes 0, 1 or 2 rows,
    extreme values, a constant or duplicated column, a NaN or an infinity."""
    n_rows = draw(st.sampled_from([3, 9, 2, 1, 0]))
    n_cols = draw(st.sampled_from([width] * 4 + [width - 1, width + 1, 1, 0]))
    A = draw(hnp.arrays(np.float64, (n_rows, n_cols), elements=VALUES))
    shape = draw(st.sampled_from(SHAPES))
    if A.size and shape in ("NaN", "inf", "-inf"):
        A.flat[draw(st.integers(0, A.size - 1))] = float(shape)
    elif n_cols >= 2 and shape == "constant column":
        A[:, 0] = 7.0
    elif n_cols >= 2 and shape == "duplicate columns":
        A[:, 1] = A[:, 0]
    return A


def _frame(A, columns):
    return pd.DataFrame(A, columns=columns[: A.shape[1]] if columns else None)


def _names(A, kind):
    n = A.shape[1]
    return {
        "fit": (NAMES + ["d", "e"])[:n],
        "other": [f"z{i}" for i in range(n)],
        "reversed": (NAMES + ["d", "e"])[:n][::-1],
    }[kind]


def _ragged(A):
    rows = A.tolist()
    if rows and rows[-1]:
        rows[-1] = rows[-1][:-1]
    return rows


def _with_text(A):
    frame = _frame(A, _names(A, "fit"))
    frame["label"] = "x"
    return frame


def _nullable(A):
    return _frame(A, _names(A, "fit")).astype("Float64")


# Each form: (name, X from the float64 matrix A, the float64 matrix with the
# same values when a successful call must match the result for it, else None).
FORMS = {
    "float64 array": lambda A: (A, A),
    "float32 array": lambda A: (A.astype(np.float32), A.astype(np.float32).astype(np.float64)),
    "float16 array": lambda A: (A.astype(np.float16), A.astype(np.float16).astype(np.float64)),
    "int64 array": lambda A: (
        np.nan_to_num(A, posinf=1, neginf=-1).clip(-1e15, 1e15).astype(np.int64),
        np.nan_to_num(A, posinf=1, neginf=-1).clip(-1e15, 1e15).astype(np.int64).astype(float),
    ),
    "bool array": lambda A: (A > 0, (A > 0).astype(np.float64)),
    "object array of numbers": lambda A: (A.astype(object), A),
    "array of numeric strings": lambda A: (A.astype(str), A),
    "array of words": lambda A: (np.full(A.shape, "spam"), None),
    "object array with a word": lambda A: (
        np.where(np.arange(A.size).reshape(A.shape) == 0, "spam", A.astype(object)),
        None,
    ),
    "complex array": lambda A: (A.astype(complex), None),
    "datetime array": lambda A: (np.full(A.shape, np.datetime64("2020-01-01")), None),
    "list of lists": lambda A: (A.tolist(), A),
    "ragged list": lambda A: (_ragged(A), None),
    "1-d array": lambda A: (A.ravel(), None),
    "3-d array": lambda A: (A[None], None),
    "scalar": lambda A: (3.0, None),
    "None": lambda A: (None, None),
    "sparse matrix": lambda A: (scipy.sparse.csr_matrix(np.nan_to_num(A)), None),
    "frame, fit names": lambda A: (_frame(A, _names(A, "fit")), A),
    "frame, other names": lambda A: (_frame(A, _names(A, "other")), A),
    "frame, reversed names": lambda A: (_frame(A, _names(A, "reversed")), A),
    "frame, no names": lambda A: (_frame(A, None), A),
    "frame with a text column": lambda A: (_with_text(A), None),
    "frame of nullable floats": lambda A: (_nullable(A), A),
}


def bad_inputs(form, width=WIDTH):
    """(form, X, same_as) for matrices drawn by hypothesis, in the given form."""

    def make(A):
        with np.errstate(all="ignore"):
            X, same_as = FORMS[form](A)
        return form, X, same_as

    return matrices(width).map(make)


# -------------------------------------------------------------- the oracle
@contextlib.contextmanager
def time_limit(seconds):
    """A call that takes longer is a hang (SIGALRM: the main thread only)."""

    def hang(signum, frame):
        raise TimeoutError(f"the call took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def outcome(call, X):
    """("result", value) or ("error", exception); anything else fails the test."""
    with time_limit(CALL_TIMEOUT), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = "result", call(X)
        except (ValueError, TypeError) as error:
            message = str(error).strip()
            assert message, f"{type(error).__name__} without a message"
            where = traceback.extract_tb(error.__traceback__)[-1].filename
            assert f"{os.sep}torch{os.sep}" not in where, f"raised inside torch: {message}"
            # Torch's C++ errors surface in the calling frame: know them by their words.
            assert not TORCH_WORDS.search(message), f"a torch error: {message}"
            result = "error", error
    # Numpy overflow warnings from skvae's own arithmetic are a half-handled case.
    leaked = [w for w in caught if issubclass(w.category, RuntimeWarning) and SKVAE in w.filename]
    assert not leaked, [str(w.message) for w in leaked]
    return result


def fingerprint(estimator):
    """Bytes that change when any fitted attribute or weight changes."""
    state = {k: v for k, v in vars(estimator).items() if k != "module_"}
    weights = {k: v.numpy().tobytes() for k, v in estimator.module_.state_dict().items()}
    return pickle.dumps((state, weights))


def assert_correct(name, value, n_rows, same_as_value):
    array = np.asarray(value)
    assert np.issubdtype(array.dtype, np.number), (name, array.dtype)
    assert np.isfinite(array).all(), f"{name} returned non-finite values"
    if name != "score":
        assert array.shape[0] == n_rows, (name, array.shape)
    if name == "predict":
        assert set(np.unique(array)) <= {-1, 1}
    if same_as_value is not None:
        np.testing.assert_array_equal(array, np.asarray(same_as_value), err_msg=name)


def rows_of(X):
    return np.shape(np.asarray(X, dtype=object) if isinstance(X, list) else X)[0]


# Forms that hold plain numbers: when their values are fine, a call must work.
NUMERIC_FORMS = {
    "float64 array",
    "float32 array",
    "float16 array",
    "int64 array",
    "bool array",
    "object array of numbers",
    "list of lists",
}


def must_work(form, same_as, width, min_rows, limit=1e100):
    """Whether the input is valid: an error for it would be a bug, not a clear error.

    Values beyond ``limit`` may fairly be refused at scoring time (too far
    from the training data to evaluate), so they do not count as valid there.
    """
    return (
        form in NUMERIC_FORMS
        and same_as.shape[0] >= min_rows
        and same_as.shape[1] == width
        and bool(np.all(np.abs(same_as) < limit))
    )


def check(estimator_name, method, call, form, X, same_as, valid=False):
    """Run one case and count it."""
    kind, value = outcome(call, X)
    assert kind == "result" or not valid, f"{method} refused a valid {form}: {value}"
    if kind == "result":
        expected = None
        if same_as is not None:
            expected_kind, expected = outcome(call, same_as)
            assert expected_kind == "result", (
                f"{method} accepted {form} but not the same values as float64: {expected}"
            )
        assert_correct(method, value, rows_of(X), expected)
    BAD_INPUT_CASES[f"{estimator_name}.{method}", kind] += 1
    return kind


# --------------------------------------------------------------- fixtures
def _fit(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X)


@pytest.fixture(scope="module")
def fitted():
    X = np.random.RandomState(0).normal(size=(60, WIDTH))
    frame = pd.DataFrame(X, columns=NAMES)
    return {
        "detector": _fit(VAEAnomalyDetector(**TINY), X),
        "detector on a frame": _fit(VAEAnomalyDetector(**TINY), frame),
        "transformer": _fit(VAETransformer(**TINY), X),
        "transformer on a frame": _fit(VAETransformer(**TINY), frame),
    }


DETECTOR_METHODS = [
    "score_samples",
    "decision_function",
    "predict",
    "score",
    "pvalues",
    "feature_contributions",
    "embed",
]
TRANSFORMER_METHODS = ["transform", "score_samples", "score"]


def methods_of(name):
    return DETECTOR_METHODS if name.startswith("detector") else TRANSFORMER_METHODS


# ------------------------------------------------------------------ tests
def run_property(body, form, strategy, examples, fitted):
    """Run ``body(fitted, case)`` on ``examples`` cases drawn from ``strategy``,
    with a fixed seed per form: the same cases every run, different per form."""
    test = settings(max_examples=examples, **SETTINGS)(lambda case: body(fitted, case))
    seed(zlib.crc32(f"{body.__qualname__}:{form}".encode()))(given(case=strategy)(test))()


# Every form is tried on its own, so hypothesis cannot favour a few of them.
@pytest.mark.parametrize("form", sorted(FORMS))
def test_scoring_methods_answer_bad_input_clearly(fitted, form):
    run_property(scoring_methods_case, form, bad_inputs(form), 8, fitted)


def scoring_methods_case(fitted, case):
    form, X, same_as = case
    for name, estimator in fitted.items():
        before = fingerprint(estimator)
        for method in methods_of(name):
            valid = must_work(form, same_as, WIDTH, min_rows=1)
            check(name, method, getattr(estimator, method), form, X, same_as, valid)
        assert fingerprint(estimator) == before, f"{name} changed by {form}"


@pytest.mark.parametrize("form", sorted(FORMS))
def test_inverse_transform_answers_bad_input_clearly(fitted, form):
    run_property(inverse_transform_case, form, bad_inputs(form, TINY["n_components"]), 4, fitted)


def inverse_transform_case(fitted, case):
    form, Z, same_as = case
    for name in ["transformer", "transformer on a frame"]:
        estimator = fitted[name]
        before = fingerprint(estimator)
        valid = must_work(form, same_as, TINY["n_components"], min_rows=1)
        check(name, "inverse_transform", estimator.inverse_transform, form, Z, same_as, valid)
        assert fingerprint(estimator) == before


@pytest.mark.parametrize("form", sorted(FORMS))
def test_fit_answers_bad_input_clearly_and_failed_refits_change_nothing(fitted, form):
    run_property(fit_case, form, bad_inputs(form), 3, fitted)


def fit_case(fitted, case):
    form, X, same_as = case
    for name, estimator in fitted.items():
        fit_methods = ["fit_predict"] if name.startswith("detector") else ["fit_transform"]
        for method in fit_methods:
            fresh = clone(estimator)
            valid = must_work(form, same_as, WIDTH, min_rows=2, limit=np.inf)
            check(name, method, getattr(fresh, method), form, X, same_as, valid)
        refit = copy.deepcopy(estimator)
        before = fingerprint(refit)
        kind, value = outcome(refit.fit, X)
        BAD_INPUT_CASES[f"{name}.fit", kind] += 1
        assert kind == "result" or not valid, f"fit refused a valid {form}: {value}"
        if kind == "error":
            assert fingerprint(refit) == before, f"a failed fit on {form} changed {name}"
            continue
        assert value is refit
        # A model fitted on odd (but valid) data scores finite on it, and as a
        # model fitted on the same values as float64 does.
        if same_as is None:
            assert np.isfinite(refit.score_samples(X)).all()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # feature names
                reference = clone(estimator).fit(same_as)
                expected = reference.score_samples(same_as)
                np.testing.assert_array_equal(refit.score_samples(same_as), expected)
            assert np.isfinite(expected).all()
    for name, estimator in fitted.items():
        valid = must_work(form, same_as, WIDTH, min_rows=2, limit=np.inf)
        check_update(name, "partial_fit", clone(estimator), form, X, valid, suffix=" (first)")
        # Continuing a model trained on N(0, 1) with a batch at 1e30 rescales its
        # weights by 1e29: TrainingDivergedError is then a fair answer.
        valid = must_work(form, same_as, WIDTH, min_rows=2, limit=1e6)
        check_update(name, "partial_fit", estimator, form, X, valid)
        if name.startswith("detector"):
            check_update(name, "calibrate", estimator, form, X, valid=False)


def check_update(name, method, estimator, form, X, valid, suffix=""):
    """A method that changes the model: on error it leaves the model exactly
    as it was; on success the model still scores ordinary rows finite (the
    probe: normal draws, with the model's column names)."""
    model = copy.deepcopy(estimator)
    before = fingerprint(model) if hasattr(model, "module_") else None
    kind, value = outcome(getattr(model, method), X)
    BAD_INPUT_CASES[f"{name}.{method}{suffix}", kind] += 1
    assert kind == "result" or not valid, f"{method} refused a valid {form}: {value}"
    if kind == "error":
        after = fingerprint(model) if hasattr(model, "module_") else None
        assert after == before, f"a failed {method} on {form} changed {name}"
        return
    assert value is model
    probe = np.random.RandomState(2).normal(size=(5, model.n_features_in_))
    if hasattr(model, "feature_names_in_"):
        probe = pd.DataFrame(probe, columns=model.feature_names_in_)
    kind, value = outcome(model.score_samples, probe)
    if kind == "error":  # fair only when the model was trained far from the probe
        assert "too far from the training data" in str(value), value
    else:
        assert np.isfinite(value).all(), f"{method} on {form}"


NOT_A_COUNT = [0, -1, 2.5, "3", None, True, [2], np.float64(2.0)]


@pytest.mark.parametrize("n_samples", NOT_A_COUNT + [np.int64(3), 4])
def test_sample_rejects_counts_that_are_not_positive_integers(fitted, n_samples):
    estimator = fitted["transformer"]
    kind, value = outcome(estimator.sample, n_samples)
    valid = isinstance(n_samples, (int, np.integer)) and not isinstance(n_samples, bool)
    if valid and n_samples > 0:
        assert kind == "result" and value.shape == (n_samples, WIDTH)
        assert np.isfinite(value).all()
    else:
        assert kind == "error" and "n_samples" in str(value)
    BAD_INPUT_CASES["transformer.sample", kind] += 1


# (input_features, what a model fitted without column names does, and one
# fitted on a frame with columns a, b, c): names are checked against the
# fitted ones when there are some, only counted when there are none.
INPUT_FEATURES = [
    (None, "names", "names"),
    (NAMES, "names", "names"),
    (np.array(NAMES), "names", "names"),
    (["x", "y", "z"], "names", "input_features is not equal to feature_names_in_"),
    ([1, 2, 3], "names", "input_features is not equal to feature_names_in_"),
    (
        ["a", "b"],
        "input_features should have length equal to number of features \\(3\\), got 2",
        "input_features is not equal to feature_names_in_",
    ),
    # Refused by scikit-learn's own check (as for PCA), in its words: a TypeError
    # from len() of a string or a number; any message is accepted for these two.
    ("abc", "", "input_features is not equal to feature_names_in_"),
    (3, "", "input_features is not equal to feature_names_in_"),
]


@pytest.mark.parametrize("input_features, on_array, on_frame", INPUT_FEATURES)
@pytest.mark.parametrize("name", ["transformer", "transformer on a frame"])
def test_get_feature_names_out_checks_input_features(
    fitted, name, input_features, on_array, on_frame
):
    estimator = fitted[name]
    expected = on_frame if name.endswith("frame") else on_array
    kind, value = outcome(estimator.get_feature_names_out, input_features)
    if expected == "names":
        assert kind == "result", value
        assert list(value) == ["vaetransformer0", "vaetransformer1"]
    else:
        assert kind == "error", f"{input_features!r} was accepted: {value}"
        assert re.search(expected, str(value)), value
    BAD_INPUT_CASES[f"{name}.get_feature_names_out", kind] += 1


# -------------------------------------------------------------------- CLI
ODD_CELLS = ["", "nan", "NA", "inf", "-inf", "1e400", "1e300", "-1e30", "abc", '"1,5"', "True"]
ODD_CELLS += ["2020-01-01", " ", "0x10", "é", '"', "\t"]
CELLS = st.one_of(
    *[st.floats(-1e6, 1e6, allow_nan=False).map(repr)] * 6,
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(repr),
    st.sampled_from(ODD_CELLS),
)
HEADERS = st.sampled_from(["a", "b", "c", "a", "", "x y", "é", "1", "id"])


@st.composite
def csv_tables(draw):
    """CSV text: a header and rows of mostly numbers, sometimes odd cells,
    duplicate or empty column names, or a row too short or too long."""
    n_cols = draw(st.sampled_from([3, 3, 2, 1, 4, 0]))
    n_rows = draw(st.sampled_from([8, 8, 8, 3, 3, 2, 1, 0]))
    header = draw(st.lists(HEADERS, min_size=n_cols, max_size=n_cols))
    ragged = draw(st.sampled_from([False] * 4 + [True]))
    lines = [",".join(header)]
    for _ in range(n_rows):
        width = max(0, n_cols + (draw(st.sampled_from([0, 1, -1])) if ragged else 0))
        lines.append(",".join(draw(st.lists(CELLS, min_size=width, max_size=width))))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


FILES = st.one_of(
    *[csv_tables()] * 8,
    st.binary(max_size=400),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.just(b""),
    st.just(b"a,b,c\n"),
)


def run_cli(argv):
    """(exit status, stdout, stderr) of ``skvae.cli.main(argv)`` in-process."""
    from skvae.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with time_limit(CALL_TIMEOUT), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                status = main(argv)
            except SystemExit as exit_:  # argparse refusing an option
                status = exit_.code
    return status, out.getvalue(), err.getvalue()


def assert_cli_answers_clearly(command, argv, output):
    status, out, err = run_cli(argv)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if not line.startswith("skvae: warning:")]
    if status == 0:
        assert "rows flagged as outliers" in out
        scores = pd.read_csv(output)["score"]
        assert np.isfinite(scores).all(), "the CLI wrote non-finite scores"
        kind = "result"
    else:
        assert status == 2, (status, err)
        assert len(errors) == 1 and "error:" in errors[0], err
        kind = "error"
    BAD_INPUT_CASES[f"cli.{command}", kind] += 1


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    frame = pd.DataFrame(np.random.RandomState(0).normal(size=(60, 3)), columns=NAMES)
    _fit(VAEAnomalyDetector(**TINY), frame).save(folder / "model.skvae")
    return folder


@pytest.mark.parametrize("command", ["detect", "score"])
def test_cli_answers_malformed_files_with_one_line(cli_model, command):
    def body(_, content):
        data = cli_model / f"data-{command}.csv"
        data.write_bytes(content)
        output = cli_model / "scores.csv"
        if command == "detect":
            argv = ["detect", str(data), "--quiet", "--max-iter", "2", "--output", str(output)]
        else:
            argv = ["score", str(cli_model / "model.skvae"), str(data), "--output", str(output)]
        assert_cli_answers_clearly(command, argv, output)

    run_property(body, command, FILES, 60, None)


def test_cli_answers_damaged_model_files_with_one_line(cli_model):
    good = (cli_model / "model.skvae").read_bytes()
    data = cli_model / "good.csv"
    pd.DataFrame(np.random.RandomState(1).normal(size=(5, 3)), columns=NAMES).to_csv(data)

    def body(_, damage):
        cut, flips = damage
        damaged = bytearray(good[:cut])
        for position, value in flips:
            if damaged:
                damaged[position % len(damaged)] = value
        model = cli_model / "damaged.skvae"
        model.write_bytes(bytes(damaged))
        output = cli_model / "scores.csv"
        assert_cli_answers_clearly(
            "score", ["score", str(model), str(data), "--output", str(output)], output
        )

    damage = st.tuples(
        st.integers(0, len(good)),
        st.lists(st.tuples(st.integers(0, len(good)), st.integers(0, 255)), max_size=3),
    )
    run_property(body, "model", damage, 30, None)


@pytest.mark.parametrize(
    "command, content, expected",
    [
        ("detect", b"a,b,c\n1,2,3\n", "has 1 row; fitting a detector needs at least 2"),
        ("score", b"a,b,c\n1,2,3\n1e300,0,0\n", "too far from the training data"),
        ("detect", b"a,b,c\n1,2,3\n2,inf,1\n0,1,2\n", "rows flagged as outliers"),
    ],
)
def test_cli_cases_the_property_test_found(cli_model, command, content, expected):
    """Each used to end in a traceback (the first two) or an error (the last)."""
    data, output = cli_model / "found.csv", cli_model / "found-scores.csv"
    data.write_bytes(content)
    if command == "detect":
        argv = ["detect", str(data), "--quiet", "--max-iter", "2", "--output", str(output)]
    else:
        argv = ["score", str(cli_model / "model.skvae"), str(data), "--output", str(output)]
    status, out, err = run_cli(argv)
    assert expected in out + err
    assert status == (0 if "flagged" in expected else 2)


# ------------------------------------------------------------ named cases
# Each bad input or parameter value and the words its error must contain.
ESTIMATORS = [VAETransformer, VAEAnomalyDetector]


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[1.0, np.nan], [2.0, np.nan], [0.0, np.nan]]), "no observed value"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [0.0, 1.0]]), "infinity"),
        (np.empty((0, 3)), "0 sample"),
        (np.ones((1, 3)), "minimum of 2 is required"),
        (np.empty((5, 0)), "0 feature"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), "could not convert|string"),
        (np.ones(5), "Expected 2D array"),
    ],
)
def test_fit_rejects_bad_input_with_clear_message(Estimator, bad, message):
    with pytest.raises(ValueError, match=message):
        Estimator(**FAST).fit(bad)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_components": 0}, "n_components"),
        ({"max_iter": -1}, "max_iter"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (8, "x")}, "hidden_layer_sizes"),
        ({"device": "tpu"}, "device"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_wrong_parameter_values_are_named(Estimator, params, message):
    rng = np.random.RandomState(0)
    with pytest.raises(ValueError, match=message):
        Estimator(**{**FAST, **params}).fit(rng.normal(size=(20, 3)))


@pytest.mark.parametrize(
    "params, message", [({"contamination": 0.7}, "contamination"), ({"scoring": "mse"}, "scoring")]
)
def test_detector_parameters_are_validated(params, message):
    with pytest.raises(ValueError, match=message):
        VAEAnomalyDetector(**{**FAST, **params}).fit(np.random.RandomState(0).normal(size=(20, 3)))


def test_bernoulli_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VAEAnomalyDetector(**FAST, likelihood="bernoulli").fit(np.array([[0.0, 2.0], [1.0, 0.0]]))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_scoring_rejects_wrong_width_inf_and_empty(Estimator, blobs):
    est = Estimator(**FAST).fit(blobs)
    with pytest.raises(ValueError, match="3 features, but .* is expecting 4"):
        est.score_samples(blobs[:, :3])
    with pytest.raises(ValueError, match="infinity"):
        est.score_samples(np.where(blobs == blobs[0, 0], np.inf, blobs))
    with pytest.raises(ValueError, match="0 sample"):
        est.score_samples(blobs[:0])
    frame = pd.DataFrame(blobs, columns=list("abcd"))
    with pytest.raises(ValueError, match="infinity in column 'b'"):
        est.fit(frame).score_samples(frame.assign(b=np.inf))
    with pytest.raises(ValueError, match="0 sample"):
        est.score_samples(frame[:0])


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_failed_refit_leaves_fitted_estimator_unchanged(Estimator, blobs):
    est = Estimator(**FAST).fit(blobs)
    before = {k: v for k, v in vars(est).items() if k != "module_"}
    weights = {k: v.clone() for k, v in est.module_.state_dict().items()}
    scores = est.score_samples(blobs)
    infinite = np.where(blobs > 2, np.inf, blobs)
    for bad in (np.full_like(blobs, np.nan), blobs[:1], infinite):
        # Column names: a failed fit must not leave feature_names_in_ behind.
        bad_frame = pd.DataFrame(bad, columns=[f"c{i}" for i in range(bad.shape[1])])
        with pytest.raises(ValueError):
            est.fit(bad_frame)
    with pytest.raises(ValueError):
        est.set_params(n_components=-3).fit(blobs)
    est.set_params(n_components=FAST["n_components"])
    assert not hasattr(est, "feature_names_in_")
    np.testing.assert_array_equal(est.score_samples(blobs), scores)
    after = {k: v for k, v in vars(est).items() if k != "module_"}
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert pickle.dumps(after[key]) == pickle.dumps(value), key
    for key, value in est.module_.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_cuda_request_without_cuda_is_a_clear_error(blobs):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        VAEAnomalyDetector(**FAST, device="cuda").fit(blobs)


@pytest.mark.parametrize("n_rows", [2, 3, 19, 20, 63])
def test_tiny_inputs_fit_and_score(n_rows):
    """Fewer rows than batch_size, and validation splits too small to use."""
    X = np.random.RandomState(0).normal(size=(n_rows, 3))
    detector = VAEAnomalyDetector(**{**FAST, "batch_size": 256}).fit(X)
    scores = detector.score_samples(X)
    assert np.isfinite(scores).all()
    # validation_fraction=0.1 holds out floor(n / 10) rows, used only from 2 on.
    assert (detector.validation_scores_ is None) == (n_rows < 20)
    assert np.isfinite(detector.score_samples(X[:1])).all()  # scoring one row works
