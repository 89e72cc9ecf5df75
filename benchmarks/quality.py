"""Detection quality, detectors side by side, ADBench's unsupervised protocol.

Every detector is fitted on all of X without labels and scores the same X;
the scores are compared with y (1 = anomaly). Deep models run once per seed
and are reported as the mean over seeds. Writes ``results/quality.csv`` and
the quality section of ``RESULTS.md``.

    python benchmarks/quality.py                 # every detector, seeds 0 1 2
    python benchmarks/quality.py --data DIR --detectors skvae iforest
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _harness import (
    DEFAULT_DATA,
    HERE,
    evaluate,
    load_datasets,
    machine_lines,
    markdown_table,
    pin_threads,
    pyod_available,
    set_threads,
    timed,
    write_csv,
    write_section,
)

from skvae import VAEAnomalyDetector

DEFAULT_LABEL = "skvae elbo (default)"


@dataclass
class Detector:
    """How to fit one detector and score with it.

    ``scorers`` maps a column label to ``function(model, X)`` returning
    anomaly scores (higher = more anomalous). Several scorers share one fit
    when they differ only in how the fitted model scores.
    """

    key: str
    fit: object
    scorers: dict
    seeded: bool
    note: str = ""
    extra: dict = field(default_factory=dict)


def _skvae_scorer(scoring):
    def score(model, X):
        # scoring only changes score_samples, never the fit: one fit serves all three.
        return -model.set_params(scoring=scoring).score_samples(X)

    return score


def _fit_skvae(X, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on max_iter is reported via n_iter_
        return VAEAnomalyDetector(random_state=seed).fit(X)


def _fit_iforest(X, seed):
    from sklearn.ensemble import IsolationForest

    return IsolationForest(random_state=0).fit(X)


def _pyod_fitter(class_name):
    def fit(X, seed):
        import pyod.models.auto_encoder
        import pyod.models.ecod
        import pyod.models.vae

        classes = {
            "VAE": pyod.models.vae.VAE,
            "AutoEncoder": pyod.models.auto_encoder.AutoEncoder,
            "ECOD": pyod.models.ecod.ECOD,
        }
        if class_name == "ECOD":
            return classes[class_name]().fit(X)
        # Defaults, except the seed (varied like skvae's) and the progress bar.
        return classes[class_name](random_state=seed, verbose=0).fit(X)

    return fit


def _pyod_score(model, X):
    return model.decision_function(X)


DETECTORS = [
    Detector(
        "skvae",
        _fit_skvae,
        {
            DEFAULT_LABEL: _skvae_scorer("elbo"),
            "skvae iwae": _skvae_scorer("iwae"),
            "skvae reconstruction": _skvae_scorer("reconstruction"),
        },
        seeded=True,
        note="`VAEAnomalyDetector(random_state=seed)`; the three scorings share one fit per seed "
        "(`scoring` does not change training) and differ only in `score_samples`.",
    ),
    Detector(
        "pyod-vae",
        _pyod_fitter("VAE"),
        {"PyOD VAE": _pyod_score},
        seeded=True,
        note="`pyod.models.vae.VAE(random_state=seed, verbose=0)`, otherwise defaults "
        "(30 epochs, batch 32). PyOD's `fit` also scores the training rows, so its fit time "
        "includes one scoring pass.",
    ),
    Detector(
        "pyod-ae",
        _pyod_fitter("AutoEncoder"),
        {"PyOD AutoEncoder": _pyod_score},
        seeded=True,
        note="`pyod.models.auto_encoder.AutoEncoder(random_state=seed, verbose=0)`, otherwise "
        "defaults (10 epochs, batch 32); fit time includes one scoring pass.",
    ),
    Detector(
        "iforest",
        _fit_iforest,
        {"IsolationForest": lambda model, X: -model.score_samples(X)},
        seeded=False,
        note="`sklearn.ensemble.IsolationForest(random_state=0)`, run once.",
    ),
    Detector(
        "ecod",
        _pyod_fitter("ECOD"),
        {"PyOD ECOD": _pyod_score},
        seeded=False,
        note="`pyod.models.ecod.ECOD()` (deterministic), run once.",
    ),
]


def _fit_and_score(dataset, detector, seed, n_threads):
    """CSV rows of one fit of ``detector`` on ``dataset``, one per scorer."""
    set_threads(n_threads)  # again: a worker process starts with its own pools
    name, X, y = dataset
    model, fit_s = timed(detector.fit, X, seed)
    rows = []
    for label, scorer in detector.scorers.items():
        scores, score_s = timed(scorer, model, X)
        roc_auc, ap = evaluate(y, scores)
        rows.append(
            dict(
                dataset=name,
                n_samples=X.shape[0],
                n_features=X.shape[1],
                anomaly_rate=round(float(y.mean()), 4),
                detector=label,
                seed=seed,
                roc_auc=round(roc_auc, 4),
                average_precision=round(ap, 4),
                fit_s=round(fit_s, 3),
                score_s=round(score_s, 3),
                n_iter=getattr(model, "n_iter_", ""),
            )
        )
        print(
            f"{name:>14} {label:>22} seed={seed} roc_auc={roc_auc:.4f} "
            f"ap={ap:.4f} fit={fit_s:.1f}s score={score_s:.2f}s",
            flush=True,
        )
    return rows


def run(datasets, detectors, seeds, n_jobs=1, n_threads=1, peer_seeds=None):
    """One CSV row per (dataset, scorer, seed), in dataset, detector, seed order.

    ``n_jobs`` fits run at once in separate processes; results do not depend
    on it (every fit is seeded), timings do. ``peer_seeds`` replaces
    ``seeds`` for the seeded detectors that are not skvae's.
    """
    from joblib import Parallel, delayed

    tasks = [
        (dataset, detector, seed)
        for dataset in datasets
        for detector in detectors
        for seed in (
            (seeds if detector.key.startswith("skvae") or peer_seeds is None else peer_seeds)
            if detector.seeded
            else [0]
        )
    ]
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_and_score)(dataset, detector, seed, n_threads)
        for dataset, detector, seed in tasks
    )
    return [row for rows in results for row in rows]


def summarise(rows):
    """Per (dataset, detector): metrics averaged over seeds; and the labels in order."""
    labels = list(dict.fromkeys(row["detector"] for row in rows))
    names = list(dict.fromkeys(row["dataset"] for row in rows))
    table = {}
    for name in names:
        for label in labels:
            runs = [r for r in rows if r["dataset"] == name and r["detector"] == label]
            table[name, label] = {
                key: float(np.mean([r[key] for r in runs]))
                for key in ("roc_auc", "average_precision", "fit_s", "score_s")
            }
    return names, labels, table


def mean_over_datasets(names, table, label, key):
    return float(np.mean([table[name, label][key] for name in names]))


def report(rows, datasets, detectors, args, skipped, argv):
    seeds = args.seeds
    names, labels, table = summarise(rows)
    shape = {name: (X.shape[0], X.shape[1], float(y.mean())) for name, X, y in datasets}
    lines = ["## Detection quality (ADBench unsupervised protocol)", ""]
    lines += machine_lines(args.threads, __file__, argv)
    lines += [
        f"- Protocol: fit on all of X without labels, score the same X, compare with y "
        f"(1 = anomaly). Seeded detectors: mean over seeds {', '.join(map(str, seeds))}"
        + (
            f" (PyOD's deep models: seeds {', '.join(map(str, args.peer_seeds))})"
            if args.peer_seeds
            else ""
        )
        + f". {args.jobs} fit(s) at a time.",
        "",
    ]
    lines += [f"- **{d.key}**: {d.note}" for d in detectors]
    lines += [f"- **{key}**: not run ({why})" for key, why in skipped]
    lines.append("")

    means = {
        label: {
            key: mean_over_datasets(names, table, label, key)
            for key in ("roc_auc", "average_precision", "fit_s", "score_s")
        }
        for label in labels
    }
    ranked = sorted(labels, key=lambda label: -means[label]["roc_auc"])
    lines += ["### Summary (mean over datasets)", ""]
    lines.append(
        markdown_table(
            ["detector", "mean ROC-AUC", "mean AP", "mean fit s", "mean score s"],
            [
                [
                    label,
                    f"{means[label]['roc_auc']:.4f}",
                    f"{means[label]['average_precision']:.4f}",
                    f"{means[label]['fit_s']:.2f}",
                    f"{means[label]['score_s']:.3f}",
                ]
                for label in ranked
            ],
        )
    )
    lines.append("")
    lines += _target_lines(means)

    for key, title in (
        ("roc_auc", "ROC-AUC"),
        ("average_precision", "Average precision"),
        ("fit_s", "Fit wall time (s)"),
        ("score_s", "Score wall time (s)"),
    ):
        digits = 4 if key in ("roc_auc", "average_precision") else 3
        body = [
            [
                name,
                *(_shape_cells(shape[name])),
                *(f"{table[name, label][key]:.{digits}f}" for label in labels),
            ]
            for name in names
        ]
        body.append(
            ["**mean**", "", "", "", *(f"**{means[label][key]:.{digits}f}**" for label in labels)]
        )
        lines += ["", f"### {title}", ""]
        lines.append(markdown_table(["dataset", "n", "d", "anomalies", *labels], body))

    seeded = [
        label for label in labels if len({r["seed"] for r in rows if r["detector"] == label}) > 1
    ]
    if seeded:
        lines += ["", "### Mean ROC-AUC / AP of each seed", ""]
        body = []
        for label in seeded:
            for seed in seeds:
                runs = [r for r in rows if r["detector"] == label and r["seed"] == seed]
                body.append(
                    [
                        label,
                        seed,
                        f"{np.mean([r['roc_auc'] for r in runs]):.4f}",
                        f"{np.mean([r['average_precision'] for r in runs]):.4f}",
                    ]
                )
        lines.append(markdown_table(["detector", "seed", "mean ROC-AUC", "mean AP"], body))
    return "\n".join(lines) + "\n"


def _shape_cells(shape):
    n, d, rate = shape
    return [n, d, f"{100 * rate:.1f}%"]


def _target_lines(means):
    """The issue's quality targets, checked on this run's numbers."""
    if DEFAULT_LABEL not in means:
        return []
    default = means[DEFAULT_LABEL]
    others = [label for label in means if label != DEFAULT_LABEL]
    best_other = max(others, key=lambda label: means[label]["roc_auc"], default=None)
    lines = ["Targets, checked on these numbers:", ""]
    if best_other is not None:
        holds = default["roc_auc"] > means[best_other]["roc_auc"]
        lines.append(
            "- Highest mean ROC-AUC of every detector: "
            f"**{'holds' if holds else 'does not hold'}** "
            f"(default {default['roc_auc']:.4f}; best other: {best_other} "
            f"{means[best_other]['roc_auc']:.4f})."
        )
    for peer in ("PyOD VAE", "PyOD AutoEncoder"):
        if peer in means:
            holds = default["average_precision"] > means[peer]["average_precision"]
            lines.append(
                f"- Mean AP above {peer}: **{'holds' if holds else 'does not hold'}** "
                f"({default['average_precision']:.4f} vs {means[peer]['average_precision']:.4f})."
            )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of .npz files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    parser.add_argument("--jobs", type=int, default=1, help="fits run at once (processes)")
    parser.add_argument(
        "--peer-seeds",
        type=int,
        nargs="+",
        help="seeds for PyOD's deep models (default: --seeds)",
    )
    parser.add_argument(
        "--detectors",
        nargs="+",
        choices=[d.key for d in DETECTORS],
        default=[d.key for d in DETECTORS],
    )
    parser.add_argument(
        "--output", type=Path, default=HERE, help="folder for RESULTS.md and results/"
    )
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    pin_threads(args.threads, __file__, argv, restart=from_command_line)

    chosen, skipped = [], []
    for detector in DETECTORS:
        if detector.key not in args.detectors:
            continue
        if detector.key.startswith(("pyod", "ecod")) and not pyod_available():
            skipped.append((detector.key, "PyOD is not installed: pip install '.[benchmark]'"))
            continue
        chosen.append(detector)
    datasets = load_datasets(args.data)
    rows = run(datasets, chosen, args.seeds, args.jobs, args.threads, args.peer_seeds)
    results_dir = args.output / "results"
    write_csv(results_dir / "quality.csv", rows)
    text = report(rows, datasets, chosen, args, skipped, argv)
    write_section("quality", text, results_dir, args.output / "RESULTS.md")
    print(f"wrote {results_dir / 'quality.csv'} and {args.output / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
