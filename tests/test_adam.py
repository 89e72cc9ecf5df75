"""skvae's Adam: torch.optim.Adam's numbers without torch.optim's import cost."""

import subprocess
import sys

import pytest
import torch

from skvae import _adam
from skvae._adam import Adam
from skvae._likelihoods import elbo
from skvae._network import VAEModule


def _trained(make_optimizer, steps=25, weight_decay=0.0):
    generator = torch.Generator().manual_seed(0)
    module = VAEModule(5, 2, (8,))
    module.reset_parameters(generator)
    optimizer = make_optimizer(module.parameters(), 1e-2, weight_decay)
    x = torch.randn(64, 5, generator=generator)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        (-elbo(module, x).mean()).backward()
        optimizer.step()
    return module, optimizer


def _torch_adam(fused):
    def make(parameters, lr, weight_decay):
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=fused)

    return make


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_same_weights_as_torch_fused_adam_to_the_bit(weight_decay):
    ours, _ = _trained(Adam, weight_decay=weight_decay)
    theirs, _ = _trained(_torch_adam(fused=True), weight_decay=weight_decay)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_plain_update_matches_torch_adam(monkeypatch, weight_decay):
    # Where torch has no fused kernel, the textbook update runs instead.
    monkeypatch.setattr(_adam, "_fused_kernel", lambda device: None)
    ours, _ = _trained(Adam, weight_decay=weight_decay)
    theirs, _ = _trained(_torch_adam(fused=False), weight_decay=weight_decay)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_state_dict_has_torchs_layout_and_round_trips():
    module, optimizer = _trained(Adam, steps=3)
    _, reference = _trained(_torch_adam(fused=True), steps=3)
    ours, theirs = optimizer.state_dict(), reference.state_dict()
    assert ours["state"].keys() == theirs["state"].keys()
    for index, entry in theirs["state"].items():
        assert ours["state"][index].keys() == entry.keys()
        assert float(ours["state"][index]["step"]) == float(entry["step"]) == 3.0
    # Moments loaded from torch's layout continue the same trajectory.
    again = Adam(module.parameters(), lr=1e-2)
    again.load_state_dict(theirs)
    for index, entry in theirs["state"].items():
        loaded = again.state[again.parameters[index]]
        assert torch.equal(loaded["exp_avg"], entry["exp_avg"])
        assert loaded["exp_avg"] is not entry["exp_avg"]  # a copy: the source stays intact


def test_zero_grad_and_a_step_without_gradients():
    module = VAEModule(3, 2, (4,))
    optimizer = Adam(module.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in module.parameters()]
    optimizer.step()  # no gradients yet: nothing moves, no state
    assert optimizer.state == {}
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    (-elbo(module, torch.randn(8, 3)).mean()).backward()
    optimizer.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(p.grad) == 0 for p in module.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in module.parameters())


def test_a_fit_does_not_import_torch_dynamo():
    # torch.optim's first optimizer imports torch._dynamo and sympy: 1.5-2 s
    # added to every process's first fit (the CLI's included).
    code = (
        "import sys, numpy as np\n"
        "from skvae import VAEAnomalyDetector\n"
        "VAEAnomalyDetector(max_iter=2, random_state=0).fit(np.random.rand(50, 3))\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
