"""Rows with missing values: are they scored like the complete rows they are?

A missing value should be no evidence either way: a normal row with some of
its values removed should score like the normal rows that have them all. For
each table and seed, the inlier rows (y = 0) are shuffled; the first half,
with 10% of its entries removed at random, fits
``VAEAnomalyDetector(random_state=seed)`` at its defaults. Of the second half
(the reference, scored complete), the first 300 rows are scored again with
a share of their entries removed (10%, 30%, 50%, 70%, the same count in
every row, at random). Per scoring rule and share:

- the median percentile of those rows' scores among the reference scores:
  50 is no bias, lower means rows with missing values look more anomalous;
- the mean change of a row's score when its values go missing, in standard
  deviations of the reference scores;

and the time to score all the holey rows of a fit (``elbo``), with the
detector's missing-value correction and without it (``missing_reference_``
set to None on a copy): what the correction costs.

Tables: ``mixed``, eight correlated numeric columns, a three-level category
and a flag driven by three latent factors (as in tests/test_missing_values.py;
4,000 rows), and the ADBench datasets named by ``--datasets`` (numeric).

Run once with ``PYTHONPATH`` pointing at another checkout to measure its
behaviour under another label; rows of other labels in
``results/missing_share.csv`` are kept and shown side by side.

    python benchmarks/missing_share.py
    PYTHONPATH=/path/to/other/checkout python benchmarks/missing_share.py --label other
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import pandas as pd
from _harness import (
    DEFAULT_DATA,
    RESULTS_DIR,
    machine_lines,
    markdown_table,
    read_csv_rows,
    start_labelled_run,
    timed,
    write_csv,
    write_section,
)

RESULTS_CSV = RESULTS_DIR / "missing_share.csv"
SHARES = (0.1, 0.3, 0.5, 0.7)
SCORINGS = ("elbo", "iwae", "reconstruction")
TRAIN_MISSING = 0.1
N_HOLEY = 300
MAX_INLIERS = 4000


def mixed_table(n_rows, seed):
    """The test suite's mixed table: numeric columns, a category and a flag
    that the model can predict from each other."""
    rng = np.random.RandomState(seed)
    z = rng.normal(size=(n_rows, 3))
    weights = np.random.RandomState(0).normal(size=(3, 8))
    frame = pd.DataFrame(z @ weights + 0.3 * rng.normal(size=(n_rows, 8)))
    frame.columns = [f"x{j}" for j in range(8)]
    frame["kind"] = np.where(z[:, 0] > 0.5, "a", np.where(z[:, 1] > 0, "b", "c"))
    frame["flag"] = (z[:, 2] + 0.3 * rng.normal(size=n_rows)) > 0
    return frame


def remove_entries(frame, share, rng, per_row=False):
    """``frame`` with ``share`` of its entries missing: each entry at random,
    or, ``per_row``, the same number in every row."""
    out = frame.astype({c: object for c in frame.columns if frame[c].dtype == bool})
    if per_row:
        k = int(round(share * frame.shape[1]))
        holes = np.zeros(frame.shape, dtype=bool)
        for i in range(len(frame)):
            holes[i, rng.choice(frame.shape[1], k, replace=False)] = True
    else:
        holes = rng.uniform(size=frame.shape) < share
    return out.mask(holes)


def inlier_frame(name, datasets, seed):
    """The table's inlier rows, shuffled by ``seed``."""
    if name == "mixed":
        return mixed_table(MAX_INLIERS, seed)
    X, y = datasets[name]
    rows = np.random.RandomState(seed).permutation(np.flatnonzero(y == 0))[:MAX_INLIERS]
    return pd.DataFrame(X[rows], columns=[f"x{j}" for j in range(X.shape[1])])


def measure(frame, seed):
    """Result rows of one fit: per scoring rule and share, the holey rows'
    median percentile among the reference and their mean score change."""
    from skvae import VAEAnomalyDetector

    rng = np.random.RandomState(seed)
    half = len(frame) // 2
    train = remove_entries(frame.iloc[:half], TRAIN_MISSING, rng)
    reference = frame.iloc[half:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector = VAEAnomalyDetector(random_state=seed).fit(train)
    holey = {s: remove_entries(reference.iloc[:N_HOLEY], s, rng, per_row=True) for s in SHARES}
    seconds = _scoring_seconds(detector, pd.concat(holey.values()))
    results = []
    for scoring in SCORINGS:
        detector.set_params(scoring=scoring)
        scores = detector.score_samples(reference)
        ordered = np.sort(scores)
        for share, rows in holey.items():
            holey_scores = detector.score_samples(rows)
            percentile = 100.0 * np.searchsorted(ordered, holey_scores) / len(ordered)
            shift = (holey_scores - scores[:N_HOLEY]).mean() / scores.std()
            results.append(
                {
                    "scoring": scoring,
                    "share": share,
                    "median_percentile": round(float(np.median(percentile)), 1),
                    "mean_shift_sd": round(float(shift), 3),
                    **seconds,
                }
            )
    return results


def _scoring_seconds(detector, rows):
    """Seconds to score ``rows`` (``elbo``) with the missing-value correction
    and without it (a copy without ``missing_reference_``; older code has
    no correction, so both times are the same there)."""
    import copy

    plain = copy.deepcopy(detector)
    plain.missing_reference_ = None
    with_correction = timed(detector.set_params(scoring="elbo").score_samples, rows)[1]
    without = timed(plain.set_params(scoring="elbo").score_samples, rows)[1]
    return {"score_s": round(with_correction, 3), "score_s_no_correction": round(without, 3)}


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="main", help="name of the code measured")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["cardio", "thyroid", "satimage-2", "mammography", "pendigits", "letter"],
        help="ADBench names",
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=1)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    datasets = start_labelled_run(args)
    rows = []
    for name in ["mixed", *args.datasets]:
        for seed in args.seeds:
            for result in measure(inlier_frame(name, datasets, seed), seed):
                rows.append({"label": args.label, "table": name, "seed": seed, **result})
            print(name, seed, rows[-1], flush=True)
    everything = [r for r in read_csv_rows(RESULTS_CSV) if r["label"] != args.label] + rows
    write_csv(RESULTS_CSV, everything)
    write_section("missing_share", _section(everything, args, argv))


def _section(rows, args, argv):
    table = pd.DataFrame(rows)
    table["seed"] = table["seed"].astype(int)
    for column in ("share", "median_percentile", "mean_shift_sd"):
        table[column] = table[column].astype(float)
    mean = table.groupby(["scoring", "label", "table", "share"], sort=False).mean(numeric_only=True)
    body = []
    for (scoring, label, name), group in mean.groupby(level=[0, 1, 2], sort=False):
        cells = [
            f"{row.median_percentile:.1f} / {row.mean_shift_sd:+.2f}"
            for row in group.reset_index().itertuples()
        ]
        body.append([scoring, label, name, *cells])
    return "\n".join(
        [
            "## Rows with missing values (benchmarks/missing_share.py)",
            "",
            *machine_lines(args.threads, __file__, argv),
            "",
            f"Fit on half of each table's inlier rows (at most {MAX_INLIERS:,}) with "
            f"{TRAIN_MISSING:.0%} of the entries missing, `VAEAnomalyDetector(random_state=seed)` "
            f"at its defaults, seeds {', '.join(map(str, sorted(set(table['seed']))))} "
            f"(mean over seeds). {N_HOLEY} rows of the other half scored complete and again "
            "with a share of each row's entries removed. Each cell: median percentile of the "
            "holey rows among the complete rows' scores (50: no bias; lower: missing values "
            "look anomalous) / mean change of a row's score, in standard deviations of the "
            "complete rows' scores; code: the label of the code measured.",
            "",
            markdown_table(
                ["scoring", "code", "table", *[f"{s:.0%} missing" for s in SHARES]], body
            ),
            "",
            *_timing_lines(table),
        ]
    )


def _timing_lines(table):
    """Mean seconds to score a fit's holey rows, per label that measured them."""
    if "score_s" not in table:
        return []
    lines = []
    n_rows = N_HOLEY * len(SHARES)
    for label, group in table.groupby("label", sort=False):
        timed_rows = group.dropna(subset=["score_s"])
        timed_rows = timed_rows[timed_rows["score_s"] != ""]
        if timed_rows.empty:
            continue
        fits = timed_rows.drop_duplicates(["table", "seed"])
        with_correction = fits["score_s"].astype(float).mean()
        without = fits["score_s_no_correction"].astype(float).mean()
        lines.append(
            f"- Scoring the {n_rows:,} holey rows of a fit (`elbo`, {len(fits)} fits, code "
            f"{label}): {with_correction:.2f} s with the missing-value correction, "
            f"{without:.2f} s without it (mean)."
        )
    return [*lines, ""] if lines else []


if __name__ == "__main__":
    main()
