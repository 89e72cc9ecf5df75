"""The torch module of a VAE: an MLP encoder to a Gaussian q(z|x), an MLP decoder
to the parameters of p(x|z). Torch only: nothing here knows about scikit-learn.

A row reaches the module as one float tensor with one entry per column: a
standardised value for a Gaussian column, 0/1 for a Bernoulli column, the
integer code of the category for a categorical column (``UNSEEN_CODE`` for a
category not seen in training), and NaN wherever the value is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ._observations import KINDS, OBSERVATION_MODELS

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}

# Bounds on decoder log-variances (in standardised units). Without a floor a
# column the decoder can copy exactly (a constant or an almost-discrete one)
# drives its variance to zero and its log-likelihood to +inf.
MIN_LOG_VAR = math.log(1e-4)
MAX_LOG_VAR = math.log(1e2)
# Encoder log-variances are kept in a range where exp() cannot overflow.
MIN_LATENT_LOG_VAR = -12.0
MAX_LATENT_LOG_VAR = 8.0
# Code of a category that was not seen in training.
UNSEEN_CODE = -1.0

# decoder_variance="sample": None lets the decoder predict each row's
# log-variances freely; a number c bounds them to the column's learned
# log-variance +- c (experimental, benchmarks/ablation.py).
SAMPLE_LOG_VAR_RANGE = None


@dataclass(frozen=True)
class ColumnLayout:
    """What the network needs to know about the columns, in column order.

    Parameters
    ----------
    kinds : tuple of {"gaussian", "bernoulli", "categorical"}
        Observation model of each column.
    n_categories : tuple of int
        Number of categories of each categorical column (0 for the others).
    masked : tuple of bool
        Whether the encoder gets a missing-value indicator for the column.
        Categorical columns never need one: their one-hot input is all zeros
        when the value is missing.
    """

    kinds: tuple
    n_categories: tuple
    masked: tuple

    @classmethod
    def uniform(cls, n_features, kind):
        """``n_features`` columns of one numeric ``kind`` with no missing values."""
        return cls((kind,) * n_features, (0,) * n_features, (False,) * n_features)

    def to_dict(self):
        return {
            "kinds": list(self.kinds),
            "n_categories": [int(n) for n in self.n_categories],
            "masked": [bool(m) for m in self.masked],
        }

    @classmethod
    def from_dict(cls, state):
        """The layout written by ``to_dict``; ValueError for anything else."""
        if not isinstance(state, dict) or set(state) != {"kinds", "n_categories", "masked"}:
            raise ValueError("a column layout needs the keys kinds, n_categories, masked")
        kinds, counts, masked = (list(state[k]) for k in ("kinds", "n_categories", "masked"))
        if not (len(kinds) == len(counts) == len(masked)) or not set(kinds) <= set(KINDS):
            raise ValueError(f"bad column layout {state!r:.200}")
        for kind, count, mask in zip(kinds, counts, masked, strict=True):
            model = OBSERVATION_MODELS[kind]
            if not isinstance(count, int) or (count < 1 if model.has_categories else count != 0):
                raise ValueError(f"bad category count {count!r:.20} for a {kind} column")
            if not isinstance(mask, bool) or (mask and not model.has_indicator):
                raise ValueError(f"bad missing indicator {mask!r:.20} for a {kind} column")
        return cls(tuple(kinds), tuple(counts), tuple(masked))

    def indices(self, kind):
        return [j for j, k in enumerate(self.kinds) if k == kind]

    @property
    def n_columns(self):
        return len(self.kinds)

    @property
    def input_width(self):
        # A column takes as many encoder inputs as decoder outputs.
        return self.output_width + sum(self.masked)

    @property
    def output_width(self):
        return sum(
            OBSERVATION_MODELS[kind].output_width(count)
            for kind, count in zip(self.kinds, self.n_categories, strict=True)
        )


def fill_missing(x):
    """``x`` with 0 where it is NaN, and the mask of observed entries (None
    when every entry is observed, the common case, which then costs one
    pass over ``x``). Inputs are finite apart from NaN."""
    # A sum is NaN when any entry is: one reduction, no mask allocated.
    if not torch.isnan(x.sum()):
        return x, None
    missing = torch.isnan(x)
    return torch.where(missing, 0.0, x), ~missing


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
        Number of columns of an input row.
    n_components : int
        Latent dimension.
    hidden_layer_sizes : tuple of int
        Encoder widths; the decoder mirrors them.
    activation : {"relu", "tanh", "elu", "gelu"}
    likelihood : {"gaussian", "bernoulli"}
        Observation model p(x|z) of every column when ``layout`` is None.
    decoder_variance : {"feature", "sample"}
        For Gaussian columns: one learned variance per column, or a variance
        per column and row predicted by the decoder.
    layout : ColumnLayout, dict or None
        Per-column observation models and missing-value indicators (or
        their ``to_dict``); None means ``n_features`` columns of
        ``likelihood`` with no indicators.

    Notes
    -----
    The encoder input is the Gaussian and Bernoulli values (missing ones set
    to 0), then the one-hot codes of the categorical columns, then the
    missing-value indicators. The decoder output holds the Gaussian means,
    then the Bernoulli logits, then the logits of each categorical column:
    the order of ``OBSERVATION_MODELS``, whose entries say how each kind
    reads these outputs (skvae._observations).
    For numeric columns without indicators both are the row itself.
    """

    def __init__(
        self,
        n_features,
        n_components,
        hidden_layer_sizes,
        activation="relu",
        likelihood="gaussian",
        decoder_variance="feature",
        layout=None,
    ):
        super().__init__()
        if isinstance(layout, dict):
            layout = ColumnLayout.from_dict(layout)
        if layout is not None and layout.n_columns != n_features:
            raise ValueError(f"layout has {layout.n_columns} columns, expected {n_features}.")
        if layout is not None and layout == ColumnLayout.uniform(n_features, likelihood):
            layout = None
        self.n_features = n_features
        self.n_components = n_components
        self.hidden_layer_sizes = tuple(hidden_layer_sizes)
        self.activation = activation
        self.likelihood = likelihood
        # None: every column follows `likelihood`, with no indicators. Kept
        # as None (not a list per column) so that checking a model file's
        # claimed size on the meta device allocates nothing.
        self.layout = layout
        self.decoder_variance = decoder_variance
        if layout is None:
            indices = {kind: torch.arange(0) for kind in KINDS}
            indices[likelihood] = torch.arange(n_features)
            self.masked_columns = []
            input_width = output_width = n_features
        else:
            indices = {k: torch.tensor(layout.indices(k), dtype=torch.long) for k in KINDS}
            self.masked_columns = [j for j, m in enumerate(layout.masked) if m]
            input_width, output_width = layout.input_width, layout.output_width
        for kind in KINDS:
            self.register_buffer(f"{kind}_index", indices[kind], persistent=False)
        masked = torch.tensor(self.masked_columns, dtype=torch.long)
        self.register_buffer("mask_index", masked, persistent=False)
        self.n_gaussian = len(self.gaussian_index)
        self.blocks = _output_blocks(layout, n_features, likelihood)
        # One kind whose column is a single input, without indicators, is the
        # common case: the row goes through as it is, with no gathering or
        # scattering.
        kinds = {likelihood} if layout is None else set(layout.kinds)
        single = len(kinds) == 1 and not self.masked_columns
        single = single and not OBSERVATION_MODELS[next(iter(kinds))].has_categories
        self.uniform_kind = kinds.pop() if single else None

        hidden = list(hidden_layer_sizes)
        self.encoder = _mlp([input_width, *hidden], activation)
        last = hidden[-1] if hidden else input_width
        self.latent_mean = nn.Linear(last, n_components)
        self.latent_log_var = nn.Linear(last, n_components)
        self.decoder = _mlp([n_components, *reversed(hidden)], activation)
        first = hidden[0] if hidden else n_components
        self.output_mean = nn.Linear(first, output_width)
        self.per_sample_variance = self.n_gaussian > 0 and decoder_variance == "sample"
        if self.per_sample_variance:
            self.output_log_var = nn.Linear(first, self.n_gaussian)
        else:
            self.output_log_var = None
        self.feature_log_var = nn.Parameter(torch.zeros(self.n_gaussian))

    def config(self) -> dict:
        """The constructor arguments, JSON-able: ``VAEModule(**config)`` rebuilds
        the architecture (model files store it next to the weights). The
        layout is left out when it is the default one of ``likelihood``."""
        config = {
            "n_features": self.n_features,
            "n_components": self.n_components,
            "hidden_layer_sizes": list(self.hidden_layer_sizes),
            "activation": self.activation,
            "likelihood": self.likelihood,
            "decoder_variance": self.decoder_variance,
        }
        if self.layout is not None:
            config["layout"] = self.layout.to_dict()
        return config

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

        The old inputs ``u`` and the new ones ``v`` are related column-wise
        by ``u = factor * v + shift`` (factor 1 and shift 0 for the columns
        that are not Gaussian). Afterwards ``v`` gets the posterior that
        ``u`` got, and the decoder's distribution over ``v`` is the old one
        over ``u`` carried through the same map; so the density in any units
        both are derived from is unchanged (exactly, unless a decoder
        log-variance sits at its clamp). A missing value is 0 in either
        units: where the encoder has an indicator for it, the indicator's
        weight takes back the shift. Used when streaming training refines
        the standardisation.
        """
        ref = self.output_mean.weight
        factor = torch.as_tensor(factor, dtype=ref.dtype, device=ref.device)
        shift = torch.as_tensor(shift, dtype=ref.dtype, device=ref.device)
        # The Gaussian columns are the first inputs and outputs, in this order.
        factor, shift = factor[self.gaussian_index], shift[self.gaussian_index]
        g = self.n_gaussian
        masked = self.masked_columns
        first = [self.encoder[0]] if len(self.encoder) else [self.latent_mean, self.latent_log_var]
        mask_inputs = first[0].in_features - len(masked)
        gaussian = self.gaussian_index.tolist() if masked else []
        for layer in first:
            layer.bias += layer.weight[:, :g] @ shift
            for position, j in enumerate(masked):
                if j in gaussian:
                    column = gaussian.index(j)
                    layer.weight[:, mask_inputs + position] -= (
                        layer.weight[:, column] * shift[column]
                    )
            layer.weight[:, :g] *= factor
        self.output_mean.weight[:g] /= factor[:, None]
        self.output_mean.bias[:g] = (self.output_mean.bias[:g] - shift) / factor
        if g:
            log_var = self.output_log_var.bias if self.per_sample_variance else self.feature_log_var
            log_var -= 2.0 * torch.log(factor)

    # ------------------------------------------------------------ the layout
    def column_index(self, kind):
        """Positions of the columns of ``kind`` (on the module's device)."""
        return getattr(self, f"{kind}_index")

    def column_blocks(self, x):
        """The columns of ``x`` (..., n_features) of each kind present, in
        table order: ``{kind: block}``."""
        if self.uniform_kind is not None:
            return {self.uniform_kind: x}
        return {kind: x[..., self.column_index(kind)] for kind, *_ in self.blocks}

    def network_input(self, x):
        """The encoder's input for rows ``x`` (NaN where missing)."""
        filled, _ = fill_missing(x)
        if self.uniform_kind is not None:
            return filled
        parts = []
        for kind, counts, *_ in self.blocks:
            index = self.column_index(kind)
            model = OBSERVATION_MODELS[kind]
            parts += model.encoder_input(filled[:, index], x[:, index], counts)
        parts.append(torch.isnan(x[:, self.mask_index]).to(x.dtype))
        return torch.cat(parts, dim=1)

    def split_output(self, location, log_var=None):
        """The decoder output as ``{kind: params}``, each kind's parameters
        as its observation model's ``parameters`` makes them."""
        return {
            kind: OBSERVATION_MODELS[kind].parameters(location[..., start:stop], counts, log_var)
            for kind, counts, start, stop in self.blocks
        }

    def per_column(self, method, params, x=None, *args):
        """``method`` of each kind's observation model, in column order: called
        with the kind's block of ``x`` (when given), its ``params``, then
        ``args``."""
        blocks = None if x is None else self.column_blocks(x)
        out = {}
        for kind, p in params.items():
            function = getattr(OBSERVATION_MODELS[kind], method)
            out[kind] = function(p, *args) if blocks is None else function(blocks[kind], p, *args)
        return self.to_columns(out)

    def to_columns(self, blocks):
        """``{kind: block of shape (..., n, n_kind)}`` back into column order."""
        if self.uniform_kind is not None:
            return blocks[self.uniform_kind]
        first = next(iter(blocks.values()))
        out = first.new_empty((*first.shape[:-1], self.n_features))
        for kind, block in blocks.items():
            out[..., self.column_index(kind).to(out.device)] = block
        return out

    # --------------------------------------------------------------- forward
    def encode(self, x):
        """Mean and log-variance of q(z|x), each of shape (n, n_components)."""
        h = self.encoder(self.network_input(x))
        log_var = self.latent_log_var(h).clamp(MIN_LATENT_LOG_VAR, MAX_LATENT_LOG_VAR)
        return self.latent_mean(h), log_var

    def decode(self, z):
        """Parameters of p(x|z): the output block (Gaussian means, Bernoulli
        logits, categorical logits) and the Gaussian log-variances (None
        without Gaussian columns). Leading dimensions of ``z`` are kept."""
        h = self.decoder(z)
        location = self.output_mean(h)
        if self.n_gaussian == 0:
            return location, None
        if self.per_sample_variance:
            log_var = self.output_log_var(h)
            if SAMPLE_LOG_VAR_RANGE is not None:
                log_var = self.feature_log_var + SAMPLE_LOG_VAR_RANGE * torch.tanh(log_var)
            return location, log_var.clamp(MIN_LOG_VAR, MAX_LOG_VAR)
        # Clamped before it is expanded: one value per feature, not per
        # entry (a tenth of a training step's elementwise work otherwise).
        log_var = self.feature_log_var.clamp(MIN_LOG_VAR, MAX_LOG_VAR)
        return location, log_var.expand((*location.shape[:-1], self.n_gaussian))

    def decoder_mean(self, z):
        """The typical row given z, in column order and the model's units: the
        mean of a Gaussian column, the probability of a Bernoulli one, the
        most likely code of a categorical one."""
        return self.per_column("mean", self.split_output(*self.decode(z)))


def _output_blocks(layout, n_features, likelihood):
    """``(kind, counts, start, stop)`` of each kind with columns, in table
    order: the category counts of its columns (None for the default layout,
    which has no categories) and its slice of the decoder output. The
    default layout stays O(1) in size (see VAEModule.layout)."""
    if layout is None:
        width = n_features * OBSERVATION_MODELS[likelihood].output_width(0)
        return [(likelihood, None, 0, width)]
    blocks, start = [], 0
    for kind, model in OBSERVATION_MODELS.items():
        counts = [layout.n_categories[j] for j in layout.indices(kind)]
        if counts:
            stop = start + sum(model.output_width(count) for count in counts)
            blocks.append((kind, counts, start, stop))
            start = stop
    return blocks
