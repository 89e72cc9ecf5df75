"""Detection quality, detectors side by side, in two settings.

``contaminated`` (ADBench's unsupervised protocol): every detector is fitted
on all of X without labels and scores the same X. ``novelty``: fitted on a
random half of the normal rows only, it scores the other half and every
anomaly. Scores are compared with y (1 = anomaly). Seeded detectors run once
per seed and are reported as the mean over seeds. Each fit runs in its own
process under a CPU-time cap. Writes ``results/quality.csv`` (one row per
fit), ``results/quality_datasets.csv`` (per dataset, mean over seeds) and the
quality section of ``RESULTS.md``.

Rows already in ``results/quality.csv`` for detectors, datasets or settings
not run now are kept, so one detector can be rerun alone against the stored
peers:

    python benchmarks/quality.py --jobs 2             # everything, seeds 0 1 2
    python benchmarks/quality.py --detectors skvae    # rewrite skvae's rows only
    python benchmarks/quality.py --resume             # run only the missing fits
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

from _harness import (
    DEFAULT_DATA,
    DEFAULT_LARGE_DATA,
    HERE,
    MAX_ROWS,
    SETTINGS,
    Detector,
    load_datasets,
    machine_lines,
    markdown_table,
    pin_threads,
    pyod_available,
    rank_summary,
    run,
    summarise,
    write_csv,
    write_section,
)

from skvae import VAEAnomalyDetector

DEFAULT_LABEL = "skvae (defaults)"
NOVELTY_LABEL = "skvae (novelty=True)"
# The skvae detector each setting's checks are about: the one its users fit.
OURS = {"contaminated": DEFAULT_LABEL, "novelty": NOVELTY_LABEL}
CPU_CAP_S = 120


def _fit_skvae(X, seed):
    return VAEAnomalyDetector(random_state=seed).fit(X)


def _fit_skvae_novelty(X, seed):
    return VAEAnomalyDetector(novelty=True, random_state=seed).fit(X)


def _fit_iforest(X, seed):
    from sklearn.ensemble import IsolationForest

    return IsolationForest(random_state=seed).fit(X)


def _negated_score_samples(model, X):
    return -model.score_samples(X)


# key -> (label, PyOD module, class, arguments: "seed" is replaced by the run's seed)
PYOD_PEERS = {
    "knn": ("kNN", "knn", "KNN", {}),
    "lof": ("LOF", "lof", "LOF", {}),
    "cblof": ("CBLOF", "cblof", "CBLOF", {"random_state": "seed"}),
    "hbos": ("HBOS", "hbos", "HBOS", {}),
    "copod": ("COPOD", "copod", "COPOD", {}),
    "mcd": ("MCD", "mcd", "MCD", {"random_state": 0}),
    "ocsvm": ("OCSVM", "ocsvm", "OCSVM", {}),
    "dif": ("DIF", "dif", "DIF", {"random_state": "seed"}),
    "lunar": ("LUNAR", "lunar", "LUNAR", {"random_state": "seed"}),
    "ecod": ("ECOD", "ecod", "ECOD", {}),
    "pyod-vae": ("PyOD VAE", "vae", "VAE", {"random_state": "seed", "verbose": 0}),
    "pyod-ae": (
        "PyOD AutoEncoder",
        "auto_encoder",
        "AutoEncoder",
        {"random_state": "seed", "verbose": 0},
    ),
}


def _pyod_class(module, name):
    import importlib

    return getattr(importlib.import_module(f"pyod.models.{module}"), name)


def _pyod_detector(key):
    label, module, name, arguments = PYOD_PEERS[key]

    def fit(X, seed):
        values = {k: seed if v == "seed" else v for k, v in arguments.items()}
        return _pyod_class(module, name)(**values).fit(X)

    shown = ", ".join(f"{k}={'seed' if v == 'seed' else repr(v)}" for k, v in arguments.items())
    note = f"`pyod.models.{module}.{name}({shown})`, otherwise PyOD's defaults"
    if key == "lof":
        note += " (PyOD's LOF defaults to `novelty=True`)"
    return Detector(
        key,
        fit,
        {label: lambda model, X: model.decision_function(X)},
        seeded="seed" in arguments.values(),
        note=note + ".",
        training_scorers={label: lambda model, X: model.decision_scores_},
    )


DETECTORS = [
    Detector(
        "skvae",
        _fit_skvae,
        {DEFAULT_LABEL: _negated_score_samples},
        seeded=True,
        note="`skvae.VAEAnomalyDetector(random_state=seed)`, every other parameter at its "
        "default; anomaly score `-score_samples`.",
    ),
    Detector(
        "skvae-novelty",
        _fit_skvae_novelty,
        {NOVELTY_LABEL: _negated_score_samples},
        seeded=True,
        note="`skvae.VAEAnomalyDetector(novelty=True, random_state=seed)`, for training rows "
        "known to be clean: novelty setting only.",
        settings=("novelty",),
    ),
    *(_pyod_detector(key) for key in PYOD_PEERS),
    Detector(
        "iforest",
        _fit_iforest,
        {"IsolationForest": _negated_score_samples},
        seeded=True,
        note="`sklearn.ensemble.IsolationForest(random_state=seed)`; anomaly score "
        "`-score_samples`.",
    ),
]
KEYS = [detector.key for detector in DETECTORS]
LABELS = [label for detector in DETECTORS for label in detector.scorers]
NUMBERS = ("roc_auc", "average_precision", "fit_s", "score_s", "fit_cpu_s", "score_cpu_s")


def read_rows(path):
    """The stored rows of ``results/quality.csv`` (numbers as numbers)."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["seed"] = int(row["seed"])
        for key in NUMBERS:
            row[key] = float(row[key])
    return rows


def ordered(rows, names):
    """Rows in setting, dataset, detector, seed order."""
    known = {name: i for i, name in enumerate(names)}
    return sorted(
        rows,
        key=lambda r: (
            SETTINGS.index(r["setting"]),
            known.get(r["dataset"], len(known)),
            r["dataset"],
            LABELS.index(r["detector"]) if r["detector"] in LABELS else len(LABELS),
            r["seed"],
        ),
    )


def setting_report(rows, setting):
    """Markdown of one setting: the summary over datasets, the issue's checks
    and the per-dataset ROC-AUC and AP tables; and the per-dataset rows."""
    rows = [r for r in rows if r["setting"] == setting]
    if not rows:
        return [], []
    names, labels, table = summarise(rows)
    labels = [label for label in LABELS if label in labels]
    complete, summary = rank_summary(names, labels, table)
    seeds = {label: sorted({r["seed"] for r in rows if r["detector"] == label}) for label in labels}
    trouble = [r for r in rows if r["status"] != "ok"]
    title = {
        "contaminated": "Contaminated setting: fit on every row, score the same rows",
        "novelty": "Novelty setting: fit on half of the normal rows, score the rest",
    }[setting]
    lines = [f"### {title}", ""]
    if not complete:
        return [*lines, "No dataset has a result from every detector yet."], []
    if len(complete) < len(names):
        missing = [name for name in names if name not in complete]
        lines += [
            f"Means and ranks over the {len(complete)} datasets every detector has finished; "
            f"not yet complete: {', '.join(missing)}.",
            "",
        ]
    by_rank = sorted(labels, key=lambda label: (summary[label]["rank"], -summary[label]["roc_auc"]))
    lines.append(
        markdown_table(
            [
                "detector",
                "mean ROC-AUC",
                "mean AP",
                "mean rank",
                "worst dataset (ROC-AUC)",
                "mean fit+score CPU s",
                "mean fit+score wall s",
                "seeds",
                "fits stopped or failed",
            ],
            [
                [
                    label,
                    f"{summary[label]['roc_auc']:.4f}",
                    f"{summary[label]['average_precision']:.4f}",
                    f"{summary[label]['rank']:.2f}",
                    f"{summary[label]['worst']} ({summary[label]['worst_roc_auc']:.4f})",
                    f"{summary[label]['cpu_s']:.2f}",
                    f"{summary[label]['seconds']:.2f}",
                    " ".join(map(str, seeds[label])),
                    sum(r["detector"] == label for r in trouble),
                ]
                for label in by_rank
            ],
        )
    )
    lines += ["", *check_lines(rows, setting, complete, labels, table, summary)]
    if trouble:
        lines += [
            "",
            "Fits that were stopped or failed (scored 0.5 ROC-AUC, the anomaly rate as AP):",
            "",
        ]
        lines += [
            f"- {r['detector']} on {r['dataset']}, seed {r['seed']}: {r['status']}" for r in trouble
        ]
    shape = {r["dataset"]: r for r in rows}
    for key, what in (("roc_auc", "ROC-AUC"), ("average_precision", "Average precision")):
        body = [
            [
                name,
                shape[name]["n_fit"],
                shape[name]["n_scored"],
                shape[name]["n_features"],
                f"{100 * float(shape[name]['anomaly_rate']):.1f}%",
                *(
                    f"{table[name, label][key]:.4f}" if (name, label) in table else ""
                    for label in labels
                ),
            ]
            for name in names
        ]
        body.append(
            [
                "**mean**" if len(complete) == len(names) else f"**mean of {len(complete)}**",
                "",
                "",
                "",
                "",
                *(f"**{summary[label][key]:.4f}**" for label in labels),
            ]
        )
        lines += ["", f"#### {what} per dataset ({setting})", ""]
        lines.append(
            markdown_table(
                ["dataset", "fit rows", "scored rows", "d", "anomalies scored", *labels], body
            )
        )
    per_dataset = [
        dict(
            setting=setting,
            dataset=name,
            detector=label,
            seeds=sum(r["dataset"] == name and r["detector"] == label for r in rows),
            **{key: round(table[name, label][key], 4) for key in NUMBERS},
        )
        for name in names
        for label in labels
        if (name, label) in table
    ]
    return lines, per_dataset


def check_lines(rows, setting, names, labels, table, summary):
    """The must-holds of issue 12 that this setting decides, on these numbers."""
    label_ours = OURS[setting] if OURS[setting] in summary else DEFAULT_LABEL
    if label_ours not in summary:
        return []
    peers = [label for label in labels if not label.startswith("skvae")]
    ours = summary[label_ours]
    lines = [f"Checks on these numbers ({setting}):", ""]
    if peers:
        best = max(peers, key=lambda label: summary[label]["roc_auc"])
        margin = ours["roc_auc"] - summary[best]["roc_auc"]
        need = 0.02 if setting == "contaminated" else 0.0
        holds = margin >= need if setting == "contaminated" else margin > 0
        lines.append(
            f"- Mean ROC-AUC {'at least 0.02 above' if need else 'above'} the best peer: "
            f"**{_verdict(holds)}** ({label_ours} {ours['roc_auc']:.4f}, best peer {best} "
            f"{summary[best]['roc_auc']:.4f}, margin {margin:+.4f})."
        )
        best_rank = min(peers, key=lambda label: summary[label]["rank"])
        lines.append(
            f"- Best mean rank: **{_verdict(ours['rank'] < summary[best_rank]['rank'])}** "
            f"({label_ours} {ours['rank']:.2f}, best peer {best_rank} "
            f"{summary[best_rank]['rank']:.2f})."
        )
        holes = [
            f"{name} ({label_ours} {table[name, label_ours]['roc_auc']:.4f}, {top} "
            f"{table[name, top]['roc_auc']:.4f})"
            for name in names
            if table[name, label_ours]["roc_auc"] < 0.5
            for top in [max(peers, key=lambda label: table[name, label]["roc_auc"])]
            if table[name, top]["roc_auc"] > 0.7
        ]
        lines.append(
            f"- No dataset where skvae is below 0.5 while a peer is above 0.7: "
            f"**{_verdict(not holes)}**" + (f" ({'; '.join(holes)})." if holes else ".")
        )
    if "PyOD VAE" in summary and DEFAULT_LABEL in summary:
        theirs = summary["PyOD VAE"]["total_fit_cpu_s"]
        default = summary[DEFAULT_LABEL]
        ratio = theirs / default["total_fit_cpu_s"]
        runs = {
            label: {r["run"] for r in rows if r["detector"] == label}
            for label in (DEFAULT_LABEL, "PyOD VAE")
        }
        same = runs[DEFAULT_LABEL] == runs["PyOD VAE"]
        lines.append(
            f"- Default fit at least 10x faster than PyOD's VAE at its defaults: "
            f"**{_verdict(ratio >= 10)}** (fit CPU seconds summed over the datasets, mean over "
            f"seeds: PyOD VAE {theirs:.1f} s, skvae {default['total_fit_cpu_s']:.1f} s, "
            f"ratio {ratio:.1f}x; "
            + ("measured side by side in the same run" if same else "measured in different runs")
            + ")."
        )
    ours_rows = [r for r in rows if r["detector"] in OURS.values()]
    warned = [r for r in ours_rows if str(r["converged"]) == "False"]
    n_fits = len(ours_rows)
    lines.append(
        f"- No ConvergenceWarning from a default fit: **{_verdict(not warned)}** "
        f"({len(warned)} of {n_fits} skvae fits warned"
        + (": " + ", ".join(sorted({f"{r['dataset']}" for r in warned})) if warned else "")
        + ")."
    )
    return lines


def _verdict(holds):
    return "holds" if holds else "does not hold"


def report(rows, runs, skipped):
    lines = ["## Detection quality: contaminated and novelty settings", ""]
    lines += [
        "Runs that produced the rows below (a detector rerun alone replaces only its own rows):",
        "",
    ]
    for run_id, record in runs.items():
        if any(r["run"] == run_id for r in rows):
            lines += [f"Run {run_id}: {', '.join(record['detectors'])}", "", *record["machine"], ""]
    lines += [
        f"- Datasets: every file of `shared/data/adbench` (11) and `shared/data/adbench-large` "
        f"(5). The large files are cut to {MAX_ROWS:,} rows each: `RandomState(0)` draws "
        f"`round({MAX_ROWS} * anomaly rate)` anomalies, then the rest as normal rows, each "
        "without replacement, rows kept in file order (`_harness.subsample`); the others are "
        "used whole.",
        "- Contaminated: fit on every row without labels, score the same rows. PyOD detectors "
        "score their training rows with `decision_scores_` (a row is not its own neighbour).",
        "- Novelty: `RandomState(0)` shuffles the normal rows; the detector is fitted on the "
        "first half, then scores the second half and every anomaly (`decision_function`, "
        "`-score_samples`).",
        f"- Each fit runs in its own process, capped at {runs_cap(runs)} s of CPU time for fit "
        "and scoring together (one thread); a fit stopped at the cap or failing counts as "
        "ROC-AUC 0.5 and the anomaly rate as AP, and is listed under its table. CPU seconds "
        "(one thread) are the fair comparison on a shared 2-core machine; wall seconds "
        "depend on its load.",
        "- Mean rank: detectors ranked by ROC-AUC on each dataset (1 = best, ties share), "
        "averaged over datasets. Worst dataset: lowest ROC-AUC (mean over seeds).",
        "",
    ]
    lines += [f"- **{d.key}**: {d.note}" for d in DETECTORS]
    lines += [f"- **{key}**: not run ({why})" for key, why in skipped]
    per_dataset = []
    for setting in SETTINGS:
        text, table = setting_report(rows, setting)
        lines += ["", *text]
        per_dataset += table
    return "\n".join(lines) + "\n", per_dataset


def runs_cap(runs):
    caps = sorted({record["cpu_cap_s"] for record in runs.values()})
    return " / ".join(str(cap) for cap in caps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        nargs="*",
        default=[DEFAULT_DATA],
        help="folders of .npz files used whole",
    )
    parser.add_argument(
        "--large",
        type=Path,
        nargs="*",
        default=[DEFAULT_LARGE_DATA],
        help=f"folders of .npz files cut to --max-rows ({MAX_ROWS})",
    )
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS)
    parser.add_argument("--datasets", nargs="+", help="run only these datasets (by name)")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--peer-seeds", type=int, nargs="+", help="seeds for the seeded peers (default: --seeds)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads per fit")
    parser.add_argument("--jobs", type=int, default=1, help="fits run at once (processes)")
    parser.add_argument(
        "--cap", type=int, default=CPU_CAP_S, help="CPU seconds allowed to one fit + score"
    )
    parser.add_argument("--detectors", nargs="+", choices=KEYS, default=KEYS)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep every stored row; run only the fits not stored yet",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        help="seconds; then stop, leave the fits not finished out and report (see --resume)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from the stored rows"
    )
    parser.add_argument(
        "--output", type=Path, default=HERE, help="folder for RESULTS.md and results/"
    )
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    pin_threads(args.threads, __file__, argv, restart=from_command_line)

    datasets = [d for folder in args.data for d in load_datasets(folder)]
    datasets += [d for folder in args.large for d in load_datasets(folder, args.max_rows)]
    names = [name for name, _, _ in datasets]
    if args.datasets:
        unknown = sorted(set(args.datasets) - set(names))
        if unknown:
            raise SystemExit(f"Unknown datasets {unknown}; known: {names}")
        datasets = [d for d in datasets if d[0] in args.datasets]
    chosen, skipped = [], []
    for detector in DETECTORS:
        if detector.key not in args.detectors:
            continue
        if detector.key in PYOD_PEERS and not pyod_available():
            skipped.append((detector.key, "PyOD is not installed: pip install '.[benchmark]'"))
            continue
        chosen.append(detector)

    results_dir = args.output / "results"
    csv_path = results_dir / "quality.csv"
    runs_path = results_dir / "quality_runs.json"
    stored = read_rows(csv_path)
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    run_names = {d[0] for d in datasets}
    keys = {d.key for d in chosen}
    if args.report_only:
        chosen = []
    if args.resume or args.report_only:
        skip = {(r["setting"], r["dataset"], r["key"], r["seed"]) for r in stored}
    else:
        skip = set()
        stored = [
            r
            for r in stored
            if not (
                r["key"] in keys and r["dataset"] in run_names and r["setting"] in args.settings
            )
        ]
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    done = []
    if chosen:
        runs[run_id] = dict(
            detectors=[d.key for d in chosen],
            machine=machine_lines(args.threads, __file__, argv),
            cpu_cap_s=args.cap,
        )
        runs_path.parent.mkdir(parents=True, exist_ok=True)
        runs_path.write_text(json.dumps(runs, indent=1) + "\n")

    def store(new):
        for row in new:
            row["run"] = run_id
        done.extend(new)
        write_csv(csv_path, ordered(stored + done, names))

    run(
        datasets,
        chosen,
        args.seeds,
        args.jobs,
        args.threads,
        args.peer_seeds,
        settings=args.settings,
        cpu_cap_s=args.cap or None,
        skip=skip,
        on_rows=store,
        time_limit_s=args.time_limit,
    )
    rows = ordered(stored + done, names)
    if not rows:
        raise SystemExit("Nothing to report: no stored or new rows.")
    write_csv(csv_path, rows)
    text, per_dataset = report(rows, runs, skipped)
    write_csv(results_dir / "quality_datasets.csv", per_dataset)
    write_section("quality", text, results_dir, args.output / "RESULTS.md")
    print(
        f"wrote {csv_path}, {results_dir / 'quality_datasets.csv'} and {args.output / 'RESULTS.md'}"
    )


if __name__ == "__main__":
    main()
