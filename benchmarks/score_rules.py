"""Scoring rules on the default fit: would a nearest-neighbour term close the novelty gap?

kNN leads the novelty setting (fit on clean rows) and fails the contaminated
one (clustered anomalies are each other's neighbours). This script fits the
default detector once per dataset, setting and seed and scores the rows by
several rules built on that one fit, beside kNN (PyOD's ``KNN()`` defaults:
distance to the 5th neighbour, raw features) and IsolationForest:

- ``ELBO``: ``-score_samples``, the library's default;
- ``kNN, standardised``: distance to the 5th nearest training row in the
  detector's standardised units;
- ``kNN, trimmed reference``: the same, to the training rows left after
  dropping the ``AUTO_TRIM_FRACTION`` share with the lowest ELBO (the VAE
  cleans the reference set);
- ``latent kNN``: distance to the 5th nearest training row's posterior mean;
- ``ELBO + ...``: the sum of the two terms, each as a robust z-score
  against its training rows' values ((value - median) / IQR; distances as
  logs), so a fitted detector could score one row at a time.

In the contaminated setting a training row is not its own neighbour. The
folds of the cross-conformal calibration do not change the scores, so the
detector is fitted with ``calibration="split"``. Writes
``results/score_rules.csv`` and the ``score_rules`` section of RESULTS.md.

    python benchmarks/score_rules.py --jobs 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
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
    rank_summary,
    read_csv_rows,
    run,
    summarise,
    write_csv,
    write_section,
)

from skvae import VAEAnomalyDetector
from skvae._anomaly import AUTO_TRIM_FRACTION

N_NEIGHBOURS = 5
ELBO = "ELBO (default)"
KNN_STANDARDISED = "kNN, standardised"
KNN_TRIMMED = "kNN, trimmed reference"
LATENT_KNN = "latent kNN"
RULES = (
    ELBO,
    KNN_STANDARDISED,
    KNN_TRIMMED,
    LATENT_KNN,
    f"ELBO + {KNN_STANDARDISED}",
    f"ELBO + {KNN_TRIMMED}",
    f"ELBO + {LATENT_KNN}",
)


class _Neighbours:
    """Distance to the k-th nearest reference row; ``training=True`` scores
    the reference rows themselves, each without itself."""

    def __init__(self, reference):
        from sklearn.neighbors import NearestNeighbors

        self.model = NearestNeighbors(n_neighbors=N_NEIGHBOURS + 1).fit(reference)

    def distance(self, Z, training=False):
        distances, _ = self.model.kneighbors(Z, n_neighbors=N_NEIGHBOURS + int(training))
        return distances[:, -1]


def _robust_z(values, reference):
    q1, median, q3 = np.percentile(reference, [25, 50, 75])
    return (values - median) / max(q3 - q1, 1e-12)


class _Rules:
    """One default fit and what every rule needs from it."""

    def __init__(self, X, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.detector = VAEAnomalyDetector(random_state=seed, calibration="split").fit(X)
        self.X = X
        train_elbo = -self.detector.score_samples(X)
        kept = train_elbo <= np.quantile(train_elbo, 1.0 - AUTO_TRIM_FRACTION)
        self.kept = kept
        standardised = self._standardise(X)
        self.spaces = {
            KNN_STANDARDISED: (self._standardise, _Neighbours(standardised)),
            KNN_TRIMMED: (self._standardise, _Neighbours(standardised[kept])),
            LATENT_KNN: (self.detector.embed, _Neighbours(self.detector.embed(X))),
        }
        # Each term's values on the training rows (a row not its own
        # neighbour): the reference its robust z-score is taken against.
        self.training = {ELBO: train_elbo}
        for rule in self.spaces:
            self.training[rule] = np.log(self._distance(rule, X, training=True) + 1e-12)

    def _standardise(self, X):
        return (X - self.detector.mean_) / self.detector.scale_

    def _distance(self, rule, X, training):
        transform, neighbours = self.spaces[rule]
        if not training:
            return neighbours.distance(transform(X))
        if rule != KNN_TRIMMED:
            return neighbours.distance(transform(X), training=True)
        # Rows in the trimmed reference skip themselves; the trimmed rows do not.
        distances = neighbours.distance(transform(X))
        distances[self.kept] = neighbours.distance(transform(X[self.kept]), training=True)
        return distances

    def scores(self, X, training):
        # Every rule's scorer asks for the same rows in turn: compute them once.
        key = (training, X.shape, hashlib.sha1(np.ascontiguousarray(X).tobytes()).hexdigest())
        if getattr(self, "_cached_key", None) != key:
            self._cached_key, self._cached = key, self._scores(X, training)
        return self._cached

    def _scores(self, X, training):
        terms = {ELBO: -self.detector.score_samples(X)}
        for rule in self.spaces:
            terms[rule] = np.log(self._distance(rule, X, training) + 1e-12)
        out = dict(terms)
        for rule in self.spaces:
            out[f"ELBO + {rule}"] = _robust_z(terms[ELBO], self.training[ELBO]) + _robust_z(
                terms[rule], self.training[rule]
            )
        return out


PER_ROW = "per-row variance ELBO"
SECOND_SEED = "ELBO + ELBO of a second seed"
PER_ROW_SUM = f"ELBO + {PER_ROW}"
PAIR_RULES = (PER_ROW, SECOND_SEED, PER_ROW_SUM)


class _Pair:
    """The default fit beside a second one: another seed (``seed + 100``), or
    a per-row decoder variance (``decoder_variance="sample"``); does a second
    model add more than averaging over seeds does?"""

    def __init__(self, X, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.models = {
                ELBO: VAEAnomalyDetector(random_state=seed, calibration="split").fit(X),
                "second seed": VAEAnomalyDetector(random_state=seed + 100, calibration="split"),
                PER_ROW: VAEAnomalyDetector(
                    random_state=seed, calibration="split", decoder_variance="sample"
                ),
            }
            for label in ("second seed", PER_ROW):
                self.models[label].fit(X)
        self.training = {label: -model.score_samples(X) for label, model in self.models.items()}

    def scores(self, X):
        terms = {label: -model.score_samples(X) for label, model in self.models.items()}
        z = {label: _robust_z(terms[label], self.training[label]) for label in terms}
        return {
            PER_ROW: terms[PER_ROW],
            SECOND_SEED: z[ELBO] + z["second seed"],
            PER_ROW_SUM: z[ELBO] + z[PER_ROW],
        }


def _pair_scorer(rule):
    def score(model, X):
        return model.scores(X)[rule]

    return score


def _rule_scorer(rule, training):
    def score(model, X):
        return model.scores(X, training)[rule]

    return score


def _fit_knn(X, seed):
    return _Neighbours(X)


def _fit_iforest(X, seed):
    from sklearn.ensemble import IsolationForest

    return IsolationForest(random_state=seed).fit(X)


DETECTORS = [
    Detector(
        "skvae-rules",
        _Rules,
        {rule: _rule_scorer(rule, training=False) for rule in RULES},
        seeded=True,
        training_scorers={rule: _rule_scorer(rule, training=True) for rule in RULES},
    ),
    Detector("skvae-pair", _Pair, {rule: _pair_scorer(rule) for rule in PAIR_RULES}, seeded=True),
    Detector(
        "knn",
        _fit_knn,
        {"kNN (PyOD defaults)": lambda model, X: model.distance(X)},
        seeded=False,
        training_scorers={"kNN (PyOD defaults)": lambda model, X: model.distance(X, True)},
    ),
    Detector(
        "iforest",
        _fit_iforest,
        {"IsolationForest": lambda model, X: -model.score_samples(X)},
        seeded=False,
    ),
]


KEYS = [detector.key for detector in DETECTORS]


def report(rows, args, runs, names):
    lines = ["## Scoring rules on the default fit (benchmarks/score_rules.py)", ""]
    # One block per run that produced stored rows, naming its detectors.
    blocks = {}
    for key in KEYS:
        if key in runs:
            blocks.setdefault(tuple(runs[key]), []).append(key)
    for machine, keys in blocks.items():
        lines += [f"Run of {', '.join(keys)}:", "", *machine, ""]
    seeds = sorted({str(row["seed"]) for row in rows if row["detector"] in RULES}, key=int)
    lines += [
        f"- {len(names)} datasets; files over {args.max_rows:,} rows cut as in the quality "
        "benchmark. Rules on one `VAEAnomalyDetector(random_state=seed, "
        f'calibration="split")` fit per seed (seeds {", ".join(seeds)}, mean '
        "over seeds); kNN (distance to the 5th neighbour, raw features) and "
        "IsolationForest(random_state=0) once. See the script's docstring for each rule.",
        "",
    ]
    for setting in args.settings:
        kept = [r for r in rows if r["setting"] == setting]
        _, labels, table = summarise(kept)
        names_, summary = rank_summary(names, labels, table)
        body = [
            [
                label,
                f"{s['roc_auc']:.4f}",
                f"{s['average_precision']:.4f}",
                f"{s['rank']:.2f}",
                f"{s['worst']} ({s['worst_roc_auc']:.3f})",
            ]
            for label, s in sorted(summary.items(), key=lambda item: -item[1]["roc_auc"])
        ]
        lines += [f"### {setting.capitalize()} setting", ""]
        lines.append(
            markdown_table(["rule", "mean ROC-AUC", "mean AP", "mean rank", "worst"], body)
        )
        lines += ["", f"ROC-AUC per dataset, {setting}:", ""]
        lines.append(
            markdown_table(
                ["rule", *names_],
                [
                    [label, *(f"{table[name, label]['roc_auc']:.3f}" for name in names_)]
                    for label in labels
                ],
            )
        )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="*", default=[DEFAULT_DATA])
    parser.add_argument("--large", type=Path, nargs="*", default=[DEFAULT_LARGE_DATA])
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--detectors", nargs="+", choices=KEYS, default=list(KEYS))
    parser.add_argument(
        "--merge", action="store_true", help="keep the stored rows of the detectors not run"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the section from the stored rows"
    )
    parser.add_argument("--output", type=Path, default=HERE)
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    results_dir = args.output / "results"
    csv_path = results_dir / "score_rules.csv"
    runs_path = results_dir / "score_rules_runs.json"
    if args.report_only:
        rows = read_csv_rows(csv_path)
        names = list(dict.fromkeys(row["dataset"] for row in rows))
        runs = json.loads(runs_path.read_text())
        write_section(
            "score_rules", report(rows, args, runs, names), results_dir, args.output / "RESULTS.md"
        )
        return
    pin_threads(args.threads, __file__, argv, restart=from_command_line)

    datasets = [d for folder in args.data for d in load_datasets(folder)]
    datasets += [d for folder in args.large for d in load_datasets(folder, args.max_rows)]
    names = [name for name, _, _ in datasets]
    chosen = [detector for detector in DETECTORS if detector.key in args.detectors]
    rows = run(datasets, chosen, args.seeds, args.jobs, args.threads, settings=args.settings)
    runs = json.loads(runs_path.read_text()) if args.merge and runs_path.exists() else {}
    machine = machine_lines(args.threads, __file__, argv)
    runs.update({detector.key: machine for detector in chosen})
    if args.merge and csv_path.exists():
        labels = {label for detector in chosen for label in detector.scorers}
        rows = [row for row in read_csv_rows(csv_path) if row["detector"] not in labels] + rows
        order = [label for detector in DETECTORS for label in detector.scorers]
        rows.sort(
            key=lambda r: (
                args.settings.index(r["setting"]),
                names.index(r["dataset"]),
                order.index(r["detector"]),
                int(r["seed"]),
            )
        )
    write_csv(csv_path, rows)
    runs_path.write_text(json.dumps(runs, indent=1) + "\n")
    write_section(
        "score_rules", report(rows, args, runs, names), results_dir, args.output / "RESULTS.md"
    )
    print(f"wrote {results_dir / 'score_rules.csv'} and {args.output / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
