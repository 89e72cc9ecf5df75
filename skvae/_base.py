"""_BaseVAE: parameters, validation, the fit path, chunked evaluation, pickling.

The estimators in ``_transformer`` and ``_anomaly`` are thin layers over this
class; the numerics live in the torch-only modules it imports.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _likelihoods, _persistence
from ._adam_state import moments_to_numpy, moments_to_torch
from ._columns import infer_schema, is_frame
from ._device import resolve_device
from ._network import ACTIVATIONS, ColumnLayout, VAEModule
from ._preprocessing import column_moments, merge_moments, standardiser_from_moments
from ._training import EVAL_CHUNK_ROWS, TrainingHistory, TrainingSettings, train

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
        Observation model of chosen columns, keyed by column name (or
        position), each ``"gaussian"``, ``"bernoulli"`` or ``"categorical"``;
        it overrides the model inferred for them. Inferred, for a DataFrame:
        ``category``, ``object`` and string columns are categorical (softmax
        over the categories seen in ``fit``), ``bool`` columns and integer
        columns holding only 0 and 1 are Bernoulli, other numeric columns
        follow ``likelihood``. Every column of an array follows
        ``likelihood``; an array of strings is an error unless its columns
        are declared categorical here. The ELBO sums the per-column
        log-likelihoods, in nats per row. Missing values (NaN, None,
        ``pd.NA``) are allowed in every column: the encoder sees 0 for them
        plus, for numeric columns that had missing values in ``fit``, a
        missing-value indicator, and the likelihood sums over the observed
        entries only (a row with no observed value scores minus its KL
        term). A category not seen in ``fit`` is scored as the least likely
        category of its column.

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

    batch_size : int, default=256
        Rows per mini-batch; inputs with fewer rows train in one batch.

    learning_rate_init : float, default=1e-3
        Adam step size.

    max_iter : int, default=200
        Maximum number of epochs.

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

    verbose : bool, default=False
        Show a progress bar with the current loss on stderr.

    random_state : int, RandomState instance or None, default=None
        Seeds one torch generator for initialisation, shuffling, the
        validation split and the sampling noise. The same integer gives the
        same model and scores on CPU."""


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
    """Adam, fused into one kernel where this torch build supports it (about
    a third faster training on CPU; same results up to float rounding)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay)


def _check_hidden_layer_sizes(sizes):
    sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
    if not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be a tuple of positive integers, got {sizes!r}.")
    return tuple(int(s) for s in sizes)


def _one_epoch(module, optimizer, x, settings, generator, history):
    """One pass over ``x`` (a ``partial_fit`` call), recorded in ``history``.

    The loop runs with a history of its own: restoring the "best" weights
    of a single epoch would undo it whenever this batch's loss is worse than
    an earlier batch's.
    """
    step = TrainingHistory(n_iter=history.n_iter, learning_rate=history.learning_rate)
    step = train(module, optimizer, x, None, settings, generator, step)
    history.loss_curve.extend(step.loss_curve)
    history.best_loss = min(history.best_loss, step.best_loss)
    history.n_iter = step.n_iter
    history.learning_rate = step.learning_rate
    history.interrupted = step.interrupted
    return history


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
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
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
        batch_size=256,
        learning_rate_init=1e-3,
        max_iter=200,
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
        elif "categorical" in declared if reset else self.column_schema_.has_categorical:
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
            self._check_bernoulli_range(encoded, schema)
        if reset:
            _check_every_column_observed(encoded, schema)
            self.column_schema_ = schema.with_masks(encoded)
        return encoded

    def _schema(self, X, reset):
        if reset:
            return infer_schema(X, self.column_types, self.likelihood)
        return self.column_schema_

    def _check_bernoulli_range(self, X, schema):
        columns = [j for j, kind in enumerate(schema.kinds) if kind == "bernoulli"]
        if not columns or X.shape[0] == 0:
            return
        values = X[:, columns]
        observed = values[~np.isnan(values)]
        if observed.size and (observed.min() < 0 or observed.max() > 1):
            raise ValueError(
                "likelihood='bernoulli' needs every value of X in [0, 1]; got "
                f"values in [{observed.min():.3g}, {observed.max():.3g}]. Use "
                "likelihood='gaussian' for other numeric data."
            )

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
        random order. The Adam state carries over between calls.

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

        Returns the validated X and the indices of its held-out validation
        rows (None without a validation set): rows the weights never trained
        on, which the detector calibrates its p-values on.
        """
        hidden = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        device = resolve_device(self.device)
        first_pass = not hasattr(self, "module_") or (not self.warm_start and not incremental)
        X = self._validate_input(X, reset=first_pass, for_fit=not incremental)
        if first_pass or not incremental:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            generator = torch.Generator().manual_seed(seed)
        else:
            # One stream per call, reproducible from random_state.
            seed = self._seed
            stream = np.random.SeedSequence([seed, self.n_iter_]).generate_state(1)[0]
            generator = torch.Generator().manual_seed(int(stream))

        if first_pass:
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
            history = TrainingHistory()
        else:
            module = copy.deepcopy(self.module_).to(device)
            history = copy.deepcopy(self._history)
            history.epochs_without_improvement = 0
            moments, mean, scale = self._moments, self.mean_, self.scale_
            if incremental:
                moments = merge_moments(moments, column_moments(X))
                mean, scale = self._scaling(moments)
                module.change_input_units(scale / self.scale_, (mean - self.mean_) / self.scale_)

        x_all = torch.from_numpy(self._standardise(X, mean, scale)).to(device)
        if incremental:
            x_train, x_val, held_out = x_all, None, None
        else:
            x_train, x_val, held_out = self._split(x_all, generator)
        optimizer = _adam(module.parameters(), self.learning_rate_init, self.alpha)
        if incremental and not first_pass:
            state = moments_to_torch(self._optimizer_state, device)
            optimizer.load_state_dict({**optimizer.state_dict(), "state": state})
        settings = TrainingSettings(
            batch_size=self.batch_size,
            max_iter=1 if incremental else self.max_iter,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            beta=self.beta,
            kl_warmup=self.kl_warmup,
            trim_fraction=self._trim_fraction(),
            verbose=bool(self.verbose),
        )
        if incremental:
            history = _one_epoch(module, optimizer, x_train, settings, generator, history)
        else:
            history = train(module, optimizer, x_train, x_val, settings, generator, history)

        self._moments = moments
        self.mean_, self.scale_ = mean, scale
        self.module_ = module
        self.device_ = device
        self._optimizer_state = moments_to_numpy(optimizer.state_dict()["state"])
        self._seed = seed
        self._history = history
        self.loss_curve_ = list(history.loss_curve)
        self.best_loss_ = history.best_loss
        self.n_iter_ = history.n_iter
        if incremental:
            if first_pass:
                self.validation_scores_ = self.best_validation_score_ = None
            return X, held_out
        self.validation_scores_ = list(history.validation_scores) if x_val is not None else None
        self.best_validation_score_ = history.best_validation_score if x_val is not None else None
        if not (history.stopped_early or history.interrupted):
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} epochs "
                "without converging; increase max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return X, held_out

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

    def _split(self, x_all, generator):
        """Training rows, validation rows and the validation rows' indices;
        no validation set (None, None) when it would be tiny."""
        n = x_all.shape[0]
        n_val = int(math.floor(self.validation_fraction * n)) if self.early_stopping else 0
        if n_val < 2 or n - n_val < 2:
            return x_all, None, None
        order = torch.randperm(n, generator=generator)
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

    def _log_jacobian(self, X):
        """log|d standardised / d original| of each row of validated ``X``,
        summed over its observed entries (nats): a scalar when none is
        missing."""
        log_scale = np.log(self.scale_)
        total = -float(np.sum(log_scale))
        # A sum is NaN when any entry is: one pass, no mask allocated.
        if not np.isnan(np.sum(X)):
            return total
        # Only columns with a scale other than 1 (Gaussian ones) count; the
        # float mask keeps the product in BLAS.
        scaled = np.flatnonzero(log_scale)
        missing = np.isnan(X[:, scaled]).astype(np.float64)
        return total + missing @ log_scale[scaled]

    def _importance_noise(self):
        """The fixed, seeded standard normal draws shared by every row."""
        generator = torch.Generator().manual_seed(self._seed)
        noise = torch.randn((self.n_importance_samples, self.n_components), generator=generator)
        return noise.to(self.device_)

    def _evaluate_bound(self, X, bound):
        """Per-row ``bound`` (mc_elbo or iwae_bound) of validated ``X`` with
        the shared samples, in nats of the original units."""
        noise = self._importance_noise()

        def function(module, x):
            return bound(module, x, noise)

        chunk = EVAL_CHUNK_ROWS // self.n_importance_samples
        return self._evaluate(X, function, chunk_rows=chunk) + self._log_jacobian(X)

    def _elbo(self, X):
        """Per-row ELBO of validated ``X``, in nats of the original units."""
        return self._evaluate_bound(X, _likelihoods.mc_elbo)

    def _latent_means(self, X):
        """Posterior means of the rows of ``X``: ``transform`` and ``embed``."""
        check_is_fitted(self)
        return self._evaluate(self._validate_input(X, reset=False), _posterior_mean)

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
        if schema.n_columns != n or (
            names is not None and schema.names is not None and schema.names != list(names)
        ):
            raise ValueError(f"the column schema must describe the {n} feature columns")
        config = self.module_.config()
        expected = {
            "n_features": n,
            "n_components": self.n_components,
            "hidden_layer_sizes": list(_check_hidden_layer_sizes(self.hidden_layer_sizes)),
            "activation": self.activation,
            "likelihood": self.likelihood,
            "decoder_variance": self.decoder_variance,
        }
        if schema.layout != ColumnLayout.uniform(n, self.likelihood):
            expected["layout"] = schema.layout.to_dict()
        if config != expected:
            raise ValueError(f"the network {config} does not match the parameters {expected}")
        if self.mean_.shape != (n,) or self.scale_.shape != (n,) or np.any(self.scale_ <= 0):
            raise ValueError(f"mean_ and scale_ must hold {n} values, scale_ positive")
        if names is not None and names.shape != (n,):
            raise ValueError(f"feature_names_in_ must hold {n} names")
        if self._moments.mean.shape != (n,):
            raise ValueError(f"the column moments must hold {n} values")
        mean, scale = self._scaling(self._moments)
        if not (np.array_equal(mean, self.mean_) and np.array_equal(scale, self.scale_)):
            raise ValueError("mean_ and scale_ are not those of the stored column moments")
        if len(self.loss_curve_) != self.n_iter_:
            raise ValueError(f"loss_curve_ must hold n_iter_={self.n_iter_} values")
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


def _check_every_column_observed(X, schema):
    empty = np.flatnonzero(np.isnan(X).all(axis=0)) if X.shape[0] else []
    if len(empty):
        names = [schema.names[j] for j in empty] if schema.names else list(empty)
        raise ValueError(
            f"Column(s) {names} of X hold no observed value (all missing); "
            "skvae cannot learn a column it never sees. Drop them before fitting."
        )
