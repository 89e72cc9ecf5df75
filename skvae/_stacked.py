"""Several VAEs of one architecture trained as one network. Torch only.

A cross-conformally calibrated fit trains 6 networks: the model and 5 fold
models on 80% of the rows each. On small tables a training step is mostly
per-operation overhead (Python, dispatch, autograd bookkeeping), not
arithmetic: stacking the members' weights along a leading dimension and
running each layer as one batched matrix product makes a step of 5 members
cost about 1.6 steps of one. The 5 fold models alone, one thread: 4.50 s
instead of 8.34 s on breastw's 222-row novelty half, 4.88 s instead of
10.59 s on cardio's 827 rows, 4.62 s instead of 8.02 s on letter's 750
(measured during development; ``benchmarks/fit_time.py`` times whole fits
against PyOD's).

Each member keeps what a fit of its own has: its rows, validation rows and
random stream; Adam's moments (elementwise, so stacking changes nothing);
gradient clipping, early stopping and best weights. The members share the
lead member's budget, schedule and steps per epoch; each takes its own
batches where they make as many steps (the lead always does, so it trains
exactly as on its own), else as many nearly equal ones.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.utils._pytree import tree_map

from . import _training
from ._likelihoods import elbo
from ._network import VAEModule
from ._training import (
    EVAL_CHUNK_ROWS,
    MAX_GRAD_NORM,
    TrainingHistory,
    _end_of_epoch,
    _HeldInterrupts,
    _Run,
    _Weights,
    _weights_finite,
    cosine_schedule,
    kl_weight,
    progress_bar,
    rows_kept,
)


class StackedDivergence(ArithmeticError):
    """A member's loss or weights left the finite range: the caller fits the
    members one by one instead, where divergence has its own recovery."""


class _StackedLinear:
    """``nn.Linear`` of every member at once on (members, rows, inputs)."""

    def __init__(self, weight, bias):
        self.weight, self.bias = weight, bias

    def __call__(self, h):
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight.transpose(1, 2))


class _StackedSequential:
    def __init__(self, layers):
        self.layers = layers

    def __call__(self, h):
        for layer in self.layers:
            h = layer(h)
        return h


class StackedVAE:
    """The members' weights stacked, with ``VAEModule``'s own ``encode`` and
    ``decode`` run on tensors of shape (members, rows, ...); everything else
    (the column layout, the observation models) is the first member's, which
    the others share. The members themselves are left untouched until
    ``write_to_members``."""

    encode = VAEModule.encode
    decode = VAEModule.decode

    def __init__(self, modules):
        template = modules[0]
        self.template = template
        self.members = list(modules)
        self.names = [name for name, _ in template.named_parameters()]
        members_params = [dict(module.named_parameters()) for module in self.members]
        self.stacked = {
            name: torch.stack([params[name].detach() for params in members_params])
            .clone()
            .requires_grad_(True)
            for name in self.names
        }
        for name in ("encoder", "latent_mean", "latent_log_var", "decoder", "output_mean"):
            setattr(self, name, self._stacked_layer(name, getattr(template, name)))
        log_var_layer = template.output_log_var
        self.output_log_var = (
            None if log_var_layer is None else self._stacked_layer("output_log_var", log_var_layer)
        )

    def _stacked_layer(self, name, module):
        if isinstance(module, nn.Linear):
            return _StackedLinear(self.stacked[f"{name}.weight"], self.stacked[f"{name}.bias"])
        if isinstance(module, nn.Sequential):
            children = module.named_children()
            return _StackedSequential(
                [self._stacked_layer(f"{name}.{child}", sub) for child, sub in children]
            )
        return module  # an activation: no weights, elementwise

    def __getattr__(self, name):
        # Only reached for what __init__ did not set: the layout's attributes.
        return getattr(self.__dict__["template"], name)

    @property
    def n_members(self):
        return len(self.members)

    @property
    def feature_log_var(self):
        return self.stacked["feature_log_var"].unsqueeze(1)

    def parameters(self):
        return [self.stacked[name] for name in self.names]

    # The layout code indexes rows as (rows, columns): the members' rows go
    # through it flattened.
    def network_input(self, x):
        flat = self.template.network_input(x.reshape(-1, x.shape[-1]))
        return flat.reshape(*x.shape[:-1], flat.shape[-1])

    def per_column(self, method, params, x=None, *args):
        leading = next(iter(params.values()))
        leading = (leading[0] if isinstance(leading, (list, tuple)) else leading).shape[:-1]
        flat = tree_map(lambda t: t.reshape(-1, t.shape[-1]), params)
        x = None if x is None else x.reshape(-1, x.shape[-1])
        out = self.template.per_column(method, flat, x, *args)
        return out.reshape(*leading, out.shape[-1])

    def member_weights(self, k):
        """Member ``k``'s weights, in ``named_parameters`` order (views that
        follow training, outside autograd)."""
        return [self.stacked[name].detach()[k] for name in self.names]

    @torch.no_grad()
    def write_to_members(self, snapshots):
        """Load member k's ``snapshots[k]`` (``member_weights`` order) into
        its module."""
        for module, snapshot in zip(self.members, snapshots, strict=True):
            for parameter, saved in zip(module.parameters(), snapshot, strict=True):
                parameter.copy_(saved)


def stacked_moments(optimizer, k):
    """Member ``k``'s share of the stacked weights' Adam moments, in the
    layout of ``Adam.state_dict()["state"]`` (parameters by position)."""
    state = optimizer.state_dict()["state"]
    return {
        index: {
            "step": entry["step"].clone(),
            "exp_avg": entry["exp_avg"][k],
            "exp_avg_sq": entry["exp_avg_sq"][k],
        }
        for index, entry in state.items()
    }


def trimmed_means(row_losses, counts, trim_fraction):
    """``_training._batch_loss`` per member: row ``i`` of ``row_losses``
    (members, rows) has ``counts[i]`` real rows (the rest is padding); the
    mean of its best ``rows_kept`` of them."""
    n_rows = row_losses.shape[1]
    kept = [rows_kept(count, trim_fraction) for count in counts]
    if all(count == n_rows for count in kept):
        return row_losses.mean(dim=1)
    real, chosen, counts_t, kept_t = _trim_masks(
        tuple(counts), tuple(kept), n_rows, row_losses.device, torch.is_inference_mode_enabled()
    )
    ordered = torch.where(real, row_losses, math.inf).sort(dim=1).values
    if _training.ROBUST_TRIM is not None:
        kept_t = _robust_kept(row_losses.detach(), ordered.detach(), real, counts_t, kept_t)
        chosen = torch.arange(n_rows, device=row_losses.device) < kept_t[:, None]
    return torch.where(chosen, ordered, 0.0).sum(dim=1) / kept_t.to(row_losses.dtype)


def _robust_kept(losses, ordered, real, counts, kept):
    """Each member's rows kept under ``_training.ROBUST_TRIM``: as
    ``_batch_loss`` decides, only losses of its real rows above
    ``_training.robust_cutoff`` are left out, at most as many as ``kept``
    leaves out. ``ordered``: the losses sorted, padding last (infinite);
    medians are the lower middle values, as ``torch.median`` takes them."""
    middle = ((counts - 1) // 2)[:, None]
    median = ordered.gather(1, middle)
    deviations = torch.where(real, (losses - median).abs(), math.inf)
    cutoff = _training.robust_cutoff(median, deviations.sort(dim=1).values.gather(1, middle))
    above = (real & (losses > cutoff)).sum(dim=1)
    return counts - torch.minimum(counts - kept, above)


@functools.lru_cache(maxsize=64)
def _trim_masks(counts, kept, n_rows, device, inference):
    """Where each member's real rows are, and its first ``kept`` sorted
    losses, with ``counts`` and ``kept`` as tensors; the same few shapes
    recur every epoch, so they are kept. Masks made under inference mode
    (validation) are kept apart: autograd refuses them in training."""
    position = torch.arange(n_rows, device=device)
    counts_t = torch.tensor(counts, device=device)
    kept_t = torch.tensor(kept, device=device)
    return position < counts_t[:, None], position < kept_t[:, None], counts_t, kept_t


def _padded(tensors, n_rows):
    """The (members, n_rows, columns) stack of ``tensors``, zeros after each
    member's own rows (finite, so padding never makes a NaN)."""
    first = tensors[0]
    out = first.new_zeros((len(tensors), n_rows, first.shape[1]))
    for k, tensor in enumerate(tensors):
        out[k, : tensor.shape[0]] = tensor
    return out


def _clip_member_gradients(parameters, max_norm):
    """``_training._clip_gradients`` for each member (the first dimension).
    No member's norm exceeds the norm of all of them, which one foreach call
    gives: the per-member norms are only needed when that one is too large."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    if torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients))) <= max_norm:
        return
    norms = sum(g.flatten(1).square().sum(dim=1) for g in gradients).sqrt()
    factor = torch.where(norms > max_norm, max_norm / (norms + 1e-6), 1.0)
    for g in gradients:
        g.mul_(factor.view(-1, *([1] * (g.dim() - 1))))


@torch.inference_mode()
def _validation_scores(stack, x_val, counts, trim_fraction):
    """``_training.mean_elbo`` of each member's validation rows."""
    scores = torch.cat(
        [
            elbo(stack, x_val[:, start : start + EVAL_CHUNK_ROWS])
            for start in range(0, x_val.shape[1], EVAL_CHUNK_ROWS)
        ],
        dim=1,
    )
    return (-trimmed_means(-scores.double(), counts, trim_fraction)).tolist()


def can_stack(modules, x_trains, x_vals):
    """Whether these fits can train as one stack: one architecture and column
    layout, and validation rows for all or none."""
    config = modules[0].config()
    return (
        all(module.config() == config for module in modules)
        and len({x_val is None for x_val in x_vals}) == 1
        and all(x.shape[0] >= 1 for x in x_trains)
    )


def batch_plan(n_rows, batch_size, steps):
    """The batch sizes of one epoch over ``n_rows`` rows in ``steps`` steps:
    those of ``batch_size``-row batches (what a fit of its own takes) when
    they make ``steps`` batches, else ``steps`` nearly equal ones; None when
    there are fewer rows than steps."""
    if n_rows < steps:
        return None
    if math.ceil(n_rows / batch_size) == steps:
        return [batch_size] * (steps - 1) + [n_rows - (steps - 1) * batch_size]
    return [len(part) for part in torch.arange(n_rows).tensor_split(steps)]


def train_stacked(stack, optimizer, x_trains, x_vals, settings, generators, plans):
    """``_training.train`` for every member of ``stack`` at once; returns one
    ``TrainingHistory`` per member and leaves each member's module with its
    best weights. Member k's epochs take batches of ``plans[k]`` rows (one
    plan per member, all of one length, the steps per epoch); the budget and
    schedule of ``settings`` are shared; ``optimizer`` holds the stacked
    weights. Raises ``StackedDivergence`` when any member's loss or weights
    stop being finite.
    """
    n_members = stack.n_members
    histories = [TrainingHistory() for _ in range(n_members)]
    runs = [_Run() for _ in range(n_members)]
    learning_rate = optimizer.param_groups[0]["lr"]
    for history in histories:
        history.learning_rate = learning_rate
    weights = [_Weights(live=stack.member_weights(k)) for k in range(n_members)]
    best_states = [w.copy() for w in weights]
    x_val = None if x_vals[0] is None else _padded(x_vals, max(x.shape[0] for x in x_vals))
    val_counts = None if x_val is None else [x.shape[0] for x in x_vals]
    # The bar shows the first member: the model whose fold models the others are.
    progress = progress_bar(settings, f"skvae fit ({n_members} networks)")
    held = _HeldInterrupts()
    try:
        for epoch in range(settings.max_iter):
            active = [k for k in range(n_members) if not runs[k].stopped_early]
            if not active:
                break
            beta = kl_weight(settings, epoch)
            losses = _stacked_epoch(
                stack, optimizer, x_trains, plans, settings, beta, generators, learning_rate, epoch
            )
            validation = (
                [None] * n_members
                if x_val is None
                else _validation_scores(stack, x_val, val_counts, settings.trim_fraction)
            )
            with held:
                for k in active:
                    _end_of_epoch(
                        histories[k],
                        runs[k],
                        losses[k],
                        validation[k],
                        settings,
                        weights[k],
                        best_states[k],
                    )
                progress.update(1)
                progress.set_postfix(
                    loss=f"{losses[0]:.4g}",
                    **({} if x_val is None else {"val_elbo": f"{validation[0]:.4g}"}),
                )
    except KeyboardInterrupt:
        for run in runs:
            run.interrupted = True
    finally:
        progress.close()
    with _HeldInterrupts(raise_pending=False) as final:
        stack.write_to_members(best_states)
        for module in stack.members:
            module.eval()
    for history, run in zip(histories, runs, strict=True):
        run.interrupted = run.interrupted or final.pending
        run.record_in(history)
    return histories


def _epoch_batches(x_trains, plans, generators):
    """Every member's rows in its own random order, cut by its plan: a
    (steps, members, widest batch, columns) tensor, zeros after each
    member's rows of a step."""
    steps, widest = len(plans[0]), max(max(plan) for plan in plans)
    first = x_trains[0]
    out = first.new_zeros((steps, len(plans), widest, first.shape[1]))
    for k, (x, plan, g) in enumerate(zip(x_trains, plans, generators, strict=True)):
        shuffled = x[torch.randperm(x.shape[0], generator=g, device="cpu").to(x.device)]
        for step, batch in enumerate(shuffled.split(plan)):
            out[step, k, : batch.shape[0]] = batch
    return out


def _stacked_epoch(stack, optimizer, x_trains, plans, settings, beta, generators, base_lr, epoch):
    """One pass over every member's rows in its own random order; returns
    each member's mean loss."""
    batches = _epoch_batches(x_trains, plans, generators)
    parameters = stack.parameters()
    n_members, steps = len(plans), len(plans[0])
    totals = [0.0] * n_members
    total_steps = settings.max_iter * steps
    for step in range(steps):
        if settings.schedule == "cosine":
            learning_rate = base_lr * cosine_schedule(epoch * steps + step, total_steps)
            optimizer.param_groups[0]["lr"] = learning_rate
        rows = [plan[step] for plan in plans]
        batch = batches[step]
        noise = batch.new_zeros((n_members, batch.shape[1], stack.n_components))
        for k, (n, g) in enumerate(zip(rows, generators, strict=True)):
            noise[k, :n] = torch.randn((n, stack.n_components), generator=g, device="cpu")
        row_losses = -elbo(stack, batch, noise, beta)
        losses = trimmed_means(row_losses, rows, settings.trim_fraction)
        values = losses.tolist()
        if not all(math.isfinite(value) for value in values):
            raise StackedDivergence
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        _clip_member_gradients(parameters, MAX_GRAD_NORM)
        optimizer.step()
        for k, (value, n) in enumerate(zip(values, rows, strict=True)):
            totals[k] += value * n
    # As in _training._run_epoch: a step to non-finite weights is divergence.
    if not _weights_finite(parameters):
        raise StackedDivergence
    return [total / x.shape[0] for total, x in zip(totals, x_trains, strict=True)]
