"""The observation models of the column kinds, one class each in one table."""

import numpy as np
import pandas as pd
import pytest
import torch

from skvae import VAEAnomalyDetector
from skvae._network import ColumnLayout, VAEModule
from skvae._observations import KINDS, OBSERVATION_MODELS

METHODS = (
    "output_width",
    "parameters",
    "encoder_input",
    "log_prob",
    "mean",
    "squared_error",
    "sample",
    "check_support",
)


def _params(kind, generator, n=4000):
    """Decoder parameters for ``n`` rows of two columns of ``kind``."""
    model = OBSERVATION_MODELS[kind]
    counts = [3, 2] if model.has_categories else [0, 0]
    width = sum(model.output_width(c) for c in counts)
    location = torch.randn((n, width), generator=generator, dtype=torch.float64)
    log_var = torch.randn((n, 2), generator=generator, dtype=torch.float64)
    return model.parameters(location, counts, log_var)


def test_every_kind_has_the_whole_interface_and_the_table_names_it():
    assert KINDS == ("gaussian", "bernoulli", "categorical")
    for kind, model in OBSERVATION_MODELS.items():
        assert model.kind == kind
        for method in METHODS:
            assert callable(getattr(model, method)), (kind, method)


@pytest.mark.parametrize("kind", KINDS)
def test_mean_is_the_average_of_samples_and_the_mode_for_categories(kind):
    """``mean`` is what a missing entry is completed with when scoring."""
    generator = torch.Generator().manual_seed(0)
    model = OBSERVATION_MODELS[kind]
    params = _params(kind, generator, n=50)
    draws = torch.stack([model.sample(params, generator) for _ in range(2000)])
    if kind == "categorical":
        counts = torch.stack([(draws == c).sum(0) for c in range(3)])
        # The most frequent code (column 1 has two categories only).
        np.testing.assert_array_equal(model.mean(params), counts.argmax(0).double())
        return
    np.testing.assert_allclose(draws.mean(0), model.mean(params), atol=0.12)
    # And the squared error of the mean is 0.
    assert torch.all(model.squared_error(model.mean(params), params) == 0)


@pytest.mark.parametrize("kind", ["bernoulli", "categorical"])
def test_discrete_probabilities_sum_to_one(kind):
    generator = torch.Generator().manual_seed(1)
    model = OBSERVATION_MODELS[kind]
    params = _params(kind, generator, n=20)
    values = [0.0, 1.0] if kind == "bernoulli" else [0.0, 1.0, 2.0]
    total = torch.zeros((20, 2), dtype=torch.float64)
    for value in values:
        # The second categorical column has two categories only.
        x = torch.tensor([[value, min(value, 1.0)]] * 20, dtype=torch.float64)
        probability = model.log_prob(x, params).exp()
        probability[:, 1] *= value < 2
        total += probability
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def test_the_module_reads_its_widths_and_blocks_from_the_table():
    layout = ColumnLayout(
        ("categorical", "gaussian", "bernoulli", "gaussian"),
        (4, 0, 0, 0),
        (False, True, False, False),
    )
    module = VAEModule(4, 2, (8,), layout=layout)
    assert module.encoder[0].in_features == layout.input_width == 3 + 4 + 1
    assert module.output_mean.out_features == layout.output_width == 3 + 4
    # Blocks in table order: the Gaussian columns first, whatever their position.
    assert [(kind, start, stop) for kind, _, start, stop in module.blocks] == [
        ("gaussian", 0, 2),
        ("bernoulli", 2, 3),
        ("categorical", 3, 7),
    ]
    x = torch.tensor([[2.0, 0.5, 1.0, float("nan")], [-1.0, float("nan"), 0.0, 1.0]])
    torch.testing.assert_close(module.to_columns(module.column_blocks(x)), x, equal_nan=True)
    assert module.network_input(x).shape == (2, layout.input_width)


def test_a_missing_indicator_on_a_categorical_column_is_refused():
    state = {"kinds": ["categorical"], "n_categories": [3], "masked": [True]}
    with pytest.raises(ValueError, match="bad missing indicator"):
        ColumnLayout.from_dict(state)


def test_bernoulli_range_is_checked_in_one_place_for_arrays_and_frames():
    """The array path and the DataFrame path give the same message."""
    X = np.array([[0.0, 1.0], [1.0, 2.0], [0.0, 0.0]])
    detector = VAEAnomalyDetector(likelihood="bernoulli", max_iter=1)
    message = (
        r"Column 1 is modelled as Bernoulli and needs values in \[0, 1\]; got values in \[0, 2\]"
    )
    with pytest.raises(ValueError, match=message):
        detector.fit(X)
    frame = pd.DataFrame({"a": [0, 1, 0], "b": [0.5, 2.0, 0.0]})
    declared = VAEAnomalyDetector(column_types={"b": "bernoulli"}, max_iter=1)
    with pytest.raises(ValueError, match=r"Column 'b' is modelled as Bernoulli.*\[0, 2\]"):
        declared.fit(frame)
    fitted = VAEAnomalyDetector(likelihood="bernoulli", max_iter=1, random_state=0)
    fitted.fit(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"Column 0 .*got values in \[-1, -1\]"):
        fitted.score_samples([[-1.0, 1.0]])


def test_bounded_per_row_variance_stays_within_its_range(monkeypatch):
    """The experimental bound on decoder_variance="sample" (benchmarks/ablation.py):
    each row's log-variance is the column's +- the range; unset, it is free."""
    import math

    import torch

    from skvae import _network

    torch.manual_seed(0)
    module = _network.VAEModule(4, 2, (8,), decoder_variance="sample")
    with torch.no_grad():
        module.feature_log_var.copy_(torch.tensor([0.0, -1.0, 1.0, 2.0]))
        module.output_log_var.weight.mul_(50.0)  # push the free head far out
    z = torch.randn(64, 2)
    _, free = module.decode(z)
    assert (free - module.feature_log_var).abs().max() > math.log(4.0)

    monkeypatch.setattr(_network, "SAMPLE_LOG_VAR_RANGE", math.log(4.0))
    _, bounded = module.decode(z)
    offset = bounded - module.feature_log_var
    assert offset.abs().max() <= math.log(4.0) + 1e-6
    assert offset.abs().max() > 0.5 * math.log(4.0)  # the head still moves it
