"""Fit time at each library's defaults, skvae against PyOD's VAE, table by table.

On the 16 benchmark tables of ``quality.py`` (the same files, the same
20,000-row cut of the large ones and the same novelty halves), in one run and
one process, one fit after another on ``--threads`` CPU threads (2 by
default), this times:

* ``VAEAnomalyDetector(random_state=seed)``: the default fit, which on 10 to
  2,000 training rows also fits 5 cross-conformal fold models;
* the same with ``calibration="split"``: the model alone, to show what the
  cross-conformal calibration costs;
* ``pyod.models.vae.VAE(random_state=seed, verbose=0)``: PyOD's defaults.

Wall and CPU seconds of each fit; nothing is scored. Writes
``results/fit_time.csv`` and the fit-time section of ``RESULTS.md``.

    python benchmarks/fit_time.py
    python benchmarks/fit_time.py --datasets breastw cardio --settings novelty
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
    DEFAULT_LARGE_DATA,
    HERE,
    MAX_ROWS,
    SETTINGS,
    load_datasets,
    machine_lines,
    markdown_table,
    pin_threads,
    pyod_available,
    setting_split,
    write_csv,
    write_section,
)
from quality import _fit_skvae, _pyod_detector

from skvae import VAEAnomalyDetector

TARGET_SPEEDUP = 10.0


def _fit_skvae_split(X, seed):
    return VAEAnomalyDetector(random_state=seed, calibration="split").fit(X)


# The default fit and PyOD's VAE exactly as the quality benchmark fits them.
FITTERS = {
    "skvae": _fit_skvae,
    "skvae, split calibration": _fit_skvae_split,
    "PyOD VAE": _pyod_detector("pyod-vae").fit,
}


def time_fit(fit, X, seed):
    """(wall seconds, CPU seconds of this process) of one fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall, cpu = time.perf_counter(), time.process_time()
        fit(X, seed)
        return time.perf_counter() - wall, time.process_time() - cpu


def run(datasets, settings, seed, labels):
    rows = []
    for setting in settings:
        for name, X, y in datasets:
            fit_rows, _ = setting_split(setting, y)
            X_fit = X[fit_rows]
            for label in labels:
                wall, cpu = time_fit(FITTERS[label], X_fit, seed)
                print(f"{setting:>12} {name:>12} {label:>25} wall={wall:.2f}s cpu={cpu:.2f}s")
                rows.append(
                    dict(
                        setting=setting,
                        dataset=name,
                        n_fit=X_fit.shape[0],
                        n_features=X_fit.shape[1],
                        detector=label,
                        seed=seed,
                        wall_s=round(wall, 3),
                        cpu_s=round(cpu, 3),
                    )
                )
    return rows


def report(rows, labels, argv, n_threads):
    lines = ["## Fit time at the defaults, table by table (benchmarks/fit_time.py)", ""]
    lines += machine_lines(n_threads, __file__, argv)
    lines += [
        f"- Tables: the quality benchmark's ({MAX_ROWS:,} rows at most; novelty fits on half "
        "of the normal rows); seed "
        f"{rows[0]['seed']}; the fits run one after another in one process. Nothing is "
        "scored. 'skvae' is the default fit, with the 5 cross-conformal fold models it fits "
        "on 10 to 2,000 training rows; 'split calibration' is the model alone.",
        "",
    ]
    wall = {(r["setting"], r["dataset"], r["detector"]): r["wall_s"] for r in rows}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        names = list(dict.fromkeys(r["dataset"] for r in rows if r["setting"] == setting))
        n_fit = {r["dataset"]: r["n_fit"] for r in rows if r["setting"] == setting}
        times = {name: [wall[(setting, name, label)] for label in labels] for name in names}
        sums = [sum(column) for column in zip(*times.values(), strict=True)]
        table = [
            [name, f"{n_fit[name]:,}", *(f"{t:.2f}" for t in cells), _speedup(cells, labels)]
            for name, cells in times.items()
        ]
        total = _speedup(sums, labels)
        table.append(["**sum**", "", *(f"**{s:.1f}**" for s in sums), total and f"**{total}**"])
        lines += [f"### {setting.capitalize()}", ""]
        lines.append(
            markdown_table(
                ["table", "fit rows", *(f"{label} s" for label in labels), "PyOD VAE / skvae"],
                table,
            )
        )
        lines.append("")
        if total:
            summed = _ratio(sums, labels)
            faster = sum(_ratio(cells, labels) >= TARGET_SPEEDUP for cells in times.values())
            holds = "holds" if summed >= TARGET_SPEEDUP else "does not hold"
            lines += [
                f"Summed wall time: PyOD's VAE takes {total} skvae's default fit "
                f"(target {TARGET_SPEEDUP:.0f}x: {holds}); {faster} of {len(names)} tables "
                f"at least {TARGET_SPEEDUP:.0f}x.",
                "",
            ]
    return "\n".join(lines)


def _ratio(times, labels):
    """PyOD's VAE time over skvae's default fit time, of one table or a sum."""
    return times[labels.index("PyOD VAE")] / times[labels.index("skvae")]


def _speedup(times, labels):
    """``_ratio`` as the table shows it, or "" when a run left either out."""
    if "PyOD VAE" not in labels or "skvae" not in labels:
        return ""
    return f"{_ratio(times, labels):.1f}x"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="*", default=[DEFAULT_DATA])
    parser.add_argument(
        "--large",
        type=Path,
        nargs="*",
        default=[DEFAULT_LARGE_DATA],
        help=f"cut to {MAX_ROWS:,} rows",
    )
    parser.add_argument("--datasets", nargs="+", help="only these dataset names")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--detectors", nargs="+", choices=list(FITTERS), default=list(FITTERS))
    parser.add_argument("--output", type=Path, default=HERE)
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    if "PyOD VAE" in args.detectors and not pyod_available():
        raise SystemExit("PyOD is not installed: pip install -c constraints.txt '.[benchmark]'")
    pin_threads(args.threads, __file__, argv, restart=from_command_line)
    datasets = [d for folder in args.data for d in load_datasets(folder)]
    datasets += [d for folder in args.large for d in load_datasets(folder, MAX_ROWS)]
    if args.datasets:
        unknown = sorted(set(args.datasets) - {name for name, _, _ in datasets})
        if unknown:
            raise SystemExit(f"Unknown datasets {unknown}")
        datasets = [d for d in datasets if d[0] in args.datasets]
    # One small fit of each first, so neither library's imports and start-up
    # (about 2.6 s for pyod.models.vae) are charged to the first table.
    for label in args.detectors:
        time_fit(FITTERS[label], np.random.RandomState(0).normal(size=(64, 3)), 0)
    rows = run(datasets, args.settings, args.seed, args.detectors)
    results_dir = args.output / "results"
    write_csv(results_dir / "fit_time.csv", rows)
    write_section(
        "fit_time",
        report(rows, args.detectors, argv, args.threads),
        results_dir,
        args.output / "RESULTS.md",
    )
    print(f"wrote {results_dir / 'fit_time.csv'} and {args.output / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
