"""Ablation: variants of the skvae detector in both settings users have.

Each variant changes one thing of ``VAEAnomalyDetector()`` and runs on every
dataset with the same seeds; nothing is tuned per dataset. Two settings:

- contaminated: fit on every row (anomalies included, no labels), score them;
- novelty: fit on a random half of the normal rows (``RandomState(0)``),
  score the other half plus every anomaly.

Datasets with more than 20,000 rows are subsampled to 20,000 with the
anomaly share kept (``RandomState(0)``: anomalies drawn first, then normal
rows, without replacement, in their original order). IsolationForest and
PyOD's kNN (distance to the 5th neighbour, computed here with scikit-learn)
run beside the variants as references, and the same kNN on features
standardised with the training rows' mean and standard deviation (what the
VAE sees), to separate the method from the scaling. Writes ``results/ablation.csv`` and
the ablation section of ``RESULTS.md``.

    python benchmarks/ablation.py --jobs 2
    python benchmarks/ablation.py --variants default "variance floor 0.1" --seeds 0
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np
from _harness import (
    DEFAULT_DATA,
    HERE,
    evaluate,
    load_datasets,
    machine_lines,
    markdown_table,
    pin_threads,
    set_threads,
    timed,
    write_csv,
    write_section,
)

from skvae import VAEAnomalyDetector

MAX_ROWS = 20_000
SETTINGS = ("contaminated", "novelty")
PREVIOUS_DEFAULTS = {
    "batch_size": 256,
    "max_iter": 200,
    "learning_rate": "constant",
    "learning_rate_init": 1e-3,
}

# label -> (why it is tried, detector parameters, library constants moved:
# {(module, name): value})
# Variants measured before a change of the defaults keep the defaults they
# were measured with, so that rerunning them gives the stored rows again:
# up to step size 1e-3 with 1000 reference steps (OLD_BUDGET, compare them
# with "budget 1000"), then 1e-3 with 1500 (STEP_1E3 and BUDGET_1500,
# compare them with "budget 1500, step size x1"), now 3e-3 with 500.
STEP_1E3 = {"learning_rate_init": 1e-3}
OLD_BUDGET = {("skvae._training", "BUDGET_STEPS"): 1000}
BUDGET_1500 = {("skvae._training", "BUDGET_STEPS"): 1500}
VARIANTS = {
    "default": ("the library defaults", {}, {}),
    "budget 1500, step size x1": (
        "training length: the previous default, 1500 reference steps of step size 1e-3",
        STEP_1E3,
        BUDGET_1500,
    ),
    "previous defaults": (
        "before the budget: batch 256, up to 200 epochs, constant step, early stopping",
        PREVIOUS_DEFAULTS,
        {("skvae._network", "MIN_LOG_VAR"): math.log(1e-4)},
    ),
    "budget 1000": (
        "training length: the previous default budget, 1000 reference steps",
        STEP_1E3,
        OLD_BUDGET,
    ),
    "budget 2000": (
        "training length: 2000 reference steps",
        STEP_1E3,
        {("skvae._training", "BUDGET_STEPS"): 2000},
    ),
    "variance floor 1e-4": (
        "likelihood: decoder variance floor 1e-4 (the floor before this change)",
        STEP_1E3,
        {("skvae._network", "MIN_LOG_VAR"): math.log(1e-4), **BUDGET_1500},
    ),
    "variance floor 0.01": (
        "likelihood: decoder variance floor 0.01",
        STEP_1E3,
        {("skvae._network", "MIN_LOG_VAR"): math.log(0.01), **BUDGET_1500},
    ),
    "variance floor 0.1": (
        "likelihood: decoder variance floor 0.1",
        STEP_1E3,
        {("skvae._network", "MIN_LOG_VAR"): math.log(0.1), **BUDGET_1500},
    ),
    "no early stopping": (
        "training length: the whole budget, no early stopping",
        {"early_stopping": False, **STEP_1E3},
        BUDGET_1500,
    ),
    "hidden (128, 64), budget 1000": (
        "network size: hidden layers twice as wide",
        {"hidden_layer_sizes": (128, 64), **STEP_1E3},
        OLD_BUDGET,
    ),
    "hidden (128, 64), budget 2000": (
        "network size and training length: twice as wide, 2000 reference steps",
        {"hidden_layer_sizes": (128, 64), **STEP_1E3},
        {("skvae._training", "BUDGET_STEPS"): 2000},
    ),
    "robust trim 3, budget 1000": (
        "contamination: leave out only rows above median + 3 robust SDs of the batch loss "
        "(at most the trim fraction)",
        STEP_1E3,
        {("skvae._training", "ROBUST_TRIM"): 3.0, **OLD_BUDGET},
    ),
    "trim 0": (
        "contamination: train on every row (what a user with clean training rows can set)",
        {"trim_fraction": 0.0},
        {},
    ),
    "trim 0, budget 1500, step size x1": (
        "contamination: train on every row, at the previous default budget",
        {"trim_fraction": 0.0, **STEP_1E3},
        BUDGET_1500,
    ),
    "trim 0, budget 1000": (
        "contamination: train on every row",
        {"trim_fraction": 0.0, **STEP_1E3},
        OLD_BUDGET,
    ),
    "sample variance, budget 1000": (
        "likelihood: the decoder predicts each row's variances (heteroscedastic)",
        {"decoder_variance": "sample", **STEP_1E3},
        OLD_BUDGET,
    ),
    "sample variance, floor 0.01, budget 1000": (
        "likelihood: each row's variances, floored at 0.01",
        {"decoder_variance": "sample", **STEP_1E3},
        {("skvae._network", "MIN_LOG_VAR"): math.log(0.01), **OLD_BUDGET},
    ),
    "sample variance, floor 0.1, budget 1000": (
        "likelihood: each row's variances, floored at 0.1",
        {"decoder_variance": "sample", **STEP_1E3},
        {("skvae._network", "MIN_LOG_VAR"): math.log(0.1), **OLD_BUDGET},
    ),
    "sample variance within x4, budget 1000": (
        "likelihood: each row's variances, within a factor 4 of the column's learned one",
        {"decoder_variance": "sample", **STEP_1E3},
        {("skvae._network", "SAMPLE_LOG_VAR_RANGE"): math.log(4.0), **OLD_BUDGET},
    ),
    "sample variance within x16, budget 1000": (
        "likelihood: each row's variances, within a factor 16 of the column's learned one",
        {"decoder_variance": "sample", **STEP_1E3},
        {("skvae._network", "SAMPLE_LOG_VAR_RANGE"): math.log(16.0), **OLD_BUDGET},
    ),
    "budget 1000, step size x1.5": (
        "training length: 1000 reference steps with a 1.5x larger step size (the same distance)",
        {"learning_rate_init": 1.5e-3},
        OLD_BUDGET,
    ),
    "step size x4/3": (
        "training length: the default 500 reference steps of step size 4e-3 (a longer distance)",
        {"learning_rate_init": 4e-3},
        {},
    ),
    "hidden (128, 64)": (
        "network size: hidden layers twice as wide, at the default budget",
        {"hidden_layer_sizes": (128, 64)},
        {},
    ),
    "robust trim 3": (
        "contamination: leave out only rows above median + 3 robust SDs of the batch loss "
        "(at most the trim fraction), at the default budget",
        {},
        {("skvae._training", "ROBUST_TRIM"): 3.0},
    ),
    "robust trim 3, step size x4/3": (
        "contamination and training length: robust trim 3 with step size 4e-3",
        {"learning_rate_init": 4e-3},
        {("skvae._training", "ROBUST_TRIM"): 3.0},
    ),
    "robust trim 3, step size x4/3, hidden (128, 64)": (
        "robust trim 3, step size 4e-3 and hidden layers twice as wide",
        {"learning_rate_init": 4e-3, "hidden_layer_sizes": (128, 64)},
        {("skvae._training", "ROBUST_TRIM"): 3.0},
    ),
    "robust trim 3, step size x5/3": (
        "contamination and training length: robust trim 3 with step size 5e-3",
        {"learning_rate_init": 5e-3},
        {("skvae._training", "ROBUST_TRIM"): 3.0},
    ),
    "robust trim 3, step size x2": (
        "contamination and training length: robust trim 3 with step size 6e-3",
        {"learning_rate_init": 6e-3},
        {("skvae._training", "ROBUST_TRIM"): 3.0},
    ),
    "robust trim 3, budget 400, step size x5/3": (
        "robust trim 3, the distance of 500 steps of 4e-3 in 400 reference steps of 5e-3",
        {"learning_rate_init": 5e-3},
        {("skvae._training", "ROBUST_TRIM"): 3.0, ("skvae._training", "BUDGET_STEPS"): 400},
    ),
    "robust trim 3, step size x4/3, 16 components": (
        "robust trim 3, step size 4e-3 and a 16-dimensional latent space",
        {"learning_rate_init": 4e-3, "n_components": 16},
        {("skvae._training", "ROBUST_TRIM"): 3.0},
    ),
    "robust trim 3, hidden (128, 64), budget 400, step size x5/3": (
        "robust trim 3 and hidden layers twice as wide, 400 reference steps of 5e-3",
        {"learning_rate_init": 5e-3, "hidden_layer_sizes": (128, 64)},
        {("skvae._training", "ROBUST_TRIM"): 3.0, ("skvae._training", "BUDGET_STEPS"): 400},
    ),
    "robust trim 3, hidden (128, 64), budget 300, step size x20/9": (
        "robust trim 3 and hidden layers twice as wide, 300 reference steps of 6.67e-3",
        {"learning_rate_init": 2e-3 / 0.3, "hidden_layer_sizes": (128, 64)},
        {("skvae._training", "ROBUST_TRIM"): 3.0, ("skvae._training", "BUDGET_STEPS"): 300},
    ),
    "robust trim 3, hidden (256, 128), budget 400, step size x5/3": (
        "robust trim 3 and hidden layers four times as wide, 400 reference steps of 5e-3",
        {"learning_rate_init": 5e-3, "hidden_layer_sizes": (256, 128)},
        {("skvae._training", "ROBUST_TRIM"): 3.0, ("skvae._training", "BUDGET_STEPS"): 400},
    ),
    "trim 0, step size x5/3": (
        "contamination and training length: train on every row, step size 5e-3",
        {"trim_fraction": 0.0, "learning_rate_init": 5e-3},
        {},
    ),
    "budget 750, step size x2": (
        "training length: 750 reference steps with twice the step size (the same distance)",
        {"learning_rate_init": 2e-3},
        {("skvae._training", "BUDGET_STEPS"): 750},
    ),
    "robust trim 3, step size x5/3, patience 30": (
        "early stopping: robust trim 3 at 5e-3 stops 300 clean rows after 22 of 250 epochs "
        "while the validation ELBO still gains 0.23 nats by epoch 56; three times the patience",
        {"learning_rate_init": 5e-3, "n_iter_no_change": 30},
        {("skvae._training", "ROBUST_TRIM"): 3.0},
    ),
    "robust trim 3, step size x5/3, no early stopping": (
        "early stopping: robust trim 3 at 5e-3 trained for the whole budget, every row",
        {"learning_rate_init": 5e-3, "early_stopping": False},
        {("skvae._training", "ROBUST_TRIM"): 3.0},
    ),
    "latent GMM prior, 4 components": (
        "scoring: the prior's holes. The default model, scored with its standard normal "
        "prior replaced by a 4-component Gaussian mixture fitted to the training rows' "
        "latent means (a two-stage VAE's aggregate posterior)",
        {},
        {},
    ),
    "latent GMM prior, 10 components": (
        "scoring: the same with a 10-component mixture",
        {},
        {},
    ),
    "trim 0, latent GMM prior, 10 components": (
        "scoring and contamination: train on every row and score with the 10-component "
        "latent mixture (the two fixes for the normal rows' tails together)",
        {"trim_fraction": 0},
        {},
    ),
    "novelty": (
        "scoring and contamination: novelty=True, for clean training rows: train on every "
        "row, score the bound minus the 5th-neighbour distance to up to 10,000 training rows",
        {"novelty": True},
        {},
    ),
    "novelty, 4,096 neighbour rows": (
        "novelty=True keeping at most 4,096 training rows to measure distances to",
        {"novelty": True},
        {("skvae._neighbors", "MAX_ROWS"): 4096},
    ),
    "novelty, 1,024 neighbour rows": (
        "novelty=True keeping at most 1,024 training rows",
        {"novelty": True},
        {("skvae._neighbors", "MAX_ROWS"): 1024},
    ),
}
# label -> components of the Gaussian mixture that replaces the prior when
# the variant scores (latent_prior_scores).
LATENT_PRIOR_COMPONENTS = {
    "latent GMM prior, 4 components": 4,
    "latent GMM prior, 10 components": 10,
    "trim 0, latent GMM prior, 10 components": 10,
}
PEERS = ("IsolationForest", "kNN", "kNN, standardised features")


def subsample(X, y, max_rows=MAX_ROWS):
    """At most ``max_rows`` rows with the anomaly share kept (see module doc)."""
    if X.shape[0] <= max_rows:
        return X, y
    rng = np.random.RandomState(0)
    n_anomalies = round(max_rows * y.mean())
    anomalies = rng.choice(np.flatnonzero(y == 1), n_anomalies, replace=False)
    normals = rng.choice(np.flatnonzero(y == 0), max_rows - n_anomalies, replace=False)
    keep = np.sort(np.concatenate([anomalies, normals]))
    return X[keep], y[keep]


def split(X, y, setting):
    """(rows to fit, rows to score, their labels) of one setting."""
    if setting == "contaminated":
        return X, X, y
    normals = np.random.RandomState(0).permutation(np.flatnonzero(y == 0))
    fit = np.sort(normals[: len(normals) // 2])
    score = np.sort(np.concatenate([normals[len(normals) // 2 :], np.flatnonzero(y == 1)]))
    return X[fit], X[score], y[score]


def _library_constants():
    """The library's value of every constant a variant moves."""
    import importlib

    return {
        (module, name): getattr(importlib.import_module(module), name)
        for _, _, moved in VARIANTS.values()
        for module, name in moved
    }


LIBRARY_CONSTANTS = _library_constants()


def _set_constants(moved):
    # Each constant lives in one place in the library; a variant moves it
    # for its own fits and every other variant gets the library's value back.
    import importlib

    for (module, name), value in {**LIBRARY_CONSTANTS, **moved}.items():
        setattr(importlib.import_module(module), name, value)


def _fit_variant(label, X, seed):
    _, params, moved = VARIANTS[label]
    _set_constants(moved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = VAEAnomalyDetector(random_state=seed, **params).fit(X)
    if label in LATENT_PRIOR_COMPONENTS:
        return model, latent_prior_scores(model, X, LATENT_PRIOR_COMPONENTS[label])
    return model, lambda Z: -model.score_samples(Z)


def latent_prior_scores(model, X_fit, n_components):
    """Anomaly scores of ``model`` with its N(0, I) prior replaced by a
    Gaussian mixture fitted to the latent means of ``X_fit`` (``embed``), at
    the plug-in point the ELBO score uses (the posterior mean): ELBO +
    log q(mean) - log N(mean; 0, I). Regions the prior covers but the
    training rows leave empty (the prior's holes) then score low. An
    experiment, not a library option."""
    from sklearn.mixture import GaussianMixture

    mixture = GaussianMixture(
        n_components, covariance_type="full", reg_covar=1e-4, random_state=0
    ).fit(model.embed(X_fit))

    def score(Z):
        means = model.embed(Z)
        log_prior = -0.5 * np.sum(means**2 + np.log(2 * np.pi), axis=1)
        return -(model.score_samples(Z) + mixture.score_samples(means) - log_prior)

    return score


def _fit_peer(label, X, seed):
    if label == "IsolationForest":
        from sklearn.ensemble import IsolationForest

        model = IsolationForest(random_state=0).fit(X)
        return model, lambda Z: -model.score_samples(Z)
    from sklearn.neighbors import NearestNeighbors

    # PyOD's KNN() defaults: distance to the 5th neighbour, raw features; a
    # training row is not its own neighbour.
    k = 5
    if label == "kNN":
        mean, scale = 0.0, 1.0
    else:
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale == 0] = 1.0
    model = NearestNeighbors(n_neighbors=k).fit((X - mean) / scale)

    def score(Z):
        same = Z is X
        query = None if same else (Z - mean) / scale
        distances, _ = model.kneighbors(query, n_neighbors=k)
        return distances[:, -1]

    return model, score


def _run_one(dataset, setting, label, seed, n_threads):
    set_threads(n_threads)  # again: a worker process starts with its own pools
    name, X, y = dataset
    X_fit, X_score, y_score = split(X, y, setting)
    fit = _fit_peer if label in PEERS else _fit_variant
    (model, score), fit_s = timed(fit, label, X_fit, seed)
    scores, score_s = timed(score, X_score if setting == "novelty" else X_fit)
    roc_auc, ap = evaluate(y_score, scores)
    print(
        f"{name:>14} {setting:>12} {label:>22} seed={seed} roc_auc={roc_auc:.4f} "
        f"ap={ap:.4f} fit={fit_s:.1f}s",
        flush=True,
    )
    return dict(
        dataset=name,
        setting=setting,
        detector=label,
        seed=seed,
        n_fit=X_fit.shape[0],
        roc_auc=round(roc_auc, 4),
        average_precision=round(ap, 4),
        fit_s=round(fit_s, 3),
        score_s=round(score_s, 3),
        n_iter=getattr(model, "n_iter_", ""),
    )


def run(datasets, labels, seeds, n_jobs=1, n_threads=1):
    from joblib import Parallel, delayed

    tasks = [
        (dataset, setting, label, seed)
        for dataset in datasets
        for setting in SETTINGS
        for label in labels
        for seed in (seeds if label not in PEERS else [0])
    ]
    # Longest fits first so the pool does not end on one straggler.
    tasks.sort(key=lambda task: -task[0][1].shape[0])
    try:
        return Parallel(n_jobs=n_jobs)(delayed(_run_one)(*task, n_threads) for task in tasks)
    finally:
        # In-process runs (n_jobs=1) leave the library's constants as they found them.
        _set_constants({})


def _mean_table(rows, labels, names):
    out = {}
    for setting in SETTINGS:
        for label in labels:
            per_dataset = {}
            for name in names:
                runs = [
                    r
                    for r in rows
                    if r["setting"] == setting and r["detector"] == label and r["dataset"] == name
                ]
                if runs:
                    per_dataset[name] = {
                        key: float(np.mean([r[key] for r in runs]))
                        for key in ("roc_auc", "average_precision", "fit_s")
                    }
            if len(per_dataset) == len(names):
                out[setting, label] = per_dataset
    return out


def report(rows, args, argv, names):
    labels = list(dict.fromkeys(r["detector"] for r in rows))
    table = _mean_table(rows, labels, names)
    lines = ["## Ablation: variants of the default detector, both settings", ""]
    lines += machine_lines(args.threads, __file__, argv)
    lines += [
        f"- {len(names)} datasets ({', '.join(names)}); more than {MAX_ROWS:,} rows are "
        f"subsampled to {MAX_ROWS:,} keeping the anomaly share (RandomState(0), anomalies "
        "then normal rows, without replacement). Contaminated: fit on every row, score them. "
        "Novelty: fit on a random half of the normal rows (RandomState(0)), score the other "
        "half plus every anomaly.",
        "- Each variant: mean over the seeds it ran (column seeds), then over "
        "datasets. IsolationForest(random_state=0) and kNN (PyOD's KNN() defaults: distance "
        "to the 5th neighbour; also on features standardised by the training rows) once. "
        "Mean rank is over the detectors in this table (1 = best).",
        "",
    ]
    seeds_run = {
        name: sorted(
            {r["seed"] for r in rows if r["dataset"] == name and r["detector"] == "default"}
        )
        for name in names
    }
    fewer = [name for name in names if len(seeds_run[name]) < len(args.seeds)]
    if fewer:
        lines += [
            "- Fewer seeds on: "
            + ", ".join(f"{name} (seeds {', '.join(map(str, seeds_run[name]))})" for name in fewer)
            + ".",
            "",
        ]
    for setting in SETTINGS:
        present = [label for label in labels if (setting, label) in table]
        ranks = {label: [] for label in present}
        for name in names:
            values = [-table[setting, label][name]["roc_auc"] for label in present]
            order = _ranks(values)
            for label, rank in zip(present, order, strict=True):
                ranks[label].append(rank)
        body = []
        for label in present:
            per = table[setting, label]
            worst = min(per, key=lambda name: per[name]["roc_auc"])
            body.append(
                [
                    label,
                    VARIANTS[label][0] if label in VARIANTS else "reference peer",
                    _seeds_run(rows, setting, label),
                    f"{np.mean([v['roc_auc'] for v in per.values()]):.4f}",
                    f"{np.mean([v['average_precision'] for v in per.values()]):.4f}",
                    f"{np.mean(ranks[label]):.2f}",
                    f"{worst} {per[worst]['roc_auc']:.3f}",
                    f"{np.mean([v['fit_s'] for v in per.values()]):.2f}",
                ]
            )
        lines += [f"### {setting.capitalize()} setting", ""]
        lines.append(
            markdown_table(
                [
                    "variant",
                    "direction",
                    "seeds",
                    "mean ROC-AUC",
                    "mean AP",
                    "mean rank",
                    "worst dataset",
                    "mean fit s",
                ],
                body,
            )
        )
        lines += _seed_spread_lines(rows, setting, args.seeds)
        lines += ["", f"ROC-AUC per dataset, {setting}:", ""]
        lines.append(
            markdown_table(
                ["variant", *names],
                [
                    [label, *(f"{table[setting, label][name]['roc_auc']:.3f}" for name in names)]
                    for label in present
                ],
            )
        )
        lines.append("")
    return "\n".join(lines) + "\n"


def _seeds_run(rows, setting, label):
    """The seeds a variant ran, per dataset: "0, 1, 2", or "0, 1, 2 on 7; 0 on 9"."""
    per_dataset = {}
    for r in rows:
        if r["setting"] == setting and r["detector"] == label:
            per_dataset.setdefault(r["dataset"], set()).add(int(r["seed"]))
    counts = {}
    for seeds in per_dataset.values():
        key = ", ".join(map(str, sorted(seeds)))
        counts[key] = counts.get(key, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{key} on {n}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _seed_spread_lines(rows, setting, seeds):
    """How much the default's mean moves from seed to seed (over the datasets
    run with every seed): the noise level a variant's difference has to clear."""
    auc = {
        (r["dataset"], r["seed"]): r["roc_auc"]
        for r in rows
        if r["detector"] == "default" and r["setting"] == setting
    }
    names = sorted({name for name, _ in auc if all((name, seed) in auc for seed in seeds)})
    if len(seeds) < 2 or not names:
        return []
    per_seed = [np.mean([auc[name, seed] for name in names]) for seed in seeds]
    return [
        "",
        f"Mean ROC-AUC of the default for each seed, over the {len(names)} datasets run with "
        "every seed: "
        + ", ".join(f"{value:.4f}" for value in per_seed)
        + f" (spread {max(per_seed) - min(per_seed):.4f}).",
    ]


def _ranks(values):
    """Ranks of ``values`` (1 = smallest), ties sharing their mean rank."""
    from scipy.stats import rankdata

    return list(rankdata(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=[DEFAULT_DATA, DEFAULT_DATA.parent / "adbench-large"],
        help="folders of .npz files",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="fits run at once (processes)")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[*VARIANTS, *PEERS],
        default=[*VARIANTS, *PEERS],
    )
    parser.add_argument("--datasets", nargs="+", help="only these dataset names")
    parser.add_argument("--output", type=Path, default=HERE)
    parser.add_argument(
        "--merge", action="store_true", help="add to results/ablation.csv instead of replacing it"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the RESULTS.md section from results/ablation.csv without fitting",
    )
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    results_dir = args.output / "results"
    csv_path = results_dir / "ablation.csv"
    if args.report_only:
        rows = _read_csv(csv_path)
        # Only datasets every detector ran on in both settings, so the means compare alike.
        done = {(r["dataset"], r["setting"], r["detector"]) for r in rows}
        labels = {r["detector"] for r in rows}
        names = [
            name
            for name in dict.fromkeys(r["dataset"] for r in rows)
            if all((name, s, label) in done for s in SETTINGS for label in labels)
        ]
        args.seeds = sorted({r["seed"] for r in rows if r["detector"] not in PEERS})
        write_section(
            "ablation", report(rows, args, argv, names), results_dir, args.output / "RESULTS.md"
        )
        return
    pin_threads(args.threads, __file__, argv, restart=from_command_line)
    datasets = [
        (name, *subsample(X, y))
        for folder in args.data
        for name, X, y in load_datasets(folder)
        if not args.datasets or name in args.datasets
    ]
    names = [name for name, _, _ in datasets]
    rows = run(datasets, args.variants, args.seeds, args.jobs, args.threads)
    if args.merge and csv_path.exists():
        rows = _read_csv(csv_path) + rows
    write_csv(csv_path, rows)
    write_section(
        "ablation", report(rows, args, argv, names), results_dir, args.output / "RESULTS.md"
    )
    print(f"wrote {csv_path} and {args.output / 'RESULTS.md'}")


def _read_csv(path):
    import csv

    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("roc_auc", "average_precision", "fit_s", "score_s"):
            row[key] = float(row[key]) if row[key] != "" else math.nan
        row["seed"] = int(row["seed"])
    return rows


if __name__ == "__main__":
    main()
