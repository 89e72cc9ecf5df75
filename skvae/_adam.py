"""Adam, as ``torch.optim.Adam`` computes it, without ``torch.optim``. Torch only.

Why not ``torch.optim.Adam``: the first optimizer a process builds imports
``torch._dynamo`` (and with it sympy), 1.5-2 s of a CPU's time, more than a
whole default fit on 50,000 x 50 rows; and its ``step`` spends a few tenths
of a millisecond in Python per call, a tenth of a small network's step. This
class runs the same fused kernel (``torch._fused_adam_``) with the same
arguments, so the weights are the same to the bit, and falls back to the
textbook update in plain tensor operations where that kernel is missing.

It keeps the parts of the ``torch.optim`` interface the library uses:
``param_groups[0]["lr"]``, ``state``, ``step``, ``zero_grad``, and
``state_dict`` / ``load_state_dict`` in torch's layout (per-parameter index
-> ``step``, ``exp_avg``, ``exp_avg_sq``).
"""

from __future__ import annotations

import torch

BETAS = (0.9, 0.999)
EPS = 1e-8


def _fused_kernel(device):
    """``torch._fused_adam_`` where this torch build has it for ``device``."""
    kernel = getattr(torch, "_fused_adam_", None)
    if kernel is None or device.type not in ("cpu", "cuda"):
        return None
    return kernel


class Adam:
    """Adam with L2 weight decay added to the gradient (torch's ``Adam``,
    not ``AdamW``), default betas and eps."""

    def __init__(self, parameters, lr, weight_decay=0.0):
        self.parameters = list(parameters)
        self.param_groups = [
            {
                "params": self.parameters,
                "lr": lr,
                "betas": BETAS,
                "eps": EPS,
                "weight_decay": weight_decay,
            }
        ]
        self.state = {}

    def zero_grad(self, set_to_none=True):
        for parameter in self.parameters:
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.zero_()

    def _moments(self, parameter):
        if parameter not in self.state:
            self.state[parameter] = {
                "step": torch.zeros((), dtype=torch.float32, device=parameter.device),
                "exp_avg": torch.zeros_like(parameter, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(parameter, memory_format=torch.preserve_format),
            }
        return self.state[parameter]

    @torch.no_grad()
    def step(self):
        group = self.param_groups[0]
        params = [p for p in self.parameters if p.grad is not None]
        if not params:
            return
        states = [self._moments(p) for p in params]
        grads = [p.grad for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        steps = [s["step"] for s in states]
        beta1, beta2 = group["betas"]
        kernel = _fused_kernel(params[0].device)
        if kernel is None:
            _plain_adam(params, grads, exp_avgs, exp_avg_sqs, steps, group)
            return
        torch._foreach_add_(steps, 1)
        kernel(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    def state_dict(self):
        index = {id(p): i for i, p in enumerate(self.parameters)}
        return {
            "state": {index[id(p)]: dict(s) for p, s in self.state.items()},
            "param_groups": [
                {
                    **{k: v for k, v in self.param_groups[0].items() if k != "params"},
                    "params": list(range(len(self.parameters))),
                }
            ],
        }

    def load_state_dict(self, state_dict):
        """Take the moments of ``state_dict["state"]`` (torch's layout), moved
        to each parameter's device and dtype; the step size and the other
        settings stay this optimizer's."""
        self.state = {}
        for i, entry in state_dict["state"].items():
            parameter = self.parameters[int(i)]
            self.state[parameter] = {
                "step": torch.as_tensor(entry["step"], dtype=torch.float32)
                .clone()
                .to(parameter.device),
                **{
                    key: entry[key].detach().to(parameter.device, parameter.dtype).clone()
                    for key in ("exp_avg", "exp_avg_sq")
                },
            }


def _plain_adam(params, grads, exp_avgs, exp_avg_sqs, steps, group):
    """The textbook update (Kingma & Ba, with torch's placement of eps)."""
    beta1, beta2 = group["betas"]
    for param, grad, exp_avg, exp_avg_sq, step in zip(
        params, grads, exp_avgs, exp_avg_sqs, steps, strict=True
    ):
        step += 1
        if group["weight_decay"]:
            grad = grad.add(param, alpha=group["weight_decay"])
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        t = float(step)
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        denominator = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(group["eps"])
        param.addcdiv_(exp_avg, denominator, value=-group["lr"] / bias_correction1)
