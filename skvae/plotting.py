"""Plots of a fitted skvae estimator, as scikit-learn-style Display objects.

Each Display stores what it draws (``from_estimator`` computes it from a
fitted estimator and data), draws with ``plot(ax=None)``, and keeps the
matplotlib ``ax_`` and ``figure_`` it drew on, as
:class:`sklearn.metrics.RocCurveDisplay` does. Needs matplotlib (the ``plot``
extra: ``pip install "skvae[plot]"``), imported only when something is drawn.

- :class:`ScoreDistributionDisplay`: histogram of the scores with the threshold.
- :class:`LatentSpaceDisplay`: the rows in the 2-D latent space, coloured by
  score or by labels.
- :class:`LossCurveDisplay`: training and validation loss per epoch.
- :class:`FeatureContributionDisplay`: per-feature contributions to one
  row's anomaly score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - matplotlib is in the test extra
        raise ImportError(
            "skvae.plotting needs matplotlib; install it with pip install 'skvae[plot]'."
        ) from error
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _feature_names(estimator):
    if hasattr(estimator, "feature_names_in_"):
        return [str(name) for name in estimator.feature_names_in_]
    return [f"x{i}" for i in range(estimator.n_features_in_)]


class _Display:
    """Shared ``ax_`` / ``figure_`` bookkeeping."""

    def _start(self, ax):
        self.ax_ = _axes(ax)
        self.figure_ = self.ax_.figure
        return self.ax_


class ScoreDistributionDisplay(_Display):
    """Histogram of ``score_samples`` with the detector's threshold.

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        Scores, higher is more normal.
    threshold : float or None
        The detector's ``offset_``: rows left of it are flagged.
    labels : ndarray of shape (n_samples,) or None
        Known labels (1 or True for anomalies); drawn as two histograms.
    clip_percentile : float, default=1.0
        Scores of outliers can lie thousands of nats below the rest, which
        would squeeze the bulk into one bar: scores below this percentile
        (and below the threshold) are drawn in the leftmost bar, and the
        legend says how many. 0 draws the full range.

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    threshold_line_ : matplotlib Line2D or None

    Examples
    --------
    >>> import numpy as np
    >>> from skvae import VAEAnomalyDetector
    >>> from skvae.plotting import ScoreDistributionDisplay
    >>> X = np.random.RandomState(0).normal(size=(200, 3))
    >>> detector = VAEAnomalyDetector(max_iter=5, random_state=0).fit(X)
    >>> display = ScoreDistributionDisplay.from_estimator(detector, X)
    >>> display.threshold == detector.offset_
    True
    """

    def __init__(self, *, scores, threshold=None, labels=None, clip_percentile=1.0):
        self.scores = np.asarray(scores, dtype=float)
        self.threshold = threshold
        self.labels = None if labels is None else np.asarray(labels)
        self.clip_percentile = clip_percentile

    @classmethod
    def from_estimator(cls, estimator, X, *, y=None, ax=None, bins=50, clip_percentile=1.0):
        """Score ``X`` with a fitted estimator and plot the histogram.

        Parameters
        ----------
        estimator : fitted VAEAnomalyDetector (or VAETransformer, no threshold)
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Known labels, 1 for anomalies.
        ax : matplotlib Axes, default=None
        bins : int, default=50
        clip_percentile : float, default=1.0
            See the class parameters.

        Returns
        -------
        display : ScoreDistributionDisplay
        """
        display = cls(
            scores=estimator.score_samples(X),
            threshold=getattr(estimator, "offset_", None),
            labels=y,
            clip_percentile=clip_percentile,
        )
        return display.plot(ax=ax, bins=bins)

    def plot(self, ax=None, *, bins=50):
        """Draw the histogram (and the threshold) on ``ax`` or a new figure.

        Returns
        -------
        display : ScoreDistributionDisplay
        """
        ax = self._start(ax)
        lower = np.percentile(self.scores, self.clip_percentile)
        if self.threshold is not None:
            lower = min(lower, self.threshold)
        scores = np.maximum(self.scores, lower)
        n_clipped = int(np.sum(self.scores < lower))
        edges = np.histogram_bin_edges(scores, bins=bins)
        if self.labels is None:
            ax.hist(scores, bins=edges, color="tab:blue", alpha=0.8, label="rows")
        else:
            anomalous = self.labels.astype(bool)
            ax.hist(scores[~anomalous], bins=edges, alpha=0.7, label="normal (label)")
            ax.hist(scores[anomalous], bins=edges, alpha=0.7, label="anomaly (label)")
        self.threshold_line_ = None
        if self.threshold is not None:
            self.threshold_line_ = ax.axvline(
                self.threshold, color="tab:red", linestyle="--", label="threshold"
            )
        ax.set_xlabel("score (higher is more normal)")
        ax.set_ylabel("rows")
        title = "Score distribution"
        if n_clipped:
            title += f"\n({n_clipped} rows below {lower:.4g} drawn in the first bar)"
        ax.set_title(title)
        ax.legend()
        return self


class LatentSpaceDisplay(_Display):
    """The rows' posterior means in 2-D, coloured by score or by labels.

    With more than two latent dimensions the means are projected on their
    first two principal components; with one, the second axis is the score.

    Parameters
    ----------
    embedding : ndarray of shape (n_samples, 2)
    colour : ndarray of shape (n_samples,)
        Scores (continuous colour map) or labels (one colour per label).
    colour_is_label : bool, default=False
    axis_labels : tuple of str, default=("latent 1", "latent 2")

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    scatter_ : matplotlib PathCollection
    """

    def __init__(self, *, embedding, colour, colour_is_label=False, axis_labels=None):
        self.embedding = np.asarray(embedding, dtype=float)
        self.colour = np.asarray(colour)
        self.colour_is_label = colour_is_label
        self.axis_labels = axis_labels or ("latent 1", "latent 2")

    @classmethod
    def from_estimator(cls, estimator, X, *, y=None, ax=None):
        """Embed ``X`` with a fitted estimator and scatter it.

        Parameters
        ----------
        estimator : fitted VAEAnomalyDetector or VAETransformer
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Labels to colour by; by default rows are coloured by
            ``score_samples``.
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : LatentSpaceDisplay
        """
        embed = estimator.embed if hasattr(estimator, "embed") else estimator.transform
        Z = np.asarray(embed(X), dtype=float)
        scores = estimator.score_samples(X)
        axis_labels = ("latent 1", "latent 2")
        if Z.shape[1] == 1:
            Z, axis_labels = np.column_stack([Z[:, 0], scores]), ("latent 1", "score")
        elif Z.shape[1] > 2:
            from sklearn.decomposition import PCA

            Z = PCA(n_components=2).fit_transform(Z)
            axis_labels = ("latent PC 1", "latent PC 2")
        display = cls(
            embedding=Z,
            colour=scores if y is None else y,
            colour_is_label=y is not None,
            axis_labels=axis_labels,
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the scatter on ``ax`` or a new figure.

        Returns
        -------
        display : LatentSpaceDisplay
        """
        ax = self._start(ax)
        x, y = self.embedding[:, 0], self.embedding[:, 1]
        if self.colour_is_label:
            codes, names = pd.factorize(pd.Series(self.colour))
            self.scatter_ = ax.scatter(x, y, c=codes, cmap="tab10", s=8, vmin=0, vmax=9)
            for code, name in enumerate(names):
                ax.scatter([], [], color=self.scatter_.cmap(code), label=str(name))
            ax.legend(title="label")
        else:
            # Low scores (outliers) drawn last, on top of the crowd.
            colour = self.colour.astype(float)
            order = np.argsort(-colour)
            # Clip the colour scale so a few extreme scores do not wash out the rest.
            self.scatter_ = ax.scatter(
                x[order],
                y[order],
                c=colour[order],
                cmap="viridis",
                s=8,
                vmin=np.percentile(colour, 2),
                vmax=colour.max(),
            )
            self.figure_.colorbar(self.scatter_, ax=ax, label="score")
        ax.set_xlabel(self.axis_labels[0])
        ax.set_ylabel(self.axis_labels[1])
        ax.set_title("Latent space")
        return self


class LossCurveDisplay(_Display):
    """Training loss and validation loss (negative ELBO, nats per row) per epoch.

    Parameters
    ----------
    loss_curve : list of float
    validation_loss_curve : list of float or None

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    lines_ : list of matplotlib Line2D
    """

    def __init__(self, *, loss_curve, validation_loss_curve=None):
        self.loss_curve = np.asarray(loss_curve, dtype=float)
        self.validation_loss_curve = (
            None if validation_loss_curve is None else np.asarray(validation_loss_curve, float)
        )

    @classmethod
    def from_estimator(cls, estimator, *, ax=None):
        """Plot a fitted estimator's ``loss_curve_`` and ``validation_scores_``.

        Returns
        -------
        display : LossCurveDisplay
        """
        validation = estimator.validation_scores_
        display = cls(
            loss_curve=estimator.loss_curve_,
            validation_loss_curve=None if validation is None else -np.asarray(validation),
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the curves on ``ax`` or a new figure.

        Returns
        -------
        display : LossCurveDisplay
        """
        ax = self._start(ax)
        epochs = np.arange(1, self.loss_curve.size + 1)
        self.lines_ = ax.plot(epochs, self.loss_curve, label="training")
        if self.validation_loss_curve is not None:
            self.lines_ += ax.plot(epochs, self.validation_loss_curve, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (negative ELBO, nats per row)")
        ax.set_title("Training")
        ax.legend()
        return self


class FeatureContributionDisplay(_Display):
    """Bar chart of one row's per-feature contributions to its anomaly score.

    Parameters
    ----------
    contributions : ndarray of shape (n_features,)
        ``feature_contributions`` of the row, in nats.
    feature_names : list of str
    max_features : int, default=10
        Only the largest contributions are drawn.
    row_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    bars_ : matplotlib BarContainer
    shown_features_ : list of str
        The features drawn, largest contribution first.
    """

    def __init__(self, *, contributions, feature_names, max_features=10, row_name=None):
        self.contributions = np.asarray(contributions, dtype=float).ravel()
        self.feature_names = [str(name) for name in feature_names]
        self.max_features = max_features
        self.row_name = row_name

    @classmethod
    def from_estimator(cls, estimator, X, *, row=0, max_features=10, row_name=None, ax=None):
        """Explain row ``row`` (a position in X) of X with a fitted detector.

        ``row_name`` titles the chart; by default X's index label (or ``row``).

        Returns
        -------
        display : FeatureContributionDisplay
        """
        one_row = X.iloc[[row]] if isinstance(X, pd.DataFrame) else np.asarray(X)[[row]]
        contributions = estimator.feature_contributions(one_row)
        # A DataFrame names the modelled columns (those left out have none).
        names = (
            list(contributions.columns)
            if isinstance(contributions, pd.DataFrame)
            else _feature_names(estimator)
        )
        if row_name is None:
            row_name = str(X.index[row]) if isinstance(X, pd.DataFrame) else str(row)
        display = cls(
            contributions=np.asarray(contributions)[0],
            feature_names=names,
            max_features=max_features,
            row_name=row_name,
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the bars on ``ax`` or a new figure.

        Returns
        -------
        display : FeatureContributionDisplay
        """
        ax = self._start(ax)
        order = np.argsort(-self.contributions)[: self.max_features]
        self.shown_features_ = [self.feature_names[i] for i in order]
        # Largest on top: barh draws the first bar at the bottom.
        self.bars_ = ax.barh(self.shown_features_[::-1], self.contributions[order][::-1])
        ax.set_xlabel("contribution to the anomaly score")
        title = "Feature contributions"
        ax.set_title(title if self.row_name is None else f"{title}: {self.row_name}")
        return self
