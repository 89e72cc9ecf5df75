"""The training record is kept once: the public attributes (loss_curve_,
n_iter_, best_*) plus the step size, ``_learning_rate``; a warm run rebuilds
its history from them, and model files of format 1 (which stored a
``_history`` beside them) still load."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

import skvae
from skvae import ModelFileError, VAEAnomalyDetector, VAETransformer, _training

from .conftest import FAST
from .test_model_file_limits import rewritten
from .test_persistence import set_in

X = np.random.RandomState(0).normal(size=(100, 3))
V1_FILE = os.path.join(os.path.dirname(__file__), "data", "detector_format_v1.skvae")


def _diverging_once(monkeypatch):
    """The first epoch diverges: training cuts the step size once."""
    real = _training._run_epoch
    calls = {"n": 0}

    def run_epoch(*args, **kwargs):
        calls["n"] += 1
        return float("nan") if calls["n"] == 1 else real(*args, **kwargs)

    monkeypatch.setattr(_training, "_run_epoch", run_epoch)


@pytest.mark.parametrize("Estimator", [VAEAnomalyDetector, VAETransformer])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_warm_runs_continue_the_step_size_and_the_record(Estimator, method, monkeypatch):
    _diverging_once(monkeypatch)
    estimator = Estimator(**{**FAST, "max_iter": 3, "warm_start": True}).fit(X)
    cut = estimator.learning_rate_init / _training.DIVERGENCE_LR_FACTOR
    assert "_history" not in vars(estimator)
    assert estimator._learning_rate == pytest.approx(cut)
    first_curve = list(estimator.loss_curve_)
    assert estimator.n_iter_ == 3 == len(first_curve)

    getattr(estimator, method)(X)
    added = 3 if method == "fit" else 1
    assert "_history" not in vars(estimator)
    # Not reset to learning_rate_init: the cut carries over.
    assert estimator._learning_rate == pytest.approx(cut)
    assert estimator.n_iter_ == 3 + added
    assert estimator.loss_curve_[:3] == first_curve
    assert len(estimator.loss_curve_) == estimator.n_iter_
    assert estimator.best_loss_ == min(estimator.loss_curve_)


def test_a_saved_model_stores_the_record_once(tmp_path):
    detector = VAEAnomalyDetector(**{**FAST, "max_iter": 3}).fit(X)
    detector.save(tmp_path / "m.skvae")
    with zipfile.ZipFile(tmp_path / "m.skvae") as archive:
        header = json.loads(archive.read("skvae.json"))
    assert header["format_version"] == 2
    assert "_history" not in header["fitted"]
    assert header["fitted"]["_learning_rate"] == detector._learning_rate
    loaded = skvae.load(tmp_path / "m.skvae")
    assert "_history" not in vars(loaded)
    assert loaded._learning_rate == detector._learning_rate


def test_a_format_1_file_from_the_previous_release_loads():
    """The file was written by skvae before this change (tests/data/README.md)."""
    loaded = skvae.load(V1_FILE)
    rows = np.random.RandomState(0).normal(size=(60, 3))
    expected = np.load(V1_FILE.replace(".skvae", "_scores.npy"))
    np.testing.assert_array_equal(loaded.score_samples(rows), expected)
    assert "_history" not in vars(loaded)
    assert loaded._learning_rate == 1e-3
    assert loaded.n_iter_ == 3 == len(loaded.loss_curve_)
    loaded.partial_fit(rows)
    assert loaded.n_iter_ == 4
    # Saved again, it is a format 2 file.
    buffer = io.BytesIO()
    loaded.save(buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        assert json.loads(archive.read("skvae.json"))["format_version"] == 2


def test_a_format_1_history_gives_the_step_size_and_is_checked():
    with open(V1_FILE, "rb") as stream:
        data = stream.read()
    lowered = rewritten(data, header=set_in(["fitted", "_history", "learning_rate"], 1e-5))
    assert skvae.load(io.BytesIO(lowered))._learning_rate == 1e-5
    bad = rewritten(data, header=set_in(["fitted", "_history", "learning_rate"], "fast"))
    with pytest.raises(ModelFileError, match="_history learning_rate holds 'fast'"):
        skvae.load(io.BytesIO(bad))
    # A format 2 file has no _history.
    stray = rewritten(data, header=set_in(["format_version"], 2))
    with pytest.raises(ModelFileError, match=r"unknown fitted attributes \['_history'\]"):
        skvae.load(io.BytesIO(stray))
