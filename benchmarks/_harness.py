"""Shared pieces of the benchmark scripts: datasets, the two evaluation settings,
the capped runner of detector fits, machine description and the RESULTS.md
writer. Public skvae API only."""

from __future__ import annotations

import csv
import datetime
import os
import platform
import resource
import shlex
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "adbench"
DEFAULT_LARGE_DATA = HERE.parent.parent / "shared" / "data" / "adbench-large"
# The large files are cut to this many rows (see ``subsample``).
MAX_ROWS = 20_000
SETTINGS = ("contaminated", "novelty")
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
# RESULTS.md is these fragments, in this order; each script rewrites its own.
SECTIONS = [
    "quality",
    "ablation",
    "score_rules",
    "cross_conformal_power",
    "speed",
    "novelty_speed",
    "fit_time",
    "torch_compile",
    "mixed_types",
    "mixed_novelty",
    "real_tables",
    "missing_share",
    "dask",
    "dask_incremental",
]


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads(n_threads, script, argv, restart):
    """Run this script with every thread pool sized ``n_threads`` from the start.

    The pools read these variables when numpy and torch load, which has
    already happened here, so with ``restart`` (run from the command line,
    not called from Python) the script starts again with them set (once).
    Without them, on a busy 2-core machine, BLAS threads left spinning by
    numpy slowed torch's 2-thread scoring twentyfold in a fresh process.
    """
    if not restart or all(os.environ.get(name) == str(n_threads) for name in THREAD_VARIABLES):
        return set_threads(n_threads)
    env = {**os.environ, **{name: str(n_threads) for name in THREAD_VARIABLES}}
    os.execve(sys.executable, [sys.executable, str(script), *argv], env)


def set_threads(n_threads):
    """Pin torch and the BLAS/OpenMP pools below numpy to ``n_threads``."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n_threads)
    # Kept alive for the whole process: the limits hold while it exists.
    global _THREAD_LIMITS
    _THREAD_LIMITS = threadpool_limits(n_threads)


_THREAD_LIMITS = None


def pyod_available():
    """Whether the optional peers (the ``benchmark`` extra) are installed."""
    try:
        import pyod  # noqa: F401
    except ImportError:
        return False
    return True


def load_datasets(folder, max_rows=None):
    """``[(name, X float64, y int)]`` for every ``*.npz`` in ``folder``, sorted
    by the number prefix ADBench gives its files (then by name); with
    ``max_rows``, files with more rows are cut by ``subsample``."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.npz"), key=_dataset_order)
    if not paths:
        raise SystemExit(f"No .npz files in {folder}: pass --data FOLDER.")
    datasets = []
    for path in paths:
        with np.load(path) as data:
            X = np.asarray(data["X"], dtype=np.float64)
            y = np.asarray(data["y"]).astype(int).ravel()
        if max_rows is not None:
            X, y = subsample(X, y, max_rows)
        datasets.append((_dataset_name(path), X, y))
    return datasets


def subsample(X, y, max_rows=MAX_ROWS):
    """At most ``max_rows`` rows of ``(X, y)``, the anomaly rate kept.

    The rule, shared with other skvae benchmarks so their subsamples are the
    same rows: ``RandomState(0)`` draws ``round(max_rows * rate)`` anomalies,
    then ``max_rows`` minus that many normal rows, each without replacement;
    the rows keep their original order.
    """
    n = len(y)
    if n <= max_rows:
        return X, y
    rng = np.random.RandomState(0)
    n_anomalies = int(round(max_rows * y.mean()))
    anomalies = rng.choice(np.flatnonzero(y == 1), n_anomalies, replace=False)
    normals = rng.choice(np.flatnonzero(y == 0), max_rows - n_anomalies, replace=False)
    index = np.sort(np.concatenate([anomalies, normals]))
    return X[index], y[index]


def setting_split(setting, y, seed=0):
    """Row indices ``(fit, score)`` of one evaluation setting.

    ``contaminated``: fit on every row, score every row (ADBench's unsupervised
    protocol). ``novelty``: fit on a random half (``RandomState(seed)``) of the
    normal rows, score the other half of the normal rows and every anomaly.
    """
    every = np.arange(len(y))
    if setting == "contaminated":
        return every, every
    if setting != "novelty":
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    normals = np.random.RandomState(seed).permutation(np.flatnonzero(y == 0))
    half = len(normals) // 2
    fit = np.sort(normals[:half])
    score = np.sort(np.concatenate([normals[half:], np.flatnonzero(y == 1)]))
    return fit, score


def _dataset_order(path):
    prefix, _, rest = path.stem.partition("_")
    return (int(prefix), rest) if prefix.isdigit() and rest else (10**9, path.stem)


def _dataset_name(path):
    prefix, _, rest = path.stem.partition("_")
    return rest if prefix.isdigit() and rest else path.stem


def evaluate(y, anomaly_scores):
    """ROC-AUC and average precision of scores where higher = more anomalous."""
    anomaly_scores = np.asarray(anomaly_scores, dtype=np.float64)
    if not np.all(np.isfinite(anomaly_scores)):
        raise ValueError("a detector returned non-finite scores")
    return roc_auc_score(y, anomaly_scores), average_precision_score(y, anomaly_scores)


def timed(function, *args):
    """``(result, wall seconds)`` of ``function(*args)``."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines(n_threads, script, argv):
    """Markdown bullet lines describing where and when a run happened."""
    import sklearn
    import torch

    import skvae

    versions = [
        f"python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"scikit-learn {sklearn.__version__}",
        f"torch {torch.__version__}",
        f"skvae {skvae.__version__}",
    ]
    try:
        import pyod

        versions.append(f"pyod {pyod.__version__}")
    except ImportError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- Date: {now}",
        f"- Machine: {platform.system()} {platform.machine()}, {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs visible, load average at start {load}",
        f"- Threads: torch.set_num_threads({n_threads})",
        f"- Versions: {', '.join(versions)}",
        f"- Command: `{command_line(script, argv)}`",
    ]


def command_line(script, argv):
    """The command that runs ``script`` with arguments ``argv``, from the repository root."""
    script = Path(script).resolve()
    try:
        script = script.relative_to(HERE.parent)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, argv)])


def read_csv_rows(path):
    """The rows of a results CSV as dicts of strings; none when it is absent."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def start_labelled_run(args):
    """The start of a run that measures the code on ``PYTHONPATH`` under
    ``args.label``: thread pools set, which skvae is measured printed, and
    ``{name: (X, y)}`` of the datasets in ``args.data``."""
    set_threads(args.threads)
    import skvae

    print(f"measuring {skvae.__file__} as {args.label!r}", flush=True)
    return {name: (X, y) for name, X, y in load_datasets(args.data)}


def write_csv(path, rows, fieldnames=None):
    """``rows`` (dicts) to ``path``; ``fieldnames`` defaults to every key of
    the rows in first-seen order, and a row without a field leaves it empty
    (rows kept from an earlier run may lack a newer field)."""
    fieldnames = fieldnames or list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        # Unix line endings: the csv module's default \r\n shows every line of a
        # results file as changed once a file is touched by a tool that writes \n.
        writer = csv.DictWriter(handle, fieldnames=fieldnames, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name, text, results_dir=RESULTS_DIR, results_md=RESULTS_MD):
    """Store one script's section and rebuild RESULTS.md from every section."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.md").write_text(text.rstrip() + "\n")
    parts = [
        "# skvae benchmark results\n\n"
        "Written by the scripts in `benchmarks/` (see `benchmarks/README.md`); every number "
        "below was measured by the command shown in its section. Do not edit by hand.\n"
    ]
    for section in SECTIONS:
        path = results_dir / f"{section}.md"
        if path.exists():
            parts.append(path.read_text())
    results_md.write_text("\n".join(parts))


@dataclass
class Detector:
    """How to fit one detector and score with it.

    ``fit(X, seed)`` returns the fitted model. ``scorers`` maps a column label
    to ``function(model, X)`` returning anomaly scores of new rows ``X``
    (higher = more anomalous); several scorers share one fit when they differ
    only in how the fitted model scores. ``training_scorers``, when given,
    replaces ``scorers`` in the contaminated setting with
    ``function(model, X)`` for the rows the model was fitted on (PyOD's
    ``decision_scores_``: a neighbour-based detector must not count a row as
    its own neighbour). ``settings``, when given, are the only settings the
    detector runs in.
    """

    key: str
    fit: object
    scorers: dict
    seeded: bool
    note: str = ""
    extra: dict = field(default_factory=dict)
    training_scorers: dict | None = None
    settings: tuple | None = None


def run(
    datasets,
    detectors,
    seeds,
    n_jobs=1,
    n_threads=1,
    peer_seeds=None,
    settings=("contaminated",),
    cpu_cap_s=None,
    skip=frozenset(),
    on_rows=None,
    time_limit_s=None,
    warm_up=True,
):
    """One row per (setting, dataset, scorer, seed), in that order.

    Seeded detectors run once per seed (``peer_seeds`` replaces ``seeds`` for
    those whose key does not start with ``skvae``), the others once, as seed
    0. Fits are scheduled seed by seed, so a run cut short has every dataset
    at the first seeds. ``skip`` holds ``(setting, dataset, key, seed)`` tasks
    not to run. With ``n_jobs`` > 1 or a ``cpu_cap_s``, every fit runs in its
    own forked process; one past ``cpu_cap_s`` seconds of CPU time (fit and
    score) is stopped, and one that fails or is stopped scores 0.5 ROC-AUC
    and the anomaly rate as average precision, its ``status`` saying why.
    Results do not depend on ``n_jobs`` (every fit is seeded), timings do.
    ``on_rows(rows)`` is called as each fit finishes. Past ``time_limit_s``
    (forked runs only) the fits still running are stopped and left out, with
    those not started: rerun them later.

    Before the timed fits (with ``warm_up``) every detector is fitted once on
    a small random table, so that imports, JIT compilation and torch's first-optimizer set-up
    are paid once here, not inside the first timed fit of each process.
    """
    tasks = []
    for setting in settings:
        for order, dataset in enumerate(datasets):
            for detector in detectors:
                if detector.settings is not None and setting not in detector.settings:
                    continue
                peer = peer_seeds is not None and not detector.key.startswith("skvae")
                for rank, seed in enumerate(
                    (peer_seeds if peer else seeds) if detector.seeded else [0]
                ):
                    if (setting, dataset[0], detector.key, seed) not in skip:
                        tasks.append((rank, setting, order, dataset, detector, seed))
    # Seed by seed, small datasets first, both settings of a dataset together:
    # a run cut short has whole datasets.
    tasks.sort(key=lambda t: (t[0], len(t[3][2]), t[2], settings.index(t[1])))
    labels = [label for detector in detectors for label in detector.scorers]
    names = [dataset[0] for dataset in datasets]
    rows = []

    def collect(task, outcome):
        new = _rows(*task[1:], outcome, n_threads)
        rows.extend(new)
        if on_rows is not None:
            on_rows(new)

    if warm_up:
        _warm_up(detectors, n_threads)
    if n_jobs == 1 and cpu_cap_s is None:
        for task in tasks:
            collect(task, _outcome(task[1], task[3], task[4], task[5], n_threads))
    else:
        _run_forked(tasks, n_jobs, n_threads, cpu_cap_s, collect, time_limit_s)
    rows.sort(
        key=lambda r: (
            settings.index(r["setting"]),
            names.index(r["dataset"]),
            labels.index(r["detector"]),
            r["seed"],
        )
    )
    return rows


def _warm_up(detectors, n_threads):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 4))
    y = (np.arange(200) < 10).astype(int)
    X[y == 1] += 4.0
    for detector in detectors:
        try:
            model = detector.fit(X, 0)
            for scorer in [*detector.scorers.values(), *(detector.training_scorers or {}).values()]:
                scorer(model, X)
        except Exception:  # noqa: S110 - the timed fit reports the failure
            pass


def _outcome(setting, dataset, detector, seed, n_threads):
    """``{label: (scores, fit_s, score_s, fit_cpu_s, score_cpu_s)}`` (wall and
    CPU seconds) and the ConvergenceWarning flag of one fit; exceptions
    propagate."""
    from sklearn.exceptions import ConvergenceWarning

    set_threads(n_threads)  # again: a forked worker may not share the pools
    name, X, y = dataset
    fit_rows, score_rows = setting_split(setting, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cpu = time.process_time()
        model, fit_s = timed(detector.fit, X[fit_rows], seed)
        fit_cpu_s = time.process_time() - cpu
        scorers = detector.scorers
        if setting == "contaminated" and detector.training_scorers is not None:
            scorers = detector.training_scorers
        scores = {}
        for label, scorer in scorers.items():
            cpu = time.process_time()
            values, score_s = timed(scorer, model, X[score_rows])
            seconds = (fit_s, score_s, fit_cpu_s, time.process_time() - cpu)
            scores[label] = (np.asarray(values, dtype=np.float64), *seconds)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return dict(scores=scores, n_iter=getattr(model, "n_iter_", ""), converged=converged)


def _rows(setting, order, dataset, detector, seed, outcome, n_threads=1):
    name, X, y = dataset
    fit_rows, score_rows = setting_split(setting, y)
    y_scored = y[score_rows]
    rows = []
    for label in detector.scorers:
        status = outcome.get("status", "ok")
        if status == "ok":
            scores, fit_s, score_s, fit_cpu_s, score_cpu_s = outcome["scores"][label]
            try:
                roc_auc, ap = evaluate(y_scored, scores)
            except ValueError as error:
                status, roc_auc, ap = f"failed: {error}", 0.5, float(y_scored.mean())
        else:
            fit_s, fit_cpu_s, score_s, score_cpu_s = outcome["seconds"], outcome["cpu_s"], 0, 0
            roc_auc, ap = 0.5, float(y_scored.mean())
        rows.append(
            dict(
                setting=setting,
                dataset=name,
                n_fit=len(fit_rows),
                n_scored=len(score_rows),
                n_features=X.shape[1],
                anomaly_rate=round(float(y_scored.mean()), 4),
                key=detector.key,
                detector=label,
                seed=seed,
                roc_auc=round(float(roc_auc), 4),
                average_precision=round(float(ap), 4),
                fit_s=round(fit_s, 3),
                score_s=round(score_s, 3),
                fit_cpu_s=round(fit_cpu_s, 3),
                score_cpu_s=round(score_cpu_s, 3),
                status=status,
                n_iter=outcome.get("n_iter", ""),
                converged=outcome.get("converged", ""),
            )
        )
        print(
            f"{setting:>12} {name:>14} {label:>18} seed={seed} roc_auc={roc_auc:.4f} "
            f"ap={ap:.4f} fit={fit_s:.1f}s score={score_s:.2f}s {status}",
            flush=True,
        )
    return rows


def _child(connection, task, n_threads, cpu_cap_s):
    if cpu_cap_s is not None:
        # The kernel stops the process (SIGXCPU) past the cap: fair on a
        # loaded machine, where wall time would punish whoever ran slowest.
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_cap_s), int(cpu_cap_s) + 5))
    start = time.perf_counter()
    try:
        outcome = _outcome(task[1], task[3], task[4], task[5], n_threads)
    except BaseException as error:  # reported as the peer's failure, never fatal
        message = "".join(traceback.format_exception_only(type(error), error)).strip()
        outcome = dict(status=f"failed: {message.splitlines()[-1][:200]}")
    outcome["seconds"] = time.perf_counter() - start
    outcome["cpu_s"] = time.process_time()
    connection.send(outcome)
    connection.close()


def _run_forked(tasks, n_jobs, n_threads, cpu_cap_s, collect, time_limit_s=None):
    """Each task in a forked process, ``n_jobs`` at once (the datasets and the
    imported libraries are inherited, not copied or re-imported)."""
    context = get_context("fork")
    pending, running = list(tasks), {}
    # A process hung outside the CPU cap (waiting on a lock) is stopped too;
    # generously, since a loaded machine gives each process a small share.
    wall_cap_s = None if cpu_cap_s is None else 30 * cpu_cap_s
    end = None if time_limit_s is None else time.perf_counter() + time_limit_s
    while pending or running:
        if end is not None and time.perf_counter() > end:
            for process, reader, _, _ in running.values():
                process.kill()
                process.join()
                reader.close()
            print(
                f"time limit reached: {len(running) + len(pending)} fits not run "
                "(rerun with --resume)",
                flush=True,
            )
            return
        while pending and len(running) < n_jobs:
            task = pending.pop(0)
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(writer, task, n_threads, cpu_cap_s))
            process.start()
            writer.close()
            running[process.sentinel] = (process, reader, task, time.perf_counter())
        wait([*running, *(entry[1] for entry in running.values())], timeout=5.0)
        for sentinel in list(running):
            process, reader, task, start = running[sentinel]
            seconds = time.perf_counter() - start
            outcome = None
            if reader.poll():
                try:
                    outcome = reader.recv()
                except EOFError:  # died before sending: its exit code says why
                    process.join()
            if outcome is not None:
                pass
            elif process.exitcode is not None:
                status = _death(process.exitcode, cpu_cap_s)
                outcome = dict(status=status, seconds=seconds, cpu_s=cpu_cap_s or 0.0)
            elif wall_cap_s is not None and seconds > wall_cap_s:
                process.kill()
                status = f"stopped: over {wall_cap_s:.0f} s wall"
                outcome = dict(status=status, seconds=seconds, cpu_s=float("nan"))
            else:
                continue
            process.join()
            reader.close()
            del running[sentinel]
            collect(task, outcome)


def _death(exitcode, cpu_cap_s):
    import signal

    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL) and cpu_cap_s is not None:
        return f"stopped: over the {cpu_cap_s:.0f} s CPU cap"
    return f"failed: worker exited with code {exitcode}"


def summarise(rows):
    """Per (dataset, detector): metrics averaged over seeds; and the labels in order."""
    labels = list(dict.fromkeys(row["detector"] for row in rows))
    names = list(dict.fromkeys(row["dataset"] for row in rows))
    cpu = ("fit_cpu_s", "score_cpu_s") if rows and "fit_cpu_s" in rows[0] else ()
    table = {}
    for name in names:
        for label in labels:
            runs = [r for r in rows if r["dataset"] == name and r["detector"] == label]
            if not runs:
                continue
            table[name, label] = {
                key: float(np.mean([float(r[key]) for r in runs]))
                for key in ("roc_auc", "average_precision", "fit_s", "score_s", *cpu)
            }
    return names, labels, table


def rank_summary(names, labels, table):
    """Per label: mean ROC-AUC, mean AP, mean rank (1 = best ROC-AUC on a
    dataset, ties share the mean of their ranks), the worst dataset and its
    ROC-AUC, mean fit + score seconds. Datasets missing a label are left out
    for every label, so the means are over the same datasets."""
    from scipy.stats import rankdata

    names = [name for name in names if all((name, label) in table for label in labels)]
    ranks = {label: [] for label in labels}
    for name in names:
        values = rankdata([-table[name, label]["roc_auc"] for label in labels])
        for label, value in zip(labels, values, strict=True):
            ranks[label].append(float(value))
    summary = {}
    for label in labels:
        cells = [table[name, label] for name in names]
        worst = min(names, key=lambda name: table[name, label]["roc_auc"])
        summary[label] = dict(
            roc_auc=float(np.mean([c["roc_auc"] for c in cells])),
            average_precision=float(np.mean([c["average_precision"] for c in cells])),
            rank=float(np.mean(ranks[label])),
            worst=worst,
            worst_roc_auc=table[worst, label]["roc_auc"],
            seconds=float(np.mean([c["fit_s"] + c["score_s"] for c in cells])),
            cpu_s=float(np.mean([c["fit_cpu_s"] + c["score_cpu_s"] for c in cells])),
            total_fit_cpu_s=float(np.sum([c["fit_cpu_s"] for c in cells])),
        )
    return names, summary
