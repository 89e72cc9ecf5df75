"""_BaseVAE: parameters, validation, the fit path, chunked evaluation, pickling.

The estimators in ``_transformer`` and ``_anomaly`` are thin layers over this
class; the numerics live in the torch-only modules it imports.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _likelihoods, _persistence
from ._adam import Adam
from ._adam_state import moments_to_numpy, moments_to_torch
from ._columns import infer_schema, is_frame
from ._device import resolve_device
from ._network import ACTIVATIONS, ColumnLayout, VAEModule
from ._observations import OBSERVATION_MODELS
from ._preprocessing import (
    ColumnMoments,
    column_moments,
    merge_moments,
    standardiser_from_moments,
)
from ._stacked import StackedVAE, batch_plan, can_stack, stacked_moments, train_stacked
from ._training import (
    EVAL_CHUNK_ROWS,
    TrainingHistory,
    TrainingSettings,
    _set_learning_rate,
    train,
    training_budget,
)
from ._warnings import caller_stacklevel

# Scoring pads every chunk to a multiple of this many rows: BLAS picks other
# kernels for very small matrices, and a row's score must not depend on how
# many rows are scored with it (scikit-learn's subset-invariance checks).
PAD_ROWS = 64

SHARED_PARAMETERS_DOC = """n_components : int, default=8
        Dimension of the latent space.

    hidden_layer_sizes : tuple of int, default=(64, 32)
        Widths of the encoder's hidden layers; the decoder mirrors them.

    activation : {"relu", "tanh", "elu", "gelu"}, default="relu"
        Activation of the hidden layers.

    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        Observation model p(x|z) of the numeric columns. ``"gaussian"``
        models standardised numeric columns with a learned variance, so the
        ELBO is a real log-likelihood bound. ``"bernoulli"`` is for data in
        [0, 1] and is fitted without standardisation.

    column_types : dict or None, default=None
        Kind of chosen columns, keyed by column name (or position):
        ``"gaussian"``, ``"bernoulli"`` or ``"categorical"`` (the
        observation model), or, for a DataFrame, ``"datetime"`` (read as
        dates) or ``"ignore"`` (left out). What it declares wins over the
        typing rules. A DataFrame's other columns are typed by rule:
        numbers follow ``likelihood``; ``bool`` columns and integer columns
        of 0 and 1 are Bernoulli; ``category`` and text columns are
        categorical, keeping their 50 most frequent levels and sharing one
        ``"(other)"`` level among the rest and among levels first seen
        after ``fit`` (a column declared categorical keeps every level);
        text that is numbers in disguise (``"3,750"``, ``"$1,658.08"``,
        ``"€ 1.234,50"``, ``"12%"``, ``"(1,234)"``) is parsed as numbers
        with the rule ``fit`` learned (a value that rule cannot read later
        is a ValueError naming it); dates and datetimes
        (``datetime64``, or text in one date format) become days since
        1970-01-01 plus, where they vary, the day of the week and the hour
        as categoricals; durations become seconds; identifiers (an integer
        sequence with one value per row, text with mostly distinct values)
        and columns with no values are left out with a warning naming them.
        ``describe_columns()`` shows what was done. Every column of an
        array follows ``likelihood``; an array of strings is an error
        unless its columns are declared categorical here. The ELBO sums the
        per-column log-likelihoods, in nats per row. Missing values (NaN,
        None, ``pd.NA``) are allowed in every column: the encoder sees 0
        for them plus, for numeric columns that had missing values in
        ``fit``, a missing-value indicator. Training fits the likelihood of
        the observed entries only. Scores count a row with missing entries
        as the mean, over ``n_importance_samples`` latent draws from the
        encoder's posterior given its observed entries, of the score of the
        row completed with the decoder's prediction at that draw (mean,
        probability or most likely category), each completed numeric entry
        then given the noise a real value would show: ``(d - k) / d`` (the
        share of it ``k = n_components`` latent dimensions leave in ``d``
        model columns) of -1/2 nat, the gap between a Gaussian draw's
        expected log-density and the peak, or of the decoder variance for
        squared errors. A missing value neither lowers a row's score nor,
        as a sum over observed entries would, raises it above that of a
        complete row with typical values. A category not
        seen in ``fit`` is scored as the least likely category of its
        column.

    n_importance_samples : int, default=16
        Number K of latent samples used to estimate each row's ELBO (and,
        for the detector, the importance-weighted bound). They are a fixed
        set drawn once from ``random_state`` and shared by every row, so
        scores are deterministic and a row's score does not depend on the
        rows scored with it.

    decoder_variance : {"feature", "sample"}, default="feature"
        Gaussian likelihood only: one learned variance per feature, or one
        per feature and row predicted by the decoder.

    beta : float, default=1.0
        Weight of the KL term (beta-VAE). 1 gives the true ELBO.

    kl_warmup : int, default=0
        Number of epochs over which the KL weight rises linearly from
        ``beta / kl_warmup`` to ``beta``. Early stopping waits for the end of
        the warm-up.

    alpha : float, default=0.0
        L2 penalty (Adam weight decay).

    batch_size : int or "auto", default="auto"
        Rows per mini-batch; inputs with fewer rows train in one batch.
        ``"auto"``: 256 up to 8192 training rows, then about 1/32 of them
        (a power of two, at most 4096), with the step size scaled by
        ``sqrt(batch_size / 256)``.

    learning_rate_init : float, default=3e-3
        Adam step size (at the start of the schedule). Three times Adam's
        usual 1e-3 because the automatic budget is short: the weights travel
        as far in 500 steps as in 1500 of 1e-3, with the same quality on the
        benchmark datasets (benchmarks/RESULTS.md, ablation).

    learning_rate : {"cosine", "constant"}, default="cosine"
        Step-size schedule of ``fit``. ``"cosine"`` anneals the step size
        from ``learning_rate_init`` to 0 over the ``max_iter`` epochs (half
        a cosine, step by step), so the weights settle by the last epoch;
        ``"constant"`` keeps it. ``partial_fit`` always keeps it constant.

    max_iter : int or "auto", default="auto"
        Number of epochs at most. ``"auto"`` is a budget of 500 gradient
        steps of 256 rows on small data; with ``batch_size="auto"`` larger
        data takes larger batches and fewer steps (``500 /
        sqrt(batch_size / 256)``: 240 steps of 1024 rows for 45,000 rows),
        at least 5 epochs, so the cost of a fit grows gently with the number
        of rows; ending the budget with the schedule annealed to 0 is
        convergence. An integer ``max_iter`` that is
        reached before early stopping ends the fit raises a
        ``ConvergenceWarning``, as in ``MLPRegressor``.

    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows and stop when their ELBO
        stops improving; the best weights are restored. When the held-out set
        would have fewer than 2 rows, the training loss is watched instead.

    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.

    n_iter_no_change : int, default=10
        Epochs without an improvement of at least ``tol`` before stopping.

    tol : float, default=1e-4
        Minimum improvement, in nats per row, that counts.

    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the network runs; ``"auto"`` picks CUDA when it is available.

    warm_start : bool, default=False
        Reuse the previous fit's network and scaling as the starting point.
        A warm refit holds out the same validation rows as the first fit
        (on the same data) and keeps the best weights of its own epochs.

    verbose : bool, default=False
        Show a progress bar with the current loss on stderr.

    random_state : int, RandomState instance or None, default=None
        Seeds the torch generators of initialisation, shuffling, the
        validation split and the sampling noise (the split and the scoring
        noise on generators of their own, seeded from the seed the first fit
        draws and warm refits keep). The same integer gives the same model
        and scores on CPU."""


def restore_state_on_failure(method):
    """Leave the estimator exactly as it was when ``method`` raises."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        saved = dict(self.__dict__)
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    return wrapper


def _evaluate_chunks(module, X, mean, scale, function, chunk_rows, dtype):
    """``function(module, (X - mean) / scale)`` in chunks of padded rows.

    Standardises in float64 (as training does) before the cast to ``dtype``,
    so neither means nor values beyond float32 range overflow on the way.
    """
    device = next(module.parameters()).device
    chunk_rows = max(PAD_ROWS, chunk_rows - chunk_rows % PAD_ROWS)
    n = X.shape[0]
    buffer = np.zeros((min(chunk_rows, -(-n // PAD_ROWS) * PAD_ROWS), X.shape[1]), dtype)
    # Standardising into preallocated float64 scratch keeps scoring free of
    # per-chunk allocations.
    scratch = np.empty(buffer.shape, np.float64)
    out = None
    module.eval()
    with torch.inference_mode(), np.errstate(over="ignore"):
        for start in range(0, n, chunk_rows):
            rows = X[start : start + chunk_rows]
            m = rows.shape[0]
            padded = -(-m // PAD_ROWS) * PAD_ROWS
            np.subtract(rows, mean, out=scratch[:m])
            np.divide(scratch[:m], scale, out=scratch[:m])
            buffer[:m] = scratch[:m]
            buffer[m:padded] = 0.0
            x = torch.from_numpy(buffer[:padded]).to(device)
            result = function(module, x)[:m].double().cpu().numpy()
            if out is None:
                out = np.empty((n, *result.shape[1:]), dtype=np.float64)
            out[start : start + m] = result
    return out


def _adam(parameters, learning_rate, weight_decay):
    """Adam (see _adam.py for why not torch.optim's)."""
    return Adam(parameters, lr=learning_rate, weight_decay=weight_decay)


def _check_hidden_layer_sizes(sizes):
    sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
    if not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be a tuple of positive integers, got {sizes!r}.")
    return tuple(int(s) for s in sizes)


def _derived_generator(entropy, spawn_key=()):
    """A torch generator on a stream of its own, derived from ``entropy`` (the
    model's seed and a key) so that it does not depend on any other draw."""
    state = np.random.SeedSequence(entropy, spawn_key=spawn_key).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


# Spawn key of the validation split's stream.
SPLIT_STREAM = (1,)


@dataclass
class _Start:
    """Where a fit starts: the network and optimizer to train, the training
    record to extend, the column statistics, and the seed and generator."""

    module: VAEModule
    optimizer: Adam
    history: TrainingHistory
    moments: ColumnMoments
    mean: np.ndarray
    scale: np.ndarray
    seed: int
    generator: torch.Generator


def _posterior_mean(module, x):
    return module.encode(x)[0]


class _BaseVAE(BaseEstimator):
    """Shared parameters and machinery of the skvae estimators."""

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        "column_types": [dict, None],
        "decoder_variance": [StrOptions({"feature", "sample"})],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "kl_warmup": [Interval(Integral, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "learning_rate": [StrOptions({"cosine", "constant"})],
        "max_iter": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        n_components=8,
        hidden_layer_sizes=(64, 32),
        activation="relu",
        likelihood="gaussian",
        column_types=None,
        decoder_variance="feature",
        n_importance_samples=16,
        beta=1.0,
        kl_warmup=0,
        alpha=0.0,
        batch_size="auto",
        learning_rate_init=3e-3,
        learning_rate="cosine",
        max_iter="auto",
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        device="auto",
        warm_start=False,
        verbose=False,
        random_state=None,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.likelihood = likelihood
        self.column_types = column_types
        self.decoder_variance = decoder_variance
        self.n_importance_samples = n_importance_samples
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state

    # ------------------------------------------------------------------ input
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _validate_input(self, X, *, reset, for_fit=False):
        """``X`` as a float matrix with one column per input column: numeric
        values, category codes, NaN where missing. ``reset`` fits the column
        schema (``column_schema_``) as ``validate_data`` fits
        ``n_features_in_``."""
        # Fitting needs two rows: one row has no spread to standardise by.
        min_rows = 2 if for_fit else 1
        declared = (self.column_types or {}).values()
        if is_frame(X):
            validate_data(self, X, reset=reset, skip_check_array=True)
            _check_frame_shape(X, min_rows)
            schema = self._schema(X, reset)
            encoded = schema.encode(X)
        elif "categorical" in declared if reset else self.column_schema_.needs_encoding:
            X = validate_data(
                self,
                X,
                reset=reset,
                dtype=None,
                ensure_all_finite=False,
                ensure_min_samples=min_rows,
            )
            schema = self._schema(X, reset)
            encoded = schema.encode(X)
        else:
            # Plain numeric arrays: no per-column work, so scoring stays fast.
            encoded = validate_data(
                self,
                X,
                reset=reset,
                dtype=[np.float64, np.float32],
                ensure_all_finite="allow-nan",
                ensure_min_samples=min_rows,
            )
            schema = self._schema(encoded, reset)
            _check_support(encoded, schema)
        if reset:
            _check_every_column_observed(encoded, schema)
            fixed = getattr(self, "_fixed_schema", None) is not None
            self.column_schema_ = schema if fixed else schema.with_masks(encoded)
        return encoded

    def _schema(self, X, reset):
        if not reset:
            return self.column_schema_
        # A fit's cross-conformal fold models read the columns as the fitted
        # model does (``_fixed_schema``), not as their fewer rows suggest.
        fixed = getattr(self, "_fixed_schema", None)
        if fixed is not None:
            return fixed
        return infer_schema(X, self.column_types, self.likelihood)

    # -------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    @restore_state_on_failure
    def partial_fit(self, X, y=None):
        """One epoch over the batch X: streaming training for out-of-core data.

        scikit-learn's incremental contract (as ``MLPRegressor``'s): the first
        call initialises the model and fixes ``n_features_in_`` and the
        feature names; each later call continues it, whatever ``warm_start``
        says. A call runs one epoch of mini-batches over X with no validation
        split (``max_iter``, ``early_stopping`` and
        ``n_iter_no_change`` do not apply), so pass batches of the data in a
        random order. The Adam state carries over between calls. Ctrl-C
        during a call raises KeyboardInterrupt and leaves the estimator as
        the previous call left it.

        Standardisation: the column means and variances are updated with
        every batch (Chan et al.'s merge of counts, means and sums of squared
        deviations; constant columns get scale 1, as in ``fit``), so they
        converge to those of all the rows seen, and calling ``partial_fit``
        once on X standardises as ``fit(X)`` does. So that training already
        done is not thrown off by the change of units, the network's input
        and output layers are re-expressed in the new scaling: the model, as
        a density over rows in the original units, is unchanged by the
        update itself.

        Column typing: the first call fixes ``column_schema_`` (the
        observation model and categories of each column, and which columns
        get a missing-value indicator), so it must see every column observed
        at least once. Later batches are encoded with it: a category they
        bring is scored as at ``score_samples`` time (the least likely
        category), and missing values in columns without an indicator are
        left out of the likelihood.

        VAEAnomalyDetector sets ``offset_`` and ``calibration_scores_`` from
        this batch's scores; its ``calibrate`` sets them from held-out rows
        instead.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of training rows; at least 1.
        y : Ignored

        Returns
        -------
        self : object

        Examples
        --------
        >>> import numpy as np
        >>> from skvae import VAETransformer
        >>> X = np.random.RandomState(0).normal(size=(1000, 3))
        >>> vae = VAETransformer(n_components=2, random_state=0)
        >>> for batch in np.array_split(X, 10):
        ...     vae = vae.partial_fit(batch)
        >>> vae.n_iter_
        10
        >>> bool(np.allclose(vae.mean_, X.mean(axis=0)))
        True
        """
        self._fit(X, incremental=True)
        return self

    def _fit(self, X, incremental=False):
        """Validate, standardise, train; sets every fitted attribute.

        ``fit`` trains for up to ``max_iter`` epochs (continuing the previous
        model with ``warm_start``). ``incremental=True`` is ``partial_fit``:
        the first call initialises; every call merges X into the running
        column statistics, re-expresses the network in the refined scaling
        and runs one epoch over X, without a validation split.

        The mode is read once: a first pass starts from ``_initialise``, any
        other from ``_resume`` (``prepare_fit``, which the detector's stacked
        fits share); both end in the shared ``_train_prepared``.

        Returns the validated X and the indices of its held-out validation
        rows (None without a validation set): rows the weights never trained
        on, which the detector calibrates its p-values on.
        """
        first_pass = not hasattr(self, "module_") or (not self.warm_start and not incremental)
        return self._train_prepared(prepare_fit(self, X, incremental, first_pass), incremental)

    def _initialise(self, X, hidden, device):
        """A new network, column statistics and history for ``X``; the seed
        drawn here stays the model's for its lifetime."""
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        generator = torch.Generator().manual_seed(seed)
        moments = column_moments(X)
        mean, scale = self._scaling(moments)
        module = VAEModule(
            X.shape[1],
            self.n_components,
            hidden,
            self.activation,
            self.likelihood,
            self.decoder_variance,
            layout=self.column_schema_.layout,
        )
        module.reset_parameters(generator)
        module.to(device)
        optimizer = _adam(module.parameters(), self.learning_rate_init, self.alpha)
        return _Start(module, optimizer, TrainingHistory(), moments, mean, scale, seed, generator)

    def _resume(self, X, device, incremental):
        """The fitted model, copied, as the starting point of a warm ``fit``
        (fresh Adam state) or a ``partial_fit`` call (Adam state carried over;
        the batch merged into the column statistics and the network
        re-expressed in the refined units)."""
        module = copy.deepcopy(self.module_).to(device)
        history = self._resumed_history()
        moments, mean, scale = self._moments, self.mean_, self.scale_
        optimizer = _adam(module.parameters(), self.learning_rate_init, self.alpha)
        if not incremental:
            generator = torch.Generator().manual_seed(self._draw_seed())
            return _Start(module, optimizer, history, moments, mean, scale, self._seed, generator)
        # One stream per call, reproducible from random_state.
        generator = _derived_generator([self._seed, self.n_iter_])
        moments = merge_moments(moments, column_moments(X))
        mean, scale = self._scaling(moments)
        module.change_input_units(scale / self.scale_, (mean - self.mean_) / self.scale_)
        state = moments_to_torch(self._optimizer_state, device)
        optimizer.load_state_dict({**optimizer.state_dict(), "state": state})
        return _Start(module, optimizer, history, moments, mean, scale, self._seed, generator)

    def _resumed_history(self):
        """The training record a warm run extends, rebuilt from the fitted
        attributes. The flags of how the last run ended are not carried:
        ``train`` never reads them."""
        return TrainingHistory(
            loss_curve=list(self.loss_curve_),
            validation_scores=list(self.validation_scores_ or []),
            best_loss=self.best_loss_,
            best_validation_score=(
                -math.inf if self.best_validation_score_ is None else self.best_validation_score_
            ),
            n_iter=self.n_iter_,
            learning_rate=self._learning_rate,
        )

    def _draw_seed(self):
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _train_prepared(self, prepared, incremental):
        """Train ``prepared.start.module`` (one epoch without a validation
        split when ``incremental``) and set the fitted attributes from it.
        Returns the validated X and the indices of the held-out validation
        rows, or None."""
        start = prepared.start
        history = train(
            start.module,
            start.optimizer,
            prepared.x_train,
            prepared.x_val,
            prepared.settings,
            start.generator,
            start.history,
        )
        if incremental and history.interrupted:
            # Ctrl-C stops a streaming loop; restore_state_on_failure undoes
            # the whole call (the batch's statistics and Adam steps included):
            # a call keeps its epoch or nothing, never half an update.
            raise KeyboardInterrupt
        validated = prepared.x_val is not None
        self._store_training(start, prepared.device, history, validated, incremental)
        return prepared.X, prepared.held_out

    def _training_setup(self, X, start, device, incremental):
        """The training rows, validation rows (or None), the validation rows'
        indices in X (or None) and the ``TrainingSettings`` of a run on X;
        sets ``start.optimizer``'s initial step size."""
        x_all = torch.from_numpy(self._standardise(X, start.mean, start.scale)).to(device)
        if incremental:
            x_train, x_val, held_out = x_all, None, None
        else:
            x_train, x_val, held_out = self._split(x_all, start.seed)
        batch_size, max_iter, lr_factor = training_budget(
            x_train.shape[0],
            self.batch_size,
            1 if incremental else self.max_iter,
            getattr(self, "_budget_share", 1.0),
        )
        # The step size a first run starts from (a warm run keeps the one its
        # history carries): larger automatic batches take larger steps.
        _set_learning_rate(start.optimizer, self.learning_rate_init * lr_factor)
        settings = TrainingSettings(
            batch_size=batch_size,
            max_iter=max_iter,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            beta=self.beta,
            kl_warmup=self.kl_warmup,
            trim_fraction=self._trim_fraction(),
            verbose=bool(self.verbose),
            schedule="constant" if incremental else self.learning_rate,
        )
        return x_train, x_val, held_out, settings

    def _store_training(self, start, device, history, validated, incremental):
        """Set the fitted attributes from a finished run on ``start.module``
        (``validated``: it had validation rows); warn when it was
        interrupted or cut short by a chosen ``max_iter``."""
        self._moments = start.moments
        self.mean_, self.scale_ = start.mean, start.scale
        self.module_ = start.module
        self.device_ = device
        self._optimizer_state = moments_to_numpy(start.optimizer.state_dict()["state"])
        self._seed = start.seed
        # The public attributes are the training record; a warm run rebuilds
        # its history from them (``_resumed_history``), plus the step size, which
        # divergence may have lowered below learning_rate_init.
        self.loss_curve_ = list(history.loss_curve)
        self.best_loss_ = history.best_loss
        self.n_iter_ = history.n_iter
        self._learning_rate = history.learning_rate
        if incremental:
            # partial_fit has no validation set: a first call has no scores,
            # a later one keeps those of the fit it continues.
            self.validation_scores_ = getattr(self, "validation_scores_", None)
            self.best_validation_score_ = getattr(self, "best_validation_score_", None)
            return
        self.validation_scores_ = list(history.validation_scores) if validated else None
        self.best_validation_score_ = history.best_validation_score if validated else None
        if history.interrupted:
            warnings.warn(
                f"Training interrupted after {history.n_iter} epochs; "
                "keeping the best weights seen so far.",
                RuntimeWarning,
                stacklevel=caller_stacklevel(),
            )
        # The automatic budget ends by design; a chosen max_iter that cuts
        # training short is worth a warning, as in MLPRegressor.
        elif self.max_iter != "auto" and not history.stopped_early:
            self._warn_not_converged()

    def _warn_not_converged(self):
        warnings.warn(
            f"{type(self).__name__} reached max_iter={self.max_iter} epochs "
            "without converging; increase max_iter.",
            ConvergenceWarning,
            stacklevel=caller_stacklevel(),
        )

    def _trim_fraction(self):
        """Share of each batch left out of the loss; the detector overrides it."""
        return 0.0

    def _scaling(self, moments):
        """Means and scales of the Gaussian columns; 0 and 1 for the others
        (probabilities and category codes are used as they are)."""
        gaussian = np.array([kind == "gaussian" for kind in self.column_schema_.kinds])
        mean, scale = standardiser_from_moments(moments)
        mean[~gaussian], scale[~gaussian] = 0.0, 1.0
        return mean, scale

    @staticmethod
    def _standardise(X, mean, scale):
        return ((X - mean) / scale).astype(np.float32)

    def _split(self, x_all, seed):
        """Training rows, validation rows and the validation rows' indices;
        no validation set (None, None) when it would be tiny.

        The split has a random stream of its own, derived from the model's
        seed (drawn when it was initialised and kept by warm refits), so it
        does not depend on the draws made before it: a warm refit on the same
        rows holds out the same rows as the fit it continues, and
        ``calibration_scores_`` stays scores of rows no run trained on.
        """
        n = x_all.shape[0]
        n_val = int(math.floor(self.validation_fraction * n)) if self.early_stopping else 0
        if n_val < 2 or n - n_val < 2:
            return x_all, None, None
        order = torch.randperm(n, generator=_derived_generator(seed, SPLIT_STREAM))
        held_out = order[:n_val].numpy()
        order = order.to(x_all.device)
        return x_all[order[n_val:]], x_all[order[:n_val]], held_out

    # ------------------------------------------------------------- evaluation
    def _evaluate(self, X, function, chunk_rows=EVAL_CHUNK_ROWS, standardise=True):
        """Apply ``function(module, x_standardised)`` to ``X`` chunk by chunk.

        Memory stays bounded by the chunk whatever the size of ``X``; results
        come back as a float64 array with one row per row of ``X``. Rows whose
        result overflows float32 (values some 1e19 standard deviations from
        the training data, such as 1e30 sentinels) are evaluated again in
        float64; a row that overflows even there is a ValueError, never a
        NaN or infinite result. ``standardise=False`` passes ``X`` as it is
        (latent points).

        Nothing is written to shared state, so threads may score at once.
        """
        mean, scale = (self.mean_, self.scale_) if standardise else (0.0, 1.0)
        out = _evaluate_chunks(self.module_, X, mean, scale, function, chunk_rows, np.float32)
        bad = ~np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1)
        if bad.any():
            # A float64 copy, local to this call: the fitted module is never changed.
            module = copy.deepcopy(self.module_).double()
            out[bad] = _evaluate_chunks(
                module, X[bad], mean, scale, function, chunk_rows, np.float64
            )
            bad = ~np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            with np.errstate(all="ignore"):
                reach = np.nanmax(np.abs((X[rows] - mean) / scale))
            raise ValueError(
                f"{rows.size} row(s) of X (row {rows[0]} first) are too far from the "
                f"training data to evaluate: they reach {reach:.3g} in the model's "
                "standardised units, beyond float64 range. Check X for sentinel "
                "values or values in the wrong units."
            )
        return out

    def _log_jacobian(self):
        """log|d standardised / d original| of a row (nats). The same for
        every row: a missing entry is scored at its expected log-likelihood,
        which carries its column's term as an observed one does."""
        return -float(np.sum(np.log(self.scale_)))

    def _importance_noise(self, completions=False):
        """The fixed, seeded standard normal draws shared by every row: the
        latent noise of the importance samples or, with ``completions``, of
        the completions of missing entries (drawn after it, so apart)."""
        generator = torch.Generator().manual_seed(self._seed)
        shape = (self.n_importance_samples, self.n_components)
        noise = torch.randn(shape, generator=generator)
        if completions:
            noise = torch.randn(shape, generator=generator)
        return noise.to(self.device_)

    def _evaluate_scores(self, X, function, gap, chunk_rows=EVAL_CHUNK_ROWS):
        """``_evaluate`` for a per-row score or its per-feature terms: a row
        with missing entries gets the expected value of ``function`` over
        ``n_importance_samples`` completions by the model's prediction of
        them, plus what typical values would add to the ``gap``
        (``"log_prob"`` or ``"squared_error"``) of the completed entries
        (_likelihoods.mean_over_completions)."""
        if not np.isnan(np.sum(X)):
            return self._evaluate(X, function, chunk_rows)
        noise = self._importance_noise(completions=True)

        def completed(module, x):
            return _likelihoods.mean_over_completions(function, module, x, noise, gap)

        return self._evaluate(X, completed, max(1, chunk_rows // self.n_importance_samples))

    def _evaluate_bound(self, X, bound):
        """Per-row ``bound`` (mc_elbo or iwae_bound) of validated ``X`` with
        the shared samples, in nats of the original units."""
        noise = self._importance_noise()

        def function(module, x):
            return bound(module, x, noise)

        chunk = EVAL_CHUNK_ROWS // self.n_importance_samples
        return self._evaluate_scores(X, function, "log_prob", chunk) + self._log_jacobian()

    def _elbo(self, X):
        """Per-row ELBO of validated ``X``, in nats of the original units."""
        return self._evaluate_bound(X, _likelihoods.mc_elbo)

    def _latent_means(self, X):
        """Posterior means of the rows of ``X``: ``transform`` and ``embed``."""
        check_is_fitted(self)
        return self._evaluate(self._validate_input(X, reset=False), _posterior_mean)

    def describe_columns(self):
        """How each column of the training data was read and modelled.

        Returns
        -------
        columns : DataFrame
            One row per column of X: ``column``, ``dtype``, ``read as``
            (for example ``"text -> number (thousands ',')"``, ``"text ->
            date (%Y-%m-%d) -> days since 1970 + weekday"``, ``"number"``,
            ``"category (12 levels)"``), ``modelled as`` (the observation
            model of each model column, or ``"left out"``), ``missing`` (the
            share of missing values in the rows ``fit`` typed the columns
            on; NaN when a model file of a plain table does not know it) and
            ``left out because``.

        Examples
        --------
        >>> import pandas as pd
        >>> from skvae import VAEAnomalyDetector
        >>> X = pd.DataFrame({"price": ["$1,250.00", "$980.50", "$1,100.00"] * 20,
        ...                   "size": [1.0, 2.0, 3.0] * 20})
        >>> detector = VAEAnomalyDetector(max_iter=2, random_state=0).fit(X)
        >>> table = detector.describe_columns()
        >>> table["read as"].tolist()
        ["text -> number (thousands ',', currency '$')", 'number']
        >>> table["modelled as"].tolist()
        ['gaussian', 'gaussian']
        """
        check_is_fitted(self)
        return self.column_schema_.describe(self._moments)

    def score(self, X, y=None):
        """Mean ELBO of the rows of ``X``, in nats (higher is better).

        Lets ``GridSearchCV`` tune the model without labels, as
        ``GaussianMixture.score`` does.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        return float(np.mean(self._elbo(self._validate_input(X, reset=False))))

    # ------------------------------------------------------------ model files
    def _check_loaded_state(self):
        """Raise ValueError when loaded attributes could not come from one fit."""
        n = self.n_features_in_
        schema = self.column_schema_
        names = getattr(self, "feature_names_in_", None)
        if schema.n_inputs != n or (
            names is not None and schema.names is not None and schema.names != list(names)
        ):
            raise ValueError(f"the column schema must describe the {n} feature columns")
        # The network, scaling and moments are per model column.
        m = schema.n_columns
        config = self.module_.config()
        expected = {
            "n_features": m,
            "n_components": self.n_components,
            "hidden_layer_sizes": list(_check_hidden_layer_sizes(self.hidden_layer_sizes)),
            "activation": self.activation,
            "likelihood": self.likelihood,
            "decoder_variance": self.decoder_variance,
        }
        if schema.layout != ColumnLayout.uniform(m, self.likelihood):
            expected["layout"] = schema.layout.to_dict()
        if config != expected:
            raise ValueError(f"the network {config} does not match the parameters {expected}")
        if self.mean_.shape != (m,) or self.scale_.shape != (m,) or np.any(self.scale_ <= 0):
            raise ValueError(f"mean_ and scale_ must hold {m} values, scale_ positive")
        if names is not None and names.shape != (n,):
            raise ValueError(f"feature_names_in_ must hold {n} names")
        if self._moments.mean.shape != (m,):
            raise ValueError(f"the column moments must hold {m} values")
        mean, scale = self._scaling(self._moments)
        if not (np.array_equal(mean, self.mean_) and np.array_equal(scale, self.scale_)):
            raise ValueError("mean_ and scale_ are not those of the stored column moments")
        if len(self.loss_curve_) != self.n_iter_:
            raise ValueError(f"loss_curve_ must hold n_iter_={self.n_iter_} values")
        if not self._learning_rate > 0:
            raise ValueError(f"the step size {self._learning_rate} is not positive")
        if (self.validation_scores_ is None) != (self.best_validation_score_ is None):
            raise ValueError("validation_scores_ and best_validation_score_ go together")
        for categories in schema.categories:
            if categories is not None and (
                not all(isinstance(c, (str, int, float)) for c in categories)
                or len(set(categories)) != len(categories)
            ):
                raise ValueError("the categories of a column must be distinct plain values")

    def save(self, path):
        """Write the fitted estimator to a model file that ``skvae.load`` reads.

        The file (a zip of JSON and ``.npy`` arrays) holds no pickled
        objects, so loading one cannot run code, unlike pickle and joblib
        files, which must only be loaded from trusted sources.

        Parameters
        ----------
        path : str, path-like or binary file object
        """
        check_is_fitted(self)
        _persistence.save(self, path)

    @classmethod
    def load(cls, path, *, device="cpu"):
        """Read an estimator of this class written by ``save``.

        See :func:`skvae.load`; raises ``ModelFileError`` also when the file
        holds another estimator class.
        """
        return _persistence.load(path, {cls.__name__: cls}, device=device)

    # --------------------------------------------------------------- pickling
    def __getstate__(self):
        # object.__getstate__ may hand back the live __dict__: copy it.
        state = dict(super().__getstate__())
        if "module_" in state:
            # A model fitted on a GPU must load on a CPU-only machine.
            state["module_"] = copy.deepcopy(state["module_"]).cpu()
            state["device_"] = "cpu"
        return state


@dataclass
class PreparedFit:
    """A run of ``fit`` or ``partial_fit`` up to its training: the validated
    X, the network to train (``start``), its device, training and validation
    rows, the indices of the validation rows in X, and the training
    settings."""

    X: object
    start: _Start
    device: object
    x_train: torch.Tensor
    x_val: torch.Tensor | None
    held_out: np.ndarray | None
    settings: TrainingSettings


def prepare_fit(estimator, X, incremental=False, first_pass=True):
    """What ``fit`` (or, ``incremental``, ``partial_fit``) does before
    training: on a new network for a ``first_pass``, else on a copy of the
    fitted one; raises what it raises for bad input."""
    hidden = _check_hidden_layer_sizes(estimator.hidden_layer_sizes)
    device = resolve_device(estimator.device)
    X = estimator._validate_input(X, reset=first_pass, for_fit=not incremental)
    if first_pass:
        start = estimator._initialise(X, hidden, device)
    else:
        start = estimator._resume(X, device, incremental)
    setup = estimator._training_setup(X, start, device, incremental)
    return PreparedFit(X, start, device, *setup)


def fit_stacked(estimators, prepared, lead):
    """Train the prepared first fits (``prepare_fit``) as one stack
    (``skvae._stacked``) and set each estimator's fitted attributes as its
    ``fit`` would. Returns False, with nothing trained, when they cannot be
    stacked: another architecture or column layout, device or step size,
    validation rows for some only, or a training set with fewer rows than
    the steps of an epoch. Raises ``StackedDivergence`` when a member
    diverges (the caller then fits them one by one, where divergence has its
    own recovery).

    Member ``lead`` trains exactly as its own fit would. The others take its
    budget, schedule and steps per epoch: their own batches where those make
    as many steps, else as many nearly equal ones.
    """
    leader = prepared[lead]
    steps = math.ceil(leader.x_train.shape[0] / leader.settings.batch_size)
    plans = [batch_plan(p.x_train.shape[0], leader.settings.batch_size, steps) for p in prepared]
    rates = {p.start.optimizer.param_groups[0]["lr"] for p in prepared}
    modules = [p.start.module for p in prepared]
    if (
        len({p.device for p in prepared}) > 1
        or len(rates) > 1
        or None in plans
        or not can_stack(modules, [p.x_train for p in prepared], [p.x_val for p in prepared])
    ):
        return False
    stack = StackedVAE(modules)
    optimizer = _adam(stack.parameters(), rates.pop(), estimators[lead].alpha)
    histories = train_stacked(
        stack,
        optimizer,
        [p.x_train for p in prepared],
        [p.x_val for p in prepared],
        leader.settings,
        [p.start.generator for p in prepared],
        plans,
    )
    members = zip(estimators, prepared, histories, strict=True)
    for k, (estimator, fit, history) in enumerate(members):
        fit.start.optimizer.load_state_dict({"state": stacked_moments(optimizer, k)})
        estimator._store_training(fit.start, fit.device, history, fit.x_val is not None, False)
    return True


def _check_frame_shape(X, min_rows):
    """check_array's messages for a DataFrame that is too small."""
    if X.shape[1] == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if X.shape[0] < min_rows:
        raise ValueError(
            f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of "
            f"{min_rows} is required."
        )


def _check_support(X, schema):
    """ValueError unless each column of the array ``X`` holds values its
    observation model can take (a frame's are checked as they are encoded)."""
    if X.shape[0] == 0:
        return
    for j, kind in enumerate(schema.kinds):
        OBSERVATION_MODELS[kind].check_support(X[:, j], str(j))


def _check_every_column_observed(X, schema):
    empty = np.flatnonzero(np.isnan(X).all(axis=0)) if X.shape[0] else []
    if len(empty):
        names = [schema.model_names[j] for j in empty] if schema.names else list(empty)
        raise ValueError(
            f"Column(s) {names} of X hold no observed value (all missing); "
            "skvae cannot learn a column it never sees. Drop them before fitting."
        )
