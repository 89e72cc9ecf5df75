"""VAEAnomalyDetector: a VAE with scikit-learn's outlier-detector contract."""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
import pandas as pd
from sklearn.base import OutlierMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import _safe_indexing
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted

from . import _likelihoods, _missing_reference, _neighbors
from ._base import (
    SHARED_PARAMETERS_DOC,
    _BaseVAE,
    fit_stacked,
    prepare_fit,
    restore_state_on_failure,
)
from ._network import UNSEEN_CODE
from ._stacked import StackedDivergence
from ._training import TrainingDivergedError
from ._warnings import caller_stacklevel
from .conformal import conformal_pvalues, cross_conformal_pvalues

# contamination="auto": Tukey's lower fence on the training scores.
TUKEY_FENCE = 1.5
# trim_fraction="auto": share of each batch (the worst-fitting rows) left out
# of the training loss. Chosen on the ADBench development datasets as one
# value for all of them (benchmarks/RESULTS.md has the ablation).
AUTO_TRIM_FRACTION = 0.2
# calibration="auto": cross-conformal calibration on CROSS_CONFORMAL_FOLDS fold
# models for CROSS_CONFORMAL_MIN_ROWS to CROSS_CONFORMAL_MAX_ROWS training rows,
# split calibration on the validation rows otherwise. Below the maximum the
# split leaves so few calibration rows that no p-value can be small, and the
# extra fits are small (tests/test_cross_conformal.py, README: measured cost).
CROSS_CONFORMAL_FOLDS = 5
CROSS_CONFORMAL_MIN_ROWS = 2 * CROSS_CONFORMAL_FOLDS  # each fold model fits on >= 8 rows
CROSS_CONFORMAL_MAX_ROWS = 2000
# The share of the automatic step budget a fold model trains for. Its
# p-values stay valid whatever the fold models are; a shorter budget costs
# power on the tables that need the long training (letter: ROC-AUC of the
# p-values 0.803 -> 0.677 at 0.25, mean over six tables 0.933 -> 0.917) and,
# since only the full share lets the model and its fold models train as one
# stack, saves little time (fit CPU summed over the six tables: 18.9 s at 1,
# 15.3 s at 0.5, 10.6 s at 0.25; benchmarks/cross_conformal_power.py).
CROSS_CONFORMAL_BUDGET_SHARE = 1.0
# Up to this many rows a fit and its fold models train as one stacked network
# (skvae._stacked), which holds every member's rows at once (about 10 copies
# of the data). Beyond, automatic batches grow past 256 rows, a step is
# arithmetic more than overhead and stacking gains little: one by one.
STACKED_MAX_ROWS = 8192


def tukey_lower_fence(scores, k=TUKEY_FENCE):
    """Q1 - k * IQR: the box-plot rule for low outliers."""
    q1, q3 = np.percentile(scores, [25, 75])
    return q1 - k * (q3 - q1)


def _fold_split(seed, n_rows):
    """The cross-conformal folds of ``n_rows`` rows and the fold models'
    seeds, drawn from the fit's ``seed``."""
    rng = np.random.RandomState(seed)
    folds = np.array_split(rng.permutation(n_rows), CROSS_CONFORMAL_FOLDS)
    return folds, rng.randint(np.iinfo(np.int32).max, size=CROSS_CONFORMAL_FOLDS)


def _other_rows(rows, n_rows):
    return np.setdiff1d(np.arange(n_rows), rows)


def _indexable_rows(X):
    """X as ``_safe_indexing`` takes rows of it: frames as they are, lists and
    other array-likes as arrays."""
    return X if hasattr(X, "iloc") else np.asarray(X)


def _encoder_input(module, x):
    return module.network_input(x)


def _fit_detectors_stacked(detectors, prepared, lead):
    """``fit_stacked``, then each detector's threshold and split calibration
    as its ``fit`` sets them. False, with nothing kept, when the networks
    cannot be stacked or one diverges."""
    try:
        if not fit_stacked(detectors, prepared, lead):
            return False
    except StackedDivergence:
        return False
    for detector, fit in zip(detectors, prepared, strict=True):
        detector._threshold_from_training(fit.X, fit.held_out)
    return True


class VAEAnomalyDetector(OutlierMixin, _BaseVAE):
    """Unsupervised outlier detection with a variational autoencoder.

    The VAE learns the density of the training rows; a row's score is its
    evidence lower bound (or an importance-weighted bound, or its negative
    reconstruction error), so rows the model finds unlikely score low. The
    contract is :class:`~sklearn.ensemble.IsolationForest`'s:
    ``score_samples`` (higher is more normal), ``decision_function``
    (negative for outliers), ``predict`` (+1 inlier, -1 outlier).

    Parameters
    ----------
    contamination : "auto" or float in (0, 0.5], default="auto"
        Expected share of outliers; ``offset_`` is set at that quantile of
        the training scores. With ``"auto"`` the offset is Tukey's lower
        fence of the training scores, ``Q1 - 1.5 * IQR``, the box-plot rule
        that needs no guess of the outlier share.

    scoring : {"elbo", "iwae", "reconstruction"}, default="elbo"
        ``"elbo"``: the evidence lower bound with its expectation evaluated
        at the posterior mean (the zero-noise plug-in): one forward pass per
        row, and the best ranking of the three on the benchmark datasets
        (benchmarks/RESULTS.md). It can sit slightly above the true bound;
        ``score`` and ``scoring="iwae"`` are proper bounds. ``"iwae"``: the
        importance-weighted bound with ``n_importance_samples`` shared latent
        samples, the tightest estimate of the log-likelihood.
        ``"reconstruction"``: the negative squared error of the
        reconstruction at the posterior mean, in standardised units. All
        three are deterministic.

    trim_fraction : "auto" or float in [0, 0.5), default="auto"
        Share of each mini-batch, its worst-fitting rows, left out of the
        training loss (and of the validation score). Outliers in the
        training data are the rows the model fits worst, so trimming keeps
        them from being learned as normal (a trimmed-likelihood estimator).
        ``"auto"`` means 0.2, or 0 with ``novelty=True``. 0 trains on every
        row: the choice when the training rows are known to be clean
        (novelty detection), where it learns the tails of the normal rows
        too (README: measured gain).

    calibration : {{"auto", "split", "cross"}}, default="auto"
        Which rows calibrate :meth:`pvalues`. ``"split"``: the early-stopping
        validation rows, scored by the fitted model (a ``validation_fraction``
        share of the rows, so on small tables no p-value is small).
        ``"cross"``: every training row, by cross-conformal calibration: the
        rows are split into 5 folds and a copy of the detector is fitted
        without each fold, so every row is scored by a model that never
        trained on it; a new row's p-value counts, fold by fold, the rows
        scoring at most its score under that fold's model. The copies read
        the columns as the model does (``column_schema_``). It costs 5 more
        fits on 80% of the rows, trained with the model as one stacked
        network (the fit takes 2 to 2.8 times as long as with split
        calibration on 200 to 2,000 rows; README), 5 more scorings
        per ``pvalues`` call, and the 5 models are kept
        (``calibration_models_``, also in model files). Its
        p-values are close to uniform in practice, but guaranteed only to
        about ``P(p <= a) <= 2a`` (split ones: ``<= a``). ``"auto"``:
        ``"cross"`` for 10 to 2,000 training rows, ``"split"`` otherwise.
        ``partial_fit`` and :meth:`calibrate` always use the split rule.

    novelty : bool, default=False
        Whether the training rows are known to be clean, all normal (novelty
        detection, as ``LocalOutlierFactor(novelty=True)``): the detector
        then learns their tails instead of guarding against outliers
        (``trim_fraction="auto"`` means 0) and takes off each row's score
        its distance to the training rows: ``score_samples`` is the bound
        minus ``slope * (d - center)``, ``d`` the distance of the row to its
        5th nearest training row, measured as the encoder sees rows
        (standardised, categories one-hot), ``center`` the median of the
        training rows' own such distances and ``slope`` the ratio of the
        interquartile ranges of the training rows' bounds and distances.
        The two scores fail on different tables; added, they rank
        anomalies among clean rows better than the bound alone (benchmarks:
        mean ROC-AUC over 16 datasets 0.946, against 0.923 with
        ``novelty=False``, 0.938 for PyOD's kNN). Up to 10,000 training rows
        are kept (``neighbor_rows_``, also in model files) and scoring
        compares each row with all of them: 39,000 to 62,000 rows/s on 2
        threads instead of 1.2 to 2.8 million.
        On training rows with outliers among them keep False. As in
        ``LocalOutlierFactor(novelty=True)``, scores of the training rows
        themselves are too normal (each row is its own nearest neighbour;
        ``offset_`` comes from their scores without themselves), so
        ``fit_predict`` is not available: score new rows.

    {shared_parameters}

    Attributes
    ----------
    offset_ : float
        Threshold on ``score_samples``: ``decision_function`` is
        ``score_samples(X) - offset_``.
    calibration_scores_ : ndarray of shape (n_calibration,)
        Sorted ``score_samples`` of the early-stopping validation rows, which
        the weights were never trained on; ``pvalues`` ranks new rows against
        them. Without a validation set (``early_stopping=False``, or fewer
        than 2 held-out rows) they are the scores of all training rows: rows
        the model was fitted to look more normal than new ones, so the
        p-values of new normal rows then come out too small (too many flags).
        After ``partial_fit`` they are the last batch's scores, rows it was
        just trained on; :meth:`calibrate` resets them from held-out rows.
        With cross-conformal calibration (``calibration``) they are every
        training row's out-of-fold score, from the fold model that did not
        train on it (not comparable with ``score_samples``).
    calibration_models_ : list of VAEAnomalyDetector or None
        With cross-conformal calibration, the 5 fold models, each fitted
        without one fold and holding that fold's scores in its
        ``calibration_scores_``; None with split calibration.
    missing_reference_ : ndarray of shape (n_reference, n_model_columns) or None
        Up to 32 complete training rows (in the model's columns, before
        standardising), drawn from the early-stopping validation rows when 8
        or more of them are complete: ``score_samples`` measures on them how
        much removing the entries a row lacks changes a complete row's
        score, and adds that back (see ``score_samples``). :meth:`calibrate`
        replaces them with complete rows of its X. None when no training
        row is complete. Saved model files hold these rows.
    neighbor_rows_ : ndarray of shape (n_neighbors, n_model_columns) or None
        With ``novelty=True``: the training rows (in the model's columns,
        before standardising, NaN where missing) that ``score_samples``
        measures each row's distance to: those fit trained on (not the
        validation rows, so that the calibration stays unseen), at most
        10,000 of them drawn at random. After ``partial_fit``: drawn from
        every batch's rows, a row seen again in a later epoch kept once.
        None with ``novelty=False`` or fewer than 2 training rows (a
        ``partial_fit`` batch of 1 row with none kept before gets no
        distance term, and its row is not kept).
    neighbor_scaling_ : ndarray of shape (2,) or None
        ``(center, slope)`` of the distance term (see ``novelty``); None
        with ``neighbor_rows_``.
    module_ : VAEModule
        The fitted torch module (in eval mode).
    mean_ : ndarray of shape (n_features_in_,)
        Means used to standardise the Gaussian columns (0 for the others).
    scale_ : ndarray of shape (n_features_in_,)
        Scales used to standardise the Gaussian columns (1 for constant
        columns and for the others).
    column_schema_ : ColumnSchema
        Per column: its observation model (``kinds``), categories,
        whether the encoder gets a missing-value indicator (``masked``) and,
        when fitted on a DataFrame, its name and dtype. Fixed by the first
        fit: a warm-started fit keeps it.
    device_ : str
        Device the module lives on.
    loss_curve_ : list of float
        Mean training loss (negative ELBO, nats per row) of each epoch.
    validation_scores_ : list of float or None
        Mean validation ELBO of each epoch; None without a validation set.
    best_loss_ : float
        Lowest training loss reached.
    best_validation_score_ : float or None
        Highest validation ELBO of the latest fit (that of the weights kept;
        a warm refit is judged on its own epochs); None without a
        validation set.
    n_iter_ : int
        Number of epochs run.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    VAETransformer : The same model as a transformer.
    sklearn.ensemble.IsolationForest : The tree-based detector whose contract
        this one follows.

    Examples
    --------
    >>> import numpy as np
    >>> from skvae import VAEAnomalyDetector
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(300, 4)), [[8.0, -8.0, 8.0, -8.0]]])
    >>> detector = VAEAnomalyDetector(max_iter=30, random_state=0).fit(X)
    >>> int(detector.predict(X)[-1])
    -1
    >>> bool(detector.score_samples(X)[-1] < np.median(detector.score_samples(X)))
    True

    A DataFrame with categories and missing values goes in as it is:

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"x": rng.normal(size=300), "kind": rng.choice(["a", "b"], 300)})
    >>> frame.loc[::10, "x"] = np.nan
    >>> detector = VAEAnomalyDetector(max_iter=10, random_state=0).fit(frame)
    >>> detector.column_schema_.kinds
    ['gaussian', 'categorical']
    >>> strange = pd.DataFrame({"x": [np.nan, 0.1], "kind": ["a", "never seen"]})
    >>> bool(np.isfinite(detector.score_samples(strange)).all())
    True
    """

    _parameter_constraints: dict = {
        **_BaseVAE._parameter_constraints,
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "scoring": [StrOptions({"elbo", "iwae", "reconstruction"})],
        "trim_fraction": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="left")],
        "calibration": [StrOptions({"auto", "split", "cross"})],
        "novelty": ["boolean"],
    }

    def __init__(
        self,
        *,
        contamination="auto",
        scoring="elbo",
        trim_fraction="auto",
        calibration="auto",
        novelty=False,
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
        super().__init__(
            n_components=n_components,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            likelihood=likelihood,
            column_types=column_types,
            decoder_variance=decoder_variance,
            n_importance_samples=n_importance_samples,
            beta=beta,
            kl_warmup=kl_warmup,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            learning_rate=learning_rate,
            max_iter=max_iter,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            device=device,
            warm_start=warm_start,
            verbose=verbose,
            random_state=random_state,
        )
        self.contamination = contamination
        self.scoring = scoring
        self.trim_fraction = trim_fraction
        self.calibration = calibration
        self.novelty = novelty

    @_fit_context(prefer_skip_nested_validation=True)
    @restore_state_on_failure
    def fit(self, X, y=None):
        """Fit the VAE on X and set the outlier threshold ``offset_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows; at least 2. No labels are used.
        y : Ignored

        Returns
        -------
        self : VAEAnomalyDetector
        """
        if self._fit_with_fold_models(X):
            return self
        X_checked, _ = self._fit(X)
        n_rows = _num_samples(X_checked)
        if self._calibrates_cross(n_rows):
            self._cross_calibrate(X, n_rows)
        return self

    def _calibrates_cross(self, n_rows):
        return self.calibration == "cross" or (
            self.calibration == "auto"
            and CROSS_CONFORMAL_MIN_ROWS <= n_rows <= CROSS_CONFORMAL_MAX_ROWS
        )

    def _fit_with_fold_models(self, X):
        """A new fit and its cross-conformal fold models trained as one
        stacked network (``skvae._stacked``), when they can be: the model
        trains exactly as on its own and the fold models on its schedule.
        False, with nothing fitted, when the fit is not cross-calibrated, is
        a warm refit, or the networks cannot be stacked (then ``fit`` takes
        the usual path, which also reports bad input and unfittable folds)."""
        first_pass = not (self.warm_start and hasattr(self, "module_"))
        if self.calibration == "split" or not first_pass or CROSS_CONFORMAL_BUDGET_SHARE != 1:
            return False
        try:  # the raw input's rows, so that other fits are not prepared twice
            n_rows = _num_samples(X)
        except TypeError:
            return False
        if (
            not self._calibrates_cross(n_rows)
            or not CROSS_CONFORMAL_MIN_ROWS <= n_rows <= STACKED_MAX_ROWS
        ):
            return False
        main = prepare_fit(self, X)
        X = _indexable_rows(X)
        folds, seeds = _fold_split(main.start.seed, n_rows)
        models = [self._fold_copy(seed) for seed in seeds]
        try:
            prepared = [
                prepare_fit(model, _safe_indexing(X, _other_rows(rows, n_rows)))
                for model, rows in zip(models, folds, strict=True)
            ]
        except ValueError:  # a fold that cannot be fitted: reported on the usual path
            return False
        if not _fit_detectors_stacked([self, *models], [main, *prepared], lead=0):
            return False
        self._keep_fold_models(X, models, folds)
        return True

    def _fit(self, X, incremental=False):
        X, held_out = super()._fit(X, incremental)
        self._threshold_from_training(X, held_out, incremental)
        return X, held_out

    def _threshold_from_training(self, X, held_out, incremental=False):
        """``missing_reference_`` and, with ``novelty``, the neighbour rows;
        then ``offset_`` and the split calibration from the trained model's
        scores of its validated training data X. A ``partial_fit`` batch
        without a complete row keeps the reference of the earlier batches."""
        self._take_missing_reference(X, held_out, keep_earlier=incremental)
        bounds = self._bounds_as_observed(X)
        penalties = self._take_neighbor_rows(X, held_out, bounds, incremental)
        scores = bounds - penalties + self._missing_shifts(X)
        self._set_threshold(scores, scores if held_out is None else scores[held_out])

    def _take_neighbor_rows(self, X, held_out, bounds, incremental):
        """With ``novelty``: ``neighbor_rows_`` from the training rows of
        validated X (after ``partial_fit``, from them and the earlier ones),
        their distance scaling against ``bounds`` (``neighbor_scaling_``),
        and the neighbour penalty of each row of X, X's own neighbour rows
        measured without themselves. Without: None and no penalty."""
        earlier = getattr(self, "neighbor_rows_", None) if incremental else None
        self.neighbor_rows_ = self.neighbor_scaling_ = None
        no_penalty = np.zeros(X.shape[0])
        if not self.novelty:
            return no_penalty
        positions = _neighbors.select_rows(X.shape[0], held_out, self._seed)
        if earlier is not None:
            seed = [self._seed, self.n_iter_]
            positions, earlier = _neighbors.merge_rows(X, positions, earlier, seed)
        rows = X[positions] if earlier is None else np.vstack([X[positions], earlier])
        if rows.shape[0] < 2:
            return no_penalty
        search = _neighbors.NeighborSearch(self._embed(rows))
        reference = search.own_distances()
        center = float(np.median(reference))
        slope = _neighbors.robust_spread(bounds) / _neighbors.robust_spread(reference)
        self.neighbor_rows_ = np.array(rows, dtype=np.float64)
        self.neighbor_scaling_ = np.array([center, slope])
        own = np.zeros(X.shape[0], dtype=bool)
        own[positions] = True
        distances = search.distances_leaving_out(self._embed(X), own)
        return slope * (distances - center)

    def _embed(self, X):
        """Validated rows X as the encoder gets them: where neighbour
        distances are measured."""
        return self._evaluate(X, _encoder_input)

    def _neighbor_penalties(self, X):
        """What the neighbour term takes off the scores of validated X: the
        k-th neighbour distance, centred and put on the bound's scale by
        ``neighbor_scaling_``; 0 without neighbour rows (also once a user
        has set ``neighbor_rows_`` to None, to save the model without them).
        The search is built from ``neighbor_rows_`` on each call: a brute
        force one only holds the embedded rows (1.4 ms for 10,000 rows of
        20 columns), and nothing is cached that could disagree with them."""
        rows = getattr(self, "neighbor_rows_", None)  # older models lack it
        if rows is None:
            return np.zeros(X.shape[0])
        center, slope = self.neighbor_scaling_
        search = _neighbors.NeighborSearch(self._embed(rows))
        return slope * (search.distances(self._embed(X)) - center)

    def _take_missing_reference(self, X, held_out, keep_earlier):
        """``missing_reference_`` from validated X (``reference_rows``); with
        ``keep_earlier``, X without a complete row leaves the one there is."""
        reference = _missing_reference.reference_rows(X, held_out, self._seed)
        if reference is not None or not keep_earlier:
            self.missing_reference_ = reference

    def _set_threshold(self, scores, calibration_scores):
        """``offset_`` from ``scores`` by the ``contamination`` rule and the
        sorted ``calibration_scores_`` behind the p-values (split calibration)."""
        self.offset_ = self._offset(scores)
        self.calibration_scores_ = np.sort(calibration_scores)
        self.calibration_models_ = None

    def _cross_calibrate(self, X, n_rows):
        """Fit one copy of the detector without each fold of X's rows, and
        keep each copy with its fold's scores (cross-conformal calibration).

        The folds and the copies' seeds come from this fit's seed. Under
        ``calibration="auto"`` a fold that cannot be fitted (a column with no
        observed value in the other folds, a diverging fit) leaves the split
        calibration in place, with a warning.
        """
        if n_rows < CROSS_CONFORMAL_MIN_ROWS:
            raise ValueError(
                f"calibration='cross' needs at least {CROSS_CONFORMAL_MIN_ROWS} rows "
                f"({CROSS_CONFORMAL_FOLDS} folds); X has {n_rows}. Use calibration='split'."
            )
        X = _indexable_rows(X)
        folds, seeds = _fold_split(self._seed, n_rows)
        try:
            models = self._fit_fold_models(X, n_rows, folds, seeds)
        except (ValueError, TrainingDivergedError) as error:
            if self.calibration == "cross":
                raise
            warnings.warn(
                f"cross-conformal calibration skipped, split calibration kept: a fold "
                f"model could not be fitted ({str(error).splitlines()[0]})",
                UserWarning,
                stacklevel=3,
            )
            return
        self._keep_fold_models(X, models, folds)

    def _keep_fold_models(self, X, models, folds):
        """Keep the fitted fold models, each with its fold's scores."""
        unconverged = 0
        for model, rows in zip(models, folds, strict=True):
            model.calibration_scores_ = np.sort(model.score_samples(_safe_indexing(X, rows)))
            for setting in ("_budget_share", "_fixed_schema"):
                model.__dict__.pop(setting, None)
            unconverged += model.__dict__.pop("_reached_max_iter")
        if unconverged:
            warnings.warn(
                f"{unconverged} of {len(models)} cross-conformal fold models reached "
                f"max_iter={self.max_iter} epochs without converging; increase max_iter.",
                ConvergenceWarning,
                stacklevel=caller_stacklevel(),
            )
        self.calibration_models_ = models
        self.calibration_scores_ = np.sort(
            np.concatenate([model.calibration_scores_ for model in models])
        )

    def _fit_fold_models(self, X, n_rows, folds, seeds):
        """One copy of the detector fitted without each fold's rows, seeded
        from ``seeds``. The copies train as one stacked network
        (``skvae._stacked``) on the schedule of the smallest, unless they
        cannot be stacked (``fit_stacked``), one diverges or X has more than
        ``STACKED_MAX_ROWS`` rows; then one by one."""
        datasets = [_safe_indexing(X, _other_rows(rows, n_rows)) for rows in folds]
        models = [self._fold_copy(seed) for seed in seeds]
        if n_rows <= STACKED_MAX_ROWS:
            prepared = [prepare_fit(m, x) for m, x in zip(models, datasets, strict=True)]
            smallest = int(np.argmin([fit.x_train.shape[0] for fit in prepared]))
            if _fit_detectors_stacked(models, prepared, lead=smallest):
                return models
        models = [self._fold_copy(seed) for seed in seeds]
        for model, data in zip(models, datasets, strict=True):
            model.fit(data)
        return models

    def _fold_copy(self, seed):
        model = clone(self).set_params(
            calibration="split", warm_start=False, verbose=False, random_state=int(seed)
        )
        # Settings of this fit only, not part of the fitted fold model. The
        # fold models read the columns as this model does: inferred from a
        # fold's rows, an id column 1..n with a fold left out is no longer a
        # sequence and would be modelled, and a category or a missing value
        # absent from a fold would change the network.
        model._budget_share = CROSS_CONFORMAL_BUDGET_SHARE
        model._fixed_schema = self.column_schema_
        # Instead of warning, a fold model notes here that it reached
        # max_iter; the fit sums them up in one warning (_keep_fold_models).
        model._reached_max_iter = False
        return model

    def __setstate__(self, state):
        # Pickled before novelty=True existed: the behaviour it had then.
        state.setdefault("novelty", False)
        super().__setstate__(state)

    def _check_loaded_state(self):
        super()._check_loaded_state()
        reference = getattr(self, "missing_reference_", None)
        neighbors = getattr(self, "neighbor_rows_", None)
        scaling = getattr(self, "neighbor_scaling_", None)
        for name, rows in (("missing_reference_", reference), ("neighbor_rows_", neighbors)):
            if rows is not None:
                self._check_codes(name, rows)
        # Not tied to ``novelty``: set_params after the fit changes the
        # parameter, not the fitted term, and the file must load as it scores.
        if (neighbors is None) != (scaling is None):
            raise ValueError("neighbor_rows_ and neighbor_scaling_ go together")
        if neighbors is not None and (
            neighbors.shape[0] < 2 or scaling.shape != (2,) or not scaling[1] > 0
        ):
            raise ValueError("the neighbour term needs 2 rows and a positive scale")

    def _check_codes(self, name, rows):
        """Discrete columns of stored rows hold the codes the likelihoods
        index with, NaN for a missing entry or, in a categorical column,
        ``UNSEEN_CODE`` for a category a later ``partial_fit`` batch brought."""
        layout = self.column_schema_.layout
        for j, (kind, count) in enumerate(zip(layout.kinds, layout.n_categories, strict=True)):
            codes = {"categorical": [*range(count), UNSEEN_CODE], "bernoulli": [0, 1]}.get(kind)
            column = rows[:, j][~np.isnan(rows[:, j])]
            if codes is not None and not np.isin(column, codes).all():
                raise ValueError(f"{name} column {j} holds values that are not {kind} codes")

    def _warn_not_converged(self):
        if hasattr(self, "_reached_max_iter"):
            self._reached_max_iter = True
            return
        super()._warn_not_converged()

    @restore_state_on_failure
    def calibrate(self, X):
        """Set ``offset_`` and ``calibration_scores_`` from the rows of X.

        After streaming training (``partial_fit``, ``dask_ml``'s
        ``Incremental``) both come from the last batch only, rows the model
        has just trained on. Rows it has not trained on, drawn from the
        whole data (a held-out sample), give a threshold by the
        ``contamination`` rule and conformal p-values that hold. When X has
        complete rows, up to 32 of them also become ``missing_reference_``
        (held-out rows are the reference ``fit`` prefers). The network
        itself is not changed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows representative of the training data, ideally not trained on.

        Returns
        -------
        self : VAEAnomalyDetector

        Examples
        --------
        >>> import numpy as np
        >>> from skvae import VAEAnomalyDetector
        >>> rng = np.random.RandomState(0)
        >>> detector = VAEAnomalyDetector(contamination=0.1, random_state=0)
        >>> for _ in range(5):
        ...     detector = detector.partial_fit(rng.normal(size=(200, 3)))
        >>> held_out = rng.normal(size=(500, 3))
        >>> float((detector.calibrate(held_out).predict(held_out) == -1).mean())
        0.1
        """
        check_is_fitted(self)
        X_checked = self._validate_input(X, reset=False)
        # Every row of X is held out: any complete one may be drawn.
        self._take_missing_reference(X_checked, None, keep_earlier=True)
        scores = self._score_samples(X_checked)
        self._set_threshold(scores, scores)
        return self

    def _trim_fraction(self):
        if self.trim_fraction == "auto":
            return 0.0 if self.novelty else AUTO_TRIM_FRACTION
        return float(self.trim_fraction)

    def _offset(self, training_scores):
        if self.contamination == "auto":
            return float(tukey_lower_fence(training_scores))
        return float(np.percentile(training_scores, 100.0 * self.contamination))

    def score_samples(self, X):
        """Normality score of each row: higher is more normal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            The bound chosen by ``scoring``, in nats (or the negative squared
            reconstruction error for ``scoring="reconstruction"``). A row
            with missing entries is scored on its observed entries (the
            model completes the others), plus the median change that
            removing the same entries makes to the scores of the complete
            reference rows (``missing_reference_``): an estimate of what the
            complete row would score, so that missing values count as no
            evidence either way. Each distinct pattern of missing columns
            costs scoring 32 more rows. With ``novelty=True`` the score also
            loses the row's distance term (see ``novelty``), measured with
            the missing entries at their column means, and the correction
            for missing entries covers it too.
        """
        check_is_fitted(self)
        return self._score_samples(self._validate_input(X, reset=False))

    def _score_samples(self, X):
        """``score_samples`` of validated X, without checks (used by fit)."""
        return self._scores_as_observed(X) + self._missing_shifts(X)

    def _missing_shifts(self, X):
        """What ``score_samples`` adds to each row of validated X for the
        entries it lacks (``skvae._missing_reference``)."""
        # Models saved or pickled before the correction have no reference.
        reference = getattr(self, "missing_reference_", None)
        return _missing_reference.row_shifts(X, reference, self._scores_as_observed)

    def _scores_as_observed(self, X):
        """Scores of validated X, rows with missing entries scored on their
        observed entries (and, in the bound, the model's completions of the
        others)."""
        return self._bounds_as_observed(X) - self._neighbor_penalties(X)

    def _bounds_as_observed(self, X):
        """The bound chosen by ``scoring`` of each row of validated X, rows
        with missing entries scored on their observed entries and the
        model's completions of the others."""
        if self.scoring == "elbo":
            return self._evaluate_scores(X, _likelihoods.elbo, "log_prob") + self._log_jacobian()
        if self.scoring == "reconstruction":
            return -self._evaluate_scores(
                X, _likelihoods.squared_reconstruction_error, "squared_error"
            )
        return self._evaluate_bound(X, _likelihoods.iwae_bound)

    def pvalues(self, X):
        """Conformal p-value of each row: how many held-out training rows are
        at least as anomalous.

        ``(1 + #{calibration rows scoring <= the row}) / (1 + n_calibration)``,
        over ``calibration_scores_``. A new row from the training
        distribution gets a uniformly distributed p-value, so flagging
        ``p <= a`` flags a share ``a`` of normal rows, whatever the model;
        :func:`skvae.conformal.benjamini_hochberg` flags at a
        false-discovery rate instead. With cross-conformal calibration
        (``calibration``) each fold model scores the row against its own
        fold's rows, and the counts add up
        (:func:`skvae.conformal.cross_conformal_pvalues`). Meant for new rows:
        the training rows were seen by all but one fold model, so theirs come
        out too large.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        pvalues : ndarray of shape (n_samples,)
            In ``[1 / (1 + n_calibration), 1]``; small means anomalous.
        """
        scores = self.score_samples(X)
        models = getattr(self, "calibration_models_", None)  # absent in older model files
        if models is None:
            return conformal_pvalues(self.calibration_scores_, scores)
        return cross_conformal_pvalues(
            [model.calibration_scores_ for model in models],
            [model.score_samples(X) for model in models],
        )

    def feature_contributions(self, X):
        """How much each feature of each row adds to its anomaly score.

        The negative log-likelihood of each feature under the decoder at the
        row's posterior mean, in nats of the standardised feature (for
        ``scoring="reconstruction"``: its squared standardised error; for a
        categorical column, the squared error of its one-hot code, the Brier
        score). One value per modelled column, categorical ones included
        (a date's parts add up into their column; a column left out by the
        typing rules has none). A missing feature gets the contribution of
        the value the model predicts for it plus, for a numeric feature, the
        noise gap its score adds, and a row with missing values the mean
        over the completions its score is the mean over (see
        ``column_types``), so a missing feature shows a typical, never a
        zero, contribution; the row's missing features also share equally
        the correction ``score_samples`` adds for the entries it lacks.
        Higher is more anomalous; a row's largest terms
        are the features the model could not explain. They add up to the
        reconstruction part of the score: for ``scoring="reconstruction"``
        the row sums are ``-score_samples(X)``; for ``scoring="elbo"``
        ``-score_samples(X)`` is the row sum plus the row's KL term plus
        ``sum(log(scale_))``
        (``"iwae"`` gets the same terms as ``"elbo"``). With ``novelty=True``
        the distance term of ``score_samples`` is not split over features:
        it is left out of the contributions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        contributions : ndarray or DataFrame of shape (n_samples, n_features)
            A DataFrame with the feature names as columns (and X's index when
            X is a DataFrame) when the detector was fitted on a DataFrame.

        Examples
        --------
        >>> import numpy as np
        >>> from skvae import VAEAnomalyDetector
        >>> rng = np.random.RandomState(0)
        >>> X = rng.normal(size=(300, 3))
        >>> detector = VAEAnomalyDetector(max_iter=30, random_state=0).fit(X)
        >>> contributions = detector.feature_contributions([[0.0, 9.0, 0.0]])
        >>> int(np.argmax(contributions[0]))
        1
        """
        check_is_fitted(self)
        X_checked = self._validate_input(X, reset=False)
        if self.scoring == "reconstruction":
            contributions = self._evaluate_scores(
                X_checked, _likelihoods.feature_squared_error, "squared_error"
            )
        else:
            contributions = -self._evaluate_scores(
                X_checked, _likelihoods.reconstruction_feature_log_likelihood, "log_prob"
            )
        contributions = _missing_reference.spread_over_missing(
            contributions, X_checked, self._missing_shifts(X_checked)
        )
        # A date's parts count towards their column; columns left out have none.
        schema = self.column_schema_
        contributions = schema.per_column(contributions)
        if not hasattr(self, "feature_names_in_"):
            return contributions
        index = X.index if isinstance(X, pd.DataFrame) else None
        columns = schema.modelled(list(self.feature_names_in_))
        return pd.DataFrame(contributions, columns=columns, index=index)

    def embed(self, X):
        """Posterior means of the rows of X: where they sit in the latent space.

        What :meth:`VAETransformer.transform` returns; used to plot the latent
        space coloured by score. (Not named ``transform``: scikit-learn would
        then take the detector for a transformer.)

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        return self._latent_means(X)

    def _fit_predict_available(self):
        if self.novelty:
            raise AttributeError(
                "fit_predict is not available when novelty=True: each training row "
                "is its own nearest neighbour, so predict on the training rows flags "
                "too few. Use novelty=False to flag outliers among the training rows, "
                "or predict on new rows."
            )
        return True

    @available_if(_fit_predict_available)
    def fit_predict(self, X, y=None, **kwargs):
        """Fit on X and return its labels: +1 for inliers, -1 for outliers.

        Not available with ``novelty=True`` (as in ``LocalOutlierFactor``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        **kwargs : dict
            Passed to ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return super().fit_predict(X, y, **kwargs)

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for inliers, -1 for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        decision = self.decision_function(X)
        labels = np.ones(decision.shape[0], dtype=int)
        labels[decision < 0] = -1
        return labels


VAEAnomalyDetector.__doc__ = VAEAnomalyDetector.__doc__.replace(
    "{shared_parameters}", SHARED_PARAMETERS_DOC
)
