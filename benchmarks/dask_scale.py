"""Score and stream-train skvae over Parquet partitions on a local Dask cluster.

Writes ``--rows`` rows x ``--features`` columns as Parquet partitions into a
scratch folder, then on a ``LocalCluster`` of ``--workers`` worker processes
(one thread each, ``--memory-limit`` each):

1. trains a ``VAEAnomalyDetector`` by streaming once over every partition but
   the last (``skvae.dask.partial_fit_blocks``: one ``partial_fit`` per
   partition, on the workers, one partition read ahead);
2. sets its threshold and p-value calibration from the held-out last
   partition (``calibrate``);
3. scores every row on the workers (``skvae.dask.decision_function``),
   reducing to the number of flagged rows and their recall of the injected
   outliers, so nothing row-sized comes back to the client;
4. with ``--compare-incremental``, trains again with dask-ml's
   ``Incremental`` over the same partitions, for its peak memory.

Peak memory is the largest resident set size of each worker process, sampled
every 0.2 s with psutil from this process (the workers run on this machine).
The section "Scaling out on Dask" of RESULTS.md gets the numbers.

    python benchmarks/dask_scale.py --rows 20000000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine_lines, markdown_table, write_section  # noqa: E402

N_LATENT = 5  # the inliers lie near a 5-dimensional linear subspace
OUTLIER_SHARE = 0.001


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GiB", help="per worker")
    parser.add_argument("--batch-size", type=int, default=4096, help="partial_fit mini-batch")
    parser.add_argument(
        "--scratch", default=None, help="folder for the Parquet files (default: a temporary one)"
    )
    parser.add_argument("--keep-data", action="store_true", help="do not delete the Parquet files")
    parser.add_argument(
        "--compare-incremental",
        action="store_true",
        help="also train with dask-ml's Incremental; writes the section dask_incremental",
    )
    parser.add_argument(
        "--output", default=None, help="folder for RESULTS.md (default: benchmarks)"
    )
    return parser.parse_args(argv)


def make_partition(index, rows, n_features):
    """Inliers near a low-dimensional subspace plus a few uniform outliers;
    the mixing matrix is the same for every partition, the rows are not."""
    mixing = np.random.RandomState(0).normal(size=(N_LATENT, n_features))
    rng = np.random.RandomState(1000 + index)
    X = rng.normal(size=(rows, N_LATENT)) @ mixing + 0.3 * rng.normal(size=(rows, n_features))
    outlier = rng.uniform(size=rows) < OUTLIER_SHARE
    X[outlier] = rng.uniform(-8, 8, size=(outlier.sum(), n_features))
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"x{j}" for j in range(n_features)])
    frame["outlier"] = outlier
    return frame


def _held(dask_worker):
    """Bytes of task results a worker holds in memory."""
    from dask.sizeof import sizeof

    return sum(sizeof(value) for value in dask_worker.data.values())


class PeakMemory:
    """While the block runs: the largest RSS of each worker process, and the
    most task-result bytes the workers held at once (loaded partitions, models)."""

    def __init__(self, client, pids, interval=0.2):
        import psutil

        self.client = client
        self.processes = {pid: psutil.Process(pid) for pid in pids}
        self.peaks = dict.fromkeys(pids, 0)
        self.held = 0
        self.interval = interval
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            for pid, process in self.processes.items():
                self.peaks[pid] = max(self.peaks[pid], process.memory_info().rss)
            self.held = max(self.held, sum(self.client.run(_held).values()))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()

    def mib(self):
        return " / ".join(f"{peak / 2**20:,.0f}" for peak in self.peaks.values())

    def held_mib(self):
        return f"{self.held / 2**20:,.0f}"


def _warm_up(n_features):
    """Import skvae and train a little on each worker, so that one-time costs
    (imports, first torch calls) are not timed."""
    from skvae import VAEAnomalyDetector

    VAEAnomalyDetector(max_iter=1).partial_fit(make_partition(0, 5000, n_features).iloc[:, :-1])
    return 1


def run(args):
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from skvae import VAEAnomalyDetector
    from skvae import dask as skvae_dask

    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="skvae-dask-"))
    data = scratch / "rows.parquet"
    per_partition = -(-args.rows // args.partitions)
    sizes = [min(per_partition, args.rows - i * per_partition) for i in range(args.partitions)]
    features = [f"x{j}" for j in range(args.features)]
    steps = []
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            memory_limit=args.memory_limit,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_up, args.features)
        pids = list(client.run(lambda: __import__("os").getpid()).values())
        with PeakMemory(client, pids) as idle:
            time.sleep(1.0)
        steps.append(("workers idle, after a warm-up fit", "", "", "", idle.mib(), idle.held_mib()))

        shutil.rmtree(data, ignore_errors=True)
        meta = make_partition(0, 0, args.features)
        frames = dd.from_map(
            make_partition, range(args.partitions), sizes, [args.features] * len(sizes), meta=meta
        )
        with PeakMemory(client, pids) as write:
            frames.to_parquet(data, write_index=False)
        steps.append(_row("write Parquet", args.rows, write))

        frames = dd.read_parquet(data)
        train, held_out = frames.partitions[:-1], frames.partitions[-1]
        n_train = sum(sizes[:-1])
        detector = VAEAnomalyDetector(
            batch_size=args.batch_size, contamination=OUTLIER_SHARE, random_state=0
        )
        with PeakMemory(client, pids) as fit:
            detector = skvae_dask.partial_fit_blocks(detector, train[features], random_state=0)
        steps.append(_row("train: partial_fit_blocks, 1 epoch", n_train, fit))

        with PeakMemory(client, pids) as calibrate:
            detector.calibrate(held_out[features].compute())
        steps.append(_row("calibrate on the held-out partition (client)", sizes[-1], calibrate))

        decision = skvae_dask.decision_function(detector, frames[features])
        truth = frames["outlier"]
        with PeakMemory(client, pids) as score:
            flagged, hits, n_outliers = dask.compute(
                (decision < 0).sum(), ((decision < 0) & truth).sum(), truth.sum()
            )
        steps.append(_row("score: decision_function of every row", args.rows, score))

        if args.compare_incremental:
            from dask_ml.wrappers import Incremental

            wrapper = Incremental(
                VAEAnomalyDetector(
                    batch_size=args.batch_size, contamination=OUTLIER_SHARE, random_state=0
                ),
                random_state=0,
            )
            with PeakMemory(client, pids) as incremental:
                wrapper.fit(train[features])
            steps.append(_row("train: dask-ml Incremental, 1 epoch", n_train, incremental))
    if not args.keep_data:
        shutil.rmtree(scratch, ignore_errors=True)
    quality = (
        f"{flagged:,} rows flagged ({flagged / args.rows:.2%}, `contamination={OUTLIER_SHARE}`); "
        f"they hold {hits:,} of the {n_outliers:,} injected outliers "
        f"(recall {hits / max(n_outliers, 1):.1%}, precision {hits / max(flagged, 1):.1%})"
    )
    return steps, quality


def _row(name, rows, peak):
    return (
        name,
        f"{rows:,}",
        f"{peak.seconds:,.1f}",
        f"{rows / peak.seconds:,.0f}",
        peak.mib(),
        peak.held_mib(),
    )


def report(args, argv, steps, quality, total):
    lines = [
        "## Scaling out on Dask"
        + (
            ": dask-ml's Incremental against partial_fit_blocks" if args.compare_incremental else ""
        ),
        "",
        f"`benchmarks/dask_scale.py`: {args.rows:,} rows x {args.features} float32 features in "
        f"{args.partitions} Parquet partitions, on a `distributed.LocalCluster` of "
        f"{args.workers} worker processes x 1 thread, `memory_limit={args.memory_limit}` each. "
        "The detector has the default network; streaming training is one epoch of "
        f"`partial_fit` per partition (`batch_size={args.batch_size}`) over all partitions "
        "but the last, which calibrates the threshold; scoring reduces on the workers to "
        "counts. Peak memory: largest resident set size of each worker process during the "
        "step, and the most bytes of task results (loaded partitions, models) the workers "
        "held at once, both sampled every 0.2 s.",
        "",
        *machine_lines(1, __file__, argv),
        f"- Total wall time: {total:,.0f} s",
        "",
        markdown_table(
            [
                "step",
                "rows",
                "seconds",
                "rows/s",
                "peak RSS per worker (MiB)",
                "peak data held by all workers (MiB)",
            ],
            steps,
        ),
        "",
        f"Result: {quality}.",
        "",
        "Timings depend on the load of the machine: rerun the command above on a quiet one. "
        "Training is sequential (the model moves from block to block, one worker at a time), "
        "so its rows/s is one worker's; scoring runs on all workers at once. On a "
        'multi-machine cluster the same code runs against `Client("tcp://scheduler:8786")` '
        "with the Parquet files on storage every worker reads (S3, GCS, HDFS, NFS): scoring "
        "scales with the number of workers, each holding one partition at a time; training "
        "stays one pass of one model, its memory bounded by the partitions in flight.",
    ]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    steps, quality = run(args)
    text = report(args, argv, steps, quality, time.perf_counter() - start)
    print(text)
    kwargs = {}
    if args.output:
        output = Path(args.output)
        kwargs = {"results_dir": output / "results", "results_md": output / "RESULTS.md"}
    write_section("dask_incremental" if args.compare_incremental else "dask", text, **kwargs)


if __name__ == "__main__":
    main()
