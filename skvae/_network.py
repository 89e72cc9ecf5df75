"""The torch module of a VAE: an MLP encoder to a Gaussian q(z|x), an MLP decoder
to the parameters of p(x|z). Torch only: nothing here knows about scikit-learn."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}

# Bounds on decoder log-variances (in standardised units). Without a floor a
# column the decoder can copy exactly (a constant or an almost-discrete one)
# drives its variance to zero and its log-likelihood to +inf.
MIN_LOG_VAR = math.log(1e-4)
MAX_LOG_VAR = math.log(1e2)
# Encoder log-variances are kept in a range where exp() cannot overflow.
MIN_LATENT_LOG_VAR = -12.0
MAX_LATENT_LOG_VAR = 8.0


def _mlp(sizes, activation):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class VAEModule(nn.Module):
    """Encoder, latent Gaussian and decoder of a VAE on tabular rows.

    Parameters
    ----------
    n_features : int
        Width of an input row.
    n_components : int
        Latent dimension.
    hidden_layer_sizes : tuple of int
        Encoder widths; the decoder mirrors them.
    activation : {"relu", "tanh", "elu", "gelu"}
    likelihood : {"gaussian", "bernoulli"}
        Observation model p(x|z).
    decoder_variance : {"feature", "sample"}
        For the Gaussian likelihood: one learned variance per feature, or a
        variance per feature and row predicted by the decoder.
    """

    def __init__(
        self,
        n_features,
        n_components,
        hidden_layer_sizes,
        activation="relu",
        likelihood="gaussian",
        decoder_variance="feature",
    ):
        super().__init__()
        self.n_features = n_features
        self.n_components = n_components
        self.hidden_layer_sizes = tuple(hidden_layer_sizes)
        self.activation = activation
        self.likelihood = likelihood
        self.decoder_variance = decoder_variance
        hidden = list(hidden_layer_sizes)
        self.encoder = _mlp([n_features, *hidden], activation)
        last = hidden[-1] if hidden else n_features
        self.latent_mean = nn.Linear(last, n_components)
        self.latent_log_var = nn.Linear(last, n_components)
        self.decoder = _mlp([n_components, *reversed(hidden)], activation)
        first = hidden[0] if hidden else n_components
        self.output_mean = nn.Linear(first, n_features)
        self.per_sample_variance = likelihood == "gaussian" and decoder_variance == "sample"
        if self.per_sample_variance:
            self.output_log_var = nn.Linear(first, n_features)
        else:
            self.output_log_var = None
        # Used by the Gaussian likelihood only; kept for every likelihood so
        # that state dicts have one shape.
        self.feature_log_var = nn.Parameter(torch.zeros(n_features))

    def config(self) -> dict:
        """The constructor arguments, JSON-able: ``VAEModule(**config)`` rebuilds
        the architecture (model files store it next to the weights)."""
        return {
            "n_features": self.n_features,
            "n_components": self.n_components,
            "hidden_layer_sizes": list(self.hidden_layer_sizes),
            "activation": self.activation,
            "likelihood": self.likelihood,
            "decoder_variance": self.decoder_variance,
        }

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every weight from ``generator`` (never the global RNG)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        # Start the latent variances small so early training is not all noise.
        nn.init.constant_(self.latent_log_var.bias, -2.0)
        nn.init.zeros_(self.feature_log_var)
        # Standardised inputs have mean 0: start the reconstruction there.
        nn.init.zeros_(self.output_mean.bias)

    @torch.no_grad()
    def change_input_units(self, factor, shift):
        """Re-express the weights for new input units, keeping the model.

        The old inputs ``u`` and the new ones ``v`` are related feature-wise
        by ``u = factor * v + shift``. Afterwards ``v`` gets the posterior
        that ``u`` got, and the decoder's distribution over ``v`` is the old
        one over ``u`` carried through the same map; so the density in any
        units both are derived from is unchanged (exactly, unless a decoder
        log-variance sits at its clamp). Used when streaming training
        refines the standardisation.
        """
        ref = self.feature_log_var
        factor = torch.as_tensor(factor, dtype=ref.dtype, device=ref.device)
        shift = torch.as_tensor(shift, dtype=ref.dtype, device=ref.device)
        first = [self.encoder[0]] if len(self.encoder) else [self.latent_mean, self.latent_log_var]
        for layer in first:
            layer.bias += layer.weight @ shift
            layer.weight *= factor
        self.output_mean.weight /= factor[:, None]
        self.output_mean.bias.sub_(shift).div_(factor)
        if self.likelihood == "gaussian":
            log_var = self.output_log_var.bias if self.per_sample_variance else ref
            log_var -= 2.0 * torch.log(factor)

    def encode(self, x):
        """Mean and log-variance of q(z|x), each of shape (n, n_components)."""
        h = self.encoder(x)
        log_var = self.latent_log_var(h).clamp(MIN_LATENT_LOG_VAR, MAX_LATENT_LOG_VAR)
        return self.latent_mean(h), log_var

    def decode(self, z):
        """Parameters of p(x|z): (mean, log_var) for Gaussian, (logits, None)
        for Bernoulli. Leading dimensions of ``z`` are kept."""
        h = self.decoder(z)
        location = self.output_mean(h)
        if self.likelihood == "bernoulli":
            return location, None
        if self.per_sample_variance:
            log_var = self.output_log_var(h)
        else:
            log_var = self.feature_log_var.expand_as(location)
        return location, log_var.clamp(MIN_LOG_VAR, MAX_LOG_VAR)

    def decoder_mean(self, z):
        """E[x|z] in the model's (standardised) units."""
        location, _ = self.decode(z)
        if self.likelihood == "bernoulli":
            return torch.sigmoid(location)
        return location
