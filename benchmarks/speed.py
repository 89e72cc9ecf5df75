"""Speed and memory: skvae against PyOD's VAE on the same data, network shape and epochs.

Measures, in one run on ``--threads`` CPU threads (2 by default):

* training throughput (rows x epochs per second) of skvae and PyOD's VAE with
  the same hidden layers, latent size and number of epochs, at each library's
  default batch size and at one shared batch size;
* scoring throughput (rows per second) of the default detector on 50 features;
* wall time of fitting the default detector on 50,000 x 50 and on
  1,000,000 x 20 rows, its cost per gradient step, and PyOD's VAE at its
  defaults on the same tables (on the large one PyOD runs ``--pyod-epochs``
  of its 30 epochs and the full fit is extrapolated from them);
* peak memory above the input while scoring a 2,000,000 x 50 float32 array,
  measured in a fresh subprocess.

Writes ``results/speed.csv`` and the speed section of ``RESULTS.md``.

    python benchmarks/speed.py
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _harness import (
    HERE,
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

MIB = 2**20
# A large scoring batch for PyOD, to compare with its default of 32.
EVAL_BATCH = 4096
# PyOD VAE's default number of epochs.
PYOD_EPOCHS = 30
# The step size is reported at the reference batch, skvae's former default.
REFERENCE_BATCH = 256


def synthetic(n_samples, n_features, seed=0, chunk_rows=10_000):
    """Rows near a 5-dimensional linear subspace, 1% of them scattered: float32.

    Built chunk by chunk, so making a large input does not itself raise the
    process's peak memory far above the input's size.
    """
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(5, n_features))
    X = np.empty((n_samples, n_features), dtype=np.float32)
    for start in range(0, n_samples, chunk_rows):
        m = min(chunk_rows, n_samples - start)
        chunk = rng.normal(size=(m, 5)) @ weights + 0.3 * rng.normal(size=(m, n_features))
        outliers = rng.random(m) < 0.01
        chunk[outliers] = rng.uniform(-6, 6, size=(outliers.sum(), n_features))
        X[start : start + m] = chunk
    return X


def _quiet(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args)


def skvae_training(X, epochs, batch_size):
    """Seconds of training alone: fit time minus the scoring pass fit ends with."""
    detector = VAEAnomalyDetector(
        max_iter=epochs,
        early_stopping=False,
        n_iter_no_change=epochs,
        batch_size=batch_size,
        random_state=0,
    )
    detector, fit_s = timed(_quiet, detector.fit, X)
    assert detector.n_iter_ == epochs, detector.n_iter_
    _, score_s = timed(detector.score_samples, X)
    return fit_s - score_s


def pyod_training(X, epochs, batch_size, hidden, latent):
    """PyOD VAE with skvae's network shape; its fit also ends with a scoring pass."""
    from pyod.models.vae import VAE

    model = VAE(
        epoch_num=epochs,
        batch_size=batch_size,
        encoder_neuron_list=list(hidden),
        decoder_neuron_list=list(reversed(hidden)),
        latent_dim=latent,
        random_state=0,
        verbose=0,
    )
    model, fit_s = timed(_quiet, model.fit, X)
    _, score_s = timed(model.decision_function, X)
    return fit_s - score_s, model


def pyod_default_fit(X, epochs):
    """Seconds of ``pyod.models.vae.VAE()`` fitting X, defaults but the epochs
    (its fit ends with a scoring pass, as skvae's does)."""
    from pyod.models.vae import VAE

    _, seconds = timed(_quiet, VAE(epoch_num=epochs, random_state=0, verbose=0).fit, X)
    return seconds


def _gradient_steps(detector, n_rows):
    """Gradient steps of a default fit: the automatic budget's batch over the
    rows left after the validation split."""
    from skvae._training import training_budget  # the documented batch rule

    n_train = n_rows - int(np.floor(detector.validation_fraction * n_rows))
    batch, _, _ = training_budget(n_train)
    return detector.n_iter_ * -(-n_train // batch)


def _peak_rss():
    """Peak resident memory of this process in bytes.

    Linux's VmHWM belongs to the address space, which starts afresh at exec;
    ``ru_maxrss`` (the fallback elsewhere) carries over the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss():
    # Linux >= 4.0: VmHWM restarts from the current RSS (making the input
    # does not count as scoring memory).
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def memory_child(model_path, n_rows, n_features, n_threads):
    """Run in a fresh process: peak RSS above the input while scoring."""
    import psutil

    set_threads(n_threads)
    with open(model_path, "rb") as handle:
        detector = pickle.load(handle)
    detector.score_samples(synthetic(1000, n_features, seed=2))  # load lazy torch kernels
    X = synthetic(n_rows, n_features, seed=3)
    _reset_peak_rss()
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    scores = detector.score_samples(X)
    seconds = time.perf_counter() - start
    peak = _peak_rss()
    print(
        json.dumps(
            dict(
                input_mib=X.nbytes / MIB,
                peak_above_input_mib=(peak - before) / MIB,
                seconds=seconds,
                finite=bool(np.all(np.isfinite(scores))),
            )
        )
    )


def measure_memory(detector, n_rows, n_features, n_threads):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detector.pkl"
        with open(path, "wb") as handle:
            pickle.dump(detector, handle)
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                str(path),
                "--memory-rows",
                str(n_rows),
                "--features",
                str(n_features),
                "--threads",
                str(n_threads),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fit-rows", type=int, default=50_000)
    parser.add_argument("--large-rows", type=int, default=1_000_000)
    parser.add_argument("--large-features", type=int, default=20)
    parser.add_argument(
        "--pyod-epochs",
        type=int,
        default=1,
        help="epochs PyOD's VAE runs on the large table (its fit time is scaled to 30)",
    )
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    parser.add_argument("--pyod-score-rows", type=int, default=200_000)
    parser.add_argument("--memory-rows", type=int, default=2_000_000)
    parser.add_argument("--output", type=Path, default=HERE)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    args = parser.parse_args(argv)
    if args.memory_child:
        return memory_child(args.memory_child, args.memory_rows, args.features, args.threads)
    pin_threads(args.threads, __file__, argv, restart=from_command_line)
    d = args.features
    rows = []

    def record(measure, value, unit, note=""):
        rows.append(dict(measure=measure, value=round(value, 3), unit=unit, note=note))
        print(f"{measure}: {value:,.1f} {unit} {note}", flush=True)

    # Fitting the defaults on each table, PyOD's VAE at its defaults beside
    # it; the 50-feature model is reused for scoring.
    fits = {}
    for n_rows, n_features in ((args.fit_rows, d), (args.large_rows, args.large_features)):
        X_fit = synthetic(n_rows, n_features)
        # The first fit of a process is what a command-line user waits for;
        # on the smaller table two more fits (seeds 1, 2) give the median.
        repeats = 3 if n_rows <= args.fit_rows else 1
        times = []
        for seed in range(repeats):
            fitted, seconds = timed(_quiet, VAEAnomalyDetector(random_state=seed).fit, X_fit)
            times.append(seconds)
        fit_s = float(np.median(times))
        steps = _gradient_steps(fitted, n_rows)
        table = f"{n_rows:,} x {n_features}"
        record(
            f"skvae default fit, {table}",
            fit_s,
            "s",
            f"{fitted.n_iter_} epochs, {steps} gradient steps"
            + (
                f"; median of {repeats} fits: " + ", ".join(f"{t:.2f}" for t in times) + " s"
                if repeats > 1
                else "; first fit of the process"
            ),
        )
        record(f"skvae default fit per gradient step, {table}", 1e3 * fit_s / steps, "ms")
        fits[table] = {"skvae": fit_s}
        if pyod_available():
            epochs = PYOD_EPOCHS if n_rows <= args.fit_rows else args.pyod_epochs
            seconds = pyod_default_fit(X_fit, epochs) * PYOD_EPOCHS / epochs
            note = "" if epochs == PYOD_EPOCHS else f"{epochs} of {PYOD_EPOCHS} epochs, scaled"
            record(f"PyOD VAE default fit, {table}", seconds, "s", note)
            fits[table]["pyod"] = seconds
            record(f"default fit speed-up over PyOD VAE, {table}", seconds / fit_s, "x")
        if n_features == d:
            detector = fitted
        del X_fit

    X_score = synthetic(args.score_rows, d, seed=1)
    detector.score_samples(X_score[:1000])
    _, score_s = timed(detector.score_samples, X_score)
    skvae_score_rate = args.score_rows / score_s
    record(f"skvae default scoring, {args.score_rows:,} x {d}", skvae_score_rate, "rows/s")

    hidden, latent = detector.hidden_layer_sizes, detector.n_components
    X_train = synthetic(args.train_rows, d, seed=4)
    work = args.train_rows * args.epochs
    pyod = pyod_available()
    shape = (
        f"hidden {tuple(hidden)}, latent {latent}, {args.epochs} epochs, {args.train_rows:,} x {d}"
    )
    skvae_default_batch = REFERENCE_BATCH
    rates = {}
    for batch in sorted({skvae_default_batch, 32}):
        rates["skvae", batch] = work / skvae_training(X_train, args.epochs, batch)
        record(f"skvae training, batch {batch}", rates["skvae", batch], "rows*epochs/s", shape)
        if pyod:
            seconds, model = pyod_training(X_train, args.epochs, batch, hidden, latent)
            rates["pyod", batch] = work / seconds
            record(
                f"PyOD VAE training, batch {batch}", rates["pyod", batch], "rows*epochs/s", shape
            )
    if pyod:
        for batch in sorted({skvae_default_batch, 32}):
            record(
                f"training speed-up, both at batch {batch}",
                rates["skvae", batch] / rates["pyod", batch],
                "x",
            )
        record(
            f"training speed-up, skvae at batch {skvae_default_batch}, PyOD at its default 32",
            rates["skvae", skvae_default_batch] / rates["pyod", 32],
            "x",
        )
        X_pyod = X_score[: args.pyod_score_rows]
        model.decision_function(X_pyod[:1000])
        for batch in (32, EVAL_BATCH):
            _, pyod_score_s = timed(model.decision_function, X_pyod, batch)
            pyod_score_rate = len(X_pyod) / pyod_score_s
            record(
                f"PyOD VAE scoring, batch {batch}, {len(X_pyod):,} x {d}",
                pyod_score_rate,
                "rows/s",
                "same network shape; 32 is PyOD's default",
            )
        record(
            f"scoring speed-up over PyOD VAE at batch {EVAL_BATCH}",
            skvae_score_rate / pyod_score_rate,
            "x",
        )

    memory = measure_memory(detector, args.memory_rows, d, args.threads)
    record(
        f"peak memory above the input, scoring {args.memory_rows:,} x {d} float32",
        memory["peak_above_input_mib"],
        "MiB",
        f"input {memory['input_mib']:.0f} MiB, fresh process, scores finite: {memory['finite']}",
    )
    record(
        f"skvae default scoring in that process, {args.memory_rows:,} x {d}",
        args.memory_rows / memory["seconds"],
        "rows/s",
    )

    def verdict(holds):
        return "**holds**" if holds else "**does not hold**"

    targets = []
    for table, limit in (
        (f"{args.fit_rows:,} x {d}", 3),
        (f"{args.large_rows:,} x {args.large_features}", 60),
    ):
        seconds = fits[table]["skvae"]
        targets.append(
            f"- Fitting the defaults on {table} in at most {limit} s: "
            f"{verdict(seconds <= limit)} ({seconds:.1f} s)."
        )
        if "pyod" in fits[table]:
            ratio = fits[table]["pyod"] / seconds
            targets.append(
                f"- Default fit at least 10x faster than PyOD's VAE at its defaults on {table}: "
                f"{verdict(ratio >= 10)} ({ratio:.1f}x)."
            )
    targets += [
        f"- Scoring at least 1,000,000 rows/s with {d} features: "
        f"{verdict(skvae_score_rate >= 1e6)} ({skvae_score_rate:,.0f} rows/s).",
        f"- Scoring {args.memory_rows:,} x {d} within 256 MiB above the input: "
        f"{verdict(memory['peak_above_input_mib'] <= 256)} "
        f"({memory['peak_above_input_mib']:.1f} MiB).",
    ]
    if pyod:
        for label, ratio in (
            (
                f"skvae at batch {skvae_default_batch}, PyOD at its default 32",
                rates["skvae", skvae_default_batch] / rates["pyod", 32],
            ),
            *(
                (f"both at batch {batch}", rates["skvae", batch] / rates["pyod", batch])
                for batch in sorted({skvae_default_batch, 32})
            ),
        ):
            targets.append(
                f"- Training at least 5x faster than PyOD's VAE, {label}: "
                f"{verdict(ratio >= 5)} ({ratio:.1f}x)."
            )
    results_dir = args.output / "results"
    write_csv(results_dir / "speed.csv", rows)
    text = report(rows, args, pyod, argv, targets)
    write_section("speed", text, results_dir, args.output / "RESULTS.md")
    print(f"wrote {results_dir / 'speed.csv'} and {args.output / 'RESULTS.md'}")


def report(rows, args, pyod, argv, targets):
    lines = ["## Speed and memory", ""]
    lines += machine_lines(args.threads, __file__, argv)
    lines += [
        f"- Data: synthetic float32 rows with {args.features} features near a 5-dimensional "
        "subspace, 1% scattered outliers.",
        "- Default fits: `VAEAnomalyDetector(random_state=seed).fit(X)` (on the "
        f"{args.fit_rows:,}-row table the median of seeds 0, 1, 2, the first being the "
        "process's first fit; on the large table seed 0 once) and "
        "`pyod.models.vae.VAE(random_state=0, verbose=0).fit(X)` on the same table, wall time "
        "including the scoring pass each ends with.",
        "- Training time is fit time minus the time of one scoring pass over the training rows "
        "(both libraries score the training rows at the end of `fit`). skvae trains with "
        "`early_stopping=False` so both run exactly the same number of epochs; PyOD's VAE keeps "
        "its other defaults (dropout 0.2, weight decay 1e-5).",
    ]
    if not pyod:
        lines.append(
            "- PyOD is not installed, so there is no comparison: pip install '.[benchmark]'."
        )
    table = [[r["measure"], f"{r['value']:,.2f}", r["unit"], r["note"]] for r in rows]
    lines += ["", markdown_table(["measure", "value", "unit", "note"], table)]
    lines += ["", "Targets, checked on these numbers:", "", *targets]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
