"""Mixed column types and missing values: native handling against one-hot + imputation.

ADBench tables are all numeric, so a mixed table is built from each dataset,
the same way for every dataset and seed (``make_mixed``):

- columns are taken in their file order; column ``j`` with ``j % 3 == 1`` is
  cut at its quintiles into a 5-level categorical column (``category`` dtype,
  levels ``"q0"`` … ``"q4"``; fewer where quantiles tie), ``j % 3 == 2`` is
  cut at its median into a ``bool`` column (``value > median``), the rest
  stay ``float64``;
- then ``--missing`` (default 10%) of the entries of every column are
  removed completely at random (NaN, ``pd.NA`` for the nullable boolean
  columns), drawn from the seed.

Two detectors, both ``VAEAnomalyDetector(random_state=seed)`` with default
parameters, see the same DataFrame and are scored by ADBench's unsupervised
protocol (fit on all rows without labels, score the same rows, ROC-AUC and
average precision against y):

- ``native``: the DataFrame as it is; Gaussian, categorical and Bernoulli
  likelihoods per column, missing entries left out of the likelihood.
- ``one-hot + impute``: the scikit-learn recipe in a Pipeline. Numeric
  columns ``SimpleImputer(strategy="mean")``, categorical and boolean columns
  ``SimpleImputer(strategy="most_frequent")`` then
  ``OneHotEncoder(handle_unknown="ignore")``, into the same detector (which
  then models every one-hot column as a Gaussian).
- ``one-hot + impute + indicators``: the same with
  ``SimpleImputer(add_indicator=True)``, so the detector also sees which
  entries were missing.

For reference the table also shows the detector on the original, complete,
all-numeric data (``numeric, complete``), which the corrupted tables lose
information against. Writes ``results/mixed_types.csv`` and the mixed-types
section of ``RESULTS.md``.

    python benchmarks/mixed_types.py
    python benchmarks/mixed_types.py --datasets cardio thyroid --seeds 0
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _harness import (
    DEFAULT_DATA,
    HERE,
    evaluate,
    load_datasets,
    machine_lines,
    markdown_table,
    set_threads,
    timed,
    write_csv,
    write_section,
)
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from skvae import VAEAnomalyDetector

# Datasets with mostly continuous columns, where discretising is a real loss
# of information for both contenders (largest ones left out for time).
DEFAULT_DATASETS = ["cardio", "Ionosphere", "mammography", "pendigits", "satimage-2", "thyroid"]
N_LEVELS = 5
METHODS = ["native", "one-hot + impute", "one-hot + impute + indicators", "numeric, complete"]


def make_mixed(X, missing, seed):
    """The mixed DataFrame built from numeric ``X`` (see the module docstring)."""
    rng = np.random.RandomState(seed)
    columns = {}
    for j in range(X.shape[1]):
        values = X[:, j]
        name = f"x{j}"
        if j % 3 == 1:
            codes = pd.qcut(values, N_LEVELS, labels=False, duplicates="drop")
            levels = [f"q{k}" for k in range(int(np.nanmax(codes)) + 1)]
            column = pd.Categorical.from_codes(codes.astype(int), categories=levels)
            column = pd.Series(column, name=name)
        elif j % 3 == 2:
            column = pd.Series(values > np.median(values), name=name).astype("boolean")
        else:
            column = pd.Series(values, name=name)
        holes = rng.uniform(size=len(values)) < missing
        columns[name] = column.mask(holes)
    return pd.DataFrame(columns)


def _detector(seed):
    return VAEAnomalyDetector(random_state=seed)


def _one_hot_pipeline(frame, seed, indicators):
    numeric = [c for c in frame if frame[c].dtype == np.float64]
    discrete = [c for c in frame if c not in numeric]
    # OneHotEncoder wants one dtype per column: booleans as strings, and
    # the missing marker as NaN rather than pd.NA.
    as_object = frame[discrete].astype(object).where(frame[discrete].notna(), np.nan)
    prepared = frame.assign(**{c: as_object[c].map(str, na_action="ignore") for c in discrete})
    prepare = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="mean", add_indicator=indicators), numeric),
            (
                "discrete",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent", add_indicator=indicators),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                discrete,
            ),
        ]
    )
    return make_pipeline(prepare, _detector(seed)), prepared


def run_one(method, X, frame, seed):
    """(anomaly scores, fit seconds, input width seen by the network)."""
    if method == "native":
        model, data = _detector(seed), frame
    elif method == "numeric, complete":
        model, data = _detector(seed), X
    else:
        model, data = _one_hot_pipeline(frame, seed, indicators=method.endswith("indicators"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning when max_iter is reached
        _, seconds = timed(model.fit, data)
    detector = model[-1] if hasattr(model, "steps") else model
    width = detector.module_.encoder[0].in_features
    return -model.score_samples(data), seconds, width


def parser(description, threads):
    """The options of the mixed-table benchmarks (this one and mixed_novelty.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--missing", type=float, default=0.1, help="share of entries removed")
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--output", type=Path, default=HERE)
    return parser


def run_tables(args, methods, measure):
    """The datasets of ``args`` and one row per dataset, seed and method, on
    the mixed table of each dataset and seed: ``measure(method, X, y, frame,
    seed)`` returns ``(roc_auc, average_precision, other fields)``."""
    datasets = [d for d in load_datasets(args.data) if d[0] in set(args.datasets)]
    rows = []
    for name, X, y in datasets:
        for seed in args.seeds:
            frame = make_mixed(X, args.missing, seed)
            for method in methods:
                auc, ap, fields = measure(method, X, y, frame, seed)
                rows.append(
                    dict(
                        dataset=name,
                        seed=seed,
                        method=method,
                        roc_auc=round(auc, 4),
                        average_precision=round(ap, 4),
                        **fields,
                    )
                )
                print(f"{name} seed {seed} {method}: ROC-AUC {auc:.3f} AP {ap:.3f}", flush=True)
    return datasets, rows


def write_results(name, rows, section, output):
    """``results/<name>.csv`` and the section ``name`` of RESULTS.md."""
    write_csv(output / "results" / f"{name}.csv", rows)
    write_section(name, section, results_dir=output / "results", results_md=output / "RESULTS.md")


def _measure(method, X, y, frame, seed):
    scores, seconds, width = run_one(method, X, frame, seed)
    auc, ap = evaluate(y, scores)
    return auc, ap, dict(fit_seconds=round(seconds, 2), input_width=width)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parser(__doc__.split("\n\n")[0], threads=1).parse_args(argv)
    set_threads(args.threads)
    datasets, rows = run_tables(args, METHODS, _measure)
    write_results("mixed_types", rows, _section(rows, datasets, args, argv), args.output)


def _section(rows, datasets, args, argv):
    table = pd.DataFrame(rows)
    lines = [
        "## Mixed column types and missing values",
        "",
        *machine_lines(args.threads, Path(__file__), argv),
        "",
        f"Mixed tables built from ADBench datasets as `benchmarks/mixed_types.py` documents: "
        f"every third column (from the second) cut into {N_LEVELS} quantile categories, every "
        f"third (from the third) into a bool at its median, the rest float; then "
        f"{args.missing:.0%} of every column's entries removed at random. Same detector "
        "(`VAEAnomalyDetector(random_state=seed)`, defaults) fed the DataFrame natively or "
        "through `SimpleImputer` + `OneHotEncoder` in a Pipeline; ADBench unsupervised "
        f"protocol; mean over seeds {' '.join(map(str, args.seeds))} (the seed draws the "
        "missing entries and the model's random_state).",
        "",
    ]
    lines += metric_tables(table, datasets, METHODS)
    wins = table.pivot_table(index=["dataset", "seed"], columns="method", values="roc_auc")
    for baseline in METHODS[1:3]:
        better = int((wins["native"] > wins[baseline]).sum())
        lines.append(
            f"- native beats {baseline} in ROC-AUC on {better} of {len(wins)} dataset-seed runs."
        )
    widths = table.groupby("method", sort=False)["input_width"].mean()
    lines.append(
        "- Mean encoder input width: "
        + ", ".join(f"{m} {widths[m]:.0f}" for m in METHODS)
        + " (native: values, one-hot codes of categories and missing indicators of numeric "
        "columns)."
    )
    return "\n".join(lines)


def metric_tables(table, datasets, methods):
    """Markdown lines: per metric, each dataset's mean over seeds under each
    method, and the mean over datasets."""
    mean = table.groupby(["dataset", "method"], sort=False)[["roc_auc", "average_precision"]]
    mean = mean.mean().unstack("method")
    lines = []
    for metric, title in (("roc_auc", "ROC-AUC"), ("average_precision", "Average precision")):
        body = [
            [name, *(f"{mean.loc[name, (metric, m)]:.3f}" for m in methods)]
            for name, _, _ in datasets
        ]
        body.append(["**mean**", *(f"**{mean[(metric, m)].mean():.3f}**" for m in methods)])
        lines += [f"{title}:", "", markdown_table(["dataset", *methods], body), ""]
    return lines


if __name__ == "__main__":
    main()
