"""Where the network runs; torch only, so fitting and loading share it."""

from __future__ import annotations

import torch


def resolve_device(device):
    """``"cpu"`` or ``"cuda"`` for a ``device`` parameter; ValueError when
    CUDA is asked for and absent."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but CUDA is not available on this "
            "machine; use device='cpu' or device='auto'."
        )
    return device
