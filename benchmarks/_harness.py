"""Shared pieces of the benchmark scripts: datasets, the unsupervised protocol,
machine description and the RESULTS.md writer. Public skvae API only."""

from __future__ import annotations

import csv
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "adbench"
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
# RESULTS.md is these fragments, in this order; each script rewrites its own.
SECTIONS = [
    "quality",
    "ablation",
    "speed",
    "mixed_types",
    "real_tables",
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


def load_datasets(folder):
    """``[(name, X float64, y int)]`` for every ``*.npz`` in ``folder``, sorted
    by the number prefix ADBench gives its files (then by name)."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.npz"), key=_dataset_order)
    if not paths:
        raise SystemExit(f"No .npz files in {folder}: pass --data FOLDER.")
    datasets = []
    for path in paths:
        with np.load(path) as data:
            X = np.asarray(data["X"], dtype=np.float64)
            y = np.asarray(data["y"]).astype(int).ravel()
        datasets.append((_dataset_name(path), X, y))
    return datasets


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


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
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
