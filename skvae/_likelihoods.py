"""Per-row log-likelihoods, KL divergence, ELBO and the importance-weighted bound.

Every function returns one value per row (or per row and feature), so the
estimators can score, sum or explain rows without re-deriving the maths.
Torch only.
"""

from __future__ import annotations

import math

import torch

from ._network import fill_missing
from ._observations import LOG_2PI


def feature_log_likelihood(module, x, location, log_var):
    """log p(x_j | z) per row and column, shape (..., n, n_features), in
    column order; 0 where x_j is missing, so sums run over observed entries."""
    filled, observed = fill_missing(x)
    params = module.split_output(location, log_var)
    log_p = module.per_column("log_prob", params, filled)
    return log_p if observed is None else torch.where(observed, log_p, 0.0)


def kl_to_standard_normal(mean, log_var):
    """KL(q(z|x) || N(0, I)) per row."""
    return 0.5 * torch.sum(mean**2 + torch.exp(log_var) - 1.0 - log_var, dim=-1)


def reparameterise(mean, log_var, noise):
    """z = mean + std * noise; ``noise`` broadcasts against ``mean``."""
    return mean + torch.exp(0.5 * log_var) * noise


def elbo_terms(module, x, noise=None):
    """Per-row expected reconstruction log-likelihood and KL term.

    With ``noise=None`` the reconstruction term is evaluated at the posterior
    mean (a cheap deterministic plug-in, used to watch the validation set).
    Training passes standard normal ``noise`` of shape (n, n_components).
    """
    mean, log_var = module.encode(x)
    z = mean if noise is None else reparameterise(mean, log_var, noise)
    location, out_log_var = module.decode(z)
    reconstruction = feature_log_likelihood(module, x, location, out_log_var)
    return reconstruction.sum(dim=-1), kl_to_standard_normal(mean, log_var)


def elbo(module, x, noise=None, beta=1.0):
    """Per-row evidence lower bound (with KL weight ``beta``), in nats."""
    reconstruction, kl = elbo_terms(module, x, noise)
    return reconstruction - beta * kl


def _shared_noise_samples(module, x, noise):
    """Posterior moments and K latent samples per row from shared ``noise``.

    ``noise`` has shape (K, n_components) and is the same for every row, so a
    row's estimate does not depend on the other rows scored with it.
    """
    mean, log_var = module.encode(x)
    z = reparameterise(mean.unsqueeze(0), log_var.unsqueeze(0), noise.unsqueeze(1))
    return mean, log_var, z


def mc_elbo(module, x, noise):
    """Monte Carlo ELBO per row: mean over K shared samples of log p(x|z),
    minus the analytic KL term. Unbiased for the ELBO and deterministic."""
    mean, log_var, z = _shared_noise_samples(module, x, noise)
    location, out_log_var = module.decode(z)
    log_px = feature_log_likelihood(module, x, location, out_log_var).sum(-1)
    return log_px.mean(dim=0) - kl_to_standard_normal(mean, log_var)


def iwae_bound(module, x, noise):
    """Importance-weighted bound with K shared samples, per row."""
    mean, log_var, z = _shared_noise_samples(module, x, noise)
    location, out_log_var = module.decode(z)
    log_px = feature_log_likelihood(module, x, location, out_log_var).sum(-1)
    log_pz = -0.5 * torch.sum(z**2 + LOG_2PI, dim=-1)
    log_qz = -0.5 * torch.sum(noise.unsqueeze(1) ** 2 + LOG_2PI + log_var.unsqueeze(0), dim=-1)
    log_weights = log_px + log_pz - log_qz
    return torch.logsumexp(log_weights, dim=0) - math.log(noise.shape[0])


def reconstruction_feature_log_likelihood(module, x):
    """log p(x_j | z = posterior mean) per row and feature."""
    mean, _ = module.encode(x)
    location, out_log_var = module.decode(mean)
    return feature_log_likelihood(module, x, location, out_log_var)


def feature_squared_error(module, x):
    """Squared error between x and its reconstruction at the posterior mean,
    per row and column; 0 where x_j is missing.

    Numeric columns compare the value with the decoder mean (in standardised
    units); a categorical column compares the one-hot code with the predicted
    probabilities (the Brier score), an unseen category counting as the
    least likely one.
    """
    mean, _ = module.encode(x)
    filled, observed = fill_missing(x)
    params = module.split_output(*module.decode(mean))
    error = module.per_column("squared_error", params, filled)
    return error if observed is None else torch.where(observed, error, 0.0)


def squared_reconstruction_error(module, x):
    """Squared error between x and its reconstruction at the posterior mean,
    summed over the observed entries of each row (see feature_squared_error)."""
    return torch.sum(feature_squared_error(module, x), dim=-1)


def completed_rows(module, x, noise, gap):
    """``x`` (n, n_features) with each missing entry predicted by the model,
    once per latent sample: shape (K, n, n_features), and what a typical
    value would add to the ``gap`` (``"log_prob"`` or ``"squared_error"``)
    of each completed entry (0 where observed), same shape.

    Completion k takes z = mean + std * ``noise[k]`` from q(z | the observed
    entries) and fills each missing entry with the decoder's prediction at z
    (the mean of a Gaussian column, the probability of a Bernoulli one, the
    most likely category of a categorical one). A prediction has none of
    the noise of a real value: a Gaussian entry at its mean gets the peak
    density, 1/2 nat above a typical value's expected log-likelihood, and
    no error instead of its variance. The gap (the observation models'
    ``log_prob_gap`` and ``squared_error_gap``; 0 for categorical and
    Bernoulli columns) puts that back, times (d - k) / d: the share of a
    real value's noise that k latent dimensions fitted to its d values
    leave in it, as in a linear model. ``noise``
    (K, n_components) is shared by every row, so a row's completions do not
    depend on the rows scored with it.
    """
    mean, log_var = module.encode(x)
    z = reparameterise(mean.unsqueeze(0), log_var.unsqueeze(0), noise.unsqueeze(1))
    params = module.split_output(*module.decode(z))
    missing = torch.isnan(x)
    completions = torch.where(missing, module.per_column("mean", params), x)
    d, k = x.shape[1], noise.shape[1]
    unabsorbed = max(d - k, 0) / d
    gaps = module.per_column(f"{gap}_gap", params)
    return completions, torch.where(missing, unabsorbed * gaps, 0.0)


def mean_over_completions(function, module, x, noise, gap):
    """``function(module, x)`` per row (or per row and feature), where a row
    with missing entries gets instead the mean over its completions
    (completed_rows) of ``function`` plus the gap of its completed entries:
    it is scored as a complete row the model predicts from its observed
    entries, with values as noisy as real ones. ``gap`` is ``"log_prob"``
    for log-likelihoods and bounds, ``"squared_error"`` for squared errors.
    Rows without missing entries are computed as they are, so their results
    are unchanged."""
    plain = function(module, x)
    missing = torch.isnan(x)
    if not missing.any():
        return plain
    completions, gaps = completed_rows(module, x, noise, gap)
    k, n, width = completions.shape
    values = function(module, completions.reshape(k * n, width))
    values = values.reshape(k, n, *values.shape[1:])
    values = (values + (gaps if values.dim() == 3 else gaps.sum(dim=-1))).mean(dim=0)
    holey = missing.any(dim=1).reshape(n, *(1,) * (values.dim() - 1))
    return torch.where(holey, values, plain)


def sample_rows(module, z, generator):
    """Draw x ~ p(x|z) on the CPU, in column order and the model's units."""
    location, log_var = (t if t is None else t.cpu() for t in module.decode(z))
    params = module.split_output(location, log_var)
    # One kind after the other, in table order: the draws from ``generator``
    # come in a fixed order.
    return module.per_column("sample", params, None, generator)
