"""VAETransformer: a VAE as a scikit-learn transformer."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted

from ._base import SHARED_PARAMETERS_DOC, _BaseVAE, restore_state_on_failure
from ._likelihoods import sample_rows


def _decoder_mean(module, z):
    return module.decoder_mean(z)


class VAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _BaseVAE):
    """Variational autoencoder as a transformer: rows in, latent means out.

    The encoder maps each row to a Gaussian posterior q(z|x); ``transform``
    returns its means. ``inverse_transform`` decodes latent points back to
    the original units, ``sample`` draws new rows from the model, and
    ``score_samples`` gives each row's evidence lower bound (ELBO) in nats,
    so ``score`` can drive ``GridSearchCV`` without labels.

    Parameters
    ----------
    {shared_parameters}

    Attributes
    ----------
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
    VAEAnomalyDetector : The same model used as an outlier detector.
    sklearn.decomposition.PCA : The linear counterpart.

    Examples
    --------
    >>> import numpy as np
    >>> from skvae import VAETransformer
    >>> X = np.random.RandomState(0).normal(size=(200, 5))
    >>> vae = VAETransformer(n_components=2, max_iter=5, random_state=0)
    >>> vae.fit_transform(X).shape
    (200, 2)
    >>> vae.inverse_transform(vae.transform(X[:3])).shape
    (3, 5)
    >>> vae.sample(4, random_state=0).shape
    (4, 5)
    >>> bool(np.isfinite(vae.score(X)))
    True
    """

    @_fit_context(prefer_skip_nested_validation=True)
    @restore_state_on_failure
    def fit(self, X, y=None):
        """Fit the VAE on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows; at least 2.
        y : Ignored

        Returns
        -------
        self : VAETransformer
        """
        self._fit(X)
        return self

    @property
    def _n_features_out(self):
        return self.n_components

    def transform(self, X):
        """Posterior means of the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        return self._latent_means(X)

    def inverse_transform(self, X):
        """Decoder means of latent points, in the original units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent points, as returned by ``transform``.

        Returns
        -------
        X_original : ndarray or DataFrame of shape (n_samples, n_features_in_)
            The mean of each Gaussian column, the probability of each
            Bernoulli column, the most likely category of each categorical
            column. Fitted on a DataFrame: a DataFrame with its columns,
            dtypes and categories (Bernoulli columns of bool or integer
            dtype come back as yes/no at probability 0.5).
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float64, np.float32])
        if Z.shape[1] != self.n_components:
            raise ValueError(
                f"X has {Z.shape[1]} columns, but inverse_transform expects "
                f"n_components={self.n_components} latent columns."
            )
        means = self._evaluate(Z, _decoder_mean, standardise=False)
        return self.column_schema_.decode(means * self.scale_ + self.mean_)

    def sample(self, n_samples=1, random_state=None):
        """Draw rows from the fitted model: z ~ N(0, I), then x ~ p(x|z).

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=None
            Seed for the draw; an integer gives the same rows every call.

        Returns
        -------
        X : ndarray or DataFrame of shape (n_samples, n_features_in_)
            A DataFrame with the original columns, dtypes and categories
            when fitted on one.
        """
        check_is_fitted(self)
        if (
            not isinstance(n_samples, (int, np.integer))
            or isinstance(n_samples, bool)
            or n_samples < 1
        ):
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        generator = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            z = torch.randn((n_samples, self.n_components), generator=generator)
            x = sample_rows(self.module_, z.to(self.device_), generator)
        return self.column_schema_.decode(x.double().numpy() * self.scale_ + self.mean_)

    def score_samples(self, X):
        """Evidence lower bound of each row, in nats of the original units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        elbo : ndarray of shape (n_samples,)
            Higher means more typical of the training data.
        """
        check_is_fitted(self)
        return self._elbo(self._validate_input(X, reset=False))


VAETransformer.__doc__ = VAETransformer.__doc__.replace(
    "{shared_parameters}", SHARED_PARAMETERS_DOC
)
