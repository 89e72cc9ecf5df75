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

import sys
import warnings
from pathlib import Path

import pandas as pd
from _harness import evaluate, machine_lines, pin_threads, setting_split
from mixed_types import metric_tables, parser, run_tables, write_results

from skvae import VAEAnomalyDetector

METHODS = {
    "defaults": {},
    "trim_fraction=0": {"trim_fraction": 0},
    "novelty=True": {"novelty": True},
}


def _measure(method, X, y, frame, seed):
    """(ROC-AUC, AP, no other fields) of one detector fitted on the clean half."""
    fit, score = setting_split("novelty", y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning when max_iter is reached
        detector = VAEAnomalyDetector(random_state=seed, **METHODS[method])
        detector.fit(frame.iloc[fit])
    return (*evaluate(y[score], -detector.score_samples(frame.iloc[score])), {})


def main(argv=None):
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser(__doc__.splitlines()[0], threads=2).parse_args(argv)
    pin_threads(args.threads, __file__, argv, restart=from_command_line)
    datasets, rows = run_tables(args, METHODS, _measure)
    write_results("mixed_novelty", rows, _section(rows, datasets, args, argv), args.output)


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
