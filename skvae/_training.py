"""The epoch loop: mini-batches by index slicing, KL warm-up, early stopping,
recovery from a diverging loss and from Ctrl-C. No estimator imports."""

from __future__ import annotations

import math
import signal
import sys
import threading
from dataclasses import dataclass, field, fields

import torch

# tqdm.std, not tqdm.auto: auto warns "IProgress not found" in a notebook without ipywidgets.
from tqdm import tqdm

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
# The default training budget (batch_size="auto", max_iter="auto"): batches
# grow with the data (REFERENCE_BATCH rows up to 32 * REFERENCE_BATCH training
# rows, then about n / 32, at most MAX_AUTO_BATCH) with the step size scaled
# by sqrt(batch / REFERENCE_BATCH), and the number of steps shrinks by the
# same factor: BUDGET_STEPS / sqrt(batch / REFERENCE_BATCH) steps, so the
# distance the weights can travel (steps x step size) is that of BUDGET_STEPS
# reference steps whatever the size of the data; rounded to whole epochs, at
# least MIN_EPOCHS of them. Keeping BUDGET_STEPS steps of ever larger batches
# cost 9 s on 50,000 x 50; counting rows instead (a fixed number of row
# visits) halved the training of 20,000-row data and cost skin, one of the
# benchmark datasets, 0.09 ROC-AUC (0.657 against 0.750, 3 seeds; that rule
# was measured during development and is not kept as an ablation variant).
# 500 reference steps of three times the step size (learning_rate_init 3e-3),
# not 1500 of 1e-3: the same distance in a third of the steps, for the same
# quality (benchmarks/ablation.py, 3 seeds on 16 datasets: contaminated
# 0.8975 -> 0.8956, novelty 0.9235 -> 0.9237). 1500 steps of 1e-3 had been
# better than 1000 of 1e-3 (0.8920 and 0.9198): what counts is the distance.
BUDGET_STEPS = 500
REFERENCE_BATCH = 256
MAX_AUTO_BATCH = 4096
MIN_EPOCHS = 5


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
    # "cosine": the step size anneals from its initial value to 0 over the
    # max_iter epochs of this call; "constant" keeps it.
    schedule: str = "constant"


@dataclass
class TrainingHistory:
    """The cumulative record of every run on one model. The estimator keeps
    it as its public fitted attributes (``loss_curve_``, ``n_iter_``, ...)
    and ``_learning_rate``, and rebuilds it from them for a warm run.

    ``epochs_without_improvement``, ``stopped_early`` and ``interrupted`` say
    how the latest run ended: ``train`` writes them when it returns and never
    reads them, so nothing of one run decides how the next one ends.
    """

    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    n_iter: int = 0
    epochs_without_improvement: int = 0
    learning_rate: float | None = None
    stopped_early: bool = False
    interrupted: bool = False

    @classmethod
    def from_dict(cls, state: dict) -> TrainingHistory:
        """The history a version 1 model file stored (``asdict`` of one);
        ValueError for anything training would not record (a model file may
        have been altered)."""
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


@dataclass
class _Run:
    """The state of one call to ``train``, fresh for every call (as skorch's
    EarlyStopping resets on train begin): the best score whose weights are
    kept (the validation ELBO, or minus the training loss without validation
    rows), the early-stopping patience and how the run ended."""

    best_score: float = -math.inf
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    interrupted: bool = False

    def record_in(self, history):
        history.epochs_without_improvement = self.epochs_without_improvement
        history.stopped_early = self.stopped_early
        history.interrupted = self.interrupted


def training_budget(n_rows, batch_size="auto", max_iter="auto", budget_share=1.0):
    """Rows per batch, number of epochs and step-size factor of a fit on
    ``n_rows`` training rows; ``"auto"`` entries follow the default budget,
    of which an automatic ``max_iter`` takes ``budget_share``.

    An automatic batch larger than ``REFERENCE_BATCH`` scales the step size
    by the square root of the ratio (the gradient noise of a mean over b rows
    falls as 1/sqrt(b)).
    """
    factor = 1.0
    if batch_size == "auto":
        batch_size = REFERENCE_BATCH
        if n_rows > 32 * REFERENCE_BATCH:
            batch_size = min(MAX_AUTO_BATCH, 2 ** int(math.log2(n_rows / 32)))
        factor = math.sqrt(batch_size / REFERENCE_BATCH)
    if max_iter == "auto":
        steps_per_epoch = max(1, math.ceil(n_rows / batch_size))
        steps = BUDGET_STEPS * budget_share / factor
        max_iter = max(MIN_EPOCHS, round(steps / steps_per_epoch))
    return batch_size, max_iter, factor


def cosine_schedule(step, total_steps):
    """Factor of the initial step size at ``step`` of ``total_steps``: 1 at
    the start, half a cosine down to 0 at the end of the budget, so reaching
    the end of the budget is convergence by design (the weights stop moving
    and the loss curve flattens)."""
    if total_steps <= 0:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def kl_weight(settings, epoch):
    """beta, ramped up linearly over the first ``kl_warmup`` epochs."""
    if settings.kl_warmup <= 0:
        return settings.beta
    return settings.beta * min(1.0, (epoch + 1) / settings.kl_warmup)


@torch.inference_mode()
def mean_elbo(module, x, trim_fraction=0.0):
    """Mean deterministic ELBO of the rows of ``x`` (the validation score),
    leaving out the worst ``trim_fraction`` of rows as training does. The
    caller puts the module in evaluation mode (``_set_mode``)."""
    scores = torch.cat(
        [
            elbo(module, x[start : start + EVAL_CHUNK_ROWS])
            for start in range(0, x.shape[0], EVAL_CHUNK_ROWS)
        ]
    )
    return -_batch_loss(-scores.double(), trim_fraction).item()


# None: a batch leaves out its worst trim_fraction of rows. A number c: only
# its rows above median + c robust standard deviations (1.4826 MAD) of the
# batch's losses, at most trim_fraction of them, so that clean data is barely
# trimmed. benchmarks/ablation.py, 3 seeds on 16 datasets, mean ROC-AUC
# contaminated / novelty: the default 0.8956 / 0.9237; c = 3 0.8935 / 0.9315,
# with step size 5e-3 0.8973 / 0.9350 (kNN 0.7426 / 0.9374). Not adopted,
# because of mixed tables: on benchmarks/mixed_types.py's (categories, flags,
# 10% missing) c = 3 lowers the native mean ROC-AUC from 0.849 to 0.777
# (cardio 0.732 -> 0.468, pendigits 0.811 -> 0.686; with 5e-3 and 30 epochs
# of patience, 2026-12-03, branch adopt2), and c = 3 alone does it (at 3e-3:
# cardio 0.465, pendigits 0.621; 5e-3 with the fixed trim: 0.653, 0.918).
# Two earlier objections did not hold up. At 5e-3 early stopping ended small
# clean fits on a noisy plateau (300 rows: epoch 22 of 250, best epoch 56
# without it); 30 epochs of patience fix that and rank the same ("... patience
# 30"). And tests/test_missing_values.py's holey rows fell below its 20th
# percentile only on its small network: with the default network they sit at
# the 41st-48th (the defaults: 42nd-44th), and on benchmarks/missing_share.py's
# tables c = 3 drifts less (mean distance from the 50th percentile at 70%
# missing, elbo: 15.7 against 17.0).
ROBUST_TRIM = None


def robust_cutoff(median, median_deviation):
    """The loss above which ``ROBUST_TRIM`` leaves a row out: the median plus
    ROBUST_TRIM robust standard deviations (1.4826 times the median absolute
    deviation, the standard deviation for Gaussian losses)."""
    return median + ROBUST_TRIM * (1.4826 * median_deviation)


def rows_kept(n_rows, trim_fraction):
    """How many of a batch's ``n_rows`` losses the trimmed loss keeps."""
    if trim_fraction <= 0 or n_rows < 2:
        return n_rows
    return max(1, int(math.ceil((1.0 - trim_fraction) * n_rows)))


def _batch_loss(row_losses, trim_fraction):
    """Mean loss of the batch, leaving out its worst ``trim_fraction`` rows.

    Anomalies in the training data are the rows the model fits worst; not
    letting them pull on the weights keeps them anomalous (a trimmed
    likelihood estimator).
    """
    n = row_losses.shape[0]
    n_drop = n - rows_kept(n, trim_fraction)
    if n_drop == 0:
        return row_losses.mean()
    if ROBUST_TRIM is not None:
        losses = row_losses.detach()
        median = losses.median()
        cutoff = robust_cutoff(median, (losses - median).abs().median())
        n_drop = min(n_drop, int((losses > cutoff).sum()))
    if n_drop == 0:
        return row_losses.mean()
    return torch.topk(row_losses, n - n_drop, largest=False, sorted=False).values.mean()


def _clip_gradients(parameters, max_norm):
    """Scale the gradients down to a global norm of ``max_norm`` when above it.

    The same result as ``torch.nn.utils.clip_grad_norm_``, whose CPU path
    loops in Python over the parameters (two small ops and two copies each:
    about a millisecond, a sixth of a default training step); the foreach
    kernels do it in two calls, and the multiplication by 1 is skipped.
    """
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not gradients:
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients)))
    if total > max_norm:
        torch._foreach_mul_(gradients, max_norm / (total + 1e-6))


def _run_epoch(module, optimizer, x_train, settings, beta, generator, base_lr, epoch):
    """One pass over ``x_train`` in a random order; returns the mean loss,
    or NaN when a loss or the weights left the finite range. ``epoch`` (of
    this call) places its steps on the learning-rate schedule. The caller
    puts the module in training mode (``_set_mode``)."""
    n = x_train.shape[0]
    order = torch.randperm(n, generator=generator, device="cpu").to(x_train.device)
    # One gather per epoch, then contiguous slices: the same batches as
    # indexing per step, for a quarter of a millisecond less per step.
    shuffled = x_train[order]
    parameters = list(module.parameters())
    total = 0.0
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total_steps = settings.max_iter * steps_per_epoch
    for step, start in enumerate(range(0, n, settings.batch_size), epoch * steps_per_epoch):
        if settings.schedule == "cosine":
            _set_learning_rate(optimizer, base_lr * cosine_schedule(step, total_steps))
        batch = shuffled[start : start + settings.batch_size]
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
        _clip_gradients(parameters, MAX_GRAD_NORM)
        optimizer.step()
        total += loss.item() * batch.shape[0]
    # A batch's loss is measured before its step: a step to non-finite
    # weights would otherwise pass as a good epoch (and could be kept as the
    # best one), so it counts as divergence.
    if not _weights_finite(parameters):
        return math.nan
    return total / n


def _weights_finite(parameters):
    """Whether every weight is finite, in two calls (a check per tensor cost
    a fifth of an epoch of one step on small data). The norm overflows only
    for weights far beyond any trained scale, which count as diverged too."""
    norms = torch._foreach_norm([p.detach() for p in parameters])
    return bool(torch.isfinite(torch.stack(norms)).all())


class _Weights:
    """Snapshots of a module's weights in preallocated tensors.

    Saving them every epoch (to recover from divergence, and for the best
    epoch) with ``deepcopy(state_dict())`` took a fifth of the training time
    on small data; copying into the same tensors costs next to nothing.
    """

    def __init__(self, module=None, live=None):
        # state_dict values share storage with the live parameters; ``live``
        # gives such tensors directly (one member's share of a stack).
        self.live = list(module.state_dict().values()) if live is None else live

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


def _set_mode(modules, training):
    """``module.train(training)`` on the flattened ``list(module.modules())``:
    the recursive walk of ``Module.train`` and ``Module.__setattr__`` cost a
    tenth of an epoch of one step on small data, twice per epoch. The flag
    is a plain instance attribute, so writing it directly is what ``train``
    does, without the walk."""
    for submodule in modules:
        submodule.__dict__["training"] = training


def _set_learning_rate(optimizer, learning_rate):
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def _record_best(history, run, loss, validation_score, tol):
    """Update the best values, as MLPRegressor does.

    The epoch is judged against the best epoch of this run only: a warm
    refit's validation rows or data may differ from the previous fit's, and
    measured against that fit's best score a refit could be thrown away
    whole. ``best_loss`` is kept over every run ("the minimum loss reached
    throughout fitting"), ``best_validation_score`` is the kept weights'.

    Returns (best, significant): whether this epoch is the best of the run
    (its weights are kept), and whether it beat the previous best by ``tol``
    (which resets the early-stopping counter).
    """
    previous = run.best_score
    current = validation_score if validation_score is not None else -loss
    run.best_score = max(previous, current)
    history.best_loss = min(history.best_loss, loss)
    if validation_score is not None:
        history.best_validation_score = run.best_score
    return current > previous, current > previous + tol


def _end_of_epoch(history, run, loss, validation_score, settings, weights, best_state):
    """Record a finished epoch; keep its weights when best. True: stop early."""
    history.loss_curve.append(loss)
    if validation_score is not None:
        history.validation_scores.append(validation_score)
    history.n_iter += 1
    best, significant = _record_best(history, run, loss, validation_score, settings.tol)
    warming_up = history.n_iter < settings.kl_warmup
    if best or warming_up:
        weights.save(best_state)
    if significant or warming_up:
        run.epochs_without_improvement = 0
    else:
        run.epochs_without_improvement += 1
    run.stopped_early = run.epochs_without_improvement >= settings.n_iter_no_change
    return run.stopped_early


def progress_bar(settings, desc="skvae fit"):
    """The epochs' progress bar, shown with ``verbose`` on a terminal."""
    return tqdm(
        total=settings.max_iter,
        disable=None if settings.verbose else True,  # None: silent unless stderr is a terminal
        file=sys.stderr,
        desc=desc,
        unit="epoch",
    )


def train(module, optimizer, x_train, x_val, settings, generator, history=None):
    """Train ``module`` in place for up to ``settings.max_iter`` epochs.

    Early stopping watches the validation ELBO when ``x_val`` is given and the
    training loss otherwise; the best weights seen are restored at the end.
    A non-finite loss restores the last good weights and lowers the step size
    (at most ``MAX_DIVERGENCE_RETRIES`` times). Ctrl-C stops cleanly with the
    best weights so far and ``history.interrupted`` set: the caller decides
    whether to keep them (``fit``) or to undo the call (``partial_fit``).
    """
    history = history or TrainingHistory()
    run = _Run()
    if history.learning_rate is None:
        history.learning_rate = optimizer.param_groups[0]["lr"]
    _set_learning_rate(optimizer, history.learning_rate)
    weights = _Weights(module)
    modules = list(module.modules())
    best_state = weights.copy()
    good_state = weights.copy()
    retries = 0
    epoch = 0
    progress = progress_bar(settings)
    grad_enabled = torch.is_grad_enabled()
    held = _HeldInterrupts()
    try:
        while epoch < settings.max_iter:
            with held:
                weights.save(good_state)
            beta = kl_weight(settings, history.n_iter)
            _set_mode(modules, True)
            loss = _run_epoch(
                module, optimizer, x_train, settings, beta, generator, history.learning_rate, epoch
            )
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
            _set_mode(modules, False)
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
                if _end_of_epoch(
                    history, run, loss, validation_score, settings, weights, best_state
                ):
                    break
    except KeyboardInterrupt:
        run.interrupted = True
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
            run.interrupted = True
    run.interrupted = run.interrupted or final.pending
    run.record_in(history)
    return history
