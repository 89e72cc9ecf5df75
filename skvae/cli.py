"""Command line: fit the detector on a CSV (or the built-in demo) and list outliers."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from ._anomaly import VAEAnomalyDetector
from .datasets import load_demo


def _parser():
    parser = argparse.ArgumentParser(
        prog="skvae", description="Score the rows of a table for outliers with a VAE."
    )
    parser.add_argument("file", nargs="?", help="CSV file; the built-in demo when left out")
    parser.add_argument("--contamination", default="auto")
    parser.add_argument("--top", type=int, default=10, help="how many outliers to print")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.file is None:
        frame = load_demo()
        labels = frame.pop("is_anomaly")
    else:
        try:
            frame = pd.read_csv(args.file)
        except (OSError, ValueError) as error:
            print(f"skvae: cannot read {args.file}: {error}", file=sys.stderr)
            return 2
        labels = None
    X = frame.select_dtypes("number")
    if X.shape[1] == 0:
        print("skvae: the table has no numeric column to score", file=sys.stderr)
        return 2
    contamination = args.contamination
    if contamination != "auto":
        contamination = float(contamination)
    detector = VAEAnomalyDetector(
        contamination=contamination, random_state=args.random_state, verbose=not args.quiet
    )
    detector.fit(X)
    result = frame.copy()
    result["score"] = detector.score_samples(X)
    result["outlier"] = detector.predict(X) == -1
    top = result.sort_values("score").head(args.top)
    print(f"{int(result['outlier'].sum())} of {len(result)} rows flagged as outliers")
    print(top.to_string())
    if labels is not None:
        from sklearn.metrics import roc_auc_score

        auc = roc_auc_score(labels, -result["score"])
        hits = int(np.sum(labels.to_numpy()[top.index]))
        print(
            f"demo: ROC-AUC against the known anomalies {auc:.3f}; "
            f"{hits} of the top {len(top)} are known anomalies"
        )
    return 0
