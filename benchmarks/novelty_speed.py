"""What novelty=True costs: fit and scoring time beside the defaults.

``VAEAnomalyDetector(novelty=True)`` keeps up to 10,000 training rows and
compares every scored row with all of them (skvae._neighbors). Measures, on
``--threads`` CPU threads (2 by default) and the synthetic tables of
``speed.py``, the fit of the defaults and of ``novelty=True`` on each table
(same seed; ``novelty=True`` also trains on every row, the defaults leave out
a fifth of each batch), and the scoring rate of both on ``--score-rows`` new
rows. Writes ``results/novelty_speed.csv`` and its
section of ``RESULTS.md``.

    python benchmarks/novelty_speed.py
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from _harness import (
    HERE,
    machine_lines,
    markdown_table,
    pin_threads,
    timed,
    write_csv,
    write_section,
)
from speed import synthetic

from skvae import VAEAnomalyDetector

TABLES = ((20_000, 10), (50_000, 50), (1_000_000, 20))


def measure(n_rows, n_features, score_rows):
    """Fit seconds and scoring rows/s of the defaults and novelty=True."""
    X = synthetic(n_rows, n_features)
    new = synthetic(score_rows, n_features, seed=1)
    rows = []
    for novelty in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector, fit_s = timed(VAEAnomalyDetector(novelty=novelty, random_state=0).fit, X)
        detector.score_samples(new[:1000])
        _, score_s = timed(detector.score_samples, new)
        kept = 0 if detector.neighbor_rows_ is None else detector.neighbor_rows_.shape[0]
        rows.append(
            dict(
                table=f"{n_rows:,} x {n_features}",
                novelty=novelty,
                fit_s=round(fit_s, 2),
                epochs=detector.n_iter_,
                neighbor_rows=kept,
                score_rows_per_s=round(score_rows / score_s),
            )
        )
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--score-rows", type=int, default=200_000)
    parser.add_argument("--max-rows", type=int, help="leave out tables with more rows")
    parser.add_argument("--output", type=Path, default=HERE)
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    pin_threads(args.threads, __file__, argv, restart=from_command_line)
    with warnings.catch_warnings():  # imports and first-call set-up, out of the timings
        warnings.simplefilter("ignore")
        VAEAnomalyDetector(novelty=True, max_iter=2).fit(synthetic(500, 5))
    rows = [
        row
        for n_rows, n_features in TABLES
        if args.max_rows is None or n_rows <= args.max_rows
        for row in measure(n_rows, n_features, args.score_rows)
    ]
    write_csv(args.output / "results" / "novelty_speed.csv", rows)
    lines = [
        "## What novelty=True costs",
        "",
        *machine_lines(args.threads, "novelty_speed.py", argv),
        "",
        "Synthetic tables of `speed.py`, seed 0 for both fits (`novelty=True` also trains "
        f"on every row, without the trim). Scoring: {args.score_rows:,} new rows; each fit "
        "comes after a warm-up fit of the process.",
        "",
        markdown_table(
            ["table", "novelty", "fit s", "epochs", "neighbour rows kept", "scoring rows/s"],
            [
                [
                    r["table"],
                    r["novelty"],
                    f"{r['fit_s']:.2f}",
                    r["epochs"],
                    f"{r['neighbor_rows']:,}",
                    f"{r['score_rows_per_s']:,}",
                ]
                for r in rows
            ],
        ),
    ]
    write_section(
        "novelty_speed",
        "\n".join(lines),
        args.output / "results",
        args.output / "RESULTS.md",
    )
    print(f"wrote {args.output / 'results' / 'novelty_speed.csv'} and RESULTS.md")


if __name__ == "__main__":
    main()
