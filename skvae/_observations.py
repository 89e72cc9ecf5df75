"""Observation models p(x_j | z), one class per column kind, in one table.

``OBSERVATION_MODELS`` maps a kind to the object that knows everything about
it, as scikit-learn's ``ACTIVATIONS`` and ``LOSS_FUNCTIONS`` do: how its
columns enter the encoder, how many decoder outputs they take, and, from
those outputs, the log-probability of a value, the mean (the value a
missing entry is completed with when scoring), the squared error, the gaps
a real value would add to the last two when the mean stands in for it
(``log_prob_gap``, ``squared_error_gap``) and a sample. The network and the
likelihoods loop over this table; adding a kind is one class and one entry.

Each method works on a block: every column of its kind, in column order.
``x`` is the block of the model's input with missing entries set to 0
(the caller replaces what comes out for them); only ``encoder_input`` also
gets the block with NaN where missing. ``params`` is what
``parameters`` made of the kind's slice of the decoder output; leading
dimensions (latent samples) broadcast against ``x``'s rows. The order of
the table is the order of the blocks in the encoder input and the decoder
output. Torch only, apart from ``check_support``, which validates input
values (NumPy) before they reach the network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


class Gaussian:
    """Standardised numeric column: a mean per column from the decoder and a
    log-variance (learned per column, or per row with
    ``decoder_variance="sample"``)."""

    kind = "gaussian"
    # Holds a category count per column (0 for kinds without categories).
    has_categories = False
    # Whether the encoder can get a missing-value indicator for the column.
    has_indicator = True
    # Whether fit standardises the column (mean_, scale_).
    standardised = True

    @staticmethod
    def output_width(n_categories):
        return 1

    @staticmethod
    def parameters(location, counts, log_var):
        return location, log_var

    @staticmethod
    def encoder_input(filled, x, counts):
        return [filled]

    @staticmethod
    def log_prob(x, params):
        location, log_var = params
        return -0.5 * (LOG_2PI + log_var + (x - location) ** 2 * torch.exp(-log_var))

    @staticmethod
    def mean(params):
        return params[0]

    @staticmethod
    def squared_error(x, params):
        return (x - params[0]) ** 2

    @staticmethod
    def log_prob_gap(params):
        """What a value drawn from the column's prediction scores below the
        prediction itself, on average: ``E[log p(x)] - log p(mean)`` = -1/2."""
        return torch.full_like(params[0], -0.5)

    @staticmethod
    def squared_error_gap(params):
        """The expected squared error of a value drawn from the prediction:
        its variance (the prediction itself has none)."""
        return torch.exp(params[1])

    @staticmethod
    def sample(params, generator):
        location, log_var = params
        noise = torch.randn(location.shape, generator=generator)
        return location + torch.exp(0.5 * log_var) * noise

    @staticmethod
    def check_support(values, label):
        pass


class Bernoulli:
    """Column of 0/1 values (or probabilities in [0, 1]): one logit per column."""

    kind = "bernoulli"
    has_categories = False
    has_indicator = True
    standardised = False

    output_width = Gaussian.output_width
    encoder_input = Gaussian.encoder_input

    @staticmethod
    def parameters(location, counts, log_var):
        return location

    @staticmethod
    def log_prob(x, logits):
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")

    @staticmethod
    def mean(logits):
        return torch.sigmoid(logits)

    @staticmethod
    def squared_error(x, logits):
        return (x - torch.sigmoid(logits)) ** 2

    @staticmethod
    def log_prob_gap(logits):
        """0: a missing entry is scored at its predicted value (a
        probability, whose log-likelihood is already minus the entropy)."""
        return torch.zeros_like(logits)

    squared_error_gap = log_prob_gap

    @staticmethod
    def sample(logits, generator):
        return torch.bernoulli(torch.sigmoid(logits), generator=generator)

    @staticmethod
    def check_support(values, label):
        """ValueError unless every observed value lies in [0, 1]."""
        observed = values[~np.isnan(values)]
        if observed.size and (observed.min() < 0 or observed.max() > 1):
            raise ValueError(
                f"Column {label} is modelled as Bernoulli and needs values in [0, 1]; "
                f"got values in [{observed.min():.3g}, {observed.max():.3g}]. Model it "
                "as 'gaussian' (likelihood='gaussian' or column_types) if it is not "
                "a 0/1 column."
            )


class Categorical:
    """Column of category codes: a softmax over the categories seen in fit.

    A code of ``UNSEEN_CODE`` (any negative code: a category not seen in
    training) is scored as the least likely category of its column.
    """

    kind = "categorical"
    has_categories = True
    # The one-hot input is all zeros when the value is missing.
    has_indicator = False
    standardised = False

    @staticmethod
    def output_width(n_categories):
        return n_categories

    @staticmethod
    def parameters(location, counts, log_var):
        return list(torch.split(location, counts, dim=-1))

    @staticmethod
    def _codes(x):
        """Codes as int64 (0 where missing or unseen) and where they are valid."""
        valid = x >= 0  # False for NaN and for UNSEEN_CODE
        return torch.where(valid, x, 0.0).long(), valid

    @staticmethod
    def encoder_input(filled, x, counts):
        # ``x`` holds NaN where the value is missing: its one-hot is zeros.
        codes, valid = Categorical._codes(x)
        return [
            F.one_hot(codes[:, j], count).to(x.dtype) * valid[:, j : j + 1]
            for j, count in enumerate(counts)
        ]

    @staticmethod
    def log_prob(x, logits):
        codes, _ = Categorical._codes(x)
        unseen = x < 0
        columns = []
        for j, block in enumerate(logits):
            log_p = torch.log_softmax(block, dim=-1)
            index = codes[:, j].expand(log_p.shape[:-1]).unsqueeze(-1)
            picked = log_p.gather(-1, index).squeeze(-1)
            columns.append(torch.where(unseen[:, j], log_p.min(dim=-1).values, picked))
        return torch.stack(columns, dim=-1)

    @staticmethod
    def mean(logits):
        """The most likely code of each column (the mode: codes have no mean)."""
        return torch.stack([block.argmax(dim=-1).to(block.dtype) for block in logits], dim=-1)

    @staticmethod
    def squared_error(x, logits):
        """The Brier score: squared error of the one-hot code against the
        predicted probabilities; an unseen category counts as the least
        likely one."""
        codes, _ = Categorical._codes(x)
        unseen = x < 0
        brier = []
        for j, block in enumerate(logits):
            p = torch.softmax(block, dim=-1)
            target = torch.where(unseen[:, j], p.argmin(dim=-1), codes[:, j])
            one_hot = F.one_hot(target, p.shape[-1]).to(p.dtype)
            brier.append(torch.sum((one_hot - p) ** 2, dim=-1))
        return torch.stack(brier, dim=-1)

    @staticmethod
    def log_prob_gap(logits):
        """0: a missing entry is scored as its most likely category."""
        return logits[0].new_zeros((*logits[0].shape[:-1], len(logits)))

    squared_error_gap = log_prob_gap

    @staticmethod
    def sample(logits, generator):
        codes = [
            torch.multinomial(torch.softmax(block, dim=-1), 1, generator=generator)[:, 0]
            for block in logits
        ]
        return torch.stack(codes, -1).to(logits[0].dtype)

    check_support = Gaussian.check_support


OBSERVATION_MODELS = {model.kind: model for model in (Gaussian, Bernoulli, Categorical)}
KINDS = tuple(OBSERVATION_MODELS)
