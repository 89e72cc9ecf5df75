"""Per-row log-likelihoods, KL divergence, ELBO and the importance-weighted bound.

Every function returns one value per row (or per row and feature), so the
estimators can score, sum or explain rows without re-deriving the maths.
Torch only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._network import fill_missing

LOG_2PI = math.log(2.0 * math.pi)


def _gaussian(x, location, log_var):
    return -0.5 * (LOG_2PI + log_var + (x - location) ** 2 * torch.exp(-log_var))


def _bernoulli(x, logits):
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")


def _categorical(module, x, logits):
    """log p of each categorical column's code; a category unseen in training
    (code ``UNSEEN_CODE``) gets the log-probability of the least likely one."""
    codes, _ = module.category_codes(x)
    unseen = x[:, module.categorical_index] < 0
    columns = []
    for j, block in enumerate(logits):
        log_p = torch.log_softmax(block, dim=-1)
        index = codes[:, j].expand(log_p.shape[:-1]).unsqueeze(-1)
        picked = log_p.gather(-1, index).squeeze(-1)
        columns.append(torch.where(unseen[:, j], log_p.min(dim=-1).values, picked))
    return torch.stack(columns, dim=-1)


def feature_log_likelihood(module, x, location, log_var):
    """log p(x_j | z) per row and column, shape (..., n, n_features), in
    column order; 0 where x_j is missing, so sums run over observed entries."""
    filled, observed = fill_missing(x)
    if module.uniform_kind == "gaussian":
        log_p = _gaussian(filled, location, log_var)
    elif module.uniform_kind == "bernoulli":
        log_p = _bernoulli(filled, location)
    else:
        gaussian, bernoulli, logits = module.split_output(location)
        if log_var is not None:
            gaussian = _gaussian(filled[:, module.gaussian_index], gaussian, log_var)
        bernoulli = _bernoulli(filled[:, module.bernoulli_index], bernoulli)
        categorical = _categorical(module, x, logits) if logits else location[..., :0]
        log_p = module.to_columns(gaussian, bernoulli, categorical)
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
    if module.uniform_kind is not None:
        error = (filled - module.decoder_mean(mean)) ** 2
    else:
        location, _ = module.decode(mean)
        gaussian, bernoulli, logits = module.split_output(location)
        numeric = [(filled[:, module.gaussian_index] - gaussian) ** 2]
        numeric.append((filled[:, module.bernoulli_index] - torch.sigmoid(bernoulli)) ** 2)
        codes, _ = module.category_codes(x)
        unseen = x[:, module.categorical_index] < 0
        brier = []
        for j, block in enumerate(logits):
            p = torch.softmax(block, dim=-1)
            target = torch.where(unseen[:, j], p.argmin(dim=-1), codes[:, j])
            one_hot = F.one_hot(target, p.shape[-1]).to(p.dtype)
            brier.append(torch.sum((one_hot - p) ** 2, dim=-1))
        categorical = torch.stack(brier, dim=-1) if brier else location[..., :0]
        error = module.to_columns(*numeric, categorical)
    return error if observed is None else torch.where(observed, error, 0.0)


def squared_reconstruction_error(module, x):
    """Squared error between x and its reconstruction at the posterior mean,
    summed over the observed entries of each row (see feature_squared_error)."""
    return torch.sum(feature_squared_error(module, x), dim=-1)


def sample_rows(module, z, generator):
    """Draw x ~ p(x|z) on the CPU, in column order and the model's units."""
    location, log_var = (t if t is None else t.cpu() for t in module.decode(z))
    if module.uniform_kind == "bernoulli":
        return torch.bernoulli(torch.sigmoid(location), generator=generator)
    if module.uniform_kind == "gaussian":
        noise = torch.randn(location.shape, generator=generator)
        return location + torch.exp(0.5 * log_var) * noise
    gaussian, bernoulli, logits = module.split_output(location)
    if log_var is not None:
        gaussian = gaussian + torch.exp(0.5 * log_var) * torch.randn(
            gaussian.shape, generator=generator
        )
    bernoulli = torch.bernoulli(torch.sigmoid(bernoulli), generator=generator)
    codes = [
        torch.multinomial(torch.softmax(block, dim=-1), 1, generator=generator)[:, 0]
        for block in logits
    ]
    categorical = torch.stack(codes, -1).to(location.dtype) if codes else location[..., :0]
    return module.to_columns(gaussian, bernoulli, categorical)
