"""The epoch loop: mini-batches by index slicing, KL warm-up, early stopping,
recovery from a diverging loss and from Ctrl-C. No estimator imports."""

from __future__ import annotations

import math
import signal
import sys
import threading
import warnings
from dataclasses import asdict, dataclass, field, fields

import torch
from tqdm.auto import tqdm

from ._likelihoods import elbo

# How often a non-finite loss is answered by restoring the last good weights
# and dividing the step size by DIVERGENCE_LR_FACTOR before fit gives up.
MAX_DIVERGENCE_RETRIES = 3
DIVERGENCE_LR_FACTOR = 10.0
# Gradients are clipped to this global norm: one wild batch (a huge outlier
# in the training data) must not throw the weights out of range.
MAX_GRAD_NORM = 100.0
# Rows evaluated at once without gradients: small enough for a chunk's
# activations to stay in the CPU cache (scoring runs about twice as fast as
# with 65536-row chunks) and to bound scoring memory whatever the input size.
EVAL_CHUNK_ROWS = 4096


class TrainingDivergedError(ValueError):
    """The training loss stayed NaN or infinite after every recovery attempt."""


@dataclass
class TrainingSettings:
    batch_size: int
    max_iter: int
    n_iter_no_change: int
    tol: float
    beta: float = 1.0
    kl_warmup: int = 0
    trim_fraction: float = 0.0
    verbose: bool = False


@dataclass
class TrainingHistory:
    """What the loop records; the estimator copies it into fitted attributes."""

    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    n_iter: int = 0
    epochs_without_improvement: int = 0
    learning_rate: float | None = None
    stopped_early: bool = False
    interrupted: bool = False

    def to_dict(self) -> dict:
        """JSON-able copy (model files store it so warm starts can go on)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> TrainingHistory:
        """The history ``to_dict`` wrote; ValueError for anything it would
        not write (a model file may have been altered)."""
        names = {f.name for f in fields(cls)}
        if not isinstance(state, dict) or set(state) != names:
            raise ValueError(f"expected a dict with the keys {sorted(names)}, got {state!r:.200}")
        for name, valid in _HISTORY_VALUES.items():
            if not valid(state[name]):
                raise ValueError(f"{name} holds {state[name]!r:.100}, which training never records")
        n_iter = state["n_iter"]
        if len(state["loss_curve"]) != n_iter or len(state["validation_scores"]) > n_iter:
            raise ValueError(f"the loss curves do not match n_iter={n_iter}")
        return cls(**state)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value):
    return _is_number(value) and math.isfinite(value)


def _is_finite_list(value):
    return isinstance(value, list) and all(_is_finite(v) for v in value)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# What each TrainingHistory field may hold (TrainingHistory.from_dict checks a
# model file against it). Recorded losses are finite: a non-finite epoch is
# retried, never recorded. The best values are +-inf until there is one.
_HISTORY_VALUES = {
    "loss_curve": _is_finite_list,
    "validation_scores": _is_finite_list,
    "best_loss": lambda v: _is_number(v) and -math.inf < v <= math.inf,
    "best_validation_score": lambda v: _is_number(v) and -math.inf <= v < math.inf,
    "n_iter": _is_count,
    "epochs_without_improvement": _is_count,
    "learning_rate": lambda v: v is None or (_is_finite(v) and v > 0),
    "stopped_early": lambda v: isinstance(v, bool),
    "interrupted": lambda v: isinstance(v, bool),
}


def kl_weight(settings, epoch):
    """beta, ramped up linearly over the first ``kl_warmup`` epochs."""
    if settings.kl_warmup <= 0:
        return settings.beta
    return settings.beta * min(1.0, (epoch + 1) / settings.kl_warmup)


@torch.inference_mode()
def mean_elbo(module, x, trim_fraction=0.0):
    """Mean deterministic ELBO of the rows of ``x`` (the validation score),
    leaving out the worst ``trim_fraction`` of rows as training does."""
    module.eval()
    scores = torch.cat(
        [
            elbo(module, x[start : start + EVAL_CHUNK_ROWS])
            for start in range(0, x.shape[0], EVAL_CHUNK_ROWS)
        ]
    )
    return -_batch_loss(-scores.double(), trim_fraction).item()


def _batch_loss(row_losses, trim_fraction):
    """Mean loss of the batch, leaving out its worst ``trim_fraction`` rows.

    Anomalies in the training data are the rows the model fits worst; not
    letting them pull on the weights keeps them anomalous (a trimmed
    likelihood estimator).
    """
    if trim_fraction <= 0 or row_losses.shape[0] < 2:
        return row_losses.mean()
    keep = max(1, int(math.ceil((1.0 - trim_fraction) * row_losses.shape[0])))
    return torch.topk(row_losses, keep, largest=False, sorted=False).values.mean()


def _run_epoch(module, optimizer, x_train, settings, beta, generator):
    """One pass over ``x_train`` in a random order; returns the mean loss,
    or NaN when a loss or the weights left the finite range."""
    module.train()
    n = x_train.shape[0]
    order = torch.randperm(n, generator=generator, device="cpu").to(x_train.device)
    total = 0.0
    for start in range(0, n, settings.batch_size):
        batch = x_train[order[start : start + settings.batch_size]]
        noise = torch.randn(
            (batch.shape[0], module.n_components),
            generator=generator,
            device="cpu",
        ).to(batch.device)
        loss = _batch_loss(-elbo(module, batch, noise, beta), settings.trim_fraction)
        if not torch.isfinite(loss):
            return math.nan
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        total += loss.item() * batch.shape[0]
    # A batch's loss is measured before its step: a step to non-finite
    # weights would otherwise pass as a good epoch (and could be kept as the
    # best one), so it counts as divergence.
    if not all(torch.isfinite(parameter).all() for parameter in module.parameters()):
        return math.nan
    return total / n


class _Weights:
    """Snapshots of a module's weights in preallocated tensors.

    Saving them every epoch (to recover from divergence, and for the best
    epoch) with ``deepcopy(state_dict())`` took a fifth of the training time
    on small data; copying into the same tensors costs next to nothing.
    """

    def __init__(self, module):
        # state_dict values share storage with the live parameters.
        self.live = list(module.state_dict().values())

    def copy(self):
        return [tensor.detach().clone() for tensor in self.live]

    def save(self, snapshot):
        for target, tensor in zip(snapshot, self.live, strict=True):
            target.copy_(tensor)

    def load(self, snapshot):
        with torch.no_grad():
            for tensor, saved in zip(self.live, snapshot, strict=True):
                tensor.copy_(saved)


class _HeldInterrupts:
    """Ctrl-C held back until the block ends, then raised.

    An epoch's bookkeeping (the history, the best and last-good weight
    snapshots) is then all done or not done: a KeyboardInterrupt landing
    half-way left a loss curve longer than the validation curve, or a best
    score recorded without its weights. Signal handlers can only be set from
    the main thread, and only the default one is replaced.
    """

    def __init__(self, raise_pending=True):
        self.raise_pending = raise_pending

    def __enter__(self):
        self.pending = False
        self.previous = None
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self.previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def __exit__(self, exc_type, exc, traceback):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.pending and exc_type is None and self.raise_pending:
            raise KeyboardInterrupt
        return False


def _set_learning_rate(optimizer, learning_rate):
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def _record_best(history, loss, validation_score, tol):
    """Update the best values, as MLPRegressor does.

    Returns (best, significant): whether this epoch is the best so far (its
    weights are kept), and whether it beat the previous best by ``tol``
    (which resets the early-stopping counter).
    """
    if validation_score is not None:
        previous, current = history.best_validation_score, validation_score
    else:
        previous, current = -history.best_loss, -loss
    history.best_loss = min(history.best_loss, loss)
    if validation_score is not None:
        history.best_validation_score = max(previous, current)
    return current > previous, current > previous + tol


def _end_of_epoch(history, loss, validation_score, settings, weights, best_state):
    """Record a finished epoch; keep its weights when best. True: stop early."""
    history.loss_curve.append(loss)
    if validation_score is not None:
        history.validation_scores.append(validation_score)
    history.n_iter += 1
    best, significant = _record_best(history, loss, validation_score, settings.tol)
    warming_up = history.n_iter < settings.kl_warmup
    if best or warming_up:
        weights.save(best_state)
    if significant or warming_up:
        history.epochs_without_improvement = 0
    else:
        history.epochs_without_improvement += 1
    if history.epochs_without_improvement >= settings.n_iter_no_change:
        history.stopped_early = True
        return True
    return False


def train(module, optimizer, x_train, x_val, settings, generator, history=None):
    """Train ``module`` in place for up to ``settings.max_iter`` epochs.

    Early stopping watches the validation ELBO when ``x_val`` is given and the
    training loss otherwise; the best weights seen are restored at the end.
    A non-finite loss restores the last good weights and lowers the step size
    (at most ``MAX_DIVERGENCE_RETRIES`` times). Ctrl-C stops cleanly with the
    best weights so far and a warning.
    """
    history = history or TrainingHistory()
    if history.learning_rate is None:
        history.learning_rate = optimizer.param_groups[0]["lr"]
    _set_learning_rate(optimizer, history.learning_rate)
    weights = _Weights(module)
    best_state = weights.copy()
    good_state = weights.copy()
    retries = 0
    epoch = 0
    progress = tqdm(
        total=settings.max_iter,
        disable=not settings.verbose,
        file=sys.stderr,
        desc="skvae fit",
        unit="epoch",
    )
    grad_enabled = torch.is_grad_enabled()
    held = _HeldInterrupts()
    try:
        while epoch < settings.max_iter:
            with held:
                weights.save(good_state)
            beta = kl_weight(settings, history.n_iter)
            loss = _run_epoch(module, optimizer, x_train, settings, beta, generator)
            if not math.isfinite(loss):
                with held:
                    retries += 1
                    weights.load(good_state)
                    if retries > MAX_DIVERGENCE_RETRIES:
                        raise TrainingDivergedError(
                            "Training diverged: the loss became NaN or infinite "
                            f"{retries} times, even after lowering the learning rate "
                            f"to {history.learning_rate:.3g}. Scale the input or "
                            "lower learning_rate_init."
                        )
                    history.learning_rate /= DIVERGENCE_LR_FACTOR
                    optimizer.state.clear()
                    _set_learning_rate(optimizer, history.learning_rate)
                continue
            validation_score = (
                mean_elbo(module, x_val, settings.trim_fraction) if x_val is not None else None
            )
            with held:
                epoch += 1
                progress.update(1)
                progress.set_postfix(
                    loss=f"{loss:.4g}",
                    **({} if validation_score is None else {"val_elbo": f"{validation_score:.4g}"}),
                )
                if _end_of_epoch(history, loss, validation_score, settings, weights, best_state):
                    break
    except KeyboardInterrupt:
        history.interrupted = True
    except BaseException:
        progress.close()
        raise
    # Training is over: a Ctrl-C from here on must not throw the model away.
    # One landing before the handler is swapped is caught, and the wrap-up,
    # which is idempotent, done again.
    while True:
        try:
            with _HeldInterrupts(raise_pending=False) as final:
                # An interrupt inside a torch context manager's __enter__
                # can leave gradients switched off for the session.
                torch.set_grad_enabled(grad_enabled)
                progress.close()
                weights.load(best_state)
                module.eval()
            break
        except KeyboardInterrupt:
            history.interrupted = True
    history.interrupted = history.interrupted or final.pending
    if history.interrupted:
        warnings.warn(
            f"Training interrupted after {history.n_iter} epochs; "
            "keeping the best weights seen so far.",
            RuntimeWarning,
            stacklevel=3,
        )
    return history
