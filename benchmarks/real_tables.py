"""Real tables as exports write them: planted outliers in formatted, dated,
id-carrying and holey versions of ADBench datasets, before and after typing.

For each dataset and seed, 600 inlier rows (y = 0; all of them when there
are fewer) are drawn and 10 *planted* rows are added: copies of other inlier
rows whose target column is set 10 standard deviations above its mean. Every
table below holds the same rows; only how they are written differs:

- ``numeric``: the columns as numbers (the reference);
- ``formatted``: column 0 written with thousands separators (``"12,345.60"``)
  and column 1 as currency (``"$1,234.50"``), both in units of
  ``1000 * (value - min) + 1000``; the planted value is in column 0 for half
  the planted rows and in column 1 for the other half;
- ``dated``: column 0 replaced by a date written as text (``"2015-03-02"``),
  ``2014-01-01`` plus the value mapped linearly onto four years of days; the
  planted rows' dates are 10 standard deviations later;
- ``ids``: a ``record_id`` column (an integer sequence) and a ``code`` column
  (``"R-000123"``) added in front; planted value in column 0;
- ``holey``: 10% of the rows lose 55% of their values (5 of 9), at random, and so do
  half of the planted rows (planted value in column 0, always kept).

The detector is ``VAEAnomalyDetector(max_iter=60, random_state=seed)``,
otherwise with default parameters, fitted on the DataFrame (no labels) and scoring the same rows;
the planted rows are the positives: ROC-AUC, and the median rank of a
planted row (1 = lowest score). Run once with ``PYTHONPATH`` pointing at
another checkout to measure its behaviour under another label (``before``);
rows of other labels in ``results/real_tables.csv`` are kept, and the
section of ``RESULTS.md`` shows every label side by side.

A second table times ``fit`` (20 epochs, no early stopping) on a 5,000-row
frame with a text column of 1,461 distinct values: dates, and product codes.

    python benchmarks/real_tables.py --label after
    PYTHONPATH=/work/main python benchmarks/real_tables.py --label before
    python benchmarks/real_tables.py --label after --fit-times-only
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _harness import (
    DEFAULT_DATA,
    HERE,
    machine_lines,
    markdown_table,
    read_csv_rows,
    start_labelled_run,
    write_csv,
    write_section,
)
from sklearn.metrics import roc_auc_score

from skvae import VAEAnomalyDetector

DEFAULT_DATASETS = ["breastw", "cardio", "thyroid"]
VARIANTS = ["numeric", "formatted", "dated", "ids", "holey"]
N_ROWS = 600
# Epochs at most: enough to converge on these few rows, and a run fits in
# minutes on a shared 2-core machine.
MAX_ITER = 60
N_PLANTED = 10
PLANTED_SD = 10.0
HOLEY_ROWS = 0.10
HOLEY_SHARE = 0.55
RESULTS_CSV = HERE / "results" / "real_tables.csv"


def base_rows(X, y, seed):
    """Inlier rows and planted rows (numbers), and which rows are planted."""
    rng = np.random.RandomState(seed)
    inliers = X[y == 0]
    order = rng.permutation(len(inliers))
    kept = inliers[order[: min(N_ROWS, len(inliers) - N_PLANTED)]]
    planted = inliers[order[-N_PLANTED:]].copy()
    rows = np.vstack([kept, planted])
    is_planted = np.r_[np.zeros(len(kept), bool), np.ones(N_PLANTED, bool)]
    shuffle = rng.permutation(len(rows))
    return rows[shuffle], is_planted[shuffle], rng


def make_table(variant, X, y, seed):
    """The ``variant`` DataFrame (see the module docstring) and the planted mask."""
    rows, planted, rng = base_rows(X, y, seed)
    mean, sd = rows[~planted].mean(axis=0), rows[~planted].std(axis=0) + 1e-9
    far = mean + PLANTED_SD * sd
    target = np.zeros(len(rows), dtype=int)
    if variant == "formatted":
        target[np.flatnonzero(planted)[1::2]] = 1
    for row in np.flatnonzero(planted):
        rows[row, target[row]] = far[target[row]]
    frame = pd.DataFrame(rows, columns=[f"x{j}" for j in range(rows.shape[1])])
    low = rows[~planted].min(axis=0)
    if variant == "formatted":
        money = 1000 * (rows[:, :2] - low[:2]) + 1000
        frame["x0"] = [f"{v:,.2f}" for v in money[:, 0]]
        frame["x1"] = [f"${v:,.2f}" for v in money[:, 1]]
    elif variant == "dated":
        span = rows[~planted, 0].max() - low[0] or 1.0
        days = np.round((rows[:, 0] - low[0]) / span * 1460)
        dates = pd.Timestamp("2014-01-01") + pd.to_timedelta(days, unit="D")
        frame["x0"] = dates.strftime("%Y-%m-%d")
    elif variant == "ids":
        frame.insert(0, "code", [f"R-{i:06d}" for i in range(len(frame))])
        frame.insert(0, "record_id", np.arange(1, len(frame) + 1))
    elif variant == "holey":
        holey = rng.rand(len(frame)) < HOLEY_ROWS
        holey[np.flatnonzero(planted)[::2]] = True
        holey[np.flatnonzero(planted)[1::2]] = False
        n_removed = min(int(round(HOLEY_SHARE * frame.shape[1])), frame.shape[1] - 1)
        values = frame.to_numpy(dtype=np.float64, copy=True)
        for row in np.flatnonzero(holey):
            removed = 1 + rng.choice(frame.shape[1] - 1, n_removed, replace=False)
            values[row, removed] = np.nan
        frame = pd.DataFrame(values, columns=frame.columns)
    return frame, planted


def run_one(frame, planted, seed):
    detector = VAEAnomalyDetector(max_iter=MAX_ITER, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scores = detector.fit(frame).score_samples(frame)
        except ValueError as error:
            return {"error": str(error).splitlines()[0][:120]}
    seconds = time.perf_counter() - start
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return {
        "roc_auc": roc_auc_score(planted, -scores),
        "median_rank": float(np.median(ranks[planted])),
        "worst_rank": float(np.max(ranks[planted])),
        "fit_score_s": seconds,
        "error": "",
    }


def fit_times(label, seed=0):
    """Seconds to fit 20 epochs on 5,000 rows with a 1,461-value text column.

    With this branch's code each frame is fitted twice in turn, in one
    process (so under the same machine load): typed by the rules, and with
    the column declared categorical, which keeps every level as main did.
    """
    rng = np.random.RandomState(seed)
    n = 5000
    days = rng.randint(0, 1461, n)
    numbers = rng.normal(size=(n, 4))
    try:
        import skvae._typing  # noqa: F401 (only this branch can declare every level)

        ways = {label: None, f"{label}, every level declared": {"when": "categorical"}}
    except ImportError:
        ways = {label: None}
    out = []
    for kind in ("dates", "product codes"):
        frame = pd.DataFrame(numbers, columns=["a", "b", "c", "d"])
        if kind == "dates":
            stamps = pd.Timestamp("2014-01-01") + pd.to_timedelta(days, unit="D")
            frame["when"] = stamps.strftime("%Y-%m-%d")
        else:
            frame["when"] = [f"P{d:04d}" for d in days]
        for name, column_types in ways.items():
            detector = VAEAnomalyDetector(
                max_iter=20, early_stopping=False, column_types=column_types, random_state=seed
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                detector.fit(frame)
                seconds = time.perf_counter() - start
            widths = [len(c) for c in detector.column_schema_.categories if c is not None]
            out.append(
                {
                    "label": name,
                    "column": kind,
                    "fit_20_epochs_s": round(seconds, 2),
                    "largest_categorical": max(widths, default=0),
                }
            )
            print(out[-1], flush=True)
    return out


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after", help="name of the code measured")
    parser.add_argument("--data", default=DEFAULT_DATA, type=Path)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--fit-times-only",
        action="store_true",
        help="only the fit-time table; keep the stored detection rows",
    )
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    datasets = start_labelled_run(args)
    rows = []
    stored = read_csv_rows(RESULTS_CSV)
    if args.fit_times_only:
        rows = [r for r in stored if r.get("label") == args.label and r.get("variant")]
    for name in [] if args.fit_times_only else args.datasets:
        X, y = datasets[name]
        for variant in VARIANTS:
            for seed in args.seeds:
                frame, planted = make_table(variant, X, y, seed)
                result = run_one(frame, planted, seed)
                rows.append(
                    {
                        "label": args.label,
                        "dataset": name,
                        "variant": variant,
                        "seed": seed,
                        "n_rows": len(frame),
                        **result,
                    }
                )
                print(rows[-1], flush=True)
    timing = fit_times(args.label)
    print(timing, flush=True)
    mine = {args.label, f"{args.label}, every level declared"}
    stored = [r for r in stored if r.get("label") not in mine]
    fields = [
        "label",
        "dataset",
        "variant",
        "seed",
        "n_rows",
        "roc_auc",
        "median_rank",
        "worst_rank",
        "fit_score_s",
        "error",
        "column",
        "fit_20_epochs_s",
        "largest_categorical",
    ]
    everything = stored + rows + timing
    write_csv(RESULTS_CSV, everything, fields)
    write_section("real_tables", _section(everything, args, argv))


def _number(value, digits):
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "error"


def _section(rows, args, argv):
    table = pd.DataFrame([r for r in rows if r.get("variant")])
    labels = list(dict.fromkeys(table["label"]))
    body = []
    for (dataset, variant), group in table.groupby(["dataset", "variant"], sort=False):
        cells = [dataset, variant]
        for label in labels:
            mine = group[group["label"] == label]
            if mine.empty:
                cells.append("")
                continue
            auc = np.mean([float(v) if v not in ("", None) else np.nan for v in mine["roc_auc"]])
            rank = np.mean(
                [float(v) if v not in ("", None) else np.nan for v in mine["median_rank"]]
            )
            cells.append("error" if np.isnan(auc) else f"{auc:.3f} / {rank:.0f}")
        body.append(cells)
    times = [r for r in rows if r.get("column")]
    lines = [
        "## Real tables: formatted, dated, id-carrying and holey (benchmarks/real_tables.py)",
        "",
        *machine_lines(args.threads, Path(__file__), argv),
        "",
        f"{N_PLANTED} planted rows (one column {PLANTED_SD:g} SD above its mean) among up to "
        f"{N_ROWS} inlier rows per dataset, seeds {', '.join(map(str, args.seeds))}; "
        f"`VAEAnomalyDetector(max_iter={MAX_ITER}, random_state=seed)` fitted on the "
        "DataFrame. Each cell: ROC-AUC of the planted rows / median rank of a planted row "
        "(1 = most anomalous). `before` is "
        "main's code (PYTHONPATH at its checkout), `after` this branch's. See the script's "
        "docstring for how each table is written. The lines above describe the latest run; "
        "`--fit-times-only` replaces only the fit times, and each detection row is the one "
        "its own run wrote.",
        "",
        markdown_table(["dataset", "table", *labels], body),
        "",
        "Fit time, 5,000 rows, 20 epochs, one text column with 1,461 distinct values "
        "(seconds; width of the largest categorical the network got), measured in one "
        "process: the column as typed, and with every level declared categorical:",
        "",
        markdown_table(
            ["code", "text column", "fit (s)", "largest categorical"],
            [
                [r["label"], r["column"], r["fit_20_epochs_s"], r["largest_categorical"]]
                for r in times
            ],
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
