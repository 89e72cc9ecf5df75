"""Ctrl-C during partial_fit: the call is undone whole, never half an update.

A streaming loop (``for batch in batches: detector.partial_fit(batch)``) must
stop on Ctrl-C, and the estimator must be left as the last completed call
left it, so that training can go on as if the interrupted call never ran.
"""

import pickle
import signal
import sys

import numpy as np
import pytest
import torch

from skvae import VAEAnomalyDetector, _training
from skvae._adam import Adam

X = np.random.RandomState(0).normal(size=(120, 3))
PARAMS = dict(n_components=2, hidden_layer_sizes=(8,), batch_size=16, random_state=0)


def _state(estimator):
    """Every fitted attribute, comparable with ==."""
    state = {k: v for k, v in vars(estimator).items() if k.endswith("_") or k.startswith("_")}
    state["module_"] = {k: v.numpy().tobytes() for k, v in state["module_"].state_dict().items()}
    return pickle.dumps(state)


def _reference():
    """Scores after two uninterrupted calls."""
    return VAEAnomalyDetector(**PARAMS).partial_fit(X[:60]).partial_fit(X[60:]).score_samples(X)


def test_ctrl_c_in_a_mini_batch_step_undoes_the_call(monkeypatch):
    detector = VAEAnomalyDetector(**PARAMS).partial_fit(X[:60])
    before = _state(detector)
    real_step = Adam.step
    steps = {"n": 0}

    def step(self, *args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 2:  # the second of the call's 4 mini-batches
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Adam, "step", step)
    with pytest.raises(KeyboardInterrupt):
        detector.partial_fit(X[60:])
    monkeypatch.setattr(Adam, "step", real_step)
    assert _state(detector) == before
    # Training goes on as if the interrupted call had never run.
    np.testing.assert_array_equal(detector.partial_fit(X[60:]).score_samples(X), _reference())


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "raise_signal"), reason="needs signal.raise_signal")
def test_ctrl_c_at_every_line_of_a_partial_fit_call_undoes_it_or_completes_it():
    """A real SIGINT at each line the training loop runs during one call:
    the call either raises KeyboardInterrupt and leaves the estimator as it
    was, or completes its epoch exactly as an uninterrupted call does."""
    # Python's own handler, as in a terminal session: a process started in the
    # background by a non-interactive shell begins with SIGINT ignored, and
    # every raise_signal below would then be a no-op.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_at_every_line()
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_at_every_line():
    reference = _reference()
    first = VAEAnomalyDetector(**PARAMS).partial_fit(X[:60])
    before = _state(first)
    position = 0
    undone = completed = 0
    while True:
        position += 1
        detector = pickle.loads(pickle.dumps(first))
        count = [0]

        def local(frame, event, arg, position=position, count=count):
            if event == "line":
                count[0] += 1
                if count[0] == position:
                    signal.raise_signal(signal.SIGINT)
            return local

        sys.settrace(lambda f, e, a: local if f.f_code.co_filename == _training.__file__ else None)
        try:
            detector.partial_fit(X[60:])
        except KeyboardInterrupt:
            assert _state(detector) == before, position
            undone += 1
        else:
            np.testing.assert_array_equal(detector.score_samples(X), reference)
            completed += 1
        finally:
            sys.settrace(None)
            assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled(), position
        if count[0] < position:  # the call ran fewer lines: every line was tried
            break
    assert undone > 0.8 * position, (undone, completed)
