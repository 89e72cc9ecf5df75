"""Model files: save/load round trips exactly, and bad files fail with ModelFileError."""

import io
import json
import pickle
import time
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import skvae
from skvae import ModelFileError, VAEAnomalyDetector, VAETransformer, _persistence

from .conftest import FAST


@pytest.fixture(scope="module")
def fitted():
    """One fitted model of each kind, on a DataFrame (so feature names are stored)."""
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(120, 4)), columns=list("abcd"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return {
            "detector": VAEAnomalyDetector(**FAST).fit(frame),
            "transformer": VAETransformer(**{**FAST, "early_stopping": False}).fit(frame),
            "frame": frame,
        }


def saved_bytes(estimator):
    buffer = io.BytesIO()
    estimator.save(buffer)
    return buffer.getvalue()


def rewritten(data, header=None, arrays=None, extra=None):
    """The model file ``data`` with its header and arrays passed through functions."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "skvae.json" and header is not None:
                content = json.dumps(header(json.loads(content))).encode()
            elif name != "skvae.json" and arrays is not None:
                content = arrays(name, content)
                if content is None:
                    continue
            target.writestr(name, content)
        for name, content in (extra or {}).items():
            target.writestr(name, content)
    return out.getvalue()


def fitted_state(estimator):
    return {k: v for k, v in vars(estimator).items() if k.endswith("_") or k.startswith("_")}


@pytest.mark.parametrize("kind", ["detector", "transformer"])
def test_round_trip_scores_identically(fitted, kind, tmp_path):
    estimator, frame = fitted[kind], fitted["frame"]
    path = tmp_path / "model.skvae"
    estimator.save(path)
    loaded = skvae.load(path)
    assert type(loaded) is type(estimator)
    assert loaded.get_params() == estimator.get_params()
    np.testing.assert_array_equal(loaded.score_samples(frame), estimator.score_samples(frame))
    assert loaded.score(frame) == estimator.score(frame)
    np.testing.assert_array_equal(loaded.feature_names_in_, list("abcd"))
    if kind == "detector":
        assert loaded.offset_ == estimator.offset_
        np.testing.assert_array_equal(loaded.predict(frame), estimator.predict(frame))
        np.testing.assert_array_equal(loaded.pvalues(frame), estimator.pvalues(frame))
    else:
        np.testing.assert_array_equal(loaded.transform(frame), estimator.transform(frame))
        np.testing.assert_array_equal(loaded.sample(5, random_state=1), estimator.sample(5, 1))
    for name, value in fitted_state(estimator).items():
        if name != "module_":
            assert pickle.dumps(getattr(loaded, name)) == pickle.dumps(value), name


@pytest.mark.parametrize("kind", ["detector", "transformer"])
def test_every_fitted_attribute_is_in_the_file(fitted, kind):
    """``FITTED_ATTRIBUTES`` must list whatever fit sets (device_ is chosen by load)."""
    estimator = fitted[kind]
    set_by_fit = set(fitted_state(estimator)) - {"device_"}
    assert set_by_fit == set(_persistence.FITTED_ATTRIBUTES[type(estimator).__name__])
    header = json.loads(zipfile.ZipFile(io.BytesIO(saved_bytes(estimator))).read("skvae.json"))
    assert set(header["fitted"]) == set_by_fit


def test_warm_start_after_load_continues_like_the_original():
    X = np.random.RandomState(1).normal(size=(80, 3))
    original = VAEAnomalyDetector(**{**FAST, "max_iter": 3, "warm_start": True}).fit(X)
    loaded = skvae.load(io.BytesIO(saved_bytes(original)))
    original.fit(X)
    loaded.fit(X)
    assert loaded.n_iter_ == original.n_iter_ == 6
    np.testing.assert_array_equal(loaded.score_samples(X), original.score_samples(X))


def test_random_state_instance_is_kept():
    X = np.random.RandomState(1).normal(size=(40, 3))
    estimator = VAETransformer(**{**FAST, "random_state": np.random.RandomState(3)}).fit(X)
    loaded = skvae.load(io.BytesIO(saved_bytes(estimator)))
    assert loaded.random_state.randint(1000) == estimator.random_state.randint(1000)


def test_class_load_checks_the_class(fitted):
    data = saved_bytes(fitted["detector"])
    assert isinstance(VAEAnomalyDetector.load(io.BytesIO(data)), VAEAnomalyDetector)
    with pytest.raises(ModelFileError, match="holds a VAEAnomalyDetector, not a VAETransformer"):
        VAETransformer.load(io.BytesIO(data))


def test_subclass_save_is_refused(fitted):
    class Detector(VAEAnomalyDetector):
        pass

    subclass = Detector(**FAST).fit(fitted["frame"])
    with pytest.raises(TypeError, match="not Detector; use pickle or joblib for subclasses"):
        subclass.save(io.BytesIO())


def test_unfitted_save_is_refused(tmp_path):
    with pytest.raises(NotFittedError):
        VAEAnomalyDetector().save(tmp_path / "x.skvae")
    assert not list(tmp_path.iterdir())


def test_failed_save_keeps_the_old_file(fitted, tmp_path, monkeypatch):
    path = tmp_path / "model.skvae"
    fitted["detector"].save(path)
    before = path.read_bytes()

    def broken(stream, header, arrays):
        stream.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(_persistence, "_write", broken)
    with pytest.raises(OSError, match="disk full"):
        fitted["transformer"].save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.skvae"]


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        skvae.load(tmp_path / "nope.skvae")


def test_every_truncation_is_a_clear_error(fitted):
    data = saved_bytes(fitted["detector"])
    cuts = sorted({0, 1, 10, 100, *range(0, len(data), max(1, len(data) // 40)), len(data) - 1})
    for cut in cuts:
        with pytest.raises(ModelFileError, match="Cannot load"):
            skvae.load(io.BytesIO(data[:cut]))


def test_flipped_bytes_are_a_clear_error(fitted):
    data = saved_bytes(fitted["detector"])
    rng = np.random.RandomState(0)
    for position in rng.choice(len(data), size=40, replace=False):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        try:
            loaded = skvae.load(io.BytesIO(bytes(damaged)))
        except ModelFileError:
            continue
        # A flip in a part zip does not check (a timestamp, say) is harmless.
        frame = fitted["frame"]
        scores = fitted["detector"].score_samples(frame)
        np.testing.assert_array_equal(loaded.score_samples(frame), scores)


def set_in(path, value):
    def change(header):
        target = header
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return header

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(header=set_in(["format_version"], 3)), "format version 3.*reads versions 1 and 2"),
        (dict(header=set_in(["format_version"], "1")), "format version '1'"),
        (dict(header=set_in(["format"], "other")), "not an skvae model file"),
        (dict(header=set_in(["estimator"], "os.system")), "unknown estimator"),
        (dict(header=set_in(["params", "n_components"], -1)), "n_components"),
        (dict(header=set_in(["params", "evil"], 1)), "unknown parameters"),
        (dict(header=set_in(["fitted", "offset_"], "x")), "offset_"),
        (
            dict(header=set_in(["fitted", "n_features_in_"], 5)),
            r"column schema must describe the 5 feature columns",
        ),
        (dict(header=set_in(["fitted", "module_", "config", "n_features"], 10**9)), "shape"),
        (dict(header=set_in(["fitted", "module_", "config", "activation"], "x")), "module_"),
        (dict(header=lambda h: {**h, "fitted": {}}), "n_features_in_ is missing"),
        (dict(header=lambda h: [h]), "not an skvae model file"),
        (dict(arrays=lambda n, c: None if "mean_" in n else c), "mean_"),
        (dict(extra={"payload.pkl": b"x"}), "unexpected member"),
    ],
)
def test_tampered_file_is_a_clear_error(fitted, change, message):
    data = rewritten(saved_bytes(fitted["detector"]), **change)
    with pytest.raises(ModelFileError, match=message):
        skvae.load(io.BytesIO(data))


class Payload:
    """Unpickling this creates a folder: the proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.mkdir, (self.path,)


@pytest.mark.parametrize("member", ["scale_", "encoder.0.weight"])
def test_pickled_payload_is_never_unpickled(fitted, member, tmp_path):
    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.array([Payload(marker)], dtype=object))
    data = rewritten(
        saved_bytes(fitted["detector"]),
        arrays=lambda name, content: buffer.getvalue() if member in name else content,
    )
    with pytest.raises(ModelFileError, match="malformed"):
        skvae.load(io.BytesIO(data))
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload itself does work
    assert marker.exists()


@pytest.mark.parametrize(
    "replace", [lambda a: a.astype(np.float64), lambda a: a[:-1], lambda a: a * np.nan]
)
def test_tampered_weights_are_a_clear_error(fitted, replace):
    def change(name, content):
        if "output_mean.weight" not in name:
            return content
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, replace(np.load(io.BytesIO(content))))
        return buffer.getvalue()

    data = rewritten(saved_bytes(fitted["detector"]), arrays=change)
    with pytest.raises(ModelFileError, match="output_mean.weight"):
        skvae.load(io.BytesIO(data))


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + b"\0" * 50])
def test_non_model_files_are_a_clear_error(content, tmp_path):
    path = tmp_path / "junk.skvae"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="junk.skvae"):
        skvae.load(path)


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)


@pytest.mark.parametrize(
    "argument, error, message",
    [
        (None, TypeError, "expected a path or a binary file object, got NoneType"),
        (123, TypeError, "got int"),
        (b"model bytes", TypeError, "wrap bytes in io.BytesIO"),
        (["model.skvae"], TypeError, "got list"),
        (io.StringIO(), TypeError, "model files are binary"),
        ("{tmp}", IsADirectoryError, "is a folder"),
        ("{tmp}/no/such/folder/m.skvae", FileNotFoundError, "no/such/folder"),
    ],
)
def test_bad_file_arguments_are_named(fitted, tmp_path, argument, error, message):
    if isinstance(argument, str):
        argument = argument.format(tmp=tmp_path)
    with pytest.raises(error, match=message):
        fitted["detector"].save(argument)
    if error is TypeError:
        with pytest.raises(error, match=message):
            skvae.load(argument)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_the_same_model_saves_to_the_same_bytes_whatever_the_clock(monkeypatch):
    """Fold models are files inside the file: no member may carry the time."""
    X = np.random.RandomState(0).normal(size=(60, 3))
    detector = VAEAnomalyDetector(**{**FAST, "max_iter": 2}, calibration="cross").fit(X)
    first = io.BytesIO()
    detector.save(first)
    later = time.localtime(time.time() + 3 * 86400)
    monkeypatch.setattr(time, "localtime", lambda *args: later)
    second = io.BytesIO()
    detector.save(second)
    assert first.getvalue() == second.getvalue()
