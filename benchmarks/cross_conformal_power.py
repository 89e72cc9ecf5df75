"""Cross-conformal p-values when the fold models train for a share of the budget.

The 5 fold models behind ``calibration="cross"`` only feed ``pvalues``, whose
validity does not depend on how they are trained: a shorter budget for them
makes small tables cheaper to fit. What it costs is power. In the novelty
setting (fit on a random half of the normal rows, ``RandomState(0)``; score
the other half and every anomaly) on every dataset whose training half has
at most ``CROSS_CONFORMAL_MAX_ROWS`` rows (the default's rule), for each share of the budget
(``skvae._anomaly.CROSS_CONFORMAL_BUDGET_SHARE``) and seed:

- fit CPU seconds (one thread; the main fit and the 5 fold models);
- calibration: the share of the scored normal rows with p <= 0.1 and <= 0.05
  (about 0.1 and 0.05 when the p-values are calibrated);
- power: ROC-AUC of the p-values (small = anomalous), and the rows
  Benjamini-Hochberg flags at q = 0.1 with the share of them that are normal.

Writes ``results/cross_conformal_power.csv`` and its RESULTS.md section.

    python benchmarks/cross_conformal_power.py --jobs 2
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _harness import (
    DEFAULT_DATA,
    HERE,
    load_datasets,
    machine_lines,
    markdown_table,
    pin_threads,
    set_threads,
    setting_split,
    write_csv,
    write_section,
)

from skvae import VAEAnomalyDetector, _anomaly
from skvae.conformal import benjamini_hochberg

SHARES = (1.0, 0.5, 0.25)
FDR = 0.1


def _flagged(pvalues):
    """Boolean mask of the rows Benjamini-Hochberg rejects at ``FDR``."""
    rejected = np.asarray(benjamini_hochberg(pvalues, FDR))
    if rejected.dtype == bool:
        return rejected
    mask = np.zeros(len(pvalues), dtype=bool)
    mask[rejected] = True
    return mask


def _run_one(dataset, share, seed, n_threads):
    from sklearn.metrics import roc_auc_score

    set_threads(n_threads)
    name, X, y = dataset
    fit_rows, score_rows = setting_split("novelty", y)
    library_share = _anomaly.CROSS_CONFORMAL_BUDGET_SHARE
    _anomaly.CROSS_CONFORMAL_BUDGET_SHARE = share
    try:
        cpu = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector = VAEAnomalyDetector(random_state=seed).fit(X[fit_rows])
        fit_cpu_s = time.process_time() - cpu
    finally:
        _anomaly.CROSS_CONFORMAL_BUDGET_SHARE = library_share
    pvalues = detector.pvalues(X[score_rows])
    y_scored = y[score_rows]
    normal = y_scored == 0
    flagged = _flagged(pvalues)
    row = dict(
        dataset=name,
        n_fit=len(fit_rows),
        share=share,
        seed=seed,
        fit_cpu_s=round(fit_cpu_s, 3),
        roc_auc_pvalues=round(float(roc_auc_score(y_scored, -pvalues)), 4),
        normal_p_le_0_1=round(float(np.mean(pvalues[normal] <= 0.1)), 4),
        normal_p_le_0_05=round(float(np.mean(pvalues[normal] <= 0.05)), 4),
        bh_flagged=int(flagged.sum()),
        bh_false_share=round(float(np.mean(normal[flagged])) if flagged.any() else 0.0, 4),
    )
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def report(rows, args, argv):
    lines = ["## Cross-conformal p-values: the fold models' budget", ""]
    lines += machine_lines(args.threads, __file__, argv)
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    lines += [
        "- Novelty setting on the datasets whose training half has "
        f"{_anomaly.CROSS_CONFORMAL_MIN_ROWS} to {_anomaly.CROSS_CONFORMAL_MAX_ROWS:,} rows "
        f"({', '.join(names)}), where the default calibrates cross-conformally; "
        f"seeds {', '.join(map(str, args.seeds))}, mean over seeds. Share 1.0 is the "
        "library's default. BH: Benjamini-Hochberg at q = 0.1.",
        "",
    ]
    header = [
        "dataset",
        "fit rows",
        "share",
        "fit CPU s",
        "ROC-AUC of p",
        "normal p <= 0.1",
        "normal p <= 0.05",
        "BH flagged",
        "BH false share",
    ]
    keys = (
        "fit_cpu_s",
        "roc_auc_pvalues",
        "normal_p_le_0_1",
        "normal_p_le_0_05",
        "bh_flagged",
        "bh_false_share",
    )
    body = []
    for name in names:
        for share in args.shares:
            runs = [r for r in rows if r["dataset"] == name and r["share"] == share]
            means = [float(np.mean([r[key] for r in runs])) for key in keys]
            body.append(
                [name, runs[0]["n_fit"], share, f"{means[0]:.2f}"]
                + [f"{value:.4f}" for value in means[1:4]]
                + [f"{means[4]:.1f}", f"{means[5]:.4f}"]
            )
    lines.append(markdown_table(header, body))
    lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA])
    parser.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--output", type=Path, default=HERE)
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    pin_threads(args.threads, __file__, argv, restart=from_command_line)

    datasets = []
    for folder in args.data:
        for name, X, y in load_datasets(folder):
            n_fit = len(setting_split("novelty", y)[0])
            if _anomaly.CROSS_CONFORMAL_MIN_ROWS <= n_fit <= _anomaly.CROSS_CONFORMAL_MAX_ROWS:
                datasets.append((name, X, y))
    if not datasets:
        raise SystemExit("No dataset whose training half calibrates cross-conformally.")
    from joblib import Parallel, delayed

    tasks = [(d, share, seed) for d in datasets for share in args.shares for seed in args.seeds]
    rows = Parallel(n_jobs=args.jobs)(delayed(_run_one)(*task, args.threads) for task in tasks)
    results_dir = args.output / "results"
    write_csv(results_dir / "cross_conformal_power.csv", rows)
    write_section(
        "cross_conformal_power", report(rows, args, argv), results_dir, args.output / "RESULTS.md"
    )
    print(f"wrote {results_dir / 'cross_conformal_power.csv'} and {args.output / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
