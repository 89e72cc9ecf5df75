"""Novelty detection on mixed tables: the defaults against novelty=True.

The mixed tables of ``mixed_types.py`` (categorical and boolean columns,
``--missing`` of every column's entries removed), in the novelty setting of
``quality.py`` (fit on half of the normal rows, ``setting_split``; score the
other half and every anomaly). ``VAEAnomalyDetector(novelty=True)`` measures
distances in the encoder's input (one-hot categories, missing indicators,
missing entries at the column mean, then the missing-value correction), so
this is where its neighbour term could go wrong that the all-numeric
benchmark cannot show. Three detectors, each ``random_state=seed``:
the defaults, ``trim_fraction=0`` (the training half of the change) and
``novelty=True``. Writes ``results/mixed_novelty.csv`` and its section of
``RESULTS.md``.

    python benchmarks/mixed_novelty.py
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd
from _harness import (
    DEFAULT_DATA,
    HERE,
    evaluate,
    load_datasets,
    machine_lines,
    pin_threads,
    setting_split,
    write_csv,
    write_section,
)
from mixed_types import DEFAULT_DATASETS, make_mixed, metric_tables

from skvae import VAEAnomalyDetector

METHODS = {
    "defaults": {},
    "trim_fraction=0": {"trim_fraction": 0},
    "novelty=True": {"novelty": True},
}


def run_one(params, frame, y, seed):
    """(ROC-AUC, AP) of one detector fitted on the clean half."""
    fit, score = setting_split("novelty", y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning when max_iter is reached
        detector = VAEAnomalyDetector(random_state=seed, **params).fit(frame.iloc[fit])
    return evaluate(y[score], -detector.score_samples(frame.iloc[score]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--missing", type=float, default=0.1, help="share of entries removed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=HERE)
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    pin_threads(args.threads, __file__, argv, restart=from_command_line)
    datasets = [d for d in load_datasets(args.data) if d[0] in set(args.datasets)]
    rows = []
    for name, X, y in datasets:
        for seed in args.seeds:
            frame = make_mixed(X, args.missing, seed)
            for method, params in METHODS.items():
                auc, ap = run_one(params, frame, y, seed)
                rows.append(
                    dict(
                        dataset=name,
                        seed=seed,
                        method=method,
                        roc_auc=round(auc, 4),
                        average_precision=round(ap, 4),
                    )
                )
                print(f"{name} seed {seed} {method}: ROC-AUC {auc:.3f} AP {ap:.3f}", flush=True)
    write_csv(args.output / "results" / "mixed_novelty.csv", rows)
    write_section(
        "mixed_novelty",
        _section(rows, datasets, args, argv),
        results_dir=args.output / "results",
        results_md=args.output / "RESULTS.md",
    )


def _section(rows, datasets, args, argv):
    lines = [
        "## Novelty detection on mixed tables",
        "",
        *machine_lines(args.threads, Path(__file__), argv),
        "",
        "The mixed tables of `mixed_types.py` "
        f"({args.missing:.0%} of every column's entries removed), novelty setting: fitted on "
        "half of the normal rows, scoring the other half and every anomaly; "
        f"`VAEAnomalyDetector(random_state=seed, ...)`, mean over seeds "
        f"{' '.join(map(str, args.seeds))} (the seed draws the missing entries and the "
        "model's random_state).",
        "",
    ]
    return "\n".join(lines + metric_tables(pd.DataFrame(rows), datasets, list(METHODS)))


if __name__ == "__main__":
    main()
