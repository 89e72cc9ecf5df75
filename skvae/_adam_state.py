"""The Adam state kept between ``partial_fit`` calls; torch only.

It is Adam's moments only (step size and weight decay come from the
parameters and the history), held in numpy: device-free for pickling and
model files, and copied in and out so that a failed call cannot modify it.
"""

from __future__ import annotations

import torch

# The per-parameter tensors of torch.optim.Adam's state, besides "step".
ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")


def moments_to_numpy(state):
    """``optimizer.state_dict()["state"]`` as steps and numpy copies."""
    return {
        index: {
            "step": float(entry["step"]),
            **{key: entry[key].detach().cpu().numpy().copy() for key in ADAM_MOMENTS},
        }
        for index, entry in state.items()
    }


def moments_to_torch(state, device):
    """The reverse of :func:`moments_to_numpy`, for ``load_state_dict``."""
    return {
        index: {
            "step": torch.tensor(entry["step"], dtype=torch.float32),
            **{key: torch.tensor(entry[key], device=device) for key in ADAM_MOMENTS},
        }
        for index, entry in state.items()
    }
