"""Does ``torch.compile`` pay for the default network's training step on a CPU?

Times the training step of the default network (50 features, hidden (64, 32),
latent 8, batch 1024: the automatic batch of a 50,000-row fit) eagerly and
with the loss compiled by ``torch.compile`` (inductor), on ``--threads``
threads: milliseconds per step after warm-up, and the compile time paid by the
first steps. Writes the ``torch_compile`` section of ``RESULTS.md``.

    python benchmarks/torch_compile.py
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from _harness import HERE, machine_lines, markdown_table, pin_threads, write_section

from skvae._adam import Adam
from skvae._likelihoods import elbo
from skvae._network import VAEModule

N_FEATURES = 50
BATCH = 1024


def _module():
    generator = torch.Generator().manual_seed(0)
    module = VAEModule(N_FEATURES, 8, (64, 32))
    module.reset_parameters(generator)
    return module


def _loss(module, x, noise):
    return -elbo(module, x, noise).mean()


def _steps(loss, module, X, n_steps):
    """Seconds of ``n_steps`` training steps (forward, backward, Adam)."""
    optimizer = Adam(module.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    for step in range(n_steps):
        first = (step * BATCH) % (X.shape[0] - BATCH)
        x = X[first : first + BATCH]
        noise = torch.randn(x.shape[0], 8, generator=generator)
        optimizer.zero_grad()
        loss(module, x, noise).backward()
        optimizer.step()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--output", type=Path, default=HERE, help="folder for RESULTS.md and results/"
    )
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    pin_threads(args.threads, __file__, argv, restart=from_command_line)
    warnings.simplefilter("ignore")
    X = torch.randn(50_000, N_FEATURES, generator=torch.Generator().manual_seed(0))

    module = _module()
    _steps(_loss, module, X, 20)
    eager = _steps(_loss, module, X, args.steps) / args.steps
    compiled_loss = torch.compile(_loss)
    module = _module()
    first = _steps(compiled_loss, module, X, 3)
    compiled = _steps(compiled_loss, module, X, args.steps) / args.steps
    rows = [
        ["eager step", f"{1e3 * eager:.2f}", "ms"],
        ["compiled step", f"{1e3 * compiled:.2f}", "ms"],
        ["first 3 compiled steps (compilation included)", f"{first:.1f}", "s"],
        [
            "steps to repay the compilation",
            f"{first / (eager - compiled):.0f}" if compiled < eager else "never",
            "steps",
        ],
    ]
    for row in rows:
        print(*row)
    lines = ["## torch.compile of the training step", ""]
    lines += machine_lines(args.threads, __file__, argv)
    lines += [
        f"- Network: {N_FEATURES} features, hidden (64, 32), latent 8, batch {BATCH}; loss "
        "`-elbo(module, x, noise).mean()` compiled with `torch.compile` (inductor, default "
        f"mode); Adam as the library's; {args.steps} timed steps after warm-up.",
        "- Inductor keeps compiled kernels in an on-disk cache: a machine's first compilation "
        "takes longer than the compile time below, which is that of a warm cache.",
        "",
        markdown_table(["measure", "value", "unit"], rows),
    ]
    write_section(
        "torch_compile",
        "\n".join(lines) + "\n",
        args.output / "results",
        args.output / "RESULTS.md",
    )


if __name__ == "__main__":
    main()
